"""Model files named by an http(s) URL, ``https://HOST/PATH/NAME.pth[#sha256=HEX]``, wherever a
model path is taken (as torch.hub's ``load_state_dict_from_url`` does for weights).

:func:`model_url_file` downloads the file once into a cache folder (``<cache>/<hash of the
URL>/<NAME>``: two models published as ``.../model.pth`` do not share a file) and uses the copy
from then on without the network. ``#sha256=HEX`` (64 hex digits) makes the file's SHA-256 a
condition of its use, on download and on every later use of the copy. The URL is user input and
the file outside data: the name must end in a suffix fast-nst reads (``.pth``, ``.pt``,
``.safetensors``, ``.onnx``) before anything is fetched; the download is bounded in bytes and
time (:mod:`.downloads`: http(s) only, redirects too) and resumed after a broken connection; it
lands in the cache only when its first bytes are those of such a file (an HTML error page served
with status 200 is not kept) and it is whole (:func:`cut_short`: a body sent without a length
ends where the connection closes, so a dropped connection looks like the end of the file); the
copy is then read like any other model file (:mod:`.archives`, :mod:`.safetensors_header`,
:mod:`.onnx_files`). A cached copy that is not whole (one kept by an older fast-nst, or damaged
on disk) is downloaded again. Every failure is one
:class:`~fast_nst.core.errors.DownloadError` saying what to do.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import urllib.parse
import zipfile
from pathlib import Path
from typing import IO, Callable, NamedTuple, Optional

from ..errors import DataError, DownloadError, FastNSTError
from ..files import safe_component
from .downloads import download_url, is_url, sha256_file
from .safetensors_header import read_header
from .text import shown

__all__ = ["MODEL_URL_SUFFIXES", "ModelURL", "cut_short", "model_url_file", "parse_model_url"]

# What fast-nst reads as a model file (io.checkpoint, io.safetensors_file, stylize.onnx_stylizer).
MODEL_URL_SUFFIXES = (".pth", ".pt", ".safetensors", ".onnx")
# The longest URL taken: far above real download links (a few hundred characters), far below
# what would make the messages quoting it unreadable.
_MAX_URL = 2048
_SHA256 = re.compile(r"sha256=([0-9a-f]{64})")
# A download of a model takes at most this long (a slow line's 3 GB; the byte bound is the caller's).
_DEADLINE_S = 6 * 3600
# ONNX's ModelProto fields every model has: graph and opset_import.
_ONNX_NEEDED = {7: "graph", 8: "opset_import"}
# Top-level fields of an ONNX file walked at most: a model has tens; past this the load decides.
_MAX_ONNX_FIELDS = 1 << 16


class ModelURL(NamedTuple):
    """A checked model URL: what is fetched, the file's name and the optional checksum."""

    url: str  # without the #fragment
    name: str  # the file name, made safe, with its suffix
    sha256: Optional[str]


def parse_model_url(text: str) -> ModelURL:
    """The parts of ``http(s)://HOST/PATH/NAME[?QUERY][#sha256=HEX]``; DownloadError naming the
    form for anything else (another scheme, no host, a name fast-nst does not read)."""
    url, _, fragment = text.partition("#")
    try:
        parts = urllib.parse.urlsplit(url) if len(text) <= _MAX_URL and is_url(url) else None
        name = Path(urllib.parse.unquote(parts.path)).name if parts and parts.hostname else ""
    except ValueError:  # "https://[": no host to fetch from
        name = ""
    suffix = Path(name).suffix.lower()
    sha = _SHA256.fullmatch(fragment)
    if not name or suffix not in MODEL_URL_SUFFIXES or (fragment and sha is None):
        raise DownloadError(f"{shown(text, 120)}: not a model URL; write http(s)://HOST/PATH/NAME with NAME "
                            f"ending in {', '.join(MODEL_URL_SUFFIXES)}, optionally with #sha256=HEX (64 "
                            "lower-case hex digits), e.g. https://example.com/models/wave.pth#sha256=...")
    return ModelURL(url, safe_component(Path(name).stem, fallback="model") + suffix, sha.group(1) if sha else None)


def _starts_like_a_model(path: Path) -> None:
    """DataError unless the file begins as a model file of its suffix does: a zip (PyTorch's
    format, TorchScript) or a pickle (PyTorch's legacy format), a safetensors header, an ONNX
    protobuf (ir_version, field 1, comes first)."""
    with open(path, "rb") as f:
        head = f.read(9)
    suffix = Path(path.name.removesuffix(".part")).suffix.lower().lstrip(".")
    torch_file = head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"
    ok = {"pth": torch_file, "pt": torch_file,
          "safetensors": len(head) == 9 and 2 <= struct.unpack("<Q", head[:8])[0] and head[8:9] == b"{",
          "onnx": head[:1] == b"\x08"}[suffix]
    if not ok:
        raise DataError(f"not a .{suffix} model file")


def _varint(f: IO[bytes]) -> Optional[int]:
    """The protobuf varint at ``f``'s position; None where the file ends inside it (or it runs
    past 10 bytes, the longest a 64-bit value takes)."""
    value = 0
    for shift in range(0, 70, 7):
        byte = f.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
    return None


