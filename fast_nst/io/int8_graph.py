"""Exact rewrites of the int8 (QDQ) graph that :mod:`fast_nst.io.quantize` writes: the same
output to the bit, fewer bytes moved.

- :func:`pad_quantized_values` (in every int8 export): reflection pads copy uint8 values instead
  of float32 ones.
- :func:`chunk_instance_norms`, with :func:`hoist_slices` (applied by :func:`for_onnxruntime`
  when fast-nst loads an int8 export into onnxruntime on the CPU; the file itself is left as
  it is, since other runtimes fuse the plain form better). Between two int8 convolutions each
  instance norm reads a uint8 map, dequantizes it to float32, takes its statistics and
  normalizes it (onnxruntime: three passes over each channel, on one thread), and quantizes the
  result: at 1024 x 1024 the float32 maps (32-128 MB) no longer stay in the cache, and these
  passes cost 6-9x their 512 x 512 time (docs/benchmarks.md). Split into channel groups of equal
  bytes (2 channels at the network's full resolution, 8 at half, 32 at a quarter: see
  :func:`group_channels`), each group's float32 map is dequantized, normalized, quantized and
  padded for the next convolution while it is still in the cache; the groups are joined again. Instance norm is
  per channel, so the groups compute exactly what the whole did.
- :func:`interleave_as_block_moves` (also applied by :func:`for_onnxruntime`): onnxruntime runs
  int8 convolutions in NHWC, and its ``DepthToSpace`` on uint8 values is a general 6-axis
  shuffle (~1 GB/s here); the interleave after each upsampling convolution becomes transposes that
  move whole pixel rows of the NHWC map the convolution writes (its output channels put in phase
  order), the first of them cancelling the convolution's own conversion back to NCHW.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..core.untrusted import read_onnx_model

__all__ = ["FULL_RESOLUTION_GROUP", "chunk_instance_norms", "for_onnxruntime", "group_channels", "hoist_slices",
           "interleave_as_block_moves", "is_quantized", "pad_quantized_values", "runs_int8"]

# Channels per group at the network's full resolution (8 MB of float32 per group at 1024 x 1024).
# Alternating in one process on a 2-core Xeon, the default network's int8 forward at 1024 x 1024:
# 4 groups per norm took 3-9 % less time than whole norms (four runs), these equal-byte groups
# 3 % less again, with the next padding in the groups 6-8 % less than whole norms in all (879 ->
# 829, 902 -> 826 ms), 512 x 512 the same within 2 %; the slim network 5 % (docs/benchmarks.md).
FULL_RESOLUTION_GROUP = 2
# Pad modes that only copy values: quantizing before or after them gives the same uint8 values.
_COPYING_PADS = (b"reflect", b"edge")
# The first opset whose Split takes the sizes as an input (the form written here).
_SPLIT_INPUT_OPSET = 13
# The first opset whose Slice takes its bounds as inputs (the form the interleave writes).
_SLICE_INPUT_OPSET = 10


def is_quantized(metadata: dict[str, str]) -> bool:
    """Whether an export's metadata marks it as quantized by :func:`fast_nst.io.quantize.quantize_onnx`."""
    return metadata.get("quantization") == "int8"


def _readers(graph: Any) -> dict[str, list]:
    readers: dict[str, list] = {}
    for n in graph.node:
        for name in n.input:
            readers.setdefault(name, []).append(n)
    return readers


def _only_reader(readers: dict[str, list], name: str, op_type: str) -> Optional[Any]:
    found = readers.get(name, [])
    return found[0] if len(found) == 1 and found[0].op_type == op_type else None


def _initializers(graph: Any) -> dict[str, Any]:
    return {i.name: i for i in graph.initializer}


def _per_tensor(node: Any, inits: dict[str, Any]) -> bool:
    """Whether a (De)QuantizeLinear has one scale and zero point for the whole tensor (the
    activations' form; slicing or splitting channels leaves its values alone)."""
    return all(name in inits and int(np.prod(inits[name].dims)) == 1 for name in node.input[1:3])


