"""An inference-only rewrite of :class:`~fast_nst.nets.johnson.TransformNet` that computes the same
function (to float rounding) with fewer FLOPs and fewer memory passes. Used by default on CPU.

What changes, and why it is exact:

* **Upsample + 3x3 conv -> one 2x2 conv to 4x the channels + interleave.** After nearest x2
  upsampling, each output pixel's 3x3 window covers only 2x2 distinct input pixels, so each of
  the four output phases is a 2x2 convolution of the low-resolution input with summed weights
  (4/9 of the FLOPs). Reflection padding of the upsampled image by 1 equals replicate padding of
  the input by 1.
* **Last 9x9 conv (32 -> 3 channels) -> 10x10 stride-2 conv (32 -> 12) + pixel-shuffle.** The
  same sums, rearranged so the convolution has enough output channels to vectorise (oneDNN runs
  the 3-channel 9x9 convolution at about a quarter of its speed on the 12-channel one): each of
  the 12 output channels is one colour of one of the four output phases. (Written before as a
  5x5 conv of the pixel-unshuffled input: the same multiply-adds, but the unshuffle copied the
  whole 32-channel map; the strided form made the forward 6 % faster in fp32 and bf16.)
* **Paddings written for channels_last** (:func:`pad_nhwc`): one copy of the map into the
  middle of the padded tensor and a few rows and columns for the border. PyTorch's own
  reflection and replication pads of channels_last bf16 maps took about a third of the bf16
  forward; this form made it 28-32 % faster (fp32 0-3 %), the same values to the bit. The ReLU
  before a padding runs in that copy (7-8 % more in bf16).
* **Instance norm fused**: in bf16 as a batch norm of each photo (the same thing for one photo),
  which PyTorch's CPU kernels fuse into two passes; in float32 from two plain reductions
  (``torch.var_mean`` is ~20x slower on CPU) and one affine pass in place. The statistics can be
  recorded and reused (:class:`NormStats`), which tiling and video need.

Input and output are exactly :class:`TransformNet`'s: (N, 3, H, W) in [0, 1] -> same shape in (0, 1).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .base import InferenceNetwork, NormStats
from .layers import ConvLayer, UpsampleConv, pad_input

if TYPE_CHECKING:
    from .johnson import TransformNet

__all__ = ["FastTransformNet", "pad_nhwc", "phase_weight", "strided_weight", "unshuffle_weight"]

# For a nearest-x2-upsampled row index 2i + a and kernel row k, the source row is i + offset;
# the taps of the 3x3 kernel that land on the same source row are summed. Keyed by phase a.
_PHASE_TAPS = {0: ([0], [1, 2]), 1: ([0, 1], [2])}


def phase_weight(w: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, 3, 3) upsample-conv weight -> (4 * Cout, Cin, 2, 2), phases (a, b) major."""
    cout, cin = w.shape[:2]
    out = w.new_zeros(2, 2, cout, cin, 2, 2)
    for a, rows in _PHASE_TAPS.items():
        for b, cols in _PHASE_TAPS.items():
            for dy, ky in enumerate(rows):
                for dx, kx in enumerate(cols):
                    out[a, b, :, :, dy, dx] = w[:, :, ky][:, :, :, kx].sum(dim=(2, 3))
    return out.reshape(4 * cout, cin, 2, 2)


