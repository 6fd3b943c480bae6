"""``python -m fast_nst.optimize --content photo.jpg --style wave.jpg --output out.jpg`` (also
``fast-nst-optimize``): Gatys et al.'s optimisation-based style transfer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..core.device import resolve_device, slow_training_note
from ..core.errors import DataError
from ..core.files import check_output_file, probe_writable
from ..core.images import IMAGE_EXTENSIONS, save_image
from ..gatys import (DEFAULT_CONTENT_WEIGHT, DEFAULT_IMAGE_SIZE, DEFAULT_STEPS, DEFAULT_STYLE_WEIGHT,
                     DEFAULT_TV_WEIGHT, OPTIMIZERS, PRECISIONS, PRESETS, optimize)
from ..lossnet import LOSS_NETWORKS
from . import add_max_image_pixels, apply_max_image_pixels, CommandParser, new_parser, run_command

__all__ = ["main", "parser"]


class _Parser(CommandParser):
    """argparse that reports mistakes as one ``error: ...`` line and exit status 1."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


def _names(text: str) -> list[str]:
    return [n for n in text.replace(",", " ").split() if n]


def parser() -> argparse.ArgumentParser:
    p = new_parser(
        "python -m fast_nst.optimize", _Parser,
        description="Optimisation-based style transfer (Gatys et al. 2016): slow (minutes), no "
                    "training, any style image.",
        epilog="Example: python -m fast_nst.optimize --content photo.jpg --style wave.jpg "
               "--output out.jpg --image_size 512 --steps 300",
    )
    p.add_argument("--content", required=True, help="content photo")
    p.add_argument("--style", required=True, help="style image")
    p.add_argument("--output", required=True, help="output image (.jpg, .png, .webp, .bmp)")
    p.add_argument("--loss_model", default="vgg16", choices=list(LOSS_NETWORKS),
                   help="loss network (default vgg16)")
    p.add_argument("--loss_model_weights", default="imagenet", choices=["imagenet", "random"],
                   help="imagenet (default): the loss network's published ImageNet weights; random: seeded "
                        "random weights, for smoke tests only")
    p.add_argument("--loss_model_file", help="weights file (default: the loss network's, "
                   f"{LOSS_NETWORKS['vgg16'].file} for vgg16; downloaded there when missing)")
    p.add_argument("--preset", default="gatys", choices=list(PRESETS),
                   help="layers: gatys (default; content relu4_2, style relu1_1..relu5_1) or "
                        "johnson (content relu2_2, style relu1_2, relu2_2, relu3_3, relu4_3)")
    p.add_argument("--content_layers", type=_names, metavar="L1,L2",
                   help="content layers (override the preset); '' for none")
    p.add_argument("--style_layers", type=_names, metavar="L1,L2", help="style layers (override the preset)")
    p.add_argument("--style_layer_weights", metavar="W1,W2",
                   help="one weight per style layer (default all 1)")
    p.add_argument("--optimizer", default="lbfgs", choices=list(OPTIMIZERS), help="default lbfgs")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"loss evaluations per scale (default {DEFAULT_STEPS})")
    p.add_argument("--lr", type=float, help="learning rate (default 1 for lbfgs, 0.02 for adam)")
    p.add_argument("--image_size", type=int, default=DEFAULT_IMAGE_SIZE,
                   help=f"longest side of the output in px (default {DEFAULT_IMAGE_SIZE})")
    p.add_argument("--style_size", type=int, help="longest side of the style image (default: image_size)")
    p.add_argument("--init", default="content", metavar="content|style|noise|MODEL.pth",
                   help="starting image (default content); a trained fast-nst model starts from its "
                        "stylization")
    p.add_argument("--content_weight", type=float, default=DEFAULT_CONTENT_WEIGHT,
                   help=f"default {DEFAULT_CONTENT_WEIGHT:g}")
    p.add_argument("--style_weight", type=float, default=DEFAULT_STYLE_WEIGHT,
                   help=f"default {DEFAULT_STYLE_WEIGHT:g}")
    p.add_argument("--tv_weight", type=float, default=DEFAULT_TV_WEIGHT, help=f"default {DEFAULT_TV_WEIGHT:g}")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--preserve_color", action="store_true", help="keep the content photo's colours")
    p.add_argument("--save_every", type=int, default=0, metavar="K",
                   help="also save every K-th step's image as <output>_step<K>.<ext>")
    p.add_argument("--scales", type=int, default=1, metavar="N",
                   help="multi-scale: optimise at 1/2^(N-1) .. 1/2, 1 of --image_size, upsampling between")
    p.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                   help="bf16: autocast for the VGG forward (Gram matrices stay fp32)")
    p.add_argument("--seed", type=int, default=0, help="seed for noise init and random weights")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_max_image_pixels(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (1): a return code, not an exception
        return int(e.code or 0)

    def run() -> int:
        apply_max_image_pixels(args.max_image_pixels)
        output = Path(args.output)
        if output.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(f"--output {output}: unsupported extension {output.suffix!r}; use one of "
                            f"{', '.join(IMAGE_EXTENSIONS)}")
        if output.is_dir():
            raise DataError(f"--output {output} is a folder; give a file name like out.jpg.")
        for flag, path in (("--content", args.content), ("--style", args.style)):
            if not Path(path).exists():
                raise DataError(f"{flag} {path} does not exist.")
            if Path(path).resolve() == output.resolve():
                raise DataError(f"--output {output} is the {flag[2:]} image; refusing to overwrite it.")
        # Found now, not after minutes of optimisation.
        check_output_file(output, "--output", [Path(args.content), Path(args.style)])
        probe_writable(output.parent, "the output folder", "Choose a writable --output.")
        weights = None
        if args.style_layer_weights is not None:
            try:
                weights = [float(w) for w in _names(args.style_layer_weights)]
            except ValueError:
                raise DataError(f"--style_layer_weights must be numbers separated by commas, got "
                                f"{args.style_layer_weights!r}") from None
        slow = slow_training_note(resolve_device(args.device), args.precision, "optimizes")
        if slow:
            print(f"warning: {slow}", file=sys.stderr)
        image = optimize(
            args.content, args.style, loss_model=args.loss_model,
            loss_model_weights=args.loss_model_weights, loss_model_file=args.loss_model_file,
            preset=args.preset, content_layers=args.content_layers, style_layers=args.style_layers,
            style_layer_weights=weights, optimizer=args.optimizer, steps=args.steps, lr=args.lr,
            image_size=args.image_size, style_size=args.style_size, init=args.init,
            content_weight=args.content_weight, style_weight=args.style_weight,
            tv_weight=args.tv_weight, device=args.device, preserve_color=args.preserve_color,
            save_every=args.save_every, output=output, scales=args.scales,
            precision=args.precision, seed=args.seed, progress=not args.no_progress,
        )
        save_image(image, output)
        print(f"Saved {output}")
        return 0

    return run_command(run)

