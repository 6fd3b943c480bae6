"""Command lines run in processes forked from one preloaded interpreter (a "zygote").

Why: a training command started as ``python train.py`` spends ~4.5 s of CPU before its first
step here (importing torch, ~2.3 s, and torch._dynamo, ~2 s, which torch's optimizers import
on first use), far more than the tiny runs the reliability tests train. :class:`Zygote` starts
one interpreter that imports all of it once and forks a child per command line. The child is a
real process of its own (its own pid, signals, exit code, file descriptors, process group with
``new_session``, forked DataLoader workers), running the real script file as ``__main__`` with
its own argv, environment and working folder; what it does not repeat is the interpreter's
start-up. Tests that need the interpreter's own start-up (``python train.py`` as typed) keep
``subprocess``.

Protocol: the server reads one JSON request a line on stdin and answers on stdout with
``{"id": n, "pid": p}`` when the child started and ``{"exit": p, "code": c}`` when it ended
(``c`` as ``subprocess`` reports it: negative for a signal). POSIX only (``os.fork``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Optional, Sequence

# What every command here would import before doing anything (torch._dynamo: its optimizers).
PRELOAD = ("torch", "torch._dynamo", "torch.optim", "torch.utils.tensorboard",
           "fast_nst.commands.train", "fast_nst.commands.eval")


class ForkedProcess:
    """The part of :class:`subprocess.Popen` the tests use, for a child of the zygote."""

    def __init__(self, pid: int, args: Sequence[str]):
        self.pid = pid
        self.args = list(args)
        self.returncode: Optional[int] = None
        self._ended = threading.Event()

    def _exited(self, code: int) -> None:
        self.returncode = code
        self._ended.set()

    def poll(self) -> Optional[int]:
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # as Popen: never signal a pid that may be reused
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class Zygote:
    """A preloaded interpreter (``python forkrun.py``) that forks a child per command line.

    ``env``: the server's environment (what a child inherits unless its request sets another);
    variables read when a library loads (``OMP_NUM_THREADS`` by OpenMP) take the server's value,
    so every child of one zygote shares them."""

    def __init__(self, env: dict, folder: Path, preload: Sequence[str] = PRELOAD):
        self.folder = folder  # where run() captures output
        self._server = subprocess.Popen([sys.executable, __file__, *preload], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env, text=True, bufsize=1)
        self._lock = threading.Lock()
        self._next = 0
        self._started: dict[int, tuple[threading.Event, list]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._early: dict[int, int] = {}  # exits read before their start was handed out
        self._reader = threading.Thread(target=self._read, name="zygote-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._server.stdout:
            msg = json.loads(line)
            with self._lock:
                if "pid" in msg:
                    event, box = self._started.pop(msg["id"])
                    box.append(msg["pid"])
                    event.set()
                elif msg["exit"] in self._children:
                    self._children.pop(msg["exit"])._exited(msg["code"])
                else:
                    self._early[msg["exit"]] = msg["code"]

    def popen(self, argv: Sequence[str], *, cwd: Optional[Path] = None, env: Optional[dict] = None,
              stdout: Optional[Path] = None, stderr: Optional[Path] = None,
              new_session: bool = False) -> ForkedProcess:
        """Start ``argv`` (a script path and its arguments, or ``-m module ...``) in a fork;
        its output goes to the files named (or to /dev/null)."""
        for path in (stdout, stderr):
            if path:
                Path(path).write_bytes(b"")  # there from now on, as a file Popen is given
        event, box = threading.Event(), []
        request = dict(argv=[str(a) for a in argv], cwd=str(cwd or os.getcwd()), env=dict(env or os.environ),
                       stdout=str(stdout) if stdout else None, stderr=str(stderr) if stderr else None,
                       session=new_session)
        with self._lock:
            self._next += 1
            request["id"] = self._next
            self._started[self._next] = (event, box)
            self._server.stdin.write(json.dumps(request) + "\n")
            self._server.stdin.flush()
        if not event.wait(60):
            raise RuntimeError("the zygote did not start the command")
        proc = ForkedProcess(box[0], argv)
        with self._lock:
            if proc.pid in self._early:
                proc._exited(self._early.pop(proc.pid))
            else:
                self._children[proc.pid] = proc
        return proc

    def run(self, argv: Sequence[str], *, cwd: Optional[Path] = None, env: Optional[dict] = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        """As ``subprocess.run(..., capture_output=True, text=True)``; the output passes through
        two files in :attr:`folder`."""
        import tempfile

        fd, name = tempfile.mkstemp(dir=self.folder, prefix="run-", suffix=".out")
        os.close(fd)
        out, err = Path(name), Path(name).with_suffix(".err")
        proc = self.popen(argv, cwd=cwd, env=env, stdout=out, stderr=err)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        result = subprocess.CompletedProcess(list(argv), code, out.read_text(errors="replace"),
                                             err.read_text(errors="replace"))
        out.unlink()
        err.unlink(missing_ok=True)
        return result

    def close(self) -> None:
        self._server.stdin.close()
        self._server.wait(timeout=60)


# ---- the server ---------------------------------------------------------------------------------

def _exit_code(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _child(request: dict, keep: Sequence[int]) -> None:
    """In the fork: become the command line's process and run it; never returns."""
    import atexit
    import io
    import runpy
    import traceback

    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in keep:
            os.close(fd)
        if request["session"]:
            os.setsid()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, mode in ((0, None, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                               (2, request["stderr"], os.O_WRONLY)):
            new = os.open(path or os.devnull, mode | (os.O_CREAT | os.O_TRUNC if path else 0), 0o644)
            os.dup2(new, fd)
            os.close(new)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False))
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), errors="backslashreplace",
                                      line_buffering=True)
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            import torch

            torch.set_num_threads(int(threads))
        argv = request["argv"]
        try:
            if argv[0] == "-m":
                sys.argv = argv[1:]
                sys.path[0] = os.getcwd()
                runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = argv
                sys.path[0] = str(Path(argv[0]).resolve().parent)
                runpy.run_path(argv[0], run_name="__main__")
            code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:  # as Python itself: die of the signal
            sys.stdout.flush(), sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:
            traceback.print_exc()
        # What the interpreter does when it ends: wait for non-daemon threads, run atexit's.
        threading._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush(), sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


def _serve(preload: Sequence[str]) -> None:
    import contextlib
    import importlib
    import select

    for name in preload:
        importlib.import_module(name)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears of exits
    out = os.fdopen(os.dup(1), "w", buffering=1)
    pending, running = b"", set()
    stdin_open = True
    while stdin_open or running:
        ready, _, _ = select.select([0, wake_r] if stdin_open else [wake_r], [], [], 1.0)
        if wake_r in ready:
            os.read(wake_r, 4096)
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            running.discard(pid)
            with contextlib.suppress(OSError):  # the tests' side may be gone
                out.write(json.dumps({"exit": pid, "code": _exit_code(status)}) + "\n")
        if 0 in ready:
            data = os.read(0, 65536)
            pending += data
            if not data:  # the tests ended: a command still running is a leftover of a failed one
                stdin_open = False
                for pid in running:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(request, (wake_r, wake_w, out.fileno()))
                running.add(pid)
                out.write(json.dumps({"id": request["id"], "pid": pid}) + "\n")


if __name__ == "__main__":
    _serve(sys.argv[1:])
