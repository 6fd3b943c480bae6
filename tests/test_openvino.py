"""Stylizing with OpenVINO (load_stylizer(runtime="openvino"), eval.py --runtime openvino): the
model's ONNX export compiled by OpenVINO on the CPU, in fp32, bf16 and int8, every kind of model."""

from __future__ import annotations

import sys

import pytest
import torch

from fast_nst import load_stylizer
from fast_nst.commands.eval import main as eval_main
from fast_nst.core.errors import FastNSTError
from fast_nst.io.checkpoint import atomic_torch_save, load_model, make_checkpoint
from fast_nst.io.export import export_metadata, export_onnx
from fast_nst.io.quantize import synthetic_calibration
from fast_nst.nets.johnson import TransformNet, TransformNetArgs
from fast_nst.nets.multistyle import MultiStyleArgs, MultiStyleNet
from fast_nst.stylize import TorchStylizer
from fast_nst.stylize import openvino_stylizer
from fast_nst.training import load_train_config

from conftest import assert_clean_in_process, in_process, make_photo, psnr

ov = pytest.importorskip("openvino", reason="runtime openvino needs the optional extra: pip install -e .[openvino]")
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
    return out


def _photo() -> torch.Tensor:
    return torch.from_numpy(synthetic_calibration(1, 48, seed=3)[0])[..., :40]  # (1, 3, 48, 40)


def test_fp32_bf16_and_int8_match_pytorch(models):
    path, net = models["single"]
    x = _photo()
    ref = TorchStylizer(net, CPU).stylize_tensor(x)
    # An .onnx export is compiled as it is (fp32, bf16); the .pth is exported and quantized (int8).
    onnx_file = path.with_suffix(".onnx")
    export_onnx(net, onnx_file, metadata=export_metadata(net, load_model(path)[1], path))
    fp32 = load_stylizer(onnx_file, device="cpu", runtime="openvino")
    assert fp32.precision == "fp32" and fp32.info["runtime"] == "openvino" and fp32.name == "single"
    y = fp32.stylize_tensor(x)
    assert y.shape == x.shape and (y - ref).abs().max() < 1e-4
    int8 = load_stylizer(path, device="cpu", precision="int8", runtime="openvino")
    assert int8.precision == "int8" and 25 < psnr(int8.stylize_tensor(x), ref) < 80
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        bf16 = load_stylizer(onnx_file, device="cpu", precision="bf16", runtime="openvino")
        assert 35 < psnr(bf16.stylize_tensor(x), ref) < 90


def test_multi_style_models_take_their_styles(models):
    path, net = models["multi"]
    x = _photo()
    s = load_stylizer(path, device="cpu", runtime="openvino", style="b")
    ref = TorchStylizer(net, CPU)
    ref.set_style("b")
    assert s.style_names == ["a", "b"] and (s.stylize_tensor(x) - ref.stylize_tensor(x)).abs().max() < 1e-4


def test_eval_runtime_openvino_and_its_errors(models, tmp_path, capsys, monkeypatch):
    path, _ = models["single"]
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
    session = AppSession({"single": models["single"][0]}, "cpu", tmp_path, runtime="openvino")
    assert session.stylizer("single").info["runtime"] == "openvino"
