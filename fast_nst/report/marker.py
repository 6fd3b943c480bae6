"""The mark that makes a folder a quality report, and the list of files the report wrote in it.

A later report into the same folder replaces the earlier one: it removes the files the earlier
report listed and does not write again (a model left out, a photo gone), so its folders do not
linger beside the new ones. Only those files: anything else in the folder (a user's notes, a file
put inside a model's folder) stays, and a folder is removed only once empty. The list is read as
untrusted text (the folder is the user's): only plain relative names of at most two components
are taken.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..core.errors import DataError
from ..core.files import atomic_write, safe_component
from ..core.untrusted import read_json_file

__all__ = ["REPORT_MARKER", "earlier_files", "mark_report", "remove_stale"]

REPORT_MARKER = ".fast-nst-report"
_NOTE = "A quality report written by fast-nst (python -m fast_nst.evaluate); a later report may replace this folder."


def _plain(name: object) -> bool:
    if not isinstance(name, str):
        return False
    parts = PurePosixPath(name).parts
    return 1 <= len(parts) <= 2 and all(p == safe_component(p) and p != REPORT_MARKER for p in parts)


def earlier_files(folder: Path, most: int) -> list[str]:
    """The files an earlier report in ``folder`` listed, at most ``most`` (the most a report
    writes); [] for none, for a report of a version that kept no list, or for a marker that does
    not parse."""
    marker = folder / REPORT_MARKER
    if not marker.is_file():
        return []
    try:
        data = read_json_file(marker, "the report's list of files", DataError, max_bytes=1 << 20)
    except DataError:
        return []  # the one-line note of an earlier version, or damaged: remove nothing
    files = data.get("files") if isinstance(data, dict) else None
    return [f for f in files[:most] if _plain(f)] if isinstance(files, list) else []


def mark_report(folder: Path, files: Iterable[str]) -> None:
    """Mark ``folder`` a report whose files are ``files`` (paths relative to it)."""
    with atomic_write(folder / REPORT_MARKER) as tmp:
        tmp.write_text(json.dumps({"note": _NOTE, "files": sorted(set(files))}, indent=1) + "\n", encoding="utf-8")


def remove_stale(folder: Path, earlier: Iterable[str], now: Iterable[str]) -> None:
    """Remove the files of ``earlier`` not in ``now`` from ``folder``, then their folders if empty."""
    keep = set(now)
    for name in sorted(set(earlier) - keep):
        path = folder / name
        if (folder / PurePosixPath(name).parts[0]).is_symlink() and path.parent != folder:
            continue  # a linked folder: its files are not the report's to remove
        if path.is_file() or path.is_symlink():
            path.unlink(missing_ok=True)
        if len(PurePosixPath(name).parts) == 2:
            try:
                path.parent.rmdir()
            except OSError:  # not empty (the new report's files, or the user's), or gone already
                pass
