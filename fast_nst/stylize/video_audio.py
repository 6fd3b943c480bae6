"""The audio of a stylized video: each input audio stream copied packet for packet when the
output container takes its codec, else re-encoded (AAC; Opus for WebM), else dropped with a
warning. Used by :mod:`fast_nst.stylize.video`."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any, Optional

__all__ = ["AUDIO_BITRATE_PER_CHANNEL", "AUDIO_CODECS", "audio_output"]

# Audio encoders for streams that cannot be copied as they are, in order of preference.
AUDIO_CODECS = ("aac", "libopus", "opus", "libmp3lame")
# 192 kb/s for stereo: generous for AAC and Opus, so a re-encoded track does not sound worse.
AUDIO_BITRATE_PER_CHANNEL = 96_000


def audio_output(av, out, ain, src: Path) -> Optional[tuple[str, Any]]:
    """The output stream for input audio stream ``ain`` as ``(mode, stream)``, mode "copy" or
    the encoder's name; None (with a warning naming ``src``) when ``out`` can hold it neither way."""
    if _can_copy(av, out, ain):
        return "copy", out.add_stream_from_template(ain)
    if ain.codec_context is None:
        print(f"warning: {src}: dropping audio stream #{ain.index}: a "
              f"{out.format.name} file cannot hold it and FFmpeg cannot decode it",
              file=sys.stderr)
        return None
    for name in AUDIO_CODECS:
        if name not in av.codecs_available:
            continue
        codec = av.Codec(name, "w")
        rates = getattr(codec, "audio_rates", None)
        rate = ain.rate if not rates or ain.rate in rates else \
            (48000 if 48000 in rates else max(rates))
        try:
            stream = out.add_stream(name, rate=rate)
        except ValueError:
            continue
        layout = _encoder_layout(av, ain.codec_context.layout)
        stream.codec_context.layout = layout
        stream.codec_context.bit_rate = AUDIO_BITRATE_PER_CHANNEL * layout.nb_channels
        return name, stream
    print(f"warning: {src}: dropping audio stream #{ain.index} ({ain.codec_context.name}): "
          f"no audio encoder for {out.format.name} files", file=sys.stderr)
    return None


def _encoder_layout(av, layout):
    """The channel layout to encode ``layout``'s audio in: itself, or FFmpeg's usual layout for
    its channel count where it names no channels (Matroska's PCM: encoders refuse those); 7.1
    for more than 8 channels."""
    channels = layout.nb_channels or 2
    if channels > 8:
        return av.AudioLayout("7.1")
    if layout.name == f"{channels} channels":  # FFmpeg's name for channels in no known order
        return av.AudioLayout(f"{channels}c")  # "2c" is stereo, "6c" 5.1
    return layout


def _can_copy(av, out, ain) -> bool:
    """Whether the output format takes ``ain``'s packets unchanged: tried on a throwaway
    in-memory file, since some codecs pass FFmpeg's table check but fail at the header."""
    if out.format.name == "mp4" and getattr(ain.codec_context, "name", "").startswith("pcm_"):
        # MP4 holds PCM only as ISO 23003-5 "ipcm", which few players play, and FFmpeg's muxer
        # refuses it at the trailer, once every frame is stylized, for channels without a
        # named layout (as Matroska stores them). AAC plays everywhere.
        return False
    try:
        probe = av.open(io.BytesIO(), "w", format=out.format.name)
    except (ValueError, av.FFmpegError):
        return False
    try:
        probe.add_stream_from_template(ain)
        probe.start_encoding()
    except (ValueError, av.FFmpegError):
        return False
    finally:
        try:
            probe.close()
        except (ValueError, av.FFmpegError):
            pass
    return True
