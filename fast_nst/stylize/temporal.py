"""Stable instance-norm statistics for video: less flicker without retraining.

Every instance norm of a transform network normalises each frame with that frame's own mean and
variance; they move a little from frame to frame (noise, objects entering), and the whole
stylization pumps with them. :class:`TemporalStatistics` carries them across frames instead: each
norm uses a running average (``momentum`` of the previous frame's statistics, ``1 - momentum``
of its own), through the same :meth:`~fast_nst.nets.base.InferenceNetwork.shared_norm_statistics`
mechanism that tiling uses to give every tile the whole image's statistics. A scene cut (the
frame differs from the one before by more than ``cut``) starts the averages afresh.

Works for every PyTorch model (single-style, multi-style, AdaIN), and for fast-nst's exports of
them in onnxruntime or OpenVINO (``can_carry``: a rewritten graph averages the statistics,
:func:`fast_nst.io.norm_graph.carried_norm_statistics`), frame by frame; not for arbitrary-style
exports written by an earlier version (their AdaIN is no instance norm).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Optional

import torch
import torch.nn.functional as F

from .base import OptionError, Stylizer

__all__ = ["DEFAULT_CUT", "DEFAULT_MOMENTUM", "FrameChanges", "TemporalStatistics", "supports_temporal"]

# 0.9: the statistics follow a change of lighting within about 10 frames (0.4 s at 25 fps) and
# average the per-frame jitter over as many; measured on the known-motion clips of docs/video.md.
DEFAULT_MOMENTUM = 0.9
# A scene cut: the mean absolute difference of 32 x 32 thumbnails of consecutive frames above 0.15
# (38 levels). A 2 px/frame pan gives ~0.01-0.05 on photos; a cut between two shots 0.2-0.4.
DEFAULT_CUT = 0.15
_THUMB = 32


def _in_torch(stylizer: Stylizer) -> bool:
    runner = getattr(stylizer, "runner", None)
    return runner is not None and hasattr(runner, "shared_norm_statistics") and getattr(stylizer, "can_tile", False)


def supports_temporal(stylizer: Stylizer) -> bool:
    """Whether ``stylizer`` can carry norm statistics across frames (its network can share them,
    or its exported graph can average them: ``can_carry``)."""
    return _in_torch(stylizer) or bool(getattr(stylizer, "can_carry", False))


class TemporalStatistics:
    """Stylize consecutive frames with instance-norm statistics carried across them.

    >>> with TemporalStatistics(stylizer) as video:
    ...     for frames in batches:               # (N, 3, H, W) in [0, 1], in order
    ...         out = video.stylize(frames)      # (N, 3, H, W) in [0, 1]

    Raises :class:`OptionError` for a stylizer that cannot (an ``.onnx`` file not made by
    fast-nst, or an arbitrary-style one exported by an earlier version).
    """

    def __init__(self, stylizer: Stylizer, momentum: float = DEFAULT_MOMENTUM, cut: float = DEFAULT_CUT):
        if not supports_temporal(stylizer):
            name = stylizer.name or "this model"
            raise OptionError(f"stable statistics across frames need a PyTorch model or a fast-nst export "
                              f"(arbitrary-style ones exported by this version or later); {name} cannot share "
                              "them: use --temporal off, or the .pth model")
        if not 0.0 <= momentum < 1.0:
            raise OptionError(f"temporal momentum must be in [0, 1), got {momentum}")
        self.stylizer, self.momentum, self.cut = stylizer, momentum, cut
        self._stack: Optional[ExitStack] = None
        self._last: Optional[torch.Tensor] = None  # the previous frame's thumbnail (3, 32, 32)
        self.cuts = 0

    def __enter__(self) -> "TemporalStatistics":
        self._stack = ExitStack()
        if not _in_torch(self.stylizer):  # an export: its graph carries them (stylize_carrying)
            self.runner, self.carried, self.style = None, None, self.stylizer.style
            return self
        self.runner = self.stylizer.runner
        self.stats = self._stack.enter_context(self.runner.shared_norm_statistics())
        self.stats.mode, self.stats.momentum, self.stats.stats = "carry", self.momentum, []
        return self

    def __exit__(self, *exc) -> None:
        if self._stack is None:  # not entered (or left already)
            return
        self._stack.close()
        self._stack = None

    def restarts(self, x: torch.Tensor) -> list[bool]:
        """Per frame of ``x`` (N, 3, H, W) in [0, 1]: whether it starts a new scene (the first frame
        does); counts the cuts after the first frame in :attr:`cuts`."""
        thumbs = F.adaptive_avg_pool2d(x.float(), _THUMB).cpu()  # (N, 3, 32, 32)
        flags = []
        for t in thumbs:
            new = self._last is None or float((t - self._last).abs().mean()) > self.cut
            self.cuts += int(new and self._last is not None)
            flags.append(new)
            self._last = t
        return flags

    def stylize(self, x: torch.Tensor) -> torch.Tensor:
        """The next frames ``x`` (N, 3, H, W) float in [0, 1] -> their stylizations, the same shape
        in [0, 1] (see :meth:`Stylizer.stylize_tensor`)."""
        if self._stack is None:
            raise RuntimeError("use TemporalStatistics as a context manager (with ...)")
        if self.runner is None:
            if self.stylizer.style is not self.style:  # another style or blend: start afresh
                self.carried, self.style, self._last = None, self.stylizer.style, None
            y, self.carried = self.stylizer.stylize_carrying(x, self.restarts(x), self.momentum, self.carried)
            return y
        if self.stylizer.runner is not self.runner:  # the style changed: start afresh
            self.__exit__()
            self.__enter__()
            self._last = None
        self.stats.restart = self.restarts(x)
        return self.stylizer.stylize_tensor(x)


class FrameChanges:
    """The flow-free flicker measure of a video: mean |S_t - S_t-1| / mean |I_t - I_t-1| over
    consecutive frames, fed batch by batch (:meth:`add`)."""

    def __init__(self) -> None:
        self.styled = self.inputs = 0.0
        self._last: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The next frames ``x`` (N, 3, H, W) in [0, 1] and their stylizations ``y`` (same shape)."""
        x, y = x.float().cpu(), y.float().cpu()
        if self._last is not None:
            x, y = torch.cat([self._last[0], x]), torch.cat([self._last[1], y])
        if len(x) > 1:
            self.inputs += float((x[1:] - x[:-1]).abs().mean(dim=(1, 2, 3)).sum())
            self.styled += float((y[1:] - y[:-1]).abs().mean(dim=(1, 2, 3)).sum())
        self._last = (x[-1:], y[-1:])

    @property
    def ratio(self) -> Optional[float]:
        """The ratio, or None before two frames (or for frames that never changed)."""
        return self.styled / self.inputs if self.inputs > 0 else None