def _onnx_cut_short(f: IO[bytes], size: int) -> str:
    """Why the ONNX protobuf in ``f`` (``size`` bytes) is not whole: its top-level fields must end
    exactly at the end of the file, with a graph and opset_import among them. Only field keys
    and lengths are read, skipping over the contents (the graph holds the weights)."""
    seen: set[int] = set()
    for _ in range(_MAX_ONNX_FIELDS):
        at = f.tell()
        if at >= size:
            break
        key = _varint(f)
        field, wire = (key >> 3, key & 7) if key is not None else (0, 0)
        if key is None or field == 0 or wire not in (0, 1, 2, 5):
            return f"byte {at:,} does not start an ONNX field: the file ends there or is damaged"
        if wire == 0:  # a number: its varint is the whole field
            length: Optional[int] = 0 if _varint(f) is not None else None
        elif wire == 2:  # bytes or a message (the graph): a varint length, then that many bytes
            length = _varint(f)
        else:
            length = 8 if wire == 1 else 4
        if length is None:
            return f"the file ends inside field {field} at byte {at:,}"
        end = f.seek(length, os.SEEK_CUR)
        if end > size:
            return f"field {field} at byte {at:,} runs {end - size:,} bytes past the end of the file"
        seen.add(field)
    else:
        return ""  # more fields than any model has: the load tells what is wrong with it
    missing = [name for number, name in _ONNX_NEEDED.items() if number not in seen]
    return f"it has no {' and no '.join(missing)}" if missing else ""


def cut_short(path: Path) -> str:
    """Why the model file at ``path`` (named with its suffix, ``.part`` aside) is not whole; ""
    when it is, or when its format cannot tell (PyTorch's format before 1.6, a pickle stream,
    is only found damaged when loaded). A zip archive (``torch.save``, TorchScript) must end in
    its directory of members; a safetensors header's tensors must fill the rest of the file
    (:func:`~.safetensors_header.read_header`); ONNX: see :func:`_onnx_cut_short`."""
    suffix = Path(path.name.removesuffix(".part")).suffix.lower()
    size = os.stat(path).st_size
    with open(path, "rb") as f:
        if suffix == ".onnx":
            return _onnx_cut_short(f, size)
        zipped = f.read(4) == b"PK\x03\x04"
    if suffix == ".safetensors":
        try:
            read_header(path, size, DataError)
        except FastNSTError as e:
            return str(e).removeprefix(f"{path}: ")
        return ""
    if zipped:
        try:
            with zipfile.ZipFile(path):
                pass
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError):
            return "a zip archive whose end, its directory of members, is missing"
    return ""


def _stale(path: Path) -> str:
    """Why a cached copy must be downloaded again ("" to use it): see :func:`cut_short`."""
    try:
        _starts_like_a_model(path)
        why = cut_short(path)
    except DataError as e:
        why = str(e)
    except OSError as e:
        why = f"it cannot be read: {e.strerror or e}"
    return f"is incomplete or damaged ({why})" if why else ""


def _whole_model(url: str) -> Callable[[Path], None]:
    """The check of a finished download of ``url``: DataError when it is not a model file (an
    error page), DownloadError when it is one cut short."""
    def check(path: Path) -> None:
        _starts_like_a_model(path)
        why = cut_short(path)
        if why:
            raise DownloadError(f"Download of {shown(url)} is incomplete or damaged ({why}): the connection "
                                "probably closed before the end of the file. Nothing was kept; run the "
                                "command again.")
    return check


def model_url_file(text: str, cache_dir: str | Path, max_bytes: int, quiet: bool = False) -> Path:
    """The local copy of the model at the URL ``text`` (see the module): ``cache_dir``'s, else
    downloaded into it (within ``max_bytes``; progress on stderr unless ``quiet``). A copy
    there that is not whole (:func:`cut_short`) is downloaded again, saying so on stderr."""
    ref = parse_model_url(text)
    dest = Path(cache_dir) / hashlib.sha256(ref.url.encode("utf-8")).hexdigest()[:16] / ref.name
    # Processes that name one URL at once: one downloads, the others wait for it (and a copy
    # found stale here is asked again under download_url's lock).
    if not dest.is_file() or _stale(dest):
        try:
            download_url(ref.url, dest, ref.sha256, quiet, max_bytes=max_bytes, deadline_s=_DEADLINE_S,
                         check=_whole_model(ref.url), stale=_stale)
        except DownloadError as e:
            raise DownloadError(f"{e} Or download the file yourself (a browser, or curl -L -o {ref.name} "
                                f"'{shown(ref.url, 200)}') and give its path.") from None
    elif ref.sha256 is not None and (got := sha256_file(dest)) != ref.sha256:
        raise DownloadError(f"{shown(ref.url, 200)}: the copy in {dest.parent} has SHA-256 {got}, not the "
                            f"{ref.sha256} the URL asks for: delete that folder to download it again.")
    return dest
