"""Norm statistics for exported graphs (onnxruntime, or OpenVINO's workers): a photo too large
for memory stylized in tiles that share the whole photo's instance-norm statistics, and video
frames whose statistics are carried across them, as the PyTorch network does
(:mod:`fast_nst.stylize.tiling`, :mod:`fast_nst.stylize.temporal`).

The file's graph is rewritten (:mod:`fast_nst.io.norm_graph`): for tiles, one graph records each
norm's statistics on the downscaled photo and another takes them as inputs for every tile; for
video, a third carries them from frame to frame. Each session is made when first needed (a few
hundred milliseconds) and kept.
How much context a tile needs comes from the network the export's metadata names
(``model_type`` and ``model_args``: the registry's receptive radius of that network), and so does
the pixel grid tiles start on (4; 8 for AdaIN at relu4_1). An export without them (not made by
fast-nst), or one with no instance norm (an arbitrary-style export written by an earlier
version, whose AdaIN did not normalise with one), cannot tile.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch

from ..core.errors import CheckpointError, FastNSTError
from ..core.images import shape_text
from ..core.untrusted import load_json
from ..io.norm_graph import (WEIGHT_NAME, carried_names, carried_norm_statistics, given_norm_statistics, norm_count,
                              recording_norm_statistics, stats_names)
from ..nets import NETWORKS, receptive_radius, tile_grid
from .base import round_up
from .tiling import context_for_radius

__all__ = ["OnnxTiling", "tiling_for"]

# Longest model_args text read from the metadata (untrusted): the registry's arguments are a
# few short numbers and names.
_MAX_ARGS_TEXT = 4096
# model_args is a flat mapping (a list value at most: depth 2).
_MAX_ARGS_DEPTH = 2

#: Runs a session: (session, feeds, the input's shape as text, output names) -> the outputs,
#: errors in fast-nst's words.
Runner = Callable[[Any, dict, str, list], list]


class OnnxTiling:
    """The rewritten graphs of an export (.onnx bytes ``data``, at most ``max_bytes``) for tiles
    (``context`` px of context per tile, a multiple of ``grid``, the pixel grid tiles start on)
    and for video frames. ``make_session(graph bytes, arena)`` makes a session of them
    (``arena``: whether onnxruntime keeps the memory of a run for the next)."""

    def __init__(self, data: bytes, max_bytes: int, make_session: Callable[[bytes, bool], Any], context: int,
                 grid: int = 4):
        self.data, self.max_bytes, self.make_session = data, max_bytes, make_session
        self.context, self.grid = context, grid
        self._norms: Optional[int] = None
        self._sessions: Optional[tuple[Any, Any]] = None
        self._carrying: Optional[Any] = None

    @property
    def norms(self) -> int:
        """How many instance norms the graph has (0: it cannot tile); counted once."""
        if self._norms is None:
            self._norms = norm_count(self.data, self.max_bytes)
        return self._norms

    def sessions(self) -> tuple[Any, Any]:
        """(the graph recording the statistics, the graph taking them), made once;
        FastNSTError if onnxruntime refuses them."""
        if self._sessions is None:
            try:
                record, _ = recording_norm_statistics(self.data, self.max_bytes)
                given, _ = given_norm_statistics(self.data, self.max_bytes)
                # The statistics run once per photo, at most 1024 px: no memory arena kept for them.
                self._sessions = (self.make_session(record, False), self.make_session(given, True))
            except Exception as e:  # noqa: BLE001 - a graph the rewrite or onnxruntime does not take
                detail = " ".join(str(e).split())[:200]
                raise FastNSTError(f"this .onnx model cannot stylize in tiles ({type(e).__name__}: {detail}); "
                                   "use --max_size to stylize it whole, or the .pth model") from None
        return self._sessions

    def _names(self, naming: Callable[[int], tuple[str, str]]) -> list[str]:
        """Every norm's two names under ``naming`` (stats_names, carried_names), in graph order."""
        return [name for i in range(self.norms) for name in naming(i)]

    def statistics(self, run: Runner, small: torch.Tensor, input_name: str,
                   feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each norm's mean and variance (C,) on ``small`` (1, 3, h, w) float in [0, 1], the
        downscaled photo, keyed by their input names in the tiles' graph; ``feeds``: the
        graph's other inputs (style weights)."""
        record, _ = self.sessions()
        wanted = self._names(stats_names)
        inp = np.ascontiguousarray(small.numpy(), dtype=np.float32)
        outs = run(record, {input_name: inp, **feeds}, shape_text(inp.shape), wanted)
        return dict(zip(wanted, outs))

    def tiles_session(self) -> Any:
        """The session that stylizes a tile with given statistics."""
        return self.sessions()[1]

    def carrying_session(self) -> Any:
        """The session that stylizes a video frame with statistics carried from the frames
        before (:func:`fast_nst.io.norm_graph.carried_norm_statistics`), made once."""
        if self._carrying is None:
            try:
                self._carrying = self.make_session(carried_norm_statistics(self.data, self.max_bytes)[0], True)
            except Exception as e:  # noqa: BLE001 - a graph the rewrite or the runtime does not take
                detail = " ".join(str(e).split())[:200]
                raise FastNSTError(f"this .onnx model cannot carry statistics across frames ({type(e).__name__}: "
                                   f"{detail}); use --temporal off, or the .pth model") from None
        return self._carrying

    def carry(self, run: Runner, frame: np.ndarray, input_name: str, output_name: str, feeds: dict[str, np.ndarray],
              weight: float, state: Optional[dict[str, np.ndarray]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(the stylization of ``frame`` (1, 3, H, W) float32 in [0, 1], the running averages
        to give the next frame) with each norm's statistics averaged as ``previous + weight x
        (own - previous)``; ``state`` None (or ``weight`` 1): this frame's own statistics."""
        if state is None:  # zeros of shape (1,) broadcast to any channel count: own = 0 + 1 x (own - 0)
            state, weight = {name: np.zeros(1, np.float32) for name in self._names(stats_names)}, 1.0
        carried = self._names(carried_names)
        outs = run(self.carrying_session(), {input_name: frame, **feeds, **state,
                                             WEIGHT_NAME: np.array([weight], np.float32)},
                   shape_text(frame.shape), [output_name, *carried])
        return outs[0], dict(zip(self._names(stats_names), outs[1:]))


def _network_geometry(meta: dict[str, str]) -> Optional[tuple[int, int]]:
    """(the tile context, the tiles' pixel grid) of the network the metadata names (untrusted
    text, bounded), None if it names none this version knows, with arguments it takes."""
    model_type, text = meta.get("model_type"), meta.get("model_args")
    if not isinstance(model_type, str) or model_type not in NETWORKS or not isinstance(text, str):
        return None
    try:
        args = load_json(text, "model_args", CheckpointError, max_bytes=_MAX_ARGS_TEXT, max_depth=_MAX_ARGS_DEPTH)
        if not isinstance(args, dict):
            return None
        grid = tile_grid(model_type, args)
        return round_up(context_for_radius(receptive_radius(model_type, args)), grid), grid
    except (CheckpointError, ValueError, TypeError, KeyError, NotImplementedError):  # not arguments this version takes
        return None


def tiling_for(data: bytes, max_bytes: int, meta: dict[str, str],
               make_session: Callable[[bytes, bool], Any]) -> Optional[OnnxTiling]:
    """Tiling for the graph ``data`` with metadata ``meta``, or None where its metadata names no
    network this version knows (one with no norm is found when first asked: ``norms`` 0)."""
    geometry = _network_geometry(meta)
    return None if geometry is None else OnnxTiling(data, max_bytes, make_session, *geometry)