def _pads_height_and_width(pad: Any, inits: dict[str, Any]) -> bool:
    """Whether a Pad copies values (reflect, edge) and pads only the two spatial axes, by constants."""
    from onnx import numpy_helper

    mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
    if mode not in _COPYING_PADS or len(pad.input) < 2 or pad.input[1] not in inits or len(pad.input) > 2:
        return False
    pads = numpy_helper.to_array(inits[pad.input[1]])
    return pads.shape == (8,) and not pads[[0, 1, 4, 5]].any()


def _keep_value_info(graph: Any, retyped: frozenset = frozenset()) -> None:
    """Drop recorded types of tensors that a rewrite removed or ``retyped`` (onnxruntime infers them)."""
    produced = {o for n in graph.node for o in n.output}
    kept = [v for v in graph.value_info if v.name in produced and v.name not in retyped]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def _set_nodes(graph: Any, nodes: list, retyped: frozenset = frozenset()) -> None:
    """Make ``nodes`` (in topological order) the graph's nodes; see :func:`_keep_value_info`."""
    del graph.node[:]
    graph.node.extend(nodes)
    _keep_value_info(graph, retyped)


def _splice(nodes: list, anchor: Any, block: list, removed: list) -> None:
    """Put ``block`` in ``anchor``'s place in ``nodes`` and take out ``removed``: the block's
    inputs were ready before the first node it replaces, its outputs' readers come after
    ``anchor``."""
    at = nodes.index(anchor)
    nodes[at:at + 1] = block
    for n in removed:
        if n is not anchor:
            nodes.remove(n)


def pad_quantized_values(graph: Any) -> int:
    """Move each ``QuantizeLinear`` that reads a reflection (or edge) ``Pad`` in front of it, so the
    padding copies uint8 values instead of float32 ones; returns how many moved. Exact: such a pad
    only copies values and quantizing is per value. Why: each pad before an int8 convolution then
    moves 4x fewer bytes, and the instance norm's ReLU before it folds into the quantization
    (onnxruntime drops a ReLU in front of a QuantizeLinear whose zero point is 0); the int8
    forward gets 10-13 % faster at 512 x 512 and 1024 x 1024 (docs/benchmarks.md)."""
    nodes = list(graph.node)
    readers = _readers(graph)
    outputs = {o.name for o in graph.output}
    moved = set()
    for pad in list(nodes):
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        after = readers.get(pad.output[0], []) if pad.op_type == "Pad" else []
        if (mode not in _COPYING_PADS or pad.output[0] in outputs or len(after) != 1
                or after[0].op_type != "QuantizeLinear"):
            continue
        quant = after[0]
        # pad -> quant becomes quant -> pad: a new name between them, the quantization's output
        # name after the pad (the old padded name is dropped with its recorded float32 type).
        source, between = pad.input[0], pad.output[0] + "_uint8"
        moved.add(pad.output[0])
        pad.input[0], pad.output[0] = between, quant.output[0]
        quant.input[0], quant.output[0] = source, between
        # The quantization runs first now: it takes the pad's place in the (topological) order;
        # its other inputs are initializers, and the pad's other inputs were ready before it.
        i, j = nodes.index(pad), nodes.index(quant)
        nodes[i], nodes[j] = quant, pad
    _set_nodes(graph, nodes)
    return len(moved)


def hoist_slices(graph: Any) -> int:
    """Move the ``Slice`` nodes between a per-tensor ``DequantizeLinear`` and an instance norm (the
    crops after each upsampling) in front of the dequantization, so they copy uint8 values and the
    norm reads the dequantization directly (what :func:`chunk_instance_norms` splits). Exact: a
    slice copies values. Returns how many chains moved."""
    readers, inits = _readers(graph), _initializers(graph)
    producers = {o: n for n in graph.node for o in n.output}
    nodes, moved, retyped = list(graph.node), 0, set()
    for norm in [n for n in nodes if n.op_type == "InstanceNormalization"]:
        chain, node = [], producers.get(norm.input[0])
        while node is not None and node.op_type == "Slice" and len(readers.get(node.output[0], [])) == 1:
            chain.insert(0, node)
            node = producers.get(node.input[0])
        dq = node
        if (not chain or dq is None or dq.op_type != "DequantizeLinear" or not _per_tensor(dq, inits)
                or len(readers.get(dq.output[0], [])) != 1):
            continue
        first, last, floats = chain[0], chain[-1], norm.input[0]
        first.input[0] = dq.input[0]
        last.output[0] = dq.input[0] = f"{floats}_uint8"
        dq.output[0] = floats
        retyped |= {n.output[0] for n in chain[:-1]}  # the slices between now carry uint8
        nodes.remove(dq)
        nodes.insert(nodes.index(last) + 1, dq)
        moved += 1
    _set_nodes(graph, nodes, frozenset(retyped))
    return moved


