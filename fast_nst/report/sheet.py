"""The contact sheet: one row per photo (the photo, its stylization by each model, the style
image), under a strip of column titles."""

from __future__ import annotations

from typing import Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = ["CAPTION", "CELL", "GAP", "HEADER", "captioned", "contact_sheet", "labelled_grid", "sheet_size"]

# Longest side of each thumbnail: large enough to see brush strokes, small enough that 64 rows
# stay within JPEG's 65,535 px.
CELL = 256
GAP = 4
HEADER = 24  # the title strip: one line of Pillow's default font
_BACKGROUND = (255, 255, 255)
_TEXT = (20, 20, 20)
CAPTION = 18  # the caption strip under a picture: one line of Pillow's default font
_CAPTION_TEXT = (60, 60, 60)


def sheet_size(rows: int, cols: int, cell: int = CELL) -> tuple[int, int]:
    """(width, height) in px of a sheet of ``rows`` x ``cols`` cells, at most: a row is only as
    tall as its tallest picture (landscape photos make lower rows)."""
    return cols * cell + (cols + 1) * GAP, HEADER + rows * cell + rows * GAP


def _fit_size(img: Image.Image, width: int, height: int) -> tuple[int, int]:
    scale = min(width / img.width, height / img.height)
    return max(1, round(img.width * scale)), max(1, round(img.height * scale))


def _fit(img: Image.Image, width: int, height: int) -> Image.Image:
    """``img`` scaled (up or down, keeping its aspect) to fit ``width`` x ``height``."""
    return img.convert("RGB").resize(_fit_size(img, width, height), Image.Resampling.LANCZOS)


def _row_height(cells: Sequence[Sequence[Image.Image]], cell: int) -> int:
    """The height of a row of ``cells`` (each a list of images side by side in a ``cell`` square):
    its tallest fitted picture, so that no white band separates rows of landscape photos."""
    heights = [_fit_size(img, cell // len(images), cell)[1] for images in cells if images for img in images]
    return max(heights, default=cell)


def _paste_cell(sheet: Image.Image, images: Sequence[Image.Image], left: int, top: int, cell: int,
                height: int) -> None:
    """Paste ``images`` side by side, centred in the ``cell`` x ``height`` box at (left, top)."""
    if not images:
        return
    width = cell // len(images)
    for i, img in enumerate(images):
        thumb = _fit(img, width, cell)
        x = left + i * width + (width - thumb.width) // 2
        sheet.paste(thumb, (x, top + (height - thumb.height) // 2))


def _title(draw: ImageDraw.ImageDraw, text: str, left: int, width: int, font) -> None:
    while text and draw.textlength(text, font=font) > width - 4:
        text = text[:-4] + "..." if len(text) > 4 else ""
    draw.text((left + 2, (HEADER - 11) // 2), text, fill=_TEXT, font=font)


def contact_sheet(titles: Sequence[str], rows: Sequence[Sequence[Optional[Sequence[Image.Image]]]],
                  cell: int = CELL) -> Image.Image:
    """An RGB sheet of :func:`sheet_size`: ``titles`` over the columns, and in each row one cell
    per column, each a list of images shown side by side (None or empty: left blank)."""
    cols = len(titles)
    assert all(len(r) == cols for r in rows), "every row needs one cell per title"
    heights = [_row_height([images or [] for images in row], cell) for row in rows]
    sheet = Image.new("RGB", (sheet_size(0, cols, cell)[0], HEADER + sum(heights) + len(rows) * GAP), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for c, text in enumerate(titles):
        _title(draw, text, GAP + c * (cell + GAP), cell, font)
    top = HEADER
    for row, height in zip(rows, heights):
        for c, images in enumerate(row):
            _paste_cell(sheet, images or [], GAP + c * (cell + GAP), top, cell, height)
        top += height + GAP
    return sheet


def labelled_grid(images: Sequence[Image.Image], labels: Sequence[str], columns: int = 4,
                  cell: int = CELL) -> Image.Image:
    """An RGB grid of ``images`` (any sizes, each fitted into a ``cell`` square), ``columns``
    per row, each under its label (the photo in every style of a multi-style model)."""
    assert len(images) == len(labels), "one label per image"
    columns = max(1, min(columns, len(images)))
    starts = range(0, len(images), columns)
    heights = [_row_height([[img] for img in images[i:i + columns]], cell) for i in starts]
    width = columns * cell + (columns + 1) * GAP
    sheet = Image.new("RGB", (width, sum(HEADER + h + GAP for h in heights)), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    tops = [sum(HEADER + h + GAP for h in heights[:r]) for r in range(len(heights))]
    for i, (img, text) in enumerate(zip(images, labels)):
        r = i // columns
        left, top = GAP + (i % columns) * (cell + GAP), tops[r]
        draw.text((left + 2, top + (HEADER - 11) // 2), text[:60], fill=_TEXT, font=font)
        _paste_cell(sheet, [img], left, top + HEADER, cell, heights[r])
    return sheet


def captioned(img: Image.Image, label: str) -> Image.Image:
    """``img`` (RGB) with ``label`` in a :data:`CAPTION` strip underneath (figure captions, e.g.
    which loss network trained the model shown)."""
    out = Image.new("RGB", (img.width, img.height + CAPTION), _BACKGROUND)
    out.paste(img, (0, 0))
    ImageDraw.Draw(out).text((4, img.height + 3), label, fill=_CAPTION_TEXT, font=ImageFont.load_default())
    return out
