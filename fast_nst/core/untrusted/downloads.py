"""Downloads: the loss networks' weights, COCO, published models and style images all come
through :func:`download_url`, bounded before and while it reads:

- only ``http``/``https`` URLs, also after redirects (a redirect to ``file://`` or ``ftp://``
  is refused);
- at most ``max_bytes``: a declared ``Content-Length`` over it is refused before the body is
  read, a body that grows past it is cut off;
- an overall ``deadline_s`` (a server that sends a byte every 40 s cannot hold a command);
- a body shorter than its ``Content-Length``, or a chunked body cut before its last chunk, is
  a failure, never a finished file (a body with neither ends where the connection closes: a
  cut is then found only by ``check`` or the checksum);
- the finished body is checked (a checksum, or ``check``: "is an image" for style images)
  *before* it is renamed into place, so a failed or wrong download never lands in the cache.

A file already at the destination is used only when it matches the checksum (when there is
one); otherwise it is downloaded again, and the old file moved aside, not deleted.

Downloads go to ``<dest>.part`` first; a large download (``resume=True``) keeps a ``.part`` with
data after a broken connection and resumes it (HTTP Range) when run again; a ``.part`` whose
content failed a check is always removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Optional

from tqdm import tqdm

from ..errors import DataError, DownloadError
from ..files import check_output_file, fsync_dir, missing_dirs, remove_dirs, safe_component
from .images import open_image
from .text import shown

__all__ = ["DEFAULT_DEADLINE_S", "DEFAULT_MAX_BYTES", "MAX_STYLE_BYTES", "STYLE_CACHE", "STYLE_DEADLINE_S",
           "amount", "download_url", "fetch_style_image", "finish_by_hand", "is_url", "sha256_file", "style_cache_path",
           "style_name"]

STYLE_CACHE = "data/styles"
SCHEMES = ("http", "https")
_CHUNK = 1 << 16
# Longest wait for a connection or for the next bytes of a body (urllib's socket timeout).
_TIMEOUT_S = 60
#: Largest download by default: COCO train2014 (13.5 GB) is the largest file fast-nst fetches.
DEFAULT_MAX_BYTES = 32 << 30
#: Overall time for one download by default: COCO at 1 MB/s takes under 4 hours; a stopped
#: download resumes from its .part.
DEFAULT_DEADLINE_S = 12 * 3600
#: Largest style image download: a high-resolution scan of a painting is 5-50 MB as JPEG.
MAX_STYLE_BYTES = 64 << 20
#: Overall time for a style image download: 64 MB at 1 MB/s.
STYLE_DEADLINE_S = 120


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """urllib follows redirects to ftp:// too; a download follows only http(s) ones."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if urllib.parse.urlparse(newurl).scheme.lower() not in SCHEMES:
            raise urllib.error.URLError(f"redirected to {shown(newurl)}, which is not an http(s) URL")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def _open(url: str, start: int, timeout: float = _TIMEOUT_S) -> Any:
    request = urllib.request.Request(url, headers={"User-Agent": "fast-nst"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return _OPENER.open(request, timeout=timeout)


def is_url(text: object) -> bool:
    """Whether ``text`` is meant as an http(s) URL (``SCHEME://...``). Not parsed here: a URL
    that does not parse ("https://[") is refused where it is used, in one error."""
    if not isinstance(text, str):  # a Path: a local file
        return False
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def _declared_length(response: Any, url: str, start: int, max_bytes: int) -> Optional[int]:
    """The total size the response declares (None: not declared); DownloadError over ``max_bytes``."""
    length = response.headers.get("Content-Length")
    if length is None:
        return None
    try:
        total = int(length) + start
    except ValueError:
        raise DownloadError(f"Download of {shown(url)} failed: the server sent a malformed "
                            f"Content-Length {shown(length)}.") from None
    if total > max_bytes:
        raise DownloadError(f"Download of {shown(url)} refused: it is {total:,} bytes, more than the "
                            f"limit of {max_bytes:,} bytes for this file.")
    return total


def _copy_body(response: Any, out: Any, bar: Any, received: int, total: Optional[int], url: str,
               max_bytes: int, deadline: float) -> int:
    """Write the body to ``out`` within ``max_bytes`` and ``deadline`` (``time.monotonic()``);
    the bytes now in the file. A real HTTP response is read with ``read1`` (what one socket
    read returns) so a slow body cannot block past the deadline in one call."""
    real = isinstance(response, http.client.HTTPResponse)
    read = response.read1 if real else response.read
    # The socket's timeout shrinks with the time left, so no single wait outlasts the deadline.
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None) if real else None
    while True:
        if sock is not None:
            sock.settimeout(min(_TIMEOUT_S, max(0.01, deadline - time.monotonic())))
        try:
            chunk = read(_CHUNK)
        except TimeoutError:
            if time.monotonic() < deadline:
                raise  # the server went quiet for _TIMEOUT_S: "timed out"
            chunk = None  # a stall that ran into the deadline
        if time.monotonic() > deadline:
            raise TimeoutError(f"it did not finish within the time limit ({received:,} bytes arrived)")
        if not chunk:
            break
        received += len(chunk)
        if received > max_bytes:
            raise DownloadError(f"Download of {shown(url)} refused: it is more than the limit of "
                                f"{max_bytes:,} bytes for this file.")
        out.write(chunk)
        bar.update(len(chunk))
    if total is not None and received < total:
        raise ConnectionError(f"the connection closed after {received:,} of {total:,} bytes")
    return received


def _fetch_part(url: str, part: Path, quiet: bool, max_bytes: int, deadline: float, name: str) -> None:
    """Download ``url`` into ``part``, appending to what it holds when the server resumes."""
    start = part.stat().st_size if part.exists() else 0
    with _open(url, start, min(_TIMEOUT_S, max(0.01, deadline - time.monotonic()))) as response:
        if start and getattr(response, "status", 200) != 206:  # server ignored Range: start over
            start = 0
        final = getattr(response, "geturl", lambda: url)()
        if urllib.parse.urlparse(final).scheme.lower() not in SCHEMES:
            raise urllib.error.URLError(f"redirected to {shown(final)}, which is not an http(s) URL")
        total = _declared_length(response, url, start, max_bytes)
        with open(part, "ab" if start else "wb") as out, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
            desc=name, disable=quiet, file=sys.stderr,
        ) as bar:
            _copy_body(response, out, bar, start, total, url, max_bytes, deadline)
            out.flush()
            os.fsync(out.fileno())


