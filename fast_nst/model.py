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

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

# The network downsamples twice by 2, so its own input must be a multiple of 4; and its smallest
# feature map must be larger than the 1-pixel reflection padding of the residual blocks, so
# inputs are padded to at least 8 pixels (8 / 4 = 2 > 1).
_MULTIPLE = 4
_MIN_SIZE = 8
OUTPUT_ACTIVATIONS = ("tanh", "clamp")


def pad_input(x: torch.Tensor) -> torch.Tensor:
    """Pad (N, C, H, W) at the bottom and right to a multiple of 4, at least 8 per side, so the
    network can process it; callers crop the output back to (H, W)."""
    h, w = x.shape[-2:]
    ph = max(_MIN_SIZE, -(-h // _MULTIPLE) * _MULTIPLE) - h
    pw = max(_MIN_SIZE, -(-w // _MULTIPLE) * _MULTIPLE) - w
    if not (ph or pw):
        return x
    # Reflection needs the pad to be smaller than the side; tiny images replicate instead.
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")


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
                             f"got {self.output_activation!r}")

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


class ConvLayer(nn.Sequential):
    """Reflection pad -> conv -> (instance norm -> ReLU)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm_act: bool = True):
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(kernel // 2),
            # A bias before instance norm is cancelled by its mean subtraction: its gradient is
            # pure rounding noise, which Adam would amplify into lr-sized random steps.
            nn.Conv2d(cin, cout, kernel, stride=stride, bias=not norm_act),
        ]
        if norm_act:
            layers += [nn.InstanceNorm2d(cout, affine=True), nn.ReLU()]
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 conv + instance norm with an identity shortcut (Gross & Wilber's variant, no ReLU
    after the addition, as in Johnson et al.'s supplementary material)."""

    def __init__(self, channels: int):
        super().__init__()
        self.block = nn.Sequential(
            ConvLayer(channels, channels, 3),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),  # followed by instance norm, see ConvLayer
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class UpsampleConv(nn.Sequential):
    """Nearest-neighbour x2 upsampling, then a 3x3 ConvLayer."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), ConvLayer(cin, cout, 3))


class TransformNet(nn.Module):
    """Maps a photo (N, 3, H, W) in [0, 1] to its stylization (N, 3, H, W) in (0, 1).

    Any H x W works: the input is padded to a multiple of 4 (at least 8) and the output cropped
    back, so the output always has exactly the input's size.
    """

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected input of shape (N, 3, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = pad_input(x)
        y = self.decoder(self.residuals(self.encoder(x)))  # (N, 3, H + ph, W + pw)
        y = (torch.tanh(y) + 1) * 0.5 if self.args.output_activation == "tanh" else y.clamp(0, 1)
        return y[..., :h, :w]
