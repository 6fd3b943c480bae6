"""Arbitrary-style (AdaIN) models outside PyTorch training: the ONNX export with the style image and
alpha as inputs, stylizing with it, the refusals (TorchScript, --style), the quality report with
--style, and the training data's resize_to (Huang & Belongie's 512 px resize before 256 crops).

A random VGG16 encoder cut at relu4_1 (its 8 px pooling grid and 16 px smallest style image).
"""

from __future__ import annotations

import json
import math
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from conftest import assert_clean_in_process, export_cli, in_process, make_photo, random_adain_net, tiny_values
from fast_nst import load_stylizer
from fast_nst.commands import eval as eval_cmd
from fast_nst.commands.evaluate import main as evaluate_main
from fast_nst.commands.export import main as export_main
from fast_nst.core.errors import ConfigError, FastNSTError
from fast_nst.io.checkpoint import atomic_torch_save, make_checkpoint
from fast_nst.io.export import check_style_sizes
from fast_nst.nets.adain import AdaINNet
from fast_nst.nets.multistyle import StyleError
from fast_nst.report.collect import ADAIN_STYLE_NOTE
from fast_nst.stylize.temporal import TemporalStatistics
from fast_nst.training.config import train_config_from_dict
from fast_nst.training.data import ImageFolderDataset, build_loader, decode_resized, random_crop

TOL = 1e-3
PHOTOS = [(1, 3, 21, 34), (2, 3, 5, 9)]  # off the 8 px grid, batch 2, below 8 px
STYLES = [(1, 3, 16, 19), (1, 3, 45, 33)]  # the smallest side the encoder takes, and a larger one
ADAIN_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]


def _values(root: Path, **overrides) -> dict:
    values = tiny_values(root / "models", root / "train", Path("unused"), style_image="",
                         style_dir=str(root / "art"), model_type="adain", loss_model="vgg16",
                         style_layers=ADAIN_LAYERS, naming="ad")
    values.update(overrides)
    return values


@pytest.fixture(scope="module")
def adain(tmp_path_factory) -> dict:
    """An AdaIN checkpoint (its decoder scaled up for varied outputs), photos and a style image."""
    root = tmp_path_factory.mktemp("adain_export")
    net = random_adain_net()
    path = root / "ad.pth"
    atomic_torch_save(make_checkpoint(net, train_config_from_dict(_values(root), "test"), step=3), path)
    photos = root / "photos"
    for i in range(2):
        make_photo(photos / f"p{i}.jpg", (48 + 8 * i, 40), seed=i)
    style = make_photo(root / "starry.png", (50, 40), seed=9)
    other = make_photo(root / "waves.png", (40, 44), seed=10)
    return {"root": root, "path": path, "net": net, "photos": photos, "style": style, "other": other}


@pytest.fixture(scope="module")
def adain_onnx(adain) -> Path:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    out = adain["root"] / "ad.onnx"
    printed = export_cli(adain["path"], "--output", out)
    assert "Style inputs 'style_image'" in printed and "h, w >= 16" in printed and "'alpha'" in printed
    return out


def _expected(net: AdaINNet, x, style, alpha: float) -> np.ndarray:
    with torch.inference_mode():
        return net(x, style, alpha).numpy()


# -- the export ---------------------------------------------------------------------------------

