"""Video files (``eval.py --video_file``, :func:`fast_nst.stylize.video.stylize_video`): PyAV
decodes them, and everything here happens before a frame is: the path is a regular file (never a
FIFO, which would hang the demuxer), FFmpeg reads the container, it is not a still image, it has a
video stream that is not cover art, and the frame size the container declares is within the
pixel limit (``--max_image_pixels``); :func:`check_frame` applies the same limit to the first
decoded frame, for containers that declare no size. FFmpeg's own error text reaches messages
through :func:`ffmpeg_reason` (one printable, bounded line).

PyAV is an optional extra, imported only when a video is opened (:func:`import_av`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from .images import check_pixels, pixel_limit
from .paths import input_file
from .text import shown

__all__ = ["VIDEO_INSTALL_HINT", "check_frame", "ffmpeg_reason", "import_av", "open_video", "video_stream"]

VIDEO_INSTALL_HINT = 'pip install -e ".[video]"'
# Longest FFmpeg reason shown: its messages are short ("Invalid data found when processing
# input"); anything longer is a path or text from the file.
_REASON_CHARS = 200
_FIX = "if you trust this file, raise the limit with --max_image_pixels N"


def import_av() -> Any:
    """The ``av`` module; DataError naming the install command when PyAV is missing."""
    try:
        import av  # an optional extra: imported only when a video is stylized
    except ImportError:
        raise DataError(f"Stylizing videos needs PyAV, which is not installed; install the "
                        f"video extra: {VIDEO_INSTALL_HINT}") from None
    return av


def ffmpeg_reason(e: Exception) -> str:
    """An FFmpeg or OS error's own short reason, as one printable line."""
    return shown(getattr(e, "strerror", None) or str(e), _REASON_CHARS)


def video_stream(av: Any, container: Any) -> Any:
    """The first video stream of ``container`` that is not an attached picture (a music file's
    cover art); None when there is none."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def open_video(src: Path) -> tuple[Any, Any]:
    """``(av, container)``: the video ``src`` opened for reading, checked as the module says.
    DataError for missing PyAV, a path that is not a regular file, a file FFmpeg cannot read,
    a still image, no video stream, or frames larger than the pixel limit."""
    av = import_av()
    input_file(src, "video")
    name = shown(str(src))
    try:
        container = av.open(str(src), "r")
    except av.FFmpegError as e:
        raise DataError(f"{name}: not a video FFmpeg can read ({ffmpeg_reason(e)}); the file may be "
                        "corrupt or not a video at all.") from None
    except OSError as e:
        raise DataError(f"Cannot read {name}: {ffmpeg_reason(e)}") from None
    except UnicodeDecodeError:  # PyAV decodes the container's metadata as UTF-8
        raise DataError(f"{name}: its metadata is not text (the file may be corrupt); re-encode it, "
                        "e.g. ffmpeg -i IN -map_metadata -1 OUT.mp4.") from None
    try:
        _check_container(av, container, name)
    except DataError:
        container.close()
        raise
    return av, container


def _check_container(av: Any, container: Any, name: str) -> None:
    fmt = container.format.name
    if fmt.endswith("_pipe") or fmt.startswith("image2"):  # still images (animated GIF is fine)
        raise DataError(f"{name} is an image, not a video; stylize it with --image_file.")
    stream = video_stream(av, container)
    if stream is None:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        raise DataError(f"{name} has no video stream ({kinds}"
                        f"{', cover art only' if container.streams.video else ''}); nothing to stylize.")
    codec = stream.codec_context
    if codec is None:  # a codec this FFmpeg has no decoder for (or a damaged stream header)
        raise DataError(f"{name}: FFmpeg has no decoder for its video stream; the file may be corrupt, "
                        "or convert it to H.264 first.")
    # The frame size the container declares, checked before a frame is decoded.
    check_pixels(codec.width or 0, codec.height or 0, pixel_limit(), f"{name}: a frame", _FIX)


def check_frame(width: int, height: int, src: Path) -> None:
    """DataError when a decoded frame of ``src`` has more pixels than the limit (a container
    may declare no size, or another one)."""
    check_pixels(width, height, pixel_limit(), f"{shown(str(src))}: a frame", _FIX)
