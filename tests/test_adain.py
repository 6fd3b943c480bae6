"""Arbitrary style transfer with AdaIN (model_type adain): the AdaIN statistics, alpha and blends,
the decoder's layout, training and exact resume, decoder-only checkpoints, the encoder file's
checks, the stylizer, eval's flags, tiling with shared statistics and the config checks.

Random VGG16 encoders throughout (cheap to build); the training runs cut the encoder at relu2_1.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import (assert_clean_in_process, in_process, make_photo, random_adain_net, tiny_values,
                      write_config)
from fast_nst.commands import eval as eval_cmd
from fast_nst.core.errors import CheckpointError, ConfigError, DataError, FastNSTError
from fast_nst.core.images import pil_to_tensor
from fast_nst.io.checkpoint import atomic_torch_save, load_model, make_checkpoint, read_checkpoint
from fast_nst.lossnet.losses import AdaINLoss, adain, mean_std
from fast_nst.lossnet.vgg import random_features
from fast_nst.nets import adain as adain_mod
from fast_nst.nets.adain import AdaINArgs, AdaINNet, build_decoder, file_sha256
from fast_nst.nets.johnson import TransformNet, TransformNetArgs
from fast_nst.nets.multistyle import StyleError
from fast_nst.stylize import load_stylizer
from fast_nst.stylize.torch_stylizer import TorchStylizer
from fast_nst.training.arbitrary import style_ramp
from fast_nst.training.config import load_train_config, train_config_from_dict
from fast_nst.training.setup import check_network_args
from fast_nst.training.trainer import train

SHALLOW = {"model_args": {"encoder_layer": "relu2_1"}, "style_layers": ["relu1_1", "relu2_1"]}


@pytest.fixture(scope="module")
def net() -> AdaINNet:
    return random_adain_net()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Photos, nested paintings and validation photos, generated."""
    root = tmp_path_factory.mktemp("adain")
    for i in range(6):
        make_photo(root / "train" / f"p{i}.jpg", (48 + 4 * i, 40), seed=i)
    for i in range(4):
        make_photo(root / "art" / ("nested" if i > 1 else "") / f"a{i}.png", (40, 50 + 3 * i), seed=50 + i)
    for i in range(2):
        make_photo(root / "val" / f"v{i}.jpg", (40, 40), seed=80 + i)
    return {"root": root, "train": root / "train", "art": root / "art", "val": root / "val"}


def _values(data: dict, models: Path, **overrides) -> dict:
    values = tiny_values(models, data["train"], Path("unused"), style_image="", style_dir=str(data["art"]),
                         model_type="adain", loss_model="vgg16", style_weight=10.0, tv_weight=0.0, lr=1e-3,
                         max_steps=6, val_dir=str(data["val"]), val_every=2, val_images=2, log_every=100,
                         checkpoint_every=3, naming="ad", style_warmup_steps=4, **SHALLOW)
    values.update(overrides)
    return values


@pytest.fixture(scope="module")
def trained(data) -> Path:
    """A 6-step run (relu2_1 encoder, the style term warming up over 4 steps): its run folder."""
    result = train(train_config_from_dict(_values(data, data["root"] / "models"), "test"), progress=False)
    return result.run_dir


# -- AdaIN, alpha and blends ----------------------------------------------------------------------

def test_style_warmup_scales_the_style_term_of_the_total(net):
    """style_warmup_steps: the factor rises linearly to 1; the loss's total takes the style term
    times it, while the logged style term stays at the full weight."""
    assert [style_ramp(step, 4) for step in (1, 2, 4, 9)] == [0.25, 0.5, 1.0, 1.0]
    assert style_ramp(1, 0) == 1.0
    loss = AdaINLoss(net.encoder, "relu4_1", style_weight=10.0)
    torch.manual_seed(0)
    x, s = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    target, stats = loss.targets(x, s)
    y = torch.rand(2, 3, 32, 32)
    full = loss(y, target, stats)
    loss.set_style_scale(0.25)
    warm = loss(y, target, stats)
    assert warm["style"] == full["style"] and full["style"] > 0
    assert warm["total"].item() == pytest.approx((full["content"] + 0.25 * full["style"] + full["tv"]).item(), rel=1e-6)