def test_onnx_takes_style_image_and_alpha_and_matches_pytorch(adain_onnx, adain):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(adain_onnx), providers=["CPUExecutionProvider"])
    image, style, alpha = sess.get_inputs()
    assert (image.name, image.shape) == ("input", ["batch", 3, "height", "width"])
    assert (style.name, style.shape, style.type) == ("style_image", [1, 3, "style_height", "style_width"],
                                                     "tensor(float)")
    assert (alpha.name, alpha.shape, alpha.type) == ("alpha", [1], "tensor(float)")
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["style_input"] == "image" and meta["model_type"] == "adain" and meta["style_min_side"] == "16"
    assert json.loads(meta["input_names"]) == ["input", "style_image", "alpha"]
    gen = torch.Generator().manual_seed(3)
    for shape in PHOTOS:
        x = torch.rand(shape, generator=gen)
        outputs = []
        for style_shape in STYLES:
            s = torch.rand(style_shape, generator=gen)
            for a in (1.0, 0.4):
                y = sess.run(["output"], {"input": x.numpy(), "style_image": s.numpy(),
                                          "alpha": np.array([a], np.float32)})[0]
                assert y.shape == shape and np.abs(y - _expected(adain["net"], x, s, a)).max() <= TOL
                outputs.append(y)
        # The style image changes the output, and so does alpha: by more than the tolerance.
        assert np.abs(outputs[0] - outputs[2]).max() > 2 * TOL and np.abs(outputs[0] - outputs[1]).max() > 2 * TOL
    assert check_style_sizes(adain["net"])[0] == (16, 19)  # the export's own check starts at the minimum


def test_onnx_stylizer_feeds_the_style_image(adain_onnx, adain):
    onnx_s, torch_s = load_stylizer(adain_onnx, device="cpu"), load_stylizer(adain["path"], device="cpu")
    assert onnx_s.style_input == "image"
    x = torch.rand(1, 3, 27, 38, generator=torch.Generator().manual_seed(4))
    with pytest.raises(StyleError, match="ad.onnx: this model needs a style image: --style_image painting.jpg"):
        onnx_s.stylize_tensor(x)
    for kwargs in ({"style_size": 48}, {"style_size": 20, "alpha": 0.5}):
        onnx_s.set_style(adain["style"], **kwargs)
        torch_s.set_style(adain["style"], **kwargs)
        assert onnx_s.name == "starry"
        assert (onnx_s.stylize_tensor(x) - torch_s.stylize_tensor(x)).abs().max() <= TOL
    onnx_s.set_style([(adain["style"], 1.0), (adain["other"], 0.0)], style_size=48)  # one image in effect
    with pytest.raises(StyleError, match="a blend of 2 style images needs their AdaIN statistics.*the .pth model"):
        onnx_s.set_style([(adain["style"], 0.5), (adain["other"], 0.5)])
    for kwargs, message in (({"alpha": 1.5}, "alpha must be between 0"),
                            ({"style_size": 8}, "style_size must be a whole number of pixels >= 16")):
        with pytest.raises(Exception, match=message):
            onnx_s.set_style(adain["style"], **kwargs)


def test_onnx_export_tiles_and_carries_statistics_as_pytorch(adain_onnx, adain, tmp_path):
    """The export's content normalisation is one instance norm (its statistics in the graph), so
    the export tiles on the encoder's 8 px grid with the whole photo's statistics and carries them
    across video frames, as the PyTorch network does."""
    onnx_s, torch_s = load_stylizer(adain_onnx, device="cpu"), load_stylizer(adain["path"], device="cpu")
    graph = pytest.importorskip("onnx").load(str(adain_onnx)).graph
    assert [n.op_type for n in graph.node].count("InstanceNormalization") == 1
    for s in (onnx_s, torch_s):
        s.set_style(adain["style"], style_size=48, alpha=0.7)
    assert onnx_s.can_tile and onnx_s.can_carry and onnx_s.tiling.grid == 8 and onnx_s.tiling.context == 64
    photo = Image.open(make_photo(tmp_path / "p.png", (301, 197), fmt="PNG"))  # off the 8 px grid
    whole = np.asarray(onnx_s.stylize(photo, tile_size=None), dtype=int)
    tiled = np.asarray(onnx_s.stylize(photo, tile_size=256), dtype=int)
    assert onnx_s.last_tile_count == 6 and tiled.shape == whole.shape == (197, 301, 3)
    assert np.abs(tiled - whole).max() <= 1 and whole.std() > 10  # a varied image, not a flat one
    torch.manual_seed(1)
    scene = torch.rand(1, 3, 40, 48)
    frames = torch.cat([scene, (scene + 0.05 * torch.rand(1, 3, 40, 48)).clamp(0, 1), 1 - scene])
    with TemporalStatistics(onnx_s) as video:
        carried = video.stylize(frames)
    with TemporalStatistics(torch_s) as video:
        assert (carried - video.stylize(frames)).abs().max() < 1e-4
    assert (carried[1] - onnx_s.stylize_tensor(frames[1:2])[0]).abs().max() > 1e-3  # the first frame's, carried


