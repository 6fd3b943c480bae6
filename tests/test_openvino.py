"""Stylizing with OpenVINO (load_stylizer(runtime="openvino"), eval.py --runtime openvino): the
model's ONNX export compiled by OpenVINO on the CPU, in fp32, bf16 and int8, every kind of model,
in a worker process (OpenVINO never loads in this one) that trades arrays through shared memory."""

from __future__ import annotations

import importlib.util
import io
import sys
from multiprocessing import shared_memory

import numpy as np
import pytest
import torch

from fast_nst import load_stylizer
from fast_nst.commands.eval import main as eval_main
from fast_nst.core.errors import FastNSTError
from fast_nst.io.checkpoint import atomic_torch_save, load_model, make_checkpoint
from fast_nst.io.export import export_metadata, export_onnx
from fast_nst.io.export_cache import cache_folder, cache_key
from fast_nst.io.quantize import synthetic_calibration
from fast_nst.nets.johnson import TransformNet, TransformNetArgs
from fast_nst.nets.multistyle import MultiStyleArgs, MultiStyleNet
from fast_nst.stylize import TorchStylizer
from fast_nst.stylize import openvino_stylizer, openvino_worker
from fast_nst.stylize.int8 import int8_onnx
from fast_nst.stylize.temporal import TemporalStatistics
from fast_nst.training import load_train_config

from conftest import assert_clean_in_process, in_process, make_photo, psnr

# find_spec, not an import: this process is the one OpenVINO must never load in.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                reason="runtime openvino needs the optional extra: pip install -e .[openvino]")
CPU = torch.device("cpu")


