"""Writing files safely: every file fast-nst writes goes through :func:`atomic_write`, so a crash,
Ctrl-C or full disk leaves either the old file or the complete new one, never half of one.

Also the small path helpers the commands share: whether two paths are one file, which folders a
write would create (to remove them again when a check fails), and durable folder syncs.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_write", "fsync_dir", "missing_dirs", "remove_dirs", "same_file", "temp_name"]


def temp_name(path: Path, keep_suffix: bool = False) -> Path:
    """The hidden temporary sibling ``path`` is written to first: ``.name.tmp<pid>`` (or
    ``.stem.tmp<pid>.ext`` with ``keep_suffix``, for writers that pick a format by extension)."""
    if keep_suffix:
        return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some filesystems cannot open folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_write(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for the caller to write; when the block ends
    normally the file is fsynced, renamed over ``path`` and the folder fsynced. If the block
    raises (a failed check of the written file too), the temporary file is removed and
    ``path`` is untouched. The parent folder must exist.

    >>> with atomic_write("out.pth") as tmp:
    ...     torch.save(obj, tmp)
    """
    path = Path(path)
    tmp = temp_name(path, keep_suffix)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # e.g. the parent "folder" is a file: there is nothing to clean up
            pass
        raise
    fsync_dir(path.parent)


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (an output that would overwrite its input)."""
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def missing_dirs(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_dirs(made: list[Path]) -> None:
    """Remove the folders :func:`missing_dirs` listed (deepest first) again, while they are empty."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:  # something else is in it now: leave it and its parents
            return
