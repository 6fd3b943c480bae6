"""PyTorch files from outside (checkpoints, loss-network and encoder weights): the one
``torch.load`` of fast-nst.

:func:`load_torch_file` checks the file before anything is unpickled: a regular file (a FIFO
would block, a device never end) of at most the caller's byte limit, and when it is a zip
archive (``torch.save``'s format) the sizes its members declare, read from the archive's
directory. Then ``torch.load(weights_only=True)``: nothing but tensors and plain containers is
built. Every failure is one :class:`~fast_nst.core.errors.CheckpointError` in fast-nst's words:
PyTorch's own texts advise re-running with ``weights_only=False`` (running the file's code),
which must never reach a user.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..errors import CheckpointError, DataError
from .paths import input_file, read_at_most
from .text import shown

__all__ = ["MAX_COMPRESSION_RATIO", "check_archive_sizes", "check_file_size", "describe_unreadable",
           "load_torch_file"]

# torch.save stores members uncompressed (ratio 1), and recompressed float weights deflate by
# under 2:1; only filler (zeros) inflates 100-fold. Members under 1 MiB cost nothing either way
# (a pickle of text deflates ~10:1).
MAX_COMPRESSION_RATIO = 100
_RATIO_FLOOR_BYTES = 1 << 20
# Bytes sniffed to tell text from binary in a file torch.load could not read.
_SNIFF_BYTES = 4096
# A zip local-file header: how torch.load tells its archive format from the older plain pickle.
_ZIP_MAGIC = b"PK\x03\x04"
# torch.save's format before PyTorch 1.6 opens with this number pickled (PROTO, then LONG1 ... STOP):
# a plain pickle without it is pickle.dump's, which torch.load never read.
_LEGACY_TORCH_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[2:]
# What torch's weights-only unpickler says when a pickle names a function or class it would
# have to import or call ("Unsupported global: GLOBAL builtins.open ...", torch >= 2.5: "Trying
# to load unsupported GLOBAL posix.system whose module posix is blocked", or an object build or
# call it refuses); a damaged file fails with other texts.
_ASKS_FOR_CODE = re.compile(r"unsupported (global|class)|\bGLOBAL\b.*\bblocked\b|can only (create new object|build)"
                            r"|reduce for unrecognized function", re.IGNORECASE)
_GLOBAL_NAME = re.compile(r"\bGLOBAL\s+([\w.]+)", re.IGNORECASE)
# Opcodes parsed to tell a whole protocol 0/1 pickle (a state dict's take a few thousand): bounds
# the time a crafted file of one-byte opcodes costs on the way to its error.
_MAX_SNIFFED_OPS = 100_000
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
# pickletools' words for data that ends inside an opcode's argument, or before STOP
_RAN_OUT = re.compile(r"not enough data|no newline found|but only \d+|exhausted")


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 10**9 else f"{n / 1e6:.1f} MB" if n >= 10**6 else f"{n:,} bytes"


def check_file_size(path: Path, max_bytes: int, what: str) -> None:
    """:class:`CheckpointError` unless ``path`` is a regular file of at most ``max_bytes``
    (``what`` it should be, for the message). Checked before a file is hashed or loaded: a
    sparse 100 GB file would hash for minutes."""
    try:
        input_file(path, what)  # a folder, FIFO, device or socket: refused by its kind
        size = os.stat(path).st_size
    except (DataError, OSError) as e:
        raise CheckpointError(str(e) if isinstance(e, DataError) else f"{path}: cannot read {what}.") from None
    if size > max_bytes:
        raise CheckpointError(f"{path}: refused: the file is {_size(size)}, more than any {what} "
                              f"holds (at most {_size(max_bytes)}). Nothing was read.")


def check_archive_sizes(path: Path, max_bytes: int) -> None:
    """:class:`CheckpointError` when ``path`` is a zip archive whose members declare more than
    ``max_bytes`` in all, or one inflates more than :data:`MAX_COMPRESSION_RATIO`-fold: read
    from the archive's directory, before anything is unpacked. (torch.load inflates each member
    to its declared size before checking it against the tensor it belongs to, so a few-KB file
    declaring gigabytes would be allocated; unpacking stops at each member's declared size, so
    the declared sizes bound the memory.)"""
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, EOFError):
        return  # torch.load fails on it too, and describe_unreadable explains
    total = sum(m.file_size for m in members)
    if total > max_bytes:
        raise CheckpointError(
            f"{path}: refused: the archive declares {_size(total)} of content, more than any "
            f"fast-nst file of its kind holds (at most {_size(max_bytes)}); the file is damaged "
            "or made to exhaust memory. Nothing was unpacked.")
    for m in members:
        if m.file_size > _RATIO_FLOOR_BYTES and m.file_size > MAX_COMPRESSION_RATIO * max(1, m.compress_size):
            raise CheckpointError(
                f"{path}: refused: its member '{shown(m.filename, 60)}' inflates "
                f"{m.file_size // max(1, m.compress_size):,}-fold ({m.compress_size:,} to {m.file_size:,} bytes); "
                "PyTorch writes checkpoints uncompressed and weights do not compress that far, so the "
                "file is damaged or made to exhaust memory. Nothing was unpacked.")


def describe_unreadable(path: Path, error: BaseException) -> str:
    """A short description of a file torch.load could not read, in our words."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as e:
        return f"it cannot be read: {e.strerror or type(e).__name__}"
    if not head:
        return "the file is empty"
    try:
        # is_zipfile itself raises on some damaged end records (a zip64 record claiming several
        # disks: BadZipFile, not the OSError it catches)
        with zipfile.ZipFile(path) as zf:
            is_torch = any(n.endswith("data.pkl") for n in zf.namelist())
        return ("a PyTorch archive that cannot be unpacked: truncated or corrupt" if is_torch
                else "it is a zip archive that is not a PyTorch checkpoint")
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, EOFError):
        pass  # not a zip archive, or a damaged one: told by its first bytes below
    if head.startswith(b"PK"):
        return "a zip archive that is truncated or corrupt: an interrupted copy or download?"
    if b"\0" not in head:
        try:
            # final=False: a multi-byte character cut at the end of the sample is not an error
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError:
            pass
        else:
            if path.suffix.lower() in (".yml", ".yaml"):
                return "it is a YAML text file, such as a config, not a model"
            return "it is a text file"
    if _is_plain_pickle(head):
        if head[2:2 + len(_LEGACY_TORCH_MAGIC)] == _LEGACY_TORCH_MAGIC:
            return "a PyTorch file in the format before PyTorch 1.6 that is truncated or corrupt"
        return "a Python pickle that is cut short"  # a whole one is _plain_pickle's
    if isinstance(error, (EOFError, pickle.UnpicklingError)):
        return "unreadable binary data: not a pickle, or a truncated one"
    return f"unreadable binary data ({type(error).__name__})"


