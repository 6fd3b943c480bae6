"""Perceptual losses of Johnson et al. (2016): content (feature MSE), style (Gram MSE) and
total variation. Each loss is a small module holding its weight (and its target, for style).

For arbitrary style transfer (Huang & Belongie 2017): :func:`mean_std`, :func:`adain` and
:class:`AdaINLoss` (content against the AdaIN target, style as matching feature statistics).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .vgg import VGGEncoder

__all__ = ["ADAIN_EPS", "ADAIN_STYLE_LAYERS", "AdaINLoss", "ContentLoss", "PerceptualLoss", "StatsStyleLoss",
           "StyleLoss", "TVLoss", "adain", "gram_matrix", "instance_normalised", "mean_std", "stats_distance",
           "tf32_grams"]

# Huang & Belongie (2017), Sec. 6.1: the style loss matches the statistics at relu1_1, relu2_1,
# relu3_1 and relu4_1 of VGG-19 (the encoder's last layer).
ADAIN_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
# The epsilon under the variance: instance norm's default, and the one of the authors' code.
ADAIN_EPS = 1e-5


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices of ``features`` (N, C, H, W) -> (N, C, C), normalised by C*H*W.

    Always computed in float32 (fp16 Grams overflow, bf16 ones lose the small differences the
    style loss measures), with autocast disabled for the matmul.
    """
    n, c, h, w = features.shape
    with torch.autocast(device_type=features.device.type, enabled=False):
        if c > 1 and features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous():
            # channels_last: (N, H*W, C) is a view, where (N, C, H*W) would be a copy.
            f = features.permute(0, 2, 3, 1).reshape(n, h * w, c).float()  # (N, H*W, C)
            return torch.bmm(f.transpose(1, 2), f) / (c * h * w)  # (N, C, C)
        f = features.reshape(n, c, h * w).float()  # (N, C, H*W)
        return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)  # (N, C, C)


@contextmanager
def tf32_grams(enabled: bool) -> Iterator[None]:
    """While active (``enabled``), CUDA runs float32 matmuls, i.e. the Gram matrices, on TF32
    tensor cores; restores the previous setting after.

    For bf16/fp16 training only: the Gram's inputs are then bf16/fp16 features, exactly
    representable in TF32 (10-bit mantissa, 8-bit exponent), and TF32 accumulates in float32,
    so the forward Gram is unchanged while the matmul runs several times faster than on the
    float32 cores (~100 GFLOP per step at batch 16, 256 px). fp32 training keeps exact Grams.
    """
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = previous or enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


class ContentLoss(nn.Module):
    """weight * MSE(features of output, features of content photo) at one layer."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def forward(self, output_features: torch.Tensor, content_features: torch.Tensor) -> torch.Tensor:
        return self.weight * F.mse_loss(output_features.float(), content_features.float())


class StyleLoss(nn.Module):
    """weight * MSE(Gram(output features), Gram(style features)) at one layer, against one of
    K styles.

    The target Grams (K, C, C) are computed once from the style images' features (a list of K
    tensors (1, C, h_k, w_k): the images may differ in size) and stored as a buffer; the one of
    ``style`` (a 0-dim long tensor, so a compiled loss serves every style) broadcasts over the
    batch. ``scales`` (K,) multiply ``weight`` per style (default all 1).
    """

    def __init__(self, style_features: Union[torch.Tensor, Sequence[torch.Tensor]], weight: float,
                 scales: Optional[Sequence[float]] = None):
        super().__init__()
        self.weight = weight
        feats = [style_features] if torch.is_tensor(style_features) else list(style_features)
        self.register_buffer("target", torch.cat([gram_matrix(f.detach()) for f in feats]))  # (K, C, C)
        self.register_buffer("scales", torch.tensor(scales or [1.0] * len(feats), dtype=torch.float32))

    def forward(self, output_features: torch.Tensor, style: Optional[torch.Tensor] = None) -> torch.Tensor:
        gram = gram_matrix(output_features)  # (N, C, C)
        k = style if style is not None else torch.zeros((), dtype=torch.long, device=gram.device)
        target = self.target.index_select(0, k.reshape(1))  # (1, C, C)
        scale = self.scales.index_select(0, k.reshape(1))[0]
        return self.weight * scale * F.mse_loss(gram, target.expand_as(gram))


class TVLoss(nn.Module):
    """weight * (mean squared horizontal + mean squared vertical neighbour difference) of an image
    (N, 3, H, W) in [0, 1]."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image = image.float()
        dx = image[..., :, 1:] - image[..., :, :-1]
        dy = image[..., 1:, :] - image[..., :-1, :]
        zero = image.new_zeros(())
        tv = (dx.pow(2).mean() if dx.numel() else zero) + (dy.pow(2).mean() if dy.numel() else zero)
        return self.weight * tv


