"""Norm statistics for exported models in onnxruntime (fp32 .onnx here; int8 in test_int8,
OpenVINO in test_openvino): the graph rewrites that record, take and carry them, tiles, video
frames with statistics carried across them, and the models that cannot."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from fast_nst import load_stylizer
from fast_nst.commands.eval import main as eval_main
from fast_nst.core.errors import FastNSTError
from fast_nst.io.checkpoint import atomic_torch_save, load_model, make_checkpoint
from fast_nst.io.export import export_metadata, export_onnx
from fast_nst.io.norm_graph import given_norm_statistics, norm_count, recording_norm_statistics, stats_names
from fast_nst.nets import build_network, receptive_radius, tile_grid
from fast_nst.nets.johnson import TransformNet, TransformNetArgs
from fast_nst.nets.multistyle import MultiStyleArgs, MultiStyleNet
from fast_nst.stylize import base as stylize_base, onnx_tiling
from fast_nst.stylize.temporal import TemporalStatistics, supports_temporal
from fast_nst.training import load_train_config

from conftest import assert_clean_in_process, examples, in_process, make_photo, memory_cap, trained_like_norms

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    """A single-style and a multi-style network's .onnx exports, with fast-nst's metadata."""
    root = tmp_path_factory.mktemp("onnx_tiles")
    torch.manual_seed(0)
    single = trained_like_norms(TransformNet(TransformNetArgs(base_channels=8, num_residual=2)).eval())
    multi = trained_like_norms(MultiStyleNet(MultiStyleArgs(num_styles=2, base_channels=8, num_residual=1)).eval())
    multi.style_names = ["a", "b"]
    out = {}
    for name, net, extra in (("single", single, ["style_image=s.jpg"]),
                             ("multi", multi, ["model_type=johnson_multi", "style_images=[a.jpg, b.jpg]"])):
        cfg = load_train_config(None, [f"naming={name}", *extra])
        pth = root / f"{name}.pth"
        atomic_torch_save(make_checkpoint(net, cfg, step=2), pth)
        export_onnx(net, root / f"{name}.onnx", metadata=export_metadata(net, load_model(pth)[1], pth))
        out[name] = root / f"{name}.onnx"
    return out


def _feeds(session, x: np.ndarray) -> dict:
    feeds = {session.get_inputs()[0].name: x}
    if len(session.get_inputs()) > 1:  # a multi-style export's style weights
        feeds[session.get_inputs()[1].name] = np.array([0.3, 0.7], np.float32)
    return feeds


@pytest.mark.parametrize("name", ["single", "multi"])
def test_recorded_statistics_given_back_reproduce_the_graph(exports, name):
    """The recording graph's outputs are the norms' input statistics: fed to the graph that takes
    them, on the same image, they give the original output (up to float rounding); other
    statistics give another."""
    data = exports[name].read_bytes()
    norms = norm_count(data, 1 << 30)
    assert norms == 9 if name == "single" else norms == 7
    record, n1 = recording_norm_statistics(data, 1 << 30)
    taking, n2 = given_norm_statistics(data, 1 << 30)
    assert n1 == n2 == norms
    original, rec, giv = (ort.InferenceSession(d, providers=["CPUExecutionProvider"]) for d in (data, record, taking))
    assert [i.name for i in giv.get_inputs()][-2:] == list(stats_names(norms - 1))
    assert "InstanceNormalization" not in {n.op_type for n in onnx.load_from_string(taking).graph.node}
    x = np.random.default_rng(0).random((1, 3, 37, 52), dtype=np.float32)
    y = original.run(None, _feeds(original, x))[0]
    outs = rec.run(None, _feeds(rec, x))
    assert np.array_equal(outs[0], y)  # the recording graph's image output is untouched
    stats = {o.name: v for o, v in zip(rec.get_outputs()[1:], outs[1:])}
    assert len(stats) == 2 * norms and stats["norm_stats.0.mean"].shape == (8,)
    assert all(v.min() >= 0 for k, v in stats.items() if k.endswith(".var"))
    same = giv.run(None, {**_feeds(giv, x), **stats})[0]
    assert np.abs(same - y).max() < 1e-5
    stats["norm_stats.0.mean"] = stats["norm_stats.0.mean"] + 0.5
    assert np.abs(giv.run(None, {**_feeds(giv, x), **stats})[0] - y).max() > 1e-3


@pytest.mark.parametrize("name", ["single", "multi"])
def test_onnx_tiles_equal_the_whole_image(exports, name, tmp_path):
    """A photo within the statistics' size: its tiles share the whole photo's statistics, so the
    tiled result is the whole one to within a level."""
    s = load_stylizer(exports[name], device="cpu")
    if name == "multi":
        s.set_style("a:0.4,b:0.6")
    assert s.can_tile and s.tiling.context == 64
    photo = Image.open(make_photo(tmp_path / "p.png", (300, 230), fmt="PNG"))
    whole = np.asarray(s.stylize(photo, tile_size=None), dtype=int)
    assert s.last_tile_count == 1
    tiled = np.asarray(s.stylize(photo, tile_size=256), dtype=int)
    assert s.last_tile_count == 9 and tiled.shape == whole.shape == (230, 300, 3)
    assert np.abs(tiled - whole).max() <= 1


def test_auto_tiles_where_the_whole_image_would_not_fit(exports, tmp_path, monkeypatch):
    """tile_size auto: the whole image while it fits the free memory (faster), tiles beyond,
    sized to half of it (at least what a tile's context and overlap need: 256 px here)."""
    s = load_stylizer(exports["single"], device="cpu")
    photo = Image.open(make_photo(tmp_path / "p.png", (300, 260), fmt="PNG"))
    whole = np.asarray(s.stylize(photo), dtype=int)
    assert s.last_tile_count == 1
    monkeypatch.setattr(stylize_base, "available_memory", lambda device: 300 * 260 * 700 - 1)
    assert s.tile_size_for(260, 300, stylize_base.StylizeOptions()) == 256
    tiled = np.asarray(s.stylize(photo), dtype=int)
    assert s.last_tile_count == 9 and np.abs(whole - tiled).max() <= 1


def _frames() -> torch.Tensor:
    """Four frames (4, 3, 40, 48): a scene, the same with noise twice, then a cut."""
    torch.manual_seed(1)
    scene = torch.rand(1, 3, 40, 48)
    noisy = [(scene + 0.05 * torch.rand(1, 3, 40, 48)).clamp(0, 1) for _ in range(2)]
    return torch.cat([scene, *noisy, 1 - scene])


@pytest.mark.parametrize("name", ["single", "multi"])
def test_video_frames_carry_statistics_as_in_pytorch(exports, name):
    """The carried graph averages each norm's statistics across frames as TemporalStatistics does
    inside the PyTorch network: the same frames, the same results (batches do not matter, a cut
    and a new style start afresh)."""
    exported, pth = load_stylizer(exports[name], device="cpu"), load_stylizer(exports[name].with_suffix(".pth"), device="cpu")
    if name == "multi":
        for s in (exported, pth):
            s.set_style("a:0.4,b:0.6")
    assert supports_temporal(exported) and exported.can_carry
    frames = _frames()
    with TemporalStatistics(exported) as video:
        carried = torch.cat([video.stylize(frames[:3]), video.stylize(frames[3:])])
        assert video.cuts == 1
    with TemporalStatistics(pth) as video:
        assert (carried - video.stylize(frames)).abs().max() < 1e-4
    per_frame = exported.stylize_tensor(frames)
    assert (carried[[0, 3]] - per_frame[[0, 3]]).abs().max() < 1e-5  # the first frame and the cut: their own
    assert (carried[1:3] - per_frame[1:3]).abs().max() > 1e-3  # the others carry the first's
    if name == "multi":
        with TemporalStatistics(exported) as video:
            video.stylize(frames[:1])
            exported.set_style("b")
            assert (video.stylize(frames[1:2]) - exported.stylize_tensor(frames[1:2])).abs().max() < 1e-5


def _without_metadata(path, out):
    model = onnx.load(path)
    del model.metadata_props[:]
    onnx.save(model, out)
    return out


def test_onnx_files_not_exported_by_fast_nst_run_whole(exports, tmp_path, capsys, monkeypatch):
    """Without the metadata naming the network, the context a tile needs is unknown: such a
    file runs whole images, and refuses one that would not fit the free memory, in one line."""
    foreign = _without_metadata(exports["single"], tmp_path / "foreign.onnx")
    s = load_stylizer(foreign, device="cpu")
    assert not s.can_tile and s.tiling is None and not supports_temporal(s)
    with pytest.raises(FastNSTError, match="--temporal off"):
        TemporalStatistics(s)
    photo = make_photo(tmp_path / "p.png", (300, 260))
    with pytest.raises(FastNSTError, match="this model cannot tile"):
        s.stylize(Image.open(photo), tile_size=224)
    monkeypatch.setattr(stylize_base, "available_memory", lambda device: 300 * 260 * 700 - 1)
    args = ("--model_file", foreign, "--image_file", photo, "--output_file", tmp_path / "o.png", "--device", "cpu")
    code, err = in_process(capsys, eval_main, *args)
    assert_clean_in_process(code, err, "a 300 x 260 image needs about 0.1 GiB to stylize in one piece",
                            "this model cannot tile", "--max_size 256", "--tile_size 0 tries anyway")
    assert not (tmp_path / "o.png").exists()
    code, err = in_process(capsys, eval_main, *args, "--tile_size", "0")
    assert code == 0 and (tmp_path / "o.png").is_file(), err


@pytest.mark.parametrize("model_type, args, grid", [
    ("johnson", {}, 4), ("johnson", {"num_residual": 2}, 4), ("johnson_slim", {}, 4),
    ("johnson_multi", {"num_styles": 2}, 4),
    ("adain", {"encoder": "vgg16", "encoder_weights": "random"}, 8),
    ("adain", {"encoder": "vgg16", "encoder_layer": "relu2_1", "encoder_weights": "random"}, 2)])
def test_the_registry_gives_a_networks_radius_and_grid_without_building_it(model_type, args, grid):
    net = build_network(model_type, args)
    assert receptive_radius(model_type, args) == net.receptive_radius
    assert tile_grid(model_type, args) == grid == getattr(net, "multiple", 4)


@settings(max_examples=examples(60), deadline=None)
@given(model_type=st.sampled_from(["johnson", "johnson_multi", "adain", "nope", ""]),
       args=st.one_of(st.text(max_size=60), st.recursive(
           st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
           max_leaves=8).map(json.dumps)))
def test_hostile_model_args_end_in_a_context_or_none(model_type, args):
    """The metadata is the file's text: any of it ends in a context (>= 64 px) on a grid of 1 to
    16 px, or in None (whole images), never an exception or a network built."""
    geometry = onnx_tiling._network_geometry({"model_type": model_type, "model_args": args})
    assert geometry is None or (geometry[0] >= 64 and geometry[1] in (1, 2, 4, 8, 16)
                                and geometry[0] % geometry[1] == 0)
    assert onnx_tiling._network_geometry({"model_type": "johnson", "model_args": "x" * 5000}) is None
    assert onnx_tiling._network_geometry({"model_type": "adain", "model_args": '{"encoder": "vgg16"}'}) == (64, 8)


def _mutated(raw: bytes, kind: str, pick: int, value: float) -> bytes:
    """The export ``raw`` with one hostile change that still parses (see the test below)."""
    model = onnx.load_from_string(raw)
    nodes = list(model.graph.node)
    norms = [n for n in nodes if n.op_type == "InstanceNormalization"]
    norm, node = norms[pick % len(norms)], nodes[pick % len(nodes)]
    if kind == "collide":  # a value named as the rewrites name theirs
        old = node.output[0]
        for n in nodes:
            n.input[:] = ["norm_stats.0.mean" if i == old else i for i in n.input]
        node.output[0] = "norm_stats.0.mean"
    elif kind == "epsilon":
        for a in norm.attribute:
            if a.name == "epsilon":
                a.f = value
    elif kind == "inputs":
        del norm.input[1:]
    else:  # another node claims to be an instance norm
        node.op_type = "InstanceNormalization"
    return model.SerializeToString()


@settings(max_examples=examples(12), deadline=None)
@given(kind=st.sampled_from(["collide", "epsilon", "inputs", "retyped"]), pick=st.integers(0, 200),
       value=st.sampled_from([float("nan"), -1.0, 0.0, 1e30]))
def test_hostile_graphs_end_in_a_result_or_one_error_when_tiled_or_carried(exports, tmp_path_factory, kind, pick, value):
    """A graph that loads is rewritten for tiles and video: whatever its norms and names, a tiled
    or carried stylization ends in a result or one FastNSTError line, in bounded time and memory."""
    path = tmp_path_factory.mktemp("hostile") / "h.onnx"
    path.write_bytes(_mutated(exports["single"].read_bytes(), kind, pick, value))
    start = time.process_time()
    with memory_cap(1 << 30):
        try:
            s = load_stylizer(path, device="cpu")
            s.stylize(Image.new("RGB", (260, 200)), tile_size=256)
            with TemporalStatistics(s) as video:
                video.stylize(torch.rand(2, 3, 24, 32))
        except FastNSTError as e:
            assert "\n" not in str(e).strip() and len(str(e)) < 2000
    assert time.process_time() - start < 20
