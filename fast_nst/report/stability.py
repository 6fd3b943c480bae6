"""Temporal stability: how much a model flickers on video, measured without optical flow.

From each photo, a short clip of exactly known motion (:func:`~fast_nst.core.motion.clip_frames`:
a sub-pixel pan, a slow zoom, a small rotation, sensor noise) is stylized frame by frame. Two
figures per model:

- **warping error**: frame t-1's stylization warped onto frame t with the known motion, and the
  mean absolute difference to frame t's stylization on the pixels both frames see (0-255
  levels); beside it the same figure for the input frames (noise and resampling alone).
- **change ratio** (flow-free, any video): mean |S_t - S_t-1| / mean |I_t - I_t-1|, how much
  more the stylized frames change than the input frames. 1 means the stylization changes no more
  than the scene does. On a moving clip it mostly measures the stylization's contrast: frame 0's
  stylization moved with the scene (no flicker at all) scores the same as frame-by-frame
  stylization. So it is also measured on a **still** clip of each photo (the same noise, no
  motion), where every change of the stylization is flicker.

Each model is measured per frame (every frame on its own: the baseline) and with stable
statistics (:class:`~fast_nst.stylize.temporal.TemporalStatistics`), where it supports them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from html import escape
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from ..core.images import pil_to_tensor
from ..core.motion import ClipMotion, clip_frames, full_view_size, warping_error
from ..stylize.base import Stylizer
from ..stylize.temporal import FrameChanges, TemporalStatistics, supports_temporal

__all__ = ["CLIP_FRAMES", "CLIP_MOTION", "CLIP_SIZE", "STILL_MOTION", "ClipScore", "StabilityResult", "change_ratio",
           "clip_of", "clip_size",
           "measure_stability", "score_clip", "stability_html"]

# The clip of each photo: 10 frames of 256 x 192 (60 % of a smaller photo) (4:3 video at a size a CPU stylizes quickly),
# panning 1.4 px, zooming 0.3 % and turning 0.1 degree a frame with noise of 2 levels: a slow,
# steady camera move, where flicker shows most.
CLIP_FRAMES = 10
CLIP_SIZE = (192, 256)
CLIP_MOTION = ClipMotion(pan=(1.4, 0.0), zoom=0.003, rotate=0.1, noise=2.0)
# A camera on a tripod: the same sensor noise, no motion.
STILL_MOTION = ClipMotion(pan=(0.0, 0.0), zoom=0.0, rotate=0.0, noise=CLIP_MOTION.noise)
# Pixels within this distance of a frame's edge are left out of the warping error: the network's
# reflection padding makes the border depend on what lies outside the frame.
EDGE_MARGIN = 4


@dataclass
class ClipScore:
    """One stylized clip's figures: warping errors (0-255 levels) and the change ratio."""

    warp_error: float
    input_warp_error: float
    change_ratio: float


@dataclass
class StabilityResult:
    """A model's mean figures over all photos' clips, in one ``mode`` ("per-frame" or "stable
    statistics"): those of the moving clips, the change ratio of the still clips
    (``still_change_ratio``), and the stylizing time per frame in milliseconds."""

    model: str
    mode: str
    warp_error: float
    input_warp_error: float
    change_ratio: float
    still_change_ratio: float
    ms_per_frame: float

    def to_dict(self) -> dict:
        return asdict(self)


def change_ratio(frames: torch.Tensor, styled: torch.Tensor) -> float:
    """mean |S_t - S_t-1| / mean |I_t - I_t-1| for frames ``frames`` and their stylizations
    ``styled``, both (T, 3, H, W) in [0, 1] (T >= 2; the same H, W; inputs that change)."""
    changes = FrameChanges()
    changes.add(frames, styled)
    assert changes.ratio is not None, "a clip of identical frames"
    return changes.ratio


