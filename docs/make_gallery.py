"""Build the rows of docs/gallery.md from quality reports (python -m fast_nst.evaluate).

    python docs/make_gallery.py --photos brad_pitt chicago --label "stand-in VGG16" \\
        candy=reports/candy wave=reports/wave ...

Each NAME=REPORT makes docs/images/gallery/NAME.jpg: the style image, then each photo next to
its stylization (the first model column of the report), with ``--label`` written under the row;
and prints a markdown table of the report's mean losses (results.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from fast_nst.report.sheet import captioned

OUT = Path(__file__).parent / "images" / "gallery"
HEIGHT = 220  # px per picture: the brush strokes stay visible, a row stays under ~100 KB
GAP = 4


def _fit(img: Image.Image) -> Image.Image:
    scale = HEIGHT / img.height
    return img.convert("RGB").resize((max(1, round(img.width * scale)), HEIGHT), Image.Resampling.LANCZOS)


def gallery_row(report: Path, photos: list[str], label: str) -> tuple[Image.Image, dict]:
    """(the row picture, the report's first model entry of results.json)."""
    data = json.loads((report / "results.json").read_text())
    model = data["models"][0]
    style = next((report / "styles").glob("*.jpg"))
    pictures = [_fit(Image.open(style))]
    for name in photos:
        pictures += [_fit(Image.open(report / "photos" / f"{name}.jpg")),
                     _fit(Image.open(report / model["name"] / f"{name}.jpg"))]
    width = sum(p.width for p in pictures) + GAP * (len(pictures) - 1)
    row = Image.new("RGB", (width, HEIGHT), "white")
    x = 0
    for p in pictures:
        row.paste(p, (x, 0))
        x += p.width + GAP
    return captioned(row, label), model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("entries", nargs="+", metavar="NAME=REPORT")
    p.add_argument("--photos", nargs="+", required=True, help="photo names in the reports")
    p.add_argument("--label", required=True, help="caption under every row (say which loss network)")
    p.add_argument("--quality", type=int, default=80)
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print("| style | mean content loss | mean style loss | file |\n| --- | --- | --- | --- |")
    for entry in args.entries:
        name, report = entry.split("=", 1)
        row, model = gallery_row(Path(report), args.photos, f"{name} - {args.label}")
        dest = OUT / f"{name}.jpg"
        row.save(dest, quality=args.quality, optimize=True)
        print(f"| {name} | {model['mean_content']:.3g} | {model['mean_style']:.3g} | "
              f"{dest.name} ({dest.stat().st_size // 1024} KB) |")


if __name__ == "__main__":
    main()
