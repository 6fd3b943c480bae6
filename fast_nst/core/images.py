"""Converting and writing images: any mode Pillow opens becomes RGB (plus alpha where present).
Reading an image file is :func:`fast_nst.core.untrusted.open_image` (the boundary for outside
data: bounded in pixels before decoding).

Tensors are float32 (C, H, W) or (N, C, H, W) in [0, 1].
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .errors import DataError
from .files import atomic_write

__all__ = ["IMAGE_EXTENSIONS", "list_images", "normalize_mode", "split_alpha", "pil_to_tensor", "tensor_to_pil",
           "resize_longest", "save_image", "psnr", "shape_text"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def shape_text(shape: Sequence[int]) -> str:
    """A tensor shape as messages write it: (1, 3, 512, 768) -> "1x3x512x768"."""
    return "x".join(map(str, shape))


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files (by extension, case-insensitive) under ``folder``, sorted for a stable order."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in folder.glob(pattern)
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )


def _to_8bit(img: Image.Image) -> Image.Image:
    """High-bit-depth single-channel images (16-bit PNG, 32-bit int/float) scaled to 8-bit L."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = np.clip(arr, 0.0, 1.0) * 255.0 if arr.max(initial=0) <= 1.0 else np.clip(arr, 0, 255)
    elif img.mode == "I" and arr.max(initial=0) <= 255:
        # mode I made from an 8-bit image (img.convert("I")): 0..255 already; a 16-bit photo that
        # dark (under 0.4 % of full scale everywhere) would be black either way
        arr = np.clip(arr, 0, 255)
    else:  # I;16 variants hold 0..65535; mode I from PNG holds the same range
        arr = np.clip(arr.astype(np.float64) / 257.0, 0, 255)
    return Image.fromarray(np.round(arr).astype(np.uint8), mode="L")


def normalize_mode(img: Image.Image) -> Image.Image:
    """Return an RGB or RGBA image for any Pillow mode (grayscale, CMYK, palette, 16-bit...)."""
    if img.mode in ("RGB", "RGBA"):
        return img
    if img.mode.startswith("I") or img.mode == "F":
        return _to_8bit(img).convert("RGB")
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode == "La":  # Pillow converts premultiplied La only to LA
        return img.convert("LA").convert("RGBA")
    if img.mode in ("LA", "PA", "RGBa"):
        return img.convert("RGBA")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def split_alpha(img: Image.Image) -> tuple[Image.Image, Optional[Image.Image]]:
    """(RGB image, alpha channel or None)."""
    if img.mode == "RGBA":
        return img.convert("RGB"), img.getchannel("A")
    return img, None


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 tensor (3, H, W) in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """Tensor (3, H, W) in [0, 1] (values outside are clipped) -> RGB PIL image."""
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(x.shape)}")
    arr = x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0)
    return Image.fromarray(arr.cpu().numpy(), mode="RGB")


def resize_longest(img: Image.Image, size: Optional[int]) -> Image.Image:
    """Resize so the longest side is ``size`` (None keeps the image as it is)."""
    if size is None or max(img.size) == size:
        return img
    w, h = img.size
    scale = size / max(w, h)
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)


def save_image(img: Image.Image, path: str | Path, quality: int = 95) -> None:
    """Write ``img`` to ``path`` (format from the extension; ``quality`` for JPEG and WebP), creating folders.

    Alpha is kept where the format holds it (PNG, WebP) and dropped otherwise (JPEG, BMP).
    Written to a temporary file and renamed so a failure never leaves half an image.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise DataError(f"{path}: unsupported output extension {ext!r}; use one of "
                        f"{', '.join(IMAGE_EXTENSIONS)}")
    if img.mode == "RGBA" and ext not in (".png", ".webp"):
        if img.getchannel("A").getextrema()[0] < 255:  # some pixel really is transparent
            warnings.warn(f"{path.name}: {ext} cannot hold transparency; it is dropped (use .png "
                          "or .webp to keep it).")
        img = img.convert("RGB")
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(ext, ext[1:].upper())
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:
            img.save(tmp, format=fmt, **kwargs)
    except OSError as e:
        raise DataError(f"Cannot write {path}: {e.strerror or e}; choose a writable output location.") from None


def psnr(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of ``a`` against ``b``, images of the same shape with
    pixels in [0, 1] (values outside are clipped first, as saving would); inf when equal."""
    a, b = (torch.as_tensor(v).float().clamp(0, 1) for v in (a, b))
    mse = torch.mean((a - b) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
