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
import torch.nn.functional as F
from torch import nn

from .base import InferenceNetwork, NormStats, StyleNetwork

__all__ = ["ConvLayer", "ResidualBlock", "TransformNet", "TransformNetArgs", "UpsampleConv",
           "output_mapping", "pad_input", "OUTPUT_ACTIVATIONS", "PAD_MULTIPLE", "PAD_MIN_SIZE"]

# The network downsamples twice by 2, so its own input must be a multiple of 4; and its smallest
# feature map must be larger than the 1-pixel reflection padding of the residual blocks, so
# inputs are padded to at least 8 pixels (8 / 4 = 2 > 1).
PAD_MULTIPLE = 4
PAD_MIN_SIZE = 8
OUTPUT_ACTIVATIONS = ("tanh", "clamp")
# Bounds on the architecture arguments, checked before anything is allocated (a model file is
# untrusted input): 1024 channels or 64 blocks are far past any useful style network, and
# 200M parameters (800 MB) is 120x the default network.
MAX_BASE_CHANNELS = 1024
MAX_RESIDUAL = 64
MAX_PARAMETERS = 200_000_000


def pad_input(x: torch.Tensor) -> torch.Tensor:
    """Pad (N, C, H, W) at the bottom and right to a multiple of 4, at least 8 per side, so the
    network can process it; callers crop the output back to (H, W)."""
    h, w = x.shape[-2:]
    ph = max(PAD_MIN_SIZE, -(-h // PAD_MULTIPLE) * PAD_MULTIPLE) - h
    pw = max(PAD_MIN_SIZE, -(-w // PAD_MULTIPLE) * PAD_MULTIPLE) - w
    if not (ph or pw):
        return x
    # Reflection needs the pad to be smaller than the side; tiny images replicate instead.
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")


def output_mapping(y: torch.Tensor, tanh: bool) -> torch.Tensor:
    """The last convolution's output y -> RGB in [0, 1]: (tanh(y) + 1) / 2 (fast-nst's models),
    or y clipped to [0, 1] (linear output of converted pytorch/examples models)."""
    return (torch.tanh(y) + 1) * 0.5 if tanh else y.clamp(0, 1)


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
        norms = 2 * (c + 2 * c + 4 * c + n * 2 * 4 * c + 2 * c + c)
        return convs + norms

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

    # Named views of the layers (a Sequential keeps the state-dict keys of older checkpoints);
    # TorchScript must not compile them (an export scripts the layers).
    __jit_unused_properties__ = ["pad", "conv", "norm"]

    @property
    def pad(self) -> nn.ReflectionPad2d:
        return self[0]

    @property
    def conv(self) -> nn.Conv2d:
        return self[1]

    @property
    def norm(self) -> nn.InstanceNorm2d | None:
        return self[2] if len(self) > 2 else None


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

    __jit_unused_properties__ = ["first", "pad2", "conv2", "norm2"]  # see ConvLayer

    @property
    def first(self) -> ConvLayer:
        """pad -> conv -> norm -> ReLU."""
        return self.block[0]

    @property
    def pad2(self) -> nn.ReflectionPad2d:
        return self.block[1]

    @property
    def conv2(self) -> nn.Conv2d:
        return self.block[2]

    @property
    def norm2(self) -> nn.InstanceNorm2d:
        return self.block[3]


class UpsampleConv(nn.Sequential):
    """Nearest-neighbour x2 upsampling, then a 3x3 ConvLayer."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), ConvLayer(cin, cout, 3))

    __jit_unused_properties__ = ["conv_layer"]  # see ConvLayer

    @property
    def conv_layer(self) -> ConvLayer:
        return self[1]


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
        """4 (9x9) + 1 + 2 (stride-2 3x3s) + 2 x num_residual x 4 (3x3 at 1/4 resolution) + 2 + 1
        (upsample convs) + 4 (9x9): 54 px for the default five blocks."""
        return 4 + 1 + 2 + 8 * self.args.num_residual + 2 + 1 + 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected input of shape (N, 3, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = pad_input(x)
        y = self.decoder(self.residuals(self.encoder(x)))  # (N, 3, H + ph, W + pw)
        return self.output_mapping(y)[..., :h, :w]

    def fast_inference(self, channels_last: bool = True) -> InferenceNetwork:
        from .fast_cpu import FastTransformNet  # fast_cpu builds on this module

        return FastTransformNet(self, channels_last=channels_last)

    def exportable(self) -> nn.Module:
        from .exportable import ExportableTransformNet  # exportable builds on this module

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
