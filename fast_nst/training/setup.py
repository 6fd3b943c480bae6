"""Everything a training run checks and loads before step 1, so that a mistake costs seconds:
the run folder (writable, not holding another run unless resuming or overwriting), the resume
checkpoint, the photos, the style image, the network's arguments and the loss network.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from .. import nets
from ..core.config import TrainConfig
from ..core.device import resolve_device
from ..core.errors import CheckpointError, ConfigError, DataError, FastNSTError
from ..core.fetch import fetch_style_image
from ..core.files import missing_dirs, remove_dirs
from ..core.images import open_image, pil_to_tensor, resize_longest
from ..io import checkpoint as ckpt_io
from ..lossnet.vgg import VGGEncoder, build_loss_network
from ..nets.base import StyleNetwork
from .config import check_config, train_config_from_dict
from .data import find_training_images
from .distributed import DistContext

__all__ = ["CONFIG_FILE", "RunSetup", "build_network", "find_resume_checkpoint",
           "load_style_tensor", "prepare_run", "total_steps"]

CONFIG_FILE = "config.yml"
# Keys that may change between a run and its resumption without changing what is learned
# (anything else, a moved style image or train_dir included, gets a warning).
RESUME_SAFE_KEYS = {
    "max_steps", "epochs", "log_every", "image_log_every", "checkpoint_every", "keep_checkpoints",
    "num_workers", "device", "sample_images", "num_samples", "model_path", "loss_model_file",
}


@dataclass
class RunSetup:
    """Everything validated before step 1."""

    device: torch.device
    run_dir: Path
    files: list
    style: torch.Tensor  # (1, 3, h, w) in [0, 1]
    encoder: VGGEncoder
    steps: int
    resume_ckpt: Optional[dict]
    resume_path: Optional[Path]

    @property
    def model_file(self) -> Path:
        return self.run_dir / f"{self.run_dir.name}.pth"


def build_network(cfg: TrainConfig) -> StyleNetwork:
    """A new network of ``cfg.model_type`` with ``cfg.model_args``; ConfigError for bad arguments."""
    try:
        return nets.build_network(cfg.model_type, cfg.model_args)
    except ValueError as e:
        raise ConfigError(f"config: key 'model_args' {e}") from None


def total_steps(cfg: TrainConfig, num_images: int, world_size: int = 1) -> int:
    """max_steps if set, else epochs over the images in whole global batches."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    return cfg.epochs * (num_images // (cfg.batch_size * world_size))


def load_style_tensor(cfg: TrainConfig) -> torch.Tensor:
    """The style image as (1, 3, h, w) in [0, 1], longest side ``style_size``."""
    path = fetch_style_image(cfg.style_image)
    try:
        img = open_image(path).convert("RGB")
    except DataError as e:
        raise DataError(f"Style image (style_image: {cfg.style_image}) cannot be used: {e}") from None
    return pil_to_tensor(resize_longest(img, cfg.style_size)).unsqueeze(0)


def _run_files(run_dir: Path, naming: str) -> list[Path]:
    """What a previous run left that starting afresh would overwrite."""
    found = [p for _, p in ckpt_io.list_checkpoints(run_dir)]
    final = run_dir / f"{naming}.pth"
    return found + ([final] if final.exists() else [])


