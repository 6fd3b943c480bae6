"""Stylizing on an Intel CPU with OpenVINO (``load_stylizer(path, runtime="openvino")``,
``eval.py --runtime openvino``): the model's ONNX export compiled by OpenVINO's CPU plugin.

OpenVINO fuses the network's convolutions, instance norms and activations into multi-threaded
kernels and runs them in bf16 on CPUs with AMX or AVX-512 BF16: on a 2-core Xeon with AMX it
stylized 512 x 512 with the default network in 45 ms against 121-141 ms for fast-nst's own bf16
path (docs/benchmarks.md). A .pth or .safetensors model is exported to ONNX when it is loaded (a
few seconds); an .onnx export is used as it is. Every kind of model works (multi-style ones
take ``set_style``, arbitrary-style ones a style image), since the stylizer is the ONNX one
(:class:`~fast_nst.stylize.onnx_stylizer.OnnxStylizer`, which checks the file and reads its
metadata) with OpenVINO in place of onnxruntime. The graph reaches OpenVINO as bytes read
through the boundary (:mod:`fast_nst.core.untrusted.onnx_files`), never as a path.

``precision``: "fp32", "bf16" (refused on a CPU without bf16 arithmetic), or "int8": the model
quantized as for onnxruntime (:mod:`fast_nst.io.quantize`, single-style models) and compiled by
OpenVINO, which keeps what is not int8 in bf16 where the CPU has it.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

from ..core.device import resolve_device
from ..core.errors import FastNSTError
from ..core.untrusted import read_onnx_file
from ..io.export import MAX_ONNX_BYTES, export_metadata, export_onnx
from ..io.bundled import about
from ..io.checkpoint import load_model
from ..io.quantize import calibration_from_folder, is_quantized, quantize_network, quantize_onnx
from .onnx_stylizer import OnnxStylizer, load_onnx_stylizer

__all__ = ["OPENVINO_INSTALL_HINT", "OPENVINO_PRECISIONS", "load_openvino_stylizer"]

OPENVINO_INSTALL_HINT = 'pip install openvino (or pip install -e ".[openvino]")'
# fast-nst precision -> OpenVINO's inference precision hint (int8: the quantized graph; what
# stays in float runs in the CPU's best float type, OpenVINO's default).
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "int8": None}


class _Port:
    def __init__(self, name: str):
        self.name = name


class _OpenVinoSession:
    """The part of onnxruntime's InferenceSession that OnnxStylizer uses, over an OpenVINO
    compiled model: ``get_inputs()``/``get_outputs()`` (objects with ``.name``) and
    ``run(output names, {input name: array})``."""

    def __init__(self, compiled: Any):
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def get_inputs(self) -> list[_Port]:
        return [_Port(p.get_any_name()) for p in self.compiled.inputs]

    def get_outputs(self) -> list[_Port]:
        return [_Port(p.get_any_name()) for p in self.compiled.outputs]

    def run(self, names: Optional[list[str]], feeds: dict) -> list:
        result = self.request.infer(feeds)
        ports = [self.compiled.output(n) for n in names] if names else list(self.compiled.outputs)
        return [result[p].copy() for p in ports]  # the request reuses its output buffer


def _import_openvino() -> Any:
    try:
        import openvino  # an optional extra: imported only when asked for
    except ImportError:
        raise FastNSTError(f"runtime openvino needs the openvino package: {OPENVINO_INSTALL_HINT}") from None
    return openvino


def _onnx_model(path: Path, folder: Path, precision: str, calibration_images,
                loss_model_file) -> tuple[Path, Optional[str]]:
    """(the ONNX file to compile for ``path`` (an .onnx as it is, or written into ``folder``):
    exported from a .pth/.safetensors model, quantized for int8 unless it already is; how the
    model was made, for a .pth/.safetensors one)."""
    images = calibration_from_folder(calibration_images) if calibration_images is not None else None
    if path.suffix.lower() == ".onnx":
        if precision != "int8" or is_quantized(load_onnx_stylizer(path, device="cpu").info["metadata"]):
            return path, None
        quantize_onnx(path, folder / "int8.onnx", images)
        return folder / "int8.onnx", None
    net, ckpt = load_model(path, loss_model_file)
    out = folder / f"{path.stem}.onnx"
    if precision == "int8":
        quantize_network(net, ckpt, path, out, images)
    else:
        export_onnx(net, out, metadata=export_metadata(net, ckpt, path))
    return out, about(ckpt)


def load_openvino_stylizer(path: Union[str, Path], device: str = "cpu", precision: str = "fp32",
                           calibration_images: Union[str, Path, None] = None,
                           loss_model_file: Union[str, Path, None] = None) -> OnnxStylizer:
    """A stylizer of the model ``path`` (.pth, .safetensors or .onnx) run by OpenVINO on the CPU.
    FastNSTError for a GPU device, a precision OpenVINO or this CPU cannot run, or a missing
    openvino package; the ONNX stylizer's errors for the file itself."""
    path = Path(path)
    if resolve_device("cpu" if device == "auto" else device).type != "cpu":
        raise FastNSTError(f"runtime openvino runs on the CPU, not on device {device!r}: use --device cpu.")
    if precision not in OPENVINO_PRECISIONS:
        raise FastNSTError(f"runtime openvino runs precision {', '.join(OPENVINO_PRECISIONS)}, not {precision!r}.")
    ov = _import_openvino()
    core = ov.Core()
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise FastNSTError("this CPU has no bf16 arithmetic (AVX-512 BF16 or AMX): use --precision fp32 "
                           "or int8 with runtime openvino.")
    with tempfile.TemporaryDirectory(prefix="fast-nst-openvino-") as tmp:
        onnx_file, made = _onnx_model(path, Path(tmp), precision, calibration_images, loss_model_file)
        stylizer = load_onnx_stylizer(onnx_file, device="cpu")  # checks the file, reads its metadata
        model = core.read_model(io.BytesIO(read_onnx_file(onnx_file, MAX_ONNX_BYTES)))
    hint = OPENVINO_PRECISIONS[precision]
    config = {"PERFORMANCE_HINT": "LATENCY", **({"INFERENCE_PRECISION_HINT": hint} if hint else {})}
    stylizer.session = _OpenVinoSession(core.compile_model(model, "CPU", config))
    stylizer.precision = precision
    stylizer.path = str(path)
    stylizer.info.update(path=str(path), about=made, runtime="openvino", providers=[f"OpenVINO {ov.__version__} CPU"])
    return stylizer