def unshuffle_weight(w: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, 9, 9) weight -> (4 * Cout, 4 * Cin, 5, 5) acting on pixel_unshuffle(x, 2) and
    producing the pixel_shuffle(., 2) layout of the original output."""
    cout, cin, k, _ = w.shape
    kk = k // 2 + 1  # offsets (a + ky) // 2 for a in {0, 1}, ky in [0, k)
    out = w.new_zeros(cout, 2, 2, cin, 2, 2, kk, kk)  # (co, a, b, ci, r, s, dy, dx)
    for a in range(2):
        for b in range(2):
            for r in range(2):
                for s in range(2):
                    for dy in range(kk):
                        ky = 2 * dy + r - a
                        if not 0 <= ky < k:
                            continue
                        for dx in range(kk):
                            kx = 2 * dx + s - b
                            if 0 <= kx < k:
                                out[:, a, b, :, r, s, dy, dx] = w[:, :, ky, kx]
    return out.reshape(4 * cout, 4 * cin, kk, kk)


def pad_nhwc(x: torch.Tensor, p: int, mode: str, relu: bool = False) -> torch.Tensor:
    """``F.pad(x, (p, p, p, p), mode)`` for ``mode`` "reflect" or "replicate", x (N, C, H, W), of
    ``relu(x)`` with ``relu``: for a channels_last ``x``, written as one pass into the middle of
    the padded tensor (the ReLU in it: one pass over the map fewer than a ReLU of its own) and
    copies of the border rows and columns. Alternating in one process on a 2-core Xeon,
    PyTorch's own pads of these maps made the bf16 forward 1.4x slower: 91 against 65 ms at 512 x
    512, 414 against 280 ms at 1024 x 1024. Other layouts, and reflections as wide as the map
    (which F.pad refuses), go to ``F.pad``."""
    n, c, h, w = x.shape
    if not x.is_contiguous(memory_format=torch.channels_last) or (mode == "reflect" and p >= min(h, w)):
        return F.pad(x.clamp_min(0) if relu else x, (p, p, p, p), mode=mode)
    out = torch.empty((n, c, h + 2 * p, w + 2 * p), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    inner = out[:, :, p:p + h, p:p + w]
    if relu:
        torch.clamp_min(x, 0, out=inner)
    else:
        inner.copy_(x)
    for i in range(p):  # rows above and below: reflected (without the edge row) or repeated
        top, bottom = (i + 1, h - 2 - i) if mode == "reflect" else (0, h - 1)
        out[:, :, p - 1 - i, p:p + w] = out[:, :, p + top, p:p + w]
        out[:, :, p + h + i, p:p + w] = out[:, :, p + bottom, p:p + w]
    for j in range(p):  # columns left and right, corners included, from the padded rows
        left, right = (p + 1 + j, p + w - 2 - j) if mode == "reflect" else (p, p + w - 1)
        out[:, :, :, p - 1 - j] = out[:, :, :, left]
        out[:, :, :, p + w + j] = out[:, :, :, right]
    return out


def strided_weight(w: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, k, k) weight of a stride-1 conv -> (4 * Cout, Cin, 2k', 2k') (k' = k // 2 + 1)
    for a stride-2 conv of the same padded input whose output, pixel-shuffled by 2, is the
    original output: output channel 4c + 2a + b is channel c at output phase (a, b)."""
    weight = unshuffle_weight(w)  # (4 Cout, 4 Cin, k', k'), input channel 4c + 2r + s
    cout4, cin4, k, _ = weight.shape
    # Unshuffled channel (c, r, s) at tap (dy, dx) is input pixel (2 dy + r, 2 dx + s).
    weight = weight.view(cout4, cin4 // 4, 2, 2, k, k).permute(0, 1, 4, 2, 5, 3)
    return weight.reshape(cout4, cin4 // 4, 2 * k, 2 * k)


class _NormConv(nn.Module):
    """Reflection pad -> conv (no bias) -> instance norm -> optional ReLU, fused."""

    def __init__(self, pad: nn.ReflectionPad2d, conv: nn.Conv2d, norm: nn.InstanceNorm2d,
                 relu: bool = True):
        super().__init__()
        self.pad = pad.padding[0]
        self.stride = conv.stride
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)
        self.gamma = nn.Parameter(norm.weight.detach().clone().view(1, -1, 1, 1), requires_grad=False)
        self.beta = nn.Parameter(norm.bias.detach().clone().view(1, -1, 1, 1), requires_grad=False)
        self.eps = norm.eps
        self.relu = relu
        self.relu_input = False  # the layer before left its ReLU to this one's padding
        self.norm_stats: NormStats | None = None  # set by FastTransformNet

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        pad = self.pad
        y = F.conv2d(pad_nhwc(x, pad, "reflect", self.relu_input), self.weight, stride=self.stride)
        return _norm_(y, self.gamma, self.beta, self.eps, self.relu, residual, self.norm_stats)


def _norm_(y: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float, relu: bool,
           residual: torch.Tensor | None = None, stats: NormStats | None = None) -> torch.Tensor:
    """Instance norm of ``y`` (N, C, H, W), then ReLU or + residual. bf16 goes through PyTorch's
    batch norm (:func:`_batch_norm_own`, :func:`_batch_norm_given`); float32 through two
    reductions and one affine pass in place, as fast there (alternating in one process on a
    2-core Xeon: batch norm 1.1-1.7x faster in bf16, 0.9-1.04x in float32)."""
    if y.dtype != torch.bfloat16:
        mean, var = stats(y) if stats is not None else NormStats()(y)  # (N, C, 1, 1) each
        scale = gamma * torch.rsqrt(var + eps)
        shift = beta - mean * scale
        y = torch.addcmul(shift, y, scale, out=y)
    elif stats is None or stats.mode in (None, "record"):
        y = _batch_norm_own(y, gamma, beta, eps, stats)
    else:  # statistics given (tiling) or carried across frames (video)
        y = _batch_norm_given(y, gamma, beta, eps, *stats(y))
    if relu:
        y = y.clamp_min_(0)
    if residual is not None:
        y = y.add_(residual)
    return y


def _batch_norm_own(y: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float,
                    stats: NormStats | None = None) -> torch.Tensor:
    """Instance norm of ``y`` (N, C, H, W) as a batch norm of each photo on its own (for one photo
    they are the same thing): PyTorch's CPU batch norm takes the statistics and writes the
    normalised result in two fused passes, 4-5x faster than two reductions and an affine pass
    (32 x 512 x 512 bf16, channels_last: 2.4 ms against 15.4 ms). Records each norm's float32
    statistics (mean, var), each (N, C, 1, 1), when ``stats`` is recording (tiling)."""
    outs, means, variances = [], [], []
    for one in y.split(1):
        out, mean, invstd = torch.native_batch_norm(one, gamma.flatten(), beta.flatten(), None, None,
                                                    True, 0.0, eps)
        outs.append(out)
        means.append(mean.float())
        variances.append(invstd.float().pow(-2) - eps)
    if stats is not None and stats.mode == "record":
        c = y.shape[1]
        stats.stats.append((torch.stack(means).view(-1, c, 1, 1), torch.stack(variances).view(-1, c, 1, 1)))
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def _batch_norm_given(y: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float,
                      mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Instance norm of ``y`` (N, C, H, W) with the given statistics ``mean``, ``var`` (N or 1, C,
    1, 1), in the arithmetic of :func:`_batch_norm_own` (float32 statistics and affine
    parameters), so tiles normalised with the whole image's statistics equal the whole image."""
    outs = []
    for i, one in enumerate(y.split(1)):
        m, v = (t[min(i, len(t) - 1)].flatten().float() for t in (mean, var))
        outs.append(torch.batch_norm(one, gamma.flatten().float(), beta.flatten().float(), m, v,
                                     False, 0.0, eps, False))
    return outs[0] if len(outs) == 1 else torch.cat(outs)


class _PhaseUpsampleConv(nn.Module):
    """Nearest x2 upsample + reflection-padded 3x3 conv + norm + ReLU, as one 2x2 conv."""

    def __init__(self, layer: UpsampleConv):
        super().__init__()
        conv, norm = layer.conv_layer.conv, layer.conv_layer.norm
        self.cout = conv.out_channels
        self.weight = nn.Parameter(phase_weight(conv.weight.detach()), requires_grad=False)
        self.gamma = nn.Parameter(norm.weight.detach().clone().view(1, -1, 1, 1), requires_grad=False)
        self.beta = nn.Parameter(norm.bias.detach().clone().view(1, -1, 1, 1), requires_grad=False)
        self.eps = norm.eps
        self.relu, self.relu_input = True, False  # see _NormConv
        self.norm_stats: NormStats | None = None  # set by FastTransformNet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        y = F.conv2d(pad_nhwc(x, 1, "replicate", self.relu_input), self.weight)  # (N, 4*Cout, h+1, w+1)
        # Interleave the phases with four strided copies (2-3x faster than stack + permute).
        fmt = torch.channels_last if y.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        up = torch.empty(n, self.cout, 2 * h, 2 * w, dtype=y.dtype, device=y.device, memory_format=fmt)
        for a in range(2):
            for b in range(2):
                k = (2 * a + b) * self.cout
                up[:, :, a::2, b::2] = y[:, k:k + self.cout, a:a + h, b:b + w]
        return _norm_(up, self.gamma, self.beta, self.eps, relu=self.relu, stats=self.norm_stats)


class _StridedOutConv(nn.Module):
    """The last reflection-padded 9x9 conv as a stride-2 conv to 12 channels, then the output mapping."""

    def __init__(self, layer: ConvLayer, activation: str):
        super().__init__()
        pad, conv = layer.pad, layer.conv
        self.activation = activation
        self.pad = pad.padding[0]
        self.weight = nn.Parameter(strided_weight(conv.weight.detach()), requires_grad=False)
        self.bias = nn.Parameter(conv.bias.detach().repeat_interleave(4), requires_grad=False)
        self.relu_input = False  # see _NormConv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad
        y = F.conv2d(pad_nhwc(x, p, "reflect", self.relu_input), self.weight, self.bias, stride=2)  # (N, 12, H/2, W/2)
        y = F.pixel_shuffle(y, 2)  # (N, 3, H, W)
        if self.activation == "clamp":
            return y.clamp_(0, 1)
        return y.tanh_().add_(1).mul_(0.5)


class FastTransformNet(InferenceNetwork):
    """Inference-only equivalent of a :class:`TransformNet` (no gradients, no training).

    ``channels_last``: run in NHWC layout, where oneDNN's convolutions for this network are
    faster on CPU (measured on a 2-core AMD EPYC VM: the stride-2 3x3 32 -> 64 conv 39 -> 12 ms,
    the upsampling convs ~35 % faster, at 512 x 512).
    """

    # Peak bytes per pixel of an fp32 forward, measured like TransformNet's: 470.
    bytes_per_pixel = 480
    #: ``.to(torch.bfloat16)`` gives the bf16 network: the input is cast to the weights' dtype.
    runs_in_bf16 = True

    def __init__(self, net: TransformNet, channels_last: bool = True):
        super().__init__()
        self.args = net.args
        self._radius = net.receptive_radius
        self.channels_last = channels_last
        self.encoder = nn.ModuleList([_NormConv(layer.pad, layer.conv, layer.norm) for layer in net.downsampling])
        self.residuals = nn.ModuleList(
            nn.ModuleList([_NormConv(b.first.pad, b.first.conv, b.first.norm),
                           _NormConv(b.pad2, b.conv2, b.norm2, relu=False)])
            for b in net.blocks
        )
        self.upsample = nn.ModuleList([_PhaseUpsampleConv(layer) for layer in net.upsampling])
        self.out = _StridedOutConv(net.output_conv, net.args.output_activation)
        self.norm_stats = NormStats()
        for m in self.modules():
            if isinstance(m, (_NormConv, _PhaseUpsampleConv)):
                m.norm_stats = self.norm_stats  # a plain attribute, shared by every norm
        self._defer_relus()
        if channels_last:
            for p in self.parameters():
                if p.dim() == 4:
                    p.data = p.data.contiguous(memory_format=torch.channels_last)
        self.requires_grad_(False)
        self.eval()

    def _defer_relus(self) -> None:
        """Each ReLU whose output only the next layer's padding reads runs in that padding
        (:func:`pad_nhwc`): the same values, one pass over the map fewer (alternating in one
        process, the bf16 forward 74 -> 69 ms at 512 x 512, 295 -> 271 ms at 1024 x 1024; fp32
        1-3 %). A residual block's input is also its skip connection: that ReLU stays."""
        for first, tail in self.residuals:
            first.relu, tail.relu_input = False, True
        body = [None] if len(self.residuals) else []  # None: the residual blocks
        path = [*self.encoder, *body, *self.upsample, self.out]
        for before, after in zip(path, path[1:]):
            if before is not None and after is not None:
                before.relu, after.relu_input = False, True

    @property
    def receptive_radius(self) -> int:
        return self._radius

    @contextmanager
    def shared_norm_statistics(self) -> Iterator[NormStats]:
        """Every fused norm already reads the shared :class:`NormStats`: switch it to record."""
        stats = self.norm_stats
        stats.mode, stats.stats = "record", []
        try:
            yield stats
        finally:
            stats.mode, stats.stats = None, []

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.norm_stats.index = 0
        h, w = x.shape[-2:]
        x = pad_input(x.to(self.out.weight.dtype))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for layer in self.encoder:
            x = layer(x)
        for first, tail in self.residuals:
            x = tail(first(x), residual=x)
        for layer in self.upsample:
            x = layer(x)
        return self.out(x)[..., :h, :w]

