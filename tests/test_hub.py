"""``hf://OWNER/REPO/FILE[@REVISION][#sha256=HEX]`` model references, without a network: a Hugging
Face Hub cache prepared here in the library's layout, the library in offline mode."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

from conftest import assert_clean_in_process, examples, export_cli, in_process, make_photo
from fast_nst import load_stylizer
from fast_nst.commands.eval import main as eval_main
from fast_nst.core.config import TrainConfig
from fast_nst.core.errors import DownloadError, FastNSTError
from fast_nst.core.untrusted import hub
from fast_nst.core.untrusted.hub import HubRef, parse_hub_ref
from fast_nst.io.checkpoint import atomic_torch_save, make_checkpoint
from fast_nst.io.hub import local_model_file
from fast_nst.nets import build_network

constants = pytest.importorskip("huggingface_hub.constants")
pytest.importorskip("safetensors")

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A tiny johnson model exported to .safetensors, and its network."""
    root = tmp_path_factory.mktemp("hub_model")
    torch.manual_seed(0)
    net = build_network("johnson", {"base_channels": 8, "num_residual": 1}).eval()
    atomic_torch_save(make_checkpoint(net, TrainConfig(naming="wave", style_image="s.jpg"), step=2), root / "wave.pth")
    export_cli(root / "wave.pth", "--format", "safetensors")
    return root / "wave.safetensors", net


@pytest.fixture
def cache(tmp_path, model, monkeypatch) -> Path:
    """A Hub cache holding me/wave's wave.safetensors at COMMIT (branch main), as hf_hub_download
    leaves it (blob, snapshot link, ref), with the library offline and pointed at it."""
    repo = tmp_path / "hub" / "models--me--wave"
    data = model[0].read_bytes()
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    snapshot = repo / "snapshots" / COMMIT / "wave.safetensors"
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_eval_stylizes_with_a_hub_model_from_the_cache_offline(cache, model, tmp_path, capsys):
    photo = make_photo(tmp_path / "p.jpg", (30, 22))
    code, err = in_process(capsys, eval_main, "--model_file", "hf://me/wave/wave.safetensors", "--image_file", photo,
                           "--output_file", tmp_path / "o.png", "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "o.png").stat().st_size > 0


def test_a_pinned_revision_and_checksum_load_the_same_network(cache, model):
    sha = hashlib.sha256(model[0].read_bytes()).hexdigest()
    s = load_stylizer(f"hf://me/wave/wave.safetensors@{COMMIT}#sha256={sha}", device="cpu")
    assert s.name == "wave" and Path(s.info["path"]).is_relative_to(cache)
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        assert torch.allclose(s.stylize_tensor(x), model[1](x), atol=1e-6)


def test_a_checksum_that_differs_is_refused(cache):
    with pytest.raises(DownloadError, match=r"its SHA-256 is [0-9a-f]{64}, not the 0{64}") as e:
        local_model_file("hf://me/wave/wave.safetensors#sha256=" + "0" * 64)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("ref", ["hf://me/wave/other.safetensors", "hf://me/gone/wave.safetensors",
                                 "hf://me/wave/wave.safetensors@v2"])
def test_offline_without_the_file_is_one_line_saying_what_to_do(cache, ref, tmp_path, capsys):
    photo = make_photo(tmp_path / "p.jpg", (20, 20))
    code, err = in_process(capsys, eval_main, "--model_file", ref, "--image_file", photo, "--device", "cpu")
    assert_clean_in_process(code, err, "not in the local Hugging Face cache and HF_HUB_OFFLINE is set: run once "
                            "without it, with a network, to download it")
    assert err.count("\n") == 1


def test_without_huggingface_hub_the_error_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(DownloadError, match=r"need the huggingface_hub package: pip install huggingface_hub"):
        local_model_file("hf://me/wave/wave.safetensors")


def test_the_export_command_takes_a_hub_reference(cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    printed = export_cli("hf://me/wave/wave.safetensors", "--format", "safetensors", "--output", "again.safetensors")
    assert "every tensor read back identical" in printed and (tmp_path / "again.safetensors").is_file()


@pytest.mark.parametrize("text,expected", [
    ("hf://me/wave/wave.safetensors", HubRef("me/wave", "wave.safetensors", None, None)),
    ("hf://org-1/m.v2/sub/dir/w.pth@refs/pr/3", HubRef("org-1/m.v2", "sub/dir/w.pth", "refs/pr/3", None)),
    (f"hf://a/b/c.safetensors@{COMMIT}#sha256={'a' * 64}", HubRef("a/b", "c.safetensors", COMMIT, "a" * 64)),
])
def test_references_are_parsed(text, expected):
    assert parse_hub_ref(text) == expected
    assert str(expected) == text.split("#")[0]


@pytest.mark.parametrize("text", ["hf://me/wave", "hf://me/wave/../../etc/passwd", "hf:///etc/passwd",
                                  "hf://me/wave/w.pth@", "hf://me/wave/w.pth#sha256=abc", "hf://-x/y/z",
                                  "hf://me/wave/w.pth@main/", "hf://me/wave/a b.pth", "hf://me/wave/w\n.pth"])
def test_malformed_references_say_the_expected_form(text):
    with pytest.raises(DownloadError, match=r"not a Hugging Face Hub reference; write hf://OWNER/REPO/FILE") as e:
        parse_hub_ref(text)
    assert "\n" not in str(e.value)


@settings(max_examples=examples(80), deadline=None)
@given(st.text(max_size=80).map(lambda t: "hf://" + t) | st.text(alphabet="ab/.@#-_:s", max_size=40))
def test_the_reference_parser_gives_a_reference_or_one_error(text):
    try:
        ref = parse_hub_ref(text)
    except FastNSTError as e:
        assert isinstance(e, DownloadError) and "\n" not in str(e)
        return
    assert ".." not in ref.filename.split("/") and not ref.filename.startswith("/")
    assert ref.repo_id.count("/") == 1


def test_a_report_takes_a_hub_reference(cache):
    from fast_nst.report.collect import load_models

    entries = load_models(["hf://me/wave/wave.safetensors"], "cpu", [None])
    assert entries[0].name == "wave" and entries[0].path.is_relative_to(cache)
    assert entries[0].settings.style_weight == TrainConfig().style_weight  # its config, read from the cache


@pytest.mark.parametrize("error,fragment", [
    ("LocalEntryNotFoundError", "the Hub cannot be reached: check the network connection"),
    ("RepositoryNotFoundError", "no such repository on the Hub, or it is private or gated"),
    ("RevisionNotFoundError", "the repository has no revision main"),
    ("RemoteEntryNotFoundError", "the repository has no file wave.safetensors at this revision"),
    ("HfHubHTTPError", "cannot download it (boom)"),
])
def test_hub_failures_online_are_one_line_each(monkeypatch, error, fragment):
    import huggingface_hub
    from huggingface_hub import errors

    httpx = pytest.importorskip("httpx")  # the library's HTTP client (huggingface_hub >= 1.0)
    response = httpx.Response(404, request=httpx.Request("HEAD", "https://huggingface.co/me/wave"))

    def fail(*args, **kwargs):
        cls = getattr(errors, error)
        raise cls("boom") if error == "LocalEntryNotFoundError" else cls("boom\nmore", response=response)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "hub_reachable", lambda endpoint: True)  # no network in tests
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fail)
    with pytest.raises(DownloadError) as e:
        local_model_file("hf://me/wave/wave.safetensors")
    assert fragment in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_an_unreachable_hub_uses_the_cache_at_once(cache, model, monkeypatch):
    """Online mode, but the Hub's host does not answer: the cached copy is used without the
    library's retries (over 20 s without a network), and a file not cached is one line at once."""
    import huggingface_hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "hub_reachable", lambda endpoint: False)
    calls = []
    real = huggingface_hub.hf_hub_download
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: calls.append(k) or real(*a, **k))
    path = local_model_file("hf://me/wave/wave.safetensors")
    assert path.read_bytes() == model[0].read_bytes() and calls[-1]["local_files_only"] is True
    with pytest.raises(DownloadError, match=r"hf://me/other/wave.safetensors: not in the local Hugging Face "
                                            r"cache and the Hub cannot be reached: check the network"):
        local_model_file("hf://me/other/wave.safetensors")
    assert len(calls) == 2 and calls[-1]["local_files_only"] is True


