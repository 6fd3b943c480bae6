"""``python -m fast_nst.export MODEL --format onnx`` (also ``fast-nst-export``): export a model
to ONNX or TorchScript, checked against PyTorch before it is written."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

from ..core.untrusted import shown
from ..io.quantize import CALIBRATION_COUNT, QUANTIZE_MODES, export_quantized
from ..io.export import (ALPHA_INPUT_NAME, CHECK_SHAPES, FORMATS, MIN_OPSET, STYLE_IMAGE_INPUT_NAME,
                         STYLE_INPUT_NAME, TOLERANCE, TORCHSCRIPT_SUFFIXES, ExportError, export_model)
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
                    "deployment with torch.jit.load.",
        epilog="Example: python -m fast_nst.export models/wave/wave.pth --format onnx --output wave.onnx",
    )
    p.add_argument("model",
                   help="the .pth to export, read with weights-only loading like eval.py: train.py's "
                        "final model (models/NAME/NAME.pth), a training checkpoint from its "
                        "checkpoints/ folder (step_N.pth), a model written by fast_nst.convert or "
                        "download pretrained, or a pytorch/examples fast_neural_style .pth")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="onnx or torchscript (default: from --output's suffix: "
                        f"{'/'.join(TORCHSCRIPT_SUFFIXES)} -> torchscript, otherwise onnx; onnx "
                        "when --output is not given). A --format that contradicts --output's "
                        "suffix (torchscript to .onnx, onnx to .pt/.pth) is an error; other "
                        "suffixes such as .bin are allowed. Arbitrary-style models (model_type adain) "
                        "export to onnx only")
    p.add_argument("--output", "-o", default=None, metavar="FILE",
                   help="file to write (default: the model's name with .onnx, or .pt for "
                        "--format torchscript, next to it)")
    p.add_argument("--opset", type=int, default=None, metavar="N",
                   help=f"ONNX opset version (>= {MIN_OPSET}; default: the exporter's choice)")
    p.add_argument("--check_size", type=int, nargs=2, action="append", default=[], metavar=("H", "W"),
                   help="also check the export on a 1x3xHxW input (repeatable); always checked: "
                        + ", ".join("x".join(map(str, s)) for s in CHECK_SHAPES))
    p.add_argument("--style", default=None, metavar="SPEC",
                   help="multi-style models only: a style name, a blend name:w,name:w (e.g. "
                        "candy:0.7,mosaic:0.3) or an index; bakes that style into a single-input "
                        "export. Without it a multi-style model is exported with a second input "
                        f"{STYLE_INPUT_NAME!r}: one float32 weight per style, summing to 1, in the "
                        "order of the model's style names (listed in the metadata, style_names). "
                        "Not for arbitrary-style models (model_type adain): they are exported with "
                        f"the inputs {STYLE_IMAGE_INPUT_NAME!r} (the style image, 1x3xhxw) and "
                        f"{ALPHA_INPUT_NAME!r} (1 float in [0, 1])")
    p.add_argument("--loss_model_file", metavar="FILE",
                   help="arbitrary-style models: the VGG weights file their encoder was trained with "
                        "(default: the loss network's default path, e.g. pretrained/vgg19-dcbb9e9d.pth)")
    p.add_argument("--quantize", choices=QUANTIZE_MODES, default=None,
                   help="int8: write the ONNX export with int8 convolutions (onnxruntime static "
                        "quantization, for CPUs; single-style models), calibrated on generated images "
                        "or --calibration_images; prints its PSNR against the float32 export")
    p.add_argument("--calibration_images", metavar="DIR",
                   help=f"with --quantize: a folder of photos to calibrate on (the first {CALIBRATION_COUNT})")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)

    def run() -> int:
        if args.output:
            output = Path(args.output)
        else:
            suffix = ".pt" if args.format == "torchscript" else ".int8.onnx" if args.quantize else ".onnx"
            output = Path(args.model).with_suffix(suffix)
        # args.format None: export_model infers it from the suffix; explicit: it is checked
        # against the suffix there, before the model is loaded.
        if args.calibration_images is not None and not args.quantize:
            raise ExportError("--calibration_images goes with --quantize int8")
        export = export_quantized if args.quantize else export_model
        extra = {"calibration_images": args.calibration_images} if args.quantize else {}
        summary = export(args.model, output, fmt=args.format, opset=args.opset,
                         check_sizes=[tuple(s) for s in args.check_size], style=args.style,
                         loss_model_file=args.loss_model_file, **extra)
        fmt = summary["format"]
        what = f"ONNX opset {summary['opset']}" if fmt == "onnx" else "TorchScript"
        if args.quantize:
            what += f", int8 convolutions calibrated on {summary['calibration']} images"
        shapes = ", ".join("x".join(map(str, s)) for s in summary["shapes"])
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

