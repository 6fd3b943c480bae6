"""Known motion: affine warps of image batches with exact validity masks, random small motions,
and synthetic clips of exactly known motion made from one photo.

Used by stability training (:mod:`fast_nst.training.stability`: the network should commute with
small motions) and by the temporal-stability measure (:mod:`fast_nst.report.stability`: warp
frame t-1's stylization onto frame t and compare).

Conventions: a motion is a 3 x 3 matrix ``M`` in pixel coordinates (x right, y down, pixel
centres at integers) that maps each *output* pixel ``p`` to the *source* position ``M p`` it is
read from: ``warp(img, M)(p) = img(M p)``, interpolated. So the identity leaves an image unchanged
and ``M = [[1, 0, dx], [0, 1, dy], [0, 0, 1]]`` moves the content by ``(-dx, -dy)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["ClipMotion", "SMALL_MOTION", "affine", "clip_frames", "full_view_size", "random_motions", "warp",
           "warping_error"]


def affine(shift: tuple[float, float] = (0.0, 0.0), scale: float = 1.0, angle: float = 0.0,
           centre: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """The (3, 3) float64 pixel-coordinate matrix p -> centre + R(angle) (p - centre) / scale + shift:
    read from a position rotated by ``angle`` degrees and zoomed in by ``scale`` about ``centre``
    (x, y), then moved by ``shift`` (dx, dy) pixels."""
    a = math.radians(angle)
    c, s = math.cos(a) / scale, math.sin(a) / scale
    cx, cy = centre
    return torch.tensor([[c, -s, cx - c * cx + s * cy + shift[0]],
                         [s, c, cy - s * cx - c * cy + shift[1]],
                         [0.0, 0.0, 1.0]], dtype=torch.float64)


def warp(img: torch.Tensor, m: torch.Tensor, size: Optional[tuple[int, int]] = None,
         padding_mode: str = "zeros", mode: str = "bilinear") -> tuple[torch.Tensor, torch.Tensor]:
    """``img`` (N, C, H, W) read at ``m`` (3, 3) or (N, 3, 3) times each output pixel, with
    ``mode`` "bilinear" or "bicubic" interpolation.

    ``size``: the output's (h, w) (default the input's). Returns (warped (N, C, h, w), valid
    (N, 1, h, w) bool): valid where every interpolation tap is a real pixel (the source position
    lies inside the image; for bicubic, at least one pixel inside); ``padding_mode`` fills the
    rest: "zeros", "border", "reflection".
    """
    n, _, h_in, w_in = img.shape
    h, w = size or (h_in, w_in)
    m = m.to(torch.float64).expand(n, 3, 3)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)]).reshape(1, 3, -1)  # (1, 3, h w)
    src = (m @ pts)[:, :2]  # (N, 2, h w): source (x, y) per output pixel
    inset = 1 if mode == "bicubic" else 0  # bicubic reads one more pixel on each side
    valid = ((src[:, 0] >= inset) & (src[:, 0] <= w_in - 1 - inset) & (src[:, 1] >= inset)
             & (src[:, 1] <= h_in - 1 - inset))
    # grid_sample's coordinates with align_corners=False: pixel x sits at (2x + 1) / W - 1.
    grid = torch.stack([(2 * src[:, 0] + 1) / w_in - 1, (2 * src[:, 1] + 1) / h_in - 1], dim=-1)
    grid = grid.reshape(n, h, w, 2).to(img.device, img.dtype if img.is_floating_point() else torch.float32)
    out = F.grid_sample(img.float() if not img.is_floating_point() else img, grid, mode=mode,
                        padding_mode=padding_mode, align_corners=False)
    return out, valid.reshape(n, 1, h, w).to(img.device)


# The warping error reads frame t-1 at sub-pixel positions with bicubic interpolation. Bilinear
# interpolation blurs: shifting a stylized photo by half a pixel that way differs from the exact
# (band-limited) shift by 4.6 levels on average, bicubic by 2.6 (photos: 1.9 and 1.2; measured
# on four held-out photos and their mosaic stylizations at 256 px), so a bilinear measure
# would count most of a sharp, perfectly steady texture as flicker and favour blurry results.
WARP_MODE = "bicubic"


def warping_error(prev: torch.Tensor, cur: torch.Tensor, m: torch.Tensor, margin: int = 0,
                  mode: str = WARP_MODE) -> float:
    """Mean absolute difference, in 0-255 levels, between ``prev`` (N, C, H, W) in [0, 1] warped
    by ``m`` (frame t's pixel -> frame t-1's; ``mode`` interpolation) and ``cur``, over the valid
    pixels (and channels) at least ``margin`` pixels inside the frame."""
    warped, valid = warp(prev, m, mode=mode)
    if margin:
        valid[..., :margin, :] = valid[..., -margin:, :] = False
        valid[..., :margin] = valid[..., -margin:] = False
    diff = (warped - cur).abs().mean(dim=1, keepdim=True)  # (N, 1, H, W)
    count = valid.sum()
    assert count > 0, "the motion leaves no valid pixel"
    return float(diff[valid].sum() / count * 255.0)


@dataclass(frozen=True)
class ClipMotion:
    """Per-frame motion of a synthetic clip: a pan of ``pan`` (dx, dy) frame pixels, a zoom of
    ``zoom`` (relative, 0.003 = 0.3 % a frame) and a rotation of ``rotate`` degrees per frame,
    plus Gaussian sensor noise of ``noise`` levels (0-255) standard deviation on every frame."""

    pan: tuple[float, float] = (1.4, 0.0)
    zoom: float = 0.003
    rotate: float = 0.0
    noise: float = 2.0


# Small random motions for stability training: about what one video frame moves at 25 fps in a
# slow pan (sub-pixel to 2 px; the measure's default clip pans 1.4 px a frame), zooms (up to
# 2 %) or turns (up to 1 degree); noise about a camera's at ISO 400 (1 % of the range ~ 2.5 levels).
SMALL_MOTION = dict(shift=2.0, zoom=0.02, angle=1.0, noise=0.01)


def random_motions(n: int, height: int, width: int, shift: float = SMALL_MOTION["shift"],
                   zoom: float = SMALL_MOTION["zoom"], angle: float = SMALL_MOTION["angle"],
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``n`` random motions (n, 3, 3) about the centre of a ``height`` x ``width`` image: shifts
    uniform in [-shift, shift] px, zooms in [1 - zoom, 1 + zoom], rotations in [-angle, angle]
    degrees (drawn on the CPU from ``generator``, default torch's global one)."""
    u = torch.rand(n, 4, generator=generator, dtype=torch.float64) * 2 - 1  # (n, 4) in [-1, 1]
    centre = ((width - 1) / 2, (height - 1) / 2)
    return torch.stack([affine((float(r[0]) * shift, float(r[1]) * shift), 1 + float(r[2]) * zoom,
                               float(r[3]) * angle, centre) for r in u])