def test_adain_output_has_the_style_statistics(net):
    torch.manual_seed(1)
    content, style = torch.rand(2, 3, 40, 48), torch.rand(1, 3, 36, 44)
    f = net.encode(content)
    mean, std = net.style_statistics(style)
    assert mean.shape == std.shape == (1, 512, 1, 1)
    t_mean, t_std = mean_std(adain(f, mean, std), eps=0.0)
    assert torch.allclose(t_mean, mean.expand_as(t_mean), atol=1e-4, rtol=1e-4)
    # std(f) / sqrt(var(f) + eps) of the style's std: exactly it where the content varies
    c_std = mean_std(f, eps=0.0)[1]
    expected = std * c_std / (c_std.square() + 1e-5).sqrt()
    assert torch.allclose(t_std, expected, atol=1e-4, rtol=1e-3)
    varied = c_std.flatten() > 0.1
    assert varied.sum() > 100 and torch.allclose(t_std.flatten()[varied], std.expand_as(t_std).flatten()[varied], rtol=1e-3)
    # The blend of statistics: weights 1:0 are the first style, exactly; 1:1 the mean.
    other = torch.rand(1, 3, 50, 30)
    one = net.style_statistics([style, other], [1.0, 0.0])
    assert torch.equal(one[0], mean) and torch.equal(one[1], std)
    half = net.style_statistics([style, other], [2.0, 2.0])
    assert torch.allclose(half[0], (mean + net.style_statistics(other)[0]) / 2, atol=1e-6)


def test_alpha_zero_reconstructs_and_alpha_one_is_full_adain(net):
    torch.manual_seed(2)
    x, s = torch.rand(2, 3, 21, 27), torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        recon = net(x)
        assert recon.shape == x.shape and 0 <= float(recon.min()) and float(recon.max()) <= 1
        assert torch.equal(net(x, s, alpha=0.0), recon)
        full = net(x, s)
        assert (full - recon).abs().max() > 1e-3, "the style should change the result"
        # by hand: pad to a multiple of 8 (bottom/right reflection), encode, AdaIN, decode, crop
        padded = torch.nn.functional.pad(x, (0, 5, 0, 3), mode="reflect")
        t = adain(net.encode(padded), *net.style_statistics(s))
        assert torch.allclose(full, net.decoder(t)[..., :21, :27].clamp(0, 1), atol=1e-5)
        half = net(x, s, alpha=0.5)
        assert 0 < (half - recon).abs().mean() < (full - recon).abs().mean()
        # one style image per photo
        both = net(x, torch.cat([s, torch.rand(1, 3, 24, 24)]))
        assert torch.allclose(both[0], full[0], atol=1e-6) and not torch.allclose(both[1], full[1])
        assert torch.allclose(net.exportable()(x, s), full, atol=1e-6)


def test_bad_inputs_give_clear_errors(net):
    x = torch.rand(2, 3, 32, 32)
    for call, message in ((lambda: net(x, torch.rand(1, 3, 32, 32), alpha=1.5), "alpha must be between 0"),
                          (lambda: net(x, torch.rand(1, 3, 10, 40)), "at least 16 px per side"),
                          (lambda: net(x, torch.rand(3, 3, 32, 32)), "3 style images for 2 photos"),
                          (lambda: net(torch.rand(3, 32, 32)), r"shape \(N, 3, H, W\)"),
                          (lambda: net.style_statistics([x[:1], x[:1]], [1.0]), "style weights must be 2")):
        with pytest.raises(ValueError, match=message):
            call()
    for bad, message in (({"encoder": "resnet"}, "encoder must be one of vgg16"),
                         ({"encoder_layer": "pool4"}, "encoder_layer must be a ReLU layer"),
                         ({"encoder_sha256": "xyz"}, "encoder_sha256 must be empty or 8 to 64"),
                         ({"encoder_weights": "none"}, "imagenet or random")):
        with pytest.raises(ValueError, match=message):
            AdaINArgs(**bad)


