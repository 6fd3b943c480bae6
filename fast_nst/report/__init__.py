"""Quality reports: stylize a folder of photos with one or more models, measure each result's
content and style loss with the loss network, time it, and write a page to compare them.

>>> from fast_nst.report import write_report
>>> write_report(["models/wave/wave.pth", "models/udnie"], "photos/", "report/")
PosixPath('report/index.html')

The folder gets ``index.html`` (opens from the file system), ``sheet.jpg`` (a contact sheet:
one row per photo; the photo, each model's stylization, the style image), ``photos/``,
``styles/`` and one folder of stylized JPEGs per model. Modules: ``collect`` (checks, photos,
models), ``measure`` (stylizing and losses), ``sheet`` (the contact sheet), ``page`` (the HTML).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

from PIL import Image

from ..core.device import resolve_device
from ..core.errors import FastNSTError
from ..core.files import atomic_write, remove_dirs
from ..core.images import save_image, tensor_to_pil
from ..lossnet import min_side
from ..stylize import resize_for_processing
from .collect import (DEFAULT_MAX_SIZE, MAX_MODELS, MAX_PHOTOS, MAX_SIZE_LIMIT, ModelEntry, Photo,
                      check_output, choose_loss_model, collect_photos, load_models, style_per_model)
from .marker import earlier_files, mark_report, remove_stale
from .measure import Result, build_encoder, load_style, measure_model, model_targets, weights_label
from .page import PageInfo, format_loss, loss_groups, render_page
from .sheet import contact_sheet
from .stability import CLIP_FRAMES, StabilityResult, clip_of, clip_size, measure_stability, stability_html

__all__ = ["DEFAULT_MAX_SIZE", "MAX_MODELS", "MAX_PHOTOS", "MAX_SIZE_LIMIT", "write_report"]

PathLike = Union[str, Path]


def _check_arguments(model_files: Sequence[PathLike], max_size: int, weights: str) -> None:
    if not model_files:
        raise FastNSTError("no model given; name one or more with --model_file.")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or not 0 < max_size <= MAX_SIZE_LIMIT:
        raise FastNSTError(f"--max_size must be a whole number from 1 to {MAX_SIZE_LIMIT}, got {max_size!r}.")
    if weights not in ("imagenet", "random"):
        raise FastNSTError(f"--loss_model_weights {weights!r}; choose one of: imagenet, random")


def _usable_photos(photos: Sequence[Photo], need: int, max_size: int) -> list[Photo]:
    """The photos the loss layers can measure (``need`` px per side); each other one is skipped
    with a warning saying why, as an unreadable one is. FastNSTError when none is left."""
    kept = []
    for p in photos:
        if min(p.image.size) >= need:
            kept.append(p)
            continue
        w, h = p.image.size
        if p.shrunk and max_size < MAX_SIZE_LIMIT and _side_at(p, MAX_SIZE_LIMIT) >= need:
            size, fix = f"after --max_size {max_size}", f"raise --max_size (at most {MAX_SIZE_LIMIT})"
        else:  # too small (or too narrow) as it is: no flag enlarges a photo
            size, fix = f"at --max_size {max_size}" if p.shrunk else "", "use a larger photo"
        warnings.warn(f"{p.path} is {w}x{h} px {size}".rstrip() + f"; the loss layers need at least {need} px "
                      f"per side: {fix} (skipped)")
    if not kept:
        raise FastNSTError(f"none of the photos is large enough for the loss layers ({need} px per side, "
                           "above); give larger photos.")
    return kept


def _side_at(photo: Photo, max_size: int) -> int:
    """The photo's shorter side at longest side ``max_size`` (never enlarged)."""
    w, h = photo.native_size or photo.image.size
    f = min(1.0, max_size / max(w, h))
    return min(max(1, round(w * f)), max(1, round(h * f)))


def _clip_photos(photos: Sequence[Photo], max_size: int) -> list[Photo]:
    """The photos large enough for a stability clip; each other one is left out of the stability
    measure with a warning (the other measures keep it). FastNSTError when none is left, before
    any work (each clip is made again, in ms, when measured)."""
    kept, bigger = [], ""
    for p in photos:
        try:
            clip_of(p.image)
        except ValueError:
            # The motion's error names the photo as clip_of scaled it: name the photo's own size.
            (h, w), (width, height) = clip_size(p.image.size), p.image.size
            larger = " or a larger --max_size" if p.shrunk and max_size < MAX_SIZE_LIMIT else ""
            bigger = bigger or larger
            warnings.warn(f"--stability: {p.path}: a {width} x {height} photo is too small for a {w} x {h} clip of "
                          f"{CLIP_FRAMES} frames; use a larger photo{larger} (left out of the stability measure)")
            continue
        kept.append(p)
    if not kept:
        raise FastNSTError(f"--stability: none of the photos is large enough for a stability clip (above); use "
                           f"larger photos{bigger}, or leave out --stability.")
    return kept


