"""``python -m fast_nst.export MODEL --format onnx`` (also ``fast-nst-export``): export a model
to ONNX or TorchScript, checked against PyTorch before it is written; or to ``.safetensors``
(``--format safetensors``, with ``--model_card`` for the Hugging Face Hub)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from ..core.errors import DataError, FastNSTError
from ..core.images import shape_text
from ..core.untrusted import input_file, shown
from ..io.export import (ALPHA_INPUT_NAME, CHECK_SHAPES, FORMATS, MIN_OPSET, STYLE_IMAGE_INPUT_NAME,
                         STYLE_INPUT_NAME, TOLERANCE, ExportError, require_onnx_export)
from ..io.model_export import TORCHSCRIPT_SUFFIXES, export_model
from ..core.untrusted.events import last_losses
from ..core.untrusted.safetensors_header import require_safetensors
from ..io.checkpoint import CHECKPOINT_DIR
from ..io.hub import cached_copy_errors, is_remote_model, local_model_file as model_path, remote_model_name
from ..io.publish import check_license, export_safetensors, write_model_card
from ..io.quantize import CALIBRATION_COUNT, QUANTIZE_MODES, export_quantized, require_quantization
from ..io.safetensors_file import SAFETENSORS_SUFFIX
from ..nets.multistyle import style_list
from . import new_parser, run_command

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = new_parser(
        "python -m fast_nst.export",
        description="Export a model (.pth) to ONNX or TorchScript with dynamic batch, "
                    "height and width. The exported file is run on sample inputs and compared "
                    f"with PyTorch (max abs difference <= {TOLERANCE:g}) before it is written. "
                    "eval.py and load_stylizer read the .onnx export; TorchScript is for "
                    "deployment with torch.jit.load. --format safetensors writes the weights and "
                    "their description without code, to share (with --model_card, on the Hugging "
                    "Face Hub).",
        epilog="Example: python -m fast_nst.export models/wave/wave.pth --format onnx --output wave.onnx",
    )
    p.add_argument("model",
                   help="the .pth to export, read with weights-only loading like eval.py: train.py's "
                        "final model (models/NAME/NAME.pth), a training checkpoint from its "
                        "checkpoints/ folder (step_N.pth), a model written by fast_nst.convert or "
                        "download pretrained, a pytorch/examples fast_neural_style .pth, a "
                        ".safetensors export, a Hub file hf://OWNER/REPO/FILE[@REVISION] or a URL "
                        "https://HOST/PATH/NAME.pth (downloaded once into a cache)")
    p.add_argument("--format", choices=FORMATS + ("safetensors",), default=None,
                   help="onnx or torchscript (default: from --output's suffix: "
                        f"{'/'.join(TORCHSCRIPT_SUFFIXES)} -> torchscript, otherwise onnx; onnx "
                        "when --output is not given). A --format that contradicts --output's "
                        "suffix (torchscript to .onnx, onnx to .pt/.pth, either to .safetensors) is an error; other "
                        "suffixes such as .bin are allowed. Arbitrary-style models (model_type adain) "
                        "export to onnx only. safetensors (also chosen by a .safetensors --output): the "
                        "weights with the checkpoint's description as metadata, no code; eval.py, "
                        "load_stylizer, the app and reports read it like a .pth")
    p.add_argument("--output", "-o", default=None, metavar="FILE",
                   help="file to write (default: the model's name with .onnx, .pt for --format "
                        "torchscript or .safetensors for --format safetensors, next to it; in the "
                        "current folder for an hf:// or URL model)")
    p.add_argument("--opset", type=int, default=None, metavar="N",
                   help=f"ONNX opset version (>= {MIN_OPSET}; default: the exporter's choice)")
    p.add_argument("--check_size", type=int, nargs=2, action="append", default=[], metavar=("H", "W"),
                   help="also check the export on a 1x3xHxW input (repeatable); always checked: "
                        + ", ".join(shape_text(s) for s in CHECK_SHAPES))
    p.add_argument("--style", default=None, metavar="SPEC",
                   help="multi-style models only: a style name, a blend name:w,name:w (e.g. "
                        "candy:0.7,mosaic:0.3) or an index; bakes that style into a single-input "
                        "export. Without it a multi-style model is exported with a second input "
                        f"{STYLE_INPUT_NAME!r}: one float32 weight per style, summing to 1, in the "
                        "order of the model's style names (listed in the metadata, style_names). "
                        "Not for arbitrary-style models (model_type adain): they are exported with "
                        f"the inputs {STYLE_IMAGE_INPUT_NAME!r} (the style image, 1x3xhxw) and "
                        f"{ALPHA_INPUT_NAME!r} (1 float in [0, 1])")
    _card_arguments(p)
    p.add_argument("--loss_model_file", metavar="FILE",
                   help="arbitrary-style models: the VGG weights file their encoder was trained with "
                        "(default: the loss network's default path, e.g. pretrained/vgg19-dcbb9e9d.pth)")
    p.add_argument("--quantize", choices=QUANTIZE_MODES, default=None,
                   help="int8: write the ONNX export with int8 convolutions (onnxruntime static "
                        "quantization, for CPUs; single- and multi-style models), calibrated on generated images "
                        "or --calibration_images; prints its PSNR against the float32 export")
    p.add_argument("--calibration_images", metavar="DIR",
                   help=f"with --quantize: a folder of photos to calibrate on (the first {CALIBRATION_COUNT})")
    return p


def _card_arguments(p: argparse.ArgumentParser) -> None:
    """The safetensors export's model card: whether to write it and what it says."""
    p.add_argument("--model_card", action="store_true",
                   help="safetensors only: also write README.md (a Hugging Face Hub model card: training "
                        "settings, losses, how to use it) next to --output; the command prints the "
                        "hf upload line that publishes them")
    p.add_argument("--style_image", metavar="FILE",
                   help="with --model_card: the style image, shown on the card as a thumbnail (style.jpg)")
    p.add_argument("--license", metavar="ID",
                   help="with --model_card: the model's licence as a Hub identifier (mit, apache-2.0, "
                        "cc-by-4.0, cc-by-nc-4.0, other...); without it the card says unknown")
    p.add_argument("--repo_id", default="OWNER/REPO", metavar="OWNER/REPO",
                   help="with --model_card: the Hub repository the card's usage example names")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)

    def run() -> int:
        if args.format == "safetensors" or (args.format is None and args.output
                                             and Path(args.output).suffix.lower() == SAFETENSORS_SUFFIX):
            if args.quantize or args.calibration_images:
                raise ExportError("--quantize and --calibration_images are for ONNX exports, not safetensors.")
            return _safetensors(args)
        if args.model_card or args.style_image or args.license:
            raise FastNSTError("--model_card, --style_image and --license are for --format safetensors.")
        if args.output:
            output = Path(args.output)
        else:
            suffix = ".pt" if args.format == "torchscript" else ".int8.onnx" if args.quantize else ".onnx"
            output = _default_output(args.model, suffix)
        # args.format None: export_model infers it from the suffix; explicit: it is checked
        # against the suffix there, before the model is loaded.
        if args.calibration_images is not None and not args.quantize:
            raise ExportError("--calibration_images goes with --quantize int8")
        export = export_quantized if args.quantize else export_model
        extra = {"calibration_images": args.calibration_images} if args.quantize else {}
        if (args.format or ("torchscript" if output.suffix.lower() in TORCHSCRIPT_SUFFIXES else "onnx")) == "onnx":
            require_onnx_export()  # before an hf:// or URL model is downloaded
        if args.quantize:
            require_quantization()
        source = model_path(args.model)
        with cached_copy_errors(source):
            summary = export(source, output, fmt=args.format, opset=args.opset,
                             check_sizes=[tuple(s) for s in args.check_size], style=args.style,
                             loss_model_file=args.loss_model_file, **extra)
        fmt = summary["format"]
        what = f"ONNX opset {summary['opset']}" if fmt == "onnx" else "TorchScript"
        if args.quantize:
            what += f", int8 convolutions calibrated on {summary['calibration']} images"
        shapes = ", ".join(shape_text(s) for s in summary["shapes"])
        print(f"Exported {args.model} -> {output} ({what}, {summary['bytes'] / 1e6:.1f} MB, "
              f"style '{shown(summary['name'])}')")
        print(f"{'The float32 export was checked' if args.quantize else 'Checked'} against PyTorch on {shapes}: max abs difference "
              f"{summary['max_abs_diff']:.2g} (tolerance {TOLERANCE:g})")
        if args.quantize:
            print(f"int8 against the float32 export: {summary['psnr']:.1f} dB PSNR on the calibration images")
        names = summary["style_names"]
        if names:
            print(f"Style input {STYLE_INPUT_NAME!r}: {len(names)} weights (>= 0, summing to 1) in "
                  f"this order: {style_list(names, len(names))}")
        if summary["style_input"] == "image":
            print(f"Style inputs {STYLE_IMAGE_INPUT_NAME!r}: the style image (1x3xhxw float32 in [0, 1], "
                  f"h, w >= {summary['style_min_side']}), {ALPHA_INPUT_NAME!r}: 1 float32 in [0, 1] "
                  "(1: the full style)")
        if fmt == "onnx" and output.suffix.lower() != ".onnx":
            print("note: eval.py and load_stylizer recognise ONNX files by the .onnx suffix.")
        return 0

    return run_command(run)


