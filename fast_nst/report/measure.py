"""Stylizing the report's photos with each model, timed, and measuring the results with the loss
network: content loss against the photo, style loss against the style image's Gram matrices.
An AdaIN model is measured with the loss it was trained with (Huang & Belongie 2017): content
against the AdaIN target at its encoder's layer, style against the style image's feature means
and standard deviations.

The losses are training's own terms (:mod:`fast_nst.lossnet.losses`) with the model's config
weights, so they read like TensorBoard's ``loss/content`` and ``loss/style`` (but at the report's
image size rather than the 256 px training crops).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from PIL import Image

from ..core.errors import DataError, FastNSTError
from ..core.images import pil_to_tensor
from ..core.untrusted import open_image, resize_style, style_rgb
from ..lossnet import get_loss_network
from ..lossnet.losses import ContentLoss, StatsStyleLoss, StyleLoss, adain, mean_std
from ..lossnet.vgg import VGGEncoder, WeightFlags, build_loss_network
from ..lossnet import min_side
from .collect import ModelEntry, Photo

__all__ = ["LOSS_SEED", "Result", "Targets", "build_encoder", "load_style", "measure_model", "model_targets",
           "random_warning", "weights_label"]

# Seed of a random loss network: TrainConfig's default seed, so a smoke run's defaults and the
# report measure with the same random VGG.
LOSS_SEED = 42


@dataclass(frozen=True)
class Result:
    """One photo stylized by one model: ``image`` (RGB, the photo's processed size), the
    weighted ``content`` and ``style`` losses (``style`` None without a style image) and the
    stylize time in ``seconds``."""

    photo: str
    model: str
    image: Image.Image
    content: float
    style: Optional[float]
    seconds: float


def weights_label(weights: str, weights_file: Optional[str], loss_model: str) -> str:
    """What the page says the loss network's weights were: the file's name, or "random"."""
    if weights == "random":
        return f"random weights (seed {LOSS_SEED})"
    return Path(weights_file or get_loss_network(loss_model).file).name


def random_warning(loss_model: str) -> str:
    return (f"WARNING: the loss network has RANDOM weights (--loss_model_weights random). This is "
            f"for tests only: the losses in this report do not measure content or style. Use "
            f"--loss_model_weights imagenet (the default; python -m fast_nst.download {loss_model}).")


# The flags of python -m fast_nst.evaluate, for the loss network's messages.
EVALUATE_FLAGS = WeightFlags(file="--loss_model_file FILE", model="--loss_model {name}",
                             random="--loss_model_weights random")


def build_encoder(loss_model: str, weights: str, weights_file: Optional[str], layers: Sequence[str],
                  device: torch.device) -> VGGEncoder:
    """The frozen loss network for ``layers`` on ``device``; ImageNet weights come from
    ``weights_file`` (default: the registry's file, downloaded when missing)."""
    if weights == "random":
        # In the report's terms: vgg.py's own banner speaks of a model learning a style.
        print(f"{'!' * 80}\n{random_warning(loss_model)}\n{'!' * 80}", file=sys.stderr)
    try:
        encoder = build_loss_network(weights, layers, weights_file, seed=LOSS_SEED, quiet=True, name=loss_model,
                                     flags=EVALUATE_FLAGS)
    except ValueError as e:
        raise FastNSTError(str(e)) from None
    return encoder.to(device)


def load_style(model: ModelEntry, loss_model: str) -> Optional[torch.Tensor]:
    """The model's style image (1, 3, h, w) in [0, 1], longest side its config's ``style_size``
    (as training resized it), or None when no style image is known."""
    if model.style_path is None:
        return None
    try:
        # Transparency made white as training and stylizing made it; they said so already.
        img = resize_style(style_rgb(open_image(model.style_path), warn=False), model.settings.style_size, "longer",
                           model.style_path, "style_size (in the model's training config)")
    except DataError as e:
        raise DataError(f"style image of model {model.name} ({model.style_note}): {e}") from None
    x = pil_to_tensor(img).unsqueeze(0)
    s = model.settings
    need = min_side(loss_model, s.style_layers + (s.content_layers if s.content_target == "adain" else ()))
    if min(x.shape[-2:]) < need:
        raise DataError(f"style image {model.style_path} is {x.shape[-1]}x{x.shape[-2]} px at style_size "
                        f"{s.style_size}; the layers it is measured at need at least {need} px per side.")
    return x


@dataclass(frozen=True)
class Targets:
    """What one model's stylizations are measured against: ``style``, a style loss per style layer
    (weight: style_weight x the layer's weight), a :class:`StyleLoss` (the style image's Gram
    matrix) or for an AdaIN model a :class:`StatsStyleLoss` (its feature means and stds), None
    without a style image; and ``adain``, for a model whose content loss is against the AdaIN
    target (settings ``content_target`` "adain"), the style image's feature (mean, std)
    (1, C, 1, 1) at its content layer, which the target is made of."""

    style: Optional[dict[str, torch.nn.Module]]
    adain: Optional[tuple[torch.Tensor, torch.Tensor]] = None


@torch.no_grad()
def model_targets(encoder: VGGEncoder, model: ModelEntry, style: Optional[torch.Tensor],
                  device: torch.device) -> Targets:
    """The :class:`Targets` of ``model`` for its style image ``style`` (1, 3, h, w) in [0, 1] or None."""
    s = model.settings
    if style is None:
        assert s.content_target != "adain", "an arbitrary-style model always has its style image"
        return Targets(None)
    content = list(s.content_layers) if s.content_target == "adain" else []
    feats = encoder(style.to(device), list(dict.fromkeys(list(s.style_layers) + content)))  # one pass for both
    layer_weights = s.style_layer_weights or (1.0,) * len(s.style_layers)
    kind = StatsStyleLoss if s.style_loss == "stats" else StyleLoss  # the loss it was trained with
    losses = {name: kind(feats[name], s.style_weight * w).to(device) for name, w in zip(s.style_layers, layer_weights)}
    return Targets(losses, mean_std(feats[content[0]], unbiased=s.adain_unbiased) if content else None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # kernels run asynchronously: time the work, not the launch


@torch.no_grad()
def _losses(encoder: VGGEncoder, model: ModelEntry, targets: Targets, photo: torch.Tensor,
            out: torch.Tensor) -> tuple[float, Optional[float]]:
    """(content, style) of ``out`` against ``photo``, both (1, 3, H, W) in [0, 1]."""
    s, styles = model.settings, targets.style
    layers = list(dict.fromkeys(s.content_layers + (s.style_layers if styles else ())))
    feats = encoder(out, layers) if layers else {}
    wanted = encoder(photo, s.content_layers) if s.content_layers else {}
    if targets.adain is not None:  # AdaIN training's content target: the photo's features in the style
        wanted = {n: adain(f, *targets.adain, unbiased=s.adain_unbiased) for n, f in wanted.items()}
    content_loss = ContentLoss(s.content_weight)
    content = sum(float(content_loss(feats[n], wanted[n])) for n in s.content_layers)
    style = None if styles is None else sum(float(loss(feats[n])) for n, loss in styles.items())
    return float(content), style


def measure_model(model: ModelEntry, photos: Sequence[Photo], encoder: VGGEncoder, targets: Targets,
                  device: torch.device) -> list[Result]:
    """Stylize every photo with ``model`` (timed) and measure content and style loss."""
    stylizer = model.stylizer
    # One untimed run first: the first call pays one-time costs (allocations, cuDNN's algorithm
    # search, onnxruntime's graph set-up) that are not the model's speed.
    stylizer.stylize(photos[0].image)
    results = []
    for photo in photos:
        _sync(stylizer.device)
        start = time.perf_counter()
        out = stylizer.stylize(photo.image).convert("RGB")
        _sync(stylizer.device)
        seconds = time.perf_counter() - start
        x = pil_to_tensor(photo.image).unsqueeze(0).to(device)  # (1, 3, H, W) in [0, 1]
        y = pil_to_tensor(out).unsqueeze(0).to(device)  # the saved 8-bit result, as a user sees it
        content, style = _losses(encoder, model, targets, x, y)
        results.append(Result(photo.name, model.name, out, content, style, seconds))
    return results
