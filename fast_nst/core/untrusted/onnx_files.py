"""ONNX model files: bounded in bytes, read whole, and handed to onnxruntime and onnx as bytes.

An ONNX model can keep its weights in "external data" files that the model names by path, and
onnxruntime and onnx resolve those paths when they load a model *from a path*. A model loaded
from memory has no folder to resolve them against: its named paths are never opened. So every
``.onnx`` file fast-nst reads (a user's export, or the graphs it writes itself and runs to check)
is read here, at most ``max_bytes``, and parsed from memory; the parsers' own errors are the
callers' to word (a damaged file, a foreign graph).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..errors import DataError
from .paths import input_file, read_at_most
from .text import shown

__all__ = ["onnx_session", "read_onnx_file", "read_onnx_model"]

OnnxSource = Union[str, Path, bytes]


def read_onnx_file(path: str | Path, max_bytes: int, flag: str = "Model file") -> bytes:
    """The bytes of the ``.onnx`` file ``path``: a regular file of at most ``max_bytes`` bytes
    (checked before it is opened, and again while reading, for a file that grows); otherwise a
    :class:`DataError` naming ``flag``."""
    path = input_file(path, flag, max_bytes, fix="an exported fast-nst model is far smaller")
    with open(path, "rb") as f:
        data = read_at_most(f, max_bytes + 1)
    if len(data) > max_bytes:
        raise DataError(f"{shown(flag)} {shown(str(path))} grew past the limit of {max_bytes:,} bytes "
                        "while it was read.")
    return data


def _bytes(model: OnnxSource, max_bytes: int) -> bytes:
    return model if isinstance(model, bytes) else read_onnx_file(model, max_bytes)


def onnx_session(model: OnnxSource, max_bytes: int, options: Optional[Any] = None,
                 providers: Sequence[Any] = ("CPUExecutionProvider",)) -> Any:
    """An ``onnxruntime.InferenceSession`` of ``model`` (a path, read by :func:`read_onnx_file`,
    or the bytes already read), whose text (input and output names, types and shapes, metadata)
    reads as Python strings. onnxruntime's errors for a damaged or foreign graph propagate; a
    :class:`ValueError` for text that is not UTF-8 (onnxruntime loads such a file, and decoding
    a name or value failed only where the caller first read it)."""
    import onnxruntime as ort

    data = _bytes(model, max_bytes)
    session = ort.InferenceSession(data, sess_options=options, providers=list(providers))
    try:
        for arg in (*session.get_inputs(), *session.get_outputs()):
            arg.name, arg.type, arg.shape  # noqa: B018 - each decodes the file's text
        meta = session.get_modelmeta()
        meta.custom_metadata_map, meta.graph_name, meta.producer_name  # noqa: B018
    except UnicodeDecodeError as e:
        raise ValueError(f"its text is not UTF-8 (byte {e.start} of a name or value: {e.reason})") from None
    return session


def read_onnx_model(model: OnnxSource, max_bytes: int) -> Any:
    """The ``onnx.ModelProto`` of ``model`` (a path or bytes), parsed from memory."""
    import onnx

    return onnx.load_model_from_string(_bytes(model, max_bytes))
