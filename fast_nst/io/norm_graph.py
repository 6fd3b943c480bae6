"""Rewrites of an exported graph that let onnxruntime (or OpenVINO) stylize an image in tiles with
the instance-norm statistics of the whole image, and a video with statistics carried across
frames (what :mod:`fast_nst.stylize.tiling` and :mod:`fast_nst.stylize.temporal` do inside the
PyTorch network):

- :func:`recording_norm_statistics`: the graph with two more outputs per instance norm, the
  per-channel mean and variance of the norm's input (run once on the downscaled whole image);
- :func:`given_norm_statistics`: the graph with every instance norm replaced by a batch norm that
  takes that mean and variance as graph inputs (run on each tile);
- :func:`carried_norm_statistics`: for video, each norm averaging its own statistics with the
  previous frame's (inputs and outputs), as :mod:`fast_nst.stylize.temporal` does in PyTorch.

A batch norm in inference mode computes ``(x - mean) / sqrt(var + eps) * scale + bias``, which is
the instance norm of a photo when mean and var are the photo's own (biased) per-channel
statistics; so the given-statistics graph of a tile with the statistics recorded on that same
tile is the original graph, up to float rounding. Norm i's statistics are named
``norm_stats.{i}.mean`` and ``norm_stats.{i}.var`` (shape (C,)) in every rewritten graph, in
graph order.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ..core.untrusted import read_onnx_model

__all__ = ["STATS_PREFIX", "WEIGHT_NAME", "carried_names", "carried_norm_statistics", "given_norm_statistics",
           "norm_count", "recording_norm_statistics", "stats_names"]

STATS_PREFIX = "norm_stats"
# The carried graph's input weighing a frame's own statistics against the running averages.
WEIGHT_NAME = f"{STATS_PREFIX}.weight"
# The first opset whose ReduceMean takes its axes as an input rather than an attribute.
_REDUCE_AXES_INPUT_OPSET = 18
# The first opset whose BatchNormalization has training_mode (and no is_test/spatial attributes).
_BATCH_NORM_OPSET = 15


def stats_names(index: int) -> tuple[str, str]:
    """The names of norm ``index``'s mean and variance in the rewritten graphs (outputs of the
    recording one, inputs of the others)."""
    return f"{STATS_PREFIX}.{index}.mean", f"{STATS_PREFIX}.{index}.var"


def carried_names(index: int) -> tuple[str, str]:
    """The names of norm ``index``'s running averages that :func:`carried_norm_statistics` outputs."""
    return f"{STATS_PREFIX}.{index}.mean.carried", f"{STATS_PREFIX}.{index}.var.carried"


def _is_norm(node: Any) -> bool:
    return node.op_type == "InstanceNormalization" and node.domain in ("", "ai.onnx")


def _norms(graph: Any) -> list:
    return [n for n in graph.node if _is_norm(n)]


def _opset(model: Any) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def norm_count(data: bytes, max_bytes: int) -> int:
    """How many instance norms the .onnx bytes ``data`` hold (0 for a graph that does not parse)."""
    try:
        return len(_norms(read_onnx_model(data, max_bytes).graph))
    except Exception:  # noqa: BLE001 - a foreign or damaged file simply has none to rewrite
        return 0


def _dequantized(x: str, graph: Any) -> Optional[tuple[str, str, str]]:
    """(the quantized input, scale, zero point) of a per-tensor DequantizeLinear that makes ``x``
    (an int8 graph's norm input), or None."""
    inits = {i.name: i for i in graph.initializer}
    for n in graph.node:
        if x in n.output:
            if n.op_type != "DequantizeLinear" or len(n.input) != 3:
                return None
            if all(name in inits and not list(inits[name].dims) for name in n.input[1:]):
                return n.input[0], n.input[1], n.input[2]
            return None
    return None


def _channel_stats(x: str, index: int, opset: int, graph: Any, names: tuple[str, str]) -> list:
    """Nodes writing the mean and the biased variance of ``x`` (1, C, H, W) over H and W, each
    as (C,), under ``names``: the variance of x - mean (E[x^2] - E[x]^2 in one pass was not
    accurate enough in float32: variances off by up to 0.2 %, an int8 graph's tiles up to 31
    levels from its whole image).
    Where ``x`` is dequantized (an int8 graph), they read the quantized map cast to float and
    rescale the results: onnxruntime gives each reader of a dequantized map a dequantization of
    its own (four instead of one here: the carried graph of the default network in int8 took
    1.21x a frame's time at 1280 x 720 that way, 1.08x this way)."""
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np

    tag = f"{STATS_PREFIX}/{index}"
    axes, flat = f"{tag}/axes", f"{tag}/flat"
    graph.initializer.extend(numpy_helper.from_array(np.array(v, np.int64), name) for v, name in
                             (([2, 3], axes), ([-1], flat)))
    attrs, extra = ({"axes": [2, 3]}, []) if opset < _REDUCE_AXES_INPUT_OPSET else ({}, [axes])

    def node(op: str, inputs: list, out: str, **kw: Any) -> Any:
        return helper.make_node(op, inputs, [f"{tag}/{out}"], name=f"{tag}/{out}", **kw)

    def t(name: str) -> str:
        return f"{tag}/{name}"
    quantized = _dequantized(x, graph)
    src = x if quantized is None else t("cast")
    nodes = [] if quantized is None else [node("Cast", [quantized[0]], "cast", to=TensorProto.FLOAT)]
    nodes += [node("ReduceMean", [src, *extra], "m", keepdims=1, **attrs),  # (1, C, 1, 1)
              node("Sub", [src, t("m")], "d"),
              node("Mul", [t("d"), t("d")], "d2"),
              node("ReduceMean", [t("d2"), *extra], "v", keepdims=1, **attrs)]
    mean, var = t("m"), t("v")
    if quantized is not None:  # x = scale x (q - zero point)
        _, scale, zero = quantized
        nodes += [node("Cast", [zero], "zero", to=TensorProto.FLOAT),
                  node("Sub", [t("m"), t("zero")], "centred"),
                  node("Mul", [t("centred"), scale], "mean"),
                  node("Mul", [scale, scale], "scale2"),
                  node("Mul", [t("v"), t("scale2")], "var")]
        mean, var = t("mean"), t("var")
    return nodes + [helper.make_node("Reshape", [mean, flat], [names[0]], name=names[0]),
                    helper.make_node("Reshape", [var, flat], [names[1]], name=names[1])]


