"""``python -m fast_nst.convert IN.pth OUT.pth --from pytorch-examples`` (also
``fast-nst-convert``): convert another project's model into a fast-nst checkpoint."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from ..io.convert import FORMATS, convert_file
from . import new_parser, run_command

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = new_parser("python -m fast_nst.convert",
                                description="Convert another project's model into a fast-nst checkpoint.")
    p.add_argument("src", help="model file to convert: a path, an https URL (https://HOST/PATH/NAME.pth"
                               "[#sha256=HEX]) or a Hugging Face Hub reference (hf://OWNER/REPO/FILE), fetched "
                               "once into a cache as eval.py --model_file fetches one")
    p.add_argument("dest", help="fast-nst model to write: .pth or .pt (a checkpoint), or .safetensors "
                                "(needs the safetensors package); for ONNX, convert to .pth, then use "
                                "python -m fast_nst.export")
    p.add_argument("--from", dest="fmt", default=FORMATS[0], choices=FORMATS,
                   help=f"layout of SRC (default {FORMATS[0]})")
    p.add_argument("--naming", help="style name stored in the checkpoint: letters, digits, '-', '_' (default: "
                                    "DEST's stem made a plain name: 'my model.pth' -> my_model)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)

    def run() -> int:
        print(f"Saved {convert_file(args.src, args.dest, args.fmt, args.naming)}")
        return 0

    return run_command(run)
