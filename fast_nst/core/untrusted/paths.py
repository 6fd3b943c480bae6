"""Paths a user names as input: what kind of thing is there, checked with one ``stat`` before
anything opens it. A named pipe (FIFO) blocks the first read until someone writes to it, a device
such as ``/dev/zero`` (or a link to one) never ends, a socket cannot be read as a file: each is
refused here with a message that says what the path is, instead of hanging or being reported as
a folder or an empty folder.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO, Optional

from ..errors import DataError
from .text import shown

__all__ = ["file_kind", "file_sha256", "input_file", "input_folder", "input_path", "read_at_most"]

# Bytes per read once a file has grown past the size it had when it was opened.
_CHUNK = 1 << 20


def file_kind(mode: int) -> str:
    """What ``mode`` (an ``st_mode``) is, in words: "a file", "a folder", "a named pipe (FIFO)"..."""
    for test, words in ((stat.S_ISREG, "a file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def _mode(path: Path, flag: str) -> int:
    """``st_mode`` of what ``path`` names (links followed); DataError when nothing is there."""
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        what = "is a broken link" if path.is_symlink() else "does not exist"
        raise DataError(f"{shown(flag)} {shown(str(path))} {what}.") from None
    except OSError as e:
        raise DataError(f"{shown(flag)} {shown(str(path))}: cannot read it ({e.strerror or e}).") from None


def _refuse(path: Path, flag: str, mode: int, want: str) -> DataError:
    link = f" (a link to {shown(os.path.realpath(path))})" if path.is_symlink() else ""
    return DataError(f"{shown(flag)} {shown(str(path))} is {file_kind(mode)}{link}, not {want}; give the path of {want}.")


def input_file(path: str | Path, flag: str = "input", max_bytes: Optional[int] = None,
               fix: str = "") -> Path:
    """``path`` when it names a regular file (through any links) of at most ``max_bytes`` bytes;
    :class:`DataError` naming ``flag`` for anything else: missing, a folder, a FIFO, a device
    (``/dev/zero``), a socket, or too large (``fix`` says which flag or setting raises the
    limit). Nothing is opened."""
    path = Path(path)
    mode = _mode(path, flag)
    if not stat.S_ISREG(mode):
        raise _refuse(path, flag, mode, "a file")
    if max_bytes is not None:
        size = os.stat(path).st_size
        if size > max_bytes:
            raise DataError(f"{shown(flag)} {shown(str(path))} is {size:,} bytes, more than the limit of {max_bytes:,}"
                            + (f"; {fix}" if fix else "") + ".")
    return path


def input_folder(path: str | Path, flag: str = "input") -> Path:
    """``path`` when it names a folder (through any links); :class:`DataError` otherwise."""
    path = Path(path)
    mode = _mode(path, flag)
    if not stat.S_ISDIR(mode):
        raise _refuse(path, flag, mode, "a folder")
    return path


def input_path(path: str | Path, flag: str = "input") -> Path:
    """``path`` when it names a regular file or a folder (an input that may be either: an image
    or a folder of images, a model file or a run folder); :class:`DataError` for a FIFO, a
    device, a socket or nothing, before anything opens it."""
    path = Path(path)
    mode = _mode(path, flag)
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise _refuse(path, flag, mode, "a file or a folder")
    return path


def read_at_most(f: BinaryIO, limit: int) -> bytes:
    """What ``f.read(limit)`` returns (at most ``limit`` bytes of the open file ``f``, fewer at
    its end), without its cost: a buffered ``read(limit)`` allocates ``limit`` bytes before it
    reads, whatever the file holds (a 5-byte file read with a 1 GB limit allocated 1 GB). Read as
    much as the file holds, then, should it have grown since, the rest in chunks."""
    data = f.read(min(os.fstat(f.fileno()).st_size, limit))
    parts, left = [data], limit - len(data)
    chunk = f.read(1) if left > 0 else b""  # the end, unless the file grew: one byte tells
    while chunk:
        parts.append(chunk)
        left -= len(chunk)
        chunk = f.read(min(left, _CHUNK)) if left > 0 else b""
    return data if len(parts) == 1 else b"".join(parts)


def file_sha256(path: str | Path, flag: str, max_bytes: int, fix: str = "") -> str:
    """SHA-256 (hex) of the bytes of ``path``, a regular file of at most ``max_bytes`` bytes (see
    :func:`input_file`; ``fix`` says what to do about a larger one), read in chunks: memory stays
    one chunk whatever the size, and a file that grows past ``max_bytes`` while it is read is
    refused too. :class:`DataError` naming ``flag`` for anything that cannot be read."""
    path = input_file(path, flag, max_bytes, fix)
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(min(_CHUNK, max_bytes + 1 - size)):
                size += len(chunk)
                if size > max_bytes:
                    raise DataError(f"{shown(flag)} {shown(str(path))} grew past the limit of {max_bytes:,} bytes "
                                    "while it was read" + (f"; {fix}" if fix else "") + ".")
                digest.update(chunk)
    except OSError as e:
        raise DataError(f"{shown(flag)} {shown(str(path))}: cannot read it ({e.strerror or e}).") from None
    return digest.hexdigest()
