"""Writing files safely: every file fast-nst writes goes through :func:`atomic_write`, so a crash,
Ctrl-C or full disk leaves either the old file or the complete new one, never half of one.

Also the small path helpers the commands share: whether two paths are one file, which folders a
write would create (to remove them again when a check fails), and durable folder syncs.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

from .errors import FastNSTError

__all__ = ["atomic_write", "check_output_file", "check_output_folder", "fsync_dir", "missing_dirs", "probe_writable",
           "process_umask", "plain_name", "remove_dirs", "safe_component",
           "same_file", "temp_name"]

# Longest file-name component made from untrusted text (a model's style name): well under the
# 255 bytes most filesystems allow, leaving room for the stem and suffix around it.
MAX_COMPONENT = 64


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


def process_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``/proc/self/status``):
    setting it to read it back (the only portable way) would, for that moment, give files that
    other threads create the wrong mode."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _chmod_as_new(path: Path) -> None:
    """Give ``path`` the mode a new file gets (best effort: some filesystems refuse chmod, and
    the file is worth keeping with the mode it has)."""
    try:
        os.chmod(path, 0o666 & ~process_umask())
    except OSError:
        pass


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_write(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for the caller to write; when the block ends
    normally the file is fsynced, renamed over ``path`` and the folder fsynced. If the block
    raises (a failed check of the written file too), the temporary file is removed and
    ``path`` is untouched. The parent folder must exist. The file gets the mode of any new file
    (0666 less the umask: 0644 under umask 0022), whatever mode the writer gave its temporary
    file: safetensors' writer makes it 0600, which would keep a model meant for sharing from
    other users.

    >>> with atomic_write("out.pth") as tmp:
    ...     torch.save(obj, tmp)
    """
    path = Path(path)
    tmp = temp_name(path, keep_suffix)
    try:
        yield tmp
        _fsync_file(tmp)
        _chmod_as_new(tmp)
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


def safe_component(text: object, fallback: str = "model", limit: int = MAX_COMPONENT) -> str:
    """``text`` (read from a model file or a config: untrusted) reduced to one safe file-name
    component: letters and digits (any script), ``-``, ``_`` and inner dots; no separators, no ``..``, no leading
    dot, at most ``limit`` characters; ``fallback`` when nothing is left."""
    name = re.sub(r"[^\w.-]+", "_", str(text))[:limit].strip("._-")
    name = re.sub(r"\.{2,}", ".", name)
    return name or fallback


def plain_name(name: str) -> str:
    """``name`` (an input's file name: outside text) with each control, format or line-separator
    character (ESC, CR, LF, NUL, right-to-left overrides) and each undecodable byte replaced by
    ``_``, every other character kept: an output named after an input then holds nothing a
    terminal, a file manager or a shell listing would act on."""
    return "".join("_" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") else ch for ch in name)


def distinct_stems(names: Sequence[str]) -> list[str]:
    """One output stem per input file name (or relative path) of ``names``, each name without its
    extension, distinct even where the file system ignores case: names sharing a stem (x.jpg,
    x.png, x.JPG) keep their extension in it (x_jpg, x_png), numbered where that still clashes
    (x_jpg_2), and never taking another input's own stem (an input named x_jpg.jpg keeps x_jpg).
    Otherwise results written side by side would overwrite each other."""
    paths = [PurePosixPath(n) for n in names]
    stems = [str(p.with_suffix("")) for p in paths]
    count: dict[str, int] = {}
    for stem in stems:
        count[stem.lower()] = count.get(stem.lower(), 0) + 1
    taken = {stem.lower() for stem in stems if count[stem.lower()] == 1}
    out = []
    for path, stem in zip(paths, stems):
        if count[stem.lower()] == 1:
            out.append(stem)
            continue
        base = name = f"{stem}_{path.suffix[1:].lower()}"
        k = 1
        while name.lower() in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name.lower())
        out.append(name)
    return out


def check_output_file(path: Path, flag: str, inputs: Sequence[Path] = (), what: str = "input") -> None:
    """:class:`FastNSTError` unless ``path`` can receive a new regular file: it is not a folder,
    a device, a pipe or a socket, not one of ``inputs``, and no existing parent is a file.
    ``flag`` names the option in the message (``--output``), ``what`` the inputs ("input image")."""
    if path.exists() or path.is_symlink():
        mode = os.stat(path).st_mode if path.exists() else 0
        if stat.S_ISDIR(mode):
            raise FastNSTError(f"{flag} {path} is a folder; give a file name.")
        if path.exists() and not stat.S_ISREG(mode):
            raise FastNSTError(f"{flag} {path} is not a regular file (a device, pipe or socket); "
                               "refusing to replace it. Give the path of a file.")
    for source in inputs:
        if same_file(Path(source), path):
            raise FastNSTError(f"{flag} {path} is the {what} {source}; refusing to overwrite it.")
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise FastNSTError(f"Cannot write {flag} {path}: {blocker} is a file, not a folder.")


def check_output_folder(path: Path, flag: str) -> None:
    """:class:`FastNSTError` unless ``path`` is a folder or can be made one: not a file, a
    device, a pipe or a socket, and no existing parent a file. Checked before any long work (a
    download), which would otherwise end in an error about a path inside ``path``, or write
    beside it first. ``flag`` names the option in the message (``--dest``)."""
    if path.exists():
        mode = os.stat(path).st_mode
        if stat.S_ISREG(mode):
            raise FastNSTError(f"{flag} {path} is a file; give the path of a folder.")
        if not stat.S_ISDIR(mode):
            raise FastNSTError(f"{flag} {path} is not a folder (a device, pipe or socket); give the path "
                               "of a folder.")
    elif path.is_symlink():
        raise FastNSTError(f"{flag} {path} is a broken link; give the path of a folder.")
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise FastNSTError(f"Cannot write {flag} {path}: {blocker} is a file, not a folder.")


def probe_writable(folder: Path, label: str, hint: str) -> None:
    """:class:`FastNSTError` ("Cannot write to <label> <folder>: <reason>. <hint>") unless files
    can be created in ``folder`` (made if missing), found before any work; folders made to find
    out are removed again, so a failed check leaves nothing behind."""
    made = missing_dirs(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write_test{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise FastNSTError(f"Cannot write to {label} {folder}: {e.strerror or e}. {hint}") from None
    finally:
        remove_dirs(made)
