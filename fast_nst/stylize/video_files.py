"""The files of a video job, checked before any work: the input is a video FFmpeg can read,
and the output a file a video can be written to, in a container that holds one of the video
encoders (:data:`VIDEO_CODECS`). ``eval.py --video_file`` runs these checks before the model
loads (an int8 or OpenVINO model takes seconds to prepare), :func:`~fast_nst.stylize.video.stylize_video`
again before it decodes."""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

from ..core.errors import DataError
from ..core.files import same_file
from ..core.untrusted import input_file
from ..core.untrusted.videos import import_av, open_video

__all__ = ["VIDEO_CODECS", "add_video_stream", "check_video_files", "open_output"]

# Video encoders in order of preference, with their quality settings. The first one that
# PyAV's FFmpeg has and the output container accepts is used.
VIDEO_CODECS: tuple[tuple[str, dict[str, str]], ...] = (
    ("libx264", {"crf": "18", "preset": "medium"}),  # visually near-lossless, universal
    ("mpeg4", {}),                                   # quality set via qscale in the encoder set-up
    ("libvpx-vp9", {"crf": "30", "b": "0", "row-mt": "1"}),  # WebM
    ("libvpx", {"crf": "10", "b": "4M"}),                     # WebM, older
)


def add_video_stream(av: Any, out: Any, rate: Fraction) -> Optional[tuple[str, Any]]:
    """(encoder name, stream) of the first of :data:`VIDEO_CODECS` that FFmpeg has and the
    output container ``out`` accepts, added to it; None when none is (a .gif, an audio format)."""
    for name, options in VIDEO_CODECS:
        if name not in av.codecs_available:
            continue
        try:
            return name, out.add_stream(name, rate=rate, options=dict(options))
        except ValueError:  # the container cannot hold this codec
            continue
    return None


def open_output(av: Any, path: Path, dest: Path) -> Any:
    """``path`` opened for writing by FFmpeg, which picks the format from ``dest``'s name."""
    try:
        return av.open(str(path), "w")
    except ValueError:
        raise DataError(f"Cannot tell a video format from the name {dest.name!r}; give "
                        "--output_file a name ending in .mp4, .mov, .mkv or .webm.") from None
    except av.FFmpegError as e:
        raise DataError(f"Cannot write {dest}: {e}") from None


def _check_container(av: Any, dest: Path) -> None:
    """DataError unless FFmpeg can write a video stream into a file named like ``dest``: tried
    on a scratch file of the same suffix, so nothing is made beside ``dest``."""
    with tempfile.TemporaryDirectory(prefix="fast-nst-video-") as tmp:
        out = open_output(av, Path(tmp) / f"probe{dest.suffix}", dest)
        try:
            if add_video_stream(av, out, Fraction(25)) is None:
                raise DataError(f"Cannot write video into a {out.format.name} file ({dest.name}); "
                                "use .mp4, .mov, .mkv or .webm.")
        finally:
            out.close()  # no header was written: nothing to finish


def check_video_files(src: Path, dest: Path) -> None:
    """DataError (one line) unless ``src`` is a video FFmpeg can read (a regular file with a
    video stream, frames within the pixel limit) and ``dest`` can receive a video: not the
    input, not a folder, its name a container that holds video. Nothing is created."""
    av = import_av()  # missing PyAV is said before anything else
    input_file(src, "video")  # a FIFO would hang the decoder: refused before it opens
    if same_file(src, dest):
        raise DataError(f"Output {dest} is the input video {src}; refusing to overwrite it. Give another output.")
    if dest.is_dir():
        raise DataError(f"Output {dest} is a folder; give a file name like out.mp4.")
    _, container = open_video(src)  # checked by the boundary (core.untrusted.videos)
    container.close()
    _check_container(av, dest)
