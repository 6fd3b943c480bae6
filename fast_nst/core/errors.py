"""Exceptions for mistakes a user can make (bad config, missing files, bad model files).

The CLI catches :class:`FastNSTError`, prints its message without a traceback and exits
non-zero; anything else escaping is a bug in fast-nst.
"""

import builtins
import reprlib
from itertools import islice
from typing import Any, Iterable

__all__ = ["CheckpointError", "ConfigError", "DataError", "DownloadError", "FastNSTError", "Stopped",
           "quote"]


class FastNSTError(Exception):
    """A problem the user can fix; the message says what was wrong and how to fix it."""


class Stopped(FastNSTError):
    """The user stopped a command (Ctrl-C, SIGTERM) and it stopped cleanly: the message says what
    was saved and how to go on; commands print it without ``error:`` and exit with the code it
    carries (128 + the signal number)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class ConfigError(FastNSTError):
    """A config file or override is invalid (unknown key, wrong type, bad value)."""


class DataError(FastNSTError):
    """Training data, style image or input image is missing or unreadable."""


class CheckpointError(FastNSTError):
    """A model or checkpoint file is missing, foreign, unsafe or corrupt."""


class DownloadError(FastNSTError):
    """A file could not be downloaded."""


class _BoundedRepr(reprlib.Repr):
    """reprlib with every container type dispatched by isinstance (reprlib looks types up by
    name, so an OrderedDict or a str subclass would fall back to the full builtin repr) and no
    sorting (reprlib sorts dict keys and sets: a pass over the whole container)."""

    def repr1(self, x: Any, level: int) -> str:
        if isinstance(x, str):
            return self.repr_str(str(x), level)
        if isinstance(x, (bytes, bytearray)):
            head = builtins.repr(bytes(x[:self.maxstring]))
            return head + ("..." if len(x) > self.maxstring else "")
        if isinstance(x, dict):
            pairs = ((self.repr1(k, level - 1), self.repr1(v, level - 1)) for k, v in islice(x.items(), self.maxdict))
            return self._join((f"{k}: {v}" for k, v in pairs), len(x), level, "{", "}")
        for kind, left, right in ((list, "[", "]"), (tuple, "(", ")"), (set, "{", "}"), (frozenset, "{", "}")):
            if isinstance(x, kind):
                items = (self.repr1(v, level - 1) for v in islice(x, self.maxlist))
                return self._join(items, len(x), level, left, ",)" if kind is tuple and len(x) == 1 else right)
        if isinstance(x, bool) or x is None or isinstance(x, float):
            return builtins.repr(x)
        if isinstance(x, int):
            # repr of an int over 4300 digits raises; its size is what matters in a message
            return builtins.repr(x) if x.bit_length() <= 128 else f"<int of {x.bit_length()} bits>"
        shape = getattr(x, "shape", None)
        if shape is not None and hasattr(x, "dtype"):  # a tensor or array: never print its values
            return f"<{type(x).__name__} of shape {tuple(shape)[:8]} {x.dtype}>"
        return self.repr_instance(x, level)

    def _join(self, items: Iterable[str], size: int, level: int, left: str, right: str) -> str:
        if level <= 0:
            return f"{left}...{right}"
        parts = list(items)
        if size > len(parts):
            parts.append("...")
        return f"{left}{', '.join(parts)}{right}"


def quote(value: Any, limit: int = 80) -> str:
    """A repr of ``value`` (read from a file: untrusted) for an error message, at most ``limit``
    characters and built in bounded time: at most 3 levels deep and 6 items per container, so a
    structure nested 9 deep and 10 wide through shared references (10**9 leaves) costs a few
    hundred calls, where ``repr`` would exhaust memory."""
    r = _BoundedRepr()
    r.maxlevel = 3
    r.maxdict = r.maxlist = 6
    r.maxstring = r.maxother = r.maxlong = limit
    try:
        text = r.repr(value)
    except Exception:  # an object whose repr fails: its type is still worth saying
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:max(0, limit - 3)] + "..."