def _extent(size: tuple[int, int], frames: int, motion: ClipMotion) -> tuple[tuple[float, float], tuple[float, float]]:
    """((span_h, span_w), (margin_h, margin_w)) of a clip of ``frames`` frames of ``size`` (h, w):
    the frame turned by the clip's largest angle, in frame pixels (it scales with the view), and
    the photo pixels the pan travels both ways plus interpolation room (they do not)."""
    h, w = size
    turn = math.radians(abs(motion.rotate) * frames)
    span = (h * math.cos(turn) + w * math.sin(turn), w * math.cos(turn) + h * math.sin(turn))
    travel = (abs(motion.pan[1]) * frames + 2, abs(motion.pan[0]) * frames + 2)
    return span, (2 * travel[0] + 2, 2 * travel[1] + 2)


def full_view_size(size: tuple[int, int], frames: int, motion: ClipMotion = ClipMotion()) -> tuple[int, int]:
    """The smallest photo size (H, W) whose clip of ``frames`` frames of ``size`` (h, w) (see
    :func:`clip_frames`) shows it at its own resolution (a view of 1); a smaller one is seen
    enlarged, down to half its resolution."""
    (span_h, span_w), (margin_h, margin_w) = _extent(size, frames, motion)
    return math.ceil(span_h + margin_h), math.ceil(span_w + margin_w)


def clip_frames(photo: torch.Tensor, frames: int, size: tuple[int, int], motion: ClipMotion = ClipMotion(),
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A clip of ``frames`` frames of ``size`` (h, w) moving over ``photo`` (1, 3, H, W) in [0, 1].

    Frame 0 shows the photo's centre region at the scale where the whole clip stays inside the
    photo; each later frame moves by ``motion``. Returns (frames (T, 3, h, w) in [0, 1] with
    seeded noise, steps (T - 1, 3, 3): step t maps frame t+1's pixels to frame t's, for
    :func:`warp`). Raises ValueError when the photo is too small for the motion.
    """
    _, _, big_h, big_w = photo.shape
    h, w = size
    z = motion.zoom
    # The largest view of the photo (source pixels per frame pixel) that keeps every frame inside
    # it, capped at 1 (no resampling below the photo's own resolution: the photo is best
    # downscaled beforehand, with area averaging, to about full_view_size).
    (span_h, span_w), (margin_h, margin_w) = _extent(size, frames, motion)
    view = min(1.0, (big_w - margin_w) / span_w, (big_h - margin_h) / span_h)
    if view < 0.5:
        raise ValueError(f"a {big_w} x {big_h} photo is too small for a {w} x {h} clip of {frames} frames")
    centre_out = ((w - 1) / 2, (h - 1) / 2)
    mats = []
    for t in range(frames):
        # frame pixel -> photo pixel: about the frame centre, scaled by view / zoom^t, rotated,
        # placed at the photo centre moved by the pan.
        scale = (1 + z) ** t / view
        m = affine((0.0, 0.0), scale, motion.rotate * t, centre_out)
        m[0, 2] += (big_w - 1) / 2 - centre_out[0] + motion.pan[0] * view * t
        m[1, 2] += (big_h - 1) / 2 - centre_out[1] + motion.pan[1] * view * t
        mats.append(m)
    mats_t = torch.stack(mats)
    clip, _ = warp(photo.expand(frames, -1, -1, -1), mats_t, size)
    gen = torch.Generator().manual_seed(seed)
    clip = (clip + torch.randn(clip.shape, generator=gen) * (motion.noise / 255.0)).clamp(0, 1)
    steps = torch.stack([torch.linalg.inv(mats_t[t]) @ mats_t[t + 1] for t in range(frames - 1)])
    return clip, steps
