"""Stylizing with a trained checkpoint: one forward pass of the transform net.

>>> from fast_nst import load_stylizer
>>> s = load_stylizer("models/wave/wave.pth", device="cpu")
>>> out = s.stylize(Image.open("photo.jpg"))   # PIL image of the same size
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from PIL import Image

from .checkpoint import load_model
from .images import normalize_mode, pil_to_tensor, split_alpha, tensor_to_pil
from .model import TransformNet
from .device import resolve_device
from .errors import FastNSTError
from .inference import FastTransformNet
from .tiling import (BYTES_PER_PIXEL, DEFAULT_OVERLAP, DEFAULT_STATS_SIZE, auto_tile_size,
                     stylize_tiled, tile_core)


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
        self.net = model  # the plain network (tiling hooks into its instance norms)
        net: torch.nn.Module = FastTransformNet(model) if fast else model
        self.model = torch.compile(net) if compile else net
        self.compiled = compile
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

    def stylize(self, image: Image.Image, *, tile_size: Union[int, str, None] = "auto",
                overlap: int = DEFAULT_OVERLAP, preserve_color: bool = False, strength: float = 1.0,
                max_size: Optional[int] = None, scale: Optional[float] = None,
                keep_size: bool = False) -> Image.Image:
        """A PIL image of any mode -> its stylization as a PIL image.

        ``max_size`` (longest side) and ``scale`` resize the photo first; the result has the
        processed size unless ``keep_size`` resizes it back. ``tile_size``: "auto" tiles only
        when the image would not fit the memory budget, None never tiles, an int forces tiles of
        that size (see :mod:`fast_nst.tiling`). ``preserve_color`` keeps the photo's colours
        (luminance-only transfer), ``strength`` in [0, 1] blends the result with the photo.
        RGBA (and LA, transparent palette) inputs keep their alpha channel; others come back RGB.
        """
        if not 0.0 <= strength <= 1.0:
            raise FastNSTError(f"strength must be between 0 and 1, got {strength}")
        rgb, alpha = split_alpha(normalize_mode(image))
        original_size = rgb.size
        rgb = resize_for_processing(rgb, max_size, scale)
        if alpha is not None and alpha.size != rgb.size:
            alpha = alpha.resize(rgb.size, Image.Resampling.LANCZOS)
        out = finish(rgb, self._stylize_rgb(rgb, tile_size, overlap), preserve_color, strength,
                     original_size if keep_size else None)
        if keep_size and alpha is not None and alpha.size != out.size:
            alpha = alpha.resize(out.size, Image.Resampling.LANCZOS)
        if alpha is not None:
            out.putalpha(alpha)
        return out

    def _stylize_rgb(self, rgb: Image.Image, tile_size: Union[int, str, None], overlap: int) -> Image.Image:
        w, h = rgb.size
        tiler = self.model if isinstance(self.model, FastTransformNet) else self.net
        if tile_size == "auto":
            tile_size = auto_tile_size(h, w, self.device,
                                       bytes_per_pixel=BYTES_PER_PIXEL[type(tiler).__name__])
        elif tile_size is not None:
            if not isinstance(tile_size, int):
                raise FastNSTError(f"tile_size must be 'auto', None or an integer, got {tile_size!r}")
            try:
                tile_core(tile_size, overlap)
            except ValueError as e:
                raise FastNSTError(str(e)) from None
        if tile_size is None or (h <= tile_size and w <= tile_size):
            self.last_tile_count = 1
            return tensor_to_pil(self.stylize_tensor(pil_to_tensor(rgb).unsqueeze(0))[0])
        # Huge photo: keep it as uint8 (a quarter of float32's memory); tiles convert on the fly.
        x = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).unsqueeze(0)
        small = resize_for_processing(rgb, DEFAULT_STATS_SIZE, None)
        y, self.last_tile_count = stylize_tiled(
            tiler, x, tile_size, overlap, device=self.device,
            autocast_dtype=_DTYPES.get(self.precision), stats_image=pil_to_tensor(small).unsqueeze(0))
        return tensor_to_pil(y[0])


def finish(photo: Image.Image, stylized: Image.Image, preserve_color: bool = False,
           strength: float = 1.0, size: Optional[tuple[int, int]] = None) -> Image.Image:
    """The steps after the network, in order: colour preservation, blending with the photo
    (``strength``), resizing to ``size`` (for keep_size). ``photo`` and ``stylized``: RGB, same size."""
    out = stylized
    if preserve_color:
        out = preserve_colors(photo, out)
    if strength < 1.0:
        out = Image.blend(photo, out, strength)
    if size is not None and out.size != size:
        out = out.resize(size, Image.Resampling.LANCZOS)
    return out


def resize_for_processing(img: Image.Image, max_size: Optional[int], scale: Optional[float]) -> Image.Image:
    """Apply ``scale`` (a factor), then cap the longest side at ``max_size``."""
    w, h = img.size
    if scale is not None:
        if scale <= 0:
            raise FastNSTError(f"scale must be > 0, got {scale}")
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    if max_size is not None:
        if max_size <= 0:
            raise FastNSTError(f"max_size must be > 0, got {max_size}")
        if max(w, h) > max_size:
            f = max_size / max(w, h)
            w, h = max(1, round(w * f)), max(1, round(h * f))
    limit = Image.MAX_IMAGE_PIXELS
    if limit and w * h > max(limit, img.width * img.height):
        # The decompression-bomb limit guards decoding; an upscale must not bypass it (an
        # out-of-memory kill is worse than this message).
        raise FastNSTError(
            f"scale {scale:g} would make a {w} x {h} image ({w * h:,} pixels), more than the image "
            f"size limit of {limit:,} pixels. Use a smaller scale, or raise the limit with "
            "--max_image_pixels N (0 removes it).")
    return img if (w, h) == img.size else img.resize((w, h), Image.Resampling.LANCZOS)


def preserve_colors(content: Image.Image, stylized: Image.Image) -> Image.Image:
    """Luminance-only transfer: Y (brightness) of ``stylized`` with Cb/Cr (colour) of ``content``
    (both RGB, same size), as Gatys et al. (2016), "Preserving colour in neural artistic style
    transfer"."""
    y, _, _ = stylized.convert("YCbCr").split()
    _, cb, cr = content.convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")


def load_stylizer(path: Union[str, Path], device: str = "auto", precision: str = "fp32",
                  fast: Optional[bool] = None, compile: bool = False) -> Stylizer:
    """Load a fast-nst checkpoint (final model or training checkpoint) for stylizing; also a run
    folder (``models/wave`` -> ``models/wave/wave.pth``), an .onnx export or a pytorch/examples model.

    ``device``: "auto" (CUDA if available), "cpu", "cuda" or "cuda:N". ``precision``, ``fast``
    and ``compile``: see :class:`Stylizer`.
    Raises :class:`~fast_nst.errors.FastNSTError` for a missing, foreign or unsafe file.
    """
    if Path(path).is_dir() and (Path(path) / f"{Path(path).name}.pth").is_file():
        path = Path(path) / f"{Path(path).name}.pth"  # a run folder: its final model
    if Path(path).suffix.lower() == ".onnx":
        from .onnx_runtime import load_onnx_stylizer  # optional extra: onnxruntime

        return load_onnx_stylizer(path, device=device, precision=precision)
    model, ckpt = load_model(path)
    name = ckpt.get("config", {}).get("naming") or Path(path).stem
    return Stylizer(model, resolve_device(device), name=str(name),
                    info={"step": ckpt.get("step"), "path": str(path)},
                    precision=precision, fast=fast, compile=compile)
