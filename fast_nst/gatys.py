"""Optimisation-based style transfer (Gatys, Ecker & Bethge, 2016): no trained network, the output
image's pixels themselves are optimised against the VGG content, style (Gram) and TV losses.

``python -m fast_nst.optimize --content photo.jpg --style wave.jpg --output out.jpg``

>>> from fast_nst import optimize
>>> img = optimize("photo.jpg", "wave.jpg", image_size=512, steps=300)   # PIL image

It reuses the loss networks of :mod:`fast_nst.lossnet` (any registered one) and its loss
modules (one Gram matrix implementation, always float32).
"""

from __future__ import annotations

import functools
import math
import numbers
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from .core.device import resolve_device
from .core.errors import FastNSTError
from .core.images import pil_to_tensor, resize_longest, save_image, tensor_to_pil
from .core.untrusted import MAX_STYLE_PIXELS, open_image, resize_side, resize_style, style_rgb
from .core.untrusted import shown as shown_text
from .lossnet import LOSS_NETWORKS, get_loss_network, layer_choices, layer_names, min_side
from .lossnet.losses import PerceptualLoss
from .lossnet.vgg import VGGEncoder, build_loss_network
from .stylize import load_stylizer, preserve_colors

__all__ = ["DEFAULT_IMAGE_SIZE", "DEFAULT_STEPS", "GatysObjective", "INITS", "OPTIMIZERS", "PRECISIONS",
           "PRESETS", "intermediate_path", "optimize", "random_weights_warning", "resolve_layers",
           "scale_sizes"]

ImageLike = Union[str, Path, Image.Image]

# Layers of the two classic recipes.
PRESETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # Gatys et al. (2016), Sec. 2-3: content conv4_2, style conv1_1 ... conv5_1 (after the ReLU).
    "gatys": (("relu4_2",), ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")),
    # Johnson et al. (2016), Sec. 3: content relu2_2, style relu1_2, relu2_2, relu3_3, relu4_3.
    "johnson": (("relu2_2",), ("relu1_2", "relu2_2", "relu3_3", "relu4_3")),
}
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "style", "noise")
PRECISIONS = ("fp32", "bf16")

# Loss weights. Our losses are normalised like PyTorch's "Neural Transfer Using PyTorch" tutorial
# (ImageNet-normalised [0, 1] input, feature MSE, Gram / (C*H*W), Gram MSE), which optimises with
# content weight 1 and style weight 1e6; we keep those. Gatys et al. use no TV term; a small one
# (try 1-10) removes high-frequency noise, mostly wanted with --init noise.
DEFAULT_CONTENT_WEIGHT = 1.0
DEFAULT_STYLE_WEIGHT = 1e6
DEFAULT_TV_WEIGHT = 0.0
# 300 L-BFGS steps: the PyTorch tutorial's num_steps (jcjohnson/neural-style runs 1000).
DEFAULT_STEPS = 300
# L-BFGS takes its step from a strong-Wolfe line search, so lr 1 is its natural scale. Adam on
# [0, 1] pixels: jcjohnson/neural-style's learning_rate 10 on 0-255 pixels is ~0.04; 0.02 is steadier.
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}
DEFAULT_IMAGE_SIZE = 512


class GatysObjective(PerceptualLoss):
    """:class:`~fast_nst.losses.PerceptualLoss` of one image against a fixed content image: the
    content targets are computed once, since the content never changes during optimisation.
    ``forward(image)`` returns the same terms (``content``, ``style/<layer>``, ``style``, ``tv``,
    ``total``)."""

    def __init__(self, encoder: VGGEncoder, content: torch.Tensor, style: torch.Tensor,
                 content_layers: Sequence[str], style_layers: Sequence[str],
                 content_weight: float, style_weight: float, tv_weight: float,
                 style_layer_weights: Optional[Sequence[float]] = None):
        super().__init__(encoder, style, content_layers, style_layers, content_weight, style_weight,
                         tv_weight, style_layer_weights)
        with torch.no_grad():
            feats = encoder(content, self.content_layers) if self.content_layers else {}
        self.content_targets = {k: v.detach().float() for k, v in feats.items()}

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self.terms(image, self.content_targets)