def score_clip(frames: torch.Tensor, styled: torch.Tensor, steps: torch.Tensor,
               margin: int = EDGE_MARGIN) -> ClipScore:
    """The figures of a clip ``frames`` (T, 3, H, W) in [0, 1], its stylizations ``styled`` (same
    shape) and ``steps`` (T - 1, 3, 3), step t mapping frame t+1's pixels to frame t's."""
    return ClipScore(warping_error(styled[:-1], styled[1:], steps, margin),
                     warping_error(frames[:-1], frames[1:], steps, margin),
                     change_ratio(frames, styled))


def clip_of(photo: Image.Image, frames: int = CLIP_FRAMES, size: tuple[int, int] = CLIP_SIZE,
            motion: ClipMotion = CLIP_MOTION) -> tuple[torch.Tensor, torch.Tensor]:
    """The known-motion clip of ``photo`` (see :func:`~fast_nst.core.motion.clip_frames`: frames
    (T, 3, h, w) in [0, 1] and steps (T - 1, 3, 3)): frames of ``size`` (h, w), or of 60 % of a
    smaller photo's sides; the photo scaled so the clip sees most of it."""
    x = pil_to_tensor(photo.convert("RGB")).unsqueeze(0)  # (1, 3, H, W)
    big_h, big_w = x.shape[2:]
    h, w = clip_size(photo.size, size)
    # 1.25 x the frame (on its tighter side): the clip sees most of the photo; never below the
    # size the motion needs around the frame (a small photo shrunk to 1.25 x its small frame
    # left no room for the pan: square photos under 80 px made no clip).
    need_h, need_w = full_view_size((h, w), frames, motion)
    scale = min(1.0, max(1.25 * max(h / big_h, w / big_w), need_h / big_h, need_w / big_w))
    if scale < 1.0:
        x = F.interpolate(x, size=(round(big_h * scale), round(big_w * scale)), mode="area")
    return clip_frames(x, frames, (h, w), motion)


