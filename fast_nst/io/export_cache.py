"""A cache of the ONNX files fast-nst makes when it loads a model for onnxruntime's int8 path or
for OpenVINO (``--precision int8``, ``--runtime openvino``).

Exporting a .pth model to ONNX takes ~10 s on a 2-core CPU and quantizing it a few more: each
``eval.py --precision int8`` run paid that before its first photo, longer than stylizing a photo
takes. The file made for a model is kept in ``$FAST_NST_CACHE`` (default
``$XDG_CACHE_HOME/fast-nst`` or ``~/.cache/fast-nst``), under a key of everything it depends on:
the model file's bytes and name (the name goes into the export's metadata), what was made of it
(float32 export or int8), the versions of fast-nst, PyTorch and onnxruntime, and the source of
the modules that write these files (so an edited exporter never meets a stale file).
Quantizations calibrated on a folder of photos are not cached (the key would have to read every
photo). The folder keeps at most :data:`MAX_CACHE_BYTES`, dropping the least recently used
entries. ``FAST_NST_CACHE=0`` turns the cache off; deleting the folder at any time is safe.

A cached file is read back like any ONNX file a user names (bounded, through
:mod:`fast_nst.core.untrusted`). It is written atomically (two processes making the same entry
each write their own temporary file), and a cache folder that cannot be written only means the
file is made afresh each time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import inspect
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from ..core.fetch import sha256_file
from ..core.files import atomic_write
from ..core.untrusted import shown
from ..core.version import __version__

__all__ = ["cache_folder", "cache_key", "cached_file", "made_file"]

# Room for the exports of about a hundred models (the default network: 7 MB in float32, 2 MB in
# int8); beyond it the least recently used entries go.
MAX_CACHE_BYTES = 512 << 20
# What an entry of each kind is, in the line printed while it is made.
_WHAT = {"fp32": "ONNX export", "int8": "int8 ONNX file"}
# The modules whose code decides what an export or a quantization holds.
_WRITERS = ("fast_nst.io.export", "fast_nst.io.quantize", "fast_nst.io.int8_graph", "fast_nst.nets.exportable",
            "fast_nst.nets.fast_cpu", "fast_nst.nets.johnson", "fast_nst.nets.layers")


def cache_folder() -> Optional[Path]:
    """Where made ONNX files are kept; None when ``FAST_NST_CACHE`` is "0" (off)."""
    chosen = os.environ.get("FAST_NST_CACHE")
    if chosen == "0":
        return None
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fast-nst"


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _writers_digest() -> str:
    h = hashlib.sha256()
    for name in _WRITERS:
        h.update(Path(inspect.getfile(importlib.import_module(name))).read_bytes())
    return h.hexdigest()


def cache_key(source: Path, kind: str) -> str:
    """The entry's name for ``kind`` ("fp32", "int8") made of the model file ``source``."""
    h = hashlib.sha256()
    for part in (kind, source.name, __version__, torch.__version__, _package_version("onnxruntime"),
                 _package_version("onnx"), _writers_digest(), sha256_file(source)):
        h.update(part.encode("utf-8") + b"\0")
    return h.hexdigest()[:32]


def cached_file(source: Path, kind: str, make: Callable[[Path], object],
                max_bytes: Optional[int] = None) -> Optional[Path]:
    """The cached ``kind`` file of the model file ``source``, made by ``make(path)`` (which writes
    an ONNX file to ``path``) when missing. None when the cache is off or its folder cannot be
    written, and for a ``source`` that is not a regular file or is larger than ``max_bytes``
    (not read for a key: ``make``, which checks it, then reports it): the caller then makes the
    file where it would have without a cache."""
    folder = cache_folder()
    if folder is None or not source.is_file() or (max_bytes is not None and source.stat().st_size > max_bytes):
        return None
    entry = folder / "onnx" / f"{cache_key(source, kind)}.{kind}.onnx"
    if entry.is_file():
        with contextlib.suppress(OSError):  # its age says when it was last used (see _evict)
            os.utime(entry)
        return entry
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(entry.parent, os.W_OK):
        return None
    with atomic_write(entry, keep_suffix=True) as partial:
        make(partial)
    _evict(entry.parent, keep=entry)
    return entry


def _evict(folder: Path, keep: Path, max_bytes: int = MAX_CACHE_BYTES, spare_s: float = 600.0) -> None:
    """Delete the least recently used entries of ``folder`` until it holds at most ``max_bytes``,
    sparing ``keep`` and whatever was used in the last ``spare_s`` seconds (another process may
    be about to read it)."""
    entries = []
    for path in folder.glob("*.onnx"):  # a crashed writer's hidden partial file too, once old
        with contextlib.suppress(OSError):  # gone already: another process evicted it
            st = path.stat()
            entries.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    now = time.time()
    for mtime, size, path in sorted(entries):
        if total <= max_bytes:
            break
        if path != keep and now - mtime > spare_s:
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size


def made_file(source: Path, kind: str, folder: Path, make: Callable[[Path], object], cache: bool = True,
              max_bytes: Optional[int] = None) -> Path:
    """``make``'s ``kind`` file of the model file ``source``: from the cache (made there when
    missing) when ``cache`` and the cache is on, else made into ``folder``."""
    def announced(out: Path) -> None:  # ~10 s of silence otherwise, before the first photo
        where = f"kept in {out.parent} for the next load" if out.parent.parent == cache_folder() else "not cached"
        print(f"Making the {_WHAT[kind]} of {shown(source.name)} (about 10 s; {where})", file=sys.stderr, flush=True)
        make(out)

    entry = cached_file(source, kind, announced, max_bytes) if cache else None
    if entry is None:
        entry = folder / f"{source.stem}.{kind}.onnx"
        announced(entry)
    return entry
