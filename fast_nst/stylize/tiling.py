"""Stylizing images of any size in bounded memory: overlapping tiles, feathered blending, and
instance-norm statistics shared by all tiles.

Why shared statistics: every instance norm in the transform net normalises with the mean and
variance of the *whole* feature map. A tile run on its own normalises with its own statistics,
so a sky tile and a street tile come out with different contrast and colour, and the seams show.
We first run the network once on the whole image downscaled to at most ``stats_size`` pixels on
its longest side, record each norm layer's per-channel mean and variance, and then run every
tile with those fixed statistics.

Each tile of ``tile`` x ``tile`` input pixels gets ``context`` pixels of real neighbourhood on
every side that has one (more than the network's receptive-field radius), which are computed
and thrown away, so the kept core of the tile sees what the whole image would have shown it.
Neighbouring cores overlap by ``overlap`` pixels, blended with linear ramps.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..nets.base import InferenceNetwork

__all__ = ["DEFAULT_CONTEXT", "DEFAULT_OVERLAP", "DEFAULT_STATS_SIZE", "auto_tile_size", "available_memory",
           "blend_tiles", "context_for", "context_for_radius", "downscaled", "plan_tiles", "stylize_tiled", "tile_core"]

# Context each tile gets beyond its kept core: at least the network's receptive-field radius
# (54 px for the default Johnson net), as a multiple of 4 to keep every tile on the network's
# downsampling grid. 64 px covers the default net; deeper ones get more (context_for).
DEFAULT_CONTEXT = 64
# Width of the blended band between neighbouring tile cores: hides what differences remain
# (the shared statistics come from a downscaled image for photos above stats_size).
DEFAULT_OVERLAP = 32
# Tiles start on a multiple of 4 px: the network downsamples by 4.
TILE_ALIGN = 4
# Longest side of the downscaled image that the shared statistics are computed on.
DEFAULT_STATS_SIZE = 1024


def plan_tiles(height: int, width: int, tile: int, overlap: int,
               align: int = TILE_ALIGN) -> list[tuple[int, int, int, int]]:
    """Tile boxes (top, left, bottom, right) covering the image, neighbours overlapping by at
    least ``overlap``. Every box starts at a multiple of ``align`` (the network downsamples by 4:
    a tile starting elsewhere would sample a shifted pixel grid and disagree with its
    neighbours), so the last row/column may be up to ``align - 1`` pixels larger than ``tile``."""
    if tile <= 2 * overlap or tile - overlap < align:
        # tiles start on the grid: a step of align past a tile shorter than that leaves gaps
        raise ValueError(f"tile size {tile} must exceed twice the overlap {overlap} and the overlap "
                         f"plus {align}")

    def spans(size: int) -> list[tuple[int, int]]:
        if size <= tile:
            return [(0, size)]
        step = max(align, (tile - overlap) // align * align)
        last = (size - tile) // align * align
        starts = list(range(0, last, step)) + [last]
        return [(a, min(a + tile, size)) for a in starts[:-1]] + [(last, size)]

    return [(t, l, b, r) for t, b in spans(height) for l, r in spans(width)]


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
        # Memory PyTorch's caching allocator holds but does not use is free to us, not to the driver.
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info.get("MemAvailable", info["MemFree"])
    except (OSError, KeyError, ValueError):
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def auto_tile_size(height: int, width: int, device: torch.device, budget: Optional[int] = None,
                   bytes_per_pixel: int = 1024, min_tile: int = 256) -> Optional[int]:
    """None when the whole image fits the memory budget, else the largest tile (a multiple of
    64) that does. The budget is half of the free memory, and on CPU at most 1 GiB: the tiles'
    working set then stays near 1 GiB whatever the photo's size (a 6000 x 4000 photo peaks
    under 3 GB in all), and other programs keep their memory. Never below ``min_tile``: a tile
    must hold its context and overlap on both sides."""
    if budget is None:
        free = available_memory(device)
        budget = free // 2 if device.type == "cuda" else min(free // 2, 1 << 30)
    if height * width * bytes_per_pixel <= budget:
        return None
    side = int((budget / bytes_per_pixel) ** 0.5) // 64 * 64
    return max(min_tile, side)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def context_for(net: InferenceNetwork) -> int:
    """The context a tile of ``net`` needs: see :func:`context_for_radius`."""
    return context_for_radius(net.receptive_radius)


def context_for_radius(radius: int) -> int:
    """The context a tile of a network of receptive radius ``radius`` needs: the radius rounded
    up to a multiple of 4, at least :data:`DEFAULT_CONTEXT`."""
    return max(DEFAULT_CONTEXT, -(-radius // 4) * 4)


def tile_core(tile: int, overlap: int, context: int = DEFAULT_CONTEXT) -> int:
    """Side of the kept core of a ``tile`` x ``tile`` input region; ValueError if too small."""
    core = tile - 2 * context
    # plan_tiles' neighbours overlap by ``overlap`` and start on a 4 px grid (TILE_ALIGN)
    least = max(2 * overlap + 1, overlap + TILE_ALIGN)
    if core < least:
        raise ValueError(f"tile size {tile} is too small: it must be at least 2 x context ({context}) + "
                         f"{least} (more than 2 x overlap ({overlap}), and at least overlap + {TILE_ALIGN}) "
                         f"= {2 * context + least} px")
    return core


def downscaled(x: torch.Tensor, stats_size: int = DEFAULT_STATS_SIZE) -> torch.Tensor:
    """``x`` (1, 3, H, W), float in [0, 1] or uint8, area-downscaled to at most ``stats_size``
    pixels on its longest side (``x`` itself if it is that small): the image the shared
    statistics are recorded on."""
    _, _, h, w = x.shape
    scale = min(1.0, stats_size / max(h, w))
    if scale == 1.0:
        return x
    return F.interpolate(_as_float(x), size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area")


def blend_tiles(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int,
                overlap: int = DEFAULT_OVERLAP, context: int = DEFAULT_CONTEXT,
                progress: bool = False) -> tuple[torch.Tensor, int]:
    """Stylize ``x`` (1, 3, H, W), float in [0, 1] or uint8, kept on the CPU, tile by tile:
    ``forward`` maps a tile (1, 3, h, w) float32 in [0, 1] on the CPU to its stylization (1, 3,
    h, w) in [0, 1] (any device and float dtype), with the statistics already shared. Each tile
    is a core plus ``context`` pixels around it (at most ``tile`` x ``tile``); the cores overlap
    by ``overlap`` pixels, blended with linear ramps.
    Returns (output (1, 3, H, W) float32 in [0, 1] on the CPU, number of tiles)."""
    _, _, h, w = x.shape
    out = torch.zeros(3, h, w)  # weighted sum of tile outputs
    weight = torch.zeros(1, h, w)
    boxes = plan_tiles(h, w, tile_core(tile, overlap, context), overlap)
    for top, left, bottom, right in tqdm(boxes, desc="tiles", unit="tile", disable=not progress,
                                         file=sys.stderr, leave=False, dynamic_ncols=True):
        # the core plus its context, clipped to the image: at most tile x tile pixels
        t, l, b, r = max(0, top - context), max(0, left - context), min(h, bottom + context), min(w, right + context)
        y = forward(_as_float(x[..., t:b, l:r]))  # (1, 3, b - t, r - l)
        y = y[..., top - t:bottom - t, left - l:right - l]  # (1, 3, th, tw): the core
        wy = _ramp(bottom - top, overlap, top == 0, bottom == h)
        wx = _ramp(right - left, overlap, left == 0, right == w)
        wt = wy[:, None] * wx[None, :]  # (th, tw)
        out[:, top:bottom, left:right].add_(y[0].float().cpu() * wt)
        weight[:, top:bottom, left:right].add_(wt)
    return out.div_(weight).clamp_(0, 1).unsqueeze(0), len(boxes)


@torch.inference_mode()
def stylize_tiled(net: InferenceNetwork, x: torch.Tensor, tile: int, overlap: int = DEFAULT_OVERLAP,
                  stats_size: int = DEFAULT_STATS_SIZE, device: Optional[torch.device] = None,
                  autocast_dtype: Optional[torch.dtype] = None,
                  stats_image: Optional[torch.Tensor] = None,
                  context: Optional[int] = None, progress: bool = False) -> tuple[torch.Tensor, int]:
    """Stylize ``x`` (1, 3, H, W) — float in [0, 1] or uint8 in [0, 255], kept on the CPU — tile
    by tile on ``device`` with any :class:`~fast_nst.nets.base.InferenceNetwork` (its
    ``shared_norm_statistics`` and ``receptive_radius``; ``context`` defaults to :func:`context_for`).

    ``stats_image`` (1, 3, h, w), same value range as ``x``: the downscaled whole image the
    shared statistics come from (default: :func:`downscaled` to ``stats_size``).
    ``progress``: a progress bar over the tiles (a 12-megapixel photo takes minutes on a CPU).
    Returns (output (1, 3, H, W) float32 in [0, 1] on the CPU, number of tiles)."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected a (1, 3, H, W) tensor, got {tuple(x.shape)}")
    device = device or next(net.parameters()).device
    context = context_for(net) if context is None else context
    amp = dict(device_type=device.type, dtype=autocast_dtype or torch.float32,
               enabled=autocast_dtype is not None)
    if stats_image is None:
        stats_image = downscaled(x, stats_size)

    def forward(t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(**amp):
            return net(t.to(device))

    with net.shared_norm_statistics() as shared:
        forward(_as_float(stats_image))  # records the shared statistics
        shared.mode = "apply"
        return blend_tiles(forward, x, tile, overlap, context, progress)
