"""The training loop: config -> data -> transform net -> VGG16 losses -> checkpoints.

:func:`do_train` validates everything a user can get wrong before the first step, then trains
with Adam, logging to TensorBoard and writing atomic checkpoints. SIGINT/SIGTERM save a
checkpoint and stop; a non-finite loss stops without touching the last good checkpoint.
"""

from __future__ import annotations

import random
import shutil
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from . import checkpoint as ckpt_io
from .config import TrainConfig, save_config
from .data import (batch_to_device, build_loader, find_training_images, load_sample_images, open_cache,
                   usable_cores, usable_workers)
from .device import resolve_device
from .distributed import DistContext, OtherRankFailed, init_distributed, shutdown
from .download import fetch_style_image, missing_dirs, remove_dirs
from .errors import CheckpointError, DataError, FastNSTError
from .images import open_image, pil_to_tensor, resize_longest
from .losses import PerceptualLoss, tf32_grams
from .model import TransformNet
from .vgg import build_loss_network

CONFIG_FILE = "config.yml"
# Keys that may change between a run and its resumption without changing what is learned
# (anything else, a moved style image or train_dir included, gets a warning).
_RESUME_SAFE_KEYS = {
    "max_steps", "epochs", "log_every", "image_log_every", "checkpoint_every", "keep_checkpoints",
    "num_workers", "device", "sample_images", "num_samples", "model_path", "loss_model_file",
}


AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# Past this share of a logging interval spent waiting for the loader, training says (once) how to
# feed it faster: a 10 % speed-up is about the least worth a config change; below it the wait is
# mostly noise from logging and checkpoints.
DATA_WAIT_WARNING = 0.10


class TrainingInterrupted(FastNSTError):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class NonFiniteLossError(FastNSTError):
    """A loss term became NaN or infinite."""


@dataclass
class TrainResult:
    run_dir: Path
    model_file: Path
    last_checkpoint: Optional[Path]
    step: int
    seconds: float
    skipped_files: int


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


