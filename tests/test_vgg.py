import pytest
import torch
from torchvision.models.vgg import cfgs, make_layers

import dataclasses

from fast_nst.core.untrusted import downloads as download
from fast_nst.core.errors import CheckpointError, DownloadError
from fast_nst.lossnet import LOSS_NETWORKS, TORCHVISION, layer_names
from fast_nst.lossnet.vgg import VGGEncoder, build_loss_network, download_weights, load_features, random_features


def test_layer_names_follow_torchvision_indices():
    assert layer_names("vgg16")[3] == "relu1_2" and layer_names("vgg16")[8] == "relu2_2"
    assert layer_names("vgg16")[15] == "relu3_3" and layer_names("vgg16")[22] == "relu4_3" and layer_names("vgg16")[29] == "relu5_3"
    assert len(layer_names("vgg16")) == len(make_layers(cfgs["D"]))  # torchvision's vgg16().features


def test_named_outputs_equal_torchvision_vgg16(vgg_file):
    enc = VGGEncoder(load_features("vgg16", vgg_file, allow_download=False),
                     ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])
    ref = make_layers(cfgs["D"])  # torchvision's vgg16().features
    state = torch.load(vgg_file, weights_only=True)
    ref.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    ref.eval()
    x = torch.rand(2, 3, 40, 48)
    normed = (x - torch.tensor(TORCHVISION.mean).view(1, 3, 1, 1)) / torch.tensor(TORCHVISION.std).view(1, 3, 1, 1)
    expected, h = {}, normed
    for i, module in enumerate(ref):
        h = module(h.clone())  # torchvision's ReLUs are in-place
        if i in (3, 8, 15, 22):
            expected[i] = h.clone()
    got = enc(x, ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])
    for name, i in zip(["relu1_2", "relu2_2", "relu3_3", "relu4_3"], (3, 8, 15, 22)):
        assert torch.allclose(got[name], expected[i], atol=1e-5), name


def test_encoder_is_frozen_and_cut_after_deepest_layer():
    enc = VGGEncoder(random_features("vgg16", 0), ["relu2_2", "relu1_1"])
    assert list(dict(enc.layers.named_children()))[-1] == "relu2_2"
    assert all(not p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training
    x = torch.rand(1, 3, 16, 16)
    x_copy = x.clone()
    out = enc(x, ["relu1_1"])
    assert set(out) == {"relu1_1"}
    assert torch.equal(x, x_copy)  # the caller's tensor is untouched
    with pytest.raises(ValueError, match="deeper"):
        enc(x, ["relu3_1"])
    with pytest.raises(ValueError, match="relu9_9"):
        VGGEncoder(random_features("vgg16", 0), ["relu9_9"])


def test_conv_outputs_not_clobbered_by_inplace_relu():
    enc = VGGEncoder(random_features("vgg16", 0), ["conv1_1", "relu1_1"])
    out = enc(torch.rand(1, 3, 16, 16), ["conv1_1", "relu1_1"])
    assert (out["conv1_1"] < 0).any()
    assert torch.equal(out["relu1_1"], out["conv1_1"].clamp(min=0))


def test_features_only_state_dict_is_accepted(tmp_path, vgg_file):
    full = torch.load(vgg_file, weights_only=True)
    feats_only = {k[len("features."):]: v for k, v in full.items() if k.startswith("features.")}
    path = tmp_path / "features.pth"
    torch.save(feats_only, path)
    a = load_features("vgg16", path, allow_download=False)
    assert torch.equal(a[28].weight, full["features.28.weight"])


def test_existing_file_is_not_downloaded(monkeypatch, vgg_file):
    def boom(*a, **k):
        raise AssertionError("download attempted although the file exists")

    monkeypatch.setattr(download, "download_url", boom)
    load_features("vgg16", vgg_file)


@pytest.mark.parametrize("arch,url", [("vgg16", "https://download.pytorch.org/models/vgg16-397923af.pth"),
                                      ("vgg19", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth")])
def test_missing_file_download_failure_names_url_and_path(monkeypatch, tmp_path, arch, url):
    attempts = []

    def fail(url, dest, **k):
        attempts.append((url, str(dest)))
        raise DownloadError(f"Download of {url} to {dest} failed: no network")

    monkeypatch.setattr(download, "download_url", fail)
    dest = tmp_path / "pretrained" / url.rsplit("/", 1)[1]
    with pytest.raises(DownloadError) as e:
        load_features(arch, dest)
    assert attempts == [(url, str(dest))]
    msg = str(e.value)
    assert url in msg and str(dest) in msg
    assert "loss_model_weights=random" in msg
    with pytest.raises(CheckpointError, match=f"{arch.upper()} weights not found"):
        load_features(arch, tmp_path / "other.pth")  # not torchvision's name: no download
    assert len(attempts) == 1


def test_download_writes_file_when_fetch_succeeds(monkeypatch, tmp_path, vgg_file):
    # Stand in for the network: urlopen serves the bytes of our stand-in file.
    import io

    data = vgg_file.read_bytes()

    class Response(io.BytesIO):
        status = 200
        headers = {"Content-Length": str(len(data))}

    monkeypatch.setattr(download, "_open", lambda url, start, timeout=None: Response(data))
    entry = dataclasses.replace(LOSS_NETWORKS["vgg16"], sha256=download.sha256_file(vgg_file)[:8])
    monkeypatch.setitem(LOSS_NETWORKS, "vgg16", entry)
    dest = tmp_path / "pretrained" / "vgg16-397923af.pth"
    feats = load_features("vgg16", dest)
    assert dest.read_bytes() == data
    assert not dest.with_name(dest.name + ".part").exists()
    assert feats[0].weight.shape == (64, 3, 3, 3)


def test_corrupt_download_is_rejected(monkeypatch, tmp_path):
    import io

    class Response(io.BytesIO):
        status = 200
        headers = {"Content-Length": "5"}

    monkeypatch.setattr(download, "_open", lambda url, start, timeout=None: Response(b"hello"))
    with pytest.raises(DownloadError, match="corrupt"):
        download_weights("vgg16", tmp_path / "vgg16-397923af.pth", quiet=True)
    assert not (tmp_path / "vgg16-397923af.pth").exists()


def test_download_resumes_partial_file(monkeypatch, tmp_path):
    import io

    seen = []

    class Response(io.BytesIO):
        status = 206
        headers = {"Content-Length": "3"}

    def fake_open(url, start, timeout=None):
        seen.append(start)
        return Response(b"def")

    monkeypatch.setattr(download, "_open", fake_open)
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(b"abc")
    download.download_url("https://example.invalid/f.bin", dest, quiet=True)
    assert seen == [3] and dest.read_bytes() == b"abcdef"


def test_wrong_file_is_rejected(tmp_path):
    path = tmp_path / "vgg16-397923af.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not a VGG16 weights file"):
        load_features("vgg16", path, allow_download=False)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a VGG16 weights file"):
        load_features("vgg16", path, allow_download=False)


def test_random_weights_are_seeded_and_announced(capsys):
    a = build_loss_network("random", ["relu1_2"], "unused.pth", seed=3)
    b = build_loss_network("random", ["relu1_2"], "unused.pth", seed=3)
    assert torch.equal(a.layers.conv1_1.weight, b.layers.conv1_1.weight)
    assert "RANDOM weights" in capsys.readouterr().err
    with pytest.raises(ValueError, match="imagenet, random"):
        build_loss_network("vgg15", ["relu1_2"], "unused.pth")
