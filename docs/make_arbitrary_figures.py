"""Regenerate the pictures of docs/arbitrary.md from a trained AdaIN model:

    python docs/make_arbitrary_figures.py MODEL.pth --photos a.jpg b.jpg \\
        --seen p1.jpg p2.jpg --unseen q1.jpg q2.jpg q3.jpg --label "..."

Writes docs/images/arbitrary/styles.jpg (a row of style images, then each photo in each style;
"seen" styles were in training, "unseen" ones were not) and alpha.jpg (one photo and style at
alpha 0, 0.25, 0.5, 0.75, 1) and, with --progress, progress.jpg (one photo and style through
the run's checkpoints), each captioned with --label; prints the stylize time of one 512 x 512
photo.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image

from fast_nst import load_stylizer
from fast_nst.report.sheet import captioned, labelled_grid

OUT = Path(__file__).parent / "images" / "arbitrary"
CELL = 200
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--photos", nargs="+", required=True)
    p.add_argument("--seen", nargs="+", default=[])
    p.add_argument("--unseen", nargs="+", default=[])
    p.add_argument("--progress", nargs="+", default=[], metavar="CHECKPOINT",
                   help="checkpoints of the run, oldest first: progress.jpg shows the first photo in "
                        "the first unseen style at each, and at the final model")
    p.add_argument("--label", required=True)
    p.add_argument("--max_size", type=int, default=256)
    p.add_argument("--style_size", type=int, default=256)
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    s = load_stylizer(args.model, device="cpu")
    photos = []
    for path in args.photos:
        img = Image.open(path).convert("RGB")
        img.thumbnail((args.max_size, args.max_size))
        photos.append(img)
    written = [styles_figure(s, photos, args), alpha_figure(s, photos[0], args)]
    if args.progress:
        written.append(progress_figure(photos[0], args))
    for path in written:
        print(path, path.stat().st_size // 1024, "KB")
    print(f"512 x 512 on CPU ({torch.get_num_threads()} threads): {1000 * stylize_time(s):.0f} ms (best of 3)")


def styles_figure(s, photos: list, args: argparse.Namespace) -> Path:
    """styles.jpg: a row of style images, then each photo in each style."""
    styles = [(path, "seen") for path in args.seen] + [(path, "unseen") for path in args.unseen]
    cells, labels = [Image.new("RGB", (8, 8), "white")], [""]
    cells += [Image.open(path).convert("RGB") for path, _ in styles]
    labels += [f"{Path(path).stem} ({kind})" for path, kind in styles]
    for photo in photos:
        cells.append(photo)
        labels.append("photo")
        for path, _ in styles:
            s.set_style(path, style_size=args.style_size)
            cells.append(s.stylize(photo))
            labels.append("")
    grid = labelled_grid(cells, labels, columns=len(styles) + 1, cell=CELL)
    captioned(grid, args.label).save(OUT / "styles.jpg", quality=72, optimize=True)
    return OUT / "styles.jpg"


def alpha_figure(s, photo: Image.Image, args: argparse.Namespace) -> Path:
    """alpha.jpg: one photo and style at alpha 0, 0.25, 0.5, 0.75, 1."""
    path = (args.unseen or args.seen)[0]
    cells = []
    for alpha in ALPHAS:
        s.set_style(path, alpha=alpha, style_size=args.style_size)
        cells.append(s.stylize(photo))
    grid = labelled_grid(cells, [f"alpha {a}" for a in ALPHAS], columns=len(ALPHAS), cell=CELL)
    captioned(grid, args.label).save(OUT / "alpha.jpg", quality=72, optimize=True)
    return OUT / "alpha.jpg"


def progress_figure(photo: Image.Image, args: argparse.Namespace) -> Path:
    """progress.jpg: the photo, the style, then the photo in that style at each checkpoint."""
    path = (args.unseen or args.seen)[0]
    cells, labels = [photo, Image.open(path).convert("RGB")], ["photo", Path(path).stem]
    for ckpt in [*args.progress, args.model]:
        s = load_stylizer(ckpt, device="cpu")
        s.set_style(path, style_size=args.style_size)
        cells.append(s.stylize(photo))
        labels.append(f"step {s.info.get('step')}")
    grid = labelled_grid(cells, labels, columns=len(cells), cell=CELL)
    captioned(grid, args.label).save(OUT / "progress.jpg", quality=72, optimize=True)
    return OUT / "progress.jpg"


def stylize_time(s) -> float:
    """Seconds of the fastest of 3 stylizations of one 512 x 512 photo (after one warm-up)."""
    x = torch.rand(1, 3, 512, 512)
    s.stylize_tensor(x)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        s.stylize_tensor(x)
        times.append(time.perf_counter() - start)
    return min(times)


if __name__ == "__main__":
    main()