def test_decoder_mirrors_the_encoder():
    """VGG-19 to relu4_1 gives exactly the paper's decoder; the receptive radius follows the layout."""
    decoder = build_decoder(AdaINArgs().plan())
    convs = [(m.in_channels, m.out_channels) for m in decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [(512, 256), (256, 256), (256, 256), (256, 256), (256, 128), (128, 128), (128, 64),
                     (64, 64), (64, 3)]
    kinds = [type(m).__name__ for m in decoder]
    assert kinds.count("Upsample") == 3 and kinds[1] == "Upsample" and kinds[-1] == "_DecoderConv"
    assert not any(isinstance(m, torch.nn.ReLU) for m in decoder[-1])  # the output conv is linear
    assert adain_mod._receptive_radius(AdaINArgs().plan()) == 64
    assert adain_mod._receptive_radius(AdaINArgs(encoder="vgg16").plan()) == 56
    assert AdaINArgs().encoder_layers() == ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]


# -- training, checkpoints and resume -------------------------------------------------------------

def test_training_lowers_the_loss_and_checkpoints_hold_the_decoder_only(trained, data):
    events = EventAccumulator(str(trained))
    events.Reload()
    val = [e.value for e in events.Scalars("val/total")]  # the same photo x painting pairs each time
    assert len(val) == 3 and val[-1] < 0.8 * val[0], val
    assert {"samples/paintings", "samples/stylized", "val/stylized"} <= set(events.Tags()["images"])
    ckpt = read_checkpoint(trained / "ad.pth")
    assert ckpt["model_type"] == "adain" and all(k.startswith("decoder.") for k in ckpt["model_state"])
    args = ckpt["model_args"]
    assert (args["encoder"], args["encoder_layer"], args["encoder_weights"], args["encoder_seed"],
            args["encoder_sha256"]) == ("vgg16", "relu2_1", "random", 42, "")
    model, _ = load_model(trained / "ad.pth")  # the encoder rebuilt from the arguments
    fresh = AdaINNet(AdaINArgs(**args))
    for a, b in zip(model.encoder.parameters(), fresh.encoder.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        model.load_state_dict({**ckpt["model_state"], "other.weight": torch.zeros(1)})


def test_resume_is_exact_and_keeps_its_encoder(trained, data, tmp_path):
    models = tmp_path / "models"
    quiet = {"val_dir": "", "num_samples": 0}  # logging and validation leave the weights alone
    train(train_config_from_dict(_values(data, models, max_steps=3, **quiet), "test"), progress=False)
    result = train(train_config_from_dict(_values(data, models, **quiet), "test"), resume=True, progress=False)
    resumed = read_checkpoint(result.model_file)["model_state"]
    straight = read_checkpoint(trained / "ad.pth")["model_state"]
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    with pytest.raises(CheckpointError, match="trained with another encoder: encoder 'vgg16' .now 'vgg16_caffe'"), \
            pytest.warns(UserWarning, match="differs from the checkpoint's in: loss_model"):
        train(train_config_from_dict(_values(data, models, max_steps=9, loss_model="vgg16_caffe", **quiet), "test"),
              resume=True, progress=False)


def test_a_thin_painting_is_skipped_with_a_warning(data, tmp_path, capsys):
    """A 1 x 300 px painting in style_dir is skipped like an unreadable one, with one warning
    (paintings are cut into image_size crops, so every other one has the sides the loss network needs)."""
    art = tmp_path / "art"
    for i in range(2):
        make_photo(art / f"a{i}.png", (40, 50), seed=60 + i)
    Image.new("RGB", (1, 300), (200, 10, 10)).save(art / "thin.png")
    values = _values(data, tmp_path / "models", style_dir=str(art), max_steps=3, val_dir="", num_samples=0)
    result = train(train_config_from_dict(values, "test"), progress=False)
    err = capsys.readouterr().err
    assert err.count(f"warning: skipping unreadable training file {art / 'thin.png'}") == 1, err
    assert result.step == 3 and "Skipped 1 unreadable training file" in err, err


def test_compiled_training_with_warmup(data, tmp_path, monkeypatch):
    """compile wraps the decoder and the loss; the warm-up's changing style factor is a tensor
    the compiled loss reads (no recompile per step); bf16 autocast around both. The graphs are
    traced forward and backward but not code-generated (aot_eager: Inductor's code generation is
    PyTorch's, checked for the Johnson network in test_performance_paths, and takes ~20 s here)."""
    import functools

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    values = _values(data, tmp_path / "models", compile=True, precision="bf16", max_steps=3, val_dir="",
                     num_samples=0, checkpoint_every=3, style_warmup_steps=3)
    with torch._dynamo.config.patch(error_on_recompile=True):
        result = train(train_config_from_dict(values, "test"), progress=False)
    state = read_checkpoint(result.model_file)["model_state"]
    assert result.step == 3 and all(torch.isfinite(v).all() for v in state.values())
    assert not any("_orig_mod" in k for k in state)  # the compiled wrapper's names are not saved


def test_encoder_file_is_checked(tmp_path, monkeypatch):
    path = tmp_path / "vgg16-features.pth"
    torch.save({f"features.{k}": v for k, v in random_features("vgg16", 3).state_dict().items()}, path)
    sha = file_sha256(path)
    args = dict(encoder="vgg16", encoder_layer="relu2_1", encoder_weights="imagenet", encoder_file=str(path))
    net = AdaINNet(AdaINArgs(**args, encoder_sha256=sha[:16]))
    assert torch.equal(net.encoder.layers.conv1_1.weight, random_features("vgg16", 3)[0].weight)
    with pytest.raises(CheckpointError, match=r"trained with an encoder file of sha256 "
                                              r"000000000000\.\.\., but .*vgg16-features.pth has sha256 " + sha[:12]
                                              + r".*--loss_model_file FILE"):
        AdaINNet(AdaINArgs(**args, encoder_sha256="0" * 16))
    monkeypatch.chdir(tmp_path)  # the registry's default path, pretrained/..., is missing here
    with pytest.raises(CheckpointError, match="needs the vgg16 encoder weights.*the file given for it, nowhere.pth, "
                                              "does not exist.*python -m fast_nst.download vgg16"):
        AdaINNet(AdaINArgs(**{**args, "encoder_file": "nowhere.pth"}))
    with pytest.raises(CheckpointError, match="needs the vgg16 encoder weights.*not found at "
                                              "pretrained/vgg16-397923af.pth.*--loss_model_file FILE"):
        AdaINNet(AdaINArgs(**{**args, "encoder_file": ""}))
    (tmp_path / "folder.pth").mkdir()
    with pytest.raises(CheckpointError, match="VGG16 weights file folder.pth is a folder, not a file"):
        AdaINNet(AdaINArgs(**{**args, "encoder_file": "folder.pth"}))


# -- stylizing --------------------------------------------------------------------------------------

def test_stylizer_needs_a_style_and_blends_them(trained, data):
    stylizer = load_stylizer(trained, device="cpu")
    photo = Image.open(data["train"] / "p1.jpg")
    with pytest.raises(StyleError, match="this model needs a style image: --style_image painting.jpg"):
        stylizer.stylize(photo)
    a, b = data["art"] / "a0.png", data["art"] / "nested" / "a2.png"
    stylizer.set_style(a, style_size=48)  # a small style image keeps the test fast
    first = stylizer.stylize(photo)
    assert first.size == photo.size and stylizer.name == "a0"
    stylizer.set_style((a, np.float32(0.5)), style_size=48)  # a lone pair: not two images "a" and 0.5
    assert pil_to_tensor(stylizer.stylize(photo)).equal(pil_to_tensor(first)) and stylizer.name == "a0"
    stylizer.set_style([(a, 1.0), (b, 0.0)], style_size=48)
    assert pil_to_tensor(stylizer.stylize(photo)).equal(pil_to_tensor(first))
    stylizer.set_style([(Image.open(a), 0.7), (str(b), 0.3)], alpha=0.5, style_size=32)
    assert stylizer.name == "a070-a230" and stylizer.stylize(photo, preserve_color=True, strength=0.5).size == photo.size
    stylizer.set_style(a, alpha=0.0, style_size=48)  # the photo's own features: the reconstruction
    x = pil_to_tensor(photo).unsqueeze(0)
    with torch.no_grad():
        assert torch.allclose(stylizer.stylize_tensor(x), stylizer.source(x), atol=1e-5)
    for style, kwargs, message in ((a, {"alpha": 2}, "alpha must be between 0"),
                                   (a, {"style_size": 3}, "style_size must be a whole number of pixels >= 4"),
                                   ([(a, -1.0)], {}, "weights must be >= 0"), (3, {}, "is not an image or a path")):
        with pytest.raises(FastNSTError, match=message):
            stylizer.set_style(style, **kwargs)
    with pytest.raises(DataError):
        stylizer.set_style(data["root"] / "missing.jpg")


def test_tiling_with_shared_statistics_matches_the_whole_image():
    net = random_adain_net()
    stylizer = TorchStylizer(net, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    image = lambda h, w: Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=generator,
                                                       dtype=torch.uint8).numpy())
    stylizer.set_style(image(60, 60), style_size=None)
    # 243 px wide: the last tile would start off the encoder's 8-pixel pooling grid unless aligned
    photo = image(40, 243)
    whole = pil_to_tensor(stylizer.stylize(photo, tile_size=None))
    tiled = pil_to_tensor(stylizer.stylize(photo, tile_size=224, overlap=8))
    assert stylizer.last_tile_count > 1 and (whole - tiled).abs().max() <= 1 / 255 + 1e-6


