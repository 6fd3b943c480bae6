"""Exporting multi-style networks (a second input of style weights, or one style baked in) and
stylizing with such exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fast_nst import load_stylizer
from fast_nst.commands.export import main as export_main
from fast_nst.core.errors import CheckpointError
from fast_nst.io.checkpoint import atomic_torch_save, make_checkpoint
from fast_nst.io.export import TORCHSCRIPT_METADATA
from fast_nst.nets.johnson import TransformNet, TransformNetArgs
from fast_nst.nets.multistyle import MultiStyleArgs, MultiStyleNet, StyleError
from fast_nst.training.config import train_config_from_dict

from conftest import assert_clean_in_process, export_cli, in_process, make_photo, tiny_values

NAMES = ["candy", "mosaic", "wave"]
BLEND = torch.tensor([0.7, 0.3, 0.0])
ONE_HOT = torch.tensor([0.0, 0.0, 1.0])
SHAPES = [(1, 3, 21, 34), (2, 3, 5, 9)]  # divisible by 4 or not, batch 2, below 8 px
TOL = 1e-3

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")


def _cfg(tmp_path, model_type: str, **overrides):
    values = tiny_values(tmp_path / "models", tmp_path / "train", tmp_path / "style.png",
                         naming="trio", model_type=model_type, **overrides)
    return train_config_from_dict(values, "test config")


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """(checkpoint path, network): three styles whose norm parameters differ."""
    torch.manual_seed(0)
    net = MultiStyleNet(MultiStyleArgs(num_styles=3, base_channels=8, num_residual=1)).eval()
    with torch.no_grad():
        for p in net.norm_parameters():
            p.add_(0.3 * torch.randn_like(p))
    net.style_names = list(NAMES)
    folder = tmp_path_factory.mktemp("multi")
    cfg = _cfg(folder, "johnson_multi", style_image="", style_weights=[1.0, 3.0, 1.0],
               style_images=[str(folder / f"{n}.jpg") for n in NAMES])
    path = folder / "trio.pth"
    atomic_torch_save(make_checkpoint(net, cfg, step=4), path)
    return path, net


@pytest.fixture(scope="module")
def baked_onnx(multi):
    """The mosaic style (style_weights multiplier 3) baked into a single-input .onnx; export's output."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = multi[0].parent / "mosaic.onnx"
    return path, export_cli(multi[0], "--output", path, "--style", "mosaic")


@pytest.fixture(scope="module")
def multi_onnx(multi):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = multi[0].parent / "trio.onnx"
    printed = export_cli(multi[0], "--output", path)
    assert "Style input 'style': 3 weights" in printed and "candy, mosaic, wave" in printed
    return path


def _expected(net, x, w):
    with torch.inference_mode():
        return net(x, w)


def test_onnx_style_input_matches_pytorch(multi_onnx, multi):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(multi_onnx), providers=["CPUExecutionProvider"])
    image, style = sess.get_inputs()
    assert (image.name, image.shape) == ("input", ["batch", 3, "height", "width"])
    assert (style.name, style.shape, style.type) == ("style", [3], "tensor(float)")
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["style_names"]) == NAMES and meta["style_input"] == "style"
    gen = torch.Generator().manual_seed(3)
    outputs = []
    for shape in SHAPES:
        x = torch.rand(shape, generator=gen)
        for w in (BLEND, ONE_HOT):
            y = sess.run(["output"], {"input": x.numpy(), "style": w.numpy()})[0]
            assert y.shape == shape and np.abs(y - _expected(multi[1], x, w).numpy()).max() <= TOL
            outputs.append(y)
    assert np.abs(outputs[0] - outputs[1]).max() > 0.01  # the style input changes the output
    import onnx

    ops = [n.op_type for n in onnx.load(str(multi_onnx)).graph.node]
    # the decoder in the fast form, as the single-style export's (tests/test_export.py)
    assert "Resize" not in ops and ops.count("DepthToSpace") == 3, sorted(set(ops))


