"""Command lines behind ``train.py`` and ``eval.py``; each ``*_main(argv)`` returns an exit code.

User errors (:class:`FastNSTError`) print one ``error: ...`` line on stderr and exit 1 (or the
code they carry); they never show a traceback.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

from .config import load_config
from .errors import DataError, FastNSTError
from .images import IMAGE_EXTENSIONS, list_images, open_image, save_image, set_max_image_pixels

DEFAULT_OUTPUT_DIR = "generated"


def _short_warning(message, category, filename, lineno, line=None) -> str:
    # Users need the message, not our source line: "warning: ..." like the rest of the output.
    return f"warning: {message}\n"


def run_command(fn: Callable[[], int]) -> int:
    """Run a command's body: a :class:`FastNSTError` becomes one ``error: ...`` line and its exit
    code, Ctrl-C ``error: interrupted`` (130), warnings one ``warning: ...`` line each."""
    from .device import check_versions

    previous = warnings.formatwarning
    warnings.formatwarning = _short_warning
    try:
        check_versions()
        return fn()
    except FastNSTError as e:
        if str(e):  # empty on torchrun ranks that leave the explaining to rank 0
            print(f"error: {e}", file=sys.stderr)
        return int(getattr(e, "exit_code", 1))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = previous


def _started_as() -> str:
    """How this process was started: sys.argv[0] ("" for in-process callers)."""
    return sys.argv[0] if sys.argv and sys.argv[0] else ""


def _prog(script: str) -> str:
    """``script`` (train.py, eval.py), or the console script's name when started as one."""
    name = Path(_started_as()).name
    return name if name.startswith("fast-nst-") else script


# ---- train.py --------------------------------------------------------------------------------

def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_prog("train.py"),
        description="Train a fast style transfer network (Johnson et al. 2016) for one style.",
        epilog="Example: python train.py -c conf/wave.yml --set max_steps=1000 --set batch_size=8",
    )
    p.add_argument("-c", "--config", required=True, help="YAML config, e.g. conf/wave.yml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. --set lr=5e-4")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue the run from its newest checkpoint, or from CHECKPOINT")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh even if the run folder holds checkpoints (deletes them)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def train_command(config: str, overrides: Sequence[str]) -> str:
    """The command that re-runs this training (for "--resume" hints): how train.py was started,
    the config and every --set, quoted for the shell."""
    script = _started_as()
    start = _prog("train.py")  # the installed console script's name, if started as one
    if start == "train.py":
        # train.py as given (a path from elsewhere too); in-process callers (tests, notebooks):
        # the documented form
        start = f"python {shlex.quote(script)}" if Path(script).name == "train.py" else "python train.py"
    sets = "".join(f" --set {shlex.quote(o)}" for o in overrides)
    return f"{start} -c {shlex.quote(config)}{sets}"


def train_main(argv: Optional[Sequence[str]] = None) -> int:
    args = train_parser().parse_args(argv)

    def run() -> int:
        cfg = load_config(args.config, args.overrides)  # a config typo fails before torch loads
        from .training import do_train

        do_train(cfg, resume=args.resume, overwrite=args.overwrite, config_file=args.config,
                 progress=not args.no_progress, command=train_command(args.config, args.overrides))
        return 0

    return run_command(run)


# ---- eval.py ---------------------------------------------------------------------------------

