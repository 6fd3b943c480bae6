"""Optimisation-based style transfer (fast_nst.optimize), with random VGG weights and 32-48 px
images so each run takes about a second on a 2-core CPU."""

import re

import pytest
import torch
from PIL import Image

from conftest import in_process, make_photo
from fast_nst.io.checkpoint import atomic_torch_save, make_checkpoint
from fast_nst.core import device as device_module
from fast_nst.core.config import TrainConfig
from fast_nst.core.errors import CheckpointError, FastNSTError
from fast_nst.nets.johnson import TransformNet, TransformNetArgs
from fast_nst.commands.optimize import main
from fast_nst.gatys import PRESETS, intermediate_path, optimize, resolve_layers, scale_sizes
from fast_nst.lossnet import LOSS_NETWORKS, layer_choices, layer_names
from fast_nst.lossnet.vgg import VGGEncoder, build_loss_network, load_features

GATYS_STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
JOHNSON_STYLE = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("optimize")
    return make_photo(d / "content.jpg", (48, 40), seed=1), make_photo(d / "style.png", (56, 48), seed=99)


def run(pair, **kw):
    history = []
    kw = {"loss_model_weights": "random", "image_size": 48, "steps": 20, "device": "cpu",
          "progress": False, **kw}
    img = optimize(str(pair[0]), str(pair[1]), history=history, **kw)
    return img, history


# ---- the optimisation works --------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_loss_decreases_substantially(pair, optimizer):
    img, h = run(pair, optimizer=optimizer)
    assert len(h) == 21  # one entry per step, plus the final image
    # Measured: L-BFGS ends at ~2 % of the starting loss, Adam (lr 0.02) at ~7 %.
    assert h[-1]["total"] < 0.2 * h[0]["total"], (h[0], h[-1])
    assert h[-1]["style"] < 0.2 * h[0]["style"]
    assert h[0]["content"] == 0.0  # init content: the content term starts at zero
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (48, 40)


def test_noise_init_and_gatys_layers(pair):
    _, h = run(pair, init="noise", steps=15)
    assert h[-1]["total"] < 0.2 * h[0]["total"]
    assert sorted(k for k in h[0] if k.startswith("style/")) == sorted(f"style/{n}" for n in GATYS_STYLE)


def test_bf16_and_multiscale(pair):
    img, h = run(pair, precision="bf16", scales=2, steps=8)
    assert img.size == (48, 40)
    assert len(h) == 17 and h[-1]["total"] < 0.5 * h[0]["total"]
    assert all(isinstance(v, float) for v in h[-1].values())


def test_scale_sizes():
    assert scale_sizes(512, 1) == [512]
    assert scale_sizes(512, 3) == [128, 256, 512]


# ---- layers and presets ------------------------------------------------------------------------

def test_presets_select_documented_layers():
    assert resolve_layers("vgg16", "gatys", None, None, None) == (["relu4_2"], GATYS_STYLE)
    assert resolve_layers("vgg16", "johnson", None, None, None) == (["relu2_2"], JOHNSON_STYLE)
    assert resolve_layers("vgg19", "johnson", None, None, None) == (["relu2_2"], JOHNSON_STYLE)
    # Explicit lists override the preset, each independently.
    assert resolve_layers("vgg16", "gatys", ["relu3_3"], None, None) == (["relu3_3"], GATYS_STYLE)
    assert resolve_layers("vgg19", "gatys", None, ["relu5_4"], [2.0]) == (["relu4_2"], ["relu5_4"])
    assert set(PRESETS) == {"gatys", "johnson"}


def test_johnson_preset_layers_reach_the_loss(pair):
    _, h = run(pair, preset="johnson", steps=3, style_layer_weights=[1, 1, 1, 2])
    assert sorted(k for k in h[0] if k.startswith("style/")) == sorted(f"style/{n}" for n in JOHNSON_STYLE)


