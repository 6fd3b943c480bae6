"""Regenerate the numbers and pictures of docs/video.md from two models trained alike, one
without and one with stability_weight:

    python docs/make_video_figures.py PLAIN.pth STABLE.pth --photos PHOTOS/ --strip PHOTO.jpg \\
        --label "..." [--n_photos 6]

Prints a Markdown table (warping error on known motion, the flow-free change ratio on the same
clips, on slow pans and on a still camera, stylizing time per frame) for per-frame statistics, stable statistics,
stability training and both, and writes docs/images/video/frames.jpg (four consecutive frames
of a known-motion clip of --strip in each setting, centre crops at 1:1) and changes.jpg (|frame
t - frame t-1 warped onto it| x4: flicker shows as bright texture, a stable result is dark),
captioned --label.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image

from fast_nst import load_stylizer
from fast_nst.core.images import tensor_to_pil
from fast_nst.core.motion import WARP_MODE, ClipMotion, warp
from fast_nst.report.sheet import captioned, labelled_grid
from fast_nst.report.stability import CLIP_MOTION, clip_of, measure_stability
from fast_nst.stylize.temporal import TemporalStatistics

OUT = Path(__file__).parent / "images" / "video"
PAN = ClipMotion(pan=(1.0, 0.0), zoom=0.0, rotate=0.0, noise=2.0)  # a slow pan across a photo
STRIP_FRAMES = 4
CROP = 144  # px of each frame shown, at 1:1


def _photos(folder: Path, n: int) -> list[Image.Image]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    return [Image.open(p).convert("RGB") for p in files]


def _table(models: list[tuple[str, object]], photos: list[Image.Image]) -> list[dict]:
    rows = []
    for name, s in models:
        known = measure_stability(name, s, photos)
        pan = measure_stability(name, s, photos, motion=PAN)
        for k, p in zip(known, pan):
            rows.append(dict(k.to_dict(), pan_change_ratio=p.change_ratio))
    return rows


def _time_per_frame(s, frames: torch.Tensor, repeats: int = 3) -> tuple[float, float]:
    """(ms per frame per-frame, with stable statistics): the best of ``repeats`` alternating runs
    (the least disturbed by other programs)."""
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        t0 = time.perf_counter()
        for chunk in frames.split(4):
            s.stylize_tensor(chunk)
        best[0] = min(best[0], time.perf_counter() - t0)
        t0 = time.perf_counter()
        with TemporalStatistics(s) as video:
            for chunk in frames.split(4):
                video.stylize(chunk)
        best[1] = min(best[1], time.perf_counter() - t0)
    return tuple(1000 * b / len(frames) for b in best)


def _crop(x: torch.Tensor) -> Image.Image:
    """The centre CROP x CROP of a frame (3, H, W), at 1:1 so texture shows as it moves."""
    h, w = x.shape[1:]
    top, left = (h - CROP) // 2, (w - CROP) // 2
    return tensor_to_pil(x[:, top:top + CROP, left:left + CROP])


def _strips(models: list[tuple[str, object, bool]], photo: Image.Image, label: str) -> tuple[Image.Image, Image.Image]:
    """(frames: the input and each setting's stylization, four consecutive frames a row;
    changes: |frame t - frame t-1 warped onto it| x4 a row per setting), both captioned."""
    clip, steps = clip_of(photo, STRIP_FRAMES + 1, (192, 256), CLIP_MOTION)
    frames = [_crop(clip[t]) for t in range(1, STRIP_FRAMES + 1)]
    frame_labels = [f"input, frame {t}" for t in range(1, STRIP_FRAMES + 1)]
    changes, change_labels = [], []
    for name, s, stable in models:
        if stable:
            with TemporalStatistics(s) as video:
                styled = video.stylize(clip)
        else:
            styled = s.stylize_tensor(clip)
        warped, valid = warp(styled[:-1], steps, mode=WARP_MODE)
        diff = ((warped - styled[1:]).abs() * 4 * valid).clamp(0, 1)
        frames += [_crop(styled[t]) for t in range(1, STRIP_FRAMES + 1)]
        frame_labels += [f"{name}, frame {t}" for t in range(1, STRIP_FRAMES + 1)]
        changes += [_crop(diff[t]) for t in range(STRIP_FRAMES)]
        change_labels += [f"{name}, change {t + 1}" for t in range(STRIP_FRAMES)]
    return (captioned(labelled_grid(frames, frame_labels, columns=STRIP_FRAMES, cell=CROP), label),
            captioned(labelled_grid(changes, change_labels, columns=STRIP_FRAMES, cell=CROP), label))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("plain", help="the model trained without stability_weight")
    p.add_argument("stable", help="the same training with stability_weight")
    p.add_argument("--photos", type=Path, required=True)
    p.add_argument("--n_photos", type=int, default=6)
    p.add_argument("--strip", type=Path, required=True, help="the photo of the strip figure")
    p.add_argument("--label", required=True, help="caption (say which loss network trained them)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    plain, stable = load_stylizer(args.plain, device="cpu"), load_stylizer(args.stable, device="cpu")
    rows = _table([("plain", plain), ("stability-trained", stable)], _photos(args.photos, args.n_photos))
    clip, _ = clip_of(Image.open(args.strip).convert("RGB"), 20, (192, 256), CLIP_MOTION)
    times = {"plain": _time_per_frame(plain, clip)}
    print("| model | statistics | warping error | input's | change ratio: known motion | slow pan | still camera |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['mode']} | {r['warp_error']:.2f} | {r['input_warp_error']:.2f} | "
              f"{r['change_ratio']:.2f} | {r['pan_change_ratio']:.2f} | {r['still_change_ratio']:.2f} |")
    print(f"ms per 256 x 192 frame (best of 3, batches of 4): per-frame {times['plain'][0]:.1f}, "
          f"stable statistics {times['plain'][1]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "ms_per_frame": times}, indent=1))
    OUT.mkdir(parents=True, exist_ok=True)
    pictures = _strips([("per-frame", plain, False), ("stable stats", plain, True),
                        ("stability-trained", stable, False), ("both", stable, True)],
                       Image.open(args.strip).convert("RGB"), args.label)
    for name, picture in zip(("frames.jpg", "changes.jpg"), pictures):
        picture.save(OUT / name, quality=65, optimize=True)  # ~120 KB each
        print(OUT / name, (OUT / name).stat().st_size // 1024, "KB")


if __name__ == "__main__":
    main()
