"""Downloading files over HTTP(S): resumable, verified, and with a message that says what to do
when there is no network. The loss networks' weights, COCO, style images and published models
all come through :func:`download_url`.

Downloads go to ``<dest>.part`` first and resume from it (HTTP Range) when run again; the file
is renamed into place only when complete and, where a checksum is known, verified.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from .errors import DownloadError
from .files import fsync_dir, missing_dirs, remove_dirs, safe_component

__all__ = ["download_url", "fetch_style_image", "finish_by_hand", "is_url", "sha256_file", "style_cache_path", "style_name",
           "STYLE_CACHE"]

STYLE_CACHE = "data/styles"
_CHUNK = 1 << 20
_TIMEOUT_S = 60


def _open(url: str, start: int):
    request = urllib.request.Request(url, headers={"User-Agent": "fast-nst"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(request, timeout=_TIMEOUT_S)


def download_url(url: str, dest: str | Path, sha256_prefix: Optional[str] = None,
                 quiet: bool = False) -> Path:
    """Download ``url`` to ``dest`` with a progress bar, resuming a previous ``.part`` file.

    Raises :class:`DownloadError` naming the URL and destination when anything goes wrong.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    created = missing_dirs(dest.parent)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        start = part.stat().st_size if part.exists() else 0
        with _open(url, start) as response:
            status = getattr(response, "status", 200)
            if start and status != 206:  # server ignored Range: start over
                start = 0
            length = response.headers.get("Content-Length")
            total = int(length) + start if length is not None else None
            with open(part, "ab" if start else "wb") as out, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, disable=quiet, file=sys.stderr,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
    except (urllib.error.URLError, OSError, ValueError) as e:
        _clean_up(part, created)
        kept = (f" The {part.stat().st_size / 2**20:.1f} MB downloaded so far are kept in {part}; "
                "running the command again resumes from there." if part.exists() else "")
        raise DownloadError(f"Download of {url} to {dest} failed: {getattr(e, 'reason', e)}.{kept}") from None
    if sha256_prefix is not None:
        digest = sha256_file(part)
        if not digest.startswith(sha256_prefix):
            part.unlink(missing_ok=True)
            raise DownloadError(f"Download of {url} is corrupt (sha256 {digest[:8]}..., expected "
                                f"{sha256_prefix}...); run the command again.")
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return dest


def _clean_up(part: Path, created: list[Path]) -> None:
    """After a failed download: drop an empty ``.part`` and the folders made for it if empty.

    A ``.part`` with data is kept: running the command again resumes from it.
    """
    try:
        if part.exists() and part.stat().st_size == 0:
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
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme in ("http", "https")


def style_cache_path(url: str, cache_dir: str | Path = STYLE_CACHE) -> Path:
    """Where :func:`fetch_style_image` keeps the download of ``url``: its file name made safe,
    plus the URL's hash (two paintings published as .../style.jpg must not share a file)."""
    name = Path(urllib.parse.urlparse(url).path).name or "style.jpg"
    tag = hashlib.sha1(url.encode("utf-8")).hexdigest()[:8]
    suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp") else ".jpg"
    return Path(cache_dir) / f"{safe_component(Path(name).stem, fallback='style')}-{tag}{suffix}"


def style_name(source: str) -> str:
    """The name a style is known by in a multi-style network: its file's stem, made safe
    (``conf/../candy.jpg`` and ``https://host/x/candy.jpg`` are both ``candy``)."""
    path = urllib.parse.urlparse(source).path if is_url(source) else source
    return safe_component(Path(path).stem, fallback="style").replace(".", "_")


def fetch_style_image(source: str, cache_dir: str | Path = STYLE_CACHE,
                      fix: str = "set style_image to its local path") -> Path:
    """Local path of a style image; an http(s) URL is downloaded once into ``cache_dir``
    (``fix``: what the error tells the user to do with a copy they download themselves)."""
    if not is_url(source):
        return Path(source)
    dest = style_cache_path(source, cache_dir)
    if not dest.exists():
        try:
            download_url(source, dest)
        except DownloadError as e:
            raise DownloadError(f"{str(e).rstrip('.')}. Download the style image yourself and {fix}.") from None
    return dest