def _is_plain_pickle(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) opens a pickle of protocol 2 to 5, as pickle.dump
    and torch.save's format before PyTorch 1.6 write them."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _plain_protocol(data: Optional[bytes]) -> Optional[int]:
    """The protocol of ``data`` when it is one whole Python pickle that is not torch.save's
    (pickle.dump's: weights-only loading reads only torch.save's formats), None for anything
    else (a zip archive's ``data`` is None). Told by parsing its opcodes (nothing is built):
    protocols 0 and 1 open with no PROTO opcode, and a cut pickle can end in a "." (STOP) that
    is another opcode's argument. Whole: its STOP is the last byte."""
    if not data or data[2:2 + len(_LEGACY_TORCH_MAGIC)] == _LEGACY_TORCH_MAGIC:
        return None
    protocol = 0
    try:
        for seen, (op, arg, pos) in enumerate(pickletools.genops(data), 1):
            protocol = arg if op.name == "PROTO" else max(protocol, op.proto)
            if op.name == "STOP":
                return protocol if pos == len(data) - 1 else None
            if seen >= _MAX_SNIFFED_OPS:  # so far a pickle: told whole by its last byte
                return protocol if data.endswith(b".") else None
    except Exception:  # any parse failure (a bad opcode, a cut argument...): not a whole pickle
        return None
    return None


def _damaged_plain(data: Optional[bytes]) -> Optional[str]:
    """What ``data`` is when it opens as a pickle of protocol 0 or 1 (no PROTO opcode, which
    protocols 2+ open with: :func:`describe_unreadable` tells those) but is not a whole one:
    "a Python pickle of protocol N that is cut short" (or "damaged": an opcode or argument no
    pickle has); None for anything else. Protocol 0's opcodes are printable, so such a file was
    "a text file": the test is that the opcodes parse and that pickle.dump's memo records one (a
    PUT: it stores every container and string), which text does not."""
    if not data or data[0] == 0x80 or data[2:2 + len(_LEGACY_TORCH_MAGIC)] == _LEGACY_TORCH_MAGIC:
        return None
    protocol, memo = 0, False
    try:
        for seen, (op, _, _) in enumerate(pickletools.genops(data), 1):
            protocol, memo = max(protocol, op.proto), memo or op.name in _MEMO_PUTS
            if op.name == "STOP" or seen >= _MAX_SNIFFED_OPS:  # a whole one is _plain_protocol's
                return None
    except Exception as e:  # how the parse failed tells a cut pickle from a damaged one
        cut = _RAN_OUT.search(str(e)) is not None
        return f"a Python pickle of protocol {protocol} that is {'cut short' if cut else 'damaged'}" if memo else None
    return None