def test_an_earlier_export_without_the_norm_runs_whole_images(adain_onnx, adain, monkeypatch):
    """An arbitrary-style export written before its AdaIN was one instance norm has no norm to
    rewrite: it stylizes whole images and frames, and tiles or carried statistics are refused in
    one line saying why and what to do."""
    from fast_nst.core.errors import FastNSTError
    from fast_nst.stylize import onnx_tiling
    from fast_nst.stylize.base import OptionError

    monkeypatch.setattr(onnx_tiling, "norm_count", lambda data, max_bytes: 0)  # as in such a graph
    s = load_stylizer(adain_onnx, device="cpu")
    s.set_style(adain["style"], style_size=32)
    assert not s.can_tile and not s.can_carry
    photo = Image.open(adain["photos"] / "p0.jpg")
    assert s.stylize(photo).size == photo.size and s.last_tile_count == 1
    with pytest.raises(FastNSTError, match="cannot tile .*ones exported by an earlier version.*export it again"):
        s.stylize(photo, tile_size=256)
    with pytest.raises(OptionError, match="--temporal off, or the .pth model"):
        TemporalStatistics(s)


def test_eval_runs_the_onnx_export_with_a_style_image(adain_onnx, adain, tmp_path, capsys):
    photo, out = adain["photos"] / "p0.jpg", tmp_path / "out.jpg"
    code, err = in_process(capsys, eval_cmd.main, "--model_file", adain_onnx, "--image_file", photo,
                           "--output_file", out, "--style_image", adain["style"], "--alpha", "0.7",
                           "--style_size", "32", "--device", "cpu")
    assert code == 0 and Image.open(out).size == Image.open(photo).size, err


def test_torchscript_and_baked_style_are_refused(adain, tmp_path, capsys):
    pt = tmp_path / "ad.pt"
    code, err = in_process(capsys, export_main, adain["path"], "--output", pt)
    assert_clean_in_process(code, err, "model_type adain) cannot be exported to TorchScript", "Export it to ONNX")
    assert not pt.exists()
    out = tmp_path / "ad.onnx"
    code, err = in_process(capsys, export_main, adain["path"], "--output", out, "--style", "starry")
    assert_clean_in_process(code, err, "--style bakes one of a multi-style model's styles",
                            "arbitrary-style model (model_type adain)", "export it without --style")
    assert not out.exists()


def test_int8_is_refused_before_any_export(adain, adain_onnx, tmp_path, capsys, monkeypatch):
    """int8 quantizes single- and multi-style models: an arbitrary-style one is one line, from the
    export command before its slow float export, and from load_stylizer before it says it makes
    an int8 file; each says what to do where it was asked (an .onnx has no bf16 in onnxruntime)."""
    from fast_nst.io import model_export

    monkeypatch.setattr(model_export, "_write_checked", lambda *a, **k: pytest.fail("exported before the check"))
    out = tmp_path / "ad.int8.onnx"
    code, err = in_process(capsys, export_main, adain["path"], "--quantize", "int8", "--output", out)
    assert_clean_in_process(code, err, "is an arbitrary-style model: int8 quantization is for single- and "
                            "multi-style models; export it without --quantize.")
    assert not out.exists()
    with pytest.raises(FastNSTError, match=r"is an arbitrary-style model: int8 quantization.*; run it with "
                                           r"--precision fp32 or bf16\.$"):
        load_stylizer(adain["path"], device="cpu", precision="int8")
    capsys.readouterr()
    with pytest.raises(FastNSTError, match=r"models; run it with --precision fp32 \(bf16: add --runtime openvino"):
        load_stylizer(adain_onnx, device="cpu", precision="int8")
    assert "Making" not in capsys.readouterr().err  # refused before the work it would announce


