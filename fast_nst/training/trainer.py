"""The training loop: a :class:`Trainer` built from a checked :class:`~fast_nst.training.setup.RunSetup`.

:func:`train` validates everything a user can get wrong before the first step, then trains with
Adam, logging to TensorBoard and writing atomic checkpoints. SIGINT/SIGTERM save a checkpoint and
stop; a non-finite loss stops without touching the last good checkpoint. The pieces: build
(network, optimizer, loss, loader, logs), :meth:`Trainer.run` (next_batch / check_stop /
train_step / after_step); logs and validation come from :mod:`.reporting`, checkpoints, the
final model and the optional weight average from :mod:`.saving`.
"""

from __future__ import annotations

import importlib
import random
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..core.config import TrainConfig
from ..core.device import prepare_compile
from ..core.errors import CheckpointError, ConfigError, DataError, Stopped
from ..core.untrusted import shown
from ..io import checkpoint as ckpt_io
from ..lossnet import GRAM_STYLE_DEGREE, loss_weights
from ..lossnet.losses import PerceptualLoss, tf32_grams
from ..nets import NETWORKS
from ..nets.base import StyleNetwork
from .cache import open_cache
from .config import train_config_from_dict
from .data import batch_to_device, build_loader, load_side
from .distributed import DistContext, OtherRankFailed, init_distributed, shutdown
from .monitor import LossMonitor, ProgressBar
from .setup import RunSetup, build_network, prepare_run
from .reporting import TrainerReporting
from .saving import TrainerSaving, TrainResult
from .stability import moved_copy, stability_loss

__all__ = ["AMP_DTYPES", "TRAINERS", "Trainer", "TrainResult", "TrainingInterrupted", "match_param_layout",
           "train", "trainer_class"]

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# The trainer of each kind of network, by its registry entry's style_input: named, not imported,
# because the arbitrary-style trainer (training/arbitrary.py) subclasses Trainer from this module.
TRAINERS = {"": ("fast_nst.training.trainer", "Trainer"),
            "image": ("fast_nst.training.arbitrary", "ArbitraryTrainer")}


class TrainingInterrupted(Stopped):
    """Training stopped by SIGINT/SIGTERM (after saving a checkpoint, once a step was trained)."""


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


def _lost_peer(error: RuntimeError) -> bool:
    """Whether a collective failed because another process is gone (gloo/NCCL's wording)."""
    text = str(error).lower()
    return any(w in text for w in ("connection closed", "connection reset", "broken pipe", "by peer"))


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


