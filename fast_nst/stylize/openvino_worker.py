"""The process that runs OpenVINO for ``runtime="openvino"``: started by
:mod:`fast_nst.stylize.openvino_stylizer`, it compiles one ONNX graph and answers run requests.

Why a process of its own: in one Python process with PyTorch's data-loader workers, PyTorch and
onnxruntime, a process that had loaded OpenVINO crashed (segmentation fault, at a different place
each time) the next time it started a subprocess. OpenVINO only ever loads here, so the caller's
process stays as it was (OpenVINO's usage telemetry stays off: see :func:`serve`); the images
cross in shared memory (a 1024 x 1024 photo there and back
in about 3 ms, against 20 ms pickled through the pipe).

This file imports nothing from fast_nst (it is started by its path, without the package, and
without the caller's working directory on ``sys.path``), numpy and openvino only when it runs.
Messages are length-prefixed pickles between this process and the one that started it:

    caller -> worker: ("compile", onnx bytes, OpenVINO config)
                      ("run", output names or None, inputs, output segment) | ("close",)
    worker -> caller: ("hello", OpenVINO version, CPU capabilities) once at start,
                      ("ready", input names, output names) | ("ok", outputs) | ("error", message)

The arrays themselves do not travel in messages but through shared memory (four copies of a
photo's bytes less than a pipe): ``inputs`` is ``[(input name, segment, offset, shape, dtype)]``
in a segment the caller wrote; each of ``outputs`` is ``(segment, offset, shape, dtype)`` in the
output segment the caller named, or the array itself where it did not fit there. The caller
creates and removes the segments.

stdout (fd 1) is pointed at stderr at start, so that nothing OpenVINO prints lands in the
message stream.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
from multiprocessing import resource_tracker, shared_memory
from typing import Any, BinaryIO, Optional

__all__ = ["ALIGN", "BOOT", "main", "receive", "send", "serve"]

# Starts this file by its path with neither the package nor the working directory importable
# (a stray numpy.py where the user stands must not be what loads). "-c" puts "" first on sys.path.
BOOT = "import sys, runpy; del sys.path[0]; runpy.run_path(sys.argv[1], run_name='__main__')"
_HEADER = struct.Struct("<Q")
# Arrays start on 64-byte boundaries in a segment (a cache line: what vector loads like).
ALIGN = 64


def send(stream: BinaryIO, message: tuple) -> None:
    """Write one message: its pickle's length (8 bytes), then the pickle (an unbuffered pipe may
    take a write in parts)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    for part in (_HEADER.pack(len(data)), data):
        view = memoryview(part)
        while view:
            view = view[stream.write(view):]
    stream.flush()


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    parts, left = [], n
    while left:
        part = stream.read(left)
        if not part:
            raise EOFError("the other process closed the pipe")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def receive(stream: BinaryIO) -> tuple:
    """Read one message written by :func:`send` (EOFError when the other side has gone). Only
    ever used between a fast-nst process and the worker it started: both ends are this code."""
    (n,) = _HEADER.unpack(_read_exactly(stream, _HEADER.size))
    return pickle.loads(_read_exactly(stream, n))


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:500]


class _Segments:
    """The caller's shared-memory segments, attached by name (kept until the caller names
    another one for the same use)."""

    def __init__(self) -> None:
        self.attached: dict[str, shared_memory.SharedMemory] = {}
        self.retired: list[shared_memory.SharedMemory] = []

    def get(self, name: str) -> shared_memory.SharedMemory:
        if name not in self.attached:
            segment = shared_memory.SharedMemory(name=name)
            if os.name == "posix":  # the caller owns it: this process's tracker must not remove it at exit
                resource_tracker.unregister(segment._name, "shared_memory")  # type: ignore[attr-defined]
            self.attached[name] = segment
        return self.attached[name]

    def array(self, name: str, offset: int, shape: tuple, dtype: str) -> Any:
        import numpy
        return numpy.ndarray(shape, dtype, buffer=self.get(name).buf, offset=offset)

    def keep_only(self, names: set) -> None:
        """Let go of the segments not in ``names`` (the caller has replaced them by larger ones);
        one still referenced by the infer request is let go on a later call."""
        self.retired += [self.attached.pop(name) for name in set(self.attached) - names]
        for segment in list(self.retired):
            try:
                segment.close()
                self.retired.remove(segment)
            except BufferError:
                pass


