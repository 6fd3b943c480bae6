"""``python -m fast_nst.evaluate --model_file M [M2 ...] --images DIR --output report/`` (also
``fast-nst-evaluate``): a quality report comparing models on a folder of photos."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from ..lossnet import LOSS_NETWORKS
from ..report import DEFAULT_MAX_SIZE, MAX_MODELS, MAX_PHOTOS, MAX_SIZE_LIMIT, write_report
from . import add_max_image_pixels, apply_max_image_pixels, new_parser, run_command

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = new_parser(
        "python -m fast_nst.evaluate",
        description="Stylize a folder of photos with one or more models and write a report: "
                    "index.html (opens from the file system) with every stylization, the content "
                    "and style loss of each (measured with the loss network at the model's own "
                    "layers and weights), the stylize times and per-model means; sheet.jpg, a "
                    "contact sheet with one row per photo and one column per model.",
        epilog="Example: python -m fast_nst.evaluate --model_file models/wave/wave.pth "
               "models/udnie/udnie.pth --images photos/ --output report/",
    )
    p.add_argument("--model_file", nargs="+", required=True, metavar="MODEL",
                   help=f"models to compare (at most {MAX_MODELS}): .pth files, run folders "
                        "(models/wave), training checkpoints, .safetensors and .onnx exports, "
                        "pytorch/examples models, hf://OWNER/REPO/FILE[@REVISION] Hub files, https:// URLs")
    p.add_argument("--images", required=True, metavar="DIR",
                   help=f"folder of photos (not its subfolders; the first {MAX_PHOTOS} by name)")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="folder to write the report into: a new or empty one, or an earlier "
                   "report (replaced); a folder holding other files or the inputs is refused")
    p.add_argument("--style", metavar="IMAGE", nargs="+",
                   help="the style image every model's style loss is measured against and the "
                        "report shows, or one per --model_file in the same order (default: none, "
                        "no style loss; a path named in a model file is never used). Required for "
                        "arbitrary-style models (model_type adain, .pth or .onnx): the style they "
                        "stylize with (at their config's style_size) and the one their style loss is "
                        "measured against (their AdaIN training loss, feature means and standard "
                        "deviations, at the model's style layers; not comparable with a Gram-trained "
                        "model's); their content loss is against the AdaIN target at the encoder's "
                        "layer, as in their training")
    p.add_argument("--loss_model", choices=list(LOSS_NETWORKS), default=None,
                   help="loss network to measure with (default: the one the models were trained with)")
    p.add_argument("--loss_model_file", metavar="FILE",
                   help=f"its weights file, the one the models were trained with (default: "
                        f"{LOSS_NETWORKS['vgg16'].file} for vgg16, downloaded there when missing; a path "
                        "named in a model file is never used); also the encoder weights of "
                        "arbitrary-style models, checked against the checksum they record")
    p.add_argument("--loss_model_weights", default="imagenet", choices=["imagenet", "random"],
                   help="imagenet (default): the loss network's published ImageNet weights; random: seeded "
                        "random weights, for tests only (the losses then measure nothing)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--max_size", type=int, default=DEFAULT_MAX_SIZE, metavar="N",
                   help=f"stylize at longest side N px (default {DEFAULT_MAX_SIZE}, at most "
                        f"{MAX_SIZE_LIMIT}; photos are never enlarged)")
    p.add_argument("--stability", action="store_true",
                   help="also measure temporal stability (video flicker): each photo becomes a short "
                        "clip of known motion, stylized per frame and with stable statistics; the "
                        "warping error and change ratio go into the page and results.json (a photo too "
                        "small for a clip is left out of them, with a warning)")
    add_max_image_pixels(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)

    def run() -> int:
        apply_max_image_pixels(args.max_image_pixels)
        page = write_report(args.model_file, args.images, args.output, style=args.style,
                            loss_model=args.loss_model, loss_model_file=args.loss_model_file,
                            loss_model_weights=args.loss_model_weights, device=args.device,
                            max_size=args.max_size, stability=args.stability)
        print(f"Wrote {page} and {page.parent / 'sheet.jpg'}")
        return 0

    return run_command(run)
