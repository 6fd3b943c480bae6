"""A training run's TensorBoard event files (``events.out.tfevents.*``), read for the last logged
value of its loss scalars (``loss/total``, ``loss/content``, ... and ``val/...``): the losses a
model card reports.

The files are bounded before they are parsed (regular files, :data:`MAX_EVENT_BYTES` in all),
only scalars are kept (images, histograms and tensors are skipped as they are read), the tags
kept are fast-nst's (``loss/NAME``, ``val/NAME``), and values that are not finite numbers are
left out. A file TensorBoard cannot parse is one :class:`~fast_nst.core.errors.DataError`.
"""

from __future__ import annotations

import importlib
import math
import os
import re
from pathlib import Path
from typing import Optional

from ..errors import DataError
from .paths import input_file
from .text import shown

__all__ = ["MAX_EVENT_BYTES", "last_losses"]

# A 40,000-step run (the paper's two epochs of COCO at batch 4) logging scalars every 50 steps
# and 4 sample images every 500 writes about 50 MB; 1 GiB leaves room for long runs with many
# samples, and bounds the minutes spent parsing.
MAX_EVENT_BYTES = 1 << 30
# fast-nst's loss tags: loss/total, loss/content, loss/style, loss/tv, loss/stability, val/...
# (per-layer tags such as loss/style/relu1_2 are left out).
_LOSS_TAG = re.compile(r"^(loss|val)/[a-z_]{1,20}$")


def last_losses(folder: str | Path, up_to_step: Optional[int] = None) -> tuple[int, dict[str, float]]:
    """(the last step logged, {tag: last value}) of the loss scalars in the event files directly
    in ``folder``, at ``up_to_step`` or before (a checkpoint's step; None: the end); (0, {}) when
    there are none. DataError for files over :data:`MAX_EVENT_BYTES` in all or that cannot be
    parsed."""
    folder = Path(folder)
    files = sorted(folder.glob("events.out.tfevents.*"))
    if not files:
        return 0, {}
    total = 0
    for f in files:
        input_file(f, "TensorBoard event file")  # no FIFO or device: the parser would block on it
        total += os.stat(f).st_size
    if total > MAX_EVENT_BYTES:
        raise DataError(f"{folder}: its TensorBoard event files hold {total:,} bytes, more than the "
                        f"{MAX_EVENT_BYTES:,} read for a model card's losses.")
    accumulator = importlib.import_module("tensorboard.backend.event_processing.event_accumulator")
    # 0: keep every scalar (the last one is wanted); 1 of everything else: read past, not kept.
    acc = accumulator.EventAccumulator(str(folder), size_guidance={
        "scalars": 0, "images": 1, "histograms": 1, "tensors": 1, "audio": 1, "compressedHistograms": 1})
    try:
        acc.Reload()
        tags = [t for t in acc.Tags().get("scalars", []) if _LOSS_TAG.match(t)]
        kept = {t: [s for s in acc.Scalars(t) if up_to_step is None or s.step <= up_to_step] for t in tags}
        last = {t: found[-1] for t, found in kept.items() if found}
    except Exception as e:  # the parser's own errors (DataLossError, protobuf's DecodeError, ...)
        raise DataError(f"{folder}: its TensorBoard event files cannot be read "
                        f"({shown(type(e).__name__ + ': ' + str(e), 120)}).") from None
    values = {t: float(s.value) for t, s in last.items() if math.isfinite(s.value)}
    step = max((s.step for s in last.values()), default=0)
    return step, values
