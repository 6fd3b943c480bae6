"""The report's ``index.html``: one self-contained page (inline CSS, no scripts, no external
resources) whose images are files next to it, referenced by relative paths, so it opens from the
file system."""

from __future__ import annotations

import html
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from statistics import mean
from typing import Optional, Sequence

from .collect import LossSettings, ModelEntry, Photo
from .measure import Result

__all__ = ["PageInfo", "format_loss", "loss_groups", "render_page"]

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.warning { background: #fee; border: 2px solid #c00; padding: 0.5em; font-weight: bold; }
figure { display: inline-block; margin: 0 0.5em 0.5em 0; text-align: center; }
figure img { max-width: 256px; max-height: 256px; }
figcaption { font-size: 0.85em; }
img.sheet { max-width: 100%; }
"""


@dataclass(frozen=True)
class PageInfo:
    """What the page says about how the report was made. ``images``: relative paths, keyed by
    ``("photo", photo)``, ``(model, photo)`` and ``("style", model)``."""

    loss_model: str
    weights: str  # weights_label: the weights file's name, or "random weights (seed N)"
    weights_path: str  # the full path of the weights file ("" for random weights)
    random_weights: bool
    max_size: int
    device: str
    images: dict


def format_loss(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _src(path: str) -> str:
    return _e(urllib.parse.quote(path))


def _figure(path: Optional[str], caption: str) -> str:
    if path is None:
        return ""
    return f'<figure><img src="{_src(path)}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'


# The models table's words for what a model's content loss compares the stylization with.
_CONTENT_TARGETS = {"photo": "against the photo",
                    "adain": "against the AdaIN target (the photo's features in the style), as in AdaIN training"}


def _models_table(models: Sequence[ModelEntry]) -> str:
    rows = []
    for m in models:
        s = m.settings
        source = "the model&#39;s config" if s.from_config else "fast-nst&#39;s defaults"
        step = m.stylizer.info.get("step")
        style = m.style_path.name if m.style_path is not None else "none"
        layer_weights = s.style_layer_weights or (1.0,) * len(s.style_layers)
        style_layers = ", ".join(f"{n} x{w:g}" if w != 1 else n for n, w in zip(s.style_layers, layer_weights))
        rows.append(
            f"<tr class='model' data-model='{_e(m.name)}'><td>{_e(m.name)}</td><td>{_e(m.path)}</td>"
            f"<td>{_e('' if step is None else step)}</td><td>{_e(style)} ({_e(m.style_note)})</td>"
            f"<td>{_e(', '.join(s.content_layers))} (weight {s.content_weight:g}), "
            f"{_CONTENT_TARGETS[s.content_target]}</td>"
            f"<td>{_e(style_layers)} (weight {s.style_weight:g})</td>"
            f"<td>{source}</td></tr>")
    head = ("<tr><th>model</th><th>file</th><th>step</th><th>style image</th><th>content loss</th>"
            "<th>style layers</th><th>loss settings from</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def loss_groups(models: Sequence[ModelEntry]) -> dict[str, str]:
    """A letter per model (A, B, ...), the same for models whose losses were measured alike (the
    same style loss, layers and weights); {} when all were. Losses of different groups are not
    comparable: an AdaIN model's mean/std style loss of 2.7 is not better than a Gram loss of 37."""
    def key(s: LossSettings) -> tuple:
        return (s.style_loss, s.content_target, s.content_layers, s.content_weight, s.style_layers,
                s.style_layer_weights or (1.0,) * len(s.style_layers), s.style_weight, s.weights_for)

    keys = list(dict.fromkeys(key(m.settings) for m in models))
    if len(keys) < 2:
        return {}
    return {m.name: chr(ord("A") + keys.index(key(m.settings)) % 26) for m in models}


def _means_table(models: Sequence[ModelEntry], results: Sequence[Result]) -> str:
    groups = loss_groups(models)
    rows = []
    for m in models:
        mine = [r for r in results if r.model == m.name]
        styles = [r.style for r in mine if r.style is not None]
        rows.append(
            f"<tr class='mean' data-model='{_e(m.name)}'><td>{_e(m.name)}</td>"
            f"<td class='num content'>{format_loss(mean(r.content for r in mine))}</td>"
            f"<td class='num style'>{format_loss(mean(styles) if styles else None)}</td>"
            f"<td class='num time'>{1000 * mean(r.seconds for r in mine):.1f}</td>"
            f"<td class='num'>{len(mine)}</td>" + (f"<td class='group'>{groups[m.name]}</td>" if groups else "")
            + "</tr>")
    head = ("<tr><th>model</th><th>mean content loss</th><th>mean style loss</th>"
            "<th>mean stylize time (ms)</th><th>photos</th>" + ("<th>measured alike</th>" if groups else "") + "</tr>")
    note = ("<p class='warning'>Not comparable across groups: these models' losses were measured with "
            "different loss layers, weights or style losses (each model's own training loss; see Models). "
            "Compare content and style losses only between models of the same group "
            f"({', '.join(sorted(set(groups.values())))}).</p>") if groups else ""
    return f"{note}<table>{head}{''.join(rows)}</table>"


def _results_table(results: Sequence[Result]) -> str:
    rows = [f"<tr class='result' data-photo='{_e(r.photo)}' data-model='{_e(r.model)}'>"
            f"<td>{_e(r.photo)}</td><td>{_e(r.model)}</td>"
            f"<td class='num content'>{format_loss(r.content)}</td>"
            f"<td class='num style'>{format_loss(r.style)}</td>"
            f"<td class='num time'>{1000 * r.seconds:.1f}</td></tr>" for r in results]
    head = ("<tr><th>photo</th><th>model</th><th>content loss</th><th>style loss</th>"
            "<th>stylize time (ms)</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _photo_sections(photos: Sequence[Photo], models: Sequence[ModelEntry], results: Sequence[Result],
                    info: PageInfo) -> str:
    by_key = {(r.photo, r.model): r for r in results}
    out = []
    for p in photos:
        figures = [_figure(info.images.get(("photo", p.name)), f"{p.path.name} ({p.image.width}x{p.image.height})")]
        for m in models:
            r = by_key[(p.name, m.name)]
            figures.append(_figure(info.images.get((m.name, p.name)),
                                   f"{m.name}: content {format_loss(r.content)}, style {format_loss(r.style)}"))
        out.append(f"<section class='photo' id='photo-{_e(p.name)}'><h3>{_e(p.name)}</h3>{''.join(figures)}</section>")
    return "".join(out)


def render_page(photos: Sequence[Photo], models: Sequence[ModelEntry], results: Sequence[Result],
                info: PageInfo) -> str:
    """The whole page as HTML text."""
    weights = _e(info.weights) + (f" (<code>{_e(info.weights_path)}</code>)" if info.weights_path else "")
    warning = ("<p class='warning'>The loss network has RANDOM weights: these losses are for tests "
               "only and do not measure content or style.</p>") if info.random_weights else ""
    styles = "".join(_figure(info.images.get(("style", m.name)), f"style of {m.name}") for m in models)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>fast-nst quality report</title><style>{_CSS}</style></head><body>"
        "<h1>fast-nst quality report</h1>"
        f"<p class='lossnet'>Loss network: <b>{_e(info.loss_model)}</b>, weights: <b>{weights}</b>. "
        f"{len(photos)} photos at longest side &le; {info.max_size} px, {len(models)} models, device "
        f"{_e(info.device)}, {datetime.now().strftime('%Y-%m-%d %H:%M')}.</p>{warning}"
        "<p>Content loss: the stylization's features against the photo's at the model's content "
        "layers; style loss: its Gram matrices against the style image's at the model's style "
        "layers. An AdaIN model is measured as it was trained: content against its AdaIN target "
        "(the photo's features given the style image's means and standard deviations) at its "
        "encoder's layer, style by the feature means and standard deviations. Both are weighted "
        "as in training (TensorBoard's loss/content and loss/style). Lower is closer; compare "
        "models measured with the same loss network.</p>"
        f"<h2>Models</h2>{_models_table(models)}"
        f"<h2>Means per model</h2>{_means_table(models, results)}"
        "<h2>Contact sheet</h2><p>One row per photo: the photo, each model's stylization, the style.</p>"
        "<a href='sheet.jpg'><img class='sheet' src='sheet.jpg' alt='contact sheet'></a>"
        f"<h2>Per photo</h2>{_results_table(results)}"
        f"{_photo_sections(photos, models, results, info)}"
        f"<h2>Style images</h2>{styles or '<p>none known (pass --style)</p>'}"
        "</body></html>\n"
    )
