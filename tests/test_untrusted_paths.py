"""The path boundary (fast_nst.core.untrusted.paths): a FIFO, a device, a socket, or a link to one
given as an input is refused by what it is, before anything opens it (opening a FIFO blocks, a
device never ends). The names of the files in a folder given as input are outside text too."""

import hashlib
import os
import socket
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_clean_in_process, examples, in_process, make_photo
from fast_nst.commands import eval as eval_cmd
from fast_nst.core.errors import DataError
from fast_nst.core.untrusted import file_sha256, input_file, input_folder, input_path, open_image


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


def test_a_files_sha256_is_read_bounded(specials):
    """What stylize_dataset fingerprints its paintings with: the bytes' SHA-256, a FIFO or device
    refused unopened, a file over the limit refused by its size."""
    data = specials["file"].read_bytes()
    assert file_sha256(specials["file"], "--x", len(data)) == hashlib.sha256(data).hexdigest()
    with pytest.raises(DataError, match=rf"^--x .*p.jpg is {len(data):,} bytes, more than the limit of "
                                        rf"{len(data) - 1:,}; shrink it\.$"):
        file_sha256(specials["file"], "--x", len(data) - 1, "shrink it")
    for kind, words in WORDS.items():
        with pytest.raises(DataError, match=words.replace("(", ".").replace(")", ".")):
            file_sha256(specials[kind], "--x", 1 << 20)


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


def test_eval_on_a_folder_shows_file_names_and_writes_plain_output_names(tmp_path, capsys):
    """File names in a folder are outside text: eval.py printed them raw ("Saved ...", and each
    failing file's error line), and its outputs kept an ESC in their names."""
    import torch

    from fast_nst.io.checkpoint import make_checkpoint
    from fast_nst.nets.johnson import TransformNet, TransformNetArgs
    from fast_nst.training import load_train_config

    model = tmp_path / "wave.pth"
    cfg = load_train_config(None, ["style_image=styles/wave.jpg", "naming=wave"])
    torch.save(make_checkpoint(TransformNet(TransformNetArgs(base_channels=1, num_residual=1)), cfg, step=1), model)
    photos = tmp_path / "photos"
    for name in ("x\x1b]0;TITLE\x07.jpg", "x\x1b[31m.jpg", "x\x07[31m.jpg", "café.jpg"):  # two plain as x_[31m
        make_photo(photos / name, (20, 16))
    (photos / "y\x1b[2K\rerror: forged.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    capsys.readouterr()
    assert eval_cmd.main(["--model_file", str(model), "--image_file", str(photos), "--output_file", f"{out}/",
                          "--device", "cpu"]) == 1
    printed = capsys.readouterr()
    for text in (printed.out, printed.err):
        assert "\x1b" not in text and "\r" not in text and "\x07" not in text, ascii(text)
    assert printed.err.count("\n") == 1 and printed.err.startswith("error: y\\x1b[2K\\x0derror: forged.jpg: ")
    assert sorted(p.name for p in out.iterdir()) == ["café_wave.jpg", "x_[31m_jpg_2_wave.jpg",
                                                   "x_[31m_jpg_wave.jpg", "x_]0;TITLE__wave.jpg"]
    assert "Saved " + str(out / "café_wave.jpg") in printed.out
