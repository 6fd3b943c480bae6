"""``python train.py -c conf/wave.yml`` (also ``fast-nst-train``): train a transform network."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import Optional, Sequence

from ..training import load_train_config, train
from . import add_max_image_pixels, apply_max_image_pixels, new_parser, prog, run_command, started_as

__all__ = ["main", "parser", "train_command"]


def parser() -> argparse.ArgumentParser:
    p = new_parser(
        "train.py",
        description="Train a fast style transfer network (Johnson et al. 2016) for one style, "
                    "or one network for several (style_images, model_type johnson_multi).",
        epilog="Example: python train.py -c conf/wave.yml --set max_steps=1000 --set batch_size=8",
    )
    p.add_argument("-c", "--config", required=True, help="YAML config, e.g. conf/wave.yml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. --set lr=5e-4")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue the run from its newest checkpoint, or from CHECKPOINT")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh even if the run folder holds checkpoints (deletes them)")
    p.add_argument("--init_from", metavar="MODEL",
                   help="start from a trained model instead of random weights (the same as --set "
                        "init_from=MODEL): a one-style model of the config's network (fast-nst .pth or "
                        ".safetensors, pytorch/examples .pth) trains further in a new run; a multi-style "
                        "model gets the config's styles added (with --set freeze=convolutions only the "
                        "new styles' norm parameters train)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_max_image_pixels(p)  # style, sample, validation and training images alike
    return p


def _torchrun_prefix() -> str:
    """``torchrun --nproc_per_node=N`` (and ``--nnodes``) as this process was launched, or "":
    a resume must use the same processes, or its global batch changes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    nodes = f" --nnodes={world // local}" if local and world != local else ""
    return f"torchrun --nproc_per_node={local}{nodes} "


def train_command(config: str, overrides: Sequence[str], max_image_pixels: Optional[int] = None) -> str:
    """The command that re-runs this training (for "--resume" hints): how train.py was started
    (under torchrun: the torchrun launch), the config, every --set and ``--max_image_pixels``
    (a resumed run reads the same images), quoted for the shell."""
    script = started_as()
    start = prog("train.py")  # the installed console script's name, if started as one
    torchrun = _torchrun_prefix()
    if start == "train.py":
        # train.py as given (a path from elsewhere too); in-process callers (tests, notebooks):
        # the documented form
        start = shlex.quote(script) if Path(script).name == "train.py" else "train.py"
        start = start if torchrun else f"python {start}"
    elif torchrun:  # a console script under torchrun: torchrun --no-python runs it
        torchrun += "--no-python "
    sets = "".join(f" --set {shlex.quote(o)}" for o in overrides)
    limit = f" --max_image_pixels {max_image_pixels}" if max_image_pixels is not None else ""
    return f"{torchrun}{start} -c {shlex.quote(config)}{sets}{limit}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)

    def run() -> int:
        # Before any image is read. Every torchrun rank parses the same argv; the loader's workers
        # get the limit from the loader (training.data).
        apply_max_image_pixels(args.max_image_pixels)
        overrides = list(args.overrides) + ([f"init_from={args.init_from}"] if args.init_from else [])
        cfg = load_train_config(args.config, overrides)
        train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
              command=train_command(args.config, overrides, args.max_image_pixels))
        return 0

    return run_command(run)