def _verify(part: Path, url: str, sha256_prefix: Optional[str], check: Optional[Callable[[Path], None]]) -> None:
    """DownloadError unless the finished ``part`` has the checksum and passes ``check``."""
    if sha256_prefix is not None:
        digest = sha256_file(part)
        if not digest.startswith(sha256_prefix):
            raise DownloadError(f"Download of {shown(url)} is corrupt (sha256 {digest[:8]}..., expected "
                                f"{sha256_prefix[:12]}...); run the command again.")
    if check is not None:
        try:
            check(part)
        except DataError as e:
            with open(part, "rb") as f:
                head = f.read(40).decode("latin-1")
            raise DownloadError(f"Download of {shown(url)} is not what was asked for ({e}); it starts with "
                                f"{shown(head, 60)!r} (an error page?). Nothing was kept.") from None


def download_url(url: str, dest: str | Path, sha256_prefix: Optional[str] = None, quiet: bool = False, *,
                 max_bytes: int = DEFAULT_MAX_BYTES, deadline_s: float = DEFAULT_DEADLINE_S,
                 check: Optional[Callable[[Path], None]] = None, resume: bool = True,
                 stale: Optional[Callable[[Path], str]] = None) -> Path:
    """Download ``url`` (http or https) to ``dest`` with a progress bar, within ``max_bytes``
    and ``deadline_s`` seconds; the file is renamed into place only once complete, matching
    ``sha256_prefix`` and passing ``check(path)`` (which raises DataError to refuse it).
    ``resume``: keep the data of a broken connection in ``<dest>.part`` and resume from it
    next time (else a failure leaves nothing). Raises :class:`DownloadError` naming the URL
    and destination when anything goes wrong; ``dest`` is untouched then. A file already at
    ``dest`` is returned as it is when there is no ``sha256_prefix``, else only when it matches
    it; one that does not is downloaded again and moved aside to ``NAME.mismatch`` once its
    replacement passed the checks. ``stale(dest)``: why a file already at ``dest`` (a cache's
    copy, nothing of the user's) must be fetched again ("" to keep it); such a file is
    overwritten, not moved aside. A ``dest`` that is a folder, a device or a pipe is a
    FastNSTError before any network. One process at a time downloads to ``dest``
    (:func:`_one_at_a_time`); one that waited returns the file another finished meanwhile."""
    if not is_url(url):
        raise DownloadError(f"{shown(url)} is not an http(s) URL; only http:// and https:// downloads are made.")
    dest = Path(dest)
    # A folder, a device or a pipe would be replaced by the file (os.replace): refused first.
    check_output_file(dest, "The download's destination")
    part = dest.with_name(dest.name + ".part")
    created = missing_dirs(dest.parent)
    wrong = ""  # why a file already at dest is not the one asked for
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _one_at_a_time(dest):
            if dest.is_file():
                # Asked under the lock: another process may have replaced a stale copy meanwhile.
                wrong = _existing_mismatch(dest, sha256_prefix, quiet) or (stale(dest) if stale else "")
                if not wrong:
                    return dest
                if stale is not None and not quiet:
                    print(f"{dest} {wrong}: downloading it again.", file=sys.stderr)
            if not resume:
                part.unlink(missing_ok=True)
            _fetch_part(url, part, quiet, max_bytes, time.monotonic() + deadline_s, dest.name)
            _verify(part, url, sha256_prefix, check)
            if wrong and stale is None:
                _move_aside(dest, wrong)
            os.replace(part, dest)
    except DownloadError as e:  # refused for its size or content: nothing of it is worth keeping
        _clean_up(part, created, keep=False)
        if wrong:
            raise DownloadError(f"{dest} {wrong} and could not be replaced (it is left as it is): {e}") from None
        raise
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
        _clean_up(part, created, keep=resume)
        kept = (f" The {amount(part.stat().st_size)} downloaded so far are kept in {part}; "
                "running the command again resumes from there." if part.exists() else "")
        reason = _reason(e)
        before = f"{dest} {wrong} and could not be replaced (it is left as it is): " if wrong else ""
        raise DownloadError(f"{before}Download of {shown(url)} to {dest} failed: {shown(str(reason))}.{kept}") from None
    fsync_dir(dest.parent)
    return dest


