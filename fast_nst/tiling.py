"""Stylizing images of any size in bounded memory: overlapping tiles, feathered blending, and
instance-norm statistics shared by all tiles.

Why shared statistics: every instance norm in the transform net normalises with the mean and
variance of the *whole* feature map. A tile run on its own normalises with its own statistics,
so a sky tile and a street tile come out with different contrast and colour, and the seams show.
We first run the network once on the whole image downscaled to at most ``stats_size`` pixels on
its longest side, record each norm layer's per-channel mean and variance, and then run every
tile with those fixed statistics. Tiles overlap by ``overlap`` pixels (more than the network's
receptive-field radius), and overlaps are blended with linear ramps so no edge is visible.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .model import TransformNet

# Receptive-field radius of the transform net: 4 (9x9) + 1 + 2 (stride-2 3x3s) + 10 x 4 (3x3 at
# 1/4 resolution) + 2 + 1 (upsample convs) + 4 (9x9) = 54 px. 64 px of overlap covers it.
DEFAULT_OVERLAP = 64
# Longest side of the downscaled image that the shared statistics are computed on.
DEFAULT_STATS_SIZE = 1024
# Peak bytes per pixel of an untiled fp32 forward pass (measured on CPU with inference_mode:
# ~0.6 kB/px at 2048 x 2048 including input and output); used to choose a tile size.
BYTES_PER_PIXEL = 640
_MIN_TILE = 256


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Tile boxes (top, left, bottom, right) covering the image, neighbours overlapping by
    ``overlap``; the last row/column is aligned to the image's edge."""
    if tile <= 2 * overlap:
        raise ValueError(f"tile size {tile} must exceed twice the overlap {overlap}")

    def starts(size: int) -> list[int]:
        if size <= tile:
            return [0]
        step = tile - overlap
        out = list(range(0, size - tile, step))
        return out + [size - tile]

    return [(t, l, min(t + tile, height), min(l + tile, width))
            for t in starts(height) for l in starts(width)]


def _ramp(n: int, overlap: int, start_edge: bool, end_edge: bool) -> torch.Tensor:
    """1-D blending weights: rising over ``overlap`` px unless that side is the image's edge."""
    w = torch.ones(n)
    k = min(overlap, n // 2)
    if k > 0:
        ramp = (torch.arange(k, dtype=torch.float32) + 0.5) / k
        if not start_edge:
            w[:k] = ramp
        if not end_edge:
            w[n - k:] = ramp.flip(0)
    return w


def available_memory(device: torch.device) -> int:
    """Bytes free for activations on ``device``."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info.get("MemAvailable", info["MemFree"])
    except (OSError, KeyError, ValueError):
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def auto_tile_size(height: int, width: int, device: torch.device,
                   budget: Optional[int] = None) -> Optional[int]:
    """None when the whole image fits the memory budget (half of what is free, at most 2 GiB on
    CPU so other programs keep theirs), else the largest tile (multiple of 64) that does."""
    if budget is None:
        free = available_memory(device)
        budget = free // 2 if device.type == "cuda" else min(free // 2, 2 << 30)
    if height * width * BYTES_PER_PIXEL <= budget:
        return None
    side = int((budget / BYTES_PER_PIXEL) ** 0.5) // 64 * 64
    return max(_MIN_TILE, side)


class _SharedStats:
    """Forward hooks on every InstanceNorm2d: record (mean, var) per channel, or normalise with
    the recorded ones instead of the input's own."""

    def __init__(self, net: nn.Module):
        self.norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
        self.stats: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.mode = "record"

    def hook(self, index: int):
        def fn(module: nn.InstanceNorm2d, inputs, output):
            x = inputs[0]
            if self.mode == "record":
                var, mean = torch.var_mean(x.float(), dim=(2, 3), keepdim=True, correction=0)
                self.stats.append((mean, var))
                return None
            mean, var = self.stats[index]
            y = (x.float() - mean) * torch.rsqrt(var + module.eps)
            y = y * module.weight.view(1, -1, 1, 1) + module.bias.view(1, -1, 1, 1)
            return y.to(output.dtype)

        return fn

    @contextmanager
    def installed(self) -> Iterator["_SharedStats"]:
        handles = [m.register_forward_hook(self.hook(i)) for i, m in enumerate(self.norms)]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()


@torch.inference_mode()
def stylize_tiled(net: TransformNet, x: torch.Tensor, tile: int, overlap: int = DEFAULT_OVERLAP,
                  stats_size: int = DEFAULT_STATS_SIZE, device: Optional[torch.device] = None,
                  autocast_dtype: Optional[torch.dtype] = None) -> tuple[torch.Tensor, int]:
    """Stylize ``x`` (1, 3, H, W) in [0, 1] (kept on the CPU) tile by tile on ``device``.

    Returns (output (1, 3, H, W) float32 in [0, 1] on the CPU, number of tiles).
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected a (1, 3, H, W) tensor, got {tuple(x.shape)}")
    device = device or next(net.parameters()).device
    _, _, h, w = x.shape
    shared = _SharedStats(net)
    amp = dict(device_type=device.type, dtype=autocast_dtype or torch.float32,
               enabled=autocast_dtype is not None)
    with shared.installed():
        scale = min(1.0, stats_size / max(h, w))
        small = x if scale == 1.0 else F.interpolate(
            x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area")
        with torch.autocast(**amp):
            net(small.to(device))  # records the shared statistics
        shared.mode = "apply"
        out = torch.zeros(3, h, w)
        weight = torch.zeros(1, h, w)
        boxes = plan_tiles(h, w, tile, overlap)
        for top, left, bottom, right in boxes:
            with torch.autocast(**amp):
                y = net(x[..., top:bottom, left:right].to(device))[0].float().cpu()  # (3, th, tw)
            wy = _ramp(bottom - top, overlap, top == 0, bottom == h)
            wx = _ramp(right - left, overlap, left == 0, right == w)
            wt = wy[:, None] * wx[None, :]  # (th, tw)
            out[:, top:bottom, left:right] += y * wt
            weight[:, top:bottom, left:right] += wt
    return (out / weight).clamp_(0, 1).unsqueeze(0), len(boxes)
