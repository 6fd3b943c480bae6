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
with status 200 is not kept); the copy is then read like any other model file
(:mod:`.archives`, :mod:`.safetensors_header`, :mod:`.onnx_files`). Every failure is one
:class:`~fast_nst.core.errors.DownloadError` saying what to do.
"""

from __future__ import annotations

import hashlib
import re
import struct
import urllib.parse
from pathlib import Path
from typing import NamedTuple, Optional

from ..errors import DataError, DownloadError
from ..files import safe_component
from .downloads import download_url, is_url, sha256_file
from .text import shown

__all__ = ["MODEL_URL_SUFFIXES", "ModelURL", "model_url_file", "parse_model_url"]

# What fast-nst reads as a model file (io.checkpoint, io.safetensors_file, stylize.onnx_stylizer).
MODEL_URL_SUFFIXES = (".pth", ".pt", ".safetensors", ".onnx")
# The longest URL taken: far above real download links (a few hundred characters), far below
# what would make the messages quoting it unreadable.
_MAX_URL = 2048
_SHA256 = re.compile(r"sha256=([0-9a-f]{64})")
# A download of a model takes at most this long (a slow line's 3 GB; the byte bound is the caller's).
_DEADLINE_S = 6 * 3600


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


def model_url_file(text: str, cache_dir: str | Path, max_bytes: int, quiet: bool = False) -> Path:
    """The local copy of the model at the URL ``text`` (see the module): ``cache_dir``'s, else
    downloaded into it (within ``max_bytes``; progress on stderr unless ``quiet``)."""
    ref = parse_model_url(text)
    dest = Path(cache_dir) / hashlib.sha256(ref.url.encode("utf-8")).hexdigest()[:16] / ref.name
    if not dest.is_file():  # processes that name one URL at once: one downloads, the others wait for it
        try:
            download_url(ref.url, dest, ref.sha256, quiet, max_bytes=max_bytes, deadline_s=_DEADLINE_S,
                         check=_starts_like_a_model)
        except DownloadError as e:
            raise DownloadError(f"{e} Or download the file yourself (a browser, or curl -L -o {ref.name} "
                                f"'{shown(ref.url, 200)}') and give its path.") from None
    elif ref.sha256 is not None and (got := sha256_file(dest)) != ref.sha256:
        raise DownloadError(f"{shown(ref.url, 200)}: the copy in {dest.parent} has SHA-256 {got}, not the "
                            f"{ref.sha256} the URL asks for: delete that folder to download it again.")
    return dest
