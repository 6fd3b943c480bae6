"""Stylizing with a PyTorch network: autocast precisions, the fast CPU form, torch.compile and
tiling with shared instance-norm statistics. An arbitrary-style network (model_type adain) runs
the network of the style image(s) given to :meth:`TorchStylizer.set_style`."""

from __future__ import annotations

from typing import Optional

import torch
from PIL import Image

from ..core.device import prepare_compile
from ..core.files import safe_component
from ..core.memory import keep_freed_memory
from ..core.images import tensor_to_pil
from ..core.untrusted.weights import check_finite
from ..nets import NETWORKS
from ..nets.base import StyleNetwork
from ..nets.multistyle import style_label
from .base import DTYPES, OptionError, StylizeOptions, Stylizer, check_input, round_up
from .tiling import context_for, stylize_tiled

__all__ = ["TorchStylizer"]


class TorchStylizer(Stylizer):
    """A network (a registered :class:`~fast_nst.nets.base.StyleNetwork`) on a device.

    ``precision`` "fp32" (default), "bf16" or "fp16" runs the network under autocast (bf16 in
    the fast CPU form: the whole network in bf16). ``fast`` (default: on for fp32 and bf16 on
    CPU) runs the network's
    :meth:`~fast_nst.nets.base.StyleNetwork.fast_inference` form, the same function with fewer
    FLOPs. ``compile`` wraps the network in ``torch.compile``. A multi-style network starts
    in its first style (:meth:`set_style` chooses another or a blend). An arbitrary-style
    network (``style_input`` "image") stylizes only once :meth:`set_style` gave it style images.
    """

    can_tile = True

    def __init__(self, model: StyleNetwork, device: torch.device, name: str = "",
                 info: Optional[dict] = None, precision: str = "fp32", fast: Optional[bool] = None,
                 compile: bool = False):
        super().__init__(device, name, info, precision, compiled=compile)
        # a network built in code (a model file's were checked as it was read) would stylize every
        # photo into a black (or NaN) image
        check_finite(dict(model.named_parameters()), info.get("path", "the model") if info else "the model")
        if precision == "int8":
            raise OptionError("precision int8 runs an onnxruntime quantization of the model: load it "
                              "with load_stylizer(path, precision='int8') (CPU only)")
        if fast is None:
            fast = device.type == "cpu" and precision in ("fp32", "bf16")
        if device.type == "cpu":
            keep_freed_memory()  # no page faults on each forward's fresh activations
        self.fast, self.source = fast, model.to(device).eval()
        self.style_names = list(model.style_names)
        self.style_input = NETWORKS[model.model_type].style_input
        if self.style_input:
            self.min_style_side = model.min_style_side
        self.bytes_per_pixel = model.bytes_per_pixel
        self.runner: Optional[torch.nn.Module] = None  # until an arbitrary-style model has a style
        if self.style_names:
            self.set_style(0)
        elif not self.style_input:
            self._use(self.source)

    def _use(self, net: StyleNetwork) -> None:
        self.net = net  # the trainable form (checkpoints, export)
        # The form that runs: tiling fixes the norm statistics inside it.
        self.runner = self.net.fast_inference() if self.fast else self.net
        if self.fast and self.precision == "bf16" and getattr(self.runner, "runs_in_bf16", False):
            # Weights and activations in bf16 (not autocast): oneDNN's bf16 convolutions and
            # half the memory traffic in the norms; about 53 dB PSNR against fp32 (docs/benchmarks.md).
            self.runner = self.runner.to(torch.bfloat16)
        if self.compiled:
            prepare_compile(self.device)
        self.model = torch.compile(self.runner) if self.compiled else self.runner
        self.bytes_per_pixel = self.runner.bytes_per_pixel

    def _set_style_weights(self, w: torch.Tensor) -> None:
        if self.style is not None and torch.equal(w, self.style):
            return
        self.style = w
        # One style vector is a single-style network (exactly): tiling and the fast CPU form apply.
        self._use(self.source.for_style(w.to(self.device)))
        self.name = safe_component(style_label(w, self.style_names), fallback="stylized")

    def _set_style_images(self, images: list[torch.Tensor], weights: list[float], label: str,
                          alpha: float) -> None:
        """Stylize with the blended statistics of the style ``images`` from now on."""
        with torch.no_grad():
            mean, std = self.source.style_statistics([t.to(self.device) for t in images], weights)
        self._use(self.source.for_style(mean, std, alpha))
        self.name = safe_component(label, fallback="stylized")

    def _require_style(self) -> None:
        if self.runner is None:
            raise self._needs_style_image()

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x)
        self._require_style()
        dtype = DTYPES.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            y = self.model(x.to(self.device, torch.float32))
        return y.float().clamp_(0, 1).to(x.device)

    def tile_size_for(self, height: int, width: int, options: StylizeOptions) -> Optional[int]:
        self._require_style()
        return self._network_tile(height, width, options, self._tile_context())  # deeper networks: more context

    def _grid(self) -> int:  # the runner's tile_grid (8 for AdaIN at relu4_1)
        return int(getattr(self.runner, "tile_grid", 4))

    def _tile_context(self) -> int:
        return round_up(context_for(self.runner), self._grid())

    def _stylize_tiled(self, rgb: Image.Image, tile: int, overlap: int, progress: bool = False) -> Image.Image:
        x, small = self._tiling_inputs(rgb)
        h, w = x.shape[2:]
        x, overlap = self._to_grid(x, overlap)
        y, self.last_tile_count = stylize_tiled(
            self.runner, x, tile, overlap, device=self.device, autocast_dtype=DTYPES.get(self.precision),
            stats_image=small, context=self._tile_context(), progress=progress)
        return tensor_to_pil(y[0, :, :h, :w])


