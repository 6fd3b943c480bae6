"""Publishing a model: a ``.safetensors`` export of any model file fast-nst reads, and a model
card (the README.md a Hugging Face Hub repository shows) with the style image's thumbnail, the
training settings and the loss terms, ready for ``hf upload``::

    python -m fast_nst.export models/wave/wave.pth --format safetensors \\
        --output hub/wave/wave.safetensors --model_card --style_image data/styles/wave.jpg
    hf upload someone/fast-nst-wave hub/wave .

See docs/export.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import torch

from ..core.errors import CheckpointError, FastNSTError
from ..core.files import atomic_write, check_output_file
from ..core.untrusted import input_file, open_image, shown, style_rgb
from ..core.version import __version__
from ..nets import NETWORKS, takes_style_image
from ..nets.base import StyleNetwork
from .checkpoint import FORMAT_NAME, FORMAT_VERSION, MAX_ARCHIVE_BYTES, check_loss_model_file, load_model
from .safetensors_file import SAFETENSORS_SUFFIX, read_safetensors_checkpoint, write_safetensors

__all__ = ["CARD_NAME", "THUMBNAIL_NAME", "THUMBNAIL_SIDE", "check_license", "export_safetensors", "model_card",
           "write_model_card"]

CARD_NAME = "README.md"
THUMBNAIL_NAME = "style.jpg"
# The longer side of the style thumbnail on the card: the Hub shows README images at most
# ~800 px wide; 512 px keeps the repository small.
THUMBNAIL_SIDE = 512
# A Hub licence identifier ("mit", "apache-2.0", "cc-by-nc-4.0", "other"): the Hub's list is
# lower-case letters, digits, '.', '+' and '-'; its front matter takes one such word.
_LICENSE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,63}$")
# Checkpoint entries copied as they are (text, when present): how the model was made.
_PROVENANCE = ("about", "converted_from")


def _model_checkpoint(net: StyleNetwork, ckpt: dict[str, Any], source: Path) -> dict[str, Any]:
    """The checkpoint to write for ``net`` (loaded from ``source`` with ``ckpt``): a final
    model's entries (:func:`~fast_nst.io.safetensors_file.write_safetensors` leaves out the
    user's file paths among the network's arguments)."""
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    step = ckpt.get("step")
    out: dict[str, Any] = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "fast_nst_version": __version__,
        "kind": "model", "model_type": net.model_type, "model_args": net.args.to_dict(),
        "model_state": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "config": config, "step": step if isinstance(step, int) and not isinstance(step, bool) else 0,
        "exported_from": shown(source.name, 200),
    }
    if net.style_names:
        out["style_names"] = list(net.style_names)
    out.update({k: ckpt[k] for k in _PROVENANCE if isinstance(ckpt.get(k), str)})
    return out


def export_safetensors(model_path: str | Path, output: Optional[str | Path] = None,
                       loss_model_file: Optional[str | Path] = None) -> dict[str, Any]:
    """Write the model at ``model_path`` (any file :func:`~fast_nst.io.checkpoint.load_model`
    reads) as a ``.safetensors`` file ``output`` (default: next to it), read it back and check
    that every tensor is identical; returns a summary (output, bytes, tensors, name, model_type,
    style_names, checkpoint: the dict written)."""
    model_path = Path(model_path)
    if output is None:  # next to the model: "." has no name to give it
        output = input_file(model_path, "Model file").with_suffix(SAFETENSORS_SUFFIX)
    output = Path(output)
    check_output_file(output, "--output", [model_path], "model file")  # first: a folder has no name to suffix
    if output.suffix.lower() != SAFETENSORS_SUFFIX:
        raise FastNSTError(f"--output {output}: a safetensors model needs the {SAFETENSORS_SUFFIX} suffix "
                           f"(eval.py and load_stylizer recognise it by that): {output.with_suffix(SAFETENSORS_SUFFIX)}")
    net, ckpt = load_model(model_path, loss_model_file)
    check_loss_model_file(loss_model_file, takes_style_image(net.model_type), model_path)
    written = _model_checkpoint(net, ckpt, model_path)
    try:
        write_safetensors(written, output)
    except OSError as e:  # permissions, a full disk: output keeps what it held
        raise CheckpointError(f"cannot write --output {output}: {e.strerror or e}.") from None
    back = read_safetensors_checkpoint(output, MAX_ARCHIVE_BYTES)["model_state"]
    state = written["model_state"]
    if set(back) != set(state) or not all(torch.equal(back[k], v) for k, v in state.items()):
        output.unlink(missing_ok=True)
        raise CheckpointError(f"{output}: the written weights differ from {model_path}'s when read back; "
                              "nothing was kept. Is the disk full or failing?")
    name = written["config"].get("naming")
    name = name if isinstance(name, str) and name else model_path.stem
    return {"output": output, "bytes": output.stat().st_size, "tensors": len(state), "name": shown(name, 100),
            "model_type": net.model_type, "style_names": list(net.style_names), "checkpoint": written}


def _cell(value: Any) -> str:
    """A checkpoint value (outside text) in a Markdown table cell: bounded, one line, no pipes."""
    text = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return shown(text, 200).replace("|", "\\|").replace("<", "&lt;")


def _rows(config: dict[str, Any], keys: tuple[str, ...]) -> str:
    return "\n".join(f"| {key} | {_cell(config[key])} |" for key in keys
                     if key in config and config[key] not in (None, "", [], ()))


#: The training config entries a card lists (docs/training.md explains them).
TRAINING_KEYS = ("image_size", "batch_size", "epochs", "max_steps", "lr", "ema_decay", "style_size", "precision",
                 "seed", "freeze", "init_from")
LOSS_KEYS = ("loss_model", "loss_model_weights", "content_weight", "content_layers", "style_weight",
             "style_layers", "style_layer_weights", "tv_weight", "stability_weight", "style_warmup_steps")


def check_license(license: str) -> str:
    """``license`` if it is written as a Hub licence identifier; FastNSTError saying the form otherwise."""
    if not _LICENSE.match(license):
        raise FastNSTError(f"--license {shown(license, 80)}: give a Hugging Face Hub licence identifier "
                           "such as mit, apache-2.0, cc-by-4.0, cc-by-nc-4.0 or other (lower case).")
    return license


def _license_lines(license: Optional[str]) -> list[str]:
    if license:
        return ["## Licence", "", f"The model is released under `{license}` (see the front matter above). "
                "The painting it imitates may have rights of its own.", ""]
    return ["## Licence", "", "No licence was given for this model yet (`license: unknown` above): others "
            "cannot tell whether they may reuse it. Export it again with `--license ID`, or edit the front "
            "matter. The painting it imitates may have rights of its own.", ""]


def model_card(ckpt: dict[str, Any], file_name: str, repo_id: str = "OWNER/REPO",
               thumbnail: Optional[str] = None, losses: tuple[int, dict[str, float]] = (0, {}),
               license: Optional[str] = None) -> str:
    """The README.md (Markdown with the Hub's YAML front matter) of the model ``ckpt`` (a
    checkpoint dict) published as ``file_name`` in Hub repository ``repo_id``; ``thumbnail``:
    the style image's file name next to it; ``losses``: (step, {TensorBoard tag: value}), the
    last logged losses of its run (:func:`fast_nst.core.untrusted.events.last_losses`); ``license``:
    a Hub licence identifier (:func:`check_license`), "unknown" on the card when None."""
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    model_type = str(ckpt.get("model_type", "johnson"))
    name = _cell(config.get("naming") or Path(file_name).stem)
    entry = NETWORKS.get(model_type)
    style_flag = ""
    if entry is not None and entry.style_input == "image":
        style_flag = " --style_image PAINTING.jpg"
    styles = ckpt.get("style_names") or []
    lines = ["---", f"license: {check_license(license) if license else 'unknown'}", "library_name: fast-nst",
             "pipeline_tag: image-to-image",
             "tags: [style-transfer, neural-style-transfer, image-to-image, pytorch, safetensors]", "---", "",
             f"# {name}: fast neural style transfer ({_cell(model_type)})", ""]
    if thumbnail:
        lines += [f"![the style image]({thumbnail})", ""]
    summary = entry.summary if entry else model_type
    lines += [f"{summary[:1].upper()}{summary[1:]}, trained with fast-nst for "
              f"{_cell(ckpt.get('step', 0))} steps: one forward pass stylizes a photo of any size.", ""]
    if styles:
        lines += [f"Styles ({len(styles)}): {_cell(styles)}.", ""]
    if isinstance(ckpt.get("about"), str):
        lines += [_cell(ckpt["about"]), ""]
    lines += ["## Use", "", "```bash", "pip install 'fast-nst[hub]'",
              f"python eval.py --model_file hf://{repo_id}/{file_name}{style_flag} --image_file photo.jpg "
              "--output_file out.jpg", "```", "",
              "The file is a `.safetensors` model: weights only, no code; fast-nst checks its header and "
              "the tensors' shapes against the network before reading them.", ""]
    lines += ["## Training settings", "", "| setting | value |", "| --- | --- |",
              f"| model_type | {_cell(model_type)} |", f"| steps | {_cell(ckpt.get('step', 0))} |",
              _rows(config, TRAINING_KEYS), "", "## Losses", "",
              "The training losses: weighted terms on the features of the loss network (loss_model):", "",
              "| loss term | value |", "| --- | --- |", _rows(config, LOSS_KEYS), ""]
    step, values = losses
    if values:
        lines += [f"Last logged values (step {step}, as in the run's TensorBoard logs):", "",
                  "| scalar | value |", "| --- | --- |"]
        lines += [f"| {_cell(tag)} | {value:.4g} |" for tag, value in sorted(values.items())] + [""]
    lines += ["## How it was trained", "",
              f"With fast-nst {_cell(ckpt.get('fast_nst_version', 'unknown'))}: `python train.py --config "
              "CONFIG.yml`, with the settings above (the full training config is in the file's metadata, "
              "entry `fast_nst`). It was exported with `python -m fast_nst.export MODEL.pth --format "
              "safetensors --model_card`.", ""]
    return "\n".join(lines + _license_lines(license))


def write_model_card(folder: str | Path, ckpt: dict[str, Any], file_name: str, repo_id: str = "OWNER/REPO",
                     style_image: Optional[str | Path] = None,
                     losses: tuple[int, dict[str, float]] = (0, {}), license: Optional[str] = None) -> list[Path]:
    """Write ``folder/README.md`` (:func:`model_card`, with ``losses``) and, from the user's ``style_image``
    (never a path the model file names), ``folder/style.jpg`` at most :data:`THUMBNAIL_SIDE`
    px on its longer side; returns the written files."""
    folder = Path(folder)
    written = []
    if style_image is not None:
        # Transparency white, as training saw it (it said so then).
        img = style_rgb(open_image(style_image, draft_size=THUMBNAIL_SIDE), warn=False)
        img.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        thumb = folder / THUMBNAIL_NAME
        with atomic_write(thumb, keep_suffix=True) as tmp:
            img.save(tmp, quality=90)
        written.append(thumb)
    card = folder / CARD_NAME
    with atomic_write(card) as tmp:
        thumbnail = THUMBNAIL_NAME if style_image is not None else None
        tmp.write_text(model_card(ckpt, file_name, repo_id, thumbnail, losses, license), encoding="utf-8")
    written.append(card)
    return written