def test_loss_model_file_without_an_encoder_to_read_is_refused(adain, adain_onnx, tmp_path, capsys):
    """--loss_model_file fills an arbitrary-style .pth's encoder: with an .onnx export (its encoder
    inside) or a model without one, eval.py and the export command say so in one line instead of
    ignoring it, and write nothing."""
    from fast_nst.nets.johnson import TransformNet, TransformNetArgs

    johnson = tmp_path / "wave.pth"
    cfg = train_config_from_dict(tiny_values(tmp_path, Path("train"), adain["style"], naming="wave"), "test")
    atomic_torch_save(make_checkpoint(TransformNet(TransformNetArgs(base_channels=8, num_residual=1)), cfg, step=2),
                      johnson)
    photo, out = adain["photos"] / "p0.jpg", tmp_path / "out"
    weights = adain["style"]  # never read: refused first
    code, err = in_process(capsys, eval_cmd.main, "--model_file", johnson, "--image_file", photo,
                           "--output_file", out / "a.jpg", "--device", "cpu", "--loss_model_file", weights)
    assert_clean_in_process(code, err, f"--loss_model_file: {johnson} is not an arbitrary-style model",
                            "remove --loss_model_file")
    code, err = in_process(capsys, eval_cmd.main, "--model_file", adain_onnx, "--image_file", photo,
                           "--style_image", adain["style"], "--output_file", out / "b.jpg", "--device", "cpu",
                           "--loss_model_file", weights)
    assert_clean_in_process(code, err, f"--loss_model_file: {adain_onnx} is an .onnx export, which holds its "
                            "encoder's weights")
    for name in ("c.onnx", "c.safetensors"):
        code, err = in_process(capsys, export_main, johnson, "--output", out / name, "--loss_model_file", weights)
        assert_clean_in_process(code, err, "is not an arbitrary-style model", "remove --loss_model_file")
    assert not out.exists()


# -- the report ---------------------------------------------------------------------------------

def test_report_feeds_and_measures_the_style_image(adain, tmp_path, capsys):
    out = tmp_path / "report"
    code, err = in_process(capsys, evaluate_main, "--model_file", adain["path"], "--images", adain["photos"],
                           "--output", out, "--style", adain["style"], "--loss_model_weights", "random",
                           "--device", "cpu", "--max_size", "48")
    assert code == 0, err
    data = json.loads((out / "results.json").read_text())
    (model,) = data["models"]
    assert model["name"] == "ad" and len(model["photos"]) == 2  # named after the run, not the style
    assert math.isfinite(model["mean_content"]) and math.isfinite(model["mean_style"]) and model["mean_style"] > 0
    page = (out / "index.html").read_text()
    assert "its AdaIN training loss (feature means and standard deviations)" in page
    assert ADAIN_STYLE_NOTE.split(";")[0] in page and model["style_loss"] == "stats"
    assert "relu1_1, relu2_1, relu3_1, relu4_1" in page  # measured at the model's own style layers
    code, err = in_process(capsys, evaluate_main, "--model_file", adain["path"], "--images", adain["photos"],
                           "--output", tmp_path / "none", "--loss_model_weights", "random", "--device", "cpu")
    assert_clean_in_process(code, err, f"--model_file {adain['path']} is an arbitrary-style model", "--style IMAGE")
    assert not (tmp_path / "none").exists()


