"""The export cache (fast_nst.io.export_cache): the ONNX files --precision int8 and --runtime
openvino make of a model are made once per model file and fast-nst version, and never reused for
different bytes, another name or another kind (the loads that use it: test_int8.py,
test_openvino.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from fast_nst.io import export_cache
from fast_nst.io.export_cache import cache_folder, cache_key, cached_file, made_file


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("FAST_NST_CACHE", str(folder))
    return folder


def _writer(calls: list):
    def make(out: Path) -> None:
        calls.append(out)
        out.write_bytes(b"onnx %d" % len(calls))
    return make


def test_an_entry_is_made_once_per_bytes_name_and_kind(cache, tmp_path):
    model = tmp_path / "wave.pth"
    model.write_bytes(b"weights")
    calls: list = []
    first = cached_file(model, "int8", _writer(calls))
    assert first.parent == cache / "onnx" and first.name.endswith(".int8.onnx")
    assert cached_file(model, "int8", _writer(calls)) == first and len(calls) == 1
    assert first.read_bytes() == b"onnx 1"
    assert list(first.parent.iterdir()) == [first]  # no temporary file left beside it

    # Another kind, the same bytes under another name (the name is in the export's metadata),
    # and changed bytes each get an entry of their own.
    copy = tmp_path / "copy.pth"
    copy.write_bytes(b"weights")
    others = [cached_file(model, "fp32", _writer(calls)), cached_file(copy, "int8", _writer(calls))]
    model.write_bytes(b"weights, trained on")
    others.append(cached_file(model, "int8", _writer(calls)))
    assert len(calls) == 4 and len({first, *others}) == 4


def test_making_an_entry_is_said_once(cache, tmp_path, capsys):
    """The ~10 s of a first int8 or OpenVINO load are announced on stderr; a cached load is silent."""
    model = tmp_path / "wave\x1b[2J.pth"  # a file name is shown, never obeyed
    model.write_bytes(b"weights")
    calls: list = []
    made_file(model, "int8", tmp_path, _writer(calls))
    err = capsys.readouterr().err
    assert err == f"Making the int8 ONNX file of wave\\x1b[2J.pth (about 10 s; kept in {cache / 'onnx'} for the next load)\n"
    made_file(model, "int8", tmp_path, _writer(calls))
    assert capsys.readouterr().err == "" and len(calls) == 1
    made_file(model, "fp32", tmp_path, _writer(calls), cache=False)
    err = capsys.readouterr().err
    assert err.startswith("Making the ONNX export of wave") and err.endswith("(about 10 s; not cached)\n")


def test_off_unwritable_or_failed(cache, tmp_path, monkeypatch):
    model = tmp_path / "wave.pth"
    model.write_bytes(b"weights")
    calls: list = []
    # A make that fails leaves no entry (and no partial file) for the next load to trust.
    def fails(out: Path) -> None:
        out.write_bytes(b"half an export")
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        cached_file(model, "int8", fails)
    assert list((cache / "onnx").iterdir()) == []

    # FAST_NST_CACHE=0, or a cache "folder" that is a file: made into the caller's folder each time.
    blocked = tmp_path / "a file"
    blocked.write_text("")
    for setting in ("0", str(blocked)):
        monkeypatch.setenv("FAST_NST_CACHE", setting)
        assert cached_file(model, "int8", _writer(calls)) is None
        assert made_file(model, "int8", tmp_path, _writer(calls)) == tmp_path / "wave.int8.onnx"
    assert len(calls) == 2
    monkeypatch.setenv("FAST_NST_CACHE", str(cache))
    assert made_file(model, "int8", tmp_path, _writer(calls), cache=False) == tmp_path / "wave.int8.onnx"
    assert len(calls) == 3
    # A file over the caller's bound, or not a regular file, is not read for a key: make (which
    # checks it) reports it.
    assert cached_file(model, "int8", _writer(calls), max_bytes=3) is None
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    assert cached_file(fifo, "int8", _writer(calls)) is None and cached_file(tmp_path, "int8", _writer(calls)) is None
    assert len(calls) == 3 and list((cache / "onnx").iterdir()) == []


def test_default_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("FAST_NST_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "fast-nst"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder() == tmp_path / "home" / ".cache" / "fast-nst"


def test_the_key_covers_the_code_that_writes_the_file(tmp_path, monkeypatch):
    model = tmp_path / "wave.pth"
    model.write_bytes(b"weights")
    key = cache_key(model, "int8")
    assert key == cache_key(model, "int8") and len(key) == 32
    monkeypatch.setattr(export_cache, "_writers_digest", lambda: "an edited exporter")
    edited = cache_key(model, "int8")
    monkeypatch.setattr(export_cache, "__version__", "99.0")
    assert len({key, edited, cache_key(model, "int8")}) == 3


def test_least_recently_used_entries_go_beyond_the_bound(cache, tmp_path):
    folder = cache / "onnx"
    folder.mkdir(parents=True)
    now = time.time()
    ages = {"old": 7200, "older": 9000, "recent": 60, "kept": 8000}
    for name, age in ages.items():
        (folder / f"{name}.int8.onnx").write_bytes(b"x" * 100)
        os.utime(folder / f"{name}.int8.onnx", (now - age, now - age))
    export_cache._evict(folder, keep=folder / "kept.int8.onnx", max_bytes=250)
    # Oldest first until 250 bytes are left, sparing the new entry and one used minutes ago.
    assert sorted(p.name for p in folder.iterdir()) == ["kept.int8.onnx", "recent.int8.onnx"]

    # A hit marks its entry as used: it outlives older ones.
    model = tmp_path / "wave.pth"
    model.write_bytes(b"weights")
    calls: list = []
    entry = cached_file(model, "int8", _writer(calls))
    os.utime(entry, (now - 9999, now - 9999))
    assert cached_file(model, "int8", _writer(calls)) == entry and entry.stat().st_mtime > now - 60
    assert len(calls) == 1