class _Norm:
    """One instance norm and what :func:`chunk_instance_norms` folds into its groups: the
    dequantization before it (None: it reads float32), a ReLU and a quantization after it, and
    the padding of the next convolution after those (padding each group pads the whole)."""

    def __init__(self, norm: Any, readers: dict, producers: dict, inits: dict):
        self.norm = norm
        dq = producers.get(norm.input[0])
        ok = dq is not None and dq.op_type == "DequantizeLinear" and _per_tensor(dq, inits)
        self.dq = dq if ok and len(readers.get(dq.output[0], [])) == 1 else None
        self.relu = _only_reader(readers, norm.output[0], "Relu")
        quant = _only_reader(readers, self.relu.output[0], "QuantizeLinear") if self.relu else None
        self.quant = quant if quant is not None and _per_tensor(quant, inits) else None
        self.source = self.dq.input[0] if self.dq else norm.input[0]
        end = self.quant or self.relu or norm
        pad = _only_reader(readers, end.output[0], "Pad")
        self.pad = pad if pad is not None and _pads_height_and_width(pad, inits) else None
        self.last = self.pad or end
        self.nodes = [n for n in (self.dq, norm, self.relu, self.quant, self.pad) if n is not None]

    def grouped(self, groups: int, channels: int, graph: Any, inits: dict) -> list:
        """The nodes that compute ``last``'s output in ``groups`` channel groups of ``channels``
        // ``groups`` each (the norm's scale and bias: constants sliced here, or computed tensors,
        such as a multi-style export's, split in the graph)."""
        from onnx import helper, numpy_helper

        name, k = self.norm.name or self.norm.output[0], channels // groups
        sizes = numpy_helper.from_array(np.full(groups, k, np.int64), f"{name}/groups")
        graph.initializer.append(sizes)
        nodes = [helper.make_node("Split", [self.source, sizes.name], [f"{name}/in{i}" for i in range(groups)],
                                  axis=1, name=f"{name}/split")]
        params = []  # per input ("scale", "bias"): the groups' tensor names
        for prefix, source in (("scale", self.norm.input[1]), ("bias", self.norm.input[2])):
            names = [f"{name}/{prefix}{i}" for i in range(groups)]
            if source in inits:
                values = numpy_helper.to_array(inits[source])
                graph.initializer.extend(numpy_helper.from_array(values[i * k:(i + 1) * k], names[i])
                                         for i in range(groups))
            else:
                nodes.append(helper.make_node("Split", [source, sizes.name], names, axis=0, name=f"{name}/{prefix}"))
            params.append(names)
        eps = next((a.f for a in self.norm.attribute if a.name == "epsilon"), 1e-5)
        ends = []
        for i in range(groups):
            x = f"{name}/in{i}"
            steps = [("DequantizeLinear", self.dq, []),
                     ("InstanceNormalization", self.norm, [params[0][i], params[1][i]]),
                     ("Relu", self.relu, []), ("QuantizeLinear", self.quant, []), ("Pad", self.pad, [])]
            for op, original, extra in steps:
                if original is None:
                    continue
                extra = extra or list(original.input[1:])
                attrs = ({"epsilon": eps} if op == "InstanceNormalization" else
                         {a.name: helper.get_attribute_value(a) for a in original.attribute} if op == "Pad" else {})
                nodes.append(helper.make_node(op, [x, *extra], [f"{name}/{op}{i}"], name=f"{name}/{op}{i}", **attrs))
                x = f"{name}/{op}{i}"
            ends.append(x)
        nodes.append(helper.make_node("Concat", ends, [self.last.output[0]], axis=1, name=f"{name}/concat"))
        return nodes