def test_report_measures_adain_with_its_own_loss_and_marks_groups(adain, tmp_path, capsys):
    """An AdaIN model's style loss is its mean/std loss (not a Gram loss), and beside a Johnson
    model the page says their numbers are not comparable."""
    from fast_nst.lossnet.losses import StatsStyleLoss, mean_std
    from fast_nst.nets.johnson import TransformNet, TransformNetArgs

    feats, target = torch.rand(2, 4, 6, 5), torch.rand(1, 4, 7, 3)
    (m, s), (tm, ts) = mean_std(feats), mean_std(target)
    expected = 3.0 * (((m - tm) ** 2).mean() + ((s - ts) ** 2).mean())
    assert float(StatsStyleLoss(target, 3.0)(feats)) == pytest.approx(float(expected), rel=1e-5)
    johnson = tmp_path / "wave.pth"
    cfg = train_config_from_dict(tiny_values(tmp_path, Path("train"), adain["style"], naming="wave"), "test")
    atomic_torch_save(make_checkpoint(TransformNet(TransformNetArgs(base_channels=8, num_residual=1)), cfg, step=2),
                      johnson)
    out = tmp_path / "report"
    code, err = in_process(capsys, evaluate_main, "--model_file", adain["path"], johnson, "--images", adain["photos"],
                           "--output", out, "--style", adain["style"], "--loss_model_weights", "random",
                           "--device", "cpu", "--max_size", "48")
    assert code == 0, err
    data = {m["name"]: m for m in json.loads((out / "results.json").read_text())["models"]}
    assert (data["ad"]["loss_group"], data["wave"]["loss_group"]) == ("A", "B")
    assert (data["ad"]["style_loss"], data["wave"]["style_loss"]) == ("stats", "gram")
    page = (out / "index.html").read_text()
    assert "Not comparable across groups" in page and "<th>measured alike</th>" in page
    assert "<td class='group'>A</td>" in page and "<td class='group'>B</td>" in page


def test_an_export_is_measured_like_its_checkpoint(adain, adain_onnx, tmp_path, capsys):
    """The .onnx carries the loss fields of the training config (metadata loss_config): it is
    measured with the AdaIN loss at the model's own layers and weights, as the .pth is; an export
    without them (an older one) still with AdaIN's loss, as the page's note says."""
    import onnx

    from fast_nst.commands.evaluate import parser

    out = tmp_path / "report"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, err = in_process(capsys, evaluate_main, "--model_file", adain["path"], adain_onnx, "--images",
                               adain["photos"], "--output", out, "--style", adain["style"], "--loss_model_weights",
                               "random", "--device", "cpu", "--max_size", "48")
    assert code == 0, err
    pth, onnx_model = json.loads((out / "results.json").read_text())["models"]
    assert (pth["name"], onnx_model["name"]) == ("ad_step3_pth", "ad_step3_onnx")  # one run, one step
    assert pth["style_loss"] == onnx_model["style_loss"] == "stats" and pth["loss_group"] == onnx_model["loss_group"]
    assert onnx_model["mean_style"] == pytest.approx(pth["mean_style"], rel=1e-2)
    assert onnx_model["mean_content"] == pytest.approx(pth["mean_content"], rel=1e-2)
    assert not [w for w in caught if "loss settings" in str(w.message)]  # both carry them
    page = (out / "index.html").read_text()
    assert page.count("its AdaIN training loss") == 2 and "fast-nst&#39;s defaults" not in page
    older = onnx.load(str(adain_onnx))
    kept = [(p.key, p.value) for p in older.metadata_props if p.key != "loss_config"]
    assert len(kept) == len(older.metadata_props) - 1
    del older.metadata_props[:]
    for key, value in kept:
        older.metadata_props.add(key=key, value=value)
    onnx.save(older, str(tmp_path / "older.onnx"))
    with pytest.warns(UserWarning, match="does not carry its training loss settings") as caught:
        code, err = in_process(capsys, evaluate_main, "--model_file", tmp_path / "older.onnx", "--images",
                               adain["photos"], "--output", tmp_path / "older", "--style", adain["style"],
                               "--loss_model_weights", "random", "--device", "cpu", "--max_size", "48")
    assert code == 0, err
    (said,) = [str(w.message) for w in caught if "loss settings" in str(w.message)]
    assert said.startswith(f"{tmp_path / 'older.onnx'}: this arbitrary-style export")
    assert "fast-nst's default style layers and weights" in said
    assert said.endswith("Re-export it from its checkpoint to measure it as trained: python -m fast_nst.export "
                         "MODEL.pth --output older.onnx")
    (model,) = json.loads((tmp_path / "older" / "results.json").read_text())["models"]
    assert model["style_loss"] == "stats"
    assert "its AdaIN training loss" in (tmp_path / "older" / "index.html").read_text()
    helped = " ".join(parser().format_help().split())
    assert "(their AdaIN training loss, feature means and standard deviations" in helped
    assert "not the AdaIN" not in helped