def _default_output(model: str, suffix: str) -> Path:
    """The model's name with ``suffix``: next to a local model, in the current folder for an
    hf:// reference or a URL (never inside a download cache)."""
    if is_remote_model(model):
        return Path(remote_model_name(model)).with_suffix(suffix)
    # "." or "/" has no name to give the output: say what the model is, as for any folder.
    return input_file(model, "Model file").with_suffix(suffix)


def _run_losses(model: str, source: Path, step: int) -> tuple[int, dict[str, float]]:
    """The last losses logged up to ``step`` by the run MODEL belongs to (its folder's TensorBoard
    logs; a checkpoint's: the run folder above checkpoints/), for the model card; none for an hf://
    reference, a URL or a file outside a run folder, a note when its logs cannot be read."""
    if is_remote_model(model):
        return 0, {}
    folder = source.parent.parent if source.parent.name == CHECKPOINT_DIR else source.parent
    try:
        logged, values = last_losses(folder, step or None)
    except DataError as e:
        print(f"note: the model card lists no loss values: {e}")
        return 0, {}
    if values:
        print(f"Losses for the model card: the last logged values (step {logged}) of {folder}'s TensorBoard logs")
    return logged, values


def _safetensors(args: argparse.Namespace) -> int:
    """--format safetensors: the file, its check, and with --model_card the card beside it."""
    if args.opset is not None or args.check_size or args.style is not None:
        raise FastNSTError("--opset, --check_size and --style are for onnx and torchscript exports; a "
                           "safetensors file holds the whole model (every style of a multi-style one).")
    if (args.style_image or args.license) and not args.model_card:
        raise FastNSTError("--style_image and --license are for the model card: add --model_card.")
    if args.license:
        check_license(args.license)  # before the export, not after it
    if args.style_image:
        input_file(args.style_image, "--style_image")  # before the export, not after it
    output = args.output or _default_output(args.model, SAFETENSORS_SUFFIX)
    require_safetensors(output)  # before an hf:// or URL model is downloaded
    source = model_path(args.model)
    with cached_copy_errors(source):
        summary = export_safetensors(source, output, args.loss_model_file)
    print(f"Exported {args.model} -> {summary['output']} (safetensors, {summary['tensors']} tensors, "
          f"{summary['bytes'] / 1e6:.1f} MB, {summary['model_type']} '{summary['name']}'); every tensor read "
          "back identical")
    if args.model_card:
        losses = _run_losses(args.model, source, summary["checkpoint"]["step"])
        files = write_model_card(Path(summary["output"]).parent, summary["checkpoint"], Path(summary["output"]).name,
                                 args.repo_id, args.style_image, losses, args.license)
        # Only these files: next to a run's model lie its checkpoints, logs and config.
        include = " ".join(f"--include {f.name}" for f in [Path(summary["output"])] + files)
        print(f"Model card: {', '.join(str(f) for f in files)}. Publish with: hf upload "
              f"{args.repo_id} {Path(summary['output']).parent} . {include}")
    return 0
