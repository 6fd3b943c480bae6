"""Images from outside: photos, style images, uploads. Every image is bounded in pixels twice:
from the size its header declares, before a byte of it is decoded (:func:`open_image`), and
from the size a resize would make, before the resize (:func:`resize_side`): a 2.9 KB PNG of
16 x 20000 px is harmless to decode but, resized to a shorter side of 512, is 512 x 640000 px.

The limit for decoding is Pillow's decompression-bomb limit (``--max_image_pixels``), the limit
for style images :data:`MAX_STYLE_PIXELS`. Errors are :class:`DataError` naming the size, the
limit and the setting that changes it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError
from ..images import normalize_mode
from .paths import input_file
from .text import shown

__all__ = ["MAX_STYLE_PIXELS", "STYLE_BACKGROUND", "check_pixels", "open_image", "pixel_limit", "resize_side",
           "set_max_image_pixels", "side_size", "style_rgb"]

#: Largest style image, in pixels, after resizing to ``style_size``: a network reads the whole
#: style image at once (no tiles), and VGG's first layers hold 64 float32 channels a pixel
#: (256 bytes), so 4.2 MP (2048 x 2048) already costs about 1 GB a layer. The default style
#: sizes (256 for training, 512 for AdaIN) give 0.07-1 MP for aspect ratios up to 1:4.
MAX_STYLE_PIXELS = 1 << 22

#: What the transparent parts of a style image are composited onto. A network reads colours
#: only; the RGB stored under transparent pixels is whatever the editor left there (often black),
#: while a cut-out painting, a logo or a sticker is meant to be seen on a page: white.
STYLE_BACKGROUND = (255, 255, 255)


def pixel_limit() -> Optional[int]:
    """The decoding limit in pixels now (``--max_image_pixels``; None: no limit)."""
    return Image.MAX_IMAGE_PIXELS


def set_max_image_pixels(n: Optional[int]) -> None:
    """Set the decoding limit (Pillow's decompression-bomb limit, process-wide); 0 or None
    removes it."""
    Image.MAX_IMAGE_PIXELS = n if n else None


def check_pixels(width: int, height: int, limit: Optional[int], what: str, fix: str) -> None:
    """:class:`DataError` when a ``width`` x ``height`` image (``what``: "photo.jpg", "style
    image x.png at style_size 512") has more than ``limit`` pixels (None: no limit); ``fix``
    says how to change it ("lower --style_size")."""
    if limit and width * height > limit:
        raise DataError(f"{what} is {width} x {height} px ({width * height:,} pixels), more than the limit "
                        f"of {limit:,} pixels; {fix}.")


def open_image(path: str | Path, draft_size: Optional[int] = None,
               check_size: Optional[Callable[[int, int], None]] = None, name: Optional[str] = None,
               limit_fix: str = "if you trust this file, raise the limit with --max_image_pixels N (0 removes it)",
               formats: Optional[Sequence[str]] = None) -> Image.Image:
    """Decode ``path`` fully into an RGB or RGBA image with EXIF orientation applied.

    ``path`` must be a regular file (a FIFO, a device or a socket is refused before it is
    opened). The size its header declares is checked against :func:`pixel_limit` and then
    ``check_size(width, height)`` (which raises :class:`DataError` to refuse the file) before
    anything is decoded. ``draft_size`` lets JPEG decoding run at a reduced scale that still
    keeps the shorter side at least that large (much faster for training crops). Raises
    :class:`DataError` for a missing, non-image, truncated or over-large file. Messages call the
    file ``name`` (default: its path; the web app gives an upload's own file name, never the
    server's temporary path) and say ``limit_fix`` for an image over :func:`pixel_limit`.
    ``formats``: the Pillow format names tried (None: every format Pillow reads); a file in
    another format is "not an image file Pillow can read".
    """
    name = shown(str(path) if name is None else name)
    if not Path(path).exists() and not Path(path).is_symlink():
        raise DataError(f"Image not found: {name}")
    try:
        path = input_file(path, "image")
    except DataError as e:  # a folder, a FIFO...: said with the path, which the caller may not show
        raise DataError(str(e).replace(shown(str(path)), name)) from None
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit; treat both alike.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=formats) as img:
                check_pixels(*img.size, pixel_limit(), name, limit_fix)
                if check_size is not None:
                    check_size(*img.size)
                if draft_size is not None and img.format == "JPEG":
                    w, h = img.size
                    scale = draft_size / max(1, min(w, h))
                    img.draft("RGB", (max(1, int(w * scale + 1)), max(1, int(h * scale + 1))))
                img.load()
                img = ImageOps.exif_transpose(img)
                return normalize_mode(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(
            f"{name}: image is larger than the decompression-bomb limit of {pixel_limit()} pixels. "
            f"{limit_fix[:1].upper()}{limit_fix[1:]}."
        ) from None
    except UnidentifiedImageError:
        raise DataError(f"{name}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        raise DataError(f"{name}: could not decode image ({shown(str(e))}); the file may be truncated or corrupt") from None


def style_rgb(img: Image.Image, name: object = "", warn: Union[bool, Callable[[str], None]] = True) -> Image.Image:
    """A style image of any mode as RGB, its transparent and partly transparent pixels (an alpha
    channel, or a palette's or PNG's transparent colour) composited onto :data:`STYLE_BACKGROUND`.
    ``warn``: say so in one warning naming ``name`` when any pixel is transparent (False: off,
    where the same image was warned about before, or for thousands of paintings; a function:
    it is given the message instead, as the web app shows it on the page)."""
    if img.mode != "RGBA":
        img = normalize_mode(img)
    if img.mode == "RGB" and "transparency" in img.info:  # a PNG's tRNS colour, kept by normalize_mode
        img = img.convert("RGBA")
    if img.mode != "RGBA":
        return img.convert("RGB")
    alpha = img.getchannel("A")
    if alpha.getextrema()[0] == 255:  # an alpha channel, but nothing transparent: as it is
        return img.convert("RGB")
    flat = Image.new("RGB", img.size, STYLE_BACKGROUND)
    flat.paste(img.convert("RGB"), mask=alpha)  # straight alpha: a * colour + (1 - a) * white
    if warn:
        label = f"style image {shown(str(name))}" if str(name) else "the style image"
        message = (f"{label} has transparent areas: they are used as white (composited onto a white "
                   "background); fill them in an image editor for another colour.")
        if callable(warn):
            warn(message)
        else:
            warnings.warn(message)
    return flat


def side_size(width: int, height: int, size: Optional[int], side: str = "shorter") -> tuple[int, int]:
    """(width, height) of a ``width`` x ``height`` image resized so its ``side`` ("shorter" or
    "longer") is ``size`` (None: unchanged), aspect ratio kept, each side at least 1."""
    if size is None:
        return width, height
    f = size / (min(width, height) if side == "shorter" else max(width, height))
    return max(1, round(width * f)), max(1, round(height * f))


def resize_side(img: Image.Image, size: Optional[int], side: str, limit: Optional[int], what: str,
                fix: str) -> Image.Image:
    """``img`` resized (Lanczos) so its ``side`` ("shorter" or "longer") is ``size`` (None:
    as it is); :class:`DataError` (see :func:`check_pixels`) before any work when the result
    would have more than ``limit`` pixels."""
    w, h = side_size(*img.size, size, side)
    check_pixels(w, h, limit, what, fix)
    return img if (w, h) == img.size else img.resize((w, h), Image.Resampling.LANCZOS)


def resize_style(img: Image.Image, size: Optional[int], side: str, name: object, setting: str) -> Image.Image:
    """A style image ``img`` resized so its ``side`` is ``size`` (``setting`` names the option
    that gave it: "--style_size", "style_size"), refused with :class:`DataError` before the
    resize when the result would pass :data:`MAX_STYLE_PIXELS`."""
    at = f" at {setting} {size}" if size is not None else ""
    label = f"style image {shown(str(name))}" if str(name) else "the style image"
    return resize_side(img, size, side, MAX_STYLE_PIXELS, f"{label}{at}",
                       f"lower {setting} or crop the image (a style image is read whole, never in tiles)")