def test_report_measures_adain_content_against_its_adain_target(adain, tmp_path, capsys):
    """Content as AdaIN training measures it (training/arbitrary.py, AdaINLoss): the output's
    features against the AdaIN target at the encoder's layer (here relu2_1), not against the
    photo's at the config's content_layers (relu2_2, unused by AdaIN training); the page says so."""
    from fast_nst.core.images import pil_to_tensor
    from fast_nst.core.untrusted import open_image, resize_style
    from fast_nst.lossnet.losses import AdaINLoss
    from fast_nst.lossnet.vgg import build_loss_network
    from fast_nst.report.measure import LOSS_SEED

    layers = ["relu1_1", "relu2_1"]
    cfg = train_config_from_dict(_values(tmp_path, style_layers=layers, content_weight=2.0, style_weight=5.0,
                                         model_args={"encoder_layer": "relu2_1"}), "test")
    assert cfg.content_layers == ("relu2_2",)
    path = tmp_path / "ad.pth"
    atomic_torch_save(make_checkpoint(random_adain_net("relu2_1"), cfg, step=3), path)
    out = tmp_path / "report"
    code, err = in_process(capsys, evaluate_main, "--model_file", path, "--images", adain["photos"], "--output", out,
                           "--style", adain["style"], "--loss_model_weights", "random", "--device", "cpu",
                           "--max_size", "64")  # the photos' own sizes
    assert code == 0, err
    (model,) = json.loads((out / "results.json").read_text())["models"]
    # The style image at the config's style_size, which the model stylized with too.
    style = pil_to_tensor(resize_style(open_image(adain["style"]).convert("RGB"), 48, "longer", "s", "x"))[None]
    loss = AdaINLoss(build_loss_network("random", ["relu2_1", "relu1_1"], seed=LOSS_SEED, quiet=True), "relu2_1",
                     layers, 2.0, 5.0, 0.0)
    stylizer = load_stylizer(path, device="cpu")
    stylizer.set_style(adain["style"], style_size=cfg.style_size)
    assert cfg.style_size == 48
    for name in ("p0", "p1"):
        photo = open_image(adain["photos"] / f"{name}.jpg").convert("RGB")
        x, y = (pil_to_tensor(im)[None] for im in (photo, stylizer.stylize(photo).convert("RGB")))
        with torch.no_grad():
            terms = loss(y, *loss.targets(x, style))
        found = model["photos"][name]
        assert found["content"] == pytest.approx(float(terms["content"]), rel=1e-3), name
        assert found["style"] == pytest.approx(float(terms["style"]), rel=1e-3), name
    assert model["content_target"] == "adain"
    assert "relu2_1 (weight 2), against the AdaIN target" in (out / "index.html").read_text()


def _stub(meta: dict) -> object:
    """An arbitrary-style .onnx stylizer as the report sees one: its metadata."""
    from types import SimpleNamespace

    return SimpleNamespace(info={"format": "onnx", "path": "x.onnx", "metadata": meta}, style_input="image",
                           style_names=[], name="x")