def random_weights_warning(loss_model: str, weights_file: Union[str, Path]) -> str:
    """The warning printed when optimising against a loss network with random weights."""
    command = f"python -m fast_nst.download {loss_model}"
    if Path(weights_file) != Path(get_loss_network(loss_model).file):
        command += f" --dest {weights_file}"
    return (
        f"WARNING: the loss network has RANDOM weights (--loss_model_weights random). This is for "
        f"tests and smoke runs only: the result is NOT a real style transfer. For a real one use "
        f"--loss_model_weights imagenet (the default), which loads "
        f"{get_loss_network(loss_model).summary.split(' (')[0]} weights from {weights_file}; get them "
        f"with {command}."
    )


def resolve_layers(loss_model: str, preset: str, content_layers: Optional[Sequence[str]],
                   style_layers: Optional[Sequence[str]],
                   style_layer_weights: Optional[Sequence[float]]) -> tuple[list[str], list[str]]:
    """(content layers, style layers): the preset's, overridden by explicit lists; validated."""
    if loss_model not in LOSS_NETWORKS:
        raise FastNSTError(f"Unknown loss model {loss_model!r}; choose one of: {', '.join(LOSS_NETWORKS)}")
    if preset not in PRESETS:
        raise FastNSTError(f"Unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    preset_content, preset_style = PRESETS[preset]
    content = list(preset_content if content_layers is None else content_layers)
    style = list(preset_style if style_layers is None else style_layers)
    valid = layer_choices(loss_model)
    for flag, names in (("--content_layers", content), ("--style_layers", style)):
        bad = [n for n in names if n not in valid]
        if bad:
            raise FastNSTError(f"{flag}: unknown {loss_model.upper()} layer(s) {', '.join(bad)}; "
                               f"choose from: {', '.join(valid)}")
    if not style:
        raise FastNSTError("--style_layers: give at least one style layer.")
    if style_layer_weights is not None and len(style_layer_weights) != len(style):
        raise FastNSTError(f"--style_layer_weights has {len(style_layer_weights)} weights for "
                           f"{len(style)} style layers ({', '.join(style)}); give one per layer.")
    return content, style


def _as_image(image: ImageLike, style: bool = False) -> Image.Image:
    """An RGB image of ``image`` (a PIL image or a path); a ``style`` image's transparency
    composited onto white (with a warning), as every command reads style images."""
    if isinstance(image, Image.Image):
        img, name = image, getattr(image, "filename", "") or ""
    else:
        img, name = open_image(image), image
    return style_rgb(img, name) if style else img.convert("RGB")


def scale_sizes(image_size: int, scales: int) -> list[int]:
    """Longest sides for multi-scale optimisation: halving from ``image_size``, smallest first."""
    return [max(1, round(image_size / 2 ** (scales - 1 - k))) for k in range(scales)]


def intermediate_path(output: Union[str, Path], step: int) -> Path:
    """``out.jpg`` -> ``out_step0100.jpg``."""
    output = Path(output)
    return output.with_name(f"{output.stem}_step{step:04d}{output.suffix}")


def _check_intermediates(output: Optional[Union[str, Path]], save_every: int, last_step: int,
                         inputs: dict[str, Any]) -> None:
    """FastNSTError, before any work, when an image saved every ``save_every`` steps (up to
    ``last_step``) would replace one of the ``inputs`` ({what: image, path or other}) given as
    a path: ``--content out_step0001.jpg --output out.jpg --save_every 1`` overwrote the photo."""
    if not save_every or output is None:
        return
    for what, given in inputs.items():
        if not isinstance(given, (str, Path)) or not Path(given).is_file():
            continue
        path, out = Path(given).resolve(), Path(output).resolve()
        found = re.fullmatch(re.escape(out.stem) + r"_step(\d{4,})" + re.escape(out.suffix), path.name)
        step = int(found.group(1)) if found and path.parent == out.parent else 0
        if 0 < step <= last_step and step % save_every == 0 and intermediate_path(out, step) == path:
            raise FastNSTError(f"--save_every {save_every} would write step {step}'s image to {given}, "
                               f"the {what} image; choose another --output (or no --save_every).")


def _init_image(init: str, content: torch.Tensor, style_img: Image.Image, content_pil: Image.Image,
                device: torch.device, seed: int) -> torch.Tensor:
    if init == "content":
        return content.clone()
    if init == "style":  # the style image stretched to the content's size
        h, w = content.shape[-2:]
        return pil_to_tensor(style_img.resize((w, h), Image.Resampling.LANCZOS)).unsqueeze(0).to(device)
    if init == "noise":  # white noise, as Gatys et al.; seeded
        g = torch.Generator().manual_seed(seed)
        return torch.rand(content.shape, generator=g).to(device)
    # A trained fast-nst model: start from its stylization and refine it; an arbitrary-style
    # one stylizes with the style image being optimised for.
    stylizer = load_stylizer(init, device=str(device))
    if stylizer.style_input == "image":
        stylizer.set_style(style_img)
    out = stylizer.stylize(content_pil, tile_size=None)
    return pil_to_tensor(out).unsqueeze(0).to(device)


def _check_init(init: str) -> None:
    if init in INITS:
        return
    path = Path(init)
    if not path.is_file():
        raise FastNSTError(f"--init must be one of {', '.join(INITS)} or a path to a trained fast-nst "
                           f"model (.pth); {init!r} is neither (no such file).")


def optimize(
    content_image: ImageLike, style_image: ImageLike, *,
    loss_model: str = "vgg16", loss_model_weights: str = "imagenet",
    loss_model_file: Optional[Union[str, Path]] = None, preset: str = "gatys",
    content_layers: Optional[Sequence[str]] = None, style_layers: Optional[Sequence[str]] = None,
    style_layer_weights: Optional[Sequence[float]] = None, optimizer: str = "lbfgs",
    steps: int = DEFAULT_STEPS, lr: Optional[float] = None,
    image_size: Optional[int] = DEFAULT_IMAGE_SIZE, style_size: Optional[int] = None,
    init: str = "content", content_weight: float = DEFAULT_CONTENT_WEIGHT,
    style_weight: float = DEFAULT_STYLE_WEIGHT, tv_weight: float = DEFAULT_TV_WEIGHT,
    device: str = "auto", preserve_color: bool = False, save_every: int = 0,
    output: Optional[Union[str, Path]] = None, scales: int = 1, precision: str = "fp32",
    seed: int = 0, progress: bool = True, history: Optional[list] = None,
    callback: Optional[Callable[[int, dict[str, float]], None]] = None,
) -> Image.Image:
    """Gatys et al.'s style transfer: optimise the pixels of an image (RGB PIL, longest side
    ``image_size``, the content's aspect ratio) so its VGG features match ``content_image`` and its
    Gram matrices match ``style_image``.

    ``steps`` loss evaluations per scale (never more; L-BFGS stops early only at a zero
    gradient); ``scales`` > 1 optimises at half, quarter... size first
    and upsamples between scales. ``style_size`` (longest side of the style image) defaults to
    ``image_size`` and shrinks with the scale. ``init``: "content", "style", "noise" or a path to
    a trained fast-nst model whose stylization is refined. ``history``, if given, receives one dict
    of float loss terms per step plus a last one for the final image; ``callback(step, terms)`` is
    called with the same dicts. With ``save_every`` K > 0 and ``output``, every K-th step's image is
    saved as ``<output stem>_step<k><suffix>``. Raises :class:`~fast_nst.core.errors.FastNSTError` for
    anything a user can get wrong.
    """
    _check_arguments(optimizer, precision, loss_model_weights, steps, scales, image_size,
                     style_size, save_every, lr, content_weight, style_weight, tv_weight, seed)
    _check_intermediates(output, save_every, steps * scales,
                         {"content": content_image, "style": style_image, "init": init})
    content_layers, style_layers = resolve_layers(loss_model, preset, content_layers, style_layers,
                                                  style_layer_weights)
    _check_init(init)
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    dev = resolve_device(device)
    content_full, style_full = _as_image(content_image), _as_image(style_image, style=True)
    final_content = _final_content(content_full, image_size)
    final_size = max(final_content.size)
    style_size = style_size if style_size is not None else final_size
    sizes = scale_sizes(final_size, scales)
    need = _check_content_size(content_full, sizes[0], loss_model, content_layers + style_layers)
    encoder = _encoder(loss_model, loss_model_weights, loss_model_file, content_layers + style_layers,
                       seed).to(dev)
    autocast = functools.partial(_autocast, dev, torch.bfloat16 if precision == "bf16" else None)

    def objective_at(content: torch.Tensor, size: int) -> GatysObjective:
        style = _style_at(style_full, max(1, round(style_size * size / final_size)), need, dev)
        with autocast():
            return GatysObjective(encoder, content, style, content_layers, style_layers,
                                  content_weight, style_weight, tv_weight, style_layer_weights)

    bar = tqdm(total=steps * len(sizes), desc="optimize", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    report = _Reporter(bar, history, callback, save_every, output, preserve_color, final_content)
    step, image = 0, None
    try:
        for size in sizes:
            report.content = final_content if size == final_size else resize_longest(content_full, size)
            content = pil_to_tensor(report.content).unsqueeze(0).to(dev)
            objective = objective_at(content, size)
            x = _start_image(image, init, content, style_full, report.content, dev, seed)
            step = _run_scale(objective, x, optimizer, lr, steps, step, autocast, report)
            image = x.detach()
        with torch.no_grad(), autocast():
            report.terms(step, {k: float(v) for k, v in objective(image).items()})
    finally:
        bar.close()
    return _to_output(image, report.content, preserve_color)


def _autocast(dev: torch.device, dtype: Optional[torch.dtype]):
    """bf16 autocast on ``dev`` where ``dtype`` is given, else a context that changes nothing."""
    return torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _start_image(image: Optional[torch.Tensor], init: str, content: torch.Tensor, style: Image.Image,
                 shown: Image.Image, dev: torch.device, seed: int) -> torch.Tensor:
    """The pixels a scale optimises, (1, 3, H, W) float32 in [0, 1] with gradients: the ``init``
    image on the first scale (``image`` None), else the previous scale's ``image`` upsampled to
    ``content``'s size."""
    if image is None:
        start = _init_image(init, content, style, shown, dev, seed)
    else:
        start = F.interpolate(image, size=content.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)
    return start.detach().float().contiguous().clone().requires_grad_(True)


def _check_arguments(optimizer: str, precision: str, loss_model_weights: str, steps: int, scales: int,
                     image_size: Optional[int], style_size: Optional[int], save_every: int,
                     lr: Optional[float], content_weight: float, style_weight: float,
                     tv_weight: float, seed: int = 0) -> None:
    """FastNSTError (naming the flag) for any argument out of range, before any work."""
    for name, value, choices in (("optimizer", optimizer, OPTIMIZERS), ("precision", precision, PRECISIONS),
                                 ("loss_model_weights", loss_model_weights, ("imagenet", "random"))):
        if value not in choices:
            raise FastNSTError(f"Unknown {name} {value!r}; choose one of: {', '.join(choices)}")
    # Types too: the API takes any object, and "64" or None used to fail later in a TypeError.
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2 ** 63:
        raise FastNSTError(f"--seed must be a whole number from 0 to 2**63 - 1, got {shown_text(repr(seed), 60)}")
    for name, value, low in (("steps", steps, 1), ("scales", scales, 1), ("image_size", image_size, 1),
                             ("style_size", style_size, 1), ("save_every", save_every, 0)):
        optional = name in ("image_size", "style_size")
        if not (optional and value is None) and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                                                 or value < low):
            raise FastNSTError(f"--{name} must be a whole number >= {low}, got {shown_text(repr(value), 60)}")
    for name, value in (("lr", lr), ("content_weight", content_weight), ("style_weight", style_weight),
                        ("tv_weight", tv_weight)):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and \
            (value > 0 if name == "lr" else value >= 0)
        if not ok and not (name == "lr" and value is None):
            raise FastNSTError(f"--{name} must be a finite number {'> 0' if name == 'lr' else '>= 0'}, "
                               f"got {shown_text(repr(value), 60)}")


def _final_content(content: Image.Image, image_size: Optional[int]) -> Image.Image:
    """The content image at ``image_size`` (longest side). The whole image is optimised at once
    (no tiles), like a style image: the same pixel cap, checked before the resize (an upscale to
    --image_size 100000 would need ~30 GB for itself)."""
    return resize_side(content, image_size, "longer", MAX_STYLE_PIXELS,
                       f"The content image at --image_size {image_size}", "lower --image_size")


def _check_content_size(content: Image.Image, smallest_side: int, loss_model: str,
                        layers: Sequence[str]) -> int:
    """The smallest side the layers need; FastNSTError if the smallest scale is below it."""
    need = min_side(loss_model, layers)
    smallest = resize_longest(content, smallest_side)
    if min(smallest.size) < need:
        deepest = max(layers, key=layer_names(get_loss_network(loss_model).arch).index)
        raise FastNSTError(
            f"the content image at {smallest.size[0]}x{smallest.size[1]} px is too small for layer "
            f"{deepest}; it needs at least {need} px on each side (raise --image_size or lower --scales).")
    return need


def _style_at(style: Image.Image, size: int, need: int, device: torch.device) -> torch.Tensor:
    """The style image (1, 3, h, w) in [0, 1], longest side ``size``, on ``device``."""
    x = pil_to_tensor(resize_style(style, size, "longer", "", "--style_size")).unsqueeze(0).to(device)
    if min(x.shape[-2:]) < need:
        raise FastNSTError(f"the style image at {x.shape[-1]}x{x.shape[-2]} px is too "
                           f"small for the chosen layers; it needs at least {need} px on each "
                           "side (raise --style_size).")
    return x


def _encoder(loss_model: str, weights: str, weights_file: Optional[Union[str, Path]],
             layers: Sequence[str], seed: int) -> VGGEncoder:
    file = weights_file if weights_file is not None else get_loss_network(loss_model).file
    if weights == "random":
        # Loud on purpose, like training's banner, but in optimize's terms: vgg.py's wording
        # speaks of a model learning a style, and there is no model here.
        print(f"{'!' * 80}\n{random_weights_warning(loss_model, file)}\n{'!' * 80}", file=sys.stderr)
    try:
        return build_loss_network(weights, layers, file, seed=seed, quiet=True, name=loss_model)
    except ValueError as e:
        raise FastNSTError(str(e)) from None


def _to_output(x: torch.Tensor, content_pil: Image.Image, preserve_color: bool) -> Image.Image:
    out = tensor_to_pil(x[0].cpu())
    if preserve_color:
        out = preserve_colors(content_pil, out)
    return out


class _BudgetSpent(Exception):
    """Raised by the L-BFGS closure when asked for an evaluation beyond ``--steps``."""


@dataclass
class _Reporter:
    """Where each evaluation's loss terms go: ``history``, ``callback``, the progress ``bar``, and
    every ``save_every``-th image to ``output`` (made like the result from ``content``, the
    current scale's content image)."""

    bar: Any
    history: Optional[list]
    callback: Optional[Callable[[int, dict[str, float]], None]]
    save_every: int
    output: Optional[Union[str, Path]]
    preserve_color: bool
    content: Image.Image

    def terms(self, step: int, values: dict[str, float]) -> None:
        """The terms of evaluation ``step`` (or of the final image) to history and callback."""
        if self.history is not None:
            self.history.append(values)
        if self.callback is not None:
            self.callback(step, values)

    def evaluated(self, step: int, values: dict[str, float], x: torch.Tensor) -> None:
        """Evaluation ``step`` of image ``x`` (1, 3, H, W): its terms, the bar, the saved image."""
        self.terms(step, values)
        self.bar.set_postfix({k: f"{values[k]:.3g}" for k in ("total", "content", "style", "tv")},
                             refresh=False)
        self.bar.update(1)
        if self.save_every and self.output is not None and step % self.save_every == 0:
            # The image this loss was measured on.
            save_image(_to_output(x.detach(), self.content, self.preserve_color),
                       intermediate_path(self.output, step))

    def scale_done(self, steps: int, done: int) -> None:
        if done < steps:  # L-BFGS stopped early (zero gradient, no descent direction)
            self.bar.total -= steps - done  # so the bar still ends full, without counting steps not run
            self.bar.refresh()


def _run_scale(objective: GatysObjective, x: torch.Tensor, optimizer: str, lr: float, steps: int,
               step: int, autocast: Callable[[], Any], report: _Reporter) -> int:
    """At most ``steps`` loss evaluations optimising ``x`` in place; returns the global step count
    after them (``step`` plus the evaluations actually run).

    Adam: one step per evaluation, pixels clamped to [0, 1] after each. L-BFGS: a single
    ``step()`` running up to ``steps`` evaluations (like jcjohnson/neural-style's maxIter, one
    evaluation per iteration unless the line search needs more); pixels are left unconstrained
    during the run, as in Gatys et al., since clamping between iterations invalidates the
    curvature history, and the output is clipped to [0, 1].
    """
    counter = [step]
    best: list = [math.inf, None]  # lowest loss evaluated in this scale and its image

    def closure() -> torch.Tensor:
        if counter[0] - step >= steps:
            # torch's L-BFGS checks max_eval only after a whole strong-Wolfe line search, which
            # can ask for several more evaluations; ending step() here keeps --steps exact.
            raise _BudgetSpent
        opt.zero_grad(set_to_none=True)
        with autocast():
            terms = objective(x)
        loss = terms["total"]
        if not torch.isfinite(loss):
            raise FastNSTError(f"the loss became {float(loss.detach())} at step {counter[0] + 1}; lower "
                               "--lr or the loss weights, or use --optimizer adam.")
        loss.backward()
        # One device-to-host copy for all terms (float() on each would sync once per term).
        values = dict(zip(terms, torch.stack([v.detach().float() for v in terms.values()]).tolist()))
        counter[0] += 1
        if optimizer == "lbfgs" and values["total"] < best[0]:
            best[:] = [values["total"], x.detach().clone()]
        report.evaluated(counter[0], values, x)
        return loss

    if optimizer == "lbfgs":
        # Tolerances 0: --steps decides when to stop (the defaults stop early on small losses).
        opt = torch.optim.LBFGS([x], lr=lr, max_iter=steps, max_eval=steps, history_size=100,
                                line_search_fn="strong_wolfe", tolerance_grad=0.0,
                                tolerance_change=0.0)
        try:
            opt.step(closure)
        except _BudgetSpent:
            # Stopped inside a line search: x sits at a trial point that was never evaluated.
            # Keep the best image evaluated instead, so the output is one whose loss was seen.
            with torch.no_grad():
                x.copy_(best[1])
    else:
        opt = torch.optim.Adam([x], lr=lr)
        for _ in range(steps):
            opt.step(closure)
            with torch.no_grad():
                x.clamp_(0, 1)  # keep pixels valid
    report.scale_done(steps, counter[0] - step)
    return counter[0]