def _batch_norm(norm: Any, index: int, stats: tuple[str, str]) -> Any:
    """The batch norm computing what the instance norm ``norm`` does, with the statistics ``stats``."""
    from onnx import helper

    eps = [a.f for a in norm.attribute if a.name == "epsilon"]
    return helper.make_node("BatchNormalization", [*norm.input[:3], *stats], list(norm.output),
                            name=norm.name or f"{STATS_PREFIX}/{index}/norm", epsilon=eps[0] if eps else 1e-5)


def _rewritten(data: bytes, max_bytes: int, replace: Callable[[Any, int, Any, int], list],
               batch_norms: bool) -> tuple[bytes, int]:
    """(the .onnx bytes ``data`` with each instance norm replaced by ``replace(norm, index,
    graph, opset)``'s nodes, the number of norms). Raises for a graph that does not parse, or
    (``batch_norms``: the nodes include one) whose opset has no BatchNormalization of this form."""
    model = read_onnx_model(data, max_bytes)
    graph, opset = model.graph, _opset(model)
    if batch_norms and opset < _BATCH_NORM_OPSET:
        raise ValueError(f"opset {opset} is older than {_BATCH_NORM_OPSET}")
    nodes: list = []
    norms = 0
    for n in graph.node:
        if _is_norm(n):
            nodes.extend(replace(n, norms, graph, opset))
            norms += 1
        else:
            nodes.append(n)
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString(), norms


def _vector(graph: Any, name: str, inputs: bool) -> None:
    """Declare the float (C,) value ``name`` a graph input (``inputs``) or output."""
    from onnx import TensorProto, helper

    (graph.input if inputs else graph.output).append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["C"]))


def recording_norm_statistics(data: bytes, max_bytes: int) -> tuple[bytes, int]:
    """(the graph of the .onnx bytes ``data`` with each instance norm's input statistics as
    further outputs (see the module's docs), the number of norms). Raises for a graph that does
    not parse."""
    def replace(norm: Any, index: int, graph: Any, opset: int) -> list:
        for name in stats_names(index):
            _vector(graph, name, inputs=False)
        return [norm, *_channel_stats(norm.input[0], index, opset, graph, stats_names(index))]
    return _rewritten(data, max_bytes, replace, batch_norms=False)


def given_norm_statistics(data: bytes, max_bytes: int) -> tuple[bytes, int]:
    """(the graph of the .onnx bytes ``data`` with each instance norm a batch norm of the
    statistics given as graph inputs (see the module's docs), the number of norms). Raises
    for a graph that does not parse."""
    def replace(norm: Any, index: int, graph: Any, opset: int) -> list:
        for name in stats_names(index):
            _vector(graph, name, inputs=True)
        return [_batch_norm(norm, index, stats_names(index))]
    return _rewritten(data, max_bytes, replace, batch_norms=True)


def carried_norm_statistics(data: bytes, max_bytes: int) -> tuple[bytes, int]:
    """(the graph of the .onnx bytes ``data`` for one video frame with each instance norm using
    running averages of its statistics, the number of norms). Norm i takes the previous frame's
    averages as inputs (:func:`stats_names`), averages them with this frame's own statistics,
    ``carried = previous + weight x (own - previous)`` (input :data:`WEIGHT_NAME`, shape (1,):
    1 - momentum, or 1 to start afresh), normalises with the result and outputs it
    (:func:`carried_names`), as :class:`fast_nst.stylize.temporal.TemporalStatistics` does inside
    the PyTorch network. Raises for a graph that does not parse."""
    from onnx import TensorProto, helper

    def replace(norm: Any, index: int, graph: Any, opset: int) -> list:
        if index == 0:
            graph.input.append(helper.make_tensor_value_info(WEIGHT_NAME, TensorProto.FLOAT, [1]))
        tag = f"{STATS_PREFIX}/{index}"
        own = (f"{tag}/own_mean", f"{tag}/own_var")
        nodes = _channel_stats(norm.input[0], index, opset, graph, own)
        for previous, mine, carried in zip(stats_names(index), own, carried_names(index)):
            _vector(graph, previous, inputs=True)
            _vector(graph, carried, inputs=False)
            nodes += [helper.make_node("Sub", [mine, previous], [f"{carried}/step"], name=f"{carried}/step"),
                      helper.make_node("Mul", [f"{carried}/step", WEIGHT_NAME], [f"{carried}/part"], name=f"{carried}/part"),
                      helper.make_node("Add", [previous, f"{carried}/part"], [carried], name=carried)]
        return [*nodes, _batch_norm(norm, index, carried_names(index))]
    return _rewritten(data, max_bytes, replace, batch_norms=True)
