"""``python -m fast_nst.download LOSS_NETWORK|coco|pretrained|adain`` (also ``fast-nst-download``):
the weights of a loss network of :data:`fast_nst.lossnet.LOSS_NETWORKS` (vgg16, vgg16_caffe...),
the training photos, or ready-made models (pytorch/examples' styles; the published AdaIN model)."""

from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path
from typing import Optional, Sequence

from ..core.files import check_output_file, check_output_folder
from ..io.adain_pretrained import ADAIN_DECODER_FILE, download_adain
from ..io.pretrained import PRETRAINED_NAMES, PRETRAINED_URL, PRETRAINED_ZIP, download_pretrained
from ..lossnet import LOSS_NETWORKS
from ..lossnet.vgg import download_weights
from ..nets.adain_port import DECODER_URL, ENCODER_FILE, ENCODER_URL, PORT
from ..training.coco import COCO_SPLITS, COCO_URL, download_coco
from . import new_parser, run_command

__all__ = ["main", "parser"]

# Width of the target names' column in the help: the longest name and two spaces.
_TARGETS = [*LOSS_NETWORKS, "coco", "pretrained", "adain"]
_COLUMN = max(len(n) for n in _TARGETS) + 2


def _target(name: str, text: str, lines: Sequence[str] = ()) -> str:
    """One target of the help: its name, ``text`` wrapped beside it, then ``lines`` below."""
    indent = " " * (2 + _COLUMN)
    # "\0" glues words a line break must not separate ("528 MB", "python -m ..."); 94 columns fit
    # the rest of the hand-written help.
    for glued in ("python -m fast_nst.optimize", " MB", " GB"):
        text = text.replace(glued, glued.replace(" ", "\0"))
    head = textwrap.fill(text, 94, initial_indent=f"  {name:<{_COLUMN}}", subsequent_indent=indent,
                         break_on_hyphens=False).replace("\0", " ")
    return "\n".join([head, *(indent + "  " + line for line in lines)])


def _loss_network_targets() -> str:
    """The help's targets for every row of the loss-network registry, generated from it."""
    return "\n".join(
        _target(name, f"{entry.summary}: loss_model {name} of train.py and python -m fast_nst.optimize "
                      f"({entry.convention.name} input convention)",
                [f"from {entry.url}", f"to   {entry.file}"])
        for name, entry in LOSS_NETWORKS.items())


def parser() -> argparse.ArgumentParser:
    names = ", ".join(LOSS_NETWORKS)
    default_files = ", ".join(entry.file for entry in LOSS_NETWORKS.values())
    p = new_parser(
        "python -m fast_nst.download",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"""\
Download the loss-network weights and photos that training needs, or ready-made models to
stylize with, no training needed. Default destinations are relative to the current directory.

targets:
{_loss_network_targets()}
{_target("coco", "COCO train2014 (13 GB zip, 82,783 photos): the training photos; with --split val, "
                 "val2014 (6 GB, 40,504 photos) for val_dir",
         [f"from {COCO_URL}", "to   data/train2014.zip, unpacked into data/train2014/ (zip then deleted)"])}
{_target("pretrained", "pytorch/examples' published fast_neural_style models, ready for inference "
                       f"({', '.join(PRETRAINED_NAMES)}; python eval.py --model_file models/candy/candy.pth)",
         [f"from {PRETRAINED_URL}", f"to   data/{PRETRAINED_ZIP} (kept),",
          "     converted into models/<name>/<name>.pth"])}
{_target("adain", f"the published AdaIN model of {PORT} (any painting as the style: python eval.py "
                  "--model_file models/adain/adain.pth --image_file photo.jpg --style_image painting.jpg)",
         [f"from {ENCODER_URL}", f"to   {ENCODER_FILE}", f"from {DECODER_URL}", f"to   {ADAIN_DECODER_FILE},",
          "     converted into models/adain/adain.pth"])}

A file already at a "to" path of a loss network or adain is checked against its published
checksum ("Checking FILE") and downloaded again when it does not match; the old file is then
moved aside to FILE.mismatch. An interrupted download resumes from <file>.part when run again. Without internet here,
download the URL on another machine and put the file at the "to" path; for coco and
pretrained, then run the command again: it uses the zip there instead of downloading; for adain,
it converts the two files it finds there.""",
        epilog="Example: python -m fast_nst.download vgg16",
    )
    p.add_argument("what", choices=_TARGETS,
                   help=f"{names}: loss-network weights (training, optimize); coco: training "
                        "photos; pretrained, adain: ready-made models for inference (see targets above)")
    p.add_argument("--dest", help=f"override the destination: {names}: the weights file "
                   f"(default {default_files}), or a folder (one that exists, or ending in /) that gets "
                   "it under that name; coco: the folder that gets "
                   "train2014.zip and train2014/ (default data); pretrained: the folder that gets "
                   "<name>/<name>.pth (default models; the zip still goes to data/); adain: the folder that "
                   "gets adain/adain.pth (default models; the weights still go to pretrained/)")
    p.add_argument("--keep_zip", action="store_true",
                   help="coco: keep the downloaded zip (train2014.zip or val2014.zip) after unpacking it")
    p.add_argument("--split", choices=list(COCO_SPLITS), default="train",
                   help="coco: train (default, for train_dir) or val (val2014, for val_dir)")
    return p


