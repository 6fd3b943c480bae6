"""The Johnson network written for graph exporters (ONNX via torch.export, TorchScript).

Why a wrapper: :class:`~fast_nst.nets.johnson.TransformNet` pads its input to a multiple of 4
(at least 8) with Python control flow on the shape (``if ph or pw``, reflect or replicate). A
graph export specialises that branch to the example's size; torch's ONNX exporter does so without
an error (it defers the size guards to runtime asserts, which the ONNX graph drops), and the
graph it writes is then wrong for other sizes. :class:`ExportableTransformNet` computes the same
padding and crop as index gathers whose indices are built from the symbolic sizes with tensor ops
(``arange``, ``where``), so one graph serves every size.

The decoder is written as the fast CPU form writes it (:mod:`fast_nst.nets.fast_cpu`, the same
function to float rounding): each upsample + 3x3 conv as one 2x2 conv at the low resolution
whose four phases are interleaved (4/9 of the multiply-adds, no full-resolution resize or pad),
and the last 9x9 conv to 3 channels as a 10x10 stride-2 conv to 12 channels (one per output
phase and colour), interleaved the same way. onnxruntime runs a 3-channel 9x9 conv badly: it was
a quarter of the int8 export's time at 512 x 512 (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .fast_cpu import phase_weight, strided_weight
from .layers import PAD_MIN_SIZE, PAD_MULTIPLE, ConvLayer, output_mapping

if TYPE_CHECKING:
    from .johnson import TransformNet

__all__ = ["ExportableTransformNet", "PhaseUpsampleConv", "StridedOutputConv", "pad_and_crop_indices"]


def _pad_indices(n: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Row (or column) indices that pad a side of length ``n`` to TransformNet's padded length
    ``max(8, ceil(n / 4) * 4)``: (reflect indices, replicate indices). Reflect indices are
    negative somewhere exactly when the pad is not smaller than ``n`` (reflection impossible)."""
    padded = max(8, (n + 3) // 4 * 4)  # literals: TorchScript cannot read module globals
    i = torch.arange(padded, device=device)
    reflect = torch.where(i < n, i, 2 * (n - 1) - i)
    replicate = torch.clamp(i, max=n - 1)
    return reflect, replicate


assert (PAD_MIN_SIZE, PAD_MULTIPLE) == (8, 4), "update _pad_indices to TransformNet's padding"


def pad_and_crop_indices(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For x (N, C, H, W): the row and column indices that pad it as the network's input
    (reflect where possible, else replicate, as :func:`~fast_nst.nets.layers.pad_input`), and
    the ones that crop the output back to (H, W); all built from the symbolic sizes."""
    h = x.shape[2]
    w = x.shape[3]
    reflect_h, replicate_h = _pad_indices(h, x.device)
    reflect_w, replicate_w = _pad_indices(w, x.device)
    can_reflect = (reflect_h.min() >= 0) & (reflect_w.min() >= 0)
    rows = torch.where(can_reflect, reflect_h, replicate_h)
    cols = torch.where(can_reflect, reflect_w, replicate_w)
    return rows, cols, torch.arange(h, device=x.device), torch.arange(w, device=x.device)


class ExportableTransformNet(nn.Module):
    """The same function as :class:`TransformNet` (to float rounding: the decoder is rewritten as
    described in the module's docs), written so that graph exporters (torch.export, TorchScript)
    keep the batch, height and width dynamic.

    Padding: TransformNet pads bottom/right with ``F.pad(mode="reflect")`` when both pads are
    smaller than their sides and with ``mode="replicate"`` otherwise; here both index sets are
    built and ``torch.where`` picks one, then ``index_select`` gathers rows and columns. The crop
    back to (H, W) is an ``index_select`` too (a slice would make torch.export guard on the
    relation between H and the padded size).
    """

    def __init__(self, net: TransformNet):
        super().__init__()
        # Plain Sequentials (not the TransformNet itself): TorchScript compiles what it holds.
        self.encoder = nn.Sequential(*net.encoder)
        self.residuals = nn.Sequential(*net.residuals)
        self.decoder = nn.Sequential(*[PhaseUpsampleConv(layer.conv_layer.conv, layer.conv_layer.norm)
                                       for layer in net.upsampling],
                                     StridedOutputConv(net.output_conv))
        self.tanh_output: bool = net.args.output_activation == "tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols, keep_h, keep_w = pad_and_crop_indices(x)
        x = x.index_select(2, rows).index_select(3, cols)
        y = output_mapping(self.decoder(self.residuals(self.encoder(x))), self.tanh_output)
        return y.index_select(2, keep_h).index_select(3, keep_w)


class PhaseUpsampleConv(nn.Module):
    """Nearest x2 upsampling + reflection-padded 3x3 conv + instance norm + ReLU (an
    :class:`~fast_nst.nets.layers.UpsampleConv`) as a 2x2 conv of the replicate-padded
    low-resolution input to 4x the channels, interleaved and cropped by one pixel:
    (N, Cin, h, w) -> (N, Cout, 2h, 2w), in export-friendly ops (pixel_shuffle, slice).

    Output pixel (2i + a, 2j + b) is phase (a, b) of the conv at (i + a, j + b). Interleaving
    the phases in reversed order, (1 - a, 1 - b), puts it at (2i + a + 1, 2j + b + 1) of the
    interleaved (2h + 2, 2w + 2) grid, for every phase: one crop instead of one per phase.
    ``conv``: the layer's 3x3 convolution (its bias, if any, is cancelled by the norm); ``norm``:
    its instance norm (a subclass may call a conditional one in its own forward)."""

    def __init__(self, conv: nn.Conv2d, norm: nn.Module):
        super().__init__()
        cout, cin = conv.out_channels, conv.in_channels
        weight = phase_weight(conv.weight.detach()).view(2, 2, cout, cin, 2, 2)  # phases (a, b) major
        # Output channel 4c + 2(1 - a) + (1 - b): pixel_shuffle's order, phases reversed.
        weight = weight.flip(0, 1).permute(2, 0, 1, 3, 4, 5).reshape(4 * cout, cin, 2, 2)
        self.conv = nn.Conv2d(cin, 4 * cout, 2, bias=False)
        self.conv.weight.data.copy_(weight)
        self.norm = norm

    def upsampled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, Cin, h, w) -> the conv of the upsampled input (N, Cout, 2h, 2w), before the norm."""
        h = x.shape[2]
        w = x.shape[3]
        y = self.conv(F.pad(x, [1, 1, 1, 1], mode="replicate"))  # (N, 4C, h + 1, w + 1)
        return F.pixel_shuffle(y, 2)[:, :, 1:2 * h + 1, 1:2 * w + 1]  # (N, C, 2h, 2w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.upsampled(x)))


class StridedOutputConv(nn.Module):
    """A reflection-padded 9x9 conv to 3 channels (the output :class:`~fast_nst.nets.layers.ConvLayer`)
    as a 10x10 stride-2 conv to 12 channels, one per output phase, shuffled back: (N, C, H, W)
    -> (N, 3, H, W) for even H and W (the padded input always is). The same multiply-adds as
    the fast CPU form's (:func:`~fast_nst.nets.fast_cpu.strided_weight`); no pixel-unshuffle, whose
    reshape would make torch.export require the size to be even, which it cannot prove."""

    def __init__(self, layer: ConvLayer):
        super().__init__()
        conv = layer.conv
        self.pad: int = layer.pad.padding[0]
        weight = strided_weight(conv.weight.detach())  # (4 Cout, Cin, 2k, 2k)
        self.conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[-1], stride=2)
        self.conv.weight.data.copy_(weight)
        self.conv.bias.data.copy_(conv.bias.detach().repeat_interleave(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad
        return F.pixel_shuffle(self.conv(F.pad(x, [p, p, p, p], mode="reflect")), 2)
