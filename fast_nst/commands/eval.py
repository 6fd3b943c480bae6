"""``python eval.py --model_file M --image_file photo.jpg`` (also ``fast-nst-eval``): stylize an
image, a folder of images or a video with a trained model."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from PIL import Image

from ..core.errors import DataError, FastNSTError
from ..core.untrusted.downloads import fetch_style_image, is_url
from ..core.files import check_output_file, distinct_stems, plain_name, probe_writable, same_file
from ..core.images import IMAGE_EXTENSIONS, list_images, save_image
from ..core.untrusted import input_file, input_path, open_image, shown
from ..io.bundled import BUNDLED_STYLE, bundled_model
from ..io.checkpoint import check_loss_model_file
from ..nets.multistyle import style_list
from ..report.sheet import labelled_grid
from ..stylize import RUNTIMES, StylizeOptions, Stylizer, load_stylizer
from ..stylize.base import DEFAULT_STYLE_SIZE, LOAD_PRECISIONS, ThinStyleError
from ..stylize.openvino_stylizer import OPENVINO_INSTALL_HINT
from ..stylize.tiling import DEFAULT_CONTEXT, DEFAULT_OVERLAP
from ..stylize.video import stylize_video
from ..stylize.video_files import check_video_files
from . import add_max_image_pixels, apply_max_image_pixels, new_parser, precision_note, run_command

__all__ = ["DEFAULT_OUTPUT_DIR", "main", "parser"]

DEFAULT_OUTPUT_DIR = "generated"


def parser() -> argparse.ArgumentParser:
    p = new_parser(
        "eval.py",
        description="Stylize an image (or every image in a folder) with a trained model.",
        epilog="Examples: python eval.py --image_file photo.jpg   (the built-in model)\n"
               "          python eval.py --model_file models/wave/wave.pth --image_file photo.jpg",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model_file",
                   help="a model: train.py's final .pth, its run folder (models/wave means "
                        "models/wave/wave.pth, or the newest checkpoint of an interrupted run), a "
                        "training checkpoint from its checkpoints/ folder, a .safetensors or .onnx "
                        "export, a pytorch/examples .pth, a Hugging Face Hub file "
                        "hf://OWNER/REPO/FILE[@REVISION] or a URL https://HOST/PATH/NAME.pth (either "
                        "downloaded once into a cache; #sha256=HEX pins its checksum); default: the "
                        f"built-in {BUNDLED_STYLE} model, shipped "
                        "inside the package")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--image_file", help="an image, or a folder of images")
    src.add_argument("--video_file", help="a video: stylized frame by frame, keeping frame rate and "
                     "audio (needs the optional extra: pip install -e '.[video]')")
    p.add_argument("--output_file", help=f"output image, or a folder to put it in; for a folder "
                   f"input, the output folder; default {DEFAULT_OUTPUT_DIR}/<image stem>_<style>.jpg "
                   "(.png for images with transparency)")
    _style_arguments(p)
    _run_arguments(p)
    _image_arguments(p)
    return p


def _style_arguments(p: argparse.ArgumentParser) -> None:
    """Choosing the style: multi-style models' styles, arbitrary-style models' style images."""
    p.add_argument("--style", metavar="SPEC",
                   help="multi-style models: the style, by name (candy) or index, or a blend "
                        "(candy:0.7,mosaic:0.3; weights are normalised to sum 1); default the first")
    p.add_argument("--list_styles", action="store_true",
                   help="print a multi-style model's styles and exit")
    p.add_argument("--style_sheet", action="store_true",
                   help="multi-style models: write one image of the photo in every style "
                        "(<image stem>_styles.jpg)")
    p.add_argument("--style_image", nargs="+", metavar="PATH[:WEIGHT]",
                   help="arbitrary-style models (model_type adain): the style image (a path, or an "
                        "https URL, downloaded once into data/styles/); several blend "
                        "their styles, each optionally weighted (a.jpg:0.7 b.jpg:0.3; weights are "
                        "normalised to sum 1)")
    p.add_argument("--alpha", type=float, metavar="A",
                   help="arbitrary-style models: how much style, from 0 (the photo's own features) to "
                        "1 (default, the full style)")
    p.add_argument("--style_size", type=int, metavar="N",
                   help=f"arbitrary-style models: resize style images to a longest side of N px first, "
                        f"as style_size means everywhere (default {DEFAULT_STYLE_SIZE}; the texture scale "
                        "follows it; 0 keeps their size; at most 4.2 MP after resizing)")
    p.add_argument("--loss_model_file", metavar="FILE",
                   help="arbitrary-style models: the VGG weights file their encoder was trained with "
                        "(default: the loss network's default path, e.g. pretrained/vgg19-dcbb9e9d.pth); "
                        "checked against the checksum the model records")


def _run_arguments(p: argparse.ArgumentParser) -> None:
    """Where and how the network runs: device, precision, batches and video statistics."""
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--batch_size", type=int, default=4, metavar="N",
                   help="video frames per forward pass (default 4)")
    p.add_argument("--temporal", default="auto", choices=["auto", "on", "off"],
                   help="video: carry instance-norm statistics across frames (less flicker, no "
                        "retraining; docs/video.md). auto (default): on where the model can (PyTorch models and "
                        "fast-nst's .onnx exports; not arbitrary-style exports of an earlier version), off "
                        "otherwise")
    p.add_argument("--precision", default="fp32", choices=LOAD_PRECISIONS,
                   help="arithmetic for the network: bf16 is the fastest on CPUs with AMX and on GPUs "
                        "(with fp16), and slower than fp32 on CPUs without AMX; int8: the model quantized "
                        "at load time and run by onnxruntime on the CPU, the fast one on CPUs without AMX "
                        "(single- and multi-style models; needs the onnx extra); auto: bf16 where it is fast, else "
                        "fp16 on GPUs and fp32 on CPUs (never int8), said in one line")
    p.add_argument("--runtime", default="default", choices=RUNTIMES,
                   help="who runs the network: default (PyTorch for .pth/.safetensors models, "
                        "onnxruntime for .onnx and int8) or openvino (the ONNX export on the CPU, "
                        f"fastest on Intel CPUs; needs {OPENVINO_INSTALL_HINT})")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (pays off for folders and video, not one image)")


def _image_arguments(p: argparse.ArgumentParser) -> None:
    """What is done to each image: sizes, tiles, colour, strength, the pixel limit."""
    p.add_argument("--max_size", type=int, metavar="N", help="shrink so the longest side is at most N first")
    p.add_argument("--scale", type=float, metavar="F", help="resize by factor F first (0.5: half size)")
    p.add_argument("--keep_size", action="store_true",
                   help="resize the result back to the input's size after --max_size/--scale")
    p.add_argument("--tile_size", default="auto", metavar="N|auto|0",
                   help="stylize in N x N tiles (bounded memory for huge images; N > 128 + 2 x "
                        "overlap, e.g. 512); auto (default) tiles only when the image would not "
                        "fit in memory; 0 never tiles")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, metavar="PX",
                   help=f"blended band between tiles (default {DEFAULT_OVERLAP}); each tile also sees "
                        f"{DEFAULT_CONTEXT} px of context beyond its kept core, more than the "
                        "network's 54 px reach")
    p.add_argument("--preserve_color", action="store_true",
                   help="keep the photo's colours: transfer only the style's brightness pattern")
    p.add_argument("--strength", type=float, default=1.0, metavar="A",
                   help="blend: 0 returns the photo, 1 (default) the full stylization")
    add_max_image_pixels(p)


def _output_name(stem: str, style: str, has_alpha: bool) -> str:
    # JPEG cannot hold alpha: transparent inputs default to PNG.
    return f"{stem}_{style}{'.png' if has_alpha else '.jpg'}"


def _stylize_file(stylizer: Stylizer, src: Path, dest: Optional[Path], out_dir: Path,
                  options: StylizeOptions, stem: Optional[str] = None, inputs: Sequence[Path] = (),
                  sheet: bool = False) -> Path:
    img = open_image(src)
    if dest is None:
        name = "styles" if sheet else stylizer.name
        dest = out_dir / _output_name(stem or plain_name(src.stem), name, img.mode == "RGBA" and not sheet)
    for source in (src, *inputs):  # never write onto an input (of this run)
        if same_file(source, dest):
            raise DataError(f"Output {dest} is the input image {source}; refusing to overwrite it. "
                            "Choose another --output_file.")
    save_image(style_sheet(stylizer, img, options) if sheet else stylizer.stylize(img, options, progress=True), dest)
    return dest


def style_sheet(stylizer: Stylizer, image: Image.Image, options: StylizeOptions) -> Image.Image:
    """The photo, then its stylization in each of the model's styles, in a labelled grid; the
    stylizer is left in the style it had."""
    previous = stylizer.style
    cells, labels = [image.convert("RGB")], ["photo"]
    for name in stylizer.style_names:
        cells.append(stylizer.stylize(image, options, style=name).convert("RGB"))
        labels.append(shown(name, 60))
    stylizer.set_style(previous)
    # Cells as large as the result (up to 512 px) so the brush strokes stay visible.
    return labelled_grid(cells, labels, columns=4, cell=min(512, max(cells[1].size)))


def _style_image_specs(values: Sequence[str]) -> list[tuple[Path, float]]:
    """--style_image's PATH or PATH:WEIGHT values as (path, weight), each file checked to exist
    (before the model loads); a suffix after the last ':' that is no number belongs to the path.
    An https URL is downloaded once into data/styles/ (as training's style_image)."""
    specs = []
    for value in values:
        path, sep, weight = value.rpartition(":")
        try:
            w = float(weight) if sep and path else None
        except ValueError:
            w = None
        if w is None:
            path, w = value, 1.0
        if not (w >= 0 and w < float("inf")):
            raise DataError(f"--style_image {value}: the weight must be a number >= 0, got {weight}")
        if is_url(path):
            path = str(fetch_style_image(path, fix="give --style_image its local path"))
        specs.append((input_file(path, "--style_image"), w))
    if sum(w for _, w in specs) <= 0:
        raise DataError("--style_image: the weights must not all be 0")
    return specs


def _choose_style_image(args: argparse.Namespace, stylizer: Stylizer) -> Stylizer:
    """An arbitrary-style model gets --style_image (with --alpha, --style_size); --style is not its."""
    if args.style is not None or args.style_sheet:
        raise DataError(f"{'--style' if args.style is not None else '--style_sheet'}: {args.model_file} is an "
                        "arbitrary-style model (model_type adain): give its style with --style_image painting.jpg")
    if not args.style_image:
        raise DataError(f"{args.model_file} is an arbitrary-style model (model_type adain): this model needs "
                        "a style image: --style_image painting.jpg")
    size = DEFAULT_STYLE_SIZE if args.style_size is None else (args.style_size or None)  # 0: as it is
    try:
        stylizer.set_style([(str(p), w) for p, w in args.style_specs], alpha=args.alpha, style_size=size)
    except ThinStyleError as e:
        if e.style_size is None:
            raise
        raise ThinStyleError(f"{e}, or --style_size {e.style_size}", e.style_size) from None
    return stylizer


def _onnx_has_its_encoder(args: argparse.Namespace) -> None:
    """--loss_model_file with an .onnx model (a path, or a URL or hf:// reference naming one) is
    refused before it loads: the export holds its encoder's weights and reads no file."""
    if args.loss_model_file is not None and Path(str(args.model_file).split("#")[0]).suffix.lower() == ".onnx":
        raise DataError(f"--loss_model_file: {args.model_file} is an .onnx export, which holds its encoder's "
                        "weights; remove --loss_model_file (it is for .pth and .safetensors models).")


def _choose_style(args: argparse.Namespace, stylizer: Stylizer) -> Stylizer:
    """Apply --style / check --style_sheet against the loaded model (errors list the styles)."""
    check_loss_model_file(args.loss_model_file, stylizer.style_input == "image", args.model_file)
    if stylizer.style_input == "image":
        return _choose_style_image(args, stylizer)
    if args.style_image:
        raise DataError(f"--style_image: {args.model_file} has its own style{'s' if stylizer.style_names else ''}; "
                        "--style_image is for arbitrary-style models (model_type adain)")
    if (args.style is not None or args.style_sheet) and not stylizer.style_names:
        raise DataError(f"{'--style' if args.style is not None else '--style_sheet'}: {args.model_file} "
                        f"{stylizer.one_style_reason()}")
    if args.style is not None:
        stylizer.set_style(args.style)
    elif stylizer.style_names and not args.style_sheet:
        print(f"{args.model_file} has {len(stylizer.style_names)} styles ({style_list(stylizer.style_names, 12)}); "
              f"using {shown(stylizer.style_names[0])}. Choose with --style NAME or a blend --style a:0.5,b:0.5.",
              file=sys.stderr)
    return stylizer


def _tile_option(text: str):
    if text == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise DataError(f"--tile_size must be auto, 0 or a positive number of pixels, got {text!r}")
    return None if n == 0 else n


def _options(args: argparse.Namespace) -> StylizeOptions:
    """The stylize options from the flags, checked before the model loads (errors name the flag)."""
    return StylizeOptions.from_flags(
        tile_size=_tile_option(args.tile_size), overlap=args.overlap,
        preserve_color=args.preserve_color, strength=args.strength, max_size=args.max_size,
        scale=args.scale, keep_size=args.keep_size)


def _default_video(src: Path, style: str) -> Path:
    """The output video when --output_file is not given: generated/<input>_<style>.mp4."""
    return Path(DEFAULT_OUTPUT_DIR) / f"{plain_name(src.stem)}_{style}.mp4"


def _video_output(args: argparse.Namespace, src: Path) -> Optional[Path]:
    """The output video (None: the default name, which needs the model's name), checked with
    the input before the model loads: preparing an int8 or OpenVINO model takes seconds."""
    if args.batch_size <= 0:
        raise DataError(f"--batch_size must be > 0, got {args.batch_size}")
    dest = Path(args.output_file) if args.output_file else None
    if dest is not None and dest.suffix.lower() in IMAGE_EXTENSIONS + (".gif", ".tif", ".tiff"):
        raise DataError(f"--output_file {dest} names an image, but --video_file writes a "
                        "video: give a name ending in .mp4, .mov, .mkv or .webm.")
    if dest is not None:
        check_output_file(dest, "--output_file", [src], "input video")
    check_video_files(src, dest or _default_video(src, "model"))  # the model's name comes with the model
    folder = dest.parent if dest is not None else Path(DEFAULT_OUTPUT_DIR)
    probe_writable(folder, "the output folder", "Choose a writable --output_file.")
    return dest


def _video(args: argparse.Namespace, stylizer: Stylizer, src: Path, dest: Optional[Path],
           options: StylizeOptions) -> int:
    dest = dest or _default_video(src, stylizer.name)
    summary = stylize_video(stylizer, src, dest, batch_size=args.batch_size, options=options,
                            temporal={"auto": None, "on": True, "off": False}[args.temporal])
    ratio = summary.get("change_ratio")
    stable = "stable statistics" if summary.get("temporal") else "per-frame statistics"
    print(f"Saved {dest} ({stable}" + (f"; the stylized frames change {ratio:.2f}x as much as the input "
                                       "frames" if ratio is not None else "") + ")")
    return 0


def _single_output(args: argparse.Namespace, src: Path) -> tuple[Optional[Path], Path]:
    """(output file, or None for the default name; its folder), checked before any work."""
    dest = Path(args.output_file) if args.output_file else None
    if dest is None or dest.is_dir() or args.output_file.endswith(("/", os.sep)):
        out_dir = dest or Path(DEFAULT_OUTPUT_DIR)  # a folder: the default name inside it
        check_output_file(out_dir / "x.jpg", "--output_file")  # no parent of it is a file
        probe_writable(out_dir, "the output folder", "Choose a writable --output_file.")
        return None, out_dir
    if not dest.suffix:
        raise DataError(f"--output_file {dest} has no extension: for a folder, end it with '/' "
                        f"({dest}/); for an image, add one of {', '.join(IMAGE_EXTENSIONS)}.")
    if dest.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(f"{dest}: unsupported output extension {dest.suffix!r}; use one of "
                        f"{', '.join(IMAGE_EXTENSIONS)}")
    check_output_file(dest, "--output_file", [src], what="input image")
    probe_writable(dest.parent, "the output folder", "Choose a writable --output_file.")
    return dest, dest.parent


def _folder_output(args: argparse.Namespace) -> Path:
    out_dir = Path(args.output_file or DEFAULT_OUTPUT_DIR)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--output_file {out_dir} is a file; for a folder input give a folder.")
    if not out_dir.exists() and out_dir.suffix.lower() in IMAGE_EXTENSIONS and not args.output_file.endswith("/"):
        raise DataError(f"--output_file {out_dir} names an image, but --image_file is a folder: give "
                        f"an output folder (e.g. {out_dir.with_suffix('')}/).")
    check_output_file(out_dir / "x.jpg", "--output_file")
    probe_writable(out_dir, "the output folder", "Choose a writable --output_file.")
    return out_dir


def _folder(stylizer: Stylizer, files: Sequence[Path], out_dir: Path, options: StylizeOptions,
            sheet: bool = False) -> int:
    """Every image of ``files`` (listed once, up front: outputs written among them are never
    read); a failing image is reported in one line and the others go on; exit 1 if any failed."""
    failed = 0
    # Plain names first, so that two names differing only in an escape still get two outputs.
    stems = dict(zip(files, distinct_stems([plain_name(f.name) for f in files])))
    for f in files:
        try:
            written = _stylize_file(stylizer, f, None, out_dir, options, stems[f], inputs=files, sheet=sheet)
            print(f"Saved {shown(str(written), 4096)}")
        except FastNSTError as e:  # the message names the file too: shown, as the name is
            failed += 1
            print(f"error: {shown(f.name)}: {shown(str(e).splitlines()[0], 300)} (skipped)", file=sys.stderr)
    done = len(files) - failed
    print(f"Stylized {done} of {len(files)} images into {out_dir}"
          + (f"; {failed} failed (see errors above)" if failed else ""))
    return 1 if failed else 0


def _list_styles(stylizer: Stylizer) -> int:
    if stylizer.style_input == "image":
        print(f"{stylizer.info.get('path', 'this model')}: an arbitrary-style model: any style image, "
              "given with --style_image")
        return 0
    if not stylizer.style_names:
        where = stylizer.info.get('path', 'this model')
        # an export with its style baked in came from a multi-style model: say how to choose styles
        print(f"{where} {stylizer.one_style_reason()}" if stylizer.baked_style()
              else f"{where}: one style ({shown(stylizer.name)})")
        return 0
    for i, name in enumerate(stylizer.style_names):
        print(f"{i:3d}  {shown(name)}")
    return 0


def _load(args: argparse.Namespace, **kwargs: Any) -> Stylizer:
    """The stylizer of --model_file; without one, the built-in model, said in one line (on
    stderr: stdout lists the files written)."""
    if args.model_file is not None:
        return load_stylizer(args.model_file, **kwargs)
    path = bundled_model()
    stylizer = load_stylizer(path, **kwargs)
    made = stylizer.info.get("about") or BUNDLED_STYLE
    print(f"No --model_file: using the built-in model {path.name}: {made}. Name your own with --model_file.",
          file=sys.stderr)
    args.model_file = str(path)  # the messages below name the model file
    return stylizer


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not (args.image_file or args.video_file or args.list_styles):
        p.error("one of the arguments --image_file --video_file is required (or --list_styles)")
    if args.style_sheet and (args.video_file or args.style is not None):
        p.error("--style_sheet shows every style of one image: use it with --image_file, without --style")
    if args.style_image and args.style is not None:
        p.error("--style chooses among a multi-style model's styles, --style_image gives an arbitrary-style "
                "model its style: use one")
    for flag in ("alpha", "style_size"):
        if getattr(args, flag) is not None and not args.style_image:
            p.error(f"--{flag} goes with --style_image (arbitrary-style models)")

    def run() -> int:
        apply_max_image_pixels(args.max_image_pixels)
        def load() -> Stylizer:  # after every check of the arguments and files
            precision_note(args.device, args.precision, args.runtime, args.model_file)
            return _choose_style(args, _load(args, device=args.device, precision=args.precision,
                                             compile=args.compile, loss_model_file=args.loss_model_file,
                                             runtime=args.runtime))

        if args.list_styles:
            return _list_styles(_load(args, device="cpu", loss_model_file=args.loss_model_file))
        # A FIFO, a device (a link to /dev/zero) or a socket is refused here, before anything
        # opens it: reading one hangs or never ends.
        src = input_path(args.image_file, "--image_file") if args.image_file else \
            input_file(args.video_file, "--video_file")
        options = _options(args)
        _onnx_has_its_encoder(args)
        args.style_specs = _style_image_specs(args.style_image) if args.style_image else []
        if args.alpha is not None and not 0 <= args.alpha <= 1:
            raise DataError(f"--alpha must be between 0 and 1, got {args.alpha}")
        if args.video_file:
            dest = _video_output(args, src)
            return _video(args, load(), src, dest, options)
        if src.is_file():
            dest, out_dir = _single_output(args, src)  # checked before the model loads
            print(f"Saved {_stylize_file(load(), src, dest, out_dir, options, sheet=args.style_sheet)}")
            return 0
        files = list_images(src, recursive=False)
        if not files:
            raise DataError(f"--image_file folder {src} has no images ({', '.join(IMAGE_EXTENSIONS)}).")
        out_dir = _folder_output(args)
        return _folder(load(), files, out_dir, options, sheet=args.style_sheet)

    return run_command(run)