def _identity(path: Path) -> Optional[tuple[int, int, int]]:
    """(device, inode, mtime) of the file at ``path``, None when there is none: the same value
    after a download means the file already there was kept, not replaced."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


def _weights_dest(name: str, dest: Optional[str]) -> Path:
    """Where loss network ``name``'s weights go: ``--dest`` (default: the registry's file), and
    inside it under the registry's file name when it is a folder, as ``cp`` would put them (one
    that exists, or is written with a trailing slash: ``--dest weights/``); checked before any
    download, so a device or a pipe is never replaced by the file."""
    default = Path(LOSS_NETWORKS[name].file)
    if dest is None:
        return default
    path = Path(dest)
    if dest.endswith(("/", os.sep)) or path.is_dir():
        path = path / default.name
    check_output_file(path, "--dest")
    return path


def _folder_dest(dest: Optional[str], default: str) -> str:
    """The folder coco, pretrained or adain writes into: ``--dest`` (else ``default``), checked
    before any download as a loss network's file is: a file, a device or a pipe there failed
    only after the download (pretrained, adain: tens to hundreds of MB), or for coco in an
    error about the zip's path inside it."""
    if dest is None:
        return default
    check_output_folder(Path(dest), "--dest")
    return dest


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)

    def run() -> int:
        if args.what in LOSS_NETWORKS:
            dest = _weights_dest(args.what, args.dest)
            before = _identity(dest)
            paths = [download_weights(args.what, dest)]
            if before is not None and _identity(dest) == before:
                # The file was there and was kept: saying "Saved" would claim a download.
                checked = "matches the published checksum" if LOSS_NETWORKS[args.what].sha256 else \
                    "not checked: no published checksum"
                print(f"Already there: {dest} ({checked})")
                return 0
        elif args.what == "coco":
            paths = [download_coco(_folder_dest(args.dest, "data"), keep_zip=args.keep_zip, split=args.split)]
        elif args.what == "adain":
            paths = [download_adain(_folder_dest(args.dest, "models"))]
        else:
            paths = download_pretrained(_folder_dest(args.dest, "models"))
        for path in paths:
            print(f"Saved {path}")
        if args.what == "pretrained":
            print(f"Try: python eval.py --model_file {paths[0]} --image_file photo.jpg")
        elif args.what == "adain":
            print(f"Try: python eval.py --model_file {paths[0]} --image_file photo.jpg --style_image painting.jpg")
        return 0

    return run_command(run)

