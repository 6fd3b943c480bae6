"""What a training run shows while it trains: TensorBoard logs, the progress line, sample and
validation photos. :class:`TrainerReporting` is the part of
:class:`~fast_nst.training.trainer.Trainer` that reads its state (losses, step, writer) and
writes it out; it changes nothing that training computes."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Optional

import torch
from tqdm import tqdm

from ..core.config import save_config
from ..core.errors import FastNSTError
from .data import load_sample_images
from .monitor import feeding_advice, progress_fields
from .setup import CONFIG_FILE

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["TrainerReporting"]


def _summary_writer() -> type["SummaryWriter"]:
    """TensorBoard's writer class, imported when a run starts logging: commands that import the
    training package (train.py --help, download, data) do not load TensorBoard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise FastNSTError("Training logs need the tensorboard package (a dependency of fast-nst): "
                           "pip install tensorboard") from None
    return SummaryWriter


class TrainerReporting:
    """Logging and validation methods of the trainer (a mixin: they use the trainer's ``cfg``,
    ``setup``, ``step``, ``writer``, monitors and ``stylize``)."""

    def _open_logs(self) -> tuple[torch.Tensor, Optional["SummaryWriter"]]:
        """Fixed sample photos and the TensorBoard writer (rank 0 only); the resolved config."""
        cfg, run_dir = self.cfg, self.setup.run_dir
        if not self.main:
            return torch.zeros(0), None
        writer_class = _summary_writer()
        # Sample photos show generalisation best when the network never trained on them.
        pool = self.setup.val_files or self.setup.files
        samples = load_sample_images(cfg.sample_images, pool, cfg.num_samples, cfg.image_size).to(self.device)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / CONFIG_FILE)
            # Drop what a stopped run logged after its checkpoint; keep the checkpoint step's own.
            writer = writer_class(log_dir=str(run_dir),
                                  purge_step=self.start_step + 1 if self.setup.resume_ckpt else None)
        except OSError as e:
            raise FastNSTError(f"Cannot write the config and logs in {run_dir}: {e.strerror or e}. "
                               "Free some space or set model_path to a writable folder.") from None
        if self.start_step == 0:
            for i, name in enumerate(self.setup.style_names if self.multi else []):
                writer.add_image(f"style/{name}", self.setup.styles[i][0], 0)
            if not self.multi and self.setup.styles:
                writer.add_image("style", self.setup.style[0], 0)
            if len(samples):
                writer.add_images("samples/content", samples.cpu(), 0)
        return samples, writer

    def _load_validation(self) -> torch.Tensor:
        """``val_images`` fixed photos of val_dir, (V, 3, S, S) in [0, 1] on the device (rank 0
        only: every rank would compute the same numbers)."""
        cfg = self.cfg
        if not (self.main and self.setup.val_files):
            return torch.zeros(0)
        photos = load_sample_images([], self.setup.val_files, cfg.val_images, cfg.image_size)
        return photos.to(self.device, memory_format=self.memory_format)

    @torch.no_grad()
    def log_samples(self) -> None:
        """The sample photos stylized (TensorBoard ``samples/stylized``, one tag per style)."""
        for k, name in enumerate(self.setup.style_names if self.multi else [""]):
            tag = f"samples/stylized/{name}" if self.multi else "samples/stylized"
            self.writer.add_images(tag, self.stylize(self.samples, k).float().cpu(), self.step)

    def log_styles(self) -> None:
        """Each style's mean losses since the last log (multi-style runs: ``loss/<style>/...``)."""
        for monitor, name in zip(self.style_monitors, self.setup.style_names):
            if not monitor.count:
                continue
            means = self.ctx.all_mean(monitor.pop_means()).tolist()
            if self.writer is not None:
                for key, value in zip(monitor.keys, means):
                    self.writer.add_scalar(f"loss/{name}/{key}", value, self.step)

    def log(self) -> None:
        """Mean losses since the last log, speed and data wait: TensorBoard, bar, log line."""
        self.check_finite()  # a host sync: the device has caught up, so the times are real
        now = time.perf_counter()
        rate = (self.step - self.step_log) * self.global_batch / max(now - self.t_log, 1e-9)
        # This process's share of the interval spent waiting for its loader.
        wait = min(1.0, self.waited / max(now - self.t_log, 1e-9))
        warm = self.step_log > self.start_step  # the first interval includes starting the workers
        self.t_log, self.step_log, self.waited = now, self.step, 0.0
        means = dict(zip(self.keys, self.ctx.all_mean(self.monitor.pop_means()).tolist()))
        if self.writer is not None:
            for k, v in means.items():
                self.writer.add_scalar(f"loss/{k}", v, self.step)
            self.writer.add_scalar("perf/images_per_s", rate, self.step)
            self.writer.add_scalar("perf/data_wait", wait, self.step)
            self.writer.add_scalar("lr", self.optimizer.param_groups[0]["lr"], self.step)
        self.log_styles()
        shown = " ".join(f"{k}={v}" for k, v in progress_fields(means, rate, wait, self.val_total).items())
        if warm and self.main and not self.advised:
            advice = feeding_advice(wait, self.cfg, self.cache is not None, self.ctx.world_size)
            if advice:
                self.advised = True
                tqdm.write(f"warning: {advice}", file=sys.stderr)
        if self.bar.disable and self.main:  # no bar (batch jobs, log files): one line per log
            print(f"step {self.step}/{self.steps}: {shown}", file=sys.stderr, flush=True)
        self.bar.set_postfix_str(shown)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss terms on the validation photos (TensorBoard ``val/...``) and their
        stylizations (``val/stylized``); rank 0 only, batch by batch like training. A multi-style
        run validates every style (``val/<style>/...``); ``val/...`` is the mean over styles."""
        keys = ["total", "content", "style", "tv"]
        per_style = []
        for k, name in enumerate(self.setup.style_names if self.multi else [""]):
            means, shown = self._validate_style(k, keys)
            per_style.append(means)
            if self.writer is not None and self.multi:
                for key, value in means.items():
                    self.writer.add_scalar(f"val/{name}/{key}", value, self.step)
            if self.writer is not None:
                tag = f"val/stylized/{name}" if self.multi else "val/stylized"
                self.writer.add_images(tag, shown[: self.cfg.num_samples or 4].float().cpu(), self.step)
        means = {key: sum(m[key] for m in per_style) / len(per_style) for key in keys}
        self.val_total = means["total"]
        if self.writer is not None:
            for key, value in means.items():
                self.writer.add_scalar(f"val/{key}", value, self.step)
        return means

    def _validate_style(self, k: int, keys: list[str]) -> tuple[dict[str, float], torch.Tensor]:
        """Mean ``keys`` terms of the config's style ``k`` on the validation photos, and the
        first batch's stylizations (n, 3, S, S)."""
        sums = torch.zeros(len(keys), dtype=torch.float64, device=self.device)
        shown = None
        for chunk in self.val_photos.split(self.cfg.batch_size):  # (n, 3, S, S) in [0, 1]
            with self.autocast():
                y = self.stylize(chunk, k)
                terms = self.criterion(y, chunk, self.style_indices[k])
            sums += torch.stack([terms[key].double() for key in keys]) * len(chunk)
            shown = y if shown is None else shown
        return dict(zip(keys, (sums / len(self.val_photos)).tolist())), shown

