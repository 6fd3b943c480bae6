"""An exclusive lock on a run folder, so that two trainings never write into one run at once.

The lock is a file ``.lock`` in the run folder, created with O_EXCL (atomic on local and NFSv3+
filesystems) and holding the host name and process id of its owner. A lock whose process is gone
(same host, no such pid) is stale: a killed run left it, and the next run takes it over.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Optional

from ..core.errors import FastNSTError
from ..core.untrusted import read_json_file

__all__ = ["LOCK_FILE", "RunLock"]

LOCK_FILE = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """``RunLock(run_dir).acquire()`` or a :class:`FastNSTError` naming the run that holds it."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.held = False

    def _holder(self) -> Optional[dict]:
        try:  # a flat JSON object of host, pid and time; 1000 bytes are plenty
            data = read_json_file(self.path, "the run's lock file", FastNSTError, max_bytes=1000, max_depth=1)
            return data if isinstance(data, dict) else None
        except FastNSTError:
            return None

    def _stale(self, holder: Optional[dict]) -> bool:
        if holder is None:  # unreadable: a run killed while writing it, or one writing it right now
            try:
                return time.time() - self.path.stat().st_mtime > 10
            except OSError:
                return True
        pid = holder.get("pid")
        return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)

    def acquire(self) -> "RunLock":
        for _ in range(2):  # the second try after removing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if not self._stale(holder):
                    raise self._busy(holder) from None
                warnings.warn(f"removing the stale lock {self.path} left by a run that no longer runs "
                              f"(pid {holder.get('pid') if holder else '?'}).")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}, f)
            self.held = True
            return self
        raise self._busy(self._holder())

    def _busy(self, holder: Optional[dict]) -> FastNSTError:
        who = (f"process {holder.get('pid')} on {str(holder.get('host'))[:60]}, since "
               f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(float(holder.get('since', 0))))}"
               if holder else "another process")
        return FastNSTError(
            f"{self.run_dir} is in use by another training run ({who}). Wait for it to finish, or "
            f"train into another run folder (--set naming=NEW_NAME). If no run uses it (the other "
            f"machine's run was killed), delete {self.path}.")

    def release(self) -> None:
        if self.held:
            holder = self._holder()
            if holder is None or holder.get("pid") == os.getpid():  # never another run's lock
                self.path.unlink(missing_ok=True)
            self.held = False
