"""Bookkeeping of a training run that costs no host sync per step: the loss terms accumulate on
the device, the first non-finite step is remembered there, and the share of time spent waiting
for the data loader is turned into advice when it is large.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..core.config import TrainConfig
from ..core.errors import FastNSTError
from .data import usable_cores, usable_workers

__all__ = ["DATA_WAIT_WARNING", "LossMonitor", "NonFiniteLossError", "feeding_advice"]

# Past this share of a logging interval spent waiting for the loader, training says (once) how to
# feed it faster: a 10 % speed-up is about the least worth a config change; below it the wait is
# mostly noise from logging and checkpoints.
DATA_WAIT_WARNING = 0.10


class NonFiniteLossError(FastNSTError):
    """A loss term became NaN or infinite."""


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


class LossMonitor:
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
