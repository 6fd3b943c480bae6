"""Stylizing with a trained checkpoint: one forward pass of the transform net.

>>> from fast_nst import load_stylizer
>>> s = load_stylizer("models/wave/wave.pth", device="cpu")
>>> out = s.stylize(Image.open("photo.jpg"))   # PIL image of the same size
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import torch
from PIL import Image

from .checkpoint import load_model
from .images import normalize_mode, pil_to_tensor, split_alpha, tensor_to_pil
from .model import TransformNet
from .device import resolve_device


class Stylizer:
    """A transform net on a device, ready to stylize images or tensors."""

    def __init__(self, model: TransformNet, device: torch.device, name: str = "", info: Any = None):
        self.model = model.to(device).eval()
        self.device = device
        self.name = name
        self.info = info or {}

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, 3, H, W) float in [0, 1] (any device) -> (N, 3, H, W) float32 in [0, 1] on
        the same device as ``x``."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) tensor, got shape {tuple(x.shape)}")
        y = self.model(x.to(self.device, torch.float32))
        return y.to(x.device)

    def stylize(self, image: Image.Image) -> Image.Image:
        """A PIL image of any mode -> stylized PIL image of the same size.

        RGBA (and LA, transparent palette) inputs keep their alpha channel; others come back RGB.
        """
        rgb, alpha = split_alpha(normalize_mode(image))
        out = tensor_to_pil(self.stylize_tensor(pil_to_tensor(rgb).unsqueeze(0))[0])
        if alpha is not None:
            out.putalpha(alpha)
        return out


def load_stylizer(path: Union[str, Path], device: str = "auto") -> Stylizer:
    """Load a fast-nst checkpoint (final model or training checkpoint) for stylizing.

    ``device``: "auto" (CUDA if available), "cpu", "cuda" or "cuda:N".
    Raises :class:`~fast_nst.errors.FastNSTError` for a missing, foreign or unsafe file.
    """
    model, ckpt = load_model(path)
    name = ckpt.get("config", {}).get("naming") or Path(path).stem
    return Stylizer(model, resolve_device(device), name=str(name),
                    info={"step": ckpt.get("step"), "path": str(path)})