def _plain_pickle(path: Path, kind: str, protocol: int, code: str = "") -> CheckpointError:
    """The error for a whole plain pickle of ``protocol``; ``code`` is the refusal's sentence when
    unpickling it would run code."""
    what = ("a plain Python pickle of protocol 0 (text-looking; pickle.dump's format, not torch.save's)"
            if protocol == 0 else "a plain Python pickle (pickle.dump's format, not torch.save's)")
    start = (f"{path}: {code} It is {what}" if code
             else f"{path}: not {kind}: {what}, which fast-nst does not read: it loads torch.save files "
                  "weights-only, so that no code in a file can run")
    return CheckpointError(f"{start}. In the program that made it, save the weights with "
                           "torch.save(model.state_dict(), 'model.pth').")


def _code_refused(message: str) -> str:
    named = _GLOBAL_NAME.search(message)
    what = f" ({named.group(1)[:60]})" if named else ""  # only letters, digits, _ and dots
    return (f"refused: it asks to run code when loaded: its pickle names a Python function or "
            f"class{what} other than tensors and plain containers. fast-nst only loads weights-only "
            "files; nothing from this file was executed.")


def _cut_in_global(data: Optional[bytes], message: str) -> bool:
    """Whether the refused global of ``message`` is only the file's cut end. A pickle names a
    function on text lines (GLOBAL: "module", newline, "name", newline); one cut short inside
    them is read with an empty name ("GLOBAL torch._utils.") or the name's first letters
    ("GLOBAL torch._utils._re" of a file ending in "_reb"), which no allow-list holds."""
    named = _GLOBAL_NAME.search(message)
    if not data or not named:
        return False
    name = named.group(1)
    if name.endswith("."):  # no function has an empty name: the file ended before it
        return True
    if data.endswith((b".", b"\n")):  # a whole pickle ends in STOP; a cut name, unterminated
        return False
    tail, part = data[data.rfind(b"\n") + 1:], name.rsplit(".", 1)[-1].encode()
    return tail.endswith(part) or tail[:-1].endswith(part)  # the unpickler drops a last letter


def _legacy_in_memory(path: Path, max_bytes: int) -> Optional[bytes]:
    """The bytes of a file that is not a zip archive (PyTorch's format before 1.6, or not a
    checkpoint at all: torch.load unpickles it straight from the file), at most ``max_bytes``, in
    memory; None for a zip archive, read from its path. Why: the pickle's string and bytes
    records carry their length, and a read of that length from a file allocates it before
    reading: a 5-byte file declaring a 2 GB string made torch.load allocate 2 GB. From memory a
    read returns what there is (and the file is read as :func:`read_at_most` reads)."""
    with open(path, "rb") as f:
        if f.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC:  # torch.load's own test for its zip format
            return None
        f.seek(0)
        return read_at_most(f, max_bytes)


def load_torch_file(path: str | Path, max_bytes: int, kind: str = "a PyTorch checkpoint",
                    expected: str = "", inspect: Optional[Callable[[Path], None]] = None) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` of a regular file of at most
    ``max_bytes`` (on disk and, for a zip archive, declared inside), on CPU.

    ``kind`` names what the file should be and ``expected`` (a sentence) what to give instead,
    in the message of a file that cannot be read; ``inspect(path)`` runs after the size checks
    and before unpickling (to refuse a known other format with its own message). Every failure
    raises :class:`CheckpointError`; no text of PyTorch's reaches it."""
    path = Path(path)
    check_file_size(path, max_bytes, kind.removeprefix("a ").removeprefix("an "))
    check_archive_sizes(path, max_bytes)
    if inspect is not None:
        inspect(path)
    data = None
    try:
        data = _legacy_in_memory(path, max_bytes)
        with warnings.catch_warnings():
            # torch warns (several lines, advising weights_only=False) before refusing a
            # TorchScript archive; the message below says what the file is instead
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\..*")
            return torch.load(path if data is None else io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # the weights-only unpickler's refusals; zip/stream errors, EOF, bad magic...
        raise _load_error(path, kind, expected, e, data) from None


def _load_error(path: Path, kind: str, expected: str, error: Exception, data: Optional[bytes]) -> CheckpointError:
    """The error for a file torch.load failed on (``data``: its bytes, None for a zip archive)."""
    # torch labels every weights-only failure "Weights only load failed"; only a refused
    # global/class means the pickle asked to build arbitrary objects (a damaged file fails too).
    code = (_code_refused(str(error)) if isinstance(error, pickle.UnpicklingError)
            and _ASKS_FOR_CODE.search(str(error)) and not _cut_in_global(data, str(error)) else "")
    protocol = _plain_protocol(data)
    if protocol is not None:
        return _plain_pickle(path, kind, protocol, code)
    if code:
        return CheckpointError(f"{path}: {code}")
    what = ("a TorchScript archive (torch.jit.save)" if "TorchScript" in str(error)
            else _damaged_plain(data) or describe_unreadable(path, error))
    return CheckpointError(f"{path}: not {kind}, or the file is damaged ({what}).{' ' + expected if expected else ''}")
