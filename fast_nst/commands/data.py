"""``python -m fast_nst.data prepare DIR --image_size 256`` (also ``fast-nst-data``): write the
pre-resized training cache that train.py then uses automatically."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from ..training.cache import prepare_cache
from ..training.data import usable_cores
from . import add_max_image_pixels, apply_max_image_pixels, new_parser, run_command

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = new_parser(
        "python -m fast_nst.data",
        description="Pre-resize a training folder into a memory-mapped cache that train.py uses "
                    "automatically (same resize_to, or image_size when resize_to is null; same files) "
                    "for faster repeated runs.")
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write the cache for DIR")
    prep.add_argument("train_dir")
    prep.add_argument("--image_size", type=int, default=256,
                      help="the shorter side training resizes photos to: the config's resize_to, or its "
                           "image_size when resize_to is null (default 256, image_size's default)")
    prep.add_argument("--num_workers", type=int, default=None,
                      help=f"decoding processes (default: one per usable CPU core, {usable_cores()} here)")
    add_max_image_pixels(prep)  # a photo over the limit is skipped with a line that advises it
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)

    def run() -> int:
        apply_max_image_pixels(args.max_image_pixels)
        prepare_cache(args.train_dir, args.image_size, args.num_workers)
        return 0

    return run_command(run)
