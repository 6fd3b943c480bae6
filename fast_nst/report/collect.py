"""Everything a quality report checks before any work: the photos, the models (and how each
one's losses are measured), the style images and the output folder.

Photos are PIL RGB images already at their processed size (longest side at most ``max_size``).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from PIL import Image

from ..core.config import TrainConfig
from ..core.errors import DataError, FastNSTError
from ..core.untrusted.downloads import style_name
from ..core.files import distinct_stems, missing_dirs, probe_writable, safe_component
from ..core.images import IMAGE_EXTENSIONS, list_images
from ..core.untrusted import input_file, input_path, load_json, open_image, shown
from ..io.checkpoint import FORMAT_NAME, safe_torch_load, validate_checkpoint
from ..io.export import MAX_LOSS_CONFIG
from ..lossnet import (CONVENTIONS, GRAM_STYLE_DEGREE, LOSS_NETWORKS, STATS_STYLE_DEGREE, convert_weights,
                       layer_choices)
from ..nets.adain import AdaINArgs
from ..stylize import Stylizer, load_stylizer, resize_for_processing
# The file that marks a folder as a report fast-nst wrote: a later report may replace it; any
# other non-empty folder is refused as --output.
from .marker import REPORT_MARKER

__all__ = ["ADAIN_STYLE_NOTE", "DEFAULT_MAX_SIZE", "REPORT_MARKER", "LossSettings", "MAX_MODELS", "MAX_PHOTOS", "MAX_SIZE_LIMIT",
           "ModelEntry", "Photo", "check_output", "choose_loss_model", "collect_photos",
           "load_models", "loss_settings", "style_per_model", "unique_names"]

# Bounds of one report. 64 photos x 256 px cells keep the contact sheet ~16k px tall (JPEG holds
# at most 65,535); 16 models keep it ~4.6k px wide.
MAX_PHOTOS = 64
MAX_MODELS = 16
# eval.py's results at 512 px show the brush strokes; 1024 px bounds the loss network's memory
# (VGG's relu1_2 features of one 1024 x 1024 image are 256 MB in float32).
DEFAULT_MAX_SIZE = 512
MAX_SIZE_LIMIT = 1024
# What a checkpoint without a config (pytorch/examples, .onnx) is measured with: training's defaults.
_DEFAULTS = TrainConfig()
# Names in the report folder that a model's folder must not take.
_RESERVED = {"photos", "styles", "sheet.jpg", "index.html", "results.json"}
# The models table's note on an arbitrary-style model's style loss: measured with the mean/std
# loss it was trained with, so its numbers are not comparable with a Gram-trained model's.
ADAIN_STYLE_NOTE = ("--style, also the style the model was given; for this arbitrary-style (AdaIN) "
                    "model the style loss is its AdaIN training loss (feature means and standard "
                    "deviations), not a Gram loss")


@dataclass(frozen=True)
class Photo:
    """One input photo: ``name`` (unique, file-name safe), its ``path``, and ``image``, RGB at the
    processed size; ``native_size`` (w, h): the file's own (None: the same as ``image``'s)."""

    name: str
    path: Path
    image: Image.Image
    native_size: Optional[tuple[int, int]] = None

    @property
    def shrunk(self) -> bool:
        """Whether --max_size made it smaller than the file is (photos are never enlarged)."""
        return self.native_size is not None and self.native_size != self.image.size


@dataclass(frozen=True)
class LossSettings:
    """How one model's losses are measured: its training config's layers and weights (or
    fast-nst's defaults, ``from_config`` False)."""

    loss_model: str
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    content_weight: float
    style_weight: float
    style_layer_weights: Optional[tuple[float, ...]]
    style_size: Optional[int]
    style_image: str
    from_config: bool
    # The input convention the weights are for (the config's loss_weights_for, else its loss
    # model's): a report measuring with another loss network converts them.
    weights_for: str = "torchvision"
    # "gram" (Johnson networks) or "stats" (AdaIN: feature means and standard deviations): each
    # model is measured with the style loss it was trained with.
    style_loss: str = "gram"
    # What the content loss compares the stylization's features with: "photo", the photo's at
    # content_layers (Johnson networks), or "adain", the AdaIN target (the photo's features
    # given the style image's statistics) at the encoder's layer, content_layers then being that
    # one layer: Huang & Belongie's content loss, what AdaIN training optimises.
    content_target: str = "photo"
    # The AdaIN model's variance (AdaINArgs.unbiased_std): its target as its decoder receives it.
    adain_unbiased: bool = False


@dataclass
class ModelEntry:
    """One model of the report: ``name`` (unique, file-name safe), the stylizer, its settings
    and its style image (None when not known here; ``style_note`` says why)."""

    name: str
    path: Path
    stylizer: Stylizer
    settings: LossSettings
    style_path: Optional[Path]
    style_note: str


def unique_names(stems: Sequence[str], reserved: Sequence[str] = ()) -> list[str]:
    """File-name-safe versions of ``stems``, made unique by ``_2``, ``_3``... suffixes."""
    taken = set(reserved)
    out = []
    for stem in stems:
        base = safe_component(stem, fallback="image")
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        out.append(name)
    return out


def collect_photos(source: Path, max_size: int) -> list[Photo]:
    """The photos in folder ``source`` (not its subfolders; or one image file), at most
    :data:`MAX_PHOTOS` (a warning says how many were left out), decoded and resized so the
    longest side is at most ``max_size`` (never enlarged)."""
    if not source.exists() and not source.is_symlink():
        raise DataError(f"--images {source} does not exist; give a folder of photos.")
    if input_path(source, "--images").is_file():
        if source.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(f"--images {source} is not an image ({', '.join(IMAGE_EXTENSIONS)}).")
        paths = [source]
    else:
        paths = list_images(source, recursive=False)
    if not paths:
        raise DataError(f"--images {source} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                        "give a folder of photos.")
    if len(paths) > MAX_PHOTOS:
        warnings.warn(f"{source} holds {len(paths)} images; the report shows the first {MAX_PHOTOS} "
                      "(by name). Make a folder of the photos you want to compare.")
        paths = paths[:MAX_PHOTOS]
    photos = []
    # x.jpg and x.png: x_jpg, x_png, as eval.py names them
    for name, path in zip(unique_names(distinct_stems([p.name for p in paths]), _RESERVED), paths):
        try:
            image = open_image(path).convert("RGB")
            photos.append(Photo(name, path, resize_for_processing(image, max_size, None), image.size))
        except DataError as e:  # one unreadable photo need not cost the whole report
            warnings.warn(f"{shown(str(e).splitlines()[0], 300)} (skipped)")
    if not photos:
        raise DataError(f"--images {source}: none of its images could be read (above); give a folder of photos.")
    return photos


def _strings(value: Any, default: tuple[str, ...]) -> tuple[str, ...]:
    ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    return tuple(value) if ok else default


def _number(value: Any, default: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
    return float(value) if ok and value < float("inf") else default


def _is_size(value: Any) -> bool:
    # Training accepts any positive size; 4096 px bounds what an untrusted file can make us allocate.
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 4096


def loss_settings(config: Optional[dict]) -> LossSettings:
    """The loss settings a checkpoint's ``config`` dict names; any missing or ill-typed field
    (a model file is untrusted input) falls back to :class:`~fast_nst.core.config.TrainConfig`'s
    default. ``config`` None: all defaults."""
    c = config if isinstance(config, dict) else {}
    style_layers = _strings(c.get("style_layers"), _DEFAULTS.style_layers)
    lw = c.get("style_layer_weights")
    ok = (isinstance(lw, (list, tuple)) and len(lw) == len(style_layers)
          and all(_number(w, -1.0) >= 0 for w in lw))
    size = c.get("style_size", _DEFAULTS.style_size)
    loss_model = c["loss_model"] if isinstance(c.get("loss_model"), str) else _DEFAULTS.loss_model
    weights_for = c.get("loss_weights_for") if c.get("loss_weights_for") in CONVENTIONS else (
        LOSS_NETWORKS[loss_model].convention.name if loss_model in LOSS_NETWORKS else "torchvision")
    return LossSettings(
        loss_model=loss_model,
        content_layers=_strings(c.get("content_layers"), _DEFAULTS.content_layers),
        style_layers=style_layers,
        content_weight=_number(c.get("content_weight"), _DEFAULTS.content_weight),
        style_weight=_number(c.get("style_weight"), _DEFAULTS.style_weight),
        style_layer_weights=tuple(float(w) for w in lw) if ok else None,
        style_size=size if size is None or _is_size(size) else _DEFAULTS.style_size,
        style_image=c["style_image"] if isinstance(c.get("style_image"), str) else "",
        from_config=isinstance(config, dict),
        weights_for=weights_for,
        style_loss="stats" if c.get("model_type") == "adain" else "gram",
    )


def _saved(stylizer: Stylizer) -> tuple[Optional[dict], dict]:
    """(training config, network arguments) of the stylizer's file: a .pth checkpoint's
    ``config`` and ``model_args``, or what an .onnx export carries (metadata ``loss_config``, its
    config's loss fields, and ``model_args``); None and {} where it has none (pytorch/examples
    files, exports without them). The Stylizer does not keep its checkpoint, so the file is read
    again (weights-only, like every model file)."""
    path = stylizer.info.get("path")
    if stylizer.info.get("format") == "onnx":
        meta = stylizer.info.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        config = _json_dict(meta.get("loss_config"), "loss_config")
        return config, _json_dict(meta.get("model_args"), "model_args") or {}
    if not path:
        return None, {}
    ckpt = safe_torch_load(path)
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT_NAME and isinstance(ckpt.get("config"), dict):
        # Read again: checked again as every checkpoint is (load_stylizer checked the file as it was then).
        ckpt = validate_checkpoint(ckpt, path)
        args = ckpt.get("model_args")
        return ckpt["config"], args if isinstance(args, dict) else {}
    return None, {}


def _json_dict(text: Any, where: str) -> Optional[dict]:
    """The dict an export's metadata value ``text`` holds as JSON, or None (none, or damaged)."""
    if not isinstance(text, str):
        return None
    try:  # untrusted: bounded in bytes and depth by the boundary, then checked
        found = load_json(text, where, FastNSTError, max_bytes=MAX_LOSS_CONFIG, max_depth=4)
    except FastNSTError:
        return None
    return found if isinstance(found, dict) else None


def _settings_of(stylizer: Stylizer, file: str, config: Optional[dict], model_args: dict) -> LossSettings:
    """How a model's losses are measured: with its config's settings (:func:`loss_settings`), as
    training measured them for its kind of model."""
    settings = loss_settings(config)
    if stylizer.style_input == "image":  # also an export without its config: AdaIN's own loss
        if config is None and stylizer.info.get("format") == "onnx":
            warnings.warn(f"{file}: this arbitrary-style export does not carry its training loss settings "
                          "(metadata loss_config, which exports of older fast-nst versions lack): it is measured "
                          "with fast-nst's default style layers and weights, not necessarily those it was trained "
                          "with. Re-export it from its checkpoint to measure it as trained: python -m "
                          f"fast_nst.export MODEL.pth --output {Path(file).name}")
        return _adain_settings(settings, model_args)
    if not stylizer.style_names and (config or {}).get("model_type") == "johnson_multi":
        # One style of a multi-style model baked into an export (named after that style): that
        # style's style_weights multiplier, as the checkpoint's column of that style gets it.
        src, scale = _style_scales(config).get(stylizer.name, ("", 1.0))
        return dataclasses.replace(settings, style_image=src, style_weight=settings.style_weight * scale)
    return settings


def _adain_settings(settings: LossSettings, model_args: dict) -> LossSettings:
    """``settings`` for an arbitrary-style model, measured as AdaIN training measures it
    (:mod:`fast_nst.training.arbitrary`): style by feature statistics, content against the AdaIN
    target at the encoder's layer (``model_args``' encoder_layer; the config's content_layers are
    not used in training)."""
    layer = model_args.get("encoder_layer")
    known = isinstance(layer, str) and any(layer in layer_choices(n) for n in LOSS_NETWORKS)
    return dataclasses.replace(settings, style_loss="stats", content_target="adain",
                               content_layers=(layer if known else AdaINArgs.encoder_layer,),
                               adain_unbiased=model_args.get("unbiased_std") is True)


def _style_of(style: Optional[Path]) -> tuple[Optional[Path], str]:
    """(style image path or None, where it came from / why it is missing). Only the user's
    ``--style``: a path in a model file's config is never opened or copied into the report
    (any private image the file names would be published with it)."""
    if style is not None:
        return style, "--style"
    return None, "not measured: pass the style image with --style"


def style_per_model(styles: Sequence[Path], count: int) -> list[Optional[Path]]:
    """The user's ``--style`` images, one per model: none, one for all ``count`` models, or one
    per model in order; FastNSTError for another number or a missing file."""
    if len(styles) not in (0, 1, count):
        raise FastNSTError(f"--style gives {len(styles)} images for {count} models; give one for every "
                           "model, or one per --model_file, in the same order.")
    for style in styles:
        input_file(style, "--style")  # exists, and a regular file (not a FIFO or device)
    return list(styles) * count if len(styles) == 1 else list(styles) or [None] * count


def load_models(files: Sequence[str], device: str, styles: Sequence[Optional[Path]],
                loss_model_file: Optional[str] = None, loss_model: Optional[str] = None) -> list[ModelEntry]:
    """Load every model (errors from :func:`~fast_nst.stylize.load_stylizer`: missing, foreign
    or unsafe files), read its loss settings and take its style image from ``styles`` (one per
    file, the user's: see :func:`style_per_model`; None: no style loss). An arbitrary-style
    model (model_type adain) is given its style (required for it) to stylize with, and its
    encoder weights from ``loss_model_file`` (when given for its loss network, ``loss_model``
    None: any) or the default path."""
    if len(files) > MAX_MODELS:
        raise FastNSTError(f"--model_file names {len(files)} models; a report compares at most "
                           f"{MAX_MODELS}. Make several reports.")
    assert len(styles) == len(files), "one style (or None) per model file"
    stylizers = [load_stylizer(f, device=device, loss_model_file=loss_model_file, loss_model=loss_model)
                 for f in files]
    saved = [_saved(s) for s in stylizers]
    labels = _labels([_run_name(s, c, f) for s, (c, _), f in zip(stylizers, saved, files)],
                     [s.info.get("step") for s in stylizers], files)
    settings_of = [_settings_of(s, f, c, args) for s, f, (c, args) in zip(stylizers, files, saved)]
    # After the labels: set_style renames a stylizer.
    for s, f, style, settings in zip(stylizers, files, styles, settings_of):
        if s.style_input == "image":
            _give_style(s, f, style, settings.style_size)
    columns = []  # (label, stylizer, settings, file, style): a multi-style model gives one per style
    for label, s, (config, _), settings, f, style in zip(labels, stylizers, saved, settings_of, files, styles):
        found = _per_style(label, s, config, settings) if s.style_names else [(label, s, settings)]
        columns += [(name, st, found_settings, f, style) for name, st, found_settings in found]
    if len(columns) > MAX_MODELS:
        raise FastNSTError(f"the models have {len(columns)} styles in all (a multi-style model counts one "
                           f"column per style); a report compares at most {MAX_MODELS}. Make several reports.")
    out = []
    for name, (_, s, settings, f, style) in zip(unique_names([c[0] for c in columns], _RESERVED), columns):
        style_path, note = _style_of(style)
        if settings.style_loss == "stats":
            note = ADAIN_STYLE_NOTE
        out.append(ModelEntry(name, Path(s.info.get("path") or f), s, settings, style_path, note))
    return out


def _run_name(stylizer: Stylizer, config: Optional[dict], file: str) -> str:
    """The name of the run a model comes from: a single-style model's own name; a multi-style
    model's run (its config's ``naming``, an export's metadata, else the file's stem: its
    stylizer is named after its current style)."""
    if not stylizer.style_names:
        return stylizer.name
    meta = stylizer.info.get("metadata")
    for naming in ((config or {}).get("naming"), meta.get("naming") if isinstance(meta, dict) else None):
        if isinstance(naming, str) and naming:
            return naming
    return Path(file).stem


def _labels(runs: Sequence[str], steps: Sequence[Any], files: Sequence[str]) -> list[str]:
    """A label per model: its run's name, and where several models share it, the step (two
    checkpoints of one run); where the step does not tell them apart either (a .pth and its
    export), also the file: its stem, or its format where the stems match (x_step0_pth)."""
    out = []
    for i, run in enumerate(runs):
        group = [j for j, r in enumerate(runs) if r == run]
        step = steps[i] if isinstance(steps[i], int) else None
        if len(group) == 1 or (step is not None and [steps[j] for j in group].count(step) == 1):
            out.append(run if len(group) == 1 else f"{run}_step{step}")
            continue
        stem = distinct_stems([Path(files[j]).name for j in group])[group.index(i)]
        tag = "" if stem == run else stem[len(run) + 1:] if stem.startswith(f"{run}_") else stem  # adain_pth: pth
        out.append("_".join(x for x in (run, None if step is None else f"step{step}", tag) if x))
    return out


def _give_style(stylizer: Stylizer, file: str, style: Optional[Path], size: Optional[int]) -> None:
    """An arbitrary-style model stylizes with ``style`` at longest side ``size`` (its settings'
    style_size: the statistics its AdaIN target and style loss are measured with too), the image
    its style loss is measured against; FastNSTError naming the model without one."""
    if style is None:
        raise FastNSTError(f"--model_file {file} is an arbitrary-style model (model_type adain): it has no "
                           "style of its own; give the style image to stylize with and measure against: "
                           "--style IMAGE.")
    try:
        stylizer.set_style(style, style_size=size)
    except FastNSTError as e:  # an unreadable or too small image: say which flag gave it
        raise DataError(f"--style {style} for {file}: {e}") from None


def _per_style(label: str, stylizer: Stylizer, config: Optional[dict],
               base: LossSettings) -> list[tuple[str, Stylizer, LossSettings]]:
    """A multi-style model (``label``: its run and step) as one column per style: a copy of the
    stylizer set to that style, measured with ``base`` and against that style's image and weight
    from the training config (style_images, style_weights; matched by name, since a model that
    had styles added lists only the new ones)."""
    by_name = _style_scales(config)
    out = []
    for name in stylizer.style_names:
        copy_ = copy.copy(stylizer)  # shares the weights; set_style gives the copy its own network
        copy_.set_style(name)
        src, scale = by_name.get(name, ("", 1.0))
        settings = dataclasses.replace(base, style_image=src, style_weight=base.style_weight * scale)
        out.append((f"{label}_{name}", copy_, settings))
    return out


def _style_scales(config: Optional[dict]) -> dict[str, tuple[str, float]]:
    """{style name: (its style_images entry, its style_weights multiplier)} of a multi-style
    training config (a style without a multiplier: 1)."""
    c = config if isinstance(config, dict) else {}
    sources = _strings(c.get("style_images"), ())
    weights = c.get("style_weights") if isinstance(c.get("style_weights"), list) else []
    return {style_name(src): (src, _number(weights[i], 1.0) if i < len(weights) else 1.0)
            for i, src in enumerate(sources)}


def choose_loss_model(models: Sequence[ModelEntry], requested: Optional[str]) -> str:
    """The one loss network every model is measured with (comparable numbers): ``requested``,
    else the one the models' configs agree on. Checks every model's layers exist in it."""
    if requested is not None and requested not in LOSS_NETWORKS:
        raise FastNSTError(f"--loss_model {requested!r}; choose one of: {', '.join(LOSS_NETWORKS)}")
    wanted = {m.settings.loss_model for m in models}
    if requested is None and len(wanted) > 1:
        raise FastNSTError(f"the models were trained with different loss networks ({', '.join(sorted(wanted))}); "
                           "choose the one to measure them all with: --loss_model NAME.")
    name = requested or wanted.pop()
    if name not in LOSS_NETWORKS:
        raise FastNSTError(f"a model's config names loss network {name[:40]!r}, which this fast-nst "
                           f"does not know; choose one with --loss_model ({', '.join(LOSS_NETWORKS)}).")
    valid = set(layer_choices(name))
    for m in models:
        s = m.settings
        if s.weights_for != LOSS_NETWORKS[name].convention.name:  # weights in the measuring network's scale
            # AdaIN's mean/std loss scales with the features squared, a Gram loss with their
            # fourth power: as training converted them (loss_weights with its style_degree).
            degree = STATS_STYLE_DEGREE if s.style_loss == "stats" else GRAM_STYLE_DEGREE
            content, style, _ = convert_weights(s.content_weight, s.style_weight, 0.0, s.weights_for, name, degree)
            m.settings = dataclasses.replace(s, content_weight=content, style_weight=style,
                                             weights_for=LOSS_NETWORKS[name].convention.name)
        bad = [n for n in m.settings.content_layers + m.settings.style_layers if n not in valid]
        if bad:
            raise FastNSTError(f"model {m.name} ({m.path}) is measured at layer(s) {', '.join(bad[:4])}, "
                               f"which {name} does not have; choose another --loss_model.")
    return name


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def check_output(folder: Path, inputs: Sequence[tuple[str, Path]] = ()) -> list[Path]:
    """Create ``folder`` and check it is writable; returns the folders it had to create (for
    :func:`fast_nst.core.files.remove_dirs` when a later check fails).

    A report never writes over what the user owns: ``folder`` must be new, empty, or a report
    fast-nst wrote before (it holds :data:`REPORT_MARKER`), and none of ``inputs`` (flag, path:
    the photos, models, style image) may lie inside it. DataError with the fix otherwise."""
    if folder.exists() and not folder.is_dir():
        raise DataError(f"--output {folder} is a file; give a folder for the report.")
    for flag, path in inputs:
        if _inside(path, folder):
            raise DataError(f"--output {folder} holds the input {flag} {path}; a report writes only into a "
                            f"new folder or an earlier report's. Give another --output, e.g. {folder / 'report'}.")
    if folder.is_dir() and not (folder / REPORT_MARKER).is_file():
        others = sorted(p.name for p in itertools.islice(folder.iterdir(), 4))
        if others:
            raise DataError(f"--output {folder} holds files that are not a fast-nst report ("
                            f"{', '.join(shown(n, 40) for n in others[:3])}{', ...' if len(others) > 3 else ''}); "
                            f"refusing to write over them. Give a new or empty folder, e.g. {folder / 'report'}.")
    made = missing_dirs(folder)
    probe_writable(folder, "the report folder", "Choose another --output.")
    folder.mkdir(parents=True, exist_ok=True)  # the probe removed what it made; the report keeps it
    return made
