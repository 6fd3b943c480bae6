"""Model files named by a Hugging Face Hub reference, ``hf://OWNER/REPO/FILE[@REVISION][#sha256=HEX]``,
wherever a model path is taken (eval.py --model_file, load_stylizer, the export command,
reports): :func:`local_model_file` gives the file in the Hub's local cache, fetched once
(:mod:`fast_nst.core.untrusted.hub`; ``HF_HUB_OFFLINE=1`` uses the cache without a network)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.untrusted.hub import hub_file, is_hub_ref
from .checkpoint import MAX_ARCHIVE_BYTES

__all__ = ["is_hub_ref", "local_model_file"]


def local_model_file(path: str | Path, cache_dir: Optional[str | Path] = None) -> Path:
    """``path`` as a Path, or for an ``hf://`` reference (a str: a Path has lost one of its
    slashes) the cached file it names, downloaded into ``cache_dir`` (default: the Hub library's
    cache) when missing. DownloadError when it cannot be had (no network, no such repository or
    file, a checksum that differs), naming what to do."""
    if is_hub_ref(path):
        return hub_file(str(path), MAX_ARCHIVE_BYTES, cache_dir)
    return Path(path)
