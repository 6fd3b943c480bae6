"""Model files named by reference wherever a model path is taken (eval.py --model_file,
load_stylizer, the export command, reports, the app, train.py --init_from):
:func:`local_model_file` gives the local file of a Hugging Face Hub reference,
``hf://OWNER/REPO/FILE[@REVISION][#sha256=HEX]``, fetched once into the Hub's cache
(:mod:`fast_nst.core.untrusted.hub`; ``HF_HUB_OFFLINE=1`` uses the cache without a network), or of
an http(s) URL, ``https://HOST/PATH/NAME.pth[#sha256=HEX]``, fetched once into fast-nst's cache
folder (:mod:`fast_nst.core.untrusted.model_urls`; ``$FAST_NST_CACHE/models``).

A URL's copy is kept only when whole, and one found cut short is downloaded again; damage only
a load finds (a pickle-format .pth cut short) is told by :func:`cached_copy_errors`: the error
names the cached file and says to delete it, so that the next use downloads it again."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from ..core.errors import CheckpointError
from ..core.untrusted import shown
from ..core.untrusted.downloads import is_url
from ..core.untrusted.hub import hub_file, is_hub_ref, parse_hub_ref
from ..core.untrusted.model_urls import model_url_file, parse_model_url
from ..core.untrusted.safetensors_header import require_safetensors
from .checkpoint import MAX_ARCHIVE_BYTES
from .export_cache import cache_folder
from .safetensors_file import SAFETENSORS_SUFFIX

__all__ = ["cached_copy_errors", "is_hub_ref", "is_remote_model", "local_model_file", "remote_model_name"]

_session_folder: Optional[Path] = None
# The cached copies of model URLs this process was given, and their URLs: a load that fails on
# one says which file to delete.
_url_copies: dict[Path, str] = {}


def is_remote_model(path: object) -> bool:
    """Whether ``path`` (what a user gave as a model) names a model to fetch: hf:// or http(s)."""
    return is_hub_ref(path) or is_url(path)


def remote_model_name(path: str) -> str:
    """The file name a remote model reference ends in (``wave.safetensors``), for naming outputs."""
    return Path(parse_hub_ref(path).filename).name if is_hub_ref(path) else parse_model_url(path).name


def _url_cache() -> Path:
    """Where URL models are kept: ``<cache folder>/models``; with the cache off
    (``FAST_NST_CACHE=0``), a temporary folder removed when the process ends."""
    global _session_folder
    folder = cache_folder()
    if folder is not None:
        return folder / "models"
    if _session_folder is None:
        _session_folder = Path(tempfile.mkdtemp(prefix="fast-nst-models-"))
        atexit.register(shutil.rmtree, _session_folder, True)
    return _session_folder


def local_model_file(path: str | Path, cache_dir: Optional[str | Path] = None) -> Path:
    """``path`` as a Path, or for an ``hf://`` reference or an http(s) URL (a str: a Path has
    lost one of its slashes) the cached file it names, downloaded into ``cache_dir`` (default:
    the Hub library's cache, or fast-nst's for a URL) when missing. DownloadError when it cannot
    be had (no network, no such repository or file, a checksum that differs), naming what to do.
    A .safetensors file needs the safetensors package to be read: without it, that is said
    before the download, not after."""
    if is_remote_model(path) and remote_model_name(str(path)).lower().endswith(SAFETENSORS_SUFFIX):
        require_safetensors(shown(str(path).split("#")[0], 160))
    if is_hub_ref(path):
        return hub_file(str(path), MAX_ARCHIVE_BYTES, cache_dir)
    if is_url(path):
        local = model_url_file(str(path), cache_dir or _url_cache(), MAX_ARCHIVE_BYTES)
        _url_copies[local] = parse_model_url(str(path)).url
        return local
    return Path(path)


@contextmanager
def cached_copy_errors(path: str | Path) -> Iterator[None]:
    """Load the model file ``path`` in this block: when it is the cached copy of a model URL
    (from :func:`local_model_file`), a :class:`CheckpointError` about it (one naming it: a damaged
    or foreign file, not an output that cannot be written) also says it is that URL's copy and
    to delete it; the next use of the URL then downloads it again.
    Without this, a damaged copy failed every later run, its message naming only a file deep in
    a cache folder."""
    try:
        yield
    except CheckpointError as e:
        url = _url_copies.get(Path(path))
        if url is None or str(path) not in str(e):
            raise
        raise CheckpointError(f"{str(e).rstrip('.')}. {path} is the cached download of {shown(url, 200)}: if that "
                              f"download is damaged, delete {path} and the next run downloads it again.") from None