@contextmanager
def _stop_signals() -> Iterator[dict]:
    """Turn SIGINT/SIGTERM into a flag checked between steps (main thread only)."""
    state: dict = {"signal": None}
    if threading.current_thread() is not threading.main_thread():  # signals go to the main thread
        yield state
        return

    def handler(signum, frame):
        if state["signal"] is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        state["signal"] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def feeding_advice(wait: float, cfg: TrainConfig, cached: bool, world_size: int = 1) -> Optional[str]:
    """What to tell a user whose training loop spent ``wait`` (0..1) of its time waiting for the
    data loader, or None when that is below :data:`DATA_WAIT_WARNING` or nothing would help."""
    if wait < DATA_WAIT_WARNING:
        return None
    cores = max(1, usable_cores() // world_size)  # each process has its own loader workers
    fixes = []
    if usable_workers(cfg.num_workers) < cores:
        fixes.append(f"more loader processes (--set num_workers={cores}: {cores} CPU cores per "
                     f"training process, {cfg.num_workers} workers now)")
    if not cached:
        fixes.append("the pre-resized cache, which training uses when it exists: "
                     f"python -m fast_nst.data prepare {cfg.train_dir} --image_size {cfg.image_size}")
    if not fixes:
        return None
    return (f"training waited for images {wait:.0%} of the time; to feed it faster, use "
            + ", or ".join(fixes))


class _LossMonitor:
    """Accumulates loss terms on the device (no host sync per step) and remembers the first
    non-finite step and its values until they are read."""

    def __init__(self, keys: list[str], device: torch.device):
        self.keys = keys
        self.sum = torch.zeros(len(keys), device=device, dtype=torch.float64)
        self.count = 0
        self.bad_seen = torch.zeros((), dtype=torch.bool, device=device)
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_values = torch.zeros(len(keys), device=device)

    def add(self, terms: dict[str, torch.Tensor], step: int) -> None:
        vec = torch.stack([terms[k].detach().float() for k in self.keys])  # (K,)
        bad_now = ~torch.isfinite(vec).all()
        first = bad_now & ~self.bad_seen
        self.bad_step = torch.where(first, torch.full_like(self.bad_step, step), self.bad_step)
        self.bad_values = torch.where(first, vec, self.bad_values)
        self.bad_seen = self.bad_seen | bad_now
        self.sum += vec.double()
        self.count += 1

    def check_finite(self, last_good: Optional[Path]) -> None:
        """Raise :class:`NonFiniteLossError` if any step so far had a NaN/inf term (host sync)."""
        if not bool(self.bad_seen):
            return
        values = ", ".join(f"{k}={v:.6g}" for k, v in zip(self.keys, self.bad_values.tolist()))
        kept = (f"The last good checkpoint is {last_good} (untouched)." if last_good
                else "No checkpoint was written before it.")
        raise NonFiniteLossError(
            f"Non-finite loss at step {int(self.bad_step)}: {values}. Training stopped. {kept} "
            "Lower lr or the loss weights, or check the style image and training data."
        )

    def has_nonfinite(self) -> int:
        """1 if any step so far had a NaN/inf term (a host sync), else 0."""
        return int(bool(self.bad_seen))

    def pop_means(self) -> torch.Tensor:
        """Mean of each term since the last call, (K,) float64 in ``keys`` order."""
        means = self.sum / max(1, self.count)
        self.sum = torch.zeros_like(self.sum)
        self.count = 0
        return means


def match_param_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give each optimizer state tensor (Adam's moments) its parameter's memory layout.

    A loaded state keeps the layout it was saved with, so resuming a channels_last run without
    channels_last (or the reverse) would leave them different, which CUDA's fused Adam rejects.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


@dataclass
class _Setup:
    """Everything validated before step 1."""

    device: torch.device
    run_dir: Path
    files: list
    style: torch.Tensor
    encoder: torch.nn.Module
    steps: int
    resume_ckpt: Optional[dict]
    resume_path: Optional[Path]


def _prepare(cfg: TrainConfig, resume: Union[bool, str, None], overwrite: bool, command: str,
             ctx: DistContext) -> _Setup:
    """Fail fast: check everything a user can get wrong, before any compute."""
    device = resolve_device(cfg.device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)  # one GPU per process under torchrun
    run_dir = Path(cfg.model_path) / cfg.naming
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
    resume_ckpt, resume_path = None, None
    if resume:
        resume_path = find_resume_checkpoint(run_dir, resume)
        resume_ckpt = ckpt_io.read_checkpoint(resume_path)
        if resume_ckpt["kind"] != "training":
            raise CheckpointError(f"{resume_path} is a final model without optimizer state; "
                                  "resume from a file in the run's checkpoints/ folder.")
        old_cfg = ckpt_io.checkpoint_config(resume_ckpt, resume_path)
        changed = sorted(k for k, v in cfg.to_dict().items()
                         if k not in _RESUME_SAFE_KEYS and old_cfg.to_dict().get(k) != v)
        if changed and ctx.is_main:
            warnings.warn(f"Resuming with a config that differs from the checkpoint's in: "
                          f"{', '.join(changed)}; the result will not match an uninterrupted run.")
    files = find_training_images(cfg.train_dir)
    style = load_style_tensor(cfg)
    layers = list(dict.fromkeys(cfg.content_layers + cfg.style_layers))
    encoder = build_loss_network(cfg.loss_model_weights, layers, cfg.loss_model_file, seed=cfg.seed,
                                 quiet=not ctx.is_main)
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
    return _Setup(device, run_dir, files, style, encoder, steps, resume_ckpt, resume_path)


def do_train(cfg: TrainConfig, resume: Union[bool, str, None] = None, overwrite: bool = False,
             config_file: Optional[str] = None, progress: bool = True,
             command: Optional[str] = None) -> TrainResult:
    """Train a transform net for ``cfg``; returns where the model and checkpoints are.

    ``resume``: True for the newest checkpoint in the run folder, a path for that checkpoint.
    ``command``: the command line that started this run, without --resume/--overwrite, for the
    hints in messages (default ``python train.py -c <config_file>``). ``progress``: a progress
    bar; without it, a log line every ``log_every`` steps (for batch jobs and log files).
    Raises :class:`FastNSTError` subclasses for everything a user can get wrong, all before
    step 1. Under torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel; only rank 0
    writes files.
    """
    ctx = init_distributed(cfg.device)
    try:
        command = command or f"python train.py -c {config_file or 'CONFIG'}"
        return _train(cfg, resume, overwrite, command, progress, ctx)
    finally:
        shutdown(ctx)


def _train(cfg: TrainConfig, resume: Union[bool, str, None], overwrite: bool, command: str,
           progress: bool, ctx: DistContext) -> TrainResult:
    t_start = time.time()
    main = ctx.is_main
    # Rank 0 checks (and downloads) first, then the others find the files in place.
    first = ctx.together(lambda: _prepare(cfg, resume, overwrite, command, ctx) if main else None,
                         "checking the set-up")
    later = ctx.together(lambda: None if main else _prepare(cfg, resume, overwrite, command, ctx),
                         "checking the set-up")
    setup: _Setup = first or later
    device, run_dir, files, steps = setup.device, setup.run_dir, setup.files, setup.steps
    model_file = run_dir / f"{cfg.naming}.pth"

    # ---- build ----------------------------------------------------------------------------------
    start_step = 0
    if setup.resume_ckpt is not None:
        model = ckpt_io.build_model(setup.resume_ckpt, setup.resume_path)
        start_step = int(setup.resume_ckpt["step"])
    else:
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        model = TransformNet()
    memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
    model = model.to(device, memory_format=memory_format).train()
    # The fused kernel updates all 47 parameter tensors at once: ~5 ms a step on the 2-core CPU
    # against ~40 ms for the default per-tensor loop, and one launch instead of hundreds on CUDA.
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
    amp_dtype = AMP_DTYPES[cfg.precision]
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    if setup.resume_ckpt is not None:
        try:
            optimizer.load_state_dict(setup.resume_ckpt["optimizer_state"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise CheckpointError(f"{setup.resume_path}: optimizer state does not fit ({e}).") from None
        match_param_layout(optimizer)
        if setup.resume_ckpt.get("rng_state") is not None:
            ckpt_io.restore_rng_state(setup.resume_ckpt["rng_state"])
        if "scaler_state" in setup.resume_ckpt and scaler.is_enabled():
            scaler.load_state_dict(setup.resume_ckpt["scaler_state"])

    encoder = setup.encoder.to(device, memory_format=memory_format)
    criterion = PerceptualLoss(
        encoder, setup.style.to(device), cfg.content_layers, cfg.style_layers,
        cfg.content_weight, cfg.style_weight, cfg.tv_weight, cfg.style_layer_weights,
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: pick the fastest kernels once
    # Only the transform net is wrapped: VGG is frozen and the style Grams are per rank.
    step_model: torch.nn.Module = model
    if ctx.enabled:
        step_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    step_loss: torch.nn.Module = criterion
    if cfg.compile:
        step_model, step_loss = torch.compile(step_model), torch.compile(criterion)
    cache = open_cache(cfg.train_dir, cfg.image_size, files)
    if cache is not None and main:
        print(f"Using the pre-resized cache {cache.folder}", file=sys.stderr)
    loader, _ = build_loader(files, cfg.image_size, cfg.batch_size, cfg.seed, cfg.num_workers,
                             start_step=start_step, pin_memory=device.type == "cuda",
                             rank=ctx.rank, world_size=ctx.world_size, cache=cache)
    samples = torch.zeros(0)
    writer = None
    if main:
        samples = load_sample_images(cfg.sample_images, files, cfg.num_samples, cfg.image_size).to(device)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / CONFIG_FILE)
        # Drop what a stopped run logged after its checkpoint; keep the checkpoint step's own.
        writer = SummaryWriter(log_dir=str(run_dir),
                               purge_step=start_step + 1 if setup.resume_ckpt else None)
        if start_step == 0:
            writer.add_image("style", setup.style[0], 0)
            if len(samples):
                writer.add_images("samples/content", samples.cpu(), 0)

    # ---- train ----------------------------------------------------------------------------------
    keys = ["total", "content", "style"] + [f"style/{n}" for n in cfg.style_layers] + ["tv"]
    monitor = _LossMonitor(keys, device)
    skipped: set[str] = set()
    last_ckpt: Optional[Path] = setup.resume_path
    global_batch = cfg.batch_size * ctx.world_size
    if main:
        procs = f" x {ctx.world_size} processes = global batch {global_batch}" if ctx.enabled else ""
        print(f"Training {cfg.naming} on {device}: {len(files)} images, batch {cfg.batch_size}{procs}, "
              f"steps {start_step} -> {steps}; run folder {run_dir}", file=sys.stderr)
    bar = tqdm(total=steps, initial=start_step, desc=cfg.naming, unit="step",
               disable=not (progress and main), file=sys.stderr, dynamic_ncols=True)

    def check_finite() -> None:
        (bad,) = ctx.agree([monitor.has_nonfinite()])
        if bad:
            monitor.check_finite(last_ckpt)  # raises on the ranks that saw it
            raise OtherRankFailed("Non-finite loss on another process; training stopped.")

    def save_training(step: int) -> Optional[Path]:
        nonlocal last_ckpt
        check_finite()
        if main:
            ckpt = ckpt_io.make_checkpoint(model, cfg, step, optimizer)
            if scaler.is_enabled():
                ckpt["scaler_state"] = scaler.state_dict()
            last_ckpt = ckpt_io.save_training_checkpoint(ckpt, run_dir, cfg.keep_checkpoints)
        return last_ckpt

    step = start_step
    t_log, step_log = time.perf_counter(), step
    waited = 0.0  # seconds spent in next(data_iter) since the last log
    advised = False
    data_iter = iter(loader)
    try:
        with _stop_signals() as stop, tf32_grams(device.type == "cuda" and amp_dtype is not None):
            while step < steps:
                t_wait = time.perf_counter()
                batch = next(data_iter)
                waited += time.perf_counter() - t_wait
                for path in batch["bad_files"]:
                    if path not in skipped:
                        skipped.add(path)
                        tqdm.write(f"warning: skipping unreadable training file {path}", file=sys.stderr)
                # One tiny CPU all-reduce per step keeps ranks in step on signals and data errors.
                sig, data_error = ctx.agree([stop["signal"] or 0, int(not batch["ok"])])
                if data_error:
                    if batch["ok"]:
                        raise OtherRankFailed("Another process found no readable images; stopping.")
                    raise DataError(f"No readable images found in {cfg.train_dir}: "
                                    f"{len(skipped)} files failed to decode in a row. "
                                    "Check the folder's contents.")
                if sig and step > start_step:
                    path = save_training(step)
                    ctx.agree([0])  # nobody exits before rank 0 has written the checkpoint
                    raise TrainingInterrupted(
                        f"{signal.Signals(sig).name} received: stopped at step {step}/{steps}; "
                        f"checkpoint saved to {path}. Resume with: {command} --resume"
                        if main else "",  # the other ranks stop silently: rank 0 has said it
                        exit_code=128 + int(sig),
                    )
                x = batch_to_device(batch["image"], device, memory_format)  # (N, 3, S, S) in [0, 1]
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                    enabled=amp_dtype is not None):
                    y = step_model(x)  # (N, 3, S, S) in (0, 1)
                    terms = step_loss(y, x)
                scaler.scale(terms["total"]).backward()
                scaler.step(optimizer)
                scaler.update()
                step += 1
                monitor.add(terms, step)
                bar.update(1)

                last = step == steps
                if step % cfg.log_every == 0 or last or step == start_step + 1:
                    check_finite()  # a host sync: the device has caught up, so the times are real
                    now = time.perf_counter()
                    rate = (step - step_log) * global_batch / max(now - t_log, 1e-9)
                    # This process's share of the interval spent waiting for its loader.
                    wait = min(1.0, waited / max(now - t_log, 1e-9))
                    warm = step_log > start_step  # the first interval includes starting the workers
                    t_log, step_log, waited = now, step, 0.0
                    means = dict(zip(keys, ctx.all_mean(monitor.pop_means()).tolist()))
                    if writer is not None:
                        for k, v in means.items():
                            writer.add_scalar(f"loss/{k}", v, step)
                        writer.add_scalar("perf/images_per_s", rate, step)
                        writer.add_scalar("perf/data_wait", wait, step)
                        writer.add_scalar("lr", optimizer.param_groups[0]["lr"], step)
                    shown = dict(loss=f"{means['total']:.4g}", content=f"{means['content']:.3g}",
                                 style=f"{means['style']:.3g}", tv=f"{means['tv']:.2g}", img_s=f"{rate:.1f}",
                                 data_wait=f"{wait:.0%}")
                    if warm and main and not advised:
                        advice = feeding_advice(wait, cfg, cache is not None, ctx.world_size)
                        if advice:
                            advised = True
                            tqdm.write(f"warning: {advice}", file=sys.stderr)
                    if bar.disable and main:  # no bar (batch jobs, log files): one line per log
                        print(f"step {step}/{steps}: " + " ".join(f"{k}={v}" for k, v in shown.items()),
                              file=sys.stderr, flush=True)
                    bar.set_postfix(**shown)
                if writer is not None and (step % cfg.image_log_every == 0 or last) and len(samples):
                    with torch.no_grad():
                        writer.add_images("samples/stylized", model(samples).float().cpu(), step)
                if step % cfg.checkpoint_every == 0 or last:
                    save_training(step)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        del data_iter  # shuts down loader workers

    check_finite()
    seconds = time.time() - t_start
    if main:
        ckpt_io.atomic_torch_save(ckpt_io.make_checkpoint(model, cfg, step), model_file)
        skipped_note = f" Skipped {len(skipped)} unreadable training files." if skipped else ""
        print(
            f"Done: {step} steps in {seconds:.1f} s.{skipped_note}\n"
            f"  model:       {model_file}\n"
            f"  checkpoints: {run_dir / ckpt_io.CHECKPOINT_DIR} (newest {last_ckpt.name if last_ckpt else '-'})\n"
            f"  config:      {run_dir / CONFIG_FILE}\n"
            f"  TensorBoard: tensorboard --logdir {run_dir}\n"
            f"  stylize:     python eval.py --model_file {model_file} --image_file PHOTO.jpg",
            file=sys.stderr,
        )
    ctx.agree([0])  # the final model exists before any rank returns
    return TrainResult(run_dir, model_file, last_ckpt, step, seconds, len(skipped))