def test_onnx_stylizer_chooses_styles(multi_onnx, multi):
    s = load_stylizer(multi_onnx, device="cpu")
    assert s.style_names == NAMES and s.name == "candy" and torch.equal(s.style, torch.eye(3)[0])
    x = torch.rand(2, 3, 19, 26, generator=torch.Generator().manual_seed(4))
    assert (s.stylize_tensor(x) - _expected(multi[1], x, torch.eye(3)[0])).abs().max() <= TOL
    s.set_style("candy:0.7,mosaic:0.3")
    assert s.name == "candy70-mosaic30" and torch.allclose(s.style, BLEND)
    assert (s.stylize_tensor(x) - _expected(multi[1], x, BLEND)).abs().max() <= TOL
    s.set_style(2)
    assert s.name == "wave" and (s.stylize_tensor(x) - _expected(multi[1], x, ONE_HOT)).abs().max() <= TOL
    pth = load_stylizer(multi[0], device="cpu")
    pth.set_style("wave")
    assert (s.stylize_tensor(x) - pth.stylize_tensor(x)).abs().max() <= TOL
    with pytest.raises(StyleError, match="unknown style 'nosuch'.*candy, mosaic, wave"):
        s.set_style("nosuch")


def test_torchscript_style_input_matches_pytorch(multi, tmp_path):
    out = tmp_path / "trio.pt"
    printed = export_cli(multi[0], "--output", out)
    assert "TorchScript" in printed and "candy, mosaic, wave" in printed
    extra = {TORCHSCRIPT_METADATA: ""}
    module = torch.jit.load(str(out), map_location="cpu", _extra_files=extra)
    assert json.loads(json.loads(extra[TORCHSCRIPT_METADATA])["style_names"]) == NAMES
    x = torch.rand(SHAPES[1], generator=torch.Generator().manual_seed(5))
    for w in (BLEND, ONE_HOT):
        with torch.inference_mode():
            assert (module(x, w) - _expected(multi[1], x, w)).abs().max() <= TOL
    assert multi[1].style_names == NAMES  # the exported network keeps its names


def test_baked_style_is_a_single_inputexport_cli(multi, baked_onnx):
    ort = pytest.importorskip("onnxruntime")
    out, printed = baked_onnx
    assert "style 'mosaic'" in printed and "Style input" not in printed
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["name"] == "mosaic" and meta["model_type"] == "johnson" and "style_names" not in meta
    w = torch.eye(3)[1]
    single = multi[1].for_style(w)
    x = torch.rand(SHAPES[1], generator=torch.Generator().manual_seed(6))
    y = torch.from_numpy(sess.run(["output"], {"input": x.numpy()})[0])
    with torch.inference_mode():
        assert (y - single(x)).abs().max() <= TOL and (y - multi[1](x, w)).abs().max() <= TOL
    s = load_stylizer(out, device="cpu")
    assert s.style_names == [] and s.name == "mosaic"
    with pytest.raises(StyleError, match="multi-style"):
        s.set_style("candy")


def test_a_style_asked_of_a_baked_export_says_its_style_is_baked_in(baked_onnx, tmp_path, capsys):
    """Was "choosing a style needs a multi-style model" / "styles are chosen in multi-style
    models": the export came from one; it says so, and how to choose styles at run time."""
    from fast_nst.commands.eval import main as eval_main
    out = baked_onnx[0]
    with pytest.raises(StyleError) as e:
        load_stylizer(out, device="cpu", style="candy")
    assert str(e.value) == (f"{out} has its style baked in (mosaic): it was exported from a multi-style model "
                            "with --style. To choose styles at run time, export the multi-style model without --style.")
    photo = make_photo(tmp_path / "p.jpg", (20, 16))
    code, err = in_process(capsys, eval_main, "--model_file", out, "--image_file", photo, "--style", "candy",
                           "--output_file", tmp_path / "o.jpg", "--device", "cpu")
    assert_clean_in_process(code, err, f"--style: {out} has its style baked in (mosaic)",
                            "export the multi-style model without --style")
    assert "needs a multi-style" not in err and not (tmp_path / "o.jpg").exists()


def test_list_styles_of_a_baked_export_says_its_style_is_baked_in(baked_onnx, capsys):
    """Was only "one style (mosaic)": --list_styles says the style is baked in and how to get a
    model whose styles can be chosen, as --style does."""
    from fast_nst.commands.eval import main as eval_main
    out = baked_onnx[0]
    capsys.readouterr()
    assert eval_main(["--model_file", str(out), "--list_styles"]) == 0
    assert capsys.readouterr().out == (
        f"{out} has its style baked in (mosaic): it was exported from a multi-style model with --style. "
        "To choose styles at run time, export the multi-style model without --style.\n")


