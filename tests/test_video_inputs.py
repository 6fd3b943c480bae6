"""Video inputs that stylize_video once mishandled: a PCM audio track that the mp4 muxer refused
only at the very end (all the work lost), and a cut-off file stylized in part without a word."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="video support needs the optional extra: pip install -e .[video]")

from fast_nst.stylize.video import stylize_video  # noqa: E402
from fast_nst.stylize.video_damage import missing_frames_warning  # noqa: E402

import test_video  # noqa: E402
from test_video import make_clip, probe  # noqa: E402

# test_video's module fixtures: a tiny model, its stylizer, a 12-frame clip with AAC audio
model_file, stylizer, clip = test_video.model_file, test_video.stylizer, test_video.clip


def pcm_clip(path: Path, layout: str, seconds: float = 0.5) -> Path:
    """5 frames of 10 fps H.264 and 16-bit PCM at 48 kHz in ``layout``, in blocks of 1024 samples
    (21.33 ms: packets that do not last a whole number of Matroska's milliseconds)."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 32, 16, "yuv420p"
        a = c.add_stream("pcm_s16le", rate=48000)
        a.layout = layout
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((16, 32, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts = i
            c.mux(v.encode(frame))
        c.mux(v.encode())
        channels = a.codec_context.layout.nb_channels
        n = int(48000 * seconds)
        tone = (9000 * np.sin(2 * np.pi * 440 * np.arange(n) / 48000)).astype(np.int16)
        for start in range(0, n, 1024):
            block = np.repeat(tone[start:start + 1024, None], channels, 1).reshape(1, -1)
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="s16", layout=layout)
            chunk.sample_rate, chunk.pts = 48000, start
            c.mux(a.encode(chunk))
        c.mux(a.encode())
    return path


@pytest.mark.parametrize("layout", ["stereo", "5.1"])
def test_pcm_from_matroska_goes_into_mp4_as_aac_and_stays_pcm_elsewhere(stylizer, tmp_path, layout):
    """Matroska stores PCM channels without a layout; the mp4 muxer took the copied stream's
    header and refused it at the trailer, once every frame was stylized ("Cannot finish
    writing out.mp4: Invalid argument", no output)."""
    src = pcm_clip(tmp_path / "in.mkv", layout)
    with av.open(str(src)) as c:
        assert c.streams.audio[0].codec_context.layout.name.endswith(" channels")  # no layout

    summary = stylize_video(stylizer, src, tmp_path / "out.mp4", progress=False)
    assert summary["frames"] == 5 and summary["audio"] == ["aac"]
    res = probe(tmp_path / "out.mp4")
    assert res["audio_codec"] == "aac" and res["audio_seconds"] == pytest.approx(0.5, abs=0.05)
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert c.streams.audio[0].codec_context.layout.name == layout

    # Where PCM plays (.mkv, .mov) it is still copied, sample for sample.
    for name in ("out.mkv", "out.mov"):
        assert stylize_video(stylizer, src, tmp_path / name, progress=False)["audio"] == ["copy"]
        assert probe(tmp_path / name)["audio_codec"] == "pcm_s16le"


def faststart_clip(path: Path, frames: int = 12) -> Path:
    """An H.264 mp4 with its index first, as web videos are: a cut copy still opens."""
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as c:
        v = c.add_stream("libx264", rate=12)
        v.width, v.height, v.pix_fmt = 32, 16, "yuv420p"
        rng = np.random.default_rng(0)
        for i in range(frames):  # noise: every frame's packet is large enough to cut inside
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (16, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            c.mux(v.encode(frame))
        c.mux(v.encode())
    return path


def packet_spans(path: Path) -> list[tuple[int, int]]:
    """(byte offset, size) of each video packet, in file order."""
    with av.open(str(path)) as c:
        return sorted((p.pos, p.size) for p in c.demux(video=0) if p.size)


@pytest.mark.parametrize("cut", ["inside the last packet", "between packets"])
def test_a_cut_off_video_keeps_its_frames_and_says_so(stylizer, tmp_path, capsys, cut):
    """The demuxer takes a cut-off file's end as a normal end: a partly downloaded video gave
    an output of the first few frames, exit 0, without a word."""
    whole = faststart_clip(tmp_path / "whole.mp4")
    raw, spans = whole.read_bytes(), packet_spans(whole)
    pos, size = spans[-1] if cut == "inside the last packet" else spans[5]
    src = tmp_path / "cut.mp4"
    src.write_bytes(raw[:pos + size // 2] if cut == "inside the last packet" else raw[:pos])

    summary = stylize_video(stylizer, src, tmp_path / "out.mp4", progress=False)
    err = capsys.readouterr().err
    n = summary["frames"]
    assert 1 <= n < 12 and summary["complete"] is False
    assert len(probe(tmp_path / "out.mp4")["frames"]) == n  # the frames before the cut are kept
    assert f"warning: {src}: " in err and "looks truncated" in err and f"holds those {n}" in err
    if cut == "between packets":
        assert f"only {n} of the 12 frames it declares" in err


def test_a_whole_video_gives_no_truncation_warning(stylizer, clip, tmp_path, capsys):
    """B-frames and the edit list x264 writes, Matroska's missing frame count: complete."""
    mkv = tmp_path / "clip.mkv"
    for src in (clip, make_clip(mkv, frames=5), faststart_clip(tmp_path / "fs.mp4")):
        summary = stylize_video(stylizer, src, tmp_path / "out.mp4", progress=False)
        assert summary["complete"] is True
    assert "warning" not in capsys.readouterr().err


def test_declared_frame_counts_may_be_a_little_off():
    assert missing_frames_warning(Path("a.mp4"), 298, 300, cut=False) is None
    assert missing_frames_warning(Path("a.mp4"), 7, 8, cut=False) is None  # one frame: an edit list
    assert "only 280 of the 300 frames" in missing_frames_warning(Path("a.mp4"), 280, 300, cut=False)
    assert "breaks off after 1 frame;" in missing_frames_warning(Path("a.mkv"), 1, 0, cut=True)
    assert missing_frames_warning(Path("a.mkv"), 40, 0, cut=False) is None  # no count, no cut