def _norm_channels(norm: Any, inits: dict, shapes: dict) -> int:
    """How many channels an instance norm has: its scale's length, read from the constant or
    from the graph's recorded shape of a computed scale (0: unknown, or its bias's differs)."""
    lengths = []
    for name in norm.input[1:3]:
        dims = list(inits[name].dims) if name in inits else shapes.get(name)
        lengths.append(int(dims[0]) if dims and len(dims) == 1 and dims[0] > 0 else 0)
    return lengths[0] if len(set(lengths)) == 1 else 0


def group_channels(channels: int, fewest: int, full: int = FULL_RESOLUTION_GROUP) -> int:
    """Channels per group for a norm of ``channels`` channels in a network whose fewest-channel
    norms (``fewest``) run at its full resolution: each halving of the resolution doubles the
    channels (Johnson's networks), so groups of equal bytes hold ``full`` x (channels / fewest)^2."""
    return full * (channels // fewest) ** 2


def chunk_instance_norms(graph: Any, full: int = FULL_RESOLUTION_GROUP, opset: int = _SPLIT_INPUT_OPSET) -> int:
    """Compute each instance norm (with the dequantization before it and the ReLU and quantization
    after it, where they are its only readers) in channel groups of equal bytes (``full``
    channels per group at full resolution, :func:`group_channels`): see the module's docs.
    Returns how many norms were split; a norm that would make fewer than 2 groups, whose channels
    do not divide into them, or whose channel count is unknown (a computed scale without a
    recorded shape), stays whole. Needs the graph's opset (13 and up)."""
    if opset < _SPLIT_INPUT_OPSET or full < 1:
        return 0
    readers, inits = _readers(graph), _initializers(graph)
    producers = {o: n for n in graph.node for o in n.output}
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.value_info}
    nodes, count = list(graph.node), 0
    norms = [n for n in nodes if n.op_type == "InstanceNormalization" and len(n.input) == 3]
    channels = {id(n): _norm_channels(n, inits, shapes) for n in norms}
    widths = [c for c in channels.values() if c]
    for norm in norms:
        if not channels[id(norm)]:
            continue
        size = group_channels(channels[id(norm)], min(widths), full)
        groups = channels[id(norm)] // size
        if groups < 2 or channels[id(norm)] % size:
            continue
        found = _Norm(norm, readers, producers, inits)
        block = found.grouped(groups, channels[id(norm)], graph, inits)
        # The block takes the place of the chain's last node: its source was ready before the
        # chain's first node, and every reader of the chain's result comes after its last.
        _splice(nodes, found.last, block, found.nodes)
        count += 1
    _set_nodes(graph, nodes)
    return count


def _constants(name: str, readers: dict, producers: dict, inits: dict) -> Optional[list]:
    """The initializers that ``name`` is made of (itself, or the inputs of the dequantization
    that makes it), when nothing else reads them; None otherwise (a computed or shared value)."""
    node = producers.get(name)
    names = [name] if node is None else list(node.input) if node.op_type == "DequantizeLinear" else []
    if (not names or len(readers.get(name, [])) != 1
            or any(n not in inits or len(readers.get(n, [])) != 1 for n in names)):
        return None
    if node is not None:  # a dequantized constant: its scales must follow the output channels
        attrs = {a.name: a.i for a in node.attribute}
        if attrs.get("block_size", 0) or (int(np.prod(inits[names[1]].dims)) > 1 and attrs.get("axis", 1) != 0):
            return None  # scales per block, or along another axis than the output channels'
    return [inits[n] for n in names]


def _output_channels(conv: Any, producers: dict, inits: dict) -> int:
    """How many channels ``conv`` writes: the first axis of its constant weight (or of the int8
    weight it dequantizes); 0 where the weight is computed."""
    weight = producers.get(conv.input[1])
    name = conv.input[1] if weight is None else weight.input[0] if weight.op_type == "DequantizeLinear" else ""
    return int(inits[name].dims[0]) if name in inits and inits[name].dims else 0