def test_bad_layers_list_the_valid_ones():
    with pytest.raises(FastNSTError) as e:
        resolve_layers("vgg16", "gatys", None, ["relu5_4"], None)  # VGG19 only
    assert "relu5_4" in str(e.value) and "relu5_3" in str(e.value) and "relu1_1" in str(e.value)
    with pytest.raises(FastNSTError, match="2 weights for 5 style layers"):
        resolve_layers("vgg16", "gatys", None, None, [1.0, 2.0])


# ---- output size -------------------------------------------------------------------------------

@pytest.mark.parametrize("size,expected", [(40, (40, 33)), (64, (64, 53))])
def test_output_longest_side_is_image_size(pair, size, expected):
    img, _ = run(pair, image_size=size, steps=2, optimizer="adam")
    assert img.size == expected


# ---- VGG19 -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tv_vgg19_file(tmp_path_factory):
    """torchvision's vgg19() features (random weights) saved in the ImageNet file's keys, with a
    classifier of a few numbers (a loss network ignores it; the real one's 411 MB took seconds to
    write): (the features, the file)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    features = make_layers(cfgs["E"]).eval()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    for i in (0, 3, 6):
        state[f"classifier.{i}.weight"], state[f"classifier.{i}.bias"] = torch.randn(4, 8), torch.randn(4)
    path = tmp_path_factory.mktemp("vgg19") / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    return features, path


def test_vgg19_names_match_torchvision_indices(tv_vgg19_file):
    features, path = tv_vgg19_file
    assert len(layer_names("vgg19")) == len(features) == 37
    assert layer_names("vgg19").index("relu3_4") == 17 and layer_names("vgg19").index("relu5_4") == 35
    assert "relu5_4" in layer_choices("vgg19") and "relu5_4" not in layer_choices("vgg16")
    enc = VGGEncoder(load_features("vgg19", path, allow_download=False), ["relu4_2", "relu4_4"], LOSS_NETWORKS["vgg19"])
    x = torch.rand(1, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = features[:layer_names("vgg19").index("relu4_4") + 1]((x - mean) / std)
        out = enc(x, ["relu4_4"])["relu4_4"]
    torch.testing.assert_close(out, ref)


def test_vgg19_loader_accepts_features_only_and_rejects_vgg16(tmp_path, tv_vgg19_file, vgg_file):
    _, path = tv_vgg19_file
    full = torch.load(path, weights_only=True)
    feats = {k[len("features."):]: v for k, v in full.items() if k.startswith("features.")}
    torch.save(feats, tmp_path / "feats.pth")
    loaded = load_features("vgg19", tmp_path / "feats.pth", allow_download=False)
    assert torch.equal(loaded[34].weight, full["features.34.weight"])
    with pytest.raises(CheckpointError, match="not a VGG19 weights file"):
        load_features("vgg19", vgg_file, allow_download=False)


def test_vgg19_random_is_seeded_and_optimizes(pair, capsys):
    a = build_loss_network("random", ["relu5_4"], "unused.pth", seed=3, name="vgg19")
    b = build_loss_network("random", ["relu5_4"], "unused.pth", seed=3, name="vgg19")
    assert torch.equal(a.layers.conv5_4.weight, b.layers.conv5_4.weight)
    assert "RANDOM weights" in capsys.readouterr().err
    img, h = run(pair, loss_model="vgg19", steps=15)
    assert h[-1]["total"] < 0.2 * h[0]["total"] and img.size == (48, 40)


# ---- init from a trained model -----------------------------------------------------------------

def test_init_from_checkpoint_starts_from_its_stylization(pair, tmp_path):
    from fast_nst.gatys import GatysObjective
    from fast_nst.core.images import pil_to_tensor
    from fast_nst.stylize import load_stylizer

    torch.manual_seed(0)
    model = TransformNet(TransformNetArgs(base_channels=8, num_residual=1))
    path = tmp_path / "tiny.pth"
    atomic_torch_save(make_checkpoint(model, TrainConfig(), step=0), path)
    img, h = run(pair, init=str(path), steps=5)
    assert img.size == (48, 40)
    # The first loss is that of the model's stylization of the (resized) content photo.
    content = Image.open(pair[0]).convert("RGB")
    start = load_stylizer(path, device="cpu").stylize(content, tile_size=None)
    enc = build_loss_network("random", ["relu4_2"] + GATYS_STYLE, "unused.pth", quiet=True)
    style = pil_to_tensor(Image.open(pair[1]).convert("RGB").resize((48, 41), Image.Resampling.LANCZOS))
    obj = GatysObjective(enc, pil_to_tensor(content).unsqueeze(0), style.unsqueeze(0), ["relu4_2"],
                         GATYS_STYLE, 1.0, 1e6, 0.0)
    with torch.no_grad():
        expected = float(obj(pil_to_tensor(start).unsqueeze(0))["content"])
    assert h[0]["content"] > 0
    assert h[0]["content"] == pytest.approx(expected, rel=1e-4)
    assert h[-1]["total"] < h[0]["total"]


def test_init_from_an_arbitrary_style_model_uses_the_style_image(pair, tmp_path):
    """It used to fail asking for --style_image, which optimize does not have."""
    from fast_nst.core.config import config_from_dict

    from conftest import random_adain_net

    net = random_adain_net("relu2_1")
    cfg = config_from_dict({"naming": "ada", "model_type": "adain", "model_args": net.args.to_dict(),
                            "style_image": "x"}, "test")
    path = tmp_path / "ada.pth"
    atomic_torch_save(make_checkpoint(net, cfg, step=0), path)
    img, h = run(pair, init=str(path), steps=2)
    assert img.size == (48, 40) and len(h) == 3 and h[0]["content"] > 0


# ---- command line ------------------------------------------------------------------------------

def test_cli_end_to_end(pair, tmp_path, capsys):
    out = tmp_path / "out" / "result.png"
    capsys.readouterr()
    code = main(["--content", str(pair[0]), "--style", str(pair[1]), "--output", str(out),
                 "--loss_model_weights", "random", "--image_size", "40", "--steps", "4", "--scales", "2",
                 "--save_every", "2", "--device", "cpu", "--preserve_color", "--style_layers", "relu1_1,relu2_1",
                 "--tv_weight", "1"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "RANDOM weights" in printed.err and f"Saved {out}" in printed.out
    assert Image.open(out).size == (40, 33)
    saved = sorted(p.name for p in out.parent.iterdir())
    assert saved == ["result.png", "result_step0002.png", "result_step0004.png",
                     "result_step0006.png", "result_step0008.png"]
    assert Image.open(intermediate_path(out, 2)).size == (20, 17)  # first of two scales: half size


def cli_error(capsys, *args):
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    return err


def test_cli_errors_are_clean(pair, tmp_path, capsys, monkeypatch):
    c, s = str(pair[0]), str(pair[1])
    out = str(tmp_path / "o.jpg")
    base = ["--content", c, "--style", s, "--output", out, "--loss_model_weights", "random",
            "--image_size", "32", "--steps", "1", "--device", "cpu", "--no_progress"]
    assert "--content nope.jpg does not exist" in cli_error(capsys, *base, "--content", "nope.jpg")
    err = cli_error(capsys, *base, "--style_layers", "relu1_1,relu9_9")
    assert "relu9_9" in err and "choose from: conv1_1, relu1_1" in err
    assert "invalid choice: 'vgg13'" in cli_error(capsys, *base, "--loss_model", "vgg13")
    assert "invalid choice: 'sgd'" in cli_error(capsys, *base, "--optimizer", "sgd")
    assert "no such file" in cli_error(capsys, *base, "--init", str(tmp_path / "missing.pth"))
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not a checkpoint")
    assert str(bogus) in cli_error(capsys, *base, "--init", str(bogus))
    assert "1 weights for 5 style layers" in cli_error(capsys, *base, "--style_layer_weights", "3")
    assert "--steps must be" in cli_error(capsys, *base, "--steps", "0")
    # bf16 on a CPU without AMX (slower than fp32 there): one warning line before the work.
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: False)
    err = cli_error(capsys, *base, "--steps", "0", "--precision", "bf16")
    assert err.startswith("warning: this CPU has no AMX, and without it bf16 optimizes slower than fp32"), err
    assert err.splitlines()[1].startswith("error: ") and "--steps must be" in err
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: True)
    assert "warning" not in cli_error(capsys, *base, "--steps", "0", "--precision", "bf16")
    assert "unsupported extension" in cli_error(capsys, *base, "--output", str(tmp_path / "o.txt"))
    err = cli_error(capsys, *base, "--loss_model", "vgg19", "--loss_model_weights", "imagenet",
                    "--loss_model_file", str(tmp_path / "weights.pth"))
    assert "VGG19 weights not found" in err and LOSS_NETWORKS["vgg19"].url in err
    assert "too small" in cli_error(capsys, *base, "--image_size", "8")
    # An upscale the whole-image optimisation cannot hold, refused before the resize.
    err = cli_error(capsys, *base, "--image_size", "100000")
    assert "--image_size 100000" in err and "more than the limit of 4,194,304 pixels" in err, err
    assert "lower --image_size" in err
    assert not (tmp_path / "o.jpg").exists()


def test_cli_error_has_no_traceback(tmp_path, capsys):
    # In-process: test_cli_end_to_end runs the command as a subprocess already.
    code, err = in_process(capsys, main, "--content", tmp_path / "none.jpg", "--style", tmp_path / "none.png",
                           "--output", tmp_path / "o.jpg")
    assert code == 1 and "Traceback" not in err and err.startswith("error: ") and "does not exist" in err, err


# ---- step accounting ---------------------------------------------------------------------------

# (image_size, steps) where torch's L-BFGS, left alone, ends a strong-Wolfe line search past
# max_eval (measured: 48 px / 2 steps ran 3 evaluations in the first scale).
OVERSHOOTING = [(48, 2), (48, 3), (64, 4), (64, 8)]


@pytest.mark.parametrize("size,steps", OVERSHOOTING)
def test_lbfgs_runs_exactly_steps_evaluations_per_scale(pair, size, steps):
    calls = []
    img, h = run(pair, image_size=size, steps=steps, scales=2,
                 callback=lambda k, terms: calls.append((k, terms["total"])))
    # One callback per evaluation, numbered 1..2*steps without repeats, then the final image.
    assert [k for k, _ in calls] == list(range(1, 2 * steps + 1)) + [2 * steps]
    assert len(h) == 2 * steps + 1
    # The output is an image whose loss was evaluated, not an unevaluated line-search trial point.
    final = calls[-1][1]
    assert min(abs(t - final) for _, t in calls[steps:-1]) <= 1e-4 * final


def test_save_every_names_are_unique_across_scales(pair, tmp_path):
    out = tmp_path / "o.png"
    run(pair, image_size=48, steps=3, scales=2, save_every=1, output=out)
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert saved == [f"o_step{k:04d}.png" for k in range(1, 7)]
    sizes = [Image.open(tmp_path / name).size for name in saved]
    assert sizes == [(24, 20)] * 3 + [(48, 40)] * 3  # first scale at half size, none overwritten


def test_save_every_never_writes_over_an_input(pair, tmp_path, capsys):
    """--content out_step0001.jpg --output out.jpg --save_every 1 replaced the photo with step
    1's image; refused before any work (the photo and the style image alike)."""
    photo, style = tmp_path / "out_step0002.jpg", tmp_path / "out_step0003.png"
    photo.write_bytes(pair[0].read_bytes())
    style.write_bytes(pair[1].read_bytes())
    before = photo.read_bytes()
    with pytest.raises(FastNSTError, match=r"^--save_every 2 would write step 2's image to .*out_step0002.jpg, "
                                           r"the content image; choose another --output"):
        optimize(str(photo), str(pair[1]), output=tmp_path / "out.jpg", save_every=2, steps=2,
                 loss_model_weights="random", device="cpu", progress=False)
    code = main(["--content", str(pair[0]), "--style", str(style), "--output", str(tmp_path / "out.png"),
                          "--save_every", "1", "--steps", "3", "--image_size", "32",
                          "--loss_model_weights", "random", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and "would write step 3's image to" in err and "the style image" in err, err
    assert photo.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [photo.name, style.name]
    # Only the steps saved count: with --save_every 4 and 2 steps, out_step0002 is never written.
    optimize(str(photo), str(pair[1]), output=tmp_path / "out.jpg", save_every=4, steps=2, image_size=24,
             loss_model_weights="random", device="cpu", progress=False)
    assert photo.read_bytes() == before


class _BarSpy:
    """Stands in for tqdm and records what optimize does to its progress bar."""
    bars: list = []

    def __init__(self, total, **kw):
        self.total, self.n, self.updates = total, 0, []
        _BarSpy.bars.append(self)

    def update(self, n=1):
        self.updates.append(n)
        self.n += n

    def set_postfix(self, *a, **k):
        pass

    def refresh(self):
        pass

    def close(self):
        pass


@pytest.mark.parametrize("weights,evaluations", [
    ({}, 2 * 3),
    # All weights 0: the loss and its gradient are 0, so L-BFGS stops after one evaluation.
    ({"content_weight": 0.0, "style_weight": 0.0, "tv_weight": 0.0}, 2 * 1),
])
def test_progress_bar_counts_real_evaluations(pair, monkeypatch, weights, evaluations):
    import fast_nst.gatys as gatys

    monkeypatch.setattr(gatys, "tqdm", _BarSpy)
    _BarSpy.bars = []
    calls = []
    run(pair, image_size=48, steps=3, scales=2, progress=True,
        callback=lambda k, terms: calls.append(k), **weights)
    (bar,) = _BarSpy.bars
    assert all(n >= 0 for n in bar.updates), bar.updates
    assert bar.n == bar.total == evaluations
    assert calls == list(range(1, evaluations + 1)) + [evaluations]


# ---- random-weights warning --------------------------------------------------------------------

def test_random_weights_warning_speaks_of_optimize(pair, capsys):
    run(pair, steps=1)
    err = capsys.readouterr().err
    assert "RANDOM weights" in err and "NOT a real style transfer" in err
    assert "--loss_model_weights imagenet" in err and "python -m fast_nst.download vgg16" in err
    assert "learn" not in err and "training" not in err  # training's wording, not optimize's
    run(pair, steps=1, loss_model="vgg19", loss_model_file="weights/my_vgg19.pth")
    err = capsys.readouterr().err
    assert "python -m fast_nst.download vgg19 --dest weights/my_vgg19.pth" in err
    assert err.count("RANDOM weights") == 1  # vgg.py's banner is not printed as well


@pytest.mark.parametrize("wrong,message", [
    ({"image_size": "64"}, "--image_size must be a whole number >= 1, got '64'"),
    ({"lr": "1"}, "--lr must be a finite number > 0, got '1'"),
    ({"content_weight": "1"}, "--content_weight must be a finite number >= 0, got '1'"),
    ({"save_every": None}, "--save_every must be a whole number >= 0, got None"),
    ({"steps": True}, "--steps must be a whole number >= 1, got True"),
    ({"seed": 2 ** 70}, "--seed must be a whole number from 0 to 2**63 - 1"),
])
def test_api_arguments_of_the_wrong_type_are_one_error(pair, wrong, message):
    """The docstring promises FastNSTError for anything a user can get wrong: these used to be
    TypeErrors from inside (or an OverflowError's text without the argument's name)."""
    with pytest.raises(FastNSTError, match=re.escape(message)):
        optimize(*pair, loss_model_weights="random", progress=False, **{"steps": 1, **wrong})
