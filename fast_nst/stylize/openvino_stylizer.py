"""Stylizing on an Intel CPU with OpenVINO (``load_stylizer(path, runtime="openvino")``,
``eval.py --runtime openvino``): the model's ONNX export compiled by OpenVINO's CPU plugin.

OpenVINO fuses the network's convolutions, instance norms and activations into multi-threaded
kernels and runs them in bf16 on CPUs with AMX or AVX-512 BF16: on a 2-core Xeon with AMX it
stylized 512 x 512 with the default network in 57 ms against 67 ms for fast-nst's own bf16
path; on one without AMX, bf16 took 1.2-1.6x the fp32 time and int8 was the fastest path
(194 ms; docs/benchmarks.md). A .pth or .safetensors model is exported to ONNX when it is loaded (a
few seconds); an .onnx export is used as it is. Every kind of model works (multi-style ones
take ``set_style``, arbitrary-style ones a style image), since the stylizer is the ONNX one
(:class:`~fast_nst.stylize.onnx_stylizer.OnnxStylizer`, which checks the file and reads its
metadata) with OpenVINO in place of onnxruntime. The graph reaches OpenVINO as bytes read
through the boundary (:mod:`fast_nst.core.untrusted.onnx_files`), never as a path, and
OpenVINO runs in a worker process (:mod:`fast_nst.stylize.openvino_worker`): it never loads in
the caller's process.

``precision``: "fp32", "bf16" (refused on a CPU without bf16 arithmetic), or "int8": the model
quantized as for onnxruntime (:mod:`fast_nst.io.quantize`; single- and multi-style models) and compiled by
OpenVINO, which keeps what is not int8 in bf16 where the CPU has it. An export quantized already
(``python -m fast_nst.export --quantize int8``) runs in int8 at any of them, and the stylizer's
``precision`` says "int8".

Photos too large for one pass are stylized in tiles, and video frames carry their norm
statistics, as in onnxruntime (:mod:`fast_nst.stylize.onnx_tiling`): the rewritten graphs are
compiled by OpenVINO too, each in a worker of its own, started when first needed.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile
import threading
import weakref
from multiprocessing import shared_memory
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..core.device import resolve_device
from ..core.errors import FastNSTError
from ..core.untrusted import read_onnx_file, shown
from ..io.export import MAX_ONNX_BYTES, installed
from . import openvino_worker
from .int8 import float32_onnx, int8_onnx
from .onnx_stylizer import OnnxStylizer, load_onnx_stylizer
from .onnx_tiling import tiling_for

__all__ = ["OPENVINO_INSTALL_HINT", "OPENVINO_PRECISIONS", "load_openvino_stylizer", "require_openvino"]

# The extra holds openvino and the ONNX packages that export the model for it.
OPENVINO_INSTALL_HINT = 'pip install -e ".[openvino]"'
# fast-nst precision -> OpenVINO's inference precision hint (int8: the quantized graph; what
# stays in float runs in the CPU's best float type, OpenVINO's default).
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "int8": None}


class _Port:
    def __init__(self, name: str):
        self.name = name


class _Segment:
    """A shared-memory segment this process writes arrays into (or the worker does) and removes;
    grown by replacing it when an array does not fit."""

    def __init__(self) -> None:
        self.memory: Optional[shared_memory.SharedMemory] = None

    def fit(self, size: int) -> shared_memory.SharedMemory:
        if self.memory is None or self.memory.size < size:
            self.release()
            self.memory = shared_memory.SharedMemory(create=True, size=max(size, 1))
        return self.memory

    def release(self) -> None:
        if self.memory is not None:
            self.memory.close()
            self.memory.unlink()
            self.memory = None


def _copied_out(output, outbox: shared_memory.SharedMemory) -> np.ndarray:
    """An output as the worker answered it: an array, or where it lies in ``outbox``."""
    if not isinstance(output, tuple):
        return output
    _, offset, shape, dtype = output
    return np.ndarray(shape, dtype, buffer=outbox.buf, offset=offset).copy()


def _aligned(n: int) -> int:
    return -(-n // openvino_worker.ALIGN) * openvino_worker.ALIGN


def _stop(process: subprocess.Popen, segments: tuple[_Segment, ...]) -> None:
    """End the worker (closing its input ends its loop; killed if it is still there after 5 s)
    and remove the shared memory."""
    for stream in (process.stdin, process.stdout):
        try:
            stream.close()
        except OSError:
            pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for segment in segments:
        segment.release()


class _OpenVinoSession:
    """The part of onnxruntime's InferenceSession that OnnxStylizer uses (``get_inputs()``,
    ``get_outputs()``, ``run(output names, {input name: array})``), answered by OpenVINO in a
    worker process (:mod:`fast_nst.stylize.openvino_worker`, which says why a process of its
    own). The worker ends when this object is collected or the interpreter exits."""

    def __init__(self) -> None:
        # Unbuffered pipes: whether an answer is there is then what the pipe says (_wait).
        self.process = subprocess.Popen([sys.executable, "-c", openvino_worker.BOOT, openvino_worker.__file__],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.inbox, self.outbox = _Segment(), _Segment()  # the arrays to the worker, and back
        self._lock = threading.RLock()  # one request at a time (its shared memory too), whatever thread asks
        self._finalizer = weakref.finalize(self, _stop, self.process, (self.inbox, self.outbox))
        self.version, self.capabilities = self._ask(None, "hello")
        self.inputs: list[str] = []
        self.outputs: list[str] = []

    def _ask(self, message: Optional[tuple], expected: str) -> tuple:
        try:
            with self._lock:
                if message is not None:
                    openvino_worker.send(self.process.stdin, message)
                self._wait()
                answer = openvino_worker.receive(self.process.stdout)
        except (EOFError, OSError):
            try:
                code = self.process.wait(timeout=5)  # its pipe closed first: let it finish ending
            except subprocess.TimeoutExpired:
                code = None
            raise FastNSTError(f"the OpenVINO worker process ended (exit code {code}); its error, if any, "
                               "is printed above.") from None
        if answer[0] == "error":
            raise FastNSTError(f"OpenVINO: {shown(answer[1])}")
        assert answer[0] == expected, answer[0]
        return answer[1:]

    def _wait(self) -> None:
        """Until the worker's answer starts arriving; EOFError once the worker has ended (a
        process it forked could keep the pipe open after it: its end is what counts)."""
        if os.name != "posix":  # select() takes no pipes on Windows: the read itself waits
            return
        while not select.select([self.process.stdout], [], [], 0.5)[0]:
            if self.process.poll() is not None:
                raise EOFError("the worker ended")

    def compile(self, onnx: bytes, config: dict) -> None:
        self.inputs, self.outputs = self._ask(("compile", onnx, config), "ready")

    def close(self) -> None:
        with self._lock:  # not while a request is on its way
            self._finalizer()

    def get_inputs(self) -> list[_Port]:
        return [_Port(n) for n in self.inputs]

    def get_outputs(self) -> list[_Port]:
        return [_Port(n) for n in self.outputs]

    def run(self, names: Optional[list[str]], feeds: dict) -> list:
        """The outputs ``names`` (all: None) for the arrays ``feeds``, copied out of shared memory."""
        arrays = {name: np.ascontiguousarray(x) for name, x in feeds.items()}
        offsets = np.cumsum([0] + [_aligned(x.nbytes) for x in arrays.values()])
        with self._lock:
            if not self._finalizer.alive:
                raise FastNSTError("this OpenVINO stylizer has been closed: load the model again.")
            inbox = self.inbox.fit(int(offsets[-1]))
            inputs = []
            for (name, x), offset in zip(arrays.items(), offsets):
                np.ndarray(x.shape, x.dtype, buffer=inbox.buf, offset=int(offset))[...] = x
                inputs.append((name, inbox.name, int(offset), x.shape, x.dtype.str))
            # Room for outputs as large as the inputs (a stylized photo is the size of the
            # photo); anything larger comes back through the pipe.
            outbox = self.outbox.fit(int(offsets[-1]))
            (outputs,) = self._ask(("run", names, inputs, outbox.name), "ok")
            return [_copied_out(y, outbox) for y in outputs]


def _compiled(onnx: bytes, config: dict) -> _OpenVinoSession:
    """A worker of its own compiling the graph ``onnx`` (one of onnx_tiling's rewritten graphs,
    made when first needed)."""
    session = _OpenVinoSession()
    try:
        session.compile(onnx, config)
    except BaseException:
        session.close()
        raise
    return session


def require_openvino(exports: bool = True) -> None:
    """FastNSTError naming every package runtime openvino lacks and the one command installing
    them: openvino (imported only in the worker), onnxruntime (the ONNX stylizer checks the
    file and reads its metadata with it) and, when the model is exported or quantized first
    (``exports``: a .pth/.safetensors model, or int8), onnx and onnxscript. All at once, before
    the model is fetched or exported: installing only openvino left the export to fail next."""
    needed = ["openvino", "onnxruntime"] + (["onnx", "onnxscript"] if exports else [])
    missing = [module for module in needed if not installed(module)]
    if missing:
        noun = "package" if len(missing) == 1 else "packages"
        raise FastNSTError(f"runtime openvino needs the {', '.join(missing)} {noun}: "
                           f"pip install {' '.join(missing)} (or {OPENVINO_INSTALL_HINT})")


def _onnx_model(path: Path, folder: Path, precision: str, calibration_images,
                loss_model_file) -> tuple[Path, Optional[str]]:
    """(the ONNX file to compile for ``path`` (an .onnx as it is, or from the export cache,
    :mod:`fast_nst.io.export_cache`, or written into ``folder``):
    exported from a .pth/.safetensors model, for int8 the int8 path's file
    (:func:`~fast_nst.stylize.int8.int8_onnx`); how the model was made, for a .pth/.safetensors one)."""
    if precision == "int8":
        return int8_onnx(path, folder, calibration_images, loss_model_file)
    if path.suffix.lower() == ".onnx":
        return path, None
    return float32_onnx(path, folder, loss_model_file)


def load_openvino_stylizer(path: Union[str, Path], device: str = "cpu", precision: str = "fp32",
                           calibration_images: Union[str, Path, None] = None,
                           loss_model_file: Union[str, Path, None] = None) -> OnnxStylizer:
    """A stylizer of the model ``path`` (.pth, .safetensors or .onnx) run by OpenVINO on the CPU.
    FastNSTError for a GPU device, a precision OpenVINO or this CPU cannot run, or a missing
    openvino package; the ONNX stylizer's errors for the file itself."""
    path = Path(path)
    if resolve_device("cpu" if device == "auto" else device).type != "cpu":
        raise FastNSTError(f"runtime openvino runs on the CPU, not on device {device!r}: use --device cpu.")
    if precision not in OPENVINO_PRECISIONS:
        raise FastNSTError(f"runtime openvino runs precision {', '.join(OPENVINO_PRECISIONS)}, not {precision!r}.")
    require_openvino(exports=precision == "int8" or path.suffix.lower() != ".onnx")
    session = _OpenVinoSession()  # starts while the model is prepared
    try:
        if precision == "bf16" and "BF16" not in session.capabilities:
            raise FastNSTError("this CPU has no bf16 arithmetic (AVX-512 BF16 or AMX): use --precision fp32 "
                               "or int8 with runtime openvino.")
        with tempfile.TemporaryDirectory(prefix="fast-nst-openvino-") as tmp:
            onnx_file, made = _onnx_model(path, Path(tmp), precision, calibration_images, loss_model_file)
            stylizer = load_onnx_stylizer(onnx_file, device="cpu")  # checks the file, reads its metadata
            onnx = read_onnx_file(onnx_file, MAX_ONNX_BYTES)
        hint = OPENVINO_PRECISIONS[precision]
        config = {"PERFORMANCE_HINT": "LATENCY", **({"INFERENCE_PRECISION_HINT": hint} if hint else {})}
        session.compile(onnx, config)
    except BaseException:
        session.close()
        raise
    stylizer.session = session
    stylizer.tiling = tiling_for(
        onnx, MAX_ONNX_BYTES, stylizer.info["metadata"], lambda graph, arena: _compiled(graph, config))
    if stylizer.precision != "int8":  # a quantized export runs in int8 whatever was asked: say so
        stylizer.precision = precision
    stylizer.path = str(path)
    stylizer.info.update(path=str(path), about=made, runtime="openvino", providers=[f"OpenVINO {session.version} CPU"])
    return stylizer