def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_prog("eval.py"),
        description="Stylize an image (or every image in a folder) with a trained model.",
        epilog="Example: python eval.py --model_file models/wave/wave.pth --image_file photo.jpg",
    )
    p.add_argument("--model_file", required=True,
                   help="a model: train.py's final .pth or a training checkpoint from its "
                        "checkpoints/ folder, an .onnx export, or a pytorch/examples .pth")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image_file", help="an image, or a folder of images")
    src.add_argument("--video_file", help="a video: stylized frame by frame, keeping frame rate and "
                     "audio (needs the optional extra: pip install -e .[video])")
    p.add_argument("--output_file", help=f"output image, or a folder to put it in; for a folder "
                   f"input, the output folder; default {DEFAULT_OUTPUT_DIR}/<image stem>_<style>.jpg "
                   "(.png for images with transparency)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--batch_size", type=int, default=4, metavar="N",
                   help="video frames per forward pass (default 4)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="arithmetic for the network (bf16/fp16: autocast; fastest on GPUs)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (pays off for folders and video, not one image)")
    p.add_argument("--max_size", type=int, metavar="N", help="shrink so the longest side is at most N first")
    p.add_argument("--scale", type=float, metavar="F", help="resize by factor F first (0.5: half size)")
    p.add_argument("--keep_size", action="store_true",
                   help="resize the result back to the input's size after --max_size/--scale")
    p.add_argument("--tile_size", default="auto", metavar="N|auto|0",
                   help="stylize in N x N tiles (bounded memory for huge images; N > 128 + 2 x "
                        "overlap, e.g. 512); auto (default) tiles only when the image would not "
                        "fit in memory; 0 never tiles")
    p.add_argument("--overlap", type=int, default=32, metavar="PX",
                   help="blended band between tiles (default 32); each tile also sees 64 px of "
                        "context beyond its kept core, more than the network's 54 px reach")
    p.add_argument("--preserve_color", action="store_true",
                   help="keep the photo's colours: transfer only the style's brightness pattern")
    p.add_argument("--strength", type=float, default=1.0, metavar="A",
                   help="blend: 0 returns the photo, 1 (default) the full stylization")
    p.add_argument("--max_image_pixels", type=int, default=None, metavar="N",
                   help="Pillow's decompression-bomb limit in pixels (default Pillow's, ~89M); 0 removes it")
    return p


def _output_name(stem: str, style: str, has_alpha: bool) -> str:
    # JPEG cannot hold alpha: transparent inputs default to PNG.
    return f"{stem}_{style}{'.png' if has_alpha else '.jpg'}"


def _output_stems(files: Sequence[Path]) -> dict[Path, str]:
    """Stem of each input's output name; inputs sharing a stem (x.jpg, x.png) keep their suffix
    in it (x_jpg, x_png) so no result overwrites another."""
    counts: dict[str, int] = {}
    for f in files:
        counts[f.stem.lower()] = counts.get(f.stem.lower(), 0) + 1
    return {f: f"{f.stem}_{f.suffix[1:].lower()}" if counts[f.stem.lower()] > 1 else f.stem for f in files}


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (an output that would overwrite its input)."""
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _stylize_file(stylizer, src: Path, dest: Optional[Path], out_dir: Path, options: dict,
                  stem: Optional[str] = None) -> Path:
    img = open_image(src)
    if dest is None:
        dest = out_dir / _output_name(stem or src.stem, stylizer.name, img.mode == "RGBA")
    if same_file(src, dest):
        raise DataError(f"Output {dest} is the input image; refusing to overwrite it. "
                        "Choose another --output_file.")
    save_image(stylizer.stylize(img, **options), dest)
    return dest


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


def eval_main(argv: Optional[Sequence[str]] = None) -> int:
    args = eval_parser().parse_args(argv)

    def run() -> int:
        from .stylize import load_stylizer
        from .tiling import tile_core

        if args.max_image_pixels is not None:
            if args.max_image_pixels < 0:
                raise DataError(f"--max_image_pixels must be >= 0 (0 removes the limit), got {args.max_image_pixels}")
            set_max_image_pixels(args.max_image_pixels)
        src = Path(args.image_file or args.video_file)
        flag = "--image_file" if args.image_file else "--video_file"
        if not src.exists():
            raise DataError(f"{flag} {src} does not exist.")
        options = dict(tile_size=_tile_option(args.tile_size), overlap=args.overlap,
                       preserve_color=args.preserve_color, strength=args.strength,
                       max_size=args.max_size, scale=args.scale, keep_size=args.keep_size)
        if not 0 <= args.strength <= 1:
            raise DataError(f"--strength must be between 0 and 1, got {args.strength}")
        if args.overlap < 0:
            raise DataError(f"--overlap must be >= 0, got {args.overlap}")
        tile = options["tile_size"]
        if isinstance(tile, int):
            try:
                tile_core(tile, args.overlap)
            except ValueError as e:
                raise DataError(f"--tile_size: {e}") from None
        for flag, value in (("--scale", args.scale), ("--max_size", args.max_size)):
            if value is not None and value <= 0:
                raise DataError(f"{flag} must be > 0, got {value}")
        stylizer = load_stylizer(args.model_file, device=args.device, precision=args.precision,
                                 compile=args.compile)
        if args.video_file:
            from .video import stylize_video

            if args.batch_size <= 0:
                raise DataError(f"--batch_size must be > 0, got {args.batch_size}")
            dest = Path(args.output_file) if args.output_file else \
                Path(DEFAULT_OUTPUT_DIR) / f"{src.stem}_{stylizer.name}.mp4"
            if dest.suffix.lower() in IMAGE_EXTENSIONS + (".gif", ".tif", ".tiff"):
                raise DataError(f"--output_file {dest} names an image, but --video_file writes a "
                                "video: give a name ending in .mp4, .mov, .mkv or .webm.")
            if same_file(src, dest):
                raise DataError(f"Output {dest} is the input video; refusing to overwrite it.")
            stylize_video(stylizer, src, dest, batch_size=args.batch_size, options=options)
            print(f"Saved {dest}")
            return 0
        if src.is_file():
            dest = Path(args.output_file) if args.output_file else None
            out_dir = Path(DEFAULT_OUTPUT_DIR)
            if dest is not None and (dest.is_dir() or args.output_file.endswith(("/", os.sep))):
                out_dir, dest = dest, None  # a folder: the default name inside it
            written = _stylize_file(stylizer, src, dest, out_dir, options)
            print(f"Saved {written}")
            return 0
        files = list_images(src, recursive=False)
        if not files:
            raise DataError(f"--image_file folder {src} has no images ({', '.join(IMAGE_EXTENSIONS)}).")
        out_dir = Path(args.output_file or DEFAULT_OUTPUT_DIR)
        if out_dir.exists() and not out_dir.is_dir():
            raise DataError(f"--output_file {out_dir} is a file; for a folder input give a folder.")
        failed = 0
        stems = _output_stems(files)
        for f in files:
            try:
                written = _stylize_file(stylizer, f, None, out_dir, options, stems[f])
                print(f"Saved {written}")
            except DataError as e:
                failed += 1
                print(f"error: {e} (skipped)", file=sys.stderr)
        done = len(files) - failed
        print(f"Stylized {done} of {len(files)} images into {out_dir}"
              + (f"; {failed} failed (see errors above)" if failed else ""))
        return 1 if failed else 0

    # --max_image_pixels changes Pillow's process-wide limit: put it back for in-process callers.
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    try:
        return run_command(run)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
