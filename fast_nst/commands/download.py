"""``python -m fast_nst.download vgg16|vgg19|coco|pretrained`` (also ``fast-nst-download``):
the loss networks' weights, the training photos, or ready-made models."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from ..io.pretrained import PRETRAINED_NAMES, PRETRAINED_URL, PRETRAINED_ZIP, download_pretrained
from ..lossnet import LOSS_NETWORKS
from ..lossnet.vgg import download_weights
from ..training.coco import COCO_URL, download_coco
from . import prog, run_command

__all__ = ["main", "parser"]

VGG16, VGG19 = LOSS_NETWORKS["vgg16"], LOSS_NETWORKS["vgg19"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog("python -m fast_nst.download"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"""\
Download the loss-network weights and photos that training needs, or ready-made models to
stylize with, no training needed. Default destinations are relative to the current directory.

targets:
  vgg16       torchvision's ImageNet VGG16 weights (528 MB): the loss network of train.py
              and python -m fast_nst.optimize
                from {VGG16.url}
                to   {VGG16.file}
  vgg19       the same for VGG19 (548 MB), for loss_model vgg19
                from {VGG19.url}
                to   {VGG19.file}
  coco        COCO train2014 (13 GB zip, 82,783 photos): the training photos
                from {COCO_URL}
                to   data/train2014.zip, unpacked into data/train2014/ (zip then deleted)
  pretrained  pytorch/examples' published fast_neural_style models, ready for inference
              ({', '.join(PRETRAINED_NAMES)}; python eval.py --model_file models/candy/candy.pth)
                from {PRETRAINED_URL}
                to   data/{PRETRAINED_ZIP} (kept),
                     converted into models/<name>/<name>.pth

An interrupted download resumes from <file>.part when run again. Without internet here,
download the URL on another machine and put the file at the "to" path; for coco and
pretrained, then run the command again: it uses the zip there instead of downloading.""",
        epilog="Example: python -m fast_nst.download vgg16",
    )
    p.add_argument("what", choices=[*LOSS_NETWORKS, "coco", "pretrained"],
                   help="vgg16, vgg19: loss-network weights (training, optimize); coco: training "
                        "photos; pretrained: ready-made models for inference (see targets above)")
    p.add_argument("--dest", help=f"override the destination: vgg16, vgg19: the weights file "
                   f"(default {VGG16.file}, {VGG19.file}); coco: the folder that gets "
                   "train2014.zip and train2014/ (default data); pretrained: the folder that gets "
                   "<name>/<name>.pth (default models; the zip still goes to data/)")
    p.add_argument("--keep_zip", action="store_true",
                   help="coco: keep train2014.zip after unpacking it")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)

    def run() -> int:
        if args.what in LOSS_NETWORKS:
            paths = [download_weights(args.what, args.dest)]
        elif args.what == "coco":
            paths = [download_coco(args.dest or "data", keep_zip=args.keep_zip)]
        else:
            paths = download_pretrained(args.dest or "models")
        for path in paths:
            print(f"Saved {path}")
        if args.what == "pretrained":
            print(f"Try: python eval.py --model_file {paths[0]} --image_file photo.jpg")
        return 0

    return run_command(run)

