"""Model files named by an http(s) URL (``--model_file https://HOST/PATH/NAME.pth[#sha256=HEX]``):
fetched once into fast-nst's cache folder, checked, then used without the network."""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

from conftest import assert_clean_in_process, examples, export_cli, in_process, make_photo, tiny_values
from fast_nst import load_stylizer
from fast_nst.commands.eval import main as eval_main
from fast_nst.core.config import TrainConfig
from fast_nst.core.errors import DownloadError
from fast_nst.core.untrusted.model_urls import model_url_file, parse_model_url
from fast_nst.io.checkpoint import atomic_torch_save, make_checkpoint, read_checkpoint
from fast_nst.io.hub import local_model_file
from fast_nst.nets import build_network
from fast_nst.training.config import train_config_from_dict
from fast_nst.training.trainer import train

ERROR_PAGE = b"<!DOCTYPE html><html><body>Please log in</body></html>"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, bytes]:
    """What the server serves: a tiny johnson model as .pth and .onnx, and an error page."""
    root = tmp_path_factory.mktemp("url_models")
    torch.manual_seed(0)
    net = build_network("johnson", {"base_channels": 8, "num_residual": 1}).eval()
    atomic_torch_save(make_checkpoint(net, TrainConfig(naming="wave", style_image="s.jpg"), step=2), root / "wave.pth")
    export_cli(root / "wave.pth", "--format", "onnx")
    return {"/m/wave.pth": (root / "wave.pth").read_bytes(), "/m/wave.onnx": (root / "wave.onnx").read_bytes(),
            "/m/login.pth": ERROR_PAGE}


@pytest.fixture(scope="module")
def server(files):
    """A local HTTP server of ``files``; ``server.hits`` counts the requests per path."""
    hits: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits[self.path] = hits.get(self.path, 0) + 1
            slow = self.path.startswith("/slow/")  # the same file, sent in 0.3 s: downloads overlap
            body = files.get(self.path.removeprefix("/slow"))
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            for i in range(0, len(body or b""), 1 << 15):
                self.wfile.write(body[i:i + (1 << 15)])
                self.wfile.flush()
                time.sleep(0.06 if slow else 0)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield type("Server", (), {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "hits": hits})
    httpd.shutdown()
    httpd.server_close()


def test_a_model_url_is_fetched_once_and_stylizes(server, files, tmp_path, capsys):
    url = f"{server.url}/m/wave.pth"
    photo = make_photo(tmp_path / "photo.jpg")
    code, err = in_process(capsys, eval_main, "--model_file", url, "--image_file", str(photo),
                           "--output_file", str(tmp_path / "out.jpg"))
    assert code == 0, err
    assert (tmp_path / "out.jpg").is_file() and server.hits["/m/wave.pth"] == 1
    # The copy is used from then on, without asking the server again; the same bytes.
    path = local_model_file(url)
    assert path.read_bytes() == files["/m/wave.pth"] and server.hits["/m/wave.pth"] == 1
    assert path.name == "wave.pth" and path.parent.parent.name == "models"
    # ONNX files too, with their checksum pinned.
    digest = hashlib.sha256(files["/m/wave.onnx"]).hexdigest()
    stylizer = load_stylizer(f"{server.url}/m/wave.onnx#sha256={digest}", device="cpu")
    assert stylizer.stylize_tensor(torch.rand(1, 3, 24, 32)).shape == (1, 3, 24, 32)