def _trained_like(net: torch.nn.Module) -> torch.nn.Module:
    """Norm parameters like a trained net's (random ones make a flat output)."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "norm" in name or p.dim() == 1:
                p.uniform_(0.5, 1.5) if name.endswith("weight") else p.uniform_(-0.3, 0.3)
    return net.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ov")
    torch.manual_seed(0)
    single = _trained_like(TransformNet(TransformNetArgs(base_channels=8, num_residual=2)))
    multi = _trained_like(MultiStyleNet(MultiStyleArgs(num_styles=2, base_channels=8, num_residual=1)))
    multi.style_names = ["a", "b"]
    out = {}
    for name, net, extra in (("single", single, ["style_image=s.jpg"]),
                             ("multi", multi, ["model_type=johnson_multi", "style_images=[a.jpg, b.jpg]"])):
        cfg = load_train_config(None, [f"naming={name}", *extra])
        atomic_torch_save(make_checkpoint(net, cfg, step=2), root / f"{name}.pth")
        out[name] = (root / f"{name}.pth", net)
    # The single-style model also as an .onnx export, compiled as it is (the multi-style .pth is
    # exported at load time: both kinds of file are covered, with one export each).
    path, net = out["single"]
    export_onnx(net, root / "single.onnx", metadata=export_metadata(net, load_model(path)[1], path))
    out["single.onnx"] = (root / "single.onnx", net)
    return out


@pytest.fixture(scope="module")
def fp32(models):
    return load_stylizer(models["single.onnx"][0], device="cpu", runtime="openvino")


def _photo() -> torch.Tensor:
    return torch.from_numpy(synthetic_calibration(1, 48, seed=3)[0])[..., :40]  # (1, 3, 48, 40)


def test_fp32_bf16_and_int8_match_pytorch(models, fp32):
    onnx_file, net = models["single.onnx"]
    x = _photo()
    ref = TorchStylizer(net, CPU).stylize_tensor(x)
    assert fp32.precision == "fp32" and fp32.info["runtime"] == "openvino" and fp32.name == "single"
    y = fp32.stylize_tensor(x)
    assert y.shape == x.shape and (y - ref).abs().max() < 1e-4
    int8 = load_stylizer(onnx_file, device="cpu", precision="int8", runtime="openvino")  # quantized at load
    assert int8.precision == "int8" and 25 < psnr(int8.stylize_tensor(x), ref) < 80
    if "BF16" in fp32.session.capabilities:
        bf16 = load_stylizer(onnx_file, device="cpu", precision="bf16", runtime="openvino")
        assert 35 < psnr(bf16.stylize_tensor(x), ref) < 90


def test_an_int8_export_says_int8_in_openvino(models, tmp_path):
    """A quantized export runs its int8 graph in OpenVINO at the default precision: the stylizer
    says int8 (as onnxruntime's does), not the fp32 it was asked for."""
    quantized, _ = int8_onnx(models["single.onnx"][0], tmp_path)  # the int8 path's file, as an export
    in_ort = load_stylizer(quantized, device="cpu")
    s = load_stylizer(quantized, device="cpu", runtime="openvino")
    x = _photo()
    assert in_ort.precision == "int8" and s.precision == "int8" and s.info["runtime"] == "openvino"
    assert psnr(s.stylize_tensor(x), in_ort.stylize_tensor(x)) > 35  # the same int8 graph


def test_openvino_stays_out_of_this_process(models, fp32):
    loaded = "openvino" in sys.modules
    fp32.stylize_tensor(_photo())
    assert ("openvino" in sys.modules) == loaded and fp32.session.process.poll() is None
    assert fp32.info["providers"][0].startswith("OpenVINO 20")  # the worker's version, as it answered


def test_tiles_are_compiled_by_openvino_and_equal_the_whole_image(fp32, tmp_path):
    """The tiling graphs (norm statistics recorded, then given) run in workers of their own."""
    from PIL import Image

    photo = Image.open(make_photo(tmp_path / "p.png", (300, 230), fmt="PNG"))
    whole = np.asarray(fp32.stylize(photo, tile_size=None), dtype=int)
    tiled = np.asarray(fp32.stylize(photo, tile_size=256), dtype=int)
    assert fp32.can_tile and fp32.last_tile_count == 9 and np.abs(tiled - whole).max() <= 1
    record, given = fp32.tiling.sessions()
    assert isinstance(given, openvino_stylizer._OpenVinoSession) and record.process.poll() is None


def test_video_frames_carry_statistics_in_openvino(models, fp32):
    """The carried graph (statistics averaged across frames) compiled by OpenVINO: as PyTorch's."""
    frames = torch.cat([_photo(), (_photo() + 0.05 * torch.rand(1, 3, 48, 40)).clamp(0, 1)])
    with TemporalStatistics(fp32) as video:
        carried = video.stylize(frames)
    with TemporalStatistics(TorchStylizer(models["single"][1], torch.device("cpu"))) as video:
        assert (carried - video.stylize(frames)).abs().max() < 1e-4
    assert isinstance(fp32.tiling.carrying_session(), openvino_stylizer._OpenVinoSession)


def test_threads_share_a_stylizer(fp32):
    """Requests from several threads take turns (one pipe, one shared memory): each thread gets
    its own photo's result."""
    from concurrent.futures import ThreadPoolExecutor

    photos = [torch.rand(1, 3, 24 + 8 * i, 32) for i in range(4)]
    alone = [fp32.stylize_tensor(x) for x in photos]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(fp32.stylize_tensor, photos * 3))
    assert all(torch.equal(y, alone[i % 4]) for i, y in enumerate(together))


def test_multi_style_models_take_their_styles(models):
    path, net = models["multi"]
    x = _photo()
    s = load_stylizer(path, device="cpu", runtime="openvino", style="b")  # a .pth: exported at load
    ref = TorchStylizer(net, CPU)
    ref.set_style("b")
    assert s.style_names == ["a", "b"] and (s.stylize_tensor(x) - ref.stylize_tensor(x)).abs().max() < 1e-4
    # The export is kept in the export cache (fast_nst.io.export_cache) for the next load.
    assert (cache_folder() / "onnx" / f"{cache_key(path, 'fp32')}.fp32.onnx").is_file()
    # int8 is the int8 path's quantization: the multi-style graph keeps its style input.
    s8 = load_stylizer(path, device="cpu", runtime="openvino", precision="int8", style="b")
    assert s8.style_names == ["a", "b"] and 30 < psnr(s8.stylize_tensor(x), ref.stylize_tensor(x)) < 80


