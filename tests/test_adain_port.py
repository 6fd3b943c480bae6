"""The published AdaIN model of naoto0804/pytorch-AdaIN (``python -m fast_nst.download adain``):
state dicts in the port's layout (random weights: the real files are not downloaded here) are
converted, and the fast-nst model is compared with a plain re-implementation of the port's
forward pass written below from its published layout (net.py, function.py)."""

from __future__ import annotations

import io
import socket
import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fast_nst.commands import download as download_command
from fast_nst.core import fetch
from fast_nst.core.untrusted import downloads
from fast_nst.core.errors import CheckpointError
from fast_nst.io import adain_pretrained
from fast_nst.io.adain_pretrained import ADAIN_DECODER_FILE, convert_published_adain
from fast_nst.io.checkpoint import load_model
from fast_nst.lossnet import LOSS_NETWORKS
from fast_nst.nets.adain_port import DECODER_URL, PORT, decoder_from_published

from conftest import examples

VGG = LOSS_NETWORKS["vgg19_normalised"]
# The port's encoder: a 1x1 convolution, then VGG-19 with a reflection padding module before each
# 3x3 convolution ("p"), ReLUs ("r") and ceil-mode 2x2 max pools ("m"), to relu5_4.
_VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
# Its decoder from relu4_1: (in, out) per convolution, "U" a nearest x2 upsampling.
_DECODER = [(512, 256), "U", (256, 256), (256, 256), (256, 256), (256, 128), "U", (128, 128), (128, 64), "U",
            (64, 64), (64, 3)]


def port_encoder_layout() -> list[tuple]:
    """[("conv", index, cin, cout, k) | ("relu",) | ("pool",)] in the port's Sequential order."""
    layout, index, cin = [("conv", 0, 3, 3, 1)], 1, 3
    for item in _VGG19:
        if item == "M":
            layout.append(("pool",))
            index += 1
        else:
            layout += [("conv", index + 1, cin, item, 3), ("relu",)]
            index, cin = index + 3, item
    return layout


def port_decoder_layout() -> list[tuple]:
    layout, index = [], 0
    for item in _DECODER:
        if item == "U":
            layout.append(("up",))
            index += 1
        else:
            last = item[1] == 3
            layout.append(("conv", index + 1, item[0], item[1], not last))
            index += 2 if last else 3
    return layout


