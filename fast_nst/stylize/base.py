"""The stylizer contract that the PyTorch, ONNX and video paths share, and the options they take.

A :class:`Stylizer` turns photos into stylizations: :meth:`Stylizer.stylize_tensor` on tensors
(N, 3, H, W) in [0, 1], :meth:`Stylizer.stylize` on PIL images with :class:`StylizeOptions`
(resize, tiling, colour preservation, strength, alpha). Subclasses implement
``stylize_tensor`` and say whether they can tile (``can_tile``) and how much memory a pixel
costs (``bytes_per_pixel``); the image pipeline around the network lives here, once.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..core.errors import FastNSTError
from ..core.files import safe_component
from ..core.images import normalize_mode, pil_to_tensor, split_alpha, tensor_to_pil
from ..core.untrusted import MAX_STYLE_PIXELS, open_image, resize_style, shown, style_rgb
from ..nets.adain import check_alpha, pad_indices
from ..nets.layers import check_images
from ..nets.multistyle import StyleError, StyleSpec, blend_weights, resolve_style, style_label
from .tiling import DEFAULT_OVERLAP, DEFAULT_STATS_SIZE, auto_tile_size, available_memory, tile_core

__all__ = ["DEFAULT_STYLE_SIZE", "LOAD_PRECISIONS", "PRECISIONS", "StyleImages", "StylizeOptions", "Stylizer",
           "ThinStyleError", "finish", "preserve_colors", "resize_for_processing", "round_up", "style_images"]

# int8: onnxruntime's quantization of the model, on the CPU (fast_nst.stylize.int8).
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# What load_stylizer and the commands take: the precisions, or "auto" (resolved when the model loads).
LOAD_PRECISIONS = (*PRECISIONS, "auto")
# The longest side style images are resized to for an arbitrary-style model. Huang & Belongie
# resize the shorter side to 512 at test time; style_size means the longest side in every
# command (training configs, optimize, eval), so 512 here bounds the style image as training's
# 512 px configs do (a 4:3 painting becomes 512 x 384).
DEFAULT_STYLE_SIZE = 512
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


#: Style images for an arbitrary-style model: a PIL image, a path, one (image or path, weight)
#: pair, or a list of images, paths or such pairs (a blend).
StyleImages = Union[Image.Image, str, Path, Sequence[Any]]


def _one_style_image(item: Any) -> tuple[Image.Image, str]:
    """(RGB image, name) of a style image given as a PIL image or a path; transparency is
    composited onto white, said in a warning (see core.untrusted.style_rgb)."""
    if isinstance(item, Image.Image):
        filename = getattr(item, "filename", "") or ""
        return style_rgb(item, filename), Path(filename or "style").stem
    if isinstance(item, (str, Path)):
        return style_rgb(open_image(item), item), Path(item).stem
    raise StyleError(f"style image {str(item)[:60]!r} is not an image or a path; give a PIL image, a "
                     "path, or a list of (image, weight) pairs")


def _is_weight(value: Any) -> bool:
    """A blend weight's type: a real number (numpy's too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def style_images(spec: StyleImages) -> tuple[list[Image.Image], list[float], str]:
    """(RGB images (transparent areas made white), their weights normalised to sum 1, a short
    label such as ``candy`` or ``candy70-mosaic30``) for ``spec`` (see :data:`StyleImages`);
    StyleError or DataError (an unreadable file) otherwise."""
    lone_pair = isinstance(spec, tuple) and len(spec) == 2 and _is_weight(spec[1]) and \
        isinstance(spec[0], (Image.Image, str, Path))  # (image, 0.5): one pair, not two images
    items = list(spec) if isinstance(spec, (list, tuple)) and not lone_pair else [spec]
    if not items:
        raise StyleError("no style image given")
    images, weights, names = [], [], []
    for item in items:
        weight = 1.0
        if isinstance(item, (list, tuple)):
            if len(item) != 2 or not _is_weight(item[1]):
                raise StyleError(f"style {str(item)[:80]!r}: expected an (image, weight) pair")
            item, weight = item[0], float(item[1])
        image, name = _one_style_image(item)
        images.append(image)
        weights.append(weight)
        names.append(name)
    weights = blend_weights(weights)
    return images, weights, style_label(weights, names)


