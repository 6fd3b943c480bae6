"""Stylizing with a trained model: one forward pass of the transform network.

>>> from fast_nst import load_stylizer
>>> s = load_stylizer()   # the built-in model (mosaic), shipped inside the package
>>> s = load_stylizer("models/wave/wave.pth", device="cpu")
>>> out = s.stylize(Image.open("photo.jpg"))   # PIL image of the same size
>>> m = load_stylizer("models/multi11/multi11.pth", style="candy:0.7,mosaic:0.3")   # a blend
>>> a = load_stylizer("models/arbitrary/arbitrary.pth", style="starry.jpg", alpha=0.8)   # AdaIN

Modules: ``base`` (the :class:`Stylizer` contract and :class:`StylizeOptions`),
``torch_stylizer`` (PyTorch networks), ``onnx_stylizer`` (.onnx exports through onnxruntime),
``int8`` (onnxruntime's int8 quantization on the CPU), ``openvino_stylizer`` (the ONNX export
run by OpenVINO: ``runtime="openvino"``), ``tiling`` (huge images in bounded memory) and
``video`` (frame by frame, keeping timing and audio).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Union

import torch

from ..core.device import auto_precision, resolve_device
from ..core.errors import CheckpointError, FastNSTError
from ..io.bundled import about, bundled_model
from ..io.checkpoint import CHECKPOINT_DIR, list_checkpoints, load_model
from ..io.hub import cached_copy_errors, is_remote_model, local_model_file, remote_model_name
from ..io.safetensors_file import SAFETENSORS_SUFFIX
from ..io.export import MAX_ONNX_BYTES
from ..io.int8_graph import runs_int8
from ..io.pretrained import require_downloaded
from ..io.quantize import require_quantization
from .int8 import load_int8_stylizer
from .onnx_stylizer import load_onnx_stylizer, require_onnxruntime
from .openvino_stylizer import load_openvino_stylizer, require_openvino
from ..nets.multistyle import StyleError, StyleSpec
from .base import StyleImages, StylizeOptions, Stylizer, finish, preserve_colors, resize_for_processing
from .torch_stylizer import TorchStylizer

__all__ = ["RUNTIMES", "StylizeOptions", "Stylizer", "TorchStylizer", "finish", "load_stylizer", "model_in_run_folder",
           "preserve_colors", "require_packages", "resize_for_processing", "resolve_precision"]

# Who runs the network: "default" (PyTorch for .pth/.safetensors, onnxruntime for .onnx and
# int8) or "openvino" (the ONNX export on the CPU; see openvino_stylizer).
RUNTIMES = ("default", "openvino")


def model_in_run_folder(folder: Path) -> Path:
    """The model a run folder stands for: its final model (``models/wave/wave.pth``, else
    ``wave.safetensors``), or, for a run that was stopped before its end, its newest checkpoint
    (with a warning saying so)."""
    final = folder / f"{folder.name}.pth"
    for path in (final, final.with_suffix(SAFETENSORS_SUFFIX)):  # the .safetensors of a model from the Hub
        if path.is_file():
            return path
    found = list_checkpoints(folder)
    if found:
        step, newest = found[-1]
        warnings.warn(f"{folder} holds no final model ({final.name}; the run has not finished): "
                      f"using its newest checkpoint {newest} (step {step}).")
        return newest
    raise CheckpointError(f"{folder} is a folder without a model: expected a run folder holding "
                          f"{final.name} or {CHECKPOINT_DIR}/step_*.pth, or give a model file itself.")


def resolve_precision(precision: str, path: Union[str, Path], device: str = "auto",
                      runtime: str = "default") -> tuple[str, str]:
    """(the precision the model file ``path`` runs in, why): ``precision`` "auto" resolved for
    where it runs (:func:`~fast_nst.core.device.auto_precision`; an .onnx export in
    onnxruntime runs in float32), any other as it is, with no reason."""
    if precision != "auto":
        return precision, ""
    if runtime == "default" and Path(path).suffix.lower() == ".onnx":
        if Path(path).is_file() and runs_int8(Path(path), MAX_ONNX_BYTES):  # as the stylizer will label it
            return "int8", "an int8 .onnx export runs in int8"
        return "fp32", "an .onnx export runs as it was exported, float32 or int8 (bf16 with --runtime openvino)"
    return auto_precision(torch.device("cpu") if runtime == "openvino" else resolve_device(device))


def require_packages(model: Union[str, Path, None], precision: str = "fp32", runtime: str = "default") -> None:
    """FastNSTError naming the optional packages (and the pip command) that running the model
    file named ``model`` (by its suffix; None: any model) in ``precision`` and ``runtime``
    needs and lacks, found without importing them: before a model is downloaded, exported or
    quantized, work that would end in that error."""
    onnx_file = model is not None and Path(model).suffix.lower() == ".onnx"
    if runtime == "openvino":
        require_openvino(exports=precision == "int8" or (model is not None and not onnx_file))
    elif precision == "int8":
        require_quantization()
    elif onnx_file:
        require_onnxruntime()


def load_stylizer(path: Union[str, Path, None] = None, device: str = "auto", precision: str = "fp32",
                  fast: Optional[bool] = None, compile: bool = False,
                  style: Union[StyleSpec, StyleImages, None] = None, alpha: Optional[float] = None,
                  loss_model_file: Union[str, Path, None] = None, loss_model: Optional[str] = None,
                  calibration_images: Union[str, Path, None] = None, runtime: str = "default") -> Stylizer:
    """Load a fast-nst checkpoint (final model or training checkpoint) for stylizing; also a run
    folder (``models/wave`` -> ``models/wave/wave.pth``), a .safetensors or .onnx export, a
    pytorch/examples model, or a Hugging Face Hub reference ``hf://OWNER/REPO/FILE[@REVISION]``
    (:mod:`fast_nst.io.hub`).
    No ``path``: the built-in model shipped inside the package (:mod:`fast_nst.io.bundled`).

    ``device``: "auto" (CUDA if available), "cpu", "cuda" or "cuda:N". ``precision``, ``fast``
    and ``compile``: see :class:`TorchStylizer` (``precision="auto"``: bf16 on GPUs and on CPUs
    with AMX, else fp16 on GPUs and fp32 on CPUs, see :func:`~fast_nst.core.device.auto_precision`); ``precision="int8"``: the model quantized to int8
    and run by onnxruntime on the CPU (single- and multi-style models; see :mod:`fast_nst.stylize.int8`),
    calibrated on generated images or the photos in the folder ``calibration_images``.
    ``runtime``: "default" (PyTorch for .pth and .safetensors models, onnxruntime for .onnx files
    and int8) or "openvino": the model's ONNX export run by OpenVINO on the CPU, the fastest on
    Intel CPUs (:mod:`fast_nst.stylize.openvino_stylizer`; precision fp32, bf16 or int8).
    ``style``: for a multi-style model, the style or blend to start in (see :meth:`Stylizer.set_style`; default its first style); for an
    arbitrary-style model (model_type adain), the style image(s), with ``alpha``;
    ``loss_model_file``: its encoder's weights, the file it was trained with (default: the loss
    network's default path; a path named in the model file is never used), when the encoder is
    loss network ``loss_model`` (None: whichever it is).
    Raises :class:`~fast_nst.core.errors.FastNSTError` for a missing, foreign or unsafe file.
    """
    if path is None:
        path = bundled_model()
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"load_stylizer takes a model's path (a str or Path), an hf:// reference or a URL, "
                              f"got {type(path).__name__}")
    if runtime not in RUNTIMES:
        raise FastNSTError(f"runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    require_packages(remote_model_name(str(path)) if is_remote_model(path) else path, precision, runtime)
    path = local_model_file(path)  # an hf:// reference or a URL: the cached file
    path = model_in_run_folder(Path(path)) if Path(path).is_dir() else Path(path)
    require_downloaded(path)  # "Try it in a minute" without the download
    precision = resolve_precision(precision, path, device, runtime)[0]
    with cached_copy_errors(path):  # a URL's cached copy that fails to load: say to delete it
        if runtime == "openvino":
            stylizer: Stylizer = load_openvino_stylizer(path, device, precision, calibration_images, loss_model_file)
        elif precision == "int8":
            stylizer = load_int8_stylizer(path, device, calibration_images, loss_model_file)
        elif path.suffix.lower() == ".onnx":
            stylizer = load_onnx_stylizer(path, device=device, precision=precision)
        else:
            model, ckpt = load_model(path, loss_model_file, loss_model)
            config = ckpt.get("config")
            naming = config.get("naming") if isinstance(config, dict) else None
            name = naming if isinstance(naming, str) and naming else path.stem
            stylizer = TorchStylizer(model, resolve_device(device), name=name,
                                     info={"step": ckpt.get("step"), "path": str(path), "about": about(ckpt)},
                                     precision=precision, fast=fast, compile=compile)
    if style is not None:
        stylizer.set_style(style, alpha=alpha)
    elif alpha is not None:
        raise StyleError("alpha sets how much of a style image to apply: give the image too (style=...)")
    return stylizer
