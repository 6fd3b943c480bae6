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
from fast_nst.commands.export import main as export_main
from fast_nst.core.config import TrainConfig
from fast_nst.core.errors import CheckpointError, DownloadError
from fast_nst.core.untrusted import model_urls
from fast_nst.core.untrusted.model_urls import cut_short, model_url_file, parse_model_url
from fast_nst.io.checkpoint import atomic_torch_save, make_checkpoint, read_checkpoint
from fast_nst.io.hub import local_model_file
from fast_nst.io.safetensors_file import write_safetensors
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
    ckpt = make_checkpoint(net, TrainConfig(naming="wave", style_image="s.jpg"), step=2)
    atomic_torch_save(ckpt, root / "wave.pth")
    export_cli(root / "wave.pth", "--format", "onnx")
    write_safetensors(ckpt, root / "wave.safetensors")
    return {"/m/wave.pth": (root / "wave.pth").read_bytes(), "/m/wave.onnx": (root / "wave.onnx").read_bytes(),
            "/m/wave.safetensors": (root / "wave.safetensors").read_bytes(), "/m/login.pth": ERROR_PAGE,
            # PyTorch's format before 1.6 (a pickle stream), cut short: only its load can tell
            "/m/legacy.pth": b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9"}


# How a path's first part changes what the server does with the file named by the rest:
# "slow": sent in 0.3 s (downloads overlap); "cut": half of it without a Content-Length, then the
# connection closes (a drop looks like the end); "once-cut": cut on the first request only;
# "chunked-cut": half of it in chunks, without the last (empty) chunk; "again": sent as it is.
MODES = ("slow", "cut", "once-cut", "chunked-cut", "again")


@pytest.fixture(scope="module")
def server(files):
    """A local HTTP server of ``files`` (see MODES); ``server.hits`` counts the requests per path."""
    hits: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits[self.path] = hits.get(self.path, 0) + 1
            mode, rest = self.path.split("/", 2)[1:] if self.path.count("/") > 1 else ("", "")
            body = files.get("/" + rest if mode in MODES else self.path)
            cut = mode == "cut" or mode == "once-cut" and hits[self.path] == 1
            if mode == "chunked-cut" and body is not None:
                self.protocol_version = "HTTP/1.1"
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                half = body[:len(body) // 2]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(half), half))
                self.close_connection = True
                return
            self.send_response(200 if body is not None else 404)
            if cut and body is not None:  # HTTP/1.0 without a length: the body ends where the connection does
                body = body[:len(body) // 2]
            else:
                self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            try:
                for i in range(0, len(body or b""), 1 << 15):
                    self.wfile.write(body[i:i + (1 << 15)])
                    self.wfile.flush()
                    time.sleep(0.06 if mode == "slow" else 0)
            except (BrokenPipeError, ConnectionResetError):  # a client that refused the body: as it should
                pass

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


@pytest.mark.parametrize("route", ["/cut/m/wave.pth", "/cut/m/wave.onnx", "/cut/m/wave.safetensors",
                                   "/chunked-cut/m/wave.pth"])
def test_a_download_cut_short_never_lands_in_the_cache(server, tmp_path, route):
    """A body sent without a Content-Length ends where the connection closes: one that dropped
    halfway used to be cached as the model, and every later run failed on it."""
    with pytest.raises(DownloadError) as e:
        model_url_file(f"{server.url}{route}", tmp_path, 1 << 30, quiet=True)
    message = str(e.value)
    assert "\n" not in message and "Or download the file yourself" in message
    kept = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    if route.startswith("/chunked-cut/"):  # a broken chunked body is a broken connection: resumable
        assert "failed: the server closed the connection before the end of the file. The " in message, message
        assert " KB downloaded so far are kept in " in message and kept == ["wave.pth.part"]
    else:
        assert f"Download of {server.url}{route} is incomplete or damaged (" in message, message
        assert "Nothing was kept; run the command again." in message and kept == []


def test_the_run_after_a_cut_download_gets_the_whole_model(server, files, tmp_path):
    url = f"{server.url}/once-cut/m/wave.pth"
    with pytest.raises(DownloadError, match="a zip archive whose end, its directory of members, is missing"):
        model_url_file(url, tmp_path, 1 << 30, quiet=True)
    assert model_url_file(url, tmp_path, 1 << 30, quiet=True).read_bytes() == files["/m/wave.pth"]
    assert server.hits["/once-cut/m/wave.pth"] == 2


def test_a_cut_short_copy_in_the_cache_is_downloaded_again(server, files, tmp_path, capsys):
    """What older versions kept of a cut download is fetched again, saying so; a whole copy is
    used as it is, without the network."""
    url = f"{server.url}/again/m/wave.onnx"
    path = model_url_file(url, tmp_path, 1 << 30, quiet=True)
    path.write_bytes(files["/m/wave.onnx"][:5000])
    capsys.readouterr()
    assert model_url_file(url, tmp_path, 1 << 30) == path and path.read_bytes() == files["/m/wave.onnx"]
    assert f"{path} is incomplete or damaged (field 7 at byte " in capsys.readouterr().err
    assert model_url_file(url, tmp_path, 1 << 30, quiet=True) == path
    assert server.hits["/again/m/wave.onnx"] == 2


def test_a_cached_copy_that_fails_to_load_names_itself_and_says_to_delete_it(server, tmp_path, capsys):
    """Damage only a load finds (a pickle-format .pth cut short): the error used to name a file
    deep in the cache and nothing more, and every run failed the same way."""
    url = f"{server.url}/again/m/legacy.pth"
    photo = make_photo(tmp_path / "photo.jpg")
    code, err = in_process(capsys, eval_main, "--model_file", url, "--image_file", str(photo),
                           "--output_file", str(tmp_path / "out.jpg"))
    path = local_model_file(url)
    assert_clean_in_process(code, err, f"error: {path}: not a PyTorch checkpoint, or the file is damaged",
                            f". {path} is the cached download of {url}: if that download is damaged, delete {path} "
                            "and the next run downloads it again.")
    assert err.endswith("again.\n") and err.split("\n")[-2].startswith("error: ")  # one line, after the progress bar
    with pytest.raises(CheckpointError, match=f"delete {path} and the next run downloads it again"):
        load_stylizer(url, device="cpu")
    code, err = in_process(capsys, export_main, url, "--format", "onnx", "--output", tmp_path / "x.onnx")
    assert_clean_in_process(code, err, f"{path} is the cached download of {url}: if that download is damaged, delete")
    path.unlink()
    hits = server.hits["/again/m/legacy.pth"]
    with pytest.raises(CheckpointError):
        load_stylizer(url, device="cpu")
    assert server.hits["/again/m/legacy.pth"] == hits + 1


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cuts")


@settings(max_examples=examples(150), deadline=None)
@given(data=st.data())
def test_a_model_file_cut_anywhere_is_never_taken_as_whole(files, scratch, data):
    """Every prefix of a .pth (zip), .safetensors or .onnx file is refused as a cached copy; an
    ONNX prefix let through ends at a field boundary after its graph and opset: a whole model."""
    name = data.draw(st.sampled_from(["/m/wave.pth", "/m/wave.onnx", "/m/wave.safetensors"]))
    body = files[name]
    cut = data.draw(st.one_of(st.integers(0, len(body) - 1), st.integers(len(body) - 64, len(body) - 1)))
    path = scratch / Path(name).name
    path.write_bytes(body[:cut])
    why = model_urls._stale(path)
    if name.endswith(".onnx") and not why:
        import onnx

        model = onnx.load_model_from_string(body[:cut])
        assert len(model.graph.node) > 0 and len(model.opset_import) > 0
    else:
        assert why.startswith("is incomplete or damaged (") and "\n" not in why


@settings(max_examples=examples(200), deadline=None)
@given(head=st.sampled_from([b"", b"PK\x03\x04", b"\x08\x07", b"\x10\x00\x00\x00\x00\x00\x00\x00{"]),
       body=st.binary(max_size=300), suffix=st.sampled_from([".pth", ".pt", ".onnx", ".safetensors"]))
def test_any_bytes_are_whole_or_one_reason(scratch, head, body, suffix):
    path = scratch / f"any{suffix}.part"
    path.write_bytes(head + body)
    why = cut_short(path)
    assert isinstance(why, str) and "\n" not in why and len(why) < 400
