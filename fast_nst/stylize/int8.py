"""int8 stylizing on the CPU: the model quantized by :mod:`fast_nst.io.quantize` and run by
onnxruntime (``load_stylizer(path, precision="int8")``, ``eval.py --precision int8``).

A .pth model is exported to ONNX and quantized when it is loaded (a few seconds; calibrated on
generated images unless ``calibration_images`` names a folder of photos); an .onnx export is
quantized the same way, unless it already is one (``python -m fast_nst.export --quantize int8``).
The result is an :class:`~fast_nst.stylize.onnx_stylizer.OnnxStylizer` with ``precision``
"int8", which tiles a photo too large for one pass (:mod:`fast_nst.stylize.onnx_tiling`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional, Union

from ..core.device import resolve_device
from ..core.errors import FastNSTError
from ..core.untrusted import read_onnx_model
from ..io.bundled import about
from ..io.export import MAX_ONNX_BYTES, export_metadata, export_onnx, require_onnx_export, takes_style_image
from ..io.checkpoint import load_model
from ..io.export_cache import made_file
from ..io.quantize import (calibration_from_folder, check_quantizable, is_quantized, quantize_onnx,
                           require_quantization)
from .onnx_stylizer import OnnxStylizer, load_onnx_stylizer

__all__ = ["check_int8_device", "float32_onnx", "int8_onnx", "load_int8_stylizer"]


def check_int8_device(device: str) -> None:
    """FastNSTError unless ``device`` resolves to the CPU (onnxruntime's int8 kernels are CPU ones)."""
    if resolve_device(device).type != "cpu":
        raise FastNSTError(f"precision int8 runs on the CPU (onnxruntime's int8 kernels), not on "
                           f"device {device!r}: use --device cpu, or --precision bf16/fp16 on a GPU.")


def _onnx_metadata(path: Path) -> dict[str, str]:
    """The metadata of the .onnx file ``path``, read without starting an onnxruntime session;
    empty for a file that does not parse, which the ONNX stylizer then reports in its words."""
    try:
        model = read_onnx_model(path, MAX_ONNX_BYTES)
    except Exception:  # noqa: BLE001 - reported by load_onnx_stylizer, with the file's name
        return {}
    return {p.key: p.value for p in model.metadata_props}


def _load_fix(path: Path) -> str:
    """What to run an arbitrary-style model ``path`` in instead of int8, where it is loaded: an
    .onnx export has no bf16 in onnxruntime."""
    if path.suffix.lower() == ".onnx":
        return "run it with --precision fp32 (bf16: add --runtime openvino, or use its .pth model)"
    return "run it with --precision fp32 or bf16"


def int8_onnx(path: Path, folder: Path, calibration_images: Union[str, Path, None] = None,
              loss_model_file: Union[str, Path, None] = None) -> tuple[Path, Optional[str]]:
    """(the int8 ONNX file of the single- or multi-style model ``path``: an .onnx that is one
    already as it is, anything else quantized into the export cache (:mod:`fast_nst.io.export_cache`) or, with
    ``calibration_images`` or the cache off, into ``folder``; how a .pth/.safetensors model was made).
    FastNSTError for an arbitrary-style model, or without onnxruntime's quantizer."""
    require_quantization()
    images = calibration_from_folder(calibration_images) if calibration_images is not None else None
    cache = images is None  # generated calibration images: the same file for the same model

    if path.suffix.lower() == ".onnx":
        meta = _onnx_metadata(path)
        if is_quantized(meta):  # used as it is: the caller's own load checks the file
            return path, None
        # Said before "Making the int8 ONNX file", from the metadata the stylizer reads it from.
        check_quantizable(str(path), meta.get("style_input") == "image", _load_fix(path))

        def quantize(out: Path) -> None:
            stylizer = load_onnx_stylizer(path, device="cpu")  # checks the file, reads its metadata
            check_quantizable(str(path), bool(stylizer.style_input), _load_fix(path))
            quantize_onnx(path, out, images)
        return made_file(path, "int8", folder, quantize, cache, max_bytes=MAX_ONNX_BYTES), None
    net, ckpt = load_model(path, loss_model_file)
    check_quantizable(str(path), takes_style_image(net), _load_fix(path))

    def quantize_export(out: Path) -> None:  # the float32 export OpenVINO's fp32 load keeps, if made
        quantize_onnx(float32_onnx(path, folder, loss_model_file)[0], out, images)
    return made_file(path, "int8", folder, quantize_export, cache), about(ckpt)


def float32_onnx(path: Path, folder: Path,
                 loss_model_file: Union[str, Path, None] = None) -> tuple[Path, Optional[str]]:
    """(the float32 ONNX export of the .pth/.safetensors model ``path``: from the export cache
    (:mod:`fast_nst.io.export_cache`; made there when missing) or, for an arbitrary-style model
    (its export holds an encoder read from a file of its own) or with the cache off, into ``folder``.
    how the model was made). The int8 path quantizes it and OpenVINO compiles it: a model is
    exported once for both."""
    require_onnx_export()  # before the model loads and the export is announced
    net, ckpt = load_model(path, loss_model_file)

    def export_read_again(out: Path) -> None:  # the bytes the cache key was taken of, or newer
        net, ckpt = load_model(path, loss_model_file)
        export_onnx(net, out, metadata=export_metadata(net, ckpt, path))
    return made_file(path, "fp32", folder, export_read_again, cache=not takes_style_image(net)), about(ckpt)


def load_int8_stylizer(path: Union[str, Path], device: str = "cpu",
                       calibration_images: Union[str, Path, None] = None,
                       loss_model_file: Union[str, Path, None] = None) -> OnnxStylizer:
    """An int8 stylizer of the single- or multi-style model ``path`` (.pth or .onnx) on the CPU (a
    multi-style one keeps every style and blend: ``set_style``).
    FastNSTError for a GPU device, a missing onnxruntime, or an arbitrary-style model."""
    path = Path(path)
    check_int8_device("cpu" if device == "auto" else device)
    with tempfile.TemporaryDirectory(prefix="fast-nst-int8-") as tmp:
        quantized, made = int8_onnx(path, Path(tmp), calibration_images, loss_model_file)
        stylizer = load_onnx_stylizer(quantized, device="cpu")  # onnxruntime holds the graph in memory
    stylizer.precision = "int8"
    if quantized == path:  # an int8 export already
        return stylizer
    stylizer.info.update(path=str(path), about=made, quantized="int8 (onnxruntime QDQ, at load time)")
    stylizer.path = str(path)
    return stylizer