def test_baked_blend_in_torchscript(multi, tmp_path):
    out = tmp_path / "blend.pt"
    assert "candy70-mosaic30" in export_cli(multi[0], "--output", out, "--style", "candy:0.7,mosaic:0.3")
    module = torch.jit.load(str(out), map_location="cpu")
    x = torch.rand(SHAPES[0], generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        assert (module(x) - _expected(multi[1], x, BLEND)).abs().max() <= TOL


@pytest.mark.parametrize("spec, fragments", [
    ("nosuch", ["--style: unknown style 'nosuch'", "candy, mosaic, wave"]),
    ("candy:0.5,starry:0.5", ["unknown style 'starry'", "candy, mosaic, wave"]),
    ("7", ["index 7 is out of range 0..2", "candy, mosaic, wave"]),
])
def test_bad_style_is_a_clean_error(spec, fragments, multi, tmp_path, capsys):
    out = tmp_path / "x.pt"
    code, err = in_process(capsys, export_main, multi[0], "--output", out, "--style", spec)
    assert_clean_in_process(code, err, *fragments)
    assert not out.exists()


def test_style_of_single_style_model_is_refused(tmp_path, capsys):
    net = TransformNet(TransformNetArgs(base_channels=8, num_residual=1))
    path = tmp_path / "plain.pth"
    atomic_torch_save(make_checkpoint(net, _cfg(tmp_path, "johnson"), step=1), path)
    code, err = in_process(capsys, export_main, path, "--output", tmp_path / "x.pt", "--style", "candy")
    assert_clean_in_process(code, err, "--style needs a multi-style model", "without --style")


@pytest.mark.parametrize("names, fragment", [
    (None, "its metadata has no style_names"),
    ('["candy", "candy", "wave"]', "not 3 distinct names"),
    ('["candy", "mosaic"]', "not 3 distinct names"),
    ("candy,mosaic,wave", "is not JSON"),
    ("[" + ", ".join(['"' + "x" * 300 + '"'] * 3) + "]", "of 1 to 200 characters"),
])
def test_two_inputs_without_style_names_are_refused(names, fragment, multi_onnx, tmp_path):
    import onnx

    proto = onnx.load(str(multi_onnx))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != "style_names"]
    del proto.metadata_props[:]
    for key, value in kept + ([("style_names", names)] if names is not None else []):
        proto.metadata_props.add(key=key, value=value)
    bad = tmp_path / "anonymous.onnx"
    onnx.save_model(proto, str(bad))
    with pytest.raises(CheckpointError) as e:
        load_stylizer(bad, device="cpu")
    message = str(e.value)
    assert fragment in message and "takes 3 style weights" in message and "--style NAME" in message


def test_a_baked_style_is_measured_with_its_style_weight(multi, baked_onnx, tmp_path, capsys):
    """The quality report measures a baked export of one style as the checkpoint's column of that
    style: with that style's style_weights multiplier (3 for mosaic), as training weighed it."""
    from fast_nst.commands.evaluate import main as evaluate_main

    make_photo(tmp_path / "photos" / "p.jpg", (48, 40), seed=1)
    style = make_photo(tmp_path / "style.png", (40, 40), seed=2)
    out = tmp_path / "report"
    code, err = in_process(capsys, evaluate_main, "--model_file", multi[0], baked_onnx[0], "--images",
                           tmp_path / "photos", "--output", out, "--style", style, "--loss_model_weights", "random",
                           "--device", "cpu")
    assert code == 0, err
    found = {m["name"]: m for m in json.loads((out / "results.json").read_text())["models"]}
    assert set(found) == {"trio_candy", "trio_mosaic", "trio_wave", "mosaic"}
    assert found["mosaic"]["mean_style"] == pytest.approx(found["trio_mosaic"]["mean_style"], rel=1e-2)
    assert found["mosaic"]["loss_group"] == found["trio_mosaic"]["loss_group"] != found["trio_candy"]["loss_group"]