class OptionError(FastNSTError):
    """A stylize option is out of range; the message starts with the option's name."""


class ThinStyleError(StyleError):
    """A style image with a side thinner than the model reads: ``style_size`` is the longest side
    at which it has enough (None: only past :data:`MAX_STYLE_PIXELS`). The message says what the
    image needs; a caller with a style-size option of its own adds it (eval.py: --style_size)."""

    def __init__(self, message: str, style_size: Optional[int]):
        super().__init__(message)
        self.style_size = style_size


def _thin_style(size: tuple[int, int], resized: tuple[int, int], least: int, style_size: Optional[int]) -> ThinStyleError:
    """Why a style image of ``size`` px, ``resized`` at ``style_size``, is thinner than ``least``."""
    w, h = size
    fits = -(-least * max(w, h) // min(w, h))  # the longest side at which the shorter one is `least`
    fits = fits if fits * least <= MAX_STYLE_PIXELS else None  # about the pixels it would have there
    has = f", which this one has at a longest side of {fits} px or more" if fits else ""
    # At a style_size the longest side is fixed, so only the shape can change; as it is, the size too.
    fix = "a less elongated" if style_size is not None else "a larger or less elongated"
    return ThinStyleError(f"style image of {resized[0]} x {resized[1]} px: style images need at least {least} px "
                          f"per side{has}; use {fix} image", fits)


class InputError(OptionError, ValueError):
    """What :meth:`Stylizer.stylize_tensor` was given is not an image batch (N, 3, H, W) of
    finite values (a ValueError too, as before it had a class of its own)."""


def check_input(x: Any) -> None:
    """:class:`InputError` unless ``x`` is a tensor (N, 3, H, W) without NaN or infinite values:
    one of them spreads through every instance norm, and the whole output is NaN."""
    if not torch.is_tensor(x):
        raise InputError(f"stylize_tensor takes a torch tensor (N, 3, H, W), got {type(x).__name__}")
    try:
        check_images(x)
    except ValueError as e:
        raise InputError(str(e)) from None
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise InputError("the input holds NaN or infinite values; give values in [0, 1]")


@dataclass(frozen=True)
class StylizeOptions:
    """What :meth:`Stylizer.stylize` does around the network, checked on construction.

    ``tile_size``: "auto" tiles only when the image would not fit the memory budget, None never
    tiles, an int forces tiles of that size (see :mod:`fast_nst.stylize.tiling`); ``overlap``: the
    blended band between tiles. ``max_size`` (longest side) and ``scale`` resize the photo first;
    the result has the processed size unless ``keep_size``. ``preserve_color`` keeps the photo's
    colours (luminance-only transfer); ``strength`` in [0, 1] blends the result with the photo.
    """

    tile_size: Union[int, str, None] = "auto"
    overlap: int = DEFAULT_OVERLAP
    preserve_color: bool = False
    strength: float = 1.0
    max_size: Optional[int] = None
    scale: Optional[float] = None
    keep_size: bool = False

    def __post_init__(self) -> None:
        self._as_python_values()
        if not (isinstance(self.strength, (int, float)) and 0.0 <= self.strength <= 1.0):
            raise OptionError(f"strength must be between 0 and 1, got {self.strength}")
        if not isinstance(self.overlap, int) or self.overlap < 0:
            raise OptionError(f"overlap must be >= 0, got {self.overlap}")
        for name in ("scale", "max_size"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0 and value < float("inf")):
                raise OptionError(f"{name} must be > 0, got {value}")
        tile = self.tile_size
        if tile not in ("auto", None):
            if isinstance(tile, bool) or not isinstance(tile, int):
                raise OptionError(f"tile_size must be 'auto', None or an integer, got {tile!r}")
            try:
                tile_core(tile, self.overlap)
            except ValueError as e:
                raise OptionError(f"tile_size: {e}") from None

    def _as_python_values(self) -> None:
        """numpy's numbers as Python's (they passed as neither, and the message "strength must be
        between 0 and 1, got 0.5" contradicted itself); bools refused as numbers and anything but
        a bool (or 0/1) refused as a switch ("no" is true)."""
        for name in ("strength", "overlap", "max_size", "scale", "tile_size"):
            value = getattr(self, name)
            if isinstance(value, bool):
                raise OptionError(f"{name} must be a number, got {value}")
            if isinstance(value, numbers.Integral):
                object.__setattr__(self, name, int(value))
            elif isinstance(value, numbers.Real) and name in ("strength", "scale"):
                object.__setattr__(self, name, float(value))
        for name in ("preserve_color", "keep_size"):
            value = getattr(self, name)
            if not isinstance(value, (bool, numbers.Integral)) or value not in (0, 1):
                raise OptionError(f"{name} must be True or False, got {value!r}")
            object.__setattr__(self, name, bool(value))

    @classmethod
    def from_flags(cls, **values: Any) -> "StylizeOptions":
        """The options from command-line flags: errors name the flag (``--strength ...``)."""
        try:
            return cls(**values)
        except OptionError as e:
            raise OptionError(f"--{e}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_OPTION_NAMES = {f.name for f in fields(StylizeOptions)}


def make_options(options: Union[StylizeOptions, dict, None] = None, **overrides: Any) -> StylizeOptions:
    """:class:`StylizeOptions` from an instance, a dict or keyword arguments; unknown names are an error."""
    if options is not None and not isinstance(options, (StylizeOptions, dict)):
        raise OptionError(f"options must be a StylizeOptions or a dict, got {type(options).__name__}")
    values = options.to_dict() if isinstance(options, StylizeOptions) else dict(options or {})
    values.update(overrides)
    unknown = sorted(set(values) - _OPTION_NAMES)
    if unknown:
        raise FastNSTError(f"Unknown stylize option(s): {', '.join(unknown)}; valid: {', '.join(sorted(_OPTION_NAMES))}")
    return StylizeOptions(**values)


class Stylizer:
    """A stylizing network on a device. Subclasses set the attributes below and implement
    :meth:`stylize_tensor`; tiling ones also :meth:`_stylize_tiled`.

    ``name``: the style, as a safe file-name component (output file names); ``info``: where the model came from (path, step,
    format); ``precision``: "fp32", "bf16", "fp16" or "int8"; ``compiled``: whether torch.compile wraps
    the network; ``can_tile``: whether it can stylize in tiles with shared statistics;
    ``bytes_per_pixel``: peak memory per pixel of one forward (the tiling budget).
    ``style_names``: a multi-style model's styles (empty for one style); :meth:`set_style`
    chooses one or a blend, ``style`` is the current weight vector (S,) (None for one style).
    ``style_input``: "image" for an arbitrary-style model (model_type adain), whose
    :meth:`set_style` takes style images; "" otherwise.
    """

    can_tile = False
    bytes_per_pixel = 1024
    style_names: list[str] = []
    style: Optional[torch.Tensor] = None
    style_input: str = ""
    min_style_side: int = 1  # an arbitrary-style model's smallest style-image side

    def set_style(self, style: Any, alpha: Optional[float] = None,
                  style_size: Optional[int] = DEFAULT_STYLE_SIZE) -> None:
        """Stylize in ``style`` from now on. A multi-style model: a name, ``"candy:0.7,mosaic:0.3"``,
        an index, a {name: weight} dict or one weight per style (normalised to sum 1). An
        arbitrary-style model: a style image (PIL image or path) or a list of (image, weight)
        pairs (a blend), with ``alpha`` (0: the photo's own features .. 1: the full style,
        the default) and ``style_size`` (the style images' longest side, default 512; None
        keeps their size).
        :class:`StyleError` for a model of one style or a style it does not have."""
        where = self.info.get("path", "this model")
        if self.style_input == "image":
            try:
                alpha = check_alpha(1.0 if alpha is None else alpha)
            except ValueError as e:
                raise OptionError(str(e)) from None
            self._set_style_images(*self._style_tensors(style, style_size), alpha)
            return
        if alpha is not None or style_size != DEFAULT_STYLE_SIZE:
            raise StyleError(f"{where}: alpha and style_size are for arbitrary-style models (model_type adain)")
        if not self.style_names:
            raise StyleError(f"{where} {self.one_style_reason()}")
        self._set_style_weights(resolve_style(style, self.style_names))

    def one_style_reason(self) -> str:
        """Why a style cannot be chosen in this model of one style, and what to do instead (the
        rest of a sentence that starts with the model's path)."""
        if baked := self.baked_style():
            return (f"has its style baked in ({shown(baked, 80)}): it was exported from a multi-style model "
                    "with --style. To choose styles at run time, export the multi-style model without --style.")
        return (f"has one style ({self.name}); choosing a style needs a multi-style model (model_type "
                "johnson_multi) or an arbitrary-style one (model_type adain)")

    def baked_style(self) -> Optional[str]:
        """The style baked into an export made with --style (raw metadata text: print via shown())."""
        baked = meta.get("baked_style") if isinstance(meta := self.info.get("metadata"), dict) else None
        return baked if isinstance(baked, str) and baked else None

    def _set_style_weights(self, weights: torch.Tensor) -> None:
        """Use the style vector ``weights`` (S,), normalised (multi-style models)."""
        raise NotImplementedError

    def _set_style_images(self, images: list[torch.Tensor], weights: list[float], label: str,
                          alpha: float) -> None:
        """Use the style images (each (1, 3, h, w) in [0, 1], on the CPU) blended by ``weights``
        (normalised), named ``label``, at ``alpha`` (arbitrary-style models)."""
        raise NotImplementedError

    def _style_tensors(self, spec: Any, style_size: Optional[int]) -> tuple[list[torch.Tensor], list[float], str]:
        """The style images of ``spec`` (see :func:`style_images`) resized to the longest side
        ``style_size`` (None: as they are), as (1, 3, h, w) tensors in [0, 1], with their
        normalised weights and label; OptionError/StyleError below :attr:`min_style_side`."""
        least = self.min_style_side
        if style_size is not None and (isinstance(style_size, bool) or not isinstance(style_size, int)
                                       or style_size < least):
            raise OptionError(f"style_size must be a whole number of pixels >= {least}, got {style_size}")
        images, weights, label = style_images(spec)
        # Refused before the resize: 40 x 40 px at style_size 30000 would be 30000 x 30000 px.
        names = [label] if len(images) == 1 else [f"{i + 1} of {len(images)}" for i in range(len(images))]
        tensors = [pil_to_tensor(resize_style(img, style_size, "longer", name, "style_size (--style_size)")).unsqueeze(0)
                   for img, name in zip(images, names)]
        for img, t in zip(images, tensors):
            if min(t.shape[2:]) < least:
                raise _thin_style(img.size, (t.shape[3], t.shape[2]), least, style_size)
        return tensors, weights, label

    def _needs_style_image(self) -> StyleError:
        """What stylizing an arbitrary-style model without a style image raises."""
        where = f"{self.info['path']}: " if self.info.get("path") else ""
        return StyleError(f"{where}this model needs a style image: --style_image painting.jpg "
                          "(in Python: stylizer.set_style('painting.jpg'))")

    def __init__(self, device: torch.device, name: str = "", info: Optional[dict] = None,
                 precision: str = "fp32", compiled: bool = False):
        if precision not in PRECISIONS:
            raise FastNSTError(f"Unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
        self.device = device
        # Output files are named after it, and it comes from the model file: untrusted text.
        self.name = safe_component(name, fallback="stylized")
        self.info = info or {}
        self.precision = precision
        self.compiled = compiled
        self.last_tile_count = 1

    def stylize_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, 3, H, W) float in [0, 1] (any device) -> (N, 3, H, W) float32 in [0, 1] on
        the same device as ``x``."""
        raise NotImplementedError

    def stylize(self, image: Image.Image, options: Optional[StylizeOptions] = None,
                progress: bool = False, style: Optional[StyleSpec] = None, **kwargs: Any) -> Image.Image:
        """A PIL image of any mode -> its stylization as a PIL image, with ``options`` (or the
        same fields as keyword arguments, see :class:`StylizeOptions`). RGBA (and LA,
        transparent palette) inputs keep their alpha channel; others come back RGB.
        ``progress``: a progress bar over the tiles when the image is stylized in tiles.
        ``style``: for a multi-style model, :meth:`set_style` first (it stays chosen)."""
        if not isinstance(image, Image.Image):
            raise OptionError(f"stylize takes a PIL image, got {type(image).__name__}: open a file with "
                              "PIL.Image.open(path); stylize_tensor takes (N, 3, H, W) tensors")
        o = make_options(options, **kwargs)
        if style is not None:
            self.set_style(style)
        rgb, alpha = split_alpha(normalize_mode(image))
        original_size = rgb.size
        rgb = resize_for_processing(rgb, o.max_size, o.scale)
        if alpha is not None and alpha.size != rgb.size:
            alpha = alpha.resize(rgb.size, Image.Resampling.LANCZOS)
        out = finish(rgb, self._stylize_rgb(rgb, o, progress), o.preserve_color, o.strength,
                     original_size if o.keep_size else None)
        if o.keep_size and alpha is not None and alpha.size != out.size:
            alpha = alpha.resize(out.size, Image.Resampling.LANCZOS)
        if alpha is not None:
            out.putalpha(alpha)
        return out

    def tile_size_for(self, height: int, width: int, options: StylizeOptions) -> Optional[int]:
        """The tile side for an image of this size (None: whole image at once). A stylizer that
        cannot tile refuses, with tile_size "auto", an image whose forward would not fit the
        memory free on the CPU: a clear message before the work, not an out-of-memory kill."""
        if options.tile_size == "auto" and not self.can_tile and self.device.type == "cpu":
            need, free = self._whole_image_memory(height, width)
            if need > free:
                side = int((free / self.bytes_per_pixel) ** 0.5) // 64 * 64
                raise FastNSTError(
                    f"a {width} x {height} image needs about {need / 2**30:.1f} GiB to stylize in one "
                    f"piece, more than the {free / 2**30:.1f} GiB free, and this model cannot tile "
                    f"(.onnx files not exported by fast-nst, and arbitrary-style ones exported by an earlier "
                    f"version, run whole images): use --max_size {max(side, 64)}, or the .pth model, which "
                    f"tiles; --tile_size 0 tries anyway.")
        if options.tile_size in ("auto", None):
            return None
        if not self.can_tile:
            raise FastNSTError(
                f"tile_size {options.tile_size!r}: this model cannot tile (.onnx files not exported by "
                "fast-nst, and arbitrary-style ones exported by an earlier version, stylize whole images); use "
                "the .pth model (or export it again) for tiles, or max_size to bound memory.")
        return options.tile_size

    def _network_tile(self, height: int, width: int, options: StylizeOptions, context: int,
                      budget: Optional[int] = None) -> Optional[int]:
        """For a stylizer that tiles with ``context`` px of context per tile: with tile_size
        "auto", the largest tile the memory ``budget`` holds (:func:`auto_tile_size`; None: the
        whole image fits); else the tile size asked, OptionError if too small for the context;
        either put on the grid (:meth:`_on_grid`)."""
        if options.tile_size == "auto":
            tile = auto_tile_size(height, width, self.device, budget=budget, bytes_per_pixel=self.bytes_per_pixel,
                                  min_tile=2 * (context + options.overlap) + 64)
        else:
            tile = options.tile_size
            if tile is not None:
                try:
                    tile_core(tile, options.overlap, context)
                except ValueError as e:
                    raise OptionError(f"tile_size: {e} for this network") from None
        return self._on_grid(tile, options.overlap, context)

    # Tiles must start on the network's pixel grid, its total downsampling (a tile starting
    # elsewhere pools other pixel groups than the whole image does): 4 for the Johnson networks
    # (what tiling aligns to by itself), 8 for AdaIN at relu4_1. For a coarser grid, the context,
    # the overlap and each tile's core are made multiples of it, and the photo is padded to one as
    # the network pads it itself (reflection, bottom and right).

    def _grid(self) -> int:
        """The pixel grid this stylizer's tiles start on."""
        return 4

    def _on_grid(self, tile: Optional[int], overlap: int, context: int) -> Optional[int]:
        """``tile`` with a core (tile - 2 x ``context``) on the grid: rounded down, or up where
        that leaves no room for the overlap; unchanged on tiling's own grid of 4."""
        grid = self._grid()
        if tile is None or grid <= 4:
            return tile
        overlap = round_up(overlap, grid)
        core = (tile - 2 * context) // grid * grid
        if core <= 2 * overlap:
            core = (2 * overlap // grid + 1) * grid
        return core + 2 * context

    def _to_grid(self, x: torch.Tensor, overlap: int) -> tuple[torch.Tensor, int]:
        """(the photo ``x`` (1, 3, H, W) padded at the bottom and right to a multiple of the grid,
        by reflection as the network pads it; ``overlap`` rounded up to the grid)."""
        grid = self._grid()
        if grid <= 4:
            return x, overlap
        h, w = x.shape[2:]
        x = x.index_select(2, pad_indices(h, grid, x.device)).index_select(3, pad_indices(w, grid, x.device))
        return x, round_up(overlap, grid)

    @staticmethod
    def _tiling_inputs(rgb: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """(the photo (1, 3, H, W) uint8, a quarter of float32's memory for a huge photo: tiles
        convert on the fly; the photo downscaled to the statistics' size (1, 3, h, w) float in
        [0, 1])."""
        x = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).unsqueeze(0)
        small = resize_for_processing(rgb, DEFAULT_STATS_SIZE, None)
        return x, pil_to_tensor(small).unsqueeze(0)

    def _whole_image_memory(self, height: int, width: int) -> tuple[int, int]:
        """(bytes one forward of a whole ``height`` x ``width`` image needs, bytes free now)."""
        return height * width * self.bytes_per_pixel, available_memory(self.device)

    def _stylize_rgb(self, rgb: Image.Image, options: StylizeOptions, progress: bool = False) -> Image.Image:
        w, h = rgb.size
        tile = self.tile_size_for(h, w, options)
        if tile is None or (h <= tile and w <= tile):
            self.last_tile_count = 1
            return tensor_to_pil(self.stylize_tensor(pil_to_tensor(rgb).unsqueeze(0))[0])
        return self._stylize_tiled(rgb, tile, options.overlap, progress)

    def _stylize_tiled(self, rgb: Image.Image, tile: int, overlap: int, progress: bool = False) -> Image.Image:
        raise NotImplementedError


def round_up(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple``."""
    return -(-n // multiple) * multiple


def finish(photo: Image.Image, stylized: Image.Image, preserve_color: bool = False,
           strength: float = 1.0, size: Optional[tuple[int, int]] = None) -> Image.Image:
    """The steps after the network, in order: colour preservation, blending with the photo
    (``strength``), resizing to ``size`` (for keep_size). ``photo`` and ``stylized``: RGB, same size."""
    out = stylized
    if preserve_color:
        out = preserve_colors(photo, out)
    if strength < 1.0:
        out = Image.blend(photo, out, strength)
    if size is not None and out.size != size:
        out = out.resize(size, Image.Resampling.LANCZOS)
    return out


def resize_for_processing(img: Image.Image, max_size: Optional[int], scale: Optional[float]) -> Image.Image:
    """Apply ``scale`` (a factor), then cap the longest side at ``max_size``."""
    w, h = img.size
    if scale is not None:
        if not 0 < scale < float("inf"):
            raise FastNSTError(f"scale must be > 0, got {scale}")
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    if max_size is not None:
        if max_size <= 0:
            raise FastNSTError(f"max_size must be > 0, got {max_size}")
        if max(w, h) > max_size:
            f = max_size / max(w, h)
            w, h = max(1, round(w * f)), max(1, round(h * f))
    limit = Image.MAX_IMAGE_PIXELS
    if limit and w * h > max(limit, img.width * img.height):
        # The decompression-bomb limit guards decoding; an upscale must not bypass it (an
        # out-of-memory kill is worse than this message).
        raise FastNSTError(
            f"scale {scale:g} would make a {w} x {h} image ({w * h:,} pixels), more than the image "
            f"size limit of {limit:,} pixels. Use a smaller scale, or raise the limit with "
            "--max_image_pixels N (0 removes it).")
    return img if (w, h) == img.size else img.resize((w, h), Image.Resampling.LANCZOS)


def preserve_colors(content: Image.Image, stylized: Image.Image) -> Image.Image:
    """Luminance-only transfer: Y (brightness) of ``stylized`` with Cb/Cr (colour) of ``content``
    (both RGB, same size), as Gatys et al. (2016), "Preserving colour in neural artistic style
    transfer"."""
    y, _, _ = stylized.convert("YCbCr").split()
    _, cb, cr = content.convert("YCbCr").split()
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")
