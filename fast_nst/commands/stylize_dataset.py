"""``python -m fast_nst.stylize_dataset --images DIR --styles PAINTINGS --output OUT`` (also
``fast-nst-stylize-dataset``): a whole dataset stylized, each photo in a painting drawn for it
(Stylized-ImageNet), resumable, with a manifest; several processes or machines with torchrun."""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.distributed as dist

from ..core.device import DEVICE_CHOICES, resolve_device
from ..core.errors import FastNSTError
from ..core.untrusted import input_folder
from ..io.checkpoint import load_model
from ..io.hub import cached_copy_errors, local_model_file
from ..io.pretrained import require_downloaded
from ..nets.adain import AdaINNet, check_alpha
from ..stylize.base import DEFAULT_STYLE_SIZE
from ..stylize.dataset import (MANIFEST, OUTPUT_FORMATS, PaintingHashes, check_folders, check_run_settings,
                               merge_manifest, painting_list, paintings_digest, plan_dataset, remove_stale_temps,
                               save_run_settings)
from ..stylize.dataset_run import DatasetSettings, stylize_shard, weights_digest
from ..training.distributed import init_distributed, shutdown
from . import add_max_image_pixels, apply_max_image_pixels, new_parser, run_command

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = new_parser(
        "python -m fast_nst.stylize_dataset",
        description="Stylize every photo under --images (recursively) into the same folder tree under "
                    "--output, each in a painting drawn for it from --styles (an AdaIN model), or in one "
                    "of a multi-style model's styles. The draw depends only on --seed and the photo's "
                    f"path; OUTPUT/{MANIFEST} lists photo, painting, alpha, seed and output of every "
                    "file. Run it again to finish an interrupted run: finished files are kept.",
        epilog="Several processes: torchrun --nproc_per_node=N -m fast_nst.stylize_dataset ... "
               "(the same files as one process). See docs/datasets.md.")
    p.add_argument("--images", required=True, type=Path, help="folder of photos (subfolders kept)")
    p.add_argument("--output", required=True, type=Path, help="folder for the stylized tree and the manifest")
    p.add_argument("--model_file", default="models/adain/adain.pth",
                   help="a fast-nst model: a file, an https URL or an hf:// reference, as in eval.py (default "
                        "models/adain/adain.pth: python -m fast_nst.download adain)")
    p.add_argument("--loss_model_file", type=Path, metavar="FILE",
                   help="AdaIN models trained with fast-nst: the VGG weights file their encoder was trained "
                        "with, as in eval.py (default: the loss network's default path); checked against the "
                        "checksum the model records")
    p.add_argument("--styles", type=Path, help="AdaIN: folder of paintings (recursively) to draw from")
    p.add_argument("--style", help="multi-style model: always this style (default: one drawn per photo)")
    p.add_argument("--per_image", type=int, default=1,
                   help="stylizations per photo, each with its own draw (default 1; files name_0, name_1, ...)")
    p.add_argument("--alpha", type=float, help="AdaIN: 0 the photo's features, 1 (default) full style")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    p.add_argument("--style_size", type=int,
                   help=f"AdaIN: resize paintings to a longest side of N px first, as style_size means everywhere "
                        f"(default {DEFAULT_STYLE_SIZE}, as eval.py; the texture scale follows it)")
    p.add_argument("--max_size", type=int, default=0,
                   help="shrink photos larger than this to a longest side of N px (never enlarges; default 0: "
                        "keep every size)")
    p.add_argument("--format", choices=list(OUTPUT_FORMATS), default="jpg", help="output format (default jpg)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1-100 (default 95, as eval.py)")
    p.add_argument("--batch_size", type=int, default=8,
                   help="photos per chunk: the unit of batching and of sharding (default 8); changing it "
                        "may change the last bits of the outputs")
    p.add_argument("--workers", type=int, default=2, help="decoding processes per process (default 2)")
    p.add_argument("--device", default="auto", help=f"{DEVICE_CHOICES} (default auto; torchrun: one GPU per process)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads per process (default 1: results depend on the thread count, so keep "
                        "it fixed for bit-identical outputs; use one process per core instead)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_max_image_pixels(p)
    return p


def _check(args: argparse.Namespace) -> None:
    for flag, value, low, high in [("--per_image", args.per_image, 1, 1000), ("--style_size", args.style_size, 16, 8192),
                                   ("--max_size", args.max_size, 0, 65536), ("--quality", args.quality, 1, 100),
                                   ("--batch_size", args.batch_size, 1, 4096), ("--workers", args.workers, 0, 256),
                                   ("--threads", args.threads, 1, 1024), ("--seed", args.seed, 0, 2 ** 63 - 1)]:
        if value is not None and not low <= value <= high:
            raise FastNSTError(f"{flag} must be from {low} to {high}, got {value}")
    try:
        check_alpha(1.0 if args.alpha is None else args.alpha)
    except ValueError as e:
        raise FastNSTError(f"--alpha: {e}") from None


def _styles(args: argparse.Namespace, model) -> list[str]:
    """What the draw picks from: the paintings (AdaIN), the model's styles, or [""] (one style).
    Fills in --alpha and --style_size of an AdaIN model; refuses them for other models."""
    if isinstance(model, AdaINNet):
        if args.styles is None:
            raise FastNSTError(f"{args.model_file} is an arbitrary-style (AdaIN) model: give --styles PAINTINGS_DIR.")
        if args.style is not None:
            raise FastNSTError("--style names a style of a multi-style model; an AdaIN model draws from "
                               "--styles (give a folder holding one painting for a fixed one).")
        args.alpha = 1.0 if args.alpha is None else args.alpha
        args.style_size = DEFAULT_STYLE_SIZE if args.style_size is None else args.style_size
        if args.style_size < model.min_style_side:
            raise FastNSTError(f"--style_size must be at least {model.min_style_side} for this model (two "
                               f"pixels at its encoder layer), got {args.style_size}.")
        return _one_draw_each(args, painting_list(args.styles), f"--styles {args.styles} holds one painting")
    # Said rather than ignored, as --styles: the user meant a run these flags would change.
    for flag, value in (("--styles", args.styles), ("--alpha", args.alpha), ("--style_size", args.style_size),
                        ("--loss_model_file", args.loss_model_file)):
        if value is not None:
            raise FastNSTError(f"{flag} is for AdaIN models; {args.model_file} is a {model.model_type} model: "
                               f"leave {flag} out.")
    names = list(model.style_names)
    if args.style is not None and args.style not in names:
        raise FastNSTError(f"--style {args.style!r}: {args.model_file} has "
                           f"{'the styles ' + ', '.join(names) if names else 'one style'}.")
    if args.style is not None:
        return _one_draw_each(args, [args.style], f"--style {args.style!r} fixes the style")
    return _one_draw_each(args, names or [""], f"{args.model_file} has one style")


def _one_draw_each(args: argparse.Namespace, styles: list[str], why: str) -> list[str]:
    """``styles``, unless --per_image K > 1 would write K identical files per photo."""
    if args.per_image > 1 and len(styles) == 1:
        raise FastNSTError(f"--per_image {args.per_image} would write {args.per_image} identical files per photo: "
                           f"{why}. Leave --per_image out, or draw from more styles.")
    return styles


def _device(name: str, ctx) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        if ctx.enabled:
            device = torch.device("cuda", ctx.local_rank)
    return device


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)

    def run() -> int:
        _check(args)
        apply_max_image_pixels(args.max_image_pixels)
        ctx = init_distributed(args.device)
        try:
            return _run(args, ctx)
        finally:
            shutdown(ctx)

    return run_command(run)