class Trainer(TrainerSaving, TrainerReporting):
    """One training run on this process (rank ``ctx.rank`` of ``ctx.world_size``)."""

    def __init__(self, cfg: TrainConfig, setup: RunSetup, ctx: DistContext, command: str,
                 progress: bool = True):
        self.cfg, self.setup, self.ctx, self.command = cfg, setup, ctx, command
        self.device, self.steps, self.main = setup.device, setup.steps, ctx.is_main
        self.memory_format = torch.channels_last if cfg.channels_last else torch.preserve_format
        self.amp_dtype = AMP_DTYPES[cfg.precision]
        self.start_step = int(setup.resume_ckpt["step"]) if setup.resume_ckpt is not None else 0
        self.step = self.start_step
        self.model = self._build_model()
        self.average = self._start_average()
        # The network's rows of the styles this run trains, in the config's order (a run that
        # adds styles trains only its own), and each as a one-hot style vector.
        names = list(self.model.style_names)
        self.style_rows = [names.index(n) for n in setup.style_names] if names else []
        self.multi = bool(names)
        eye = torch.eye(max(1, len(names)), device=self.device)
        self.style_vectors = [eye[row] for row in self.style_rows]  # each (S,)
        self.style_indices = [torch.tensor(k, device=self.device) for k in range(len(setup.styles))]
        self.optimizer, self.scaler = self._build_optimizer()
        self.criterion = self._build_loss()
        self.step_model, self.step_loss = self._wrap_for_speed()
        # A cache holds photos at one shorter side: resize_to's when set (the crops come from it).
        self.cache = open_cache(cfg.train_dir, load_side(cfg), setup.files)
        self.loader = self._build_loader()
        self.samples, self.writer = self._open_logs()
        self.val_photos = self._load_validation()
        self.val_total: Optional[float] = None  # the last validation loss, shown in the progress line
        self.keys = ["total", "content", "style"] + [f"style/{n}" for n in cfg.style_layers] + ["tv"]
        self.keys += ["stability"] if cfg.stability_weight else []
        self.monitor = LossMonitor(self.keys, self.device)
        per_style = ["total", "content", "style"]
        self.style_monitors = [LossMonitor(per_style, self.device) for _ in self.style_rows] if self.multi else []
        self.skipped: set[str] = set()
        self.last_ckpt: Optional[Path] = setup.resume_path
        self.global_batch = cfg.batch_size * ctx.world_size
        self.progress = progress and self.main
        self.bar: Optional[tqdm] = None  # drawn by run(), below the lines that announce the run
        self.t_log, self.step_log, self.waited, self.advised = time.perf_counter(), self.step, 0.0, False

    # -- building ------------------------------------------------------------------------------

    def _build_model(self) -> StyleNetwork:
        setup = self.setup
        torch.manual_seed(self.cfg.seed)
        random.seed(self.cfg.seed)
        if setup.resume_ckpt is not None:
            model = ckpt_io.build_model(setup.resume_ckpt, setup.resume_path)
        elif setup.init_model is not None:  # a trained network (with this config's styles added)
            model = setup.init_model
        else:
            model = build_network(self.cfg)
            if NETWORKS[model.model_type].many_styles:
                model.style_names = list(setup.style_names)
        if setup.resume_ckpt is None and NETWORKS[model.model_type].many_styles:
            model.set_thumbnails(setup.style_names, setup.styles)
        if self.cfg.freeze == "convolutions":
            model.requires_grad_(False)
            for p in model.norm_parameters():
                p.requires_grad_(True)
        return model.to(self.device, memory_format=self.memory_format).train()

    def _build_optimizer(self) -> tuple[torch.optim.Optimizer, torch.amp.GradScaler]:
        # The fused kernel updates all parameter tensors at once: ~5 ms a step on a 2-core CPU
        # against ~40 ms for the default per-tensor loop, and one launch instead of hundreds on CUDA.
        # Frozen parameters (freeze: convolutions) are left out. Adam moves a style's norm rows
        # only by their gradients' moments, so rows of styles this run does not train stay exact.
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=self.cfg.lr, fused=True)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.cfg.precision == "fp16")
        ckpt, path = self.setup.resume_ckpt, self.setup.resume_path
        if ckpt is not None:
            # A damaged file can hold anything here: every failure is the file's, said in one line.
            restore = (("optimizer state", lambda: optimizer.load_state_dict(ckpt["optimizer_state"])),
                       ("random-number state", lambda: ckpt.get("rng_state") is None
                        or ckpt_io.restore_rng_state(ckpt["rng_state"])),
                       ("gradient-scaler state", lambda: "scaler_state" not in ckpt or not scaler.is_enabled()
                        or scaler.load_state_dict(ckpt["scaler_state"])))
            for what, load in restore:
                try:
                    load()
                except (ValueError, KeyError, RuntimeError, TypeError, AttributeError, IndexError) as e:
                    raise CheckpointError(f"{path}: its {what} does not fit ({type(e).__name__}: "
                                          f"{str(e)[:200]}); the file is damaged or from another run. "
                                          "Resume from another checkpoint (--resume PATH).") from None
            match_param_layout(optimizer)
            # load_state_dict brought back the lr the checkpoint was trained with; the config's
            # applies, as config.yml records (a lower lr is the advice for a diverging run, and
            # a resume is how it is taken). Training has no lr schedule to follow instead.
            for group in optimizer.param_groups:
                group["lr"] = self.cfg.lr
        return optimizer, scaler

    def loss_weights(self, style_degree: int = GRAM_STYLE_DEGREE) -> tuple[float, float, float]:
        """The config's (content, style, tv) weights in its loss network's convention (said when
        converted); ``style_degree``: how the style loss grows with the feature scale."""
        cfg = self.cfg
        content, style, tv = loss_weights(cfg, style_degree)
        if (content, style, tv) != (cfg.content_weight, cfg.style_weight, cfg.tv_weight) and self.main:
            print(f"Loss weights are for the {cfg.loss_weights_for} convention; with {cfg.loss_model} "
                  f"they are content {content:.4g}, style {style:.4g}, tv {tv:.4g}", file=sys.stderr)
        return content, style, tv

    def _build_loss(self) -> PerceptualLoss:
        cfg = self.cfg
        encoder = self.setup.encoder.to(self.device, memory_format=self.memory_format)
        content, style, tv = self.loss_weights()
        return PerceptualLoss(encoder, [s.to(self.device) for s in self.setup.styles], cfg.content_layers,
                              cfg.style_layers, content, style, tv, cfg.style_layer_weights, cfg.style_weights or None)

    def _wrap_for_speed(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The modules the step calls: DDP around the network (VGG is frozen and the style Grams
        are per rank), and torch.compile around both when asked."""
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed batch shapes: pick the fastest kernels once
        step_model: torch.nn.Module = self.trained_module()
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            step_model = DistributedDataParallel(step_model, device_ids=ids)
        if self.cfg.compile:
            prepare_compile(self.device)
            return torch.compile(step_model, **self._net_compile_options()), torch.compile(self.criterion)
        return step_model, self.criterion

    def _net_compile_options(self) -> dict:
        """torch.compile's options for the trained network. On a CPU in bf16 it is traced without
        code generation (aot_eager): inductor's CPU bf16 kernels for it gave NaN weights after one
        step on an Intel Xeon with AMX (torch 2.14.1; eager bf16, and inductor for the loss
        network, stay finite), and CPU training is for smoke tests, where being right matters more
        than the speed-up. The loss network is still compiled by inductor."""
        if self.device.type == "cpu" and self.amp_dtype == torch.bfloat16:
            return {"backend": "aot_eager"}
        return {}

    def trained_module(self) -> torch.nn.Module:
        """The module a step runs and DDP wraps: the network."""
        return self.model

    def _build_loader(self) -> DataLoader:
        cfg, ctx = self.cfg, self.ctx
        if self.cache is not None and self.main:
            print(f"Using the pre-resized cache {self.cache.folder}", file=sys.stderr)
        return build_loader(self.setup.files, cfg.image_size, cfg.batch_size, cfg.seed,
                            cfg.num_workers, start_step=self.start_step,
                            pin_memory=self.device.type == "cuda", rank=ctx.rank,
                            world_size=ctx.world_size, cache=self.cache, resize_to=cfg.resize_to)

    # -- the loop --------------------------------------------------------------------------------

    def run(self, stop: dict) -> TrainResult:
        """Train from ``start_step`` to ``steps``; returns where the model and checkpoints are.
        ``stop["signal"]`` is set by the signal handler (see :func:`train`)."""
        t_start = time.time()
        self._announce()
        self.bar = ProgressBar(total=self.steps, initial=self.start_step, desc=self.cfg.naming, unit="step",
                               disable=not self.progress, file=sys.stderr, dynamic_ncols=True)
        data_iter = iter(self.loader)  # starts the loader workers
        cuda_amp = self.device.type == "cuda" and self.amp_dtype is not None
        try:
            with tf32_grams(cuda_amp):
                while self.step < self.steps:
                    batch = self.next_batch(data_iter)
                    self.check_stop(batch, stop)
                    self.train_step(*self.step_inputs(batch))
                    self.after_step()
            return self.finish(time.time() - t_start)
        except RuntimeError as e:
            if not self.ctx.enabled or not _lost_peer(e):
                raise
            raise OtherRankFailed(
                f"rank {self.ctx.rank}: another training process stopped without a word (killed?) "
                f"at step {self.step}: {str(e).splitlines()[0][:200]}. The checkpoints written so far "
                f"are kept{f' (newest {self.last_ckpt})' if self.last_ckpt else ''}; continue with: "
                f"{self.command} --resume") from None
        finally:
            self.bar.close()
            if self.writer is not None:
                self.writer.close()
            del data_iter  # shuts down loader workers

    def _announce(self) -> None:
        if not self.main:
            return
        cfg, ctx = self.cfg, self.ctx
        procs = f" x {ctx.world_size} processes = global batch {self.global_batch}" if ctx.enabled else ""
        start = f" from {shown(cfg.init_from)}" if self.setup.init_model is not None else ""
        print(f"Training {cfg.naming}{start} on {self.device}: {len(self.setup.files)} images, batch "
              f"{cfg.batch_size}{procs}, steps {self.start_step} -> {self.steps}; run folder "
              f"{self.setup.run_dir}", file=sys.stderr)

    def next_batch(self, data_iter) -> dict:
        """The loader's next batch; reports each unreadable file once and times the wait."""
        t_wait = time.perf_counter()
        batch = next(data_iter)
        self.waited += time.perf_counter() - t_wait
        for path in batch["bad_files"]:
            if path not in self.skipped:
                self.skipped.add(path)
                tqdm.write(f"warning: skipping unreadable training file {path}", file=sys.stderr)
        return batch

    def check_stop(self, batch: dict, stop: dict) -> None:
        """Stop every rank together on a data error or a signal (one tiny all-reduce per step)."""
        sig, data_error = self.ctx.agree([stop["signal"] or 0, int(not batch["ok"])])
        if data_error:
            if batch["ok"]:
                raise OtherRankFailed("Another process found no readable images; stopping.")
            raise DataError(f"No readable images found in {self.cfg.train_dir}: {len(self.skipped)} "
                            "files failed to decode in a row. Check the folder's contents.")
        if not sig:
            return
        name = signal.Signals(sig).name
        if self.step == self.start_step:  # stopped while starting: nothing new to save
            raise TrainingInterrupted(
                f"Stopped ({name}) before the first step: nothing was trained or saved."
                + (f" Resume with: {self.command} --resume" if self.start_step else "")
                if self.main else "", exit_code=128 + int(sig))
        path = self.save_checkpoint()
        self.ctx.agree([0])  # nobody exits before rank 0 has written the checkpoint
        raise TrainingInterrupted(
            f"Stopped ({name}) at step {self.step}/{self.steps}; checkpoint saved to {path}.\n"
            f"Resume with: {self.command} --resume"
            if self.main else "",  # the other ranks stop silently: rank 0 has said it
            exit_code=128 + int(sig),
        )

    def step_inputs(self, batch: dict) -> tuple:
        """What :meth:`train_step` takes from a loader batch: its photos."""
        return (batch["image"],)

    def style_of_step(self, step: int) -> int:
        """Which of the config's styles step ``step`` (0-based) trains: round robin, so every
        style gets the same number of steps, all ranks agree and a resume continues the order."""
        return step % len(self.setup.styles)

    def stylize(self, x: torch.Tensor, k: int = 0, model: Optional[torch.nn.Module] = None) -> torch.Tensor:
        """``x`` (N, 3, S, S) in [0, 1] in the config's style ``k`` (0: the only one), by
        ``model`` (default: :attr:`shipped`)."""
        model = self.shipped if model is None else model
        return model(x, self.style_vectors[k]) if self.multi else model(x)

    def train_step(self, images: torch.Tensor) -> None:
        """One optimizer step on a loader batch (N, 3, S, S) uint8; no host sync."""
        x = batch_to_device(images, self.device, self.memory_format)  # (N, 3, S, S) in [0, 1]
        k = self.style_of_step(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg.stability_weight:
            terms = self.stable_terms(x, k)
        else:
            with self.autocast():
                y = self.stylize(x, k, self.step_model)  # (N, 3, S, S) in (0, 1)
                terms = self.step_loss(y, x, self.style_indices[k])
        self.optimize(terms)
        if self.style_monitors:
            self.style_monitors[k].add(terms, self.step)

    def stable_terms(self, x: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        """The loss terms of ``x`` (N, 3, S, S) plus ``stability`` (see :mod:`.stability`): the
        photos and a moved copy go through the network as one batch (one DDP forward), the loss
        network sees only the photos' stylizations."""
        moved, motions = moved_copy(x, self.cfg.seed, self.step, self.ctx.rank * len(x))
        with self.autocast():
            y, y_moved = self.stylize(torch.cat([x, moved]), k, self.step_model).split(len(x))
            terms = dict(self.step_loss(y, x, self.style_indices[k]))
        terms["stability"] = stability_loss(y, y_moved, motions)
        terms["total"] = terms["total"] + self.cfg.stability_weight * terms["stability"]
        return terms

    def autocast(self) -> torch.autocast:
        """The config's precision around a forward pass (off for fp32)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def optimize(self, terms: dict[str, torch.Tensor]) -> None:
        """Backward from ``terms["total"]``, the optimizer step through the gradient scaler, and
        the step counted, its terms given to the loss monitor; no host sync."""
        self.scaler.scale(terms["total"]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        if self.average is not None:
            self.average.update(self.step)
        self.monitor.add(terms, self.step)
        self.bar.update(1)

    def after_step(self) -> None:
        cfg, step = self.cfg, self.step
        last = step == self.steps
        done = step - self.start_step
        # Also at 1, 2, 4, 8, ... steps into the run: a short run shows its losses at once.
        if step % cfg.log_every == 0 or last or (done < cfg.log_every and done & (done - 1) == 0):
            self.log()
        if self.writer is not None and (step % cfg.image_log_every == 0 or last) and len(self.samples):
            self.log_samples()
        if len(self.val_photos) and (step % cfg.val_every == 0 or last):
            self.validate()
        if step % cfg.checkpoint_every == 0 or last:
            self.save_checkpoint()


def _checked(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` as the config loader would have built it: a TrainConfig made directly (or with
    dataclasses.replace) skips the loader's checks of types and ranges."""
    if not isinstance(cfg, TrainConfig):
        raise ConfigError(f"train() takes a TrainConfig (fast_nst.training.load_train_config(path), or "
                          f"train_config_from_dict(mapping)), got {type(cfg).__name__}")
    return train_config_from_dict(cfg.to_dict(), "the TrainConfig given to train()")


def train(cfg: TrainConfig, resume: Union[bool, str, None] = None, overwrite: bool = False,
          progress: bool = True, command: Optional[str] = None) -> TrainResult:
    """Train a transform network for ``cfg``; returns where the model and checkpoints are.

    ``resume``: True for the newest checkpoint in the run folder, a path for that checkpoint.
    ``command``: the command line that started this run, without --resume/--overwrite, for the
    hints in messages (default ``python train.py -c CONFIG``). ``progress``: a progress bar;
    without it, a log line every ``log_every`` steps (for batch jobs and log files).
    Raises :class:`FastNSTError` subclasses for everything a user can get wrong, all before
    step 1. Under torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel; only rank 0
    writes files.
    """
    cfg = _checked(cfg)
    ctx = init_distributed(cfg.device)
    setup: Optional[RunSetup] = None
    command = command or "python train.py -c CONFIG"
    try:
        # Rank 0 checks (and downloads) first, then the others find the files in place.
        setup = ctx.together(lambda: prepare_run(cfg, resume, overwrite, command, ctx) if ctx.is_main
                             else None, "checking the set-up")  # rank 0 holds the lock from here
        later = ctx.together(lambda: None if ctx.is_main else prepare_run(cfg, resume, overwrite, command, ctx),
                             "checking the set-up")
        setup = setup or later
        # From here on Ctrl-C/SIGTERM stop cleanly, also while the loader workers start.
        with _stop_signals() as stop:
            result = trainer_class(cfg.model_type)(cfg, setup, ctx, command, progress).run(stop)
        ctx.barrier()  # every rank done with the group (rank 0 saving last) before any leaves it
        return result
    finally:
        if setup is not None and setup.lock is not None:
            setup.lock.release()
        shutdown(ctx)


def trainer_class(model_type: str) -> type:
    """The :class:`Trainer` (sub)class that trains networks of ``model_type`` (see :data:`TRAINERS`)."""
    module, name = TRAINERS[NETWORKS[model_type].style_input]
    return getattr(importlib.import_module(module), name)