def test_an_exports_content_layer_is_its_encoder_layer_from_its_metadata():
    from fast_nst.report.collect import _saved, _settings_of

    stub = _stub({"model_args": json.dumps({"encoder_layer": "relu3_1", "unbiased_std": True}),
                  "loss_config": json.dumps({"model_type": "adain", "content_layers": ["relu2_2"]})})
    s = _settings_of(stub, "x.onnx", *_saved(stub))
    assert (s.content_layers, s.content_target, s.adain_unbiased) == (("relu3_1",), "adain", True)
    assert s.style_loss == "stats" and s.from_config


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=200), st.builds(json.dumps, st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["encoder_layer", "unbiased_std",
                                                                                  "x"]), inner, max_size=3),
    max_leaves=8))))
def test_any_model_args_metadata_gives_a_known_content_layer(text):
    """Metadata is untrusted: whatever model_args holds, the export is measured at a real layer
    (its own when it names one, else AdaIN's default relu4_1), and nothing else is raised."""
    from fast_nst.lossnet import LOSS_NETWORKS, layer_choices
    from fast_nst.report.collect import _saved, _settings_of

    stub = _stub({"model_args": text})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no loss_config: the warning is tested above
        s = _settings_of(stub, "x.onnx", *_saved(stub))
    (layer,) = s.content_layers
    assert any(layer in layer_choices(n) for n in LOSS_NETWORKS) and isinstance(s.adain_unbiased, bool)


# -- resize_to -------------------------------------------------------------------------------------

class _Cache:
    """A stand-in for the pre-resized cache: every image a grey 32 x 42 (shorter side 32)."""

    folder = Path("fake_cache_32")
    shapes = [[32, 42]]

    def get(self, i: int) -> np.ndarray:
        return np.full((32, 42, 3), 7, dtype=np.uint8)


def test_resize_to_crops_from_the_larger_resize(tmp_path):
    photo = make_photo(tmp_path / "p.jpg", (60, 45), seed=5)
    plain = ImageFolderDataset([photo], 32, seed=1)[(0, 0)]
    big = ImageFolderDataset([photo], 32, seed=1, resize_to=64)[(0, 0)]
    assert plain.ok and big.ok and plain.image.shape == big.image.shape == (3, 32, 32)
    assert not torch.equal(plain.image, big.image)
    # the crop of the 64 px resize, at the position drawn from (seed, epoch, index)
    expected = random_crop(decode_resized(photo, 64), 32, random.Random("1:0:0"))
    assert torch.equal(big.image, expected)
    assert torch.equal(ImageFolderDataset([photo], 32, seed=1, resize_to=32)[(0, 0)].image, plain.image)


def test_a_cache_of_another_size_is_not_used_with_resize_to(tmp_path):
    photos = [make_photo(tmp_path / f"p{i}.jpg", (50, 40), seed=i) for i in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # resize_to None: the cache is used, silently
        cached = next(iter(build_loader(photos, 32, 2, 0, 0, cache=_Cache())))["image"]
    assert bool((cached == 7).all())
    with pytest.warns(UserWarning, match="Not using the pre-resized cache fake_cache_32: it holds images of "
                                         "shorter side 32, not resize_to 48"):
        batch = next(iter(build_loader(photos, 32, 2, 0, 0, cache=_Cache(), resize_to=48)))
    assert batch["image"].shape == (2, 3, 32, 32) and not bool((batch["image"] == 7).all())


def test_resize_to_below_image_size_is_a_config_error(tmp_path):
    cfg = train_config_from_dict(_values(tmp_path, resize_to=64), "test")
    assert (cfg.resize_to, cfg.image_size) == (64, 32)
    assert train_config_from_dict(_values(tmp_path), "test").resize_to is None
    with pytest.raises(ConfigError, match="key 'resize_to' is 16, smaller than image_size 32"):
        train_config_from_dict(_values(tmp_path, resize_to=16), "test")
