"""The path boundary (fast_nst.core.untrusted.paths): a FIFO, a device, a socket, or a link to one
given as an input is refused by what it is, before anything opens it (opening a FIFO blocks, a
device never ends)."""

import os
import socket
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_clean_in_process, examples, in_process, make_photo
from fast_nst.commands import eval as eval_cmd
from fast_nst.core.errors import DataError
from fast_nst.core.untrusted import input_file, input_folder, input_path, open_image


def _unblock(fifo):
    """Should a reader open ``fifo`` after all (the bug), open its other end so the test fails
    instead of hanging."""
    def writer():
        try:
            fd = os.open(fifo, os.O_WRONLY)
            os.close(fd)
        except OSError:
            pass
    timer = threading.Timer(20, writer)
    timer.daemon = True
    timer.start()
    return timer


@pytest.fixture
def specials(tmp_path):
    """{kind: path}: a FIFO, a link to /dev/zero, a socket, a folder, a file, a broken link."""
    paths = {"fifo": tmp_path / "pipe.jpg", "zero": tmp_path / "zero.pth", "socket": tmp_path / "s.jpg",
             "folder": tmp_path / "dir", "file": make_photo(tmp_path / "p.jpg"), "broken": tmp_path / "gone.jpg"}
    os.mkfifo(paths["fifo"])
    paths["zero"].symlink_to("/dev/zero")
    paths["folder"].mkdir()
    paths["broken"].symlink_to(tmp_path / "nothing")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(paths["socket"]))
    timer = _unblock(paths["fifo"])
    yield paths
    timer.cancel()
    sock.close()


WORDS = {"fifo": "is a named pipe (FIFO)", "zero": "is a character device (a link to /dev/zero)",
         "socket": "is a socket", "folder": "is a folder", "broken": "is a broken link"}


def test_each_kind_is_named(specials):
    for kind, words in WORDS.items():
        with pytest.raises(DataError, match=rf"--x .* {words.replace('(', '.').replace(')', '.')}"):
            input_file(specials[kind], "--x")
    assert input_file(specials["file"], "--x") == specials["file"]
    assert input_folder(specials["folder"], "--x") == specials["folder"]
    assert input_path(specials["folder"]) == specials["folder"] and input_path(specials["file"]) == specials["file"]
    with pytest.raises(DataError, match="is a named pipe"):
        input_path(specials["fifo"])
    with pytest.raises(DataError, match="is a file, not a folder"):
        input_folder(specials["file"], "--x")
    with pytest.raises(DataError, match="more than the limit of 10; set --cap"):
        input_file(specials["file"], "--x", max_bytes=10, fix="set --cap")


@settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(WORDS) + ["file"]), name=st.text(max_size=30))
def test_any_input_ends_in_a_path_or_one_data_error(specials, tmp_path, kind, name):
    for check in (input_file, input_folder, input_path, open_image):
        try:
            check(specials[kind]) if check is open_image else check(specials[kind], name)
        except DataError as e:
            assert "\n" not in str(e)


def test_eval_refuses_specials_by_what_they_are(specials, tmp_path, capsys):
    photo, fifo, zero = specials["file"], specials["fifo"], specials["zero"]
    cases = [(["--model_file", photo, "--video_file", fifo], "--video_file", "is a named pipe (FIFO)"),
             (["--model_file", fifo, "--image_file", photo], "Model file", "is a named pipe (FIFO)"),
             (["--model_file", zero, "--image_file", photo], "Model file", "is a character device"),
             (["--model_file", photo, "--image_file", fifo], "--image_file", "is a named pipe (FIFO)"),
             (["--model_file", photo, "--image_file", zero], "--image_file", "is a character device"),
             (["--model_file", photo, "--image_file", photo, "--style_image", fifo], "--style_image", "named pipe")]
    for args, flag, words in cases:
        code, err = in_process(capsys, eval_cmd.main, *args, "--output_file", tmp_path / "o.jpg", "--device", "cpu")
        assert_clean_in_process(code, err, flag, words)
        assert "is a folder" not in err and "has no images" not in err
