"""What every transform network offers the rest of fast-nst: the contract that stylizing, tiling,
export and checkpoints rely on, so none of them needs to know a network's layers.

A registered network (see :data:`fast_nst.nets.NETWORKS`) subclasses :class:`StyleNetwork`;
its CPU-optimised inference form (if it has one) implements :class:`InferenceNetwork`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

__all__ = ["InferenceNetwork", "NormStats", "StyleNetwork"]


class NormStats:
    """Instance-norm statistics shared across calls, for tiling (see :mod:`fast_nst.stylize.tiling`).

    mode None: ordinary instance norm. "record": each norm, in call order, stores the (mean, var)
    of its input. "apply": each norm uses the stored statistics instead of its input's own.
    "carry" (video, see :mod:`fast_nst.stylize.temporal`): the batch is consecutive frames; each
    norm uses a running average over frames, ``momentum`` of the previous frame's statistics
    plus ``1 - momentum`` of its own, carried from one call to the next; a frame whose entry in
    ``restart`` is true (a scene cut) starts afresh.
    """

    def __init__(self) -> None:
        self.mode: str | None = None
        self.stats: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.index = 0
        self.momentum = 0.0
        self.restart: list[bool] = []

    def __call__(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, var), each (N or 1, C, 1, 1), for the norm being computed on ``y`` (N, C, H, W)."""
        if self.mode == "apply":
            mean, var = self.stats[self.index]
            self.index += 1
            return mean, var
        # Two plain reductions: torch.var_mean over (H, W) runs ~20x slower on CPU (6 ms vs
        # 0.3 ms for 128 x 128 x 128 in torch 2.14), and subtracting the mean first keeps the
        # variance exact where E[x^2] - E[x]^2 would cancel.
        mean = y.mean(dim=(2, 3), keepdim=True)
        var = (y - mean).square_().mean(dim=(2, 3), keepdim=True)
        if self.mode == "record":
            self.stats.append((mean, var))
        elif self.mode == "carry":
            return self._carry(mean, var)
        return mean, var

    def _carry(self, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The running averages (N, C, 1, 1) of this norm's per-frame ``mean``, ``var`` (N, C, 1, 1)
        over the frames so far; the last frame's are kept for the next call. One matrix product
        over the batch (the recursion unrolled by :meth:`_carry_weights`), not a loop per frame."""
        prev = self.stats[self.index] if self.index < len(self.stats) else None
        weights, from_prev = self._carry_weights(mean.shape[0], prev is not None, mean.device)
        out = []
        for k, cur in enumerate((mean, var)):
            flat = cur.flatten(1).float()  # (N, C)
            avg = weights @ flat
            if prev is not None:
                avg = avg + from_prev[:, None] * prev[k].flatten(1).float()
            out.append(avg.to(cur.dtype).view_as(cur))
        last = (out[0][-1:], out[1][-1:])
        if self.index < len(self.stats):
            self.stats[self.index] = last
        else:
            self.stats.append(last)
        self.index += 1
        return out[0], out[1]

    def _carry_weights(self, n: int, has_prev: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(W (n, n), w (n,)): frame i's average is sum_k W[i, k] x_k + w[i] x_prev, for the
        recursion a_i = m a_(i-1) + (1 - m) x_i restarted (a_i = x_i) where ``restart`` says and,
        without a previous frame, at frame 0. Cached per batch layout (every norm shares it)."""
        restart = tuple(bool(i < len(self.restart) and self.restart[i]) or (i == 0 and not has_prev)
                        for i in range(n))
        key = (n, restart, self.momentum, str(device))
        cached = getattr(self, "_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        m = self.momentum
        w = torch.zeros(n, n, dtype=torch.float64)
        w_prev = torch.zeros(n, dtype=torch.float64)
        for i in range(n):
            if restart[i]:
                w[i, i] = 1.0
            else:
                if i:
                    w[i] = m * w[i - 1]
                w_prev[i] = m * (w_prev[i - 1] if i else 1.0)
                w[i, i] += 1 - m
        result = (w.float().to(device), w_prev.float().to(device))
        self._cache = (key, result)
        return result


class InferenceNetwork(nn.Module):
    """Maps photos (N, 3, H, W) in [0, 1] to stylizations of the same shape in [0, 1].

    ``bytes_per_pixel``: peak memory of an fp32 forward under inference_mode, per input pixel
    (the tiling budget). ``receptive_radius``: how many input pixels away an output pixel can
    see (the context a tile needs). :meth:`shared_norm_statistics` lets tiling fix the
    statistics of every instance norm.
    """

    bytes_per_pixel: ClassVar[int] = 1024
    args: Any

    @property
    def receptive_radius(self) -> int:
        raise NotImplementedError

    @classmethod
    def radius_of(cls, args: Any) -> int:
        """The receptive radius of this class built with ``args``, without building it (what an
        exported graph's metadata names; see :func:`fast_nst.nets.receptive_radius`)."""
        raise NotImplementedError

    @classmethod
    def grid_of(cls, args: Any) -> int:
        """The pixel grid tiles of this class built with ``args`` start on: its total
        downsampling (a tile starting elsewhere pools other pixel groups than the whole image
        does). 4 for the Johnson networks' two stride-2 convolutions."""
        return 4

    @contextmanager
    def shared_norm_statistics(self) -> Iterator[NormStats]:
        """While active, every instance norm is controlled by the yielded :class:`NormStats`:
        set ``mode = "record"`` (the initial mode), run the whole (downscaled) image, then
        ``mode = "apply"`` for the tiles."""
        raise NotImplementedError
        yield  # pragma: no cover


class StyleNetwork(InferenceNetwork):
    """A trainable transform network, registered in :data:`fast_nst.nets.NETWORKS`.

    ``Args``: a frozen dataclass of the architecture arguments (``to_dict()`` for checkpoints;
    its constructor raises ``ValueError`` for arguments out of bounds). ``model_type``: the
    registry name, stored in every checkpoint. ``style_names``: see below.
    """

    model_type: ClassVar[str]
    Args: ClassVar[type]
    # The styles a multi-style network holds, in the order of its style vectors (stored in
    # checkpoints); a single-style network has none.
    style_names: list[str] = []

    def fast_inference(self, channels_last: bool = True) -> InferenceNetwork:
        """The same function, faster on the CPU (no gradients); by default the network itself."""
        return self

    def exportable(self) -> nn.Module:
        """The same function written so graph exporters keep N, H and W dynamic."""
        raise NotImplementedError(f"{type(self).__name__} cannot be exported")
