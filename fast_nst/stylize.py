"""Stylizing with a trained checkpoint: one forward pass of the transform net.

>>> from fast_nst import load_stylizer
>>> s = load_stylizer("models/wave/wave.pth", device="cpu")
>>> out = s.stylize(Image.open("photo.jpg"))   # PIL image of the same size
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import torch
from PIL import Image

from .checkpoint import load_model
from .images import normalize_mode, pil_to_tensor, split_alpha, tensor_to_pil
from .model import TransformNet
from .device import resolve_device
from .errors import FastNSTError
from .inference import FastTransformNet


PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Stylizer:
    """A transform net on a device, ready to stylize images or tensors.

    ``precision`` "fp32" (default), "bf16" or "fp16" runs the network under autocast.
    ``fast`` (default: on for fp32 on CPU) uses :class:`~fast_nst.inference.FastTransformNet`,
    the same function with fewer FLOPs. ``compile`` wraps the network in ``torch.compile``.
    """

    def __init__(self, model: TransformNet, device: torch.device, name: str = "", info: Any = None,
                 precision: str = "fp32", fast: Optional[bool] = None, compile: bool = False):
        if precision not in PRECISIONS:
            raise FastNSTError(f"Unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
        if fast is None:
            fast = device.type == "cpu" and precision == "fp32"
        model = model.to(device).eval()
        net: torch.nn.Module = FastTransformNet(model) if fast else model
        self.model = torch.compile(net) if compile else net
        self.device = device
        self.precision = precision
        self.name = name
        self.info = info or {}

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, 3, H, W) float in [0, 1] (any device) -> (N, 3, H, W) float32 in [0, 1] on
        the same device as ``x``."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) tensor, got shape {tuple(x.shape)}")
        dtype = _DTYPES.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            y = self.model(x.to(self.device, torch.float32))
        return y.float().clamp_(0, 1).to(x.device)

    def stylize(self, image: Image.Image) -> Image.Image:
        """A PIL image of any mode -> stylized PIL image of the same size.

        RGBA (and LA, transparent palette) inputs keep their alpha channel; others come back RGB.
        """
        rgb, alpha = split_alpha(normalize_mode(image))
        out = tensor_to_pil(self.stylize_tensor(pil_to_tensor(rgb).unsqueeze(0))[0])
        if alpha is not None:
            out.putalpha(alpha)
        return out


def load_stylizer(path: Union[str, Path], device: str = "auto", precision: str = "fp32",
                  fast: Optional[bool] = None, compile: bool = False) -> Stylizer:
    """Load a fast-nst checkpoint (final model or training checkpoint) for stylizing.

    ``device``: "auto" (CUDA if available), "cpu", "cuda" or "cuda:N". ``precision``, ``fast``
    and ``compile``: see :class:`Stylizer`.
    Raises :class:`~fast_nst.errors.FastNSTError` for a missing, foreign or unsafe file.
    """
    model, ckpt = load_model(path)
    name = ckpt.get("config", {}).get("naming") or Path(path).stem
    return Stylizer(model, resolve_device(device), name=str(name),
                    info={"step": ckpt.get("step"), "path": str(path)},
                    precision=precision, fast=fast, compile=compile)
