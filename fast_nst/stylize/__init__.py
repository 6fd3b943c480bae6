"""Stylizing with a trained model: one forward pass of the transform network.

>>> from fast_nst import load_stylizer
>>> s = load_stylizer("models/wave/wave.pth", device="cpu")
>>> out = s.stylize(Image.open("photo.jpg"))   # PIL image of the same size

Modules: ``base`` (the :class:`Stylizer` contract and :class:`StylizeOptions`),
``torch_stylizer`` (PyTorch networks), ``onnx_stylizer`` (.onnx exports through onnxruntime),
``tiling`` (huge images in bounded memory) and ``video`` (frame by frame, keeping timing and audio).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from ..core.device import resolve_device
from ..io.checkpoint import load_model
from .onnx_stylizer import load_onnx_stylizer
from .base import StylizeOptions, Stylizer, finish, preserve_colors, resize_for_processing
from .torch_stylizer import TorchStylizer

__all__ = ["StylizeOptions", "Stylizer", "TorchStylizer", "finish", "load_stylizer", "preserve_colors",
           "resize_for_processing"]


def load_stylizer(path: Union[str, Path], device: str = "auto", precision: str = "fp32",
                  fast: Optional[bool] = None, compile: bool = False) -> Stylizer:
    """Load a fast-nst checkpoint (final model or training checkpoint) for stylizing; also a run
    folder (``models/wave`` -> ``models/wave/wave.pth``), an .onnx export or a pytorch/examples model.

    ``device``: "auto" (CUDA if available), "cpu", "cuda" or "cuda:N". ``precision``, ``fast``
    and ``compile``: see :class:`TorchStylizer`.
    Raises :class:`~fast_nst.core.errors.FastNSTError` for a missing, foreign or unsafe file.
    """
    if Path(path).is_dir() and (Path(path) / f"{Path(path).name}.pth").is_file():
        path = Path(path) / f"{Path(path).name}.pth"  # a run folder: its final model
    if Path(path).suffix.lower() == ".onnx":
        return load_onnx_stylizer(path, device=device, precision=precision)
    model, ckpt = load_model(path)
    name = ckpt.get("config", {}).get("naming") or Path(path).stem
    return TorchStylizer(model, resolve_device(device), name=str(name),
                         info={"step": ckpt.get("step"), "path": str(path)},
                         precision=precision, fast=fast, compile=compile)