def _phase_major(conv: Any, blocks: int, readers: dict, producers: dict, inits: dict) -> bool:
    """Reorder ``conv``'s output channels from ``DepthToSpace``'s CRD order (channel c, phase p at
    c * blocks + p; ``blocks``: the block size squared) to DCR order (p * C + c), in its weight,
    per-channel scales and bias. False (and nothing changed) where those are not constants this
    conv alone reads."""
    from onnx import numpy_helper

    parts = [_constants(name, readers, producers, inits) for name in conv.input[1:3] if name]
    if any(p is None for p in parts):
        return False
    outputs = _output_channels(conv, producers, inits)
    channels = outputs // blocks
    order = np.array([c * blocks + p for p in range(blocks) for c in range(channels)])
    for tensor in (t for part in parts for t in part):
        values = numpy_helper.to_array(tensor)
        if values.ndim and values.shape[0] == outputs:
            tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(values[order]), tensor.name))
    return True


def _block_moves(source: str, target: str, block: int, channels: int, name: str, graph: Any) -> list:
    """Nodes that interleave ``source`` (N, block^2 * C, h, w), channels in DCR order, into
    ``target`` (N, C, h * block, w * block) (what ``DepthToSpace`` does) as transposes of the NHWC
    map: (N, h, w, [i, j, c]) -> (N, h, i, w, [j, c]) moves rows of block * C values at a time."""
    from onnx import helper, numpy_helper

    def const(suffix: str, values: list) -> str:
        graph.initializer.append(numpy_helper.from_array(np.array(values, np.int64), f"{name}/{suffix}"))
        return f"{name}/{suffix}"

    step = [f"{name}/{k}" for k in ("nhwc", "rows", "moved", "split", "nchw", "shape", "n", "hw", "scaled", "size")]
    return [helper.make_node("Transpose", [source], [step[0]], perm=[0, 2, 3, 1]),  # (N, h, w, b*b*C)
            helper.make_node("Reshape", [step[0], const("s1", [0, 0, 0, block, block * channels])], [step[1]]),
            helper.make_node("Transpose", [step[1]], [step[2]], perm=[0, 1, 3, 2, 4]),  # (N, h, b, w, b*C)
            helper.make_node("Reshape", [step[2], const("s2", [0, 0, 0, 0, block, channels])], [step[3]]),
            helper.make_node("Transpose", [step[3]], [step[4]], perm=[0, 5, 1, 2, 3, 4]),  # (N, C, h, b, w, b)
            helper.make_node("Shape", [source], [step[5]]),
            helper.make_node("Slice", [step[5], const("0", [0]), const("1", [1])], [step[6]]),
            helper.make_node("Slice", [step[5], const("2", [2]), const("4", [4])], [step[7]]),
            helper.make_node("Mul", [step[7], const("block", [block])], [step[8]]),
            helper.make_node("Concat", [step[6], const("c", [channels]), step[8]], [step[9]], axis=0),
            helper.make_node("Reshape", [step[4], step[9]], [target])]


def _same_quantization(a: Any, b: Any, inits: dict) -> bool:
    """Whether two per-tensor (De)QuantizeLinear nodes use the same scale and zero point."""
    from onnx import numpy_helper

    return len(a.input) == len(b.input) and all(
        inits[x].data_type == inits[y].data_type
        and np.array_equal(numpy_helper.to_array(inits[x]), numpy_helper.to_array(inits[y]))
        for x, y in zip(a.input[1:], b.input[1:]))


def _uint8_interleave(d2s: Any, readers: dict, producers: dict, inits: dict, outputs: set) -> Optional[tuple]:
    """(conv, its quantization, the dequantization, the requantization after ``d2s``) where
    ``d2s`` interleaves a conv's uint8 values (the same per-tensor quantization before and after
    it, every value between read once and by the next node only); None otherwise."""
    dq = producers.get(d2s.input[0])
    quant = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
    conv = producers.get(quant.input[0]) if quant is not None and quant.op_type == "QuantizeLinear" else None
    after = _only_reader(readers, d2s.output[0], "QuantizeLinear")
    if conv is None or conv.op_type != "Conv" or after is None:
        return None
    chain = (conv, quant, dq, after)
    if (not all(_per_tensor(n, inits) for n in chain[1:]) or not _same_quantization(quant, after, inits)
            or any(len(readers.get(n.output[0], [])) != 1 for n in chain[:3])
            or outputs & {n.output[0] for n in (conv, quant, dq, d2s)}):
        return None
    return chain