def test_what_is_not_a_model_is_not_kept(server, tmp_path):
    with pytest.raises(DownloadError, match="not what was asked for \\(not a .pth model file\\); it starts with "
                                            "'<!DOCTYPE html>.*Or download the file yourself"):
        model_url_file(f"{server.url}/m/login.pth", tmp_path, 1 << 20, quiet=True)
    with pytest.raises(DownloadError, match="corrupt \\(sha256"):
        model_url_file(f"{server.url}/m/wave.pth#sha256={'0' * 64}", tmp_path, 1 << 30, quiet=True)
    with pytest.raises(DownloadError, match="HTTP Error 404"):
        model_url_file(f"{server.url}/m/gone.pth", tmp_path, 1 << 30, quiet=True)
    with pytest.raises(DownloadError, match="more than the limit of 1,000 bytes"):
        model_url_file(f"{server.url}/m/wave.pth", tmp_path, 1000, quiet=True)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_processes_that_name_one_url_download_it_once(server, files, tmp_path):
    """The ranks of a torchrun job naming one URL: one downloads, the others wait for its file
    (downloads.download_url's lock; each call opens the lock file itself, as a process would,
    so threads stand in for processes)."""
    url = f"{server.url}/slow/m/wave.pth"
    with ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: model_url_file(url, tmp_path, 1 << 30, quiet=True), range(3)))
    assert server.hits["/slow/m/wave.pth"] == 1
    assert len(set(paths)) == 1 and paths[0].read_bytes() == files["/m/wave.pth"]
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["wave.pth"]  # no lock or .part left


def test_a_cached_copy_that_changed_is_refused(server, files, tmp_path):
    digest = hashlib.sha256(files["/m/wave.pth"]).hexdigest()
    path = model_url_file(f"{server.url}/m/wave.pth#sha256={digest}", tmp_path, 1 << 30, quiet=True)
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(DownloadError, match=f"has SHA-256 [0-9a-f]{{64}}, not the {digest} the URL asks for: "
                                            "delete that folder"):
        model_url_file(f"{server.url}/m/wave.pth#sha256={digest}", tmp_path, 1 << 30, quiet=True)


def test_model_url_errors_say_the_form(capsys, tmp_path):
    photo = make_photo(tmp_path / "x.jpg")
    for url, fragment in (("https://example.com/models/wave.zip", "NAME ending in .pth, .pt, .safetensors, .onnx"),
                          ("https://example.com/", "not a model URL"),
                          ("https://example.com/wave.pth#sha256=abc", "#sha256=HEX (64 lower-case hex digits)")):
        code, err = in_process(capsys, eval_main, "--model_file", url, "--image_file", str(photo))
        assert_clean_in_process(code, err, fragment)
    assert parse_model_url("https://example.com/a/My%20Model.PTH?dl=1#sha256=" + "a" * 64) == (
        "https://example.com/a/My%20Model.PTH?dl=1", "My_Model.pth", "a" * 64)


@settings(max_examples=examples(200), deadline=None)
@given(text=st.one_of(st.text(max_size=300), st.builds(lambda a, b, c: f"https://{a}/{b}{c}", st.text(max_size=40),
                                                        st.text(max_size=60), st.sampled_from(["", ".pth", ".onnx#x"]))))
def test_any_text_is_a_model_url_or_one_error(text):
    try:
        ref = parse_model_url(text)
    except DownloadError as e:
        assert "\n" not in str(e) and len(str(e)) < 600
    else:
        assert ref.url.startswith(("http://", "https://")) and "#" not in ref.url
        assert "/" not in ref.name and Path(ref.name).suffix in (".pth", ".pt", ".safetensors", ".onnx")


def test_export_and_init_from_take_model_urls(server, files, tmp_path, monkeypatch, train_dir, style_file):
    url = f"{server.url}/m/wave.pth"
    monkeypatch.chdir(tmp_path)  # an export of a URL's model lands in the current folder
    export_cli(url, "--format", "onnx")
    assert (tmp_path / "wave.onnx").is_file()
    values = tiny_values(tmp_path / "models", train_dir, style_file, naming="tuned", max_steps=1, lr=1e-12,
                         model_args={"base_channels": 8, "num_residual": 1}, init_from=url)
    tuned = read_checkpoint(train(train_config_from_dict(values, "t.yml"), progress=False).model_file)["model_state"]
    start = read_checkpoint(local_model_file(url))["model_state"]
    assert max((tuned[k] - start[k]).abs().max().item() for k in start) < 1e-6


def test_a_filesystem_without_locks_still_downloads(server, files, tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)  # as on some network filesystems
    path = model_url_file(f"{server.url}/m/wave.pth", tmp_path, 1 << 30, quiet=True)
    assert path.read_bytes() == files["/m/wave.pth"]
