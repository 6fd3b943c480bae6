"""The Caffe VGG16/VGG19 loss networks (vgg16_caffe, vgg19_caffe: jcjohnson/pytorch-vgg's files):
their input convention, their file layout, the refusal of a published file of the other
convention, the download target, the loss-weight conversion, and training/optimize end to end."""

import copy
import dataclasses
import io
import os
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torchvision.models import vgg16, vgg19

from conftest import REPO, assert_clean_in_process, in_process, make_photo
from fast_nst.commands import download as download_command
from fast_nst.commands.optimize import main as optimize_main
from fast_nst.commands.train import main as train_main
from fast_nst.core.untrusted import downloads as fetch
from fast_nst.core.errors import CheckpointError
from fast_nst.gatys import DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_WEIGHT, DEFAULT_TV_WEIGHT, optimize
from fast_nst.lossnet import (CAFFE, CAFFE_FEATURE_SCALE, LOSS_NETWORKS, STATS_STYLE_DEGREE, TORCHVISION,
                              convert_weights, get_loss_network, layer_names, loss_weights)
from fast_nst.core.config import TrainConfig
from fast_nst.lossnet.losses import AdaINLoss, PerceptualLoss
from fast_nst.lossnet.vgg import (VGGEncoder, bias_ratio, build_loss_network, load_features, other_convention_warning,
                                  random_features)