def random_state(layout: list[tuple], seed: int, gain: float) -> dict[str, torch.Tensor]:
    """He-initialised weights (times ``gain``) and small biases under the port's keys."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for item in layout:
        if item[0] == "conv":
            _, index, cin, cout = item[:4]
            k = item[4] if isinstance(item[4], int) and not isinstance(item[4], bool) else 3
            w = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5 * gain
            state[f"{index}.weight"], state[f"{index}.bias"] = w, torch.randn(cout, generator=g) * 0.1
    return state


def reference_transfer(vgg: dict, decoder: dict, content: torch.Tensor, style: torch.Tensor,
                       alpha: float) -> torch.Tensor:
    """The port's test-time transfer: encoder to relu4_1 (its first 31 modules), AdaIN with the
    unbiased variance + 1e-5, alpha blending, decoder; no clamping."""
    def encode(x):
        relus = 0
        for item in port_encoder_layout():
            if item[0] == "conv":
                w, b = vgg[f"{item[1]}.weight"], vgg[f"{item[1]}.bias"]
                x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect") if item[4] == 3 else x, w, b)
            elif item[0] == "relu":
                x, relus = F.relu(x), relus + 1
                if relus == 9:  # relu4_1: 2 + 2 + 4 + 1 ReLUs
                    return x
            else:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        raise AssertionError("relu4_1 not reached")

    def stats(f):
        n, c = f.shape[:2]
        flat = f.reshape(n, c, -1)
        return flat.mean(2).reshape(n, c, 1, 1), (flat.var(2) + 1e-5).sqrt().reshape(n, c, 1, 1)

    fc, fs = encode(content), encode(style)
    (cm, cs), (sm, ss) = stats(fc), stats(fs)
    t = (fc - cm) / cs * ss + sm
    y = alpha * t + (1 - alpha) * fc
    for item in port_decoder_layout():
        if item[0] == "up":
            y = F.interpolate(y, scale_factor=2, mode="nearest")
        else:
            y = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="reflect"), decoder[f"{item[1]}.weight"], decoder[f"{item[1]}.bias"])
            y = F.relu(y) if item[4] else y
    return y


@pytest.fixture(scope="module")
def port_files(tmp_path_factory) -> tuple[Path, Path, dict, dict]:
    folder = tmp_path_factory.mktemp("port")
    vgg, decoder = random_state(port_encoder_layout(), 1, 1.0), random_state(port_decoder_layout(), 2, 1.0)
    assert len(vgg) == 34 and "51.bias" in vgg and vgg["0.weight"].shape == (3, 3, 1, 1)  # the port's keys
    assert sorted(decoder, key=lambda k: int(k.split(".")[0]))[-1] == "28.bias" and len(decoder) == 18
    torch.save(vgg, folder / "vgg_normalised.pth")
    torch.save(decoder, folder / "decoder.pth")
    return folder / "vgg_normalised.pth", folder / "decoder.pth", vgg, decoder


def test_conversion_equals_the_port_forward_pass(port_files, tmp_path):
    vgg_file, decoder_file, vgg, decoder = port_files
    dest = convert_published_adain(vgg_file, decoder_file, tmp_path / "adain" / "adain.pth")
    # the encoder file is the user's to name (a model file never chooses what is opened)
    net, ckpt = load_model(dest, loss_model_file=vgg_file)
    assert ckpt["model_args"]["encoder"] == "vgg19_normalised" and ckpt["model_args"]["unbiased_std"] is True
    assert ckpt["model_args"]["encoder_sha256"] == fetch.sha256_file(vgg_file)
    assert not any(k.startswith("encoder.") for k in ckpt["model_state"])  # the encoder stays in its file
    net.train()  # unclamped output, to compare every value (the encoder is frozen in any mode)
    g = torch.Generator().manual_seed(0)
    for (h, w), (sh, sw), alpha in [((32, 48), (40, 32), 1.0), ((24, 16), (16, 16), 0.6)]:
        content, style = torch.rand(2, 3, h, w, generator=g), torch.rand(1, 3, sh, sw, generator=g)
        with torch.no_grad():
            ours = net(content, style, alpha)
            ref = reference_transfer(vgg, decoder, content, style.expand(2, -1, -1, -1), alpha)
        assert ref.shape == ours.shape and ref.abs().max() > 0.1
        assert (ours - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_a_decoder_of_another_layout_is_refused(port_files, tmp_path):
    vgg_file, _, _, decoder = port_files
    bad = dict(decoder)
    bad["1.weight"] = bad["1.weight"][:, :256]  # a decoder from relu3_1's 256 channels
    torch.save(bad, tmp_path / "decoder.pth")
    with pytest.raises(CheckpointError, match=r"not the published AdaIN decoder .*1.weight has shape "
                                              r"\(256, 256, 3, 3\), expected \(256, 512, 3, 3\)"):
        convert_published_adain(vgg_file, tmp_path / "decoder.pth", tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()


def test_download_adain_converts_files_put_in_place_by_hand(port_files, tmp_path, monkeypatch, capsys):
    vgg_file, decoder_file, _, _ = port_files
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(downloads, "_open", lambda url, start, timeout=None: pytest.fail(f"downloaded {url}"))
    # Files put in place are checked against the published checksums: pin these stand-ins' instead.
    monkeypatch.setattr(adain_pretrained, "ENCODER_SHA256", fetch.sha256_file(vgg_file))
    monkeypatch.setattr(adain_pretrained, "DECODER_SHA256", fetch.sha256_file(decoder_file))
    Path("pretrained").mkdir()
    Path(VGG.file).write_bytes(vgg_file.read_bytes())
    Path(ADAIN_DECODER_FILE).write_bytes(decoder_file.read_bytes())
    assert download_command.main(["adain"]) == 0
    out = capsys.readouterr().out
    assert "Saved models/adain/adain.pth" in out and "--style_image painting.jpg" in out
    # found at the registry's default path, where the command put it, and checked by checksum
    net, ckpt = load_model("models/adain/adain.pth")
    assert ckpt["model_args"]["encoder_sha256"] == fetch.sha256_file(VGG.file)
    assert ckpt["model_args"]["encoder"] == "vgg19_normalised"


_HAND = (f"The published AdaIN model of {PORT} is two files: to finish by hand, download them on a machine with "
         f"internet, put {VGG.url} at {VGG.file} and {DECODER_URL} at {ADAIN_DECODER_FILE}, and run this command "
         "again: it converts the files it finds there.\n")


def test_download_adain_offline_names_both_urls_and_where_to_put_them(tmp_path, monkeypatch, capsys):
    """One line, like the other download targets' errors (was several: the URLs and paths on
    lines of their own)."""
    monkeypatch.chdir(tmp_path)

    def offline(url, start, timeout=None):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(downloads, "_open", offline)
    assert download_command.main(["adain"]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: Download of {VGG.url} to {VGG.file} failed: [Errno -2] Name or service not known. "
                   + _HAND)
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


def test_download_adain_fetch_failing_with_an_os_error_is_the_same_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    def no_room(url, dest, sha256):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(adain_pretrained, "_fetch", no_room)
    assert download_command.main(["adain"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: Download of {VGG.url} to {VGG.file} failed: No space left on device. " + _HAND


def test_download_adain_refuses_files_that_are_not_the_published_ones(tmp_path, monkeypatch, capsys):
    """Both files are pinned by SHA-256: a body that differs (a changed release asset, a proxy's
    page sent with status 200) is refused, and nothing is kept."""
    monkeypatch.chdir(tmp_path)
    data = b"not the published weights"

    class Response(io.BytesIO):
        status = 200
        headers = {"Content-Length": str(len(data))}

    monkeypatch.setattr(downloads, "_open", lambda url, start, timeout=None: Response(data))
    assert download_command.main(["adain"]) == 1
    err = capsys.readouterr().err
    assert f"Download of {VGG.url} is corrupt" in err and f"expected {VGG.sha256[:12]}" in err, err
    assert len(VGG.sha256) == 64
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []


@settings(max_examples=examples(25), deadline=None)
@given(st.dictionaries(st.sampled_from(["1.weight", "1.bias", "28.bias", "5.weight", "x", "0.weight"]),
                       st.one_of(st.none(), st.integers(), st.lists(st.integers(0, 4), max_size=4).map(
                           lambda shape: torch.zeros(shape))), max_size=6))
def test_any_decoder_state_ends_in_the_model_or_one_error(state):
    """decoder.pth is a downloaded file: whatever its state dict holds, the conversion either
    returns fast-nst's decoder keys or raises CheckpointError."""
    try:
        out = decoder_from_published(state)
    except CheckpointError as e:
        assert "decoder.pth" in str(e)
    else:
        assert len(out) == 18
