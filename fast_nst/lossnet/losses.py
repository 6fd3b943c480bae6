"""Perceptual losses of Johnson et al. (2016): content (feature MSE), style (Gram MSE) and
total variation. Each loss is a small module holding its weight (and its target, for style).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .vgg import VGGEncoder

__all__ = ["ContentLoss", "PerceptualLoss", "StyleLoss", "TVLoss", "gram_matrix", "tf32_grams"]


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
    """weight * MSE(Gram(output features), Gram(style features)) at one layer.

    The target Gram (1, C, C) is computed once from the style image's features and stored as a
    buffer; it broadcasts over the batch.
    """

    def __init__(self, style_features: torch.Tensor, weight: float):
        super().__init__()
        self.weight = weight
        self.register_buffer("target", gram_matrix(style_features.detach()))  # (1, C, C)

    def forward(self, output_features: torch.Tensor) -> torch.Tensor:
        gram = gram_matrix(output_features)  # (N, C, C)
        return self.weight * F.mse_loss(gram, self.target.expand_as(gram))


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
    """Content + style + TV loss against one style image, for a batch of content photos.

    ``forward(output, content)`` returns a dict of scalar float32 terms: ``content``,
    ``style/<layer>`` for each style layer, ``style`` (their sum), ``tv`` and ``total``.
    """

    def __init__(
        self,
        encoder: VGGEncoder,
        style_image: torch.Tensor,
        content_layers: Sequence[str],
        style_layers: Sequence[str],
        content_weight: float,
        style_weight: float,
        tv_weight: float,
        style_layer_weights: Optional[Sequence[float]] = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.content_layers = list(content_layers)
        self.style_layers = list(style_layers)
        self.output_layers = list(dict.fromkeys(self.content_layers + self.style_layers))
        layer_weights = style_layer_weights or [1.0] * len(self.style_layers)
        with torch.no_grad():
            style_features = encoder(style_image, self.style_layers)  # each (1, C, h, w)
        # Keys of ModuleDict cannot contain '.', and layer names never do.
        self.style_losses = nn.ModuleDict({
            name: StyleLoss(style_features[name], style_weight * lw)
            for name, lw in zip(self.style_layers, layer_weights)
        })
        self.content_loss = ContentLoss(content_weight)
        self.tv_loss = TVLoss(tv_weight)

    def forward(self, output: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """``output`` and ``content`` are (N, 3, H, W) in [0, 1]; only ``output`` needs gradients."""
        with torch.no_grad():
            # Only as deep as the deepest content layer (relu2_2 by default), not relu4_3.
            targets = self.encoder(content, self.content_layers) if self.content_layers else {}
        return self.terms(output, targets)

    def terms(self, output: torch.Tensor, content_targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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
            terms[f"style/{name}"] = loss(feats[name])
            style_total = style_total + terms[f"style/{name}"]
        terms["style"] = style_total
        terms["tv"] = self.tv_loss(output)
        terms["total"] = content_total + style_total + terms["tv"]
        return terms