# -- eval.py ---------------------------------------------------------------------------------------

def test_eval_style_image_flags(trained, data, tmp_path, capsys):
    model, photo = trained / "ad.pth", data["train"] / "p0.jpg"
    a, b = data["art"] / "a0.png", data["art"] / "a1.png"
    out = tmp_path / "out.jpg"
    code, err = in_process(capsys, eval_cmd.main, "--model_file", model, "--image_file", photo, "--output_file",
                           out, "--style_image", a, f"{b}:0.5", "--alpha", "0.7", "--style_size", "48",
                           "--device", "cpu")
    assert code == 0 and Image.open(out).size == Image.open(photo).size, err
    code, err = in_process(capsys, eval_cmd.main, "--model_file", model, "--image_file", photo, "--device", "cpu")
    assert_clean_in_process(code, err, "arbitrary-style model (model_type adain): this model needs a style image")
    code, err = in_process(capsys, eval_cmd.main, "--model_file", model, "--image_file", photo,
                           "--style_image", tmp_path / "nope.jpg")
    assert_clean_in_process(code, err, "--style_image", "nope.jpg does not exist")
    code, err = in_process(capsys, eval_cmd.main, "--model_file", model, "--image_file", photo,
                           "--style_image", a, "--alpha", "1.5")
    assert_clean_in_process(code, err, "--alpha must be between 0 and 1")
    johnson = tmp_path / "johnson.pth"
    cfg = train_config_from_dict({"naming": "j", "style_image": "s.jpg"}, "test")
    atomic_torch_save(make_checkpoint(TransformNet(TransformNetArgs(8, 1)), cfg, 1), johnson)
    code, err = in_process(capsys, eval_cmd.main, "--model_file", johnson, "--image_file", photo,
                           "--style_image", a, "--device", "cpu")
    assert_clean_in_process(code, err, "has its own style; --style_image is for arbitrary-style models")
    with pytest.raises(SystemExit):
        eval_cmd.main(["--model_file", str(model), "--image_file", str(photo), "--alpha", "0.5"])


