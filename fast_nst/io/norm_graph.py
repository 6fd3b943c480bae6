"""Two rewrites of an exported graph that let onnxruntime stylize an image in tiles with the
instance-norm statistics of the whole image (what :mod:`fast_nst.stylize.tiling` does inside the
PyTorch network):

- :func:`recording_norm_statistics`: the graph with two more outputs per instance norm, the
  per-channel mean and variance of the norm's input (run once on the downscaled whole image);
- :func:`given_norm_statistics`: the graph with every instance norm replaced by a batch norm that
  takes that mean and variance as graph inputs (run on each tile).

A batch norm in inference mode computes ``(x - mean) / sqrt(var + eps) * scale + bias``, which is
the instance norm of a photo when mean and var are the photo's own (biased) per-channel
statistics; so the given-statistics graph of a tile with the statistics recorded on that same
tile is the original graph, up to float rounding. Norm i's statistics are named
``norm_stats.{i}.mean`` and ``norm_stats.{i}.var`` (shape (C,)) in both graphs, in graph order.
"""

from __future__ import annotations

from typing import Any

from ..core.untrusted import read_onnx_model

__all__ = ["STATS_PREFIX", "given_norm_statistics", "norm_count", "recording_norm_statistics", "stats_names"]

STATS_PREFIX = "norm_stats"
# The first opset whose ReduceMean takes its axes as an input rather than an attribute.
_REDUCE_AXES_INPUT_OPSET = 18
# The first opset whose BatchNormalization has training_mode (and no is_test/spatial attributes).
_BATCH_NORM_OPSET = 15


def stats_names(index: int) -> tuple[str, str]:
    """The names of norm ``index``'s mean and variance in both rewritten graphs."""
    return f"{STATS_PREFIX}.{index}.mean", f"{STATS_PREFIX}.{index}.var"


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


def _channel_stats(x: str, index: int, opset: int, graph: Any) -> list:
    """Nodes writing the mean and the biased variance of ``x`` (1, C, H, W) over H and W, each
    as (C,), under the names :func:`stats_names` gives ``index``."""
    from onnx import helper, numpy_helper
    import numpy as np

    mean, var = stats_names(index)
    tag = f"{STATS_PREFIX}/{index}"
    axes, flat = f"{tag}/axes", f"{tag}/flat"
    graph.initializer.extend([numpy_helper.from_array(np.array([2, 3], np.int64), axes),
                              numpy_helper.from_array(np.array([-1], np.int64), flat)])
    attrs, extra = ({"axes": [2, 3]}, []) if opset < _REDUCE_AXES_INPUT_OPSET else ({}, [axes])

    def reduce(src: str, dst: str) -> Any:  # (1, C, H, W) -> (1, C, 1, 1)
        return helper.make_node("ReduceMean", [src, *extra], [dst], keepdims=1, name=dst, **attrs)
    return [reduce(x, f"{tag}/m"),
            helper.make_node("Sub", [x, f"{tag}/m"], [f"{tag}/d"], name=f"{tag}/d"),
            helper.make_node("Mul", [f"{tag}/d", f"{tag}/d"], [f"{tag}/d2"], name=f"{tag}/d2"),
            reduce(f"{tag}/d2", f"{tag}/v"),
            helper.make_node("Reshape", [f"{tag}/m", flat], [mean], name=mean),
            helper.make_node("Reshape", [f"{tag}/v", flat], [var], name=var)]


def recording_norm_statistics(data: bytes, max_bytes: int) -> tuple[bytes, int]:
    """(the graph of the .onnx bytes ``data`` with each instance norm's input statistics as
    further outputs (see the module's docs), the number of norms). Raises for a graph that does
    not parse."""
    from onnx import TensorProto, helper

    model = read_onnx_model(data, max_bytes)
    graph, opset = model.graph, _opset(model)
    nodes = []
    norms = 0
    for n in graph.node:
        nodes.append(n)
        if _is_norm(n):
            nodes.extend(_channel_stats(n.input[0], norms, opset, graph))
            for name in stats_names(norms):
                graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["C"]))
            norms += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString(), norms


def given_norm_statistics(data: bytes, max_bytes: int) -> tuple[bytes, int]:
    """(the graph of the .onnx bytes ``data`` with each instance norm a batch norm of the
    statistics given as graph inputs (see the module's docs), the number of norms). Raises
    for a graph that does not parse."""
    from onnx import TensorProto, helper

    model = read_onnx_model(data, max_bytes)
    graph = model.graph
    if _opset(model) < _BATCH_NORM_OPSET:
        raise ValueError(f"opset {_opset(model)} is older than {_BATCH_NORM_OPSET}")
    nodes = []
    norms = 0
    for n in graph.node:
        if not _is_norm(n):
            nodes.append(n)
            continue
        mean, var = stats_names(norms)
        eps = [a.f for a in n.attribute if a.name == "epsilon"]
        nodes.append(helper.make_node("BatchNormalization", [n.input[0], n.input[1], n.input[2], mean, var],
                                      list(n.output), name=n.name or f"{STATS_PREFIX}/{norms}/norm",
                                      epsilon=eps[0] if eps else 1e-5))
        for name in (mean, var):
            graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["C"]))
        norms += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString(), norms