def interleave_as_block_moves(graph: Any) -> int:
    """Rewrite each ``Conv -> QuantizeLinear -> DequantizeLinear -> DepthToSpace ->
    QuantizeLinear`` (the same per-tensor scale and zero point twice: the interleave moves uint8
    values) as the conv, its quantization and :func:`_block_moves`, the conv's output channels in
    DCR order where the interleave was CRD. Exact (the same values, moved). Returns how many."""
    readers, inits = _readers(graph), _initializers(graph)
    producers = {o: n for n in graph.node for o in n.output}
    nodes, count, graph_outputs = list(graph.node), 0, {o.name for o in graph.output}
    for d2s in [n for n in nodes if n.op_type == "DepthToSpace"]:
        attrs = {a.name: a for a in d2s.attribute}
        block = attrs["blocksize"].i if "blocksize" in attrs else 0
        chain = _uint8_interleave(d2s, readers, producers, inits, graph_outputs) if block >= 2 else None
        outputs = _output_channels(chain[0], producers, inits) if chain else 0
        if not outputs or outputs % (block * block):
            continue
        conv, quant, dq, after = chain
        crd = "mode" in attrs and attrs["mode"].s == b"CRD"  # ONNX's default mode is DCR
        if crd and not _phase_major(conv, block * block, readers, producers, inits):
            continue
        name = d2s.output[0]  # unique in a graph, where node names need not be
        moves = _block_moves(quant.output[0], after.output[0], block, outputs // (block * block), name, graph)
        _splice(nodes, d2s, moves, [dq, after])
        count += 1
    _set_nodes(graph, nodes)
    return count


# Operators that compute on integers: a graph with any of them was quantized, by us or another tool.
_INTEGER_OPS = frozenset({"QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger", "QuantizeLinear",
                          "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul"})


def runs_int8(data: bytes, max_bytes: int) -> bool:
    """Whether the .onnx bytes ``data`` are a quantized graph: a fast-nst int8 export (its
    metadata) or another tool's (integer operators in the graph). False for a float graph or
    one that does not parse (onnxruntime then says what is wrong with it)."""
    try:
        model = read_onnx_model(data, max_bytes)
    except Exception:  # noqa: BLE001 - reported by onnxruntime's session, in its words
        return False
    return is_quantized({p.key: p.value for p in model.metadata_props}) or \
        any(n.op_type in _INTEGER_OPS for n in model.graph.node)


def for_onnxruntime(data: bytes, max_bytes: int) -> bytes:
    """The graph to give onnxruntime on the CPU for the .onnx bytes ``data``: an int8 export of
    fast-nst (metadata ``quantization: int8``) with its slices hoisted, its instance norms in
    channel groups and its interleaves as block moves; any other graph, or one that does not
    parse or rewrite (a damaged or foreign file), as it is: onnxruntime then reports what is
    wrong with it, in its words."""
    try:
        model = read_onnx_model(data, max_bytes)
        if not is_quantized({p.key: p.value for p in model.metadata_props}):
            return data
        opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
        hoist_slices(model.graph)
        changed = chunk_instance_norms(model.graph, opset=opset)
        if opset >= _SLICE_INPUT_OPSET:
            changed += interleave_as_block_moves(model.graph)
        if not changed:
            return data
        # The grouped norms' scales and biases are copies now: drop the originals no node reads.
        graph = model.graph
        read = {name for n in graph.node for name in n.input} | {v.name for v in (*graph.input, *graph.output)}
        kept = [i for i in graph.initializer if i.name in read]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        return model.SerializeToString()
    except Exception:  # noqa: BLE001 - the file's faults are reported by onnxruntime's session
        return data