def _write_images(out: Path, photos: Sequence[Photo], models: Sequence[ModelEntry],
                  results: Sequence[Result], styles: dict[str, Optional[Image.Image]]) -> dict:
    """Save the photos, stylizations and style images as JPEGs in ``out``; returns their paths
    relative to it, keyed like :class:`PageInfo`'s ``images``."""
    rel: dict = {}
    for p in photos:
        rel[("photo", p.name)] = f"photos/{p.name}.jpg"
        save_image(p.image, out / rel[("photo", p.name)])
    for r in results:
        rel[(r.model, r.photo)] = f"{r.model}/{r.photo}.jpg"
        save_image(r.image, out / rel[(r.model, r.photo)])
    written: dict[tuple, str] = {}  # models that share a style image (and size) share its file
    for m in models:
        image, key = styles[m.name], (m.style_path, m.settings.style_size)
        if image is None:
            continue
        if key not in written:
            written[key] = f"styles/{m.name}.jpg"
            save_image(image, out / written[key])
        rel[("style", m.name)] = written[key]
    return rel


def _sheet(photos: Sequence[Photo], models: Sequence[ModelEntry], results: Sequence[Result],
           styles: dict[str, Optional[Image.Image]]) -> Image.Image:
    by_key = {(r.photo, r.model): r.image for r in results}
    distinct = list({(m.style_path, m.settings.style_size): styles[m.name]
                     for m in models if styles[m.name] is not None}.values())
    titles = ["photo"] + [m.name for m in models] + (["style"] if distinct else [])
    rows = [[[p.image]] + [[by_key[(p.name, m.name)]] for m in models] + ([distinct] if distinct else [])
            for p in photos]
    return contact_sheet(titles, rows)


def _prepare(model_files, images, output, style, loss_model, loss_model_file, weights, device, max_size,
             stability=False):
    """Every check before the work; (photos, photos for the stability clips, models, loss network
    name, encoder, targets, style images, device)."""
    _check_arguments(model_files, max_size, weights)
    photos = collect_photos(Path(images), max_size)
    styles = ([style] if style else []) if isinstance(style, (str, Path)) else list(style or [])
    models = load_models([str(f) for f in model_files], device,
                         style_per_model([Path(s) for s in styles], len(model_files)), loss_model_file, loss_model)
    name = choose_loss_model(models, loss_model)
    layers = list(dict.fromkeys(n for m in models for n in m.settings.content_layers + m.settings.style_layers))
    photos = _usable_photos(photos, min_side(name, layers), max_size)
    clip_photos = _clip_photos(photos, max_size) if stability else []
    style_tensors = {m.name: load_style(m, name) for m in models}
    if weights == "random" and loss_model_file:
        warnings.warn("--loss_model_file is not used with --loss_model_weights random.")
    inputs = [("--images", Path(images))] + [("--model_file", Path(f)) for f in model_files] + \
        [("--style", Path(s)) for s in styles] + \
        [("style image", m.style_path) for m in models if m.style_path is not None]
    made = check_output(Path(output), inputs)
    dev = resolve_device(device)
    try:
        encoder = build_encoder(name, weights, loss_model_file, layers, dev)
    except BaseException:
        remove_dirs(made)  # a failed check leaves nothing behind
        raise
    targets = {m.name: model_targets(encoder, m, style_tensors[m.name], dev) for m in models}
    style_images = {k: None if v is None else resize_for_processing(tensor_to_pil(v[0]), MAX_SIZE_LIMIT, None)
                    for k, v in style_tensors.items()}
    return photos, clip_photos, models, name, encoder, targets, style_images, dev


def _measured(model: ModelEntry, photos: Sequence[Photo], encoder, targets, dev) -> list[Result]:
    """``model`` measured on ``photos`` (:func:`~.measure.measure_model`), its means said in one line."""
    mine = measure_model(model, photos, encoder, targets, dev)
    styles = [r.style for r in mine if r.style is not None]
    print(f"{model.name}: {len(mine)} photos, mean content loss {format_loss(sum(r.content for r in mine) / len(mine))}, "
          f"style loss {format_loss(sum(styles) / len(styles) if styles else None)}, "
          f"{1000 * sum(r.seconds for r in mine) / len(mine):.1f} ms per photo")
    return mine