def _place(outputs: list, segment: Optional[shared_memory.SharedMemory]) -> list:
    """``outputs`` written into ``segment`` one after the other: (name, offset, shape, dtype) for
    each that fits, a copy of the array itself for the rest."""
    import numpy
    placed, offset = [], 0
    for y in outputs:
        if segment is not None and offset + y.nbytes <= segment.size:
            numpy.ndarray(y.shape, y.dtype, buffer=segment.buf, offset=offset)[...] = y
            placed.append((segment.name, offset, y.shape, y.dtype.str))
            offset += -(-y.nbytes // ALIGN) * ALIGN
        else:
            placed.append(numpy.array(y))
    return placed


class _Model:
    """One compiled model and its infer request (reused: OpenVINO keeps its buffers)."""

    def __init__(self, core: Any, onnx: bytes, config: dict):
        self.onnx = onnx  # OpenVINO may keep pointing into these bytes: they live as long as the model
        self.compiled = core.compile_model(core.read_model(io.BytesIO(onnx)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.inputs = [p.get_any_name() for p in self.compiled.inputs]
        self.outputs = [p.get_any_name() for p in self.compiled.outputs]

    def run(self, names: Optional[list], feeds: dict) -> list:
        """The outputs ``names`` (all: None) as views of the request's buffers (valid until the
        next run)."""
        result = self.request.infer(feeds, share_inputs=True)  # the inputs stay put during the call
        ports = [self.compiled.output(n) for n in names] if names else list(self.compiled.outputs)
        return [result[p] for p in ports]


def _answer(model: Optional[_Model], core: Any, segments: _Segments, message: tuple) -> tuple[Optional[_Model], tuple]:
    kind = message[0]
    if kind == "compile":
        model = _Model(core, message[1], message[2])
        return model, ("ready", model.inputs, model.outputs)
    if kind == "run" and model is not None:
        _, names, inputs, out_name = message
        segments.keep_only({segment for _, segment, *_ in inputs} | ({out_name} if out_name else set()))
        feeds = {name: segments.array(segment, offset, shape, dtype) for name, segment, offset, shape, dtype in inputs}
        outputs = model.run(names, feeds)
        return model, ("ok", _place(outputs, segments.get(out_name) if out_name else None))
    return model, ("error", f"unexpected request {kind!r}")


def serve(rx: BinaryIO, tx: BinaryIO) -> int:
    """Answer requests from ``rx`` on ``tx`` until ("close",) or the end of ``rx``."""
    try:
        # OpenVINO's import starts its usage telemetry, which forks a process (holding a copy of
        # this one's pipes, so the caller would not see this process end) to send it: refused,
        # as OpenVINO's own tools do when the telemetry package is not installed.
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
        import openvino  # the optional extra, only ever in this process
        core = openvino.Core()
        send(tx, ("hello", openvino.__version__, list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))))
    except Exception as e:  # noqa: BLE001 - any failure to start is the caller's message
        send(tx, ("error", _first_line(e)))
        return 1
    model, segments = None, _Segments()
    while True:
        try:
            message = receive(rx)
        except EOFError:
            return 0
        if message[0] == "close":
            return 0
        try:
            model, answer = _answer(model, core, segments, message)
        except Exception as e:  # noqa: BLE001 - reported to the caller, which raises its own error
            answer = ("error", _first_line(e))
        send(tx, answer)


def main() -> int:
    """The worker's entry: messages on stdin and on what was stdout; fd 1 goes to stderr."""
    tx = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return serve(sys.stdin.buffer, tx)


if __name__ == "__main__":
    sys.exit(main())
