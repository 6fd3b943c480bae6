"""Uploads to the web app: files a browser sent, kept in one work folder. Each upload is bounded
by the server (``--max_upload_mb``); :func:`bound_folder` bounds them all together, so a user (or
a script) uploading again and again cannot fill the disk for the hour until they expire.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

__all__ = ["bound_folder", "folder_bytes"]


def _files(folder: Path) -> list[tuple[float, int, Path]]:
    """(mtime, size, path) of each regular file under ``folder`` (links are not followed)."""
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            try:
                st = path.lstat()
            except OSError:  # removed meanwhile (another request, Gradio's own clean-up)
                continue
            found.append((st.st_mtime, st.st_size, path))
    return found


def folder_bytes(folder: Path) -> int:
    """Bytes in the regular files under ``folder``."""
    return sum(size for _, size, _ in _files(folder))


def bound_folder(folder: Path, max_bytes: int, keep: Iterable[Path] = ()) -> list[Path]:
    """Remove the oldest files under ``folder`` until it holds at most ``max_bytes``, never one
    of ``keep`` (the files the request at hand uses); emptied folders go too. Returns what was
    removed (oldest first)."""
    files = sorted(_files(folder))
    total = sum(size for _, size, _ in files)
    kept = {Path(p).resolve() for p in keep if p}
    removed = []
    for _, size, path in files:
        if total <= max_bytes:
            break
        if path.resolve() in kept:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        removed.append(path)
        parent = path.parent
        while parent != folder and parent.is_relative_to(folder):
            try:
                parent.rmdir()  # only while empty
            except OSError:
                break
            parent = parent.parent
    return removed
