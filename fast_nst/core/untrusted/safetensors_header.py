"""``.safetensors`` files from outside (models from the Hugging Face Hub or anyone's disk).

The format (https://huggingface.co/docs/safetensors) is an 8-byte little-endian header length
N, N bytes of JSON, then the tensors' bytes::

    {"__metadata__": {"key": "text", ...},
     "conv1.weight": {"dtype": "F32", "shape": [32, 3, 9, 9], "data_offsets": [BEGIN, END]}, ...}

It runs no code, but its header is outside data. :func:`read_header` checks it before any
tensor byte is read: the length against :data:`MAX_HEADER_BYTES` and the file's size before the
header is read, the JSON's bytes and depth (:func:`~.structured.load_json`), each entry's dtype
(:data:`DTYPES`: the format's dtypes that torch has), shape and offsets (inside the file, exactly
the bytes the shape needs, no two tensors overlapping, no bytes unaccounted for).
:func:`load_tensors` then compares the tensors with what the caller's network expects (names,
dtypes, shapes: :func:`~.weights.check_state`, the check of a ``.pth``'s weights too) and only
then reads them, with the ``safetensors`` package. Every failure is one
:class:`~fast_nst.core.errors.CheckpointError` (or the caller's class) with a printable message.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import CheckpointError, FastNSTError
from .archives import check_file_size
from .structured import load_json
from .text import shown
from .weights import Spec, check_state

try:  # an optional dependency: only reading a .safetensors needs it
    from safetensors import SafetensorError, safe_open
except ImportError:  # pragma: no cover - depends on the installation
    SafetensorError, safe_open = OSError, None

__all__ = ["DTYPES", "INSTALL_HINT", "MAX_HEADER_BYTES", "MAX_HEADER_DEPTH", "SafetensorsHeader", "TensorEntry",
           "check_expected", "load_tensors", "parse_header", "read_header", "require_safetensors"]

#: What to run when the ``safetensors`` package is missing.
INSTALL_HINT = 'pip install safetensors (or pip install -e ".[hub]")'
# A fast-nst model has tens to a few hundred tensors (~100 bytes of header each) and a few kB of
# metadata (its training config); 1 MiB is far above that. The safetensors package itself
# allows 100 MB, which a hostile file would make us read and parse.
MAX_HEADER_BYTES = 1 << 20
# {"name": {"shape": [...]}}: the format's header is 3 levels deep; metadata values are strings.
MAX_HEADER_DEPTH = 3
# A weight tensor of a convolutional network has at most 4 dimensions (5 leaves room).
_MAX_DIMS = 5
_METADATA = "__metadata__"
#: safetensors dtype -> torch dtype: every type of the format that torch has. A header naming
#: one is well formed; whether a network can hold it is :func:`~.weights.check_state`'s to say, in
#: the words it uses for a .pth (complex64 weights read the same in both).
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "C64": torch.complex64, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64,
}


@dataclass(frozen=True)
class TensorEntry:
    """One tensor the header declares: its dtype (a :data:`DTYPES` key), shape, and the byte
    range [begin, end) it occupies after the header."""
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A checked header: the metadata (text -> text) and the tensors by name."""
    metadata: dict[str, str]
    tensors: dict[str, TensorEntry]


def require_safetensors(path: object) -> None:
    """:class:`CheckpointError` naming the install command when ``safetensors`` is missing."""
    if safe_open is None:
        raise CheckpointError(f"{path}: reading and writing .safetensors files needs the safetensors "
                              f"package: {INSTALL_HINT}.")


def read_header(path: str | Path, max_file_bytes: int, error: type[FastNSTError] = CheckpointError) -> SafetensorsHeader:
    """The checked header of the ``.safetensors`` file ``path`` of at most ``max_file_bytes``
    (a regular file: no FIFO or device); ``error`` for anything wrong (see the module)."""
    path = Path(path)
    check_file_size(path, max_file_bytes, "safetensors model file")
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as f:
            head = f.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            prefix = head + (f.read(length) if 0 <= length <= min(MAX_HEADER_BYTES, size - 8) else b"")
    except OSError as e:
        raise error(f"{path}: cannot read the model file: {e.strerror or type(e).__name__}.") from None
    return parse_header(prefix, size, str(path), error)


