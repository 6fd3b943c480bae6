"""pytorch/examples' fast_neural_style models: conversion, direct loading and `download pretrained`."""

import io
import re
import zipfile

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from fast_nst import load_stylizer
from fast_nst.commands import download as download_command
from fast_nst.core.untrusted import downloads as download
from fast_nst.core.errors import DownloadError
from fast_nst.io.pretrained import PRETRAINED_URL
from fast_nst.io.checkpoint import read_checkpoint
from fast_nst.commands.eval import main as eval_main
from fast_nst.commands.convert import main as convert_main

from conftest import file_size_cap, make_photo, trained_like_norms


class _ExConv(nn.Module):
    """pytorch/examples' layer layout: reflection pad + conv named `conv2d`, optional upsample."""

    def __init__(self, cin, cout, k, stride=1, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(k // 2)
        self.conv2d = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class _ExRes(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.in1 = _ExConv(c, c, 3), nn.InstanceNorm2d(c, affine=True)
        self.conv2, self.in2 = _ExConv(c, c, 3), nn.InstanceNorm2d(c, affine=True)

    def forward(self, x):
        return x + self.in2(self.conv2(torch.relu(self.in1(self.conv1(x)))))


class ExamplesTransformerNet(nn.Module):
    """The key layout and computation of pytorch/examples' TransformerNet (0-255 in and out)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.in1 = _ExConv(3, 32, 9), nn.InstanceNorm2d(32, affine=True)
        self.conv2, self.in2 = _ExConv(32, 64, 3, 2), nn.InstanceNorm2d(64, affine=True)
        self.conv3, self.in3 = _ExConv(64, 128, 3, 2), nn.InstanceNorm2d(128, affine=True)
        for i in range(1, 6):
            setattr(self, f"res{i}", _ExRes(128))
        self.deconv1, self.in4 = _ExConv(128, 64, 3, upsample=2), nn.InstanceNorm2d(64, affine=True)
        self.deconv2, self.in5 = _ExConv(64, 32, 3, upsample=2), nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = _ExConv(32, 3, 9)

    def forward(self, x):
        y = torch.relu(self.in1(self.conv1(x)))
        y = torch.relu(self.in2(self.conv2(y)))
        y = torch.relu(self.in3(self.conv3(y)))
        for i in range(1, 6):
            y = getattr(self, f"res{i}")(y)
        y = torch.relu(self.in4(self.deconv1(y)))
        y = torch.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


@pytest.fixture(scope="module")
def examples_model(tmp_path_factory):
    torch.manual_seed(0)
    net = ExamplesTransformerNet().eval()
    trained_like_norms(net)
    with torch.no_grad():
        # scale the output layer so the 0-255 output spans the range, as a trained model's does
        net.deconv3.conv2d.weight.mul_(200)
        net.deconv3.conv2d.bias.fill_(128)
    state = dict(net.state_dict())
    for i in range(1, 6):  # stale running statistics, as in the published files
        state[f"in{i}.running_mean"] = torch.randn(32 if i in (1, 5) else 64 if i in (2, 4) else 128)
        state[f"in{i}.running_var"] = torch.rand_like(state[f"in{i}.running_mean"])
    path = tmp_path_factory.mktemp("ex") / "mosaic.pth"
    torch.save(state, path)
    return net, path


def reference(net, x):
    with torch.no_grad():
        return (net(x * 255) / 255).clamp(0, 1)


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 40, 56)])
def test_converted_model_computes_the_same_image(examples_model, tmp_path, shape):
    net, src = examples_model
    out = tmp_path / "mosaic_fastnst.pth"
    assert convert_main([str(src), str(out), "--from", "pytorch-examples", "--naming", "mosaic"]) == 0
    ckpt = read_checkpoint(out)
    assert ckpt["model_args"]["output_activation"] == "clamp" and ckpt["config"]["naming"] == "mosaic"
    torch.manual_seed(1)
    x = torch.rand(*shape)
    expected = reference(net, x)
    assert expected.std() > 0.05  # a non-trivial image
    for fast in (False, True):
        s = load_stylizer(out, device="cpu")
        if not fast:
            s = type(s)(s.net, s.device, fast=False)
        got = s.stylize_tensor(x)
        assert (got - expected).abs().max() < 2e-4, (fast, (got - expected).abs().max())


def test_eval_reads_pytorch_examples_files_directly(examples_model, tmp_path):
    net, src = examples_model
    photo = make_photo(tmp_path / "p.png", (48, 36), fmt="PNG")
    out = tmp_path / "o.png"
    assert eval_main(["--model_file", str(src), "--image_file", str(photo), "--output_file", str(out)]) == 0
    from fast_nst.core.images import pil_to_tensor

    got = pil_to_tensor(Image.open(out))
    expected = reference(net, pil_to_tensor(Image.open(photo)).unsqueeze(0))[0]
    assert (got - expected).abs().max() <= 1.5 / 255


def test_convert_rejects_other_files(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    torch.save({"weight": torch.zeros(2)}, bad)
    assert convert_main([str(bad), str(tmp_path / "o.pth"), "--from", "pytorch-examples"]) == 1
    assert "not a pytorch/examples fast_neural_style model" in capsys.readouterr().err
    assert not (tmp_path / "o.pth").exists()


def test_convert_writes_what_the_suffix_says(examples_model, tmp_path, capsys):
    """x.safetensors used to be a .pth pickle under that name, which eval.py then refused."""
    from fast_nst.io.safetensors_file import read_safetensors_checkpoint

    net, src = examples_model
    out = tmp_path / "cv" / "x.safetensors"
    assert convert_main([str(src), str(out)]) == 0
    assert capsys.readouterr().out == f"Saved {out}\n"
    ckpt = read_safetensors_checkpoint(out, 1 << 30)
    assert ckpt["config"]["naming"] == "x" and ckpt["kind"] == "model"
    x = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    got = load_stylizer(out, device="cpu").stylize_tensor(x)
    assert (got - reference(net, x)).abs().max() < 2e-4


@pytest.mark.parametrize("name,message", [
    ("x.onnx", "cv/x.onnx: convert does not write ONNX; convert to {d}/cv/x.pth, then export that: "
               "python -m fast_nst.export {d}/cv/x.pth --format onnx --output {d}/cv/x.onnx"),
    ("x.bin", "convert writes .pth, .pt (a fast-nst checkpoint) or .safetensors files, not '.bin'; "
              "name the output e.g. {d}/cv/x.pth"),
    ("x", "not a file without a suffix; name the output e.g. {d}/cv/x.pth"),
])
def test_convert_refuses_suffixes_it_does_not_write_before_reading(tmp_path, capsys, name, message):
    # SRC does not exist: the suffix is refused before it is read.
    code = convert_main([str(tmp_path / "missing.pth"), str(tmp_path / "cv" / name)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: ") and message.format(d=tmp_path) in err, err
    assert not (tmp_path / "cv").exists()


@pytest.mark.parametrize("name,naming", [
    ("my model.pth", "my_model"), (".hidden.pth", "hidden"), ("m" * 80 + ".pth", "m" * 64),
    ("x y.safetensors", "x_y"),
])
def test_convert_names_the_style_after_any_file_name(examples_model, tmp_path, capsys, name, naming):
    """The default naming is DEST's stem made a plain name (it used to be refused with
    "key 'naming' must be a plain name" though the user gave none)."""
    from fast_nst.io.checkpoint import load_model

    out = tmp_path / name
    assert convert_main([str(examples_model[1]), str(out)]) == 0, capsys.readouterr().err
    assert load_model(out)[1]["config"]["naming"] == naming


def test_convert_asks_for_naming_when_the_file_name_gives_none(tmp_path, capsys):
    out = tmp_path / "\U0001f3a8.pth"
    code = convert_main([str(tmp_path / "missing.pth"), str(out)])  # refused before SRC is read
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"error: {out}: no style name can be made from the file name" in err and "give one with --naming NAME" in err
    assert convert_main([str(tmp_path / "missing.pth"), str(out), "--naming", "art"]) == 1
    assert "not found" in capsys.readouterr().err  # with --naming the name passes


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_failed_write_says_why_and_keeps_the_file(examples_model, tmp_path, capsys, suffix):
    """A full disk used to end in a traceback (RuntimeError: [enforce fail at inline_container.cc]
    unexpected pos / SafetensorError): one line now, with the reason, and DEST as it was."""
    out = tmp_path / f"m{suffix}"
    out.write_bytes(b"mine")
    with file_size_cap(1 << 20):  # the model is 6.7 MB
        code = convert_main([str(examples_model[1]), str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err == f"error: cannot write {out}: File too large; choose a writable output file.\n", err
    assert out.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_convert_to_safetensors_without_the_package_says_how_to_install_it(examples_model, tmp_path, capsys,
                                                                          monkeypatch):
    from fast_nst.core.untrusted import safetensors_header

    monkeypatch.setattr(safetensors_header, "safe_open", None)
    code = convert_main([str(tmp_path / "missing.pth"), str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "needs the safetensors package: pip install" in err, err
    assert not (tmp_path / "x.safetensors").exists()


def test_download_pretrained_converts_each_model(examples_model, tmp_path, monkeypatch):
    _, src = examples_model
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("candy", "mosaic", "rain_princess", "udnie"):
            zf.writestr(f"saved_models/{name}.pth", src.read_bytes())
    urls = []

    def fake_download(url, dest, **kwargs):
        urls.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(archive.getvalue())
        return dest

    monkeypatch.setattr(download, "download_url", fake_download)
    monkeypatch.chdir(tmp_path)
    assert download_command.main(["pretrained"]) == 0
    assert urls == [PRETRAINED_URL]
    for name in ("candy", "mosaic", "rain_princess", "udnie"):
        ckpt = read_checkpoint(tmp_path / "models" / name / f"{name}.pth")
        assert ckpt["config"]["naming"] == name


def test_download_pretrained_failure_is_a_clear_error(tmp_path, monkeypatch, capsys):
    def fail(url, dest, **kwargs):
        raise DownloadError(f"Download of {url} to {dest} failed: no network")

    monkeypatch.setattr(download, "download_url", fail)
    monkeypatch.chdir(tmp_path)
    assert download_command.main(["pretrained"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Download of https://www.dropbox.com/") and "Traceback" not in err


@pytest.mark.parametrize("bad", [b"junk" * 64, "foreign"])
def test_download_pretrained_with_a_bad_member_names_it_and_writes_nothing(examples_model, tmp_path, capsys, bad):
    """A member that is no pytorch/examples model used to be reported under a temporary file
    already gone, with no way out, after the members before it were written."""
    if bad == "foreign":
        buffer = io.BytesIO()
        torch.save({"weight": torch.zeros(2)}, buffer)
        bad = buffer.getvalue()
    data = tmp_path / "data"
    data.mkdir()
    archive = data / "pytorch_examples_saved_models.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("saved_models/candy.pth", examples_model[1].read_bytes())
        zf.writestr("saved_models/odd.pth", bad)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        assert download_command.main(["pretrained"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: data/pytorch_examples_saved_models.zip: its member saved_models/odd.pth cannot "
                          "be converted: "), err
    assert err.endswith("Nothing was written; delete the zip and run the command again.\n") and err.count("\n") == 1
    assert not re.search(r"tmp\w{8}", err) and not (tmp_path / "models").exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.:FutureWarning")
def test_export_reads_pytorch_examples_files(examples_model, tmp_path, capsys):
    """export --help promises pytorch/examples .pth files; they are converted on the fly."""
    import json

    from fast_nst.io.export import TORCHSCRIPT_METADATA
    from fast_nst.commands.export import main as export_main

    _, src = examples_model
    out = tmp_path / "mosaic.pt"
    assert export_main([str(src), "--output", str(out), "--format", "torchscript"]) == 0
    extra = {TORCHSCRIPT_METADATA: ""}
    torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra[TORCHSCRIPT_METADATA])
    assert meta["converted_from"] == "pytorch-examples" and meta["name"] == "mosaic"

    # ... and the TorchScript file is not mistaken for one by convert.
    assert convert_main([str(out), str(tmp_path / "back.pth"), "--from", "pytorch-examples"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "TorchScript export" in err and "mosaic.pth" not in err
    assert "weights_only" not in err and not (tmp_path / "back.pth").exists()


def test_convert_takes_a_model_url_as_eval_does(examples_model, tmp_path, capsys, monkeypatch):
    """A URL was read as a path: "Model file not found: https:/example.com/..."; it is fetched
    through the model-URL cache, as --model_file's, and a URL that names no model is shown whole."""
    from fast_nst.core.untrusted import model_urls

    fetched = []

    def fake_download(url, dest, *args, **kwargs):
        fetched.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(examples_model[1].read_bytes())
        return dest

    monkeypatch.setattr(model_urls, "download_url", fake_download)
    url = "https://example.com/models/mosaic.pth"
    out = tmp_path / "m.pth"
    assert convert_main([url, str(out)]) == 0, capsys.readouterr().err
    assert fetched == [url]
    ckpt = read_checkpoint(out)
    assert ckpt["config"]["naming"] == "m" and ckpt["config"]["style_image"] == "mosaic.pth (converted from pytorch-examples)"
    x = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    assert (load_stylizer(out, device="cpu").stylize_tensor(x) - reference(examples_model[0], x)).abs().max() < 2e-4
    capsys.readouterr()
    code = convert_main(["https://example.com/models/notes.txt", str(tmp_path / "n.pth")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: https://example.com/models/notes.txt: not a model URL"), err
    assert err.count("\n") == 1 and fetched == [url] and not (tmp_path / "n.pth").exists()


@pytest.mark.parametrize("naming, suggested", [("a b", "a_b"), ("", "my_style"), ("../x", "x"), ("\x1b[2Jx", "2Jx")])
def test_an_invalid_naming_is_told_in_converts_words(tmp_path, capsys, naming, suggested):
    """It got train's config message: "convert: key 'naming' must be a plain name for the run folder"."""
    code = convert_main([str(tmp_path / "missing.pth"), str(tmp_path / "o.pth"), "--naming", naming])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "\x1b" not in err, err
    assert err.startswith("error: --naming '") and "': a style name is letters, digits, '-' and '_'" in err, err
    assert f"e.g. --naming {suggested};" in err and "key 'naming'" not in err and "run folder" not in err


@pytest.mark.parametrize("change, fragment", [
    (lambda w: w.to(torch.complex64), "tensor 'conv1.conv2d.weight' is complex64, where the network holds float32"),
    (lambda w: w.long(), "tensor 'conv1.conv2d.weight' is int64"),
    (lambda w: torch.full_like(w, float("inf")), "its weights are NaN or infinite (conv1.conv2d.weight)"),
])
def test_pytorch_examples_weights_are_checked_as_fast_nst_ones(examples_model, tmp_path, capsys, change, fragment):
    """Complex and integer weights were converted silently (.float()); infinite ones ended in
    "refusing to save a network with NaN or infinite weights ...; lower lr or the loss weights"."""
    state = torch.load(examples_model[1], weights_only=True)
    state["conv1.conv2d.weight"] = change(state["conv1.conv2d.weight"])
    src = tmp_path / "odd.pth"
    torch.save(state, src)
    code = convert_main([str(src), str(tmp_path / "o.pth")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"error: {src}: ") and fragment in err and err.count("\n") == 1, err
    assert "lower lr or the loss weights" not in err and not (tmp_path / "o.pth").exists()
