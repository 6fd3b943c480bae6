"""Exporting a model file: :func:`export_model` loads a checkpoint, writes its ONNX or
TorchScript export to a temporary file next to the output, checks it against PyTorch
(:func:`fast_nst.io.export.check_exported`) and renames it into place only if it matches. The
formats themselves are written by :mod:`fast_nst.io.export`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Tuple

from ..core.errors import FastNSTError
from ..core.files import atomic_write, check_output_file
from ..nets.base import StyleNetwork
from ..nets.multistyle import StyleError, StyleSpec, resolve_style, style_label
from .checkpoint import check_loss_model_file, load_model
from .export import (ALPHA_INPUT_NAME, CHECK_SHAPES, FORMATS, STYLE_IMAGE_INPUT_NAME, ExportError, check_exported,
                     check_opset, export_metadata, export_onnx, export_torchscript, metadata_text,
                     refuse_torchscript, require_onnx_export, takes_style_image)
from .safetensors_file import SAFETENSORS_SUFFIX

__all__ = ["ONNX_SUFFIXES", "TORCHSCRIPT_SUFFIXES", "export_model"]

#: Output suffixes that say which format a file holds. eval.py and load_stylizer pick their
#: loader by suffix (.onnx -> onnxruntime, anything else -> torch.load), so a file whose suffix
#: names the other format fails later with a confusing error: export refuses to write one.
ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".pts", ".ts", ".torchscript", ".jit")


def _infer_format(output: Path) -> str:
    return "torchscript" if output.suffix.lower() in TORCHSCRIPT_SUFFIXES else "onnx"


def _check_suffix(output: Path, fmt: str) -> None:
    """Raise :class:`ExportError` when ``output``'s suffix names another format than ``fmt``
    (the other one, or safetensors); suffixes naming none (.bin, none) are allowed."""
    suffix = output.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:  # the loaders read it as a safetensors model
        own = ".onnx" if fmt == "onnx" else ".pt"
        raise ExportError(f"--output {output} has the suffix of a safetensors model but --format is {fmt}; "
                          f"use a {own} name ({output.with_suffix(own).name}) or --format safetensors.")
    if fmt == "torchscript" and suffix in ONNX_SUFFIXES:
        raise ExportError(f"--output {output} has the suffix of an ONNX file but --format is "
                          f"torchscript; use a .pt name ({output.with_suffix('.pt').name}) or "
                          "--format onnx.")
    if fmt == "onnx" and suffix in TORCHSCRIPT_SUFFIXES:
        kind = "a PyTorch checkpoint" if suffix == ".pth" else "a TorchScript/PyTorch file"
        raise ExportError(f"--output {output} has the suffix of {kind} but --format is onnx; "
                          f"use an .onnx name ({output.with_suffix('.onnx').name}) or "
                          "--format torchscript.")


def export_model(model_path: str | Path, output: str | Path, fmt: Optional[str] = None,
                 opset: Optional[int] = None,
                 check_sizes: Sequence[Tuple[int, int]] = (),
                 style: Optional[StyleSpec] = None,
                 loss_model_file: Optional[str | Path] = None,
                 check_net: Optional[Callable[[StyleNetwork], None]] = None) -> dict[str, Any]:
    """Export the checkpoint at ``model_path`` to ``output`` and check it; returns a summary.
    ``loss_model_file``: an arbitrary-style model's encoder weights (default: the registry's path).
    ``check_net``: called with the network to be exported (after any ``style`` is baked), before
    the slow export; it raises to refuse the network (``--quantize int8``: no arbitrary-style ones).

    ``style`` (a multi-style model only; any :data:`~fast_nst.nets.multistyle.StyleSpec`)
    bakes that style or blend into an ordinary one-input export; without it a multi-style
    model is exported with the second input :data:`STYLE_INPUT_NAME` (summary ``style_names``:
    the order of its weights). An arbitrary-style model (model_type adain) is exported to ONNX
    only, with the inputs :data:`STYLE_IMAGE_INPUT_NAME` and :data:`ALPHA_INPUT_NAME` (summary
    ``style_input`` "image"); ``style`` is refused for it.

    ``fmt`` None means from ``output``'s suffix (:data:`TORCHSCRIPT_SUFFIXES` -> torchscript,
    otherwise onnx); a ``fmt`` that contradicts the suffix is an :class:`ExportError`.

    The file is written to a temporary name in the output's folder, checked on
    :data:`CHECK_SHAPES` plus one (1, 3, H, W) input per ``check_sizes`` entry, and renamed to
    ``output`` only if every check passes: on failure ``output`` is left as it was.
    """
    model_path, output = Path(model_path), Path(output)
    fmt = _checked_request(model_path, output, fmt, opset, check_sizes)
    net, ckpt = load_model(model_path, loss_model_file)  # weights-only loading; CheckpointError for bad files
    check_loss_model_file(loss_model_file, takes_style_image(net), model_path)
    if fmt == "torchscript":
        refuse_torchscript(net)
    shapes = list(CHECK_SHAPES) + [(1, 3, h, w) for h, w in check_sizes]
    label = None
    if style is not None:
        net, label = _bake_style(net, style, model_path)
    if check_net is not None:
        check_net(net)
    metadata = export_metadata(net, ckpt, model_path)
    if label is not None:
        # "baked_style" tells a stylizer asked for a style that this file has one by choice
        metadata["name"] = metadata["baked_style"] = metadata_text(label)

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(output) as tmp:
            tmp.touch()  # an unwritable output is found now, before the (slow) export
            used_opset, diff = _write_checked(net, tmp, output, fmt, opset, metadata, shapes)
    except OSError as e:
        raise ExportError(f"cannot write --output {output}: {_write_reason(output, e)}.") from None
    return {"output": output, "format": fmt, "opset": used_opset, "max_abs_diff": diff,
            "shapes": shapes, "name": metadata["name"], "bytes": output.stat().st_size,
            "style_names": list(net.style_names), "style_input": "image" if takes_style_image(net) else "",
            "style_min_side": int(net.min_style_side) if takes_style_image(net) else None}


def _checked_request(model_path: Path, output: Path, fmt: Optional[str], opset: Optional[int],
                     check_sizes: Sequence[Tuple[int, int]]) -> str:
    """The format to write (``fmt``, or from ``output``'s suffix) once the request is checked,
    before any work: ExportError for a format, opset, check size or output that cannot be."""
    fmt = fmt or _infer_format(output)
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if opset is not None and fmt != "onnx":
        raise ExportError("--opset applies only to --format onnx.")
    check_opset(opset)
    for h, w in check_sizes:
        if h < 1 or w < 1:
            raise ExportError(f"--check_size {h} {w}: height and width must be at least 1.")
    _check_suffix(output, fmt)
    try:  # a folder, a device (/dev/null), the input itself, below a file: before any work
        check_output_file(output, "--output", [model_path])
    except FastNSTError as e:
        raise ExportError(f"cannot write the export: {e}") from None
    if fmt == "onnx":
        require_onnx_export()  # before the (slow) model loading, so what is missing is reported first
    return fmt


def _bake_style(net: StyleNetwork, style: StyleSpec, model_path: Path) -> tuple[StyleNetwork, str]:
    """(the single-style network of ``style``, its label) for a multi-style ``net``;
    :class:`StyleError` for a single-style or arbitrary-style one or a style it does not have."""
    if takes_style_image(net):
        raise StyleError(f"--style bakes one of a multi-style model's styles; {model_path} is an "
                         f"arbitrary-style model (model_type {net.model_type}), exported with its style "
                         f"image and alpha as inputs ({STYLE_IMAGE_INPUT_NAME!r}, {ALPHA_INPUT_NAME!r}): "
                         "export it without --style and give the style image when stylizing.")
    if not net.style_names:
        raise StyleError(f"--style needs a multi-style model (model_type johnson_multi); {model_path} "
                         f"is a single-style {net.model_type} model: export it without --style.")
    try:
        w = resolve_style(style, net.style_names)
    except StyleError as e:
        raise StyleError(f"--style: {e}") from None
    return net.for_style(w), style_label(w, net.style_names)


def _write_reason(output: Path, e: OSError) -> str:
    blocker = next((p for p in output.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        return f"{blocker} is a file, not a folder"
    return e.strerror or str(e)


def _write_checked(net: StyleNetwork, tmp: Path, output: Path, fmt: str, opset: Optional[int],
                   metadata: dict[str, str], shapes: list) -> tuple[Optional[int], float]:
    """Export ``net`` to ``tmp`` and check it there: (opset used, max abs difference)."""
    if fmt == "onnx":
        used_opset: Optional[int] = export_onnx(net, tmp, opset=opset, metadata=metadata)
    else:
        export_torchscript(net, tmp, metadata=metadata)
        used_opset = None
    try:
        diff = check_exported(tmp, fmt, net, shapes)
    except ExportError as e:
        kept = f"{output} was left unchanged" if output.exists() else f"{output} was not written"
        raise ExportError(f"{e} The export was discarded; {kept}.") from None
    return used_opset, diff
