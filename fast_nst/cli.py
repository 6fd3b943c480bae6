"""Command lines behind ``train.py`` and ``eval.py``; each ``*_main(argv)`` returns an exit code.

User errors (:class:`FastNSTError`) print one ``error: ...`` line on stderr and exit 1 (or the
code they carry); they never show a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from .config import load_config
from .errors import DataError, FastNSTError
from .images import IMAGE_EXTENSIONS, list_images, open_image, save_image, set_max_image_pixels

DEFAULT_OUTPUT_DIR = "generated"


def _run(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except FastNSTError as e:
        print(f"error: {e}", file=sys.stderr)
        return int(getattr(e, "exit_code", 1))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


# ---- train.py --------------------------------------------------------------------------------

def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
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


def train_main(argv: Optional[Sequence[str]] = None) -> int:
    args = train_parser().parse_args(argv)

    def run() -> int:
        from .training import do_train  # heavy imports after argument parsing

        cfg = load_config(args.config, args.overrides)
        do_train(cfg, resume=args.resume, overwrite=args.overwrite, config_file=args.config,
                 progress=not args.no_progress)
        return 0

    return _run(run)


# ---- eval.py ---------------------------------------------------------------------------------

def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="eval.py",
        description="Stylize an image (or every image in a folder) with a trained model.",
        epilog="Example: python eval.py --model_file models/wave/wave.pth --image_file photo.jpg",
    )
    p.add_argument("--model_file", required=True, help="checkpoint written by train.py (.pth)")
    p.add_argument("--image_file", required=True, help="an image, or a folder of images")
    p.add_argument("--output_file", help=f"output image (or folder, for a folder input); default "
                   f"{DEFAULT_OUTPUT_DIR}/<image stem>_<style>.jpg")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="arithmetic for the network (bf16/fp16: autocast; fastest on GPUs)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (pays off for folders and video, not one image)")
    p.add_argument("--max_image_pixels", type=int, default=None, metavar="N",
                   help="Pillow's decompression-bomb limit in pixels (default Pillow's, ~89M); 0 removes it")
    return p


def _output_name(src: Path, style: str, has_alpha: bool) -> str:
    # JPEG cannot hold alpha: transparent inputs default to PNG.
    return f"{src.stem}_{style}{'.png' if has_alpha else '.jpg'}"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _stylize_file(stylizer, src: Path, dest: Optional[Path], out_dir: Path) -> Path:
    img = open_image(src)
    if dest is None:
        dest = out_dir / _output_name(src, stylizer.name, img.mode == "RGBA")
    if _same_file(src, dest):
        raise DataError(f"Output {dest} is the input image; refusing to overwrite it. "
                        "Choose another --output_file.")
    save_image(stylizer.stylize(img), dest)
    return dest


def eval_main(argv: Optional[Sequence[str]] = None) -> int:
    args = eval_parser().parse_args(argv)

    def run() -> int:
        from .stylize import load_stylizer

        if args.max_image_pixels is not None:
            set_max_image_pixels(args.max_image_pixels)
        src = Path(args.image_file)
        if not src.exists():
            raise DataError(f"--image_file {src} does not exist.")
        stylizer = load_stylizer(args.model_file, device=args.device, precision=args.precision,
                                 compile=args.compile)
        if src.is_file():
            dest = Path(args.output_file) if args.output_file else None
            if dest is not None and dest.is_dir():
                raise DataError(f"--output_file {dest} is a folder; give a file name like out.jpg.")
            written = _stylize_file(stylizer, src, dest, Path(DEFAULT_OUTPUT_DIR))
            print(f"Saved {written}")
            return 0
        files = list_images(src, recursive=False)
        if not files:
            raise DataError(f"--image_file folder {src} has no images ({', '.join(IMAGE_EXTENSIONS)}).")
        out_dir = Path(args.output_file or DEFAULT_OUTPUT_DIR)
        if out_dir.exists() and not out_dir.is_dir():
            raise DataError(f"--output_file {out_dir} is a file; for a folder input give a folder.")
        failed = 0
        for f in files:
            try:
                written = _stylize_file(stylizer, f, None, out_dir)
                print(f"Saved {written}")
            except DataError as e:
                failed += 1
                print(f"error: {e} (skipped)", file=sys.stderr)
        done = len(files) - failed
        print(f"Stylized {done} of {len(files)} images into {out_dir}"
              + (f"; {failed} failed (see errors above)" if failed else ""))
        return 1 if failed else 0

    return _run(run)