# The stand-in VGG16 (real features, never shipped) lives in the shared/ folder beside a checkout.
STANDIN = Path(os.environ.get("FAST_NST_STANDIN", REPO.parent / "shared" / "standin-vgg16"))
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def features_state(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random VGG features in a full state dict's ``features.N`` keys."""
    return {f"features.{k}": v for k, v in random_features(arch, seed).state_dict().items()}


def save(path: Path, state: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def publish(monkeypatch, name: str, path: Path) -> None:
    """Make ``path`` the registry's published file of ``name`` (its checksum in the row)."""
    entry = dataclasses.replace(LOSS_NETWORKS[name], sha256=fetch.sha256_file(path)[:8])
    monkeypatch.setitem(LOSS_NETWORKS, name, entry)


# ---- the registry rows and the convention ------------------------------------------------------

@pytest.mark.parametrize("name,arch,file", [("vgg16_caffe", "vgg16", "vgg16-00b39a1b.pth"),
                                            ("vgg19_caffe", "vgg19", "vgg19-d01eb7cb.pth")])
def test_rows_name_jcjohnsons_files(name, arch, file):
    entry = get_loss_network(name)
    assert entry.arch == arch and entry.file == f"pretrained/{file}"
    assert entry.url == f"https://web.eecs.umich.edu/~justincj/models/{file}"
    assert entry.sha256 == file[6:14] and entry.convention is CAFFE
    assert CAFFE.bgr and CAFFE.scale == 255.0 and CAFFE.mean == CAFFE_MEAN_BGR and CAFFE.std == (1.0, 1.0, 1.0)
    assert TORCHVISION.feature_scale == 1.0 and CAFFE.feature_scale == pytest.approx(57.63)


@pytest.mark.parametrize("name,builder", [("vgg16_caffe", vgg16), ("vgg19_caffe", vgg19)])
def test_caffe_convention_is_applied_exactly(name, builder):
    entry = get_loss_network(name)
    features = random_features(entry.arch, 3)
    names = layer_names(entry.arch)
    layers = [n for n in names if n.startswith("relu") and n.endswith(("_1", "_2"))]
    enc = VGGEncoder(features, layers, entry)
    with torch.device("meta"):  # torchvision's own network, without initialising its classifier
        ref = builder().features
    ref = ref.to_empty(device="cpu").eval()
    ref.load_state_dict(features.state_dict())
    x = torch.rand(2, 3, 40, 48)
    h = x * 255
    h = h[:, [2, 1, 0]] - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)  # BGR, minus the mean pixel
    expected = {}
    for layer_name, module in zip(names, ref):
        h = module(h.clone())  # torchvision's ReLUs are in-place
        expected[layer_name] = h
    got = enc(x, layers)
    for layer in layers:
        scale = expected[layer].abs().max()
        assert scale > 1 and torch.allclose(got[layer], expected[layer], atol=1e-5 * scale.item()), layer


# ---- files -------------------------------------------------------------------------------------

def test_loader_accepts_jcjohnson_layout_and_ignores_its_classifier(tmp_path):
    state = features_state("vgg16", seed=5)
    # jcjohnson/pytorch-vgg's classifier: indices 1, 4, 6 (torchvision's: 0, 3, 6); small shapes here.
    state |= {"classifier.1.weight": torch.ones(8, 16), "classifier.1.bias": torch.ones(8),
              "classifier.4.weight": torch.ones(4, 8), "classifier.4.bias": torch.ones(4),
              "classifier.6.weight": torch.ones(3, 4), "classifier.6.bias": torch.ones(3)}
    path = save(tmp_path / "jcjohnson.pth", state)
    features = load_features("vgg16_caffe", path, allow_download=False)
    for key, value in features.state_dict().items():
        assert torch.equal(value, state[f"features.{key}"]), key
    enc = build_loss_network("imagenet", ["relu2_2"], path, name="vgg16_caffe")
    assert enc.convention is CAFFE and torch.equal(enc.layers.conv2_2.weight, state["features.7.weight"])


@pytest.mark.parametrize("given,published,fragments", [
    ("vgg16_caffe", "vgg16", ("the published vgg16 file", "torchvision input convention",
                              "loss model is vgg16_caffe (caffe convention)", "Use loss_model vgg16 ")),
    ("vgg16", "vgg16_caffe", ("the published vgg16_caffe file", "caffe input convention",
                              "loss model is vgg16 (torchvision convention)", "Use loss_model vgg16_caffe ")),
])
def test_published_file_of_the_other_convention_is_refused(tmp_path, monkeypatch, given, published, fragments):
    path = save(tmp_path / Path(LOSS_NETWORKS[published].file).name, features_state("vgg16"))
    publish(monkeypatch, published, path)
    with pytest.raises(CheckpointError) as e:
        load_features(given, path, allow_download=False)
    for fragment in fragments:
        assert fragment in str(e.value)
    assert load_features(published, path, allow_download=False)[0].weight.shape == (64, 3, 3, 3)
    own = save(tmp_path / "mine" / path.name, features_state("vgg16", seed=1))  # same name, other content
    assert load_features(given, own, allow_download=False)[0].weight.shape == (64, 3, 3, 3)


def test_refusal_is_one_clean_error_line_in_optimize(tmp_path, monkeypatch, capsys):
    path = save(tmp_path / "vgg16-397923af.pth", features_state("vgg16"))
    publish(monkeypatch, "vgg16", path)
    content, style = make_photo(tmp_path / "c.jpg", (40, 32), seed=1), make_photo(tmp_path / "s.png", seed=9)
    code, err = in_process(capsys, optimize_main, "--content", content, "--style", style,
                           "--output", tmp_path / "out.jpg", "--loss_model", "vgg16_caffe",
                           "--loss_model_file", path, "--device", "cpu",
                           "--image_size", "32", "--steps", "1")  # seconds, should the refusal fail
    assert_clean_in_process(code, err, "is the published vgg16 file", "Use loss_model vgg16")


def test_random_weights_are_never_checked_or_read(tmp_path, monkeypatch, capsys):
    path = tmp_path / "vgg16-397923af.pth"
    path.write_bytes(b"not a weights file")

    def boom(*a, **k):
        raise AssertionError("random weights must not read or hash a weights file")

    monkeypatch.setattr(fetch, "sha256_file", boom)
    monkeypatch.setattr(torch, "load", boom)
    enc = build_loss_network("random", ["relu1_2"], path, seed=2, name="vgg16_caffe")
    assert enc.convention is CAFFE and "RANDOM weights" in capsys.readouterr().err


# The stand-ins: a Caffe-convention VGG16 and the same network re-expressed for torchvision's
# convention (features / 57.6); see shared/standin-vgg16/README.md beside the checkout.
@pytest.mark.skipif(not STANDIN.is_dir(), reason=f"the stand-in VGG16 files are not at {STANDIN}")
def test_standin_files_give_the_same_features_up_to_the_feature_scale():
    caffe_file, tv_file = STANDIN / "vgg16_caffe_standin.pth", STANDIN / "vgg16_torchvision_standin.pth"
    # Why the convention is not checked by weight scale: the two files' first layers have the
    # same statistics (their biases differ, but the published files' do not).
    w_caffe, w_tv = (torch.load(f, weights_only=True)["features.0.weight"]
                     for f in (caffe_file, tv_file))
    assert w_tv.abs().mean() == pytest.approx(w_caffe.abs().mean().item(), rel=0.01)
    layers = ["relu1_2", "relu2_2"]
    caffe = build_loss_network("imagenet", layers, caffe_file, name="vgg16_caffe")
    tv = build_loss_network("imagenet", layers, tv_file, name="vgg16")
    x = torch.rand(1, 3, 40, 40)
    fc, ft = caffe(x, layers), tv(x, layers)
    # Away from the border (zero padding is black in one convention, the mean pixel in the other).
    for layer, margin in (("relu1_2", 2), ("relu2_2", 4)):
        a, b = fc[layer][..., margin:-margin, margin:-margin], ft[layer][..., margin:-margin, margin:-margin]
        assert torch.allclose(a, CAFFE_FEATURE_SCALE * b, atol=1e-4 * a.abs().max().item()), layer
    # Converted weights give (nearly: borders) the same loss terms with either file.
    style = torch.rand(1, 3, 40, 40)
    weights = (1.0, 1e5, 1.0)
    terms_tv = PerceptualLoss(tv, style, ["relu2_2"], layers, *weights)(x, style)
    terms_caffe = PerceptualLoss(caffe, style, ["relu2_2"], layers,
                                 *convert_weights(*weights, "vgg16", "vgg16_caffe"))(x, style)
    for key in ("content", "style", "tv"):
        assert terms_caffe[key].item() == pytest.approx(terms_tv[key].item(), rel=0.05), key


# ---- loss weights ------------------------------------------------------------------------------


# A file made for one convention and loaded for the other: only the biases tell (see
# fast_nst.lossnet.vgg's bias ratio). Random networks scaled like the two conventions: a
# "Caffe" one with biases of the Caffe VGG16's order (mean |b| 0.4), and its torchvision
# re-expression (every bias divided by 57.6; conv1_1 keeps its weights, which 255 * std / 57.6 ~ 1
# leaves nearly as they are).
def _mimics(seed: int = 7) -> tuple[nn.Sequential, nn.Sequential]:
    caffe = random_features("vgg16", seed)
    generator = torch.Generator().manual_seed(seed)
    for module in caffe:
        if isinstance(module, nn.Conv2d):
            module.bias.data = 0.5 * torch.randn(module.bias.shape, generator=generator)
    tv = copy.deepcopy(caffe)
    for module in tv:
        if isinstance(module, nn.Conv2d):
            module.bias.data /= CAFFE_FEATURE_SCALE
    return caffe, tv


def test_a_torchvision_convention_network_loaded_as_caffe_is_warned_about(tmp_path, capsys):
    caffe, tv = _mimics()
    assert other_convention_warning(caffe, "vgg16_caffe", "c.pth") is None
    assert other_convention_warning(tv, "vgg16", "t.pth") is None          # vgg16 is never probed
    assert bias_ratio(tv, "vgg16_caffe") < bias_ratio(tv, "vgg16") / 20     # the right input: 20x more
    path = save(tmp_path / "tv.pth", {f"features.{k}": v for k, v in tv.state_dict().items()})
    load_features("vgg16_caffe", path, allow_download=False)                # loads, and warns once
    err = capsys.readouterr().err
    assert err.count("WARNING") == 1 and f"{path} looks like VGG16 weights for torchvision's input convention" in err
    assert "Use loss_model vgg16 with this file" in err and "python -m fast_nst.download vgg16_caffe" in err


@pytest.mark.skipif(not STANDIN.is_dir(), reason=f"the stand-in VGG16 files are not at {STANDIN}")
def test_the_standin_torchvision_file_loaded_as_caffe_is_warned_about(capsys):
    caffe_file, tv_file = STANDIN / "vgg16_caffe_standin.pth", STANDIN / "vgg16_torchvision_standin.pth"
    load_features("vgg16_caffe", caffe_file, allow_download=False)
    load_features("vgg16", tv_file, allow_download=False)
    assert "WARNING" not in capsys.readouterr().err
    load_features("vgg16_caffe", tv_file, allow_download=False)
    assert "looks like VGG16 weights for torchvision's input convention" in capsys.readouterr().err


def test_weight_conversion_factors():
    k = 255 * 0.226
    content, style, tv = convert_weights(1.0, 1e5, 2.0, TORCHVISION, CAFFE)
    assert content == pytest.approx(1 / k ** 2) and style == pytest.approx(1e5 / k ** 4) and tv == 2.0
    assert convert_weights(1.0, 1e5, 2.0, "vgg16", "vgg19_caffe") == (content, style, tv)
    assert convert_weights(content, style, tv, "caffe", "torchvision") == pytest.approx((1.0, 1e5, 2.0))
    assert convert_weights(3.0, 4.0, 5.0, "vgg16", "vgg19") == (3.0, 4.0, 5.0)
    with pytest.raises(ValueError, match="choose one of: torchvision, caffe"):
        convert_weights(1, 1, 1, "vgg16", "bgr")
    with pytest.raises(ValueError, match="style_degree must be 2 or 4"):
        convert_weights(1, 1, 1, "vgg16", "vgg16_caffe", style_degree=3)


def test_adain_weights_convert_with_the_square_of_the_feature_scale():
    """AdaIN's style loss (feature means and stds) grows with k**2 like the content loss, not
    k**4 like a Gram loss: weights converted with STATS_STYLE_DEGREE give the same terms from
    features k times larger, and the AdaIN trainer converts that way."""

    class Scaled(nn.Module):  # an encoder whose features are k times another's (as the Caffe files')
        def __init__(self, inner, k):
            super().__init__()
            self.inner, self.k, self.mean = inner, k, inner.mean

        def forward(self, x, layers):
            return {name: self.k * f for name, f in self.inner(x, layers).items()}

    layers = ["relu1_1", "relu2_1"]
    # Random features are small; x 10 keeps the std's epsilon (which does not scale) near
    # negligible (1e-3: channels that are all zero have the epsilon's std in either scale).
    random = build_loss_network("random", layers, seed=3, quiet=True)
    tv, caffe = Scaled(random, 10.0), Scaled(random, 10.0 * CAFFE_FEATURE_SCALE)
    torch.manual_seed(0)
    x, s, y = torch.rand(3, 2, 3, 24, 24).unbind(0)
    weights = (1.0, 10.0, 0.0)
    terms = {}
    for name, enc, w in (("tv", tv, weights),
                         ("caffe", caffe, convert_weights(*weights, "vgg16", "vgg16_caffe", STATS_STYLE_DEGREE))):
        loss = AdaINLoss(enc, "relu2_1", layers, *w)
        target, stats = loss.targets(x, s)
        terms[name] = loss(y, target, stats)
    for key in ("content", "style", "total"):
        assert terms["caffe"][key].item() == pytest.approx(terms["tv"][key].item(), rel=1e-3), key
    gram_degree = convert_weights(*weights, "vgg16", "vgg16_caffe")[1]
    assert gram_degree < 1e-3 * convert_weights(*weights, "vgg16", "vgg16_caffe", STATS_STYLE_DEGREE)[1]
    cfg = dataclasses.replace(TrainConfig(), content_weight=1.0, style_weight=10.0, loss_weights_for="torchvision",
                              loss_model="vgg16_caffe")
    assert loss_weights(cfg, STATS_STYLE_DEGREE)[1] == pytest.approx(10.0 / CAFFE_FEATURE_SCALE ** 2)


class Scaled(nn.Module):
    """An encoder whose features are ``k`` times another's."""

    def __init__(self, encoder: VGGEncoder, k: float):
        super().__init__()
        self.encoder, self.k = encoder, k

    def forward(self, x, layers):
        return {n: self.k * f for n, f in self.encoder(x, layers).items()}


def test_converted_weights_keep_every_loss_term_of_features_k_times_larger():
    enc = VGGEncoder(random_features("vgg16", 0), ["relu1_2", "relu2_2"])
    x, style = torch.rand(2, 3, 32, 32), torch.rand(1, 3, 32, 32)
    weights = (1.0, 1e5, 1.0)
    base = PerceptualLoss(enc, style, ["relu2_2"], ["relu1_2", "relu2_2"], *weights)(x, x.flip(-1))
    big = PerceptualLoss(Scaled(enc, CAFFE_FEATURE_SCALE), style, ["relu2_2"], ["relu1_2", "relu2_2"],
                         *convert_weights(*weights, TORCHVISION, CAFFE))(x, x.flip(-1))
    for key in ("content", "style", "tv", "total"):
        assert base[key].item() > 0 and big[key].item() == pytest.approx(base[key].item(), rel=1e-4), key


# ---- download, training and optimize -----------------------------------------------------------

def test_download_help_and_command_know_the_caffe_targets(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        download_command.main(["--help"])
    out = capsys.readouterr().out
    for name in ("vgg16_caffe", "vgg19_caffe"):
        assert f"\n  {name}  " in out and LOSS_NETWORKS[name].url in out and LOSS_NETWORKS[name].file in out
    data = b"caffe weights"

    class Response(io.BytesIO):
        status = 200
        headers = {"Content-Length": str(len(data))}

    monkeypatch.setattr(fetch, "_open", lambda url, start, timeout=None: Response(data))
    (tmp_path / "w.bin").write_bytes(data)
    publish(monkeypatch, "vgg16_caffe", tmp_path / "w.bin")
    dest = tmp_path / "pretrained" / "vgg16-00b39a1b.pth"
    assert download_command.main(["vgg16_caffe", "--dest", str(dest)]) == 0
    assert dest.read_bytes() == data and f"Saved {dest}" in capsys.readouterr().out


def test_training_with_vgg16_caffe_runs(tiny_config, tmp_path, capsys):
    conf = tiny_config(loss_model="vgg16_caffe", max_steps=2, num_samples=0, naming="caffe",
                       loss_model_file=str(tmp_path / "vgg16-397923af.pth"))  # random: never read
    code, err = in_process(capsys, train_main, "-c", conf, "--no_progress")
    assert code == 0, err
    assert "step 2/2: loss=" in err
    run = tmp_path / "models" / "caffe"
    assert (run / "caffe.pth").is_file()
    assert yaml.safe_load((run / "config.yml").read_text())["loss_model"] == "vgg16_caffe"


def test_weights_for_another_convention_are_converted(tiny_config, tmp_path, capsys, monkeypatch):
    """A config tuned for Caffe (loss_weights_for: caffe) trains with torchvision's vgg16 at the
    converted weights; the loss module gets exactly convert_weights' numbers."""
    from fast_nst.training import load_train_config
    from fast_nst.training import trainer as trainer_module

    conf = tiny_config(loss_weights_for="caffe", content_weight=3e-4, style_weight=1.8e-4, tv_weight=2.0,
                       max_steps=1, num_samples=0, naming="conv")
    cfg = load_train_config(conf)
    expected = convert_weights(3e-4, 1.8e-4, 2.0, "caffe", "vgg16")
    assert loss_weights(cfg) == expected and expected[0] == pytest.approx(3e-4 * CAFFE_FEATURE_SCALE ** 2)
    seen = {}
    real = trainer_module.PerceptualLoss

    def spy(*args, **kwargs):
        seen["weights"] = args[4:7]
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "PerceptualLoss", spy)
    code, err = in_process(capsys, train_main, "-c", conf, "--no_progress")
    assert code == 0, err
    assert seen["weights"] == expected
    assert "Loss weights are for the caffe convention; with vgg16 they are content 0.9964" in err
    same = load_train_config(conf, ["loss_weights_for=", "loss_model=vgg16_caffe"])
    assert loss_weights(same) == (3e-4, 1.8e-4, 2.0)
    with pytest.raises(Exception, match="key 'loss_weights_for' is 'cafe'; choose one of: torchvision, caffe"):
        load_train_config(conf, ["loss_weights_for=cafe"])


def test_optimize_with_vgg16_caffe_lowers_the_loss(tmp_path):
    content, style = make_photo(tmp_path / "c.jpg", (40, 32), seed=1), make_photo(tmp_path / "s.png", seed=9)
    weights = convert_weights(DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_WEIGHT, DEFAULT_TV_WEIGHT,
                              "vgg16", "vgg16_caffe")  # optimize's defaults, for the Caffe features
    history = []
    img = optimize(str(content), str(style), loss_model="vgg16_caffe", loss_model_weights="random",
                   image_size=40, steps=6, preset="johnson", device="cpu", progress=False, history=history,
                   **dict(zip(("content_weight", "style_weight", "tv_weight"), weights)))
    assert img.size == (40, 32)
    assert history[-1]["total"] < 0.5 * history[0]["total"], (history[0], history[-1])