def _run(args: argparse.Namespace, ctx) -> int:
    device = _device(args.device, ctx)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    input_folder(args.images, "--images")  # before the model's load: a typo is reported at once
    check_folders(args.images, args.output, args.styles)
    model_file = local_model_file(args.model_file)  # a URL or hf:// reference: its cached copy
    require_downloaded(model_file)  # the default model, before `download adain`
    with cached_copy_errors(model_file):  # a URL's cached copy that fails to load: say to delete it
        model, _ = load_model(model_file, args.loss_model_file)
    styles = _styles(args, model)
    plan = plan_dataset(args.images, args.output, styles, args.per_image, args.seed, args.format, args.batch_size)
    adain = isinstance(model, AdaINNet)  # other models took neither --alpha nor --style_size
    settings = DatasetSettings(args.alpha if adain else 1.0, args.style_size if adain else DEFAULT_STYLE_SIZE,
                               args.max_size or None, args.quality, args.workers, getattr(model, "min_style_side", 1))
    record = {"model": str(args.model_file), "model_type": model.model_type, "seed": args.seed}
    if adain:
        record.update(alpha=args.alpha, style_size=args.style_size)
    record["max_size"] = args.max_size or None
    hashes = PaintingHashes(args.output) if adain and ctx.is_main else None
    # Read by rank 0 alone and shared: every process reading tens of GB of paintings would only
    # multiply the wait (and the disk's load) by the number of processes.
    painting_files = ctx.from_main(lambda: paintings_digest(args.styles, styles, hashes), "reading the paintings") \
        if adain else None
    made_with = {**{k: v for k, v in record.items() if k != "model"}, "weights": weights_digest(model),
                 "styles": hashlib.sha256("\0".join(styles).encode("utf-8", "surrogateescape")).hexdigest(),
                 # A painting replaced under its name: the names alone would resume into a mix of two.
                 "painting_files": painting_files,
                 "quality": args.quality, "format": args.format, "per_image": args.per_image,
                 "batch_size": args.batch_size}
    check_run_settings(args.output, made_with)  # every rank: the same answer, before any waits
    if ctx.is_main:
        save_run_settings(args.output, made_with)
        if hashes is not None:  # after the settings: into a folder known to be this run's
            hashes.save()
        remove_stale_temps(args.output)  # a killed run's images in flight
    if ctx.enabled:
        dist.barrier(group=ctx.control)  # nobody writes before those are gone
    start = time.perf_counter()
    written, bad = ctx.together(lambda: stylize_shard(plan, model, device, args.styles, settings, record,
                                                      ctx.rank, ctx.world_size, not args.no_progress), "stylizing")
    if ctx.enabled:  # every rank's count (a CPU tensor: the gloo group), once the last rank is done
        count = torch.tensor([written], dtype=torch.int64)
        dist.all_reduce(count, group=ctx.control)
        written = int(count.item())
    seconds = time.perf_counter() - start
    if not ctx.is_main:
        return 0
    manifest, outputs, skipped = merge_manifest(args.output, ctx.world_size)
    processes = f" by {ctx.world_size} processes" if ctx.enabled else ""
    print(f"Wrote {written} images in {seconds:.1f} s{processes}, {written / max(seconds, 1e-9):.2f} images/s. "
          f"{args.output} now holds {outputs} stylized images; {manifest} lists them"
          + (f" and the {skipped} unreadable photo(s) skipped." if skipped else "."), file=sys.stderr)
    return 0
