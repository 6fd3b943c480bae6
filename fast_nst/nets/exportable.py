"""The Johnson network written for graph exporters (ONNX via torch.export, TorchScript).

Why a wrapper: :class:`~fast_nst.nets.johnson.TransformNet` pads its input to a multiple of 4
(at least 8) with Python control flow on the shape (``if ph or pw``, reflect or replicate). A
graph export specialises that branch to the example's size; torch's ONNX exporter does so without
an error (it defers the size guards to runtime asserts, which the ONNX graph drops), and the
graph it writes is then wrong for other sizes. :class:`ExportableTransformNet` computes the same
padding and crop as index gathers whose indices are built from the symbolic sizes with tensor ops
(``arange``, ``where``), so one graph serves every size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Tuple

import torch
from torch import nn

from .layers import PAD_MIN_SIZE, PAD_MULTIPLE, output_mapping

if TYPE_CHECKING:
    from .johnson import TransformNet

__all__ = ["ExportableTransformNet", "pad_and_crop_indices"]


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
    """The same function as :class:`TransformNet` (bit for bit in eager mode), written so that
    graph exporters (torch.export, TorchScript) keep the batch, height and width dynamic.

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
        self.decoder = nn.Sequential(*net.decoder)
        self.tanh_output: bool = net.args.output_activation == "tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols, keep_h, keep_w = pad_and_crop_indices(x)
        x = x.index_select(2, rows).index_select(3, cols)
        y = output_mapping(self.decoder(self.residuals(self.encoder(x))), self.tanh_output)
        return y.index_select(2, keep_h).index_select(3, keep_w)
