"""Regenerate the pictures of docs/multistyle.md from a trained multi-style model:

    python docs/make_multistyle_figures.py MODEL.pth PHOTO.jpg --blend candy wave --label "..."

Writes docs/images/multistyle/styles.jpg (the photo in every style) and blend.jpg (the photo
from the first --blend style to the second in five steps), each captioned with --label.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from fast_nst import load_stylizer
from fast_nst.report.sheet import captioned, labelled_grid

OUT = Path(__file__).parent / "images" / "multistyle"
CELL = 256  # px per picture: strokes visible, each file under ~100 KB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("photo")
    p.add_argument("--blend", nargs=2, required=True, metavar=("A", "B"))
    p.add_argument("--label", required=True, help="caption (say which loss network trained it)")
    p.add_argument("--max_size", type=int, default=CELL)
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    s = load_stylizer(args.model, device="cpu")
    photo = Image.open(args.photo).convert("RGB")
    photo.thumbnail((args.max_size, args.max_size))
    cells = [photo] + [s.stylize(photo, style=name) for name in s.style_names]
    grid = labelled_grid(cells, ["photo"] + s.style_names, columns=len(cells), cell=CELL)
    captioned(grid, args.label).save(OUT / "styles.jpg", quality=80, optimize=True)
    a, b = args.blend
    weights = [0.0, 0.25, 0.5, 0.75, 1.0]
    cells = [s.stylize(photo, style={a: 1 - t, b: t} if 0 < t < 1 else (b if t else a)) for t in weights]
    labels = [f"{a} {1 - t:.2f} : {b} {t:.2f}" for t in weights]
    grid = labelled_grid(cells, labels, columns=len(cells), cell=CELL)
    captioned(grid, args.label).save(OUT / "blend.jpg", quality=80, optimize=True)
    for name in ("styles.jpg", "blend.jpg"):
        print(OUT / name, (OUT / name).stat().st_size // 1024, "KB")


if __name__ == "__main__":
    main()