def clip_size(photo_size: tuple[int, int], size: tuple[int, int] = CLIP_SIZE) -> tuple[int, int]:
    """The frame size (h, w) of a clip of a photo of ``photo_size`` (w, h): ``size``, or 60 % of
    a smaller photo's sides."""
    # 60 %: room for the motion (10 frames of 1.4 px) around the frame; multiples of 4 (the
    # networks' grid) and at least 32 px.
    h, w = (max(32, min(side, int(0.6 * big) // 4 * 4)) for side, big in zip(size, photo_size[::-1]))
    return h, w


def _run(stylize: Callable[[torch.Tensor], torch.Tensor], frames: torch.Tensor,
         batch: int) -> tuple[torch.Tensor, float]:
    """``frames`` (T, 3, H, W) stylized ``batch`` at a time, in order; (stylized, seconds)."""
    outs, t0 = [], time.perf_counter()
    for chunk in frames.split(batch):
        outs.append(stylize(chunk))
    return torch.cat(outs), time.perf_counter() - t0


def _stylize_clip(stylizer: Stylizer, mode: str, clip: torch.Tensor, batch: int) -> tuple[torch.Tensor, float]:
    """``clip`` (T, 3, H, W) stylized in ``mode``, in order; (stylized, seconds)."""
    if mode == "per-frame":
        return _run(stylizer.stylize_tensor, clip, batch)
    with TemporalStatistics(stylizer) as video:
        return _run(video.stylize, clip, batch)


def measure_stability(name: str, stylizer: Stylizer, photos: Sequence[Image.Image],
                      frames: int = CLIP_FRAMES, size: tuple[int, int] = CLIP_SIZE,
                      motion: ClipMotion = CLIP_MOTION, batch: int = 4) -> list[StabilityResult]:
    """The stability of ``stylizer`` on a known-motion clip and a still clip
    (:data:`STILL_MOTION`) of each of ``photos``: one :class:`StabilityResult` per frame (the
    baseline) and, where the model supports them, one with stable statistics. Raises ValueError
    for a photo too small for the clip."""
    clips = [clip_of(p, frames, size, motion) for p in photos]
    stills = [clip_of(p, frames, size, STILL_MOTION)[0] for p in photos]
    modes = ["per-frame"] + (["stable statistics"] if supports_temporal(stylizer) else [])
    results = []
    for mode in modes:
        scores, still_ratios, seconds = [], [], 0.0
        for (clip, steps), still in zip(clips, stills):
            styled, s = _stylize_clip(stylizer, mode, clip, batch)
            scores.append(score_clip(clip, styled, steps))
            still_ratios.append(change_ratio(still, _stylize_clip(stylizer, mode, still, batch)[0]))
            seconds += s
        n = len(scores)
        results.append(StabilityResult(name, mode, sum(c.warp_error for c in scores) / n,
                                       sum(c.input_warp_error for c in scores) / n,
                                       sum(c.change_ratio for c in scores) / n, sum(still_ratios) / n,
                                       1000 * seconds / (n * frames)))
    return results


def _sizes_text(sizes: Sequence[tuple[int, int]]) -> str:
    """The clips' frame sizes (h, w) as the page says them: "256 x 192", "256 x 192 or 28 x 32"."""
    found = [f"{w} x {h}" for h, w in sorted(set(sizes or [CLIP_SIZE]), reverse=True)]
    if len(found) > 4:  # one per photo size: the largest and the smallest say enough
        return f"{found[0]} (smaller photos: down to {found[-1]})"
    return found[0] if len(found) == 1 else f"{', '.join(found[:-1])} or {found[-1]}"


def stability_html(results: Sequence[StabilityResult], sizes: Sequence[tuple[int, int]] = (),
                   left_out: Sequence[str] = ()) -> str:
    """The report's stability section: one table row per model and mode. ``sizes``: the clips'
    frame sizes (h, w) (:func:`clip_size`; default :data:`CLIP_SIZE`); ``left_out``: the names
    of photos too small for a clip."""
    rows = "".join(
        f"<tr><td>{escape(r.model)}</td><td>{escape(r.mode)}</td><td>{r.warp_error:.2f}</td>"
        f"<td>{r.input_warp_error:.2f}</td><td>{r.warp_error / max(r.input_warp_error, 1e-9):.1f}x</td>"
        f"<td>{r.change_ratio:.2f}</td><td>{r.still_change_ratio:.2f}</td><td>{r.ms_per_frame:.1f}</td></tr>"
        for r in results)
    return (
        "<h2>Temporal stability</h2>\n"
        f"<p>Each photo becomes a {CLIP_FRAMES}-frame {_sizes_text(sizes)} clip of known motion (pan "
        f"{CLIP_MOTION.pan[0]} px, zoom {100 * CLIP_MOTION.zoom:.1f} %, rotation {CLIP_MOTION.rotate}&deg; "
        f"per frame, noise {CLIP_MOTION.noise} levels). <b>Warping error</b>: frame t-1's result warped "
        "onto frame t (bicubic), mean absolute difference in 0-255 levels (lower: less flicker); the "
        "inputs' own figure beside it. <b>Change ratio</b>: how much more the stylized frames change "
        "than the input frames (flow-free); on the moving clip it mostly reflects the style's contrast, "
        "on a <b>still</b> clip of the same photo (noise only) every change is flicker. Per-frame is "
        "every frame on its own; stable statistics carries the instance-norm statistics across frames "
        "(eval.py's video default).</p>\n"
        + (f"<p class='left-out'>Too small for a clip, so not in these figures: {escape(', '.join(left_out))}.</p>\n"
           if left_out else "") +
        "<table><tr><th>model</th><th>mode</th><th>warping error</th><th>input's</th><th>ratio</th>"
        f"<th>change ratio</th><th>change ratio, still</th><th>ms/frame</th></tr>{rows}</table>\n")