def amount(n: int) -> str:
    """``n`` bytes in a unit that shows them: "512 bytes", "12.3 KB", "4.5 MB", "1.25 GB" (1 KB =
    1024 bytes, as the progress bar counts); a few KB are not "0.0 MB"."""
    if n < 1024:
        return f"{n:,} byte{'' if n == 1 else 's'}"
    for unit, scale in (("KB", 1 << 10), ("MB", 1 << 20)):
        if n < scale << 10:
            return f"{n / scale:.1f} {unit}"
    return f"{n / (1 << 30):.2f} GB"


def _reason(e: BaseException) -> str:
    """Why a download failed, in a few words: urllib's reason ("Name or service not known"),
    the HTTP status line ("HTTP Error 404: Not Found"), or what http.client's exception means."""
    if isinstance(e, http.client.IncompleteRead):
        # A chunked body whose chunks stop before the last, empty one; http.client's own text
        # is "IncompleteRead(0 bytes read)".
        return "the server closed the connection before the end of the file"
    return str(e if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", None) or e)


def _existing_mismatch(dest: Path, sha256_prefix: Optional[str], quiet: bool) -> str:
    """Why the file already at ``dest`` is not the one asked for ("" when it is, or when there
    is no checksum to tell). A file there may be a failed ``curl -o``, an HTML error page or
    another network's weights: trusting it by its name alone made ``download`` report success
    for a file that training then refused, and advise the same download again."""
    if sha256_prefix is None:
        return ""
    if not quiet:  # hashing 528 MB takes a few seconds: say why nothing seems to happen
        print(f"Checking {dest}", file=sys.stderr)
    digest = sha256_file(dest)
    if digest.startswith(sha256_prefix):
        return ""
    return (f"does not match the published checksum (sha256 {digest[:8]}..., expected "
            f"{sha256_prefix[:12]}...)")


def _move_aside(dest: Path, wrong: str) -> Path:
    """Rename the mismatching file at ``dest`` to a free ``NAME.mismatch[.N]`` beside it, once
    its replacement has been downloaded and checked. Moved, not deleted: the user may have put
    their own file there on purpose (``--dest``), and nothing they made is removed unasked."""
    aside = dest.with_name(dest.name + ".mismatch")
    n = 1
    while aside.exists():
        aside = dest.with_name(f"{dest.name}.mismatch.{n}")
        n += 1
    os.replace(dest, aside)
    print(f"Moved {dest} to {aside}: it {wrong}. Delete {aside} if you do not need it.", file=sys.stderr)
    return aside


@contextlib.contextmanager
def _one_at_a_time(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on downloading to ``dest``; other processes wait for it. The
    processes of one torchrun job that all need the same file (a style image's URL, a model's)
    then fetch it once, where all at once they would write one partial file together (torn
    bytes, or one deleting the file another writes). ``flock`` on ``.NAME.lock`` beside
    ``dest``: released with its process, killed or not, and removed after use. Where there is
    no flock (Windows, a filesystem without locks), nothing is locked, as before."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    lock = dest.with_name(f".{dest.name}.lock")
    while True:
        f = open(lock, "w")
        try:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_EX)
        except OSError:  # ENOLCK: some network filesystems
            break
        if fcntl is None or _still_at(f, lock):
            break
        # The holder before us removed the lock file after use: ours locks a file nobody else
        # will open, and a newcomer would lock a fresh one beside us. Lock the one at the path.
        f.close()
    with f:
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)


