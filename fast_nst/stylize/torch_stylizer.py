"""Stylizing with a PyTorch network: autocast precisions, the fast CPU form, torch.compile and
tiling with shared instance-norm statistics."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from PIL import Image

from ..core.errors import CheckpointError
from ..core.files import safe_component
from ..core.images import pil_to_tensor, tensor_to_pil
from ..nets.base import StyleNetwork
from ..nets.multistyle import StyleSpec, resolve_style, style_label
from .base import DTYPES, OptionError, StylizeOptions, Stylizer, check_batch, resize_for_processing
from .tiling import DEFAULT_STATS_SIZE, auto_tile_size, context_for, stylize_tiled, tile_core

__all__ = ["TorchStylizer"]


class TorchStylizer(Stylizer):
    """A network (a registered :class:`~fast_nst.nets.base.StyleNetwork`) on a device.

    ``precision`` "fp32" (default), "bf16" or "fp16" runs the network under autocast.
    ``fast`` (default: on for fp32 on CPU) runs the network's
    :meth:`~fast_nst.nets.base.StyleNetwork.fast_inference` form, the same function with fewer
    FLOPs. ``compile`` wraps the network in ``torch.compile``. A multi-style network starts
    in its first style (:meth:`set_style` chooses another or a blend).
    """

    can_tile = True

    def __init__(self, model: StyleNetwork, device: torch.device, name: str = "",
                 info: Optional[dict] = None, precision: str = "fp32", fast: Optional[bool] = None,
                 compile: bool = False):
        super().__init__(device, name, info, precision, compiled=compile)
        bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:  # it would stylize every photo into a black (or NaN) image
            raise CheckpointError(f"{info.get('path', 'the model') if info else 'the model'}: its weights "
                                  f"are NaN or infinite ({', '.join(bad[:3])}); the training that wrote "
                                  "it diverged. Use an earlier checkpoint or train again with a lower lr.")
        if fast is None:
            fast = device.type == "cpu" and precision == "fp32"
        self.fast, self.source = fast, model.to(device).eval()
        self.style_names = list(model.style_names)
        if self.style_names:
            self.set_style(0)
        else:
            self._use(self.source)

    def _use(self, net: StyleNetwork) -> None:
        self.net = net  # the trainable form (checkpoints, export)
        # The form that runs: tiling fixes the norm statistics inside it.
        self.runner = self.net.fast_inference() if self.fast else self.net
        self.model = torch.compile(self.runner) if self.compiled else self.runner
        self.bytes_per_pixel = self.runner.bytes_per_pixel

    def set_style(self, style: StyleSpec) -> None:
        if not self.style_names:
            super().set_style(style)
        w = resolve_style(style, self.style_names)
        if self.style is not None and torch.equal(w, self.style):
            return
        self.style = w
        # One style vector is a single-style network (exactly): tiling and the fast CPU form apply.
        self._use(self.source.for_style(w.to(self.device)))
        self.name = safe_component(style_label(w, self.style_names), fallback="stylized")

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor) -> torch.Tensor:
        check_batch(x)
        dtype = DTYPES.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            y = self.model(x.to(self.device, torch.float32))
        return y.float().clamp_(0, 1).to(x.device)

    def tile_size_for(self, height: int, width: int, options: StylizeOptions) -> Optional[int]:
        context = context_for(self.runner)  # deeper networks need more context than the default
        if options.tile_size == "auto":
            return auto_tile_size(height, width, self.device, bytes_per_pixel=self.bytes_per_pixel,
                                  min_tile=2 * (context + options.overlap) + 64)
        if options.tile_size is not None:
            try:
                tile_core(options.tile_size, options.overlap, context)
            except ValueError as e:
                raise OptionError(f"tile_size: {e} for this network") from None
        return options.tile_size

    def _stylize_tiled(self, rgb: Image.Image, tile: int, overlap: int, progress: bool = False) -> Image.Image:
        # Huge photo: keep it as uint8 (a quarter of float32's memory); tiles convert on the fly.
        x = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).unsqueeze(0)
        small = resize_for_processing(rgb, DEFAULT_STATS_SIZE, None)
        y, self.last_tile_count = stylize_tiled(
            self.runner, x, tile, overlap, device=self.device, autocast_dtype=DTYPES.get(self.precision),
            stats_image=pil_to_tensor(small).unsqueeze(0), progress=progress)
        return tensor_to_pil(y[0])