def test_eval_style_image_from_a_url(trained, data, tmp_path, capsys, monkeypatch):
    """--style_image https://...[:W] is downloaded once into data/styles/; a failed download is one
    line saying what to do."""
    from fast_nst.core.untrusted import downloads as fetch
    from fast_nst.core.errors import DownloadError

    monkeypatch.chdir(tmp_path)
    fetched = []

    def fake_download(url, dest, **limits):  # max_bytes, deadline_s, check: the real bounds
        fetched.append(url)
        if "broken" in url:
            raise DownloadError(f"Could not download {url} (HTTP Error 404)")
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_bytes((data["art"] / "a0.png").read_bytes())

    monkeypatch.setattr(fetch, "download_url", fake_download)
    model, photo, out = trained / "ad.pth", data["train"] / "p0.jpg", tmp_path / "out.jpg"
    url = "https://example.org/art/sunflowers.png"
    for _ in range(2):
        code, err = in_process(capsys, eval_cmd.main, "--model_file", model, "--image_file", photo, "--output_file",
                               out, "--style_image", f"{url}:0.6", data["art"] / "a1.png", "--device", "cpu")
        assert code == 0 and out.is_file(), err
    assert fetched == [url] and list((tmp_path / "data" / "styles").iterdir())
    code, err = in_process(capsys, eval_cmd.main, "--model_file", model, "--image_file", photo,
                           "--style_image", "https://example.org/broken.jpg")
    assert_clean_in_process(code, err, "HTTP Error 404", "give --style_image its local path")