def _check_writable(run_dir: Path) -> None:
    """Raise unless files can be written in ``run_dir``; folders made to find out are removed
    again, so a run that fails a later check leaves nothing behind."""
    made = missing_dirs(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise FastNSTError(f"Cannot write to the run folder {run_dir}: {e.strerror or e}. "
                           "Set model_path to a writable folder.") from None
    finally:
        remove_dirs(made)


def _clear_previous_run(run_dir: Path, naming: str) -> None:
    shutil.rmtree(run_dir / ckpt_io.CHECKPOINT_DIR, ignore_errors=True)
    (run_dir / f"{naming}.pth").unlink(missing_ok=True)
    for p in run_dir.glob("events.out.tfevents.*"):
        p.unlink()


def find_resume_checkpoint(run_dir: Path, resume: Union[bool, str]) -> Path:
    if resume is True:
        found = ckpt_io.list_checkpoints(run_dir)
        if not found:
            raise CheckpointError(f"--resume: no checkpoints in {run_dir / ckpt_io.CHECKPOINT_DIR}. "
                                  "Start without --resume to train from scratch.")
        return found[-1][1]
    return Path(resume)


def _check_run_folder(cfg: TrainConfig, run_dir: Path, resume, overwrite: bool, command: str,
                      ctx: DistContext) -> None:
    if resume and overwrite:
        raise FastNSTError("--resume and --overwrite contradict each other; choose one.")
    if not resume and not overwrite:
        previous = _run_files(run_dir, cfg.naming)
        if previous:
            raise FastNSTError(
                f"{run_dir} already holds a run ({', '.join(str(p.name) for p in previous[-2:])}). "
                f"Continue it with: {command} --resume   or start again "
                f"(deleting its checkpoints, model and logs) with: {command} --overwrite"
            )
    _check_writable(run_dir)
    if ctx.is_main:  # half-written checkpoints left by a process killed mid-save
        for stale in (run_dir / ckpt_io.CHECKPOINT_DIR).glob(".step_*.tmp*"):
            stale.unlink(missing_ok=True)


def _read_resume(cfg: TrainConfig, run_dir: Path, resume, ctx: DistContext) -> tuple[dict, Path]:
    """The checkpoint to resume from; warns when the config changed in a way that matters."""
    path = find_resume_checkpoint(run_dir, resume)
    ckpt = ckpt_io.read_checkpoint(path)
    if ckpt["kind"] != "training":
        raise CheckpointError(f"{path} is a final model without optimizer state; "
                              "resume from a file in the run's checkpoints/ folder.")
    try:
        old = train_config_from_dict(ckpt["config"], f"{path} (saved config)").to_dict()
    except FastNSTError as e:
        raise CheckpointError(str(e)) from None
    changed = sorted(k for k, v in cfg.to_dict().items() if k not in RESUME_SAFE_KEYS and old.get(k) != v)
    if changed and ctx.is_main:
        warnings.warn(f"Resuming with a config that differs from the checkpoint's in: "
                      f"{', '.join(changed)}; the result will not match an uninterrupted run.")
    return ckpt, path


def prepare_run(cfg: TrainConfig, resume: Union[bool, str, None], overwrite: bool, command: str,
                ctx: DistContext) -> RunSetup:
    """Fail fast: check everything a user can get wrong, before any compute."""
    check_config(cfg)
    build_network(cfg)  # model_args in bounds (the network is built again, seeded, by the trainer)
    device = resolve_device(cfg.device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)  # one GPU per process under torchrun
    run_dir = Path(cfg.model_path) / cfg.naming
    _check_run_folder(cfg, run_dir, resume, overwrite, command, ctx)
    resume_ckpt, resume_path = _read_resume(cfg, run_dir, resume, ctx) if resume else (None, None)
    files = find_training_images(cfg.train_dir)
    style = load_style_tensor(cfg)
    layers = list(dict.fromkeys(cfg.content_layers + cfg.style_layers))
    encoder = build_loss_network(cfg.loss_model_weights, layers, cfg.loss_model_file or None,
                                 seed=cfg.seed, quiet=not ctx.is_main, name=cfg.loss_model)
    steps = total_steps(cfg, len(files), ctx.world_size)
    if steps <= 0:
        raise DataError(f"{len(files)} images in {cfg.train_dir} make no full batch of "
                        f"{cfg.batch_size * ctx.world_size}; add images, lower batch_size or set max_steps.")
    if resume_ckpt is not None and int(resume_ckpt["step"]) >= steps:
        raise FastNSTError(
            f"{resume_path} is at step {int(resume_ckpt['step'])}, and this run ends at step {steps} "
            f"(max_steps/epochs): nothing left to train. To train further, raise the end, e.g. "
            f"{command} --resume --set max_steps={int(resume_ckpt['step']) + 1000}")
    if overwrite and ctx.is_main:
        _clear_previous_run(run_dir, cfg.naming)
    return RunSetup(device, run_dir, files, style, encoder, steps, resume_ckpt, resume_path)
