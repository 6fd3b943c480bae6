"""Bookkeeping of a training run that costs no host sync per step: the loss terms accumulate on
the device, the first non-finite step is remembered there, and the share of time spent waiting
for the data loader is turned into advice when it is large. Also what a user sees of it: the
progress bar and its loss fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm
from tqdm.utils import disp_len

from ..core.config import TrainConfig
from ..core.errors import FastNSTError
from .data import load_side, usable_cores, usable_workers

__all__ = ["DATA_WAIT_WARNING", "BAR_FORMAT", "MIN_BAR_COLUMNS", "LossMonitor", "NonFiniteLossError", "ProgressBar",
           "feeding_advice", "progress_fields"]

# Past this share of a logging interval spent waiting for the loader, training says (once) how to
# feed it faster: a 10 % speed-up is about the least worth a config change; below it the wait is
# mostly noise from logging and checkpoints.
DATA_WAIT_WARNING = 0.10

# The narrowest bar the progress line keeps by dropping loss fields: 10 columns show progress in
# steps of 10 % (with tqdm's partial-block characters, finer), enough to read at a glance.
MIN_BAR_COLUMNS = 10
# What tqdm's format_meter draws as the bar when given no width (ncols=None).
_TQDM_DEFAULT_BAR = 10
# tqdm's default line without its rate (steps/s): the fields hold the speed in images/s.
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


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
        # The trainer opens the cache of the shorter side it resizes photos to: resize_to's when set.
        fixes.append("the pre-resized cache, which training uses when it exists: "
                     f"python -m fast_nst.data prepare {cfg.train_dir} --image_size {load_side(cfg)}")
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


def progress_fields(means: dict[str, float], images_per_s: float, wait: float,
                    val_total: Optional[float] = None) -> dict[str, str]:
    """The fields of the progress bar and log line, most important first (the bar drops them
    from the end when the terminal is narrow): the total loss, the validation loss, the loss
    terms, the speed and the share of time spent waiting for data (0..1)."""
    fields = {"loss": _short(means["total"], 4)}
    if val_total is not None:
        fields["val"] = _short(val_total, 4)
    fields.update(content=_short(means["content"], 3), style=_short(means["style"], 3),
                  tv=_short(means["tv"], 2))
    if "stability" in means:  # only where stability_weight > 0
        fields["stability"] = _short(means["stability"], 2)
    fields.update(img_s=f"{images_per_s:.1f}", data_wait=f"{wait:.0%}")
    return fields


def _short(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant digits, its exponent without "+" and leading zeros
    (3.749e5, not 3.749e+05)."""
    text = f"{value:.{digits}g}"
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return f"{mantissa}e{int(exponent)}"


class ProgressBar(tqdm):
    """tqdm whose postfix (``key=value`` fields separated by spaces, most important first, see
    :func:`progress_fields`) loses fields from its end while the line would leave the bar fewer
    than :data:`MIN_BAR_COLUMNS` columns; the first field (the total loss) always stays. Plain
    tqdm shrinks the bar to one character and cuts the line's end off instead. The line is
    :data:`BAR_FORMAT` unless another ``bar_format`` is given."""

    @staticmethod
    def format_meter(n, total, elapsed, ncols=None, postfix=None, **kwargs) -> str:  # type: ignore[override]
        kwargs["bar_format"] = kwargs.get("bar_format") or BAR_FORMAT
        fields = postfix.split(" ") if postfix else []
        while ncols and len(fields) > 1:
            line = tqdm.format_meter(n, total, elapsed, postfix=" ".join(fields), **kwargs)
            if ncols - (disp_len(line) - _TQDM_DEFAULT_BAR) >= MIN_BAR_COLUMNS:
                break
            fields.pop()
        return tqdm.format_meter(n, total, elapsed, ncols=ncols, postfix=" ".join(fields) or None, **kwargs)