def test_a_commit_is_probed_for_only_when_the_cache_lacks_it(cache, model, monkeypatch):
    """A reference pinned to a commit the cache holds needs no network: no connection is tried
    (where the Hub's host drops packets, the probe would cost its whole timeout on every load)."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "hub_reachable", lambda endpoint: pytest.fail("probed the network"))
    assert local_model_file(f"hf://me/wave/wave.safetensors@{COMMIT}").read_bytes() == model[0].read_bytes()
    # A commit it does not hold is probed, and without a network is one line at once.
    probes = []
    monkeypatch.setattr(hub, "hub_reachable", lambda endpoint: probes.append(endpoint) and False)
    with pytest.raises(DownloadError, match=r"@fedcba9876543210fedcba9876543210fedcba98: not in the local "
                                            r"Hugging Face cache and the Hub cannot be reached"):
        local_model_file("hf://me/wave/wave.safetensors@fedcba9876543210fedcba9876543210fedcba98")
    assert probes == [constants.ENDPOINT]


def test_hub_reachable_tries_a_connection_unless_a_proxy_is_set(monkeypatch):
    import socket

    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as listener:  # a port that answers, then refuses once closed
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        closed = listener.getsockname()[1]
        assert hub.hub_reachable(f"http://127.0.0.1:{closed}", timeout=2)
    assert not hub.hub_reachable(f"http://127.0.0.1:{closed}", timeout=2)
    assert not hub.hub_reachable("not a url", timeout=2)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub.hub_reachable(f"http://127.0.0.1:{closed}", timeout=2)  # the proxy decides, not us


def test_the_app_offers_hub_references_files_and_folders(cache, model, tmp_path, capsys):
    from fast_nst.commands.app import app_models, parser

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "a.safetensors").write_bytes(model[0].read_bytes())
    ref = f"hf://me/wave/wave.safetensors@main#sha256={hashlib.sha256(model[0].read_bytes()).hexdigest()}"
    args = parser().parse_args(["--models", ref, "--models", str(folder), "--models", str(model[0])])
    models = app_models(args.models)
    assert list(models) == ["hf://me/wave/wave.safetensors@main", "a.safetensors", "wave.safetensors"]
    assert models["hf://me/wave/wave.safetensors@main"].is_relative_to(cache)
    assert models["wave.safetensors"] == model[0] and "3 model(s)." in capsys.readouterr().out
    for entry, words in (("hf://me/nope/wave.safetensors", "not in the local Hugging Face cache"),
                         (str(tmp_path / "gone.pth"), "does not exist"),
                         (str(model[0].with_suffix(".txt")), "not a model file")):
        if entry.endswith(".txt"):
            Path(entry).write_text("x")
        with pytest.raises(FastNSTError, match=words):
            app_models([entry])