def write_report(model_files: Sequence[PathLike], images: PathLike, output: PathLike,
                 style: Union[PathLike, Sequence[PathLike], None] = None, loss_model: Optional[str] = None,
                 loss_model_file: Optional[PathLike] = None, loss_model_weights: str = "imagenet",
                 device: str = "auto", max_size: int = DEFAULT_MAX_SIZE, stability: bool = False) -> Path:
    """Write a quality report of ``model_files`` (.pth, run folders, .onnx) on the photos in
    folder ``images`` into folder ``output``; returns the path of its ``index.html``.

    ``style``: the style image every model's style loss is measured against, or one per model
    file in order (None: no style loss; a path named in a model file is never opened or copied
    into the report); required for an arbitrary-style model (model_type adain), which stylizes
    with it. ``loss_model``: the loss network all models are measured with (default: the one
    their configs name), with ``loss_model_weights`` "imagenet" (from ``loss_model_file``,
    default the registry's file; also an AdaIN model's encoder weights when its encoder is that
    network) or "random" (tests). Photos are stylized at longest side ``max_size`` (never
    enlarged). ``stability``: also measure each model's temporal stability on known-motion clips
    of the photos (see :mod:`fast_nst.report.stability`; a section of the page, ``stability`` in
    results.json; a photo too small for a clip is left out of it, with a warning). Every check (photos,
    models, style images, output folder, loss network) runs before any work; mistakes raise
    :class:`~fast_nst.core.errors.FastNSTError`.
    """
    out = Path(output)
    file = None if loss_model_file is None else str(loss_model_file)
    photos, clip_photos, models, name, encoder, targets, style_images, dev = _prepare(
        model_files, images, out, style, loss_model, file, loss_model_weights, device, max_size, stability)
    # From now on this folder is a report: running again may replace it, nothing else is refused.
    # The most files a report writes: each photo and its stylization by each model, a style
    # image per model, the sheet and the two pages.
    earlier = earlier_files(out, MAX_PHOTOS * (MAX_MODELS + 1) + MAX_MODELS + 3)
    mark_report(out, earlier)  # the earlier files stay listed until this report is complete
    results = [r for m in models for r in _measured(m, photos, encoder, targets[m.name], dev)]
    stable = _stability(models, clip_photos) if stability else []
    rel = _write_images(out, photos, models, results, style_images)
    save_image(_sheet(photos, models, results, style_images), out / "sheet.jpg")
    info = PageInfo(loss_model=name, weights=weights_label(loss_model_weights, file, name),
                    weights_path="" if loss_model_weights == "random" else str(Path(file or encoder.entry.file)),
                    random_weights=loss_model_weights == "random", max_size=max_size,
                    device=str(dev), images=rel)
    page = out / "index.html"
    with atomic_write(page) as tmp:
        html = render_page(photos, models, results, info)
        if stable:  # its own section, last on the page
            sizes = [clip_size(p.image.size) for p in clip_photos]
            measured = {p.name for p in clip_photos}
            left_out = [p.name for p in photos if p.name not in measured]
            html = html.replace("</body>", stability_html(stable, sizes, left_out) + "</body>", 1)
        tmp.write_text(html, encoding="utf-8")
    data = _results_data(models, results, info)
    if stable:
        data["stability"] = [r.to_dict() for r in stable]
        data["stability_photos"] = [p.name for p in clip_photos]
    with atomic_write(out / "results.json") as tmp:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    files = [*rel.values(), "sheet.jpg", "index.html", "results.json"]
    mark_report(out, files)
    remove_stale(out, earlier, files)
    return page


def _stability(models: Sequence[ModelEntry], photos: Sequence[Photo]) -> list[StabilityResult]:
    """Each model's temporal stability on the photos' known-motion clips, said per model."""
    found: list[StabilityResult] = []
    for m in models:
        try:
            mine = measure_stability(m.name, m.stylizer, [p.image for p in photos])
        except ValueError as e:  # _clip_photos kept only photos that make a clip: not expected
            raise FastNSTError(f"--stability: {e}; use larger photos.") from None
        found += mine
        print(f"{m.name}: " + "; ".join(f"{r.mode} warping error {r.warp_error:.2f} levels (input "
                                        f"{r.input_warp_error:.2f}), change ratio {r.change_ratio:.2f} "
                                        f"(still camera {r.still_change_ratio:.2f})"
                                        for r in mine))
    return found


def _results_data(models: Sequence[ModelEntry], results: Sequence[Result], info: PageInfo) -> dict:
    """The report's numbers for scripts (results.json): per model its means and per-photo values."""
    data: dict = {"loss_model": info.loss_model, "weights": info.weights, "device": info.device,
                  "max_size": info.max_size, "models": []}
    groups = loss_groups(models)  # {} when every model was measured alike
    for m in models:
        mine = [r for r in results if r.model == m.name]
        styles = [r.style for r in mine if r.style is not None]
        data["models"].append({
            "name": m.name, "path": str(m.path), "step": m.stylizer.info.get("step"),
            "loss_group": groups.get(m.name, "A"), "style_loss": m.settings.style_loss,
            "content_target": m.settings.content_target,
            "mean_content": sum(r.content for r in mine) / len(mine),
            "mean_style": sum(styles) / len(styles) if styles else None,
            "ms_per_photo": 1000 * sum(r.seconds for r in mine) / len(mine),
            "photos": {r.photo: {"content": r.content, "style": r.style, "seconds": r.seconds} for r in mine},
        })
    return data
