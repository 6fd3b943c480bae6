"""Saving what a run trains: checkpoints, the final model and the weight average they hold.

:class:`TrainerSaving` is the part of :class:`~fast_nst.training.trainer.Trainer` that checks the
weights are finite, writes training checkpoints (atomic; rank 0) and the final model, and keeps
the optional weight average (``ema_decay``, :mod:`.average`) that those files ship.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from ..core.errors import FastNSTError
from ..io import checkpoint as ckpt_io
from ..io.safetensors_file import SAFETENSORS_SUFFIX, write_safetensors
from ..nets.base import StyleNetwork
from .average import WeightAverage
from .distributed import OtherRankFailed
from .monitor import NonFiniteLossError
from .setup import CONFIG_FILE

__all__ = ["TrainResult", "TrainerSaving"]


@dataclass
class TrainResult:
    """Where a finished run put its model and checkpoints, and what it did."""

    run_dir: Path
    model_file: Path
    last_checkpoint: Optional[Path]
    step: int
    seconds: float
    skipped_files: int


class TrainerSaving:
    """Checkpoint and final-model methods of the trainer (a mixin: they use the trainer's
    ``cfg``, ``setup``, ``ctx``, ``model``, ``optimizer``, ``scaler``, ``monitor`` and ``step``)."""

    def _start_average(self) -> Optional[WeightAverage]:
        """The weight average when ``ema_decay`` is set, copied from the network as _build_model
        left it: on a resume, the checkpoint's ``model_state`` (the saved average of a run that
        averaged). Then the network gets the weights training continues from, the checkpoint's
        ``training_state`` when it has one."""
        average = WeightAverage(self.model, self.cfg.ema_decay) if self.cfg.ema_decay else None
        ckpt = self.setup.resume_ckpt
        if ckpt is not None and "training_state" in ckpt:
            ckpt_io.load_training_state(self.model, ckpt, self.setup.resume_path)
        return average

    @property
    def shipped(self) -> StyleNetwork:
        """The network the run saves, validates and shows: the weight average, or the network."""
        return self.average.model if self.average is not None else self.model

    # -- checkpoints ------------------------------------------------------------------------------

    def check_finite(self) -> None:
        """Raise on every rank if any rank saw a NaN/inf loss term (a host sync)."""
        (bad,) = self.ctx.agree([self.monitor.has_nonfinite()])
        if bad:
            self.monitor.check_finite(self.last_ckpt)  # raises on the ranks that saw it
            raise OtherRankFailed("Non-finite loss on another process; training stopped.")

    def check_weights(self) -> None:
        """Raise if a weight is NaN/inf (a finite loss can still give non-finite weights: lr too
        high); nothing is written for such a step. One host sync, at checkpoints only."""
        finite = torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all()
        (bad,) = self.ctx.agree([int(not bool(finite))])
        if bad:
            kept = (f"The last good checkpoint is {self.last_ckpt} (untouched)." if self.last_ckpt
                    else "No checkpoint was written before it.")
            raise NonFiniteLossError(
                f"The network's weights became NaN or infinite by step {self.step} (lr "
                f"{self.cfg.lr:g}); nothing was saved for this step. {kept} Lower lr or the loss weights.")

    def save_checkpoint(self) -> Optional[Path]:
        """A training checkpoint of this step (rank 0 writes it); returns the newest one."""
        self.check_finite()
        self.check_weights()
        if self.main:
            ckpt = ckpt_io.make_checkpoint(self.shipped, self.cfg, self.step, self.optimizer,
                                           trained=self.model if self.average is not None else None)
            ckpt["world_size"] = self.ctx.world_size  # a resume must keep the global batch
            if self.scaler.is_enabled():
                ckpt["scaler_state"] = self.scaler.state_dict()
            self.last_ckpt = self._write("checkpoint", lambda: ckpt_io.save_training_checkpoint(
                ckpt, self.setup.run_dir, self.cfg.keep_checkpoints))
        return self.last_ckpt

    def _write(self, what: str, write: Callable[[], Path]) -> Path:
        """``write()``, with a full disk or lost folder turned into one message: the files
        written before are intact (every write is atomic), and the run can resume from them."""
        try:
            return write()
        except OSError as e:
            kept = (f"The previous checkpoint {self.last_ckpt} is intact." if self.last_ckpt
                    else "No checkpoint was written before.")
            raise FastNSTError(
                f"Cannot write the {what} of step {self.step} in {self.setup.run_dir}: {e.strerror or e}. "
                f"{kept} Free some space (or move the run) and continue with: {self.command} --resume"
            ) from None

    #: What the stylize hint of :meth:`finish` adds to eval.py's command line.
    stylize_flags = ""

    def finish(self, seconds: float) -> TrainResult:
        """The final model (rank 0) and the summary; every rank returns after it exists."""
        self.check_finite()
        self.check_weights()
        model_file, run_dir = self.setup.model_file, self.setup.run_dir
        self.bar.close()  # its last line stays; the summary goes below it
        if self.main:
            final = ckpt_io.make_checkpoint(self.shipped, self.cfg, self.step)

            def save_final() -> Path:
                ckpt_io.atomic_torch_save(final, model_file)
                if self.cfg.final_format == "safetensors":
                    write_safetensors(final, model_file.with_suffix(SAFETENSORS_SUFFIX))
                return model_file

            self._write("final model", save_final)
            skipped = f" Skipped {len(self.skipped)} unreadable training files." if self.skipped else ""
            newest = self.last_ckpt.name if self.last_ckpt else "-"
            also = (f" and {model_file.with_suffix(SAFETENSORS_SUFFIX).name}"
                    if self.cfg.final_format == "safetensors" else "")
            trained = self.step - self.start_step
            resumed = f" (resumed at step {self.start_step}, now at step {self.step})" if self.start_step else ""
            print(
                f"Done: {trained} step{'s' if trained != 1 else ''} in {seconds:.1f} s{resumed}.{skipped}\n"
                f"  model:       {model_file}{also}\n"
                f"  checkpoints: {run_dir / ckpt_io.CHECKPOINT_DIR} (newest {newest})\n"
                f"  config:      {run_dir / CONFIG_FILE}\n"
                f"  TensorBoard: tensorboard --logdir {run_dir}\n"
                f"  stylize:     python eval.py --model_file {model_file} --image_file PHOTO.jpg{self.stylize_flags}",
                file=sys.stderr,
            )
        self.ctx.agree([0])  # the final model exists before any rank returns
        return TrainResult(run_dir, model_file, self.last_ckpt, self.step, seconds, len(self.skipped))
