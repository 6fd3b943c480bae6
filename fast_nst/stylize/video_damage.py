"""Whether a video's input ended early: FFmpeg's demuxers take a file that breaks off (a partial
download) as a normal end, so the stylized video would silently hold only the frames before the
break. Used by :mod:`fast_nst.stylize.video`, which keeps those frames and warns."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

__all__ = ["missing_frames_warning"]


def missing_frames_warning(src: Path, decoded: int, declared: int, cut: bool) -> Optional[str]:
    """The ``warning:`` line for a video of which ``decoded`` frames were read, None when it
    looks complete. ``declared``: the frame count the container states (0: none); ``cut``: the
    last video packet was shorter than the container's index said (how a cut mp4 or mov shows,
    whatever its count)."""
    # Stated counts can be a little off in whole files (edit lists, a last frame the muxer
    # dropped): only a clear shortfall counts.
    if declared > 0 and decoded < declared - max(2, declared // 20):
        read = f"only {decoded} of the {declared} frames it declares could be read"
    elif cut:
        read = f"its video breaks off after {decoded} frame{'' if decoded == 1 else 's'}"
    else:
        return None
    return (f"warning: {src}: {read}; the file looks truncated (a partial download?) or "
            f"damaged. The output holds those {decoded}, stylized.")