# -- config checks -----------------------------------------------------------------------------------

def test_config_checks(tmp_path, data):
    def load(**values):
        return load_train_config(write_config(tmp_path / "c.yml", **values))

    with pytest.raises(ConfigError, match="key 'style_dir' is required for model_type adain"):
        load(model_type="adain", style_image="s.jpg")
    with pytest.raises(ConfigError, match="key 'style_dir' is for arbitrary-style networks"):
        load(style_image="s.jpg", style_dir="art")
    with pytest.raises(ConfigError, match="key 'style_image' is set, but model_type adain learns from"):
        load(model_type="adain", style_dir="art", style_image="s.jpg")
    with pytest.raises(ConfigError, match="sets encoder, which training takes from the loss network.*from loss_model"):
        load(model_type="adain", style_dir="art", model_args={"encoder": "vgg19"})
    with pytest.raises(ConfigError, match="key 'style_image' is required"):
        load()
    with pytest.raises(ConfigError, match="key 'style_warmup_steps' is for arbitrary-style networks"):
        load(style_image="s.jpg", style_warmup_steps=10)
    with pytest.raises(ConfigError, match="key 'style_warmup_steps' must be 0 .off. or a number of steps, got -1"):
        load(model_type="adain", style_dir="art", style_warmup_steps=-1)
    with pytest.raises(ConfigError, match=r"c\.yml: key 'style_layers' \(the default\) names relu4_3, deeper than the "
                                          "encoder's last layer relu4_1"):  # Johnson's style layers
        load(model_type="adain", style_dir="art")
    cfg = load(model_type="adain", style_dir="art", style_layers=["relu1_1", "relu4_1"])
    with pytest.raises(ConfigError, match="^config: key 'style_layers' names relu4_3, deeper than the encoder's"):
        check_network_args(dataclasses.replace(cfg, style_layers=("relu1_1", "relu4_3")))  # made without the loader
    for values, error, message in (({"style_dir": str(tmp_path / "none")}, DataError, "style_dir .*none does not exist"),
                                   ({"batch_size": 5}, DataError, "has 4 paintings, fewer than a batch .5.")):
        with pytest.raises(error, match=message):
            train(train_config_from_dict(_values(data, tmp_path / "m", **values), "test"), progress=False)


def test_export_of_the_photo_alone_is_refused(net):
    """A graph of the photo alone would be the autoencoder: its export form refuses it (the
    export writes the two-input graph, see tests/test_adain_export.py)."""
    with pytest.raises(Exception, match="exports with two inputs, the photo and the style image"):
        torch.export.export(net.exportable(), (torch.rand(1, 3, 32, 32),), strict=False)