"""Building blocks of the Johnson network and its inference and export forms: the layers, the
input padding and the output mapping (one definition each).

Every convolution uses reflection padding; every norm is affine instance norm. Convolutions
followed by instance norm have no bias: the norm's mean subtraction cancels it exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvLayer", "OUTPUT_ACTIVATIONS", "PAD_MIN_SIZE", "PAD_MULTIPLE", "ResidualBlock",
           "UpsampleConv", "check_images", "output_mapping", "pad_input"]

# The network downsamples twice by 2, so its own input must be a multiple of 4; and its smallest
# feature map must be larger than the 1-pixel reflection padding of the residual blocks, so
# inputs are padded to at least 8 pixels (8 / 4 = 2 > 1).
PAD_MULTIPLE = 4
PAD_MIN_SIZE = 8
OUTPUT_ACTIVATIONS = ("tanh", "clamp")


def check_images(x: torch.Tensor, what: str = "input", min_side: int = 1) -> None:
    """ValueError unless ``x`` is an image batch (N, 3, H, W) with sides of at least ``min_side``
    (a programmer's mistake, not a user's: callers check user input first)."""
    if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected {what} of shape (N, 3, H, W), got {tuple(getattr(x, 'shape', ()))}")
    if min(x.shape[2], x.shape[3]) < min_side:
        raise ValueError(f"{what} must be at least {min_side} px per side, got {x.shape[3]} x {x.shape[2]}")


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
