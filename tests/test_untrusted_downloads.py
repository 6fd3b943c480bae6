"""The download boundary (fast_nst.core.untrusted.downloads): http(s) only (also after redirects),
bounded in bytes and time, and nothing lands in the cache unless it is complete and checked.
A small server on 127.0.0.1 plays the hostile cases; Hypothesis plays random responses."""

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fast_nst.core.errors import DownloadError
from fast_nst.core.untrusted import downloads

from conftest import examples

PNG = io.BytesIO()
Image.new("RGB", (24, 20), (10, 120, 200)).save(PNG, format="PNG")
PNG = PNG.getvalue()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _head(self, status=200, length=None, kind="image/png", **extra):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()

    def do_GET(self):
        route = self.path.split("?")[0]
        try:
            if route == "/style.png":
                self._head(length=len(PNG))
                self.wfile.write(PNG)
            elif route == "/huge.png":  # declares 300 MB: refused before the body
                self._head(length=300 << 20)
                self.wfile.write(b"\0" * 1000)
            elif route == "/short.png":  # declares more than it sends
                self._head(length=len(PNG) + 500)
                self.wfile.write(PNG)
            elif route == "/endless.png":  # no length, more than the limit
                self._head()
                for _ in range(200):
                    self.wfile.write(b"\0" * 1024)
            elif route == "/slow.png":  # a byte at a time, never done
                self._head(length=10_000)
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            elif route == "/stall.png":  # the headers, then silence
                self._head(length=10_000)
                self.wfile.flush()
                time.sleep(2)
            elif route == "/error.png":  # an error page with status 200
                body = b"<!DOCTYPE html><html><body>Not found</body></html>"
                self._head(length=len(body), kind="text/html")
                self.wfile.write(body)
            elif route.startswith("/to-"):
                self._head(302, length=0, Location={"/to-file": "file:///etc/passwd",
                                                    "/to-ftp": "ftp://127.0.0.1/style.png",
                                                    "/to-http": "/style.png"}[route])
            else:
                self._head(404, length=0)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up: as it should
            pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def fetch(server, cache, route, **kwargs):
    return downloads.fetch_style_image(f"{server}{route}", cache, **kwargs)


def assert_nothing_kept(cache: Path):
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_style_image_is_fetched_once_and_kept(server, tmp_path):
    path = fetch(server, tmp_path / "c", "/style.png")
    assert path.read_bytes() == PNG and path.parent == tmp_path / "c"
    assert fetch(server, tmp_path / "c", "/style.png") == path
    assert fetch(server, tmp_path / "d", "/to-http").read_bytes() == PNG  # http redirects are followed


@pytest.mark.parametrize("route, message", [
    ("/huge.png", "it is 314,572,800 bytes, more than the limit of 67,108,864 bytes"),
    ("/short.png", f"the connection closed after {len(PNG)} of {len(PNG) + 500} bytes"),
    ("/error.png", "not what was asked for"),
    ("/to-file", "'file:///etc/passwd' is not allowed"),  # urllib refuses this one itself
    ("/to-ftp", "redirected to ftp://127.0.0.1/style.png, which is not an http(s) URL"),
    ("/missing.png", "HTTP Error 404"),
])
def test_a_failed_style_fetch_caches_nothing(server, tmp_path, route, message):
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as e:
        fetch(server, cache, route)
    assert message in str(e.value) and "Download the style image yourself" in str(e.value)
    assert_nothing_kept(cache)


def test_size_and_deadline_are_parameters(server, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="more than the limit of 50,000 bytes"):
        fetch(server, cache, "/endless.png", max_bytes=50_000)
    with pytest.raises(DownloadError, match="did not finish within the time limit"):
        fetch(server, cache, "/slow.png", deadline_s=0.5)
    with pytest.raises(DownloadError, match="did not finish within the time limit"):
        fetch(server, cache, "/stall.png", deadline_s=0.5)
    assert_nothing_kept(cache)


def test_only_http_urls_are_downloaded(tmp_path):
    for url in ("file:///etc/passwd", "ftp://host/x.png", "data:,x"):
        with pytest.raises(DownloadError, match="not an http"):
            downloads.download_url(url, tmp_path / "x")
    # A URL that does not parse (urllib raised ValueError "Invalid IPv6 URL" from the style image's name).
    for url in ("https://[x/style.png", "http://[::1/x.png"):
        with pytest.raises(DownloadError, match="is not a URL that can be fetched \\(Invalid IPv6 URL\\)"):
            downloads.fetch_style_image(url, tmp_path / "styles")
        with pytest.raises(DownloadError, match="is not a URL that can be fetched"):
            downloads.style_name(url)
    assert list(tmp_path.iterdir()) == []


class FakeResponse(io.BytesIO):
    def __init__(self, body: bytes, length):
        super().__init__(body)
        self.status = 200
        self.headers = {} if length is None else {"Content-Length": str(length)}


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), declared=st.one_of(st.none(), st.integers(0, 10**12)),
       limit=st.integers(0, 400), resume=st.booleans())
def test_any_response_ends_in_the_whole_file_or_one_error(tmp_path, monkeypatch, body, declared, limit, resume):
    monkeypatch.setattr(downloads, "_open", lambda url, start, timeout=None: FakeResponse(body, declared))
    dest = tmp_path / "f.bin"
    dest.unlink(missing_ok=True)
    part = tmp_path / "f.bin.part"
    part.unlink(missing_ok=True)
    try:
        downloads.download_url("https://example.invalid/f.bin", dest, quiet=True, max_bytes=limit, resume=resume)
    except DownloadError as e:
        assert not dest.exists() and "\n" not in str(e)
        # only the start of a body that was merely cut short is kept, to resume from
        assert not part.exists() or (resume and declared is not None and len(body) < declared <= limit)
        return
    assert dest.read_bytes() == body and len(body) <= limit and (declared is None or declared <= len(body))


def test_amounts_are_shown_in_a_unit_that_shows_them():
    """A broken download's message said "The 0.0 MB downloaded so far" for a few KB."""
    sizes = [0, 1, 1000, 1024, 72_499, (5 << 20) + 1, 3 << 30]
    assert [downloads.amount(n) for n in sizes] == ["0 bytes", "1 byte", "1,000 bytes", "1.0 KB", "70.8 KB",
                                                    "5.0 MB", "3.00 GB"]
