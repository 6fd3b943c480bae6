"""The image transformation network of Johnson et al. (2016) with Ulyanov et al.'s instance norm.

Layout (Johnson's supplementary material, Table 1, with the changes noted):
c9s1-32, d64, d128, R128 x 5, u64, u32, c9s1-3, where the upsampling stages are nearest-neighbour
x2 followed by a 3x3 convolution (Odena et al. 2016: transposed convolutions cause checkerboard
artifacts). Every convolution uses reflection padding; every norm is affine instance norm.

Range mapping: the input is RGB in [0, 1]; the last convolution's output y is mapped to
``(tanh(y) + 1) / 2``, so the output is RGB in (0, 1) with no clipping needed (Johnson et al. used
a scaled tanh for the same reason). Models converted from pytorch/examples keep their linear
output, clipped to [0, 1] (``output_activation="clamp"``).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from torch import nn

from . import MAX_PARAMETERS
from .base import InferenceNetwork, NormStats, StyleNetwork
from .exportable import ExportableTransformNet
from .fast_cpu import FastTransformNet
from .layers import (OUTPUT_ACTIVATIONS, ConvLayer, ResidualBlock, UpsampleConv, check_images, output_mapping,
                     pad_input)

__all__ = ["MAX_BASE_CHANNELS", "MAX_RESIDUAL", "TransformNet", "TransformNetArgs"]

# Bounds on the architecture arguments, checked before anything is allocated (a model file is
# untrusted input): 1024 channels or 64 blocks are far past any useful style network; the
# parameter bound is the registry's MAX_PARAMETERS.
MAX_BASE_CHANNELS = 1024
MAX_RESIDUAL = 64


@dataclass(frozen=True)
class TransformNetArgs:
    """Architecture arguments, saved in every checkpoint so a model file rebuilds itself."""

    base_channels: int = 32  # c9s1-32 (Johnson et al.); d64 and d128 are 2x and 4x this
    num_residual: int = 5  # five residual blocks (Johnson et al.)
    # "tanh": (tanh(y) + 1) / 2, what fast-nst trains. "clamp": y clipped to [0, 1], for models
    # converted from pytorch/examples, whose last layer is linear.
    output_activation: str = "tanh"

    def __post_init__(self) -> None:
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, "
                             f"got {str(self.output_activation)[:40]!r}")
        for key, top in (("base_channels", MAX_BASE_CHANNELS), ("num_residual", MAX_RESIDUAL)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise ValueError(f"{key} must be a whole number from 1 to {top}, got {str(value)[:40]}")
        if self.parameter_count() > MAX_PARAMETERS:
            raise ValueError(f"base_channels {self.base_channels} with num_residual {self.num_residual} "
                             f"makes {self.parameter_count():,} parameters, over the limit of "
                             f"{MAX_PARAMETERS:,}")

    def parameter_count(self) -> int:
        """Parameters of the network these arguments build (without building it)."""
        c, n = self.base_channels, self.num_residual
        convs = 3 * c * 81 + 2 * c * c * 9 + 8 * c * c * 9 + n * 2 * 16 * c * c * 9 + 8 * c * c * 9 \
            + 2 * c * c * 9 + c * 3 * 81 + 3  # the last conv keeps its bias
        return convs + 2 * self.norm_channels()

    def norm_channels(self) -> int:
        """Channels normalised by an instance norm (each has a scale and a shift): c9s1, d64,
        d128, two per residual block, u64, u32."""
        c = self.base_channels
        return c + 2 * c + 4 * c + self.num_residual * 2 * 4 * c + 2 * c + c

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


class TransformNet(StyleNetwork):
    """Maps a photo (N, 3, H, W) in [0, 1] to its stylization (N, 3, H, W) in (0, 1).

    Any H x W works: the input is padded to a multiple of 4 (at least 8) and the output cropped
    back, so the output always has exactly the input's size.
    """

    model_type = "johnson"
    Args = TransformNetArgs
    # Peak bytes per pixel of an fp32 forward under inference_mode, measured on CPU at
    # 1024 x 1024 (peak RSS growth): 1008.
    bytes_per_pixel = 1024

    def __init__(self, args: TransformNetArgs = TransformNetArgs()):
        super().__init__()
        self.args = args
        c = args.base_channels
        self.encoder = nn.Sequential(
            ConvLayer(3, c, 9),
            ConvLayer(c, 2 * c, 3, stride=2),
            ConvLayer(2 * c, 4 * c, 3, stride=2),
        )
        self.residuals = nn.Sequential(*[ResidualBlock(4 * c) for _ in range(args.num_residual)])
        self.decoder = nn.Sequential(
            UpsampleConv(4 * c, 2 * c),
            UpsampleConv(2 * c, c),
            ConvLayer(c, 3, 9, norm_act=False),
        )

    # -- named parts, for the fast CPU form, conversion and export -------------------------------

    @property
    def downsampling(self) -> list[ConvLayer]:
        """c9s1, d1, d2: the 9x9 input convolution and the two stride-2 ones."""
        return list(self.encoder)

    @property
    def blocks(self) -> list[ResidualBlock]:
        return list(self.residuals)

    @property
    def upsampling(self) -> list[UpsampleConv]:
        return [self.decoder[0], self.decoder[1]]

    @property
    def output_conv(self) -> ConvLayer:
        """The last 9x9 convolution (no norm, with bias), before :meth:`output_mapping`."""
        return self.decoder[2]

    def output_mapping(self, y: torch.Tensor) -> torch.Tensor:
        """The last convolution's output y -> RGB in [0, 1] (see :func:`output_mapping`)."""
        return output_mapping(y, self.args.output_activation == "tanh")

    @property
    def receptive_radius(self) -> int:
        return self.radius_of(self.args)

    @classmethod
    def radius_of(cls, args: TransformNetArgs) -> int:
        """4 (9x9) + 1 + 2 (stride-2 3x3s) + 2 x num_residual x 4 (3x3 at 1/4 resolution) + 2 + 1
        (upsample convs) + 4 (9x9): 54 px for the default five blocks."""
        return 4 + 1 + 2 + 8 * args.num_residual + 2 + 1 + 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        h, w = x.shape[-2:]
        x = pad_input(x)
        y = self.decoder(self.residuals(self.encoder(x)))  # (N, 3, H + ph, W + pw)
        return self.output_mapping(y)[..., :h, :w]

    def fast_inference(self, channels_last: bool = True) -> InferenceNetwork:
        return FastTransformNet(self, channels_last=channels_last)

    def exportable(self) -> nn.Module:
        return ExportableTransformNet(self)

    @contextmanager
    def shared_norm_statistics(self) -> Iterator[NormStats]:
        """Forward hooks on every InstanceNorm2d recompute the norm from the shared statistics."""
        stats = NormStats()
        stats.mode = "record"

        def reset(module, inputs):  # norms are visited in the same order on every forward
            stats.index = 0

        def norm(module: nn.InstanceNorm2d, inputs, output):
            x = inputs[0].float()
            mean, var = stats(x)
            y = (x - mean) * torch.rsqrt(var + module.eps)
            return (y * module.weight.view(1, -1, 1, 1) + module.bias.view(1, -1, 1, 1)).to(output.dtype)

        handles = [self.register_forward_pre_hook(reset)]
        handles += [m.register_forward_hook(norm) for m in self.modules() if isinstance(m, nn.InstanceNorm2d)]
        try:
            yield stats
        finally:
            for h in handles:
                h.remove()