def test_a_worker_that_ends_is_a_clean_error_and_close_frees_its_memory(models):
    s = load_stylizer(models["single.onnx"][0], device="cpu", runtime="openvino")
    s.stylize_tensor(_photo())
    names = [segment.memory.name for segment in (s.session.inbox, s.session.outbox)]
    s.session.close()
    assert s.session.process.returncode == 0
    for name in names:  # removed, not left in /dev/shm
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)
    with pytest.raises(FastNSTError, match=r"^this OpenVINO stylizer has been closed: load the model again"):
        s.stylize_tensor(_photo())
    early = openvino_stylizer._OpenVinoSession()
    with pytest.raises(FastNSTError, match="OpenVINO: unexpected request 'run'"):  # before any compile
        early.run(None, {"input": np.zeros((1, 3, 4, 4), np.float32)})
    early.process.kill()
    early.process.wait()
    with pytest.raises(FastNSTError, match=r"worker process ended \(exit code -9\)"):
        early.run(None, {"input": np.zeros((1, 3, 4, 4), np.float32)})
    early.close()


def test_messages_and_outputs_too_large_for_the_shared_memory():
    stream = io.BytesIO()
    openvino_worker.send(stream, ("run", None, [("input", "seg", 0, (1, 3), "<f4")], "out"))
    data = stream.getvalue()
    assert openvino_worker.receive(io.BytesIO(data)) == ("run", None, [("input", "seg", 0, (1, 3), "<f4")], "out")
    for cut in (0, 4, len(data) - 1):
        with pytest.raises(EOFError):
            openvino_worker.receive(io.BytesIO(data[:cut]))
    segment = shared_memory.SharedMemory(create=True, size=200)
    try:
        small, large = np.arange(12, dtype=np.float32).reshape(3, 4), np.ones((10, 10), np.float32)
        placed = openvino_worker._place([small, large, small], segment)
        assert placed[0] == (segment.name, 0, (3, 4), "<f4") and placed[2] == (segment.name, 64, (3, 4), "<f4")
        assert isinstance(placed[1], np.ndarray) and (placed[1] == large).all()  # 400 bytes: by the pipe
        assert (openvino_stylizer._copied_out(placed[2], segment) == small).all()
        del placed
    finally:
        segment.close()
        segment.unlink()


def test_eval_runtime_openvino_and_its_errors(models, tmp_path, capsys, monkeypatch):
    path, _ = models["single.onnx"]
    photo = make_photo(tmp_path / "p.png", (40, 32))
    code, err = in_process(capsys, eval_main, "--model_file", path, "--image_file", photo, "--output_file",
                           tmp_path / "o.png", "--runtime", "openvino", "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "o.png").is_file()
    code, err = in_process(capsys, eval_main, "--model_file", path, "--image_file", photo, "--output_file",
                           tmp_path / "o2.png", "--runtime", "openvino", "--precision", "fp16", "--device", "cpu")
    assert_clean_in_process(code, err, "runtime openvino runs precision fp32, bf16, int8, not 'fp16'")
    monkeypatch.setattr(openvino_stylizer, "resolve_device", lambda name: torch.device("cuda", 0))
    with pytest.raises(FastNSTError, match="runtime openvino runs on the CPU"):
        load_stylizer(path, device="cuda", runtime="openvino")
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(FastNSTError, match=r"needs the openvino package: pip install openvino"):
        load_stylizer(path, device="cpu", runtime="openvino")
    with pytest.raises(FastNSTError, match="runtime 'tvm': choose one of default, openvino"):
        load_stylizer(path, device="cpu", runtime="tvm")
    assert not (tmp_path / "o2.png").exists()


def test_the_app_runs_its_models_with_openvino(models, tmp_path):
    from fast_nst.commands.app import AppSession, parser as app_parser

    assert app_parser().parse_args(["--runtime", "openvino"]).runtime == "openvino"
    session = AppSession({"single": models["single.onnx"][0]}, "cpu", tmp_path, runtime="openvino")
    assert session.stylizer("single").info["runtime"] == "openvino"