def parse_header(prefix: bytes, file_size: int, where: str,
                 error: type[FastNSTError] = CheckpointError) -> SafetensorsHeader:
    """The checked header in ``prefix`` (the file's first bytes: the length and at least the
    header) of a file of ``file_size`` bytes; ``error`` (naming ``where``) otherwise."""
    if len(prefix) < 8:
        raise error(f"{where}: not a safetensors file: {len(prefix)} bytes, shorter than the 8-byte header length.")
    length = struct.unpack("<Q", prefix[:8])[0]
    # A zip archive (torch.save) or a bare pickle read as a length is always over the bound.
    if length > MAX_HEADER_BYTES and prefix.startswith((b"PK\x03\x04", b"\x80")):
        raise error(f"{where}: a PyTorch .pth file under a .safetensors name; rename it to .pth, or export it "
                    "with: python -m fast_nst.export MODEL.pth --format safetensors")
    if length > MAX_HEADER_BYTES:
        raise error(f"{where}: refused: its header declares {length:,} bytes, more than the {MAX_HEADER_BYTES:,} "
                    "a model's header needs; the file is damaged or not a safetensors file. Nothing was read.")
    if 8 + length > min(file_size, len(prefix)):
        raise error(f"{where}: truncated or not a safetensors file: its header declares {length:,} bytes "
                    f"but the file has {max(0, file_size - 8):,} after the length.")
    raw = load_json(prefix[8:8 + length], f"{where}: safetensors header", error, MAX_HEADER_BYTES, MAX_HEADER_DEPTH)
    if not isinstance(raw, dict):
        raise error(f"{where}: the safetensors header is not a JSON object; the file is damaged.")
    metadata = _metadata(raw.pop(_METADATA, {}), where, error)
    tensors = {name: _entry(name, value, where, error) for name, value in raw.items()}
    _check_layout(tensors, file_size - 8 - length, where, error)
    return SafetensorsHeader(metadata, tensors)


def _metadata(value: Any, where: str, error: type[FastNSTError]) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise error(f"{where}: the header's {_METADATA} is not a mapping of text to text; the file is damaged.")
    return value


def _entry(name: str, value: Any, where: str, error: type[FastNSTError]) -> TensorEntry:
    """One header entry, checked on its own: a known dtype, a shape, offsets of its size."""
    label = f"{where}: tensor '{shown(name, 80)}'"
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data_offsets"}:
        raise error(f"{label}: expected dtype, shape and data_offsets; the file is damaged.")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise error(f"{label} has the dtype {shown(str(dtype), 20)}, not one of the format's "
                    f"({', '.join(DTYPES)}); the file is damaged.")
    if (not isinstance(shape, list) or len(shape) > _MAX_DIMS
            or not all(type(d) is int and 0 <= d < 1 << 40 for d in shape)):
        raise error(f"{label}: shape {shown(str(shape), 60)} is not a list of at most {_MAX_DIMS} sizes; "
                    "the file is damaged.")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]):
        raise error(f"{label}: data_offsets {shown(str(offsets), 60)} is not [begin, end]; the file is damaged.")
    need = math.prod(shape) * DTYPES[dtype].itemsize
    if offsets[1] - offsets[0] != need:
        raise error(f"{label}: its shape {tuple(shape)} of {dtype} needs {need:,} bytes but its offsets "
                    f"span {offsets[1] - offsets[0]:,}; the file is damaged.")
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def _check_layout(tensors: dict[str, TensorEntry], data_bytes: int, where: str, error: type[FastNSTError]) -> None:
    """The tensors tile the bytes after the header exactly: inside the file, none overlapping
    another (two names reading the same bytes), none left over."""
    end = 0
    for name, t in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if t.begin < end:
            raise error(f"{where}: tensor '{shown(name, 80)}' overlaps the bytes of another tensor "
                        f"(from byte {t.begin:,}, the previous ends at {end:,}); the file is damaged or forged.")
        if t.begin > end:
            raise error(f"{where}: {t.begin - end:,} bytes before tensor '{shown(name, 80)}' belong to no "
                        "tensor; the file is damaged.")
        end = t.end
    if end != data_bytes:
        what = "extend past the end of the file" if end > data_bytes else "leave bytes at the end unaccounted for"
        raise error(f"{where}: the tensors {what} ({end:,} bytes declared, {max(0, data_bytes):,} in the file); "
                    "the file is truncated or damaged.")


def check_expected(header: SafetensorsHeader, expected: Spec, where: str, network: str = "the transform net",
                   error: type[FastNSTError] = CheckpointError) -> None:
    """``error`` unless the header declares exactly the tensors ``expected`` (name -> (dtype,
    shape): the state dict of ``network``, in words), before any of them is read: the check
    of a .pth's weights (:func:`~.weights.check_state`), on the header's declarations."""
    declared = {name: (DTYPES[t.dtype], t.shape) for name, t in header.tensors.items()}
    check_state(declared, expected, where, network, error)


def load_tensors(path: str | Path, header: SafetensorsHeader, expected: Optional[Spec] = None,
                 error: type[FastNSTError] = CheckpointError,
                 network: str = "the transform net") -> dict[str, torch.Tensor]:
    """The tensors of ``path`` (whose checked header is ``header``, from :func:`read_header`),
    on CPU; with ``expected``, checked against it first (:func:`check_expected`)."""
    if expected is not None:
        check_expected(header, expected, str(path), network, error)
    require_safetensors(path)
    try:
        out = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for name, entry in header.tensors.items():
                out[name] = f.get_tensor(name)
                if tuple(out[name].shape) != entry.shape or out[name].dtype != DTYPES[entry.dtype]:
                    raise error(f"{path}: the file changed while it was read; read it again.")
        return out
    except (SafetensorError, OSError, ValueError) as e:
        raise error(f"{path}: the safetensors file cannot be read ({shown(str(e), 160)}); it is damaged.") from None
