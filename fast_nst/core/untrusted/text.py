"""Outside text made safe to show: a style name from a model file, a key from a YAML file, a
file name from a folder, ONNX metadata. Such text can hold terminal escapes (retitle the window,
clear the screen), right-to-left overrides that reorder what is read, CR/LF that forge a second
line, NUL, or megabytes; :func:`shown` makes every such character visible and bounds the length.
"""

from __future__ import annotations

import unicodedata

__all__ = ["MAX_SHOWN", "shown"]

#: Characters of outside text in one message: a file name or a style name fits easily; a
#: megabyte-long name would bury the message (and a terminal).
MAX_SHOWN = 200


def _visible(ch: str) -> str:
    # Cc: C0/C1 controls (ESC, CR, LF, NUL, DEL, CSI); Cf: format characters (bidi overrides and
    # isolates, zero-width joiners); Zl/Zp: line and paragraph separators; Cs: lone surrogates
    # (undecodable bytes from a file name); Co/Cn: private-use and unassigned code points.
    if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
        code = ord(ch)
        return f"\\x{code:02x}" if code <= 0xFF else (f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return ch


def shown(text: object, limit: int = MAX_SHOWN) -> str:
    """``text`` (any object; a string from a file, usually) as a single printable line of at
    most ``limit`` characters: control and format characters become ``\\xNN`` / ``\\uNNNN``
    escapes, a longer text ends in ``...``. Built in time proportional to ``limit``, whatever
    the size of ``text``."""
    if not isinstance(text, str):
        text = type(text).__name__ if not isinstance(text, (int, float, bytes)) else repr(text)[:limit * 4]
    out: list[str] = []
    size = 0
    for ch in text[:limit + 1]:
        piece = _visible(ch)
        if size + len(piece) > limit:
            return "".join(out)[:max(0, limit - 3)] + "..."
        out.append(piece)
        size += len(piece)
    return "".join(out)
