"""Regenerate the pictures of docs/arbitrary.md from a trained AdaIN model:

    python docs/make_arbitrary_figures.py MODEL.pth --photos a.jpg b.jpg \\
        --seen p1.jpg p2.jpg --unseen q1.jpg q2.jpg q3.jpg --label "..."

Writes docs/images/arbitrary/styles.jpg (a row of style images, then each photo in each style;
"seen" styles were in training, "unseen" ones were not) and alpha.jpg (one photo and style at
alpha 0, 0.25, 0.5, 0.75, 1), each captioned with --label; prints the stylize time of one
512 x 512 photo.
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--photos", nargs="+", required=True)
    p.add_argument("--seen", nargs="+", default=[])
    p.add_argument("--unseen", nargs="+", default=[])
    p.add_argument("--label", required=True)
    p.add_argument("--max_size", type=int, default=256)
    p.add_argument("--style_size", type=int, default=256)
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    s = load_stylizer(args.model, device="cpu")
    styles = [(path, "seen") for path in args.seen] + [(path, "unseen") for path in args.unseen]
    photos = []
    for path in args.photos:
        img = Image.open(path).convert("RGB")
        img.thumbnail((args.max_size, args.max_size))
        photos.append(img)
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
    path = (args.unseen or args.seen)[0]
    cells = []
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
        s.set_style(path, alpha=alpha, style_size=args.style_size)
        cells.append(s.stylize(photos[0]))
    grid = labelled_grid(cells, [f"alpha {a}" for a in (0.0, 0.25, 0.5, 0.75, 1.0)], columns=5, cell=CELL)
    captioned(grid, args.label).save(OUT / "alpha.jpg", quality=72, optimize=True)
    for name in ("styles.jpg", "alpha.jpg"):
        print(OUT / name, (OUT / name).stat().st_size // 1024, "KB")
    x = torch.rand(1, 3, 512, 512)
    s.stylize_tensor(x)  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        s.stylize_tensor(x)
        times.append(time.perf_counter() - start)
    print(f"512 x 512 on CPU ({torch.get_num_threads()} threads): {1000 * min(times):.0f} ms (best of 3)")


if __name__ == "__main__":
    main()