def _still_at(f: IO[Any], path: Path) -> bool:
    """Whether the open file ``f`` is still the file at ``path`` (not removed or replaced)."""
    try:
        return os.path.samestat(os.fstat(f.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _clean_up(part: Path, created: list[Path], keep: bool) -> None:
    """After a failed download: drop the ``.part`` (with ``keep``, only an empty one: one with
    data is resumed next time) and the folders made for it if empty."""
    try:
        if part.exists() and (not keep or part.stat().st_size == 0):
            part.unlink()
    except OSError:
        pass
    remove_dirs(created)


def finish_by_hand(error: DownloadError, url: str, zip_path: Path, then: str) -> DownloadError:
    """``error`` plus how to finish without network here: the commands reuse a zip at ``zip_path``."""
    return DownloadError(  # one line, like every error: the URL is in ``error`` already
        f"{error} To finish by hand, download it on a machine with internet (a browser, or "
        f"curl -L -o {zip_path.name} '{url}'), put the file at {zip_path} and run this command "
        f"again: it then uses that zip instead of downloading, and {then}."
    )


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _url_path(url: str) -> str:
    """The path part of ``url``; DownloadError for one that does not parse ("https://[x/a.jpg")."""
    try:
        return urllib.parse.urlparse(url).path
    except ValueError as e:
        raise DownloadError(f"{shown(url, 120)} is not a URL that can be fetched ({e}); give a whole "
                            "http(s) URL or a local path.") from None


def style_cache_path(url: str, cache_dir: str | Path = STYLE_CACHE) -> Path:
    """Where :func:`fetch_style_image` keeps the download of ``url``: its file name made safe,
    plus the URL's hash (two paintings published as .../style.jpg must not share a file)."""
    name = Path(_url_path(url)).name or "style.jpg"
    tag = hashlib.sha1(url.encode("utf-8")).hexdigest()[:8]
    suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp") else ".jpg"
    return Path(cache_dir) / f"{safe_component(Path(name).stem, fallback='style')}-{tag}{suffix}"


def style_name(source: str) -> str:
    """The name a style is known by in a multi-style network: its file's stem, made safe
    (``conf/../candy.jpg`` and ``https://host/x/candy.jpg`` are both ``candy``)."""
    path = _url_path(source) if is_url(source) else source
    return safe_component(Path(path).stem, fallback="style").replace(".", "_")


def _is_image(path: Path) -> None:
    open_image(path)


def fetch_style_image(source: str, cache_dir: str | Path = STYLE_CACHE,
                      fix: str = "set style_image to its local path", *,
                      max_bytes: int = MAX_STYLE_BYTES, deadline_s: float = STYLE_DEADLINE_S) -> Path:
    """Local path of a style image; an http(s) URL is downloaded once into ``cache_dir``, kept
    only when it is a whole image (within ``max_bytes`` and ``deadline_s``; ``fix``: what the
    error tells the user to do with a copy they download themselves)."""
    if not is_url(source):
        return Path(source)
    dest = style_cache_path(source, cache_dir)
    if not dest.exists():
        try:
            download_url(source, dest, max_bytes=max_bytes, deadline_s=deadline_s, check=_is_image, resume=False)
        except DownloadError as e:
            raise DownloadError(f"{str(e).rstrip('.')}. Download the style image yourself and {fix}.") from None
    return dest