class PerceptualLoss(nn.Module):
    """Content + style + TV loss against a style image (or one of several), for a batch of
    content photos.

    ``style_image``: (1, 3, h, w) in [0, 1], or a list of K such images (sizes may differ) for
    a multi-style network, with ``style_scales`` (K,) multiplying ``style_weight`` per style.
    ``forward(output, content, style=None)`` (``style``: the style's index as a 0-dim long
    tensor, default the first) returns a dict of scalar float32 terms: ``content``,
    ``style/<layer>`` for each style layer, ``style`` (their sum), ``tv`` and ``total``.
    """

    def __init__(
        self,
        encoder: VGGEncoder,
        style_image: Union[torch.Tensor, Sequence[torch.Tensor]],
        content_layers: Sequence[str],
        style_layers: Sequence[str],
        content_weight: float,
        style_weight: float,
        tv_weight: float,
        style_layer_weights: Optional[Sequence[float]] = None,
        style_scales: Optional[Sequence[float]] = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.content_layers = list(content_layers)
        self.style_layers = list(style_layers)
        self.output_layers = list(dict.fromkeys(self.content_layers + self.style_layers))
        layer_weights = style_layer_weights or [1.0] * len(self.style_layers)
        images = [style_image] if torch.is_tensor(style_image) else list(style_image)
        with torch.no_grad():
            per_style = [encoder(image, self.style_layers) for image in images]  # each (1, C, h, w)
        # Keys of ModuleDict cannot contain '.', and layer names never do.
        self.style_losses = nn.ModuleDict({
            name: StyleLoss([f[name] for f in per_style], style_weight * lw, style_scales)
            for name, lw in zip(self.style_layers, layer_weights)
        })
        self.content_loss = ContentLoss(content_weight)
        self.tv_loss = TVLoss(tv_weight)

    def forward(self, output: torch.Tensor, content: torch.Tensor,
                style: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """``output`` and ``content`` are (N, 3, H, W) in [0, 1]; only ``output`` needs gradients."""
        with torch.no_grad():
            # Only as deep as the deepest content layer (relu2_2 by default), not relu4_3.
            targets = self.encoder(content, self.content_layers) if self.content_layers else {}
        return self.terms(output, targets, style)

    def terms(self, output: torch.Tensor, content_targets: dict[str, torch.Tensor],
              style: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """The loss terms of ``output`` against content features already computed."""
        feats = self.encoder(output, self.output_layers)
        terms: dict[str, torch.Tensor] = {}
        zero = output.new_zeros((), dtype=torch.float32)
        content_total = zero
        for name in self.content_layers:
            content_total = content_total + self.content_loss(feats[name], content_targets[name])
        terms["content"] = content_total
        style_total = zero
        for name, loss in self.style_losses.items():
            terms[f"style/{name}"] = loss(feats[name], style)
            style_total = style_total + terms[f"style/{name}"]
        terms["style"] = style_total
        terms["tv"] = self.tv_loss(output)
        terms["total"] = content_total + style_total + terms["tv"]
        return terms


def mean_std(features: torch.Tensor, eps: float = ADAIN_EPS,
             unbiased: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation over (H, W) of ``features`` (N, C, H, W): (N, C, 1, 1)
    each, float32. The variance is the biased one (as instance norm's), or with ``unbiased`` the
    sum of squares over H*W - 1 (Huang & Belongie's Torch code and its PyTorch port); std =
    sqrt(var + eps)."""
    f = features.float()
    mean = f.mean(dim=(2, 3), keepdim=True)
    if unbiased:
        var = f.flatten(2).var(dim=2, unbiased=True).reshape(mean.shape)
    else:
        var = (f - mean).square().mean(dim=(2, 3), keepdim=True)
    return mean, (var + eps).sqrt()


def adain(content: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
          content_stats: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
          unbiased: bool = False, as_instance_norm: bool = False) -> torch.Tensor:
    """Adaptive instance normalisation: ``content`` features (N, C, H, W) normalised per channel and
    given the style's statistics ``style_mean``, ``style_std`` (1 or N, C, 1, 1). ``content_stats``:
    the (mean, std) to normalise with instead of the content's own (tiling shares them);
    ``unbiased``: the content's own variance as :func:`mean_std`'s; ``as_instance_norm``: the
    content normalised by :func:`instance_normalised` (graph exports). Float32."""
    if content_stats is None and as_instance_norm:
        return instance_normalised(content, unbiased) * style_std + style_mean
    c_mean, c_std = content_stats if content_stats is not None else mean_std(content, unbiased=unbiased)
    return (content.float() - c_mean) / c_std * style_std + style_mean


def instance_normalised(content: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """(content - mean) / sqrt(var + eps) per channel of ``content`` (N, C, H, W), float32, as
    :func:`mean_std` defines them, computed by one instance norm: an exported graph then holds
    AdaIN's content statistics in an InstanceNormalization node, which tiling and video rewrite
    as they do the Johnson networks' norms (:mod:`fast_nst.io.norm_graph`).

    With ``unbiased`` the variance is var * k, k = n / (n - 1) for n = H * W; since an instance
    norm of c * x is (x - mean) / sqrt(var + eps / c^2), the norm of sqrt(k) * x divided by
    sqrt(k) is exactly (x - mean) / sqrt(k var + eps). k comes from tensor ops on the map, so an
    export keeps H and W dynamic."""
    f = content.float()
    if not unbiased:
        return F.instance_norm(f, eps=ADAIN_EPS)
    n = torch.ones_like(f[:1, :1]).sum()  # H * W as a tensor: (,)
    root_k = (n / (n - 1)).sqrt()
    return F.instance_norm(f * root_k, eps=ADAIN_EPS) / root_k



def stats_distance(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """MSE(mean(features), mean) + MSE(std(features), std): AdaIN's style distance at one layer,
    for ``features`` (N, C, H, W) and target statistics (N or 1, C, 1, 1); a float32 scalar."""
    f_mean, f_std = mean_std(features)
    return F.mse_loss(f_mean, mean.expand_as(f_mean)) + F.mse_loss(f_std, std.expand_as(f_std))


class StatsStyleLoss(nn.Module):
    """weight * :func:`stats_distance` against one style image's features (1, C, h, w) at one
    layer: an AdaIN model's style loss, as :class:`StyleLoss` is a Gram-trained model's."""

    def __init__(self, style_features: torch.Tensor, weight: float):
        super().__init__()
        self.weight = weight
        mean, std = mean_std(style_features.detach())
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, output_features: torch.Tensor) -> torch.Tensor:
        return self.weight * stats_distance(output_features, self.mean, self.std)


class AdaINLoss(nn.Module):
    """The loss of Huang & Belongie (2017) for a decoder g: content = MSE(f(g(t)), t) at
    ``content_layer`` (the encoder's last layer) against the AdaIN target t, style = the sum over
    ``style_layers`` of MSE(mean(f(g(t))), mean(f(s))) + MSE(std(...), std(f(s))), each layer times
    its ``style_layer_weights`` entry; tv as :class:`TVLoss` (the paper has none: weight 0).

    ``forward(output, target, style_stats)`` returns the terms as :class:`PerceptualLoss` does:
    ``content``, ``style/<layer>``, ``style``, ``tv``, ``total`` (scalar float32). ``style`` is at
    the full weight; ``total`` takes it times :meth:`set_style_scale`'s factor (a warm-up).
    Defaults: the paper's weights (content 1, style 10) and layers.
    """

    def __init__(self, encoder: VGGEncoder, content_layer: str = "relu4_1",
                 style_layers: Sequence[str] = ADAIN_STYLE_LAYERS, content_weight: float = 1.0,
                 style_weight: float = 10.0, tv_weight: float = 0.0,
                 style_layer_weights: Optional[Sequence[float]] = None):
        super().__init__()
        self.encoder = encoder
        self.content_layer = content_layer
        self.style_layers = list(style_layers)
        self.layer_weights = [style_weight * w for w in (style_layer_weights or [1.0] * len(self.style_layers))]
        self.content_weight = content_weight
        self.stat_layers = list(dict.fromkeys(self.style_layers + [content_layer]))
        self.tv_loss = TVLoss(tv_weight)
        # A tensor, not a Python float: a compiled loss reads it as an input instead of
        # recompiling for every new value.
        self.register_buffer("style_scale", torch.ones((), device=encoder.mean.device), persistent=False)

    def set_style_scale(self, scale: float) -> None:
        """Multiply the style term of ``total`` by ``scale`` (0..1) from the next forward on."""
        self.style_scale.fill_(scale)

    @torch.no_grad()
    def style_stats(self, style: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The (mean, std) (N, C, 1, 1) per layer of style images ``style`` (N, 3, H, W) in [0, 1]."""
        return {name: mean_std(f) for name, f in self.encoder(style, self.stat_layers).items()}

    @torch.no_grad()
    def target(self, content: torch.Tensor, stats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """The AdaIN target t (N, C, h, w) at ``content_layer`` of photos ``content`` (N, 3, H, W)
        in [0, 1] in the style whose :meth:`style_stats` are ``stats``."""
        return adain(self.encoder(content, [self.content_layer])[self.content_layer], *stats[self.content_layer])

    def targets(self, content: torch.Tensor, style: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """For photos ``content`` and style images ``style`` (N, 3, H, W) in [0, 1]: the AdaIN target
        t (N, C, h, w) float32 at ``content_layer`` and the style's (mean, std) (N, C, 1, 1) per layer."""
        stats = self.style_stats(style)
        return self.target(content, stats), stats

    def forward(self, output: torch.Tensor, target: torch.Tensor,
                style_stats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """``output`` g(t) (N, 3, H, W), ``target`` t and ``style_stats`` from :meth:`targets`."""
        feats = self.encoder(output, self.stat_layers)
        terms: dict[str, torch.Tensor] = {}
        terms["content"] = self.content_weight * F.mse_loss(feats[self.content_layer].float(), target.float())
        style_total = output.new_zeros((), dtype=torch.float32)
        for name, weight in zip(self.style_layers, self.layer_weights):
            terms[f"style/{name}"] = weight * stats_distance(feats[name], *style_stats[name])
            style_total = style_total + terms[f"style/{name}"]
        terms["style"] = style_total
        terms["tv"] = self.tv_loss(output)
        terms["total"] = terms["content"] + self.style_scale * style_total + terms["tv"]
        return terms
