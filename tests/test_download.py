"""`python -m fast_nst.download`: its help, and what it says and leaves behind when offline.
The network is simulated: ``download._open`` (the one call that reaches it) is replaced."""

import dataclasses
import hashlib
import io
import os
import socket
import urllib.error
import zipfile
from pathlib import Path

import pytest

from conftest import assert_clean_in_process, in_process, make_photo
from fast_nst.commands import eval as eval_command
from fast_nst.commands import download as download_command
from fast_nst.core.untrusted import downloads as download
from fast_nst.io.pretrained import PRETRAINED_URL, PRETRAINED_ZIP
from fast_nst.lossnet import LOSS_NETWORKS
from fast_nst.training.coco import COCO_URL

VGG16, VGG19 = LOSS_NETWORKS["vgg16"], LOSS_NETWORKS["vgg19"]


def offline(url, start, timeout=None):
    raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_main(capsys, *args) -> tuple[int, str, str]:
    code = download_command.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ---- --help ------------------------------------------------------------------------------------

def test_help_names_each_target_its_source_and_destination(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps to the terminal width
    with pytest.raises(SystemExit) as e:
        download_command.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "what a real training run needs" not in out  # pretrained is for inference
    for url in (*(e.url for e in LOSS_NETWORKS.values()), COCO_URL, PRETRAINED_URL):
        assert url in out
    for path in (*(e.file for e in LOSS_NETWORKS.values()), "data/train2014/", "data/train2014.zip",
                 f"data/{PRETRAINED_ZIP}", "models/<name>/<name>.pth"):
        assert path in out
    assert "relative to the current directory" in out
    pretrained = out[out.index("  pretrained  "):]
    assert "inference" in pretrained.splitlines()[0] and "candy, mosaic, rain_princess, udnie" in pretrained
    dest = " ".join(out[out.index("--dest DEST"):out.index("--keep_zip  ")].split())
    assert f"{', '.join(LOSS_NETWORKS)}: the weights file" in dest and "coco:" in dest and "pretrained:" in dest
    for name, entry in LOSS_NETWORKS.items():  # every registry row is a target, with its source
        row = out[out.index(f"\n  {name} "):]
        assert row.index(entry.url) < row.index("\n  ", row.index(entry.file))


# ---- offline failures --------------------------------------------------------------------------

@pytest.mark.parametrize("args,url,zip_path,then", [
    (["pretrained"], PRETRAINED_URL, "data/pytorch_examples_saved_models.zip",
     "converts the models into models/<name>/<name>.pth"),
    (["coco"], COCO_URL, "data/train2014.zip", "unpacks it into data/train2014, then deletes it"),
    (["coco", "--dest", "big/disk"], COCO_URL, "big/disk/train2014.zip",
     "unpacks it into big/disk/train2014, then deletes it"),
])
def test_offline_failure_says_how_to_finish_by_hand(in_tmp, monkeypatch, capsys, args, url, zip_path, then):
    monkeypatch.setattr(download, "_open", offline)
    code, out, err = run_main(capsys, *args)
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.startswith(f"error: Download of {url} to {zip_path} failed: [Errno -2] Name or service not known.")
    assert "\n" not in err.rstrip("\n")  # one line, like every error
    assert "To finish by hand, download it on a machine with internet (a browser, or curl -L -o " in err
    assert f"'{url}'), put the file" in err
    assert f"put the file at {zip_path} and run this command again" in err and then in err
    assert files_under(in_tmp) == []  # no data/, big/ or models/ made just for the download



@pytest.mark.parametrize("model,hint", [
    ("models/mosaic/mosaic.pth", "python -m fast_nst.download pretrained puts candy, mosaic"),
    ("models/udnie", "python -m fast_nst.download pretrained puts"),               # the run folder
    ("elsewhere/candy/candy.pth", "python -m fast_nst.download pretrained --dest elsewhere puts"),
    ("models/adain/adain.pth", "It is the published AdaIN model: python -m fast_nst.download adain puts it there."),
    ("elsewhere/adain", "python -m fast_nst.download adain --dest elsewhere puts it there."),
    ("models/wave/wave.pth", None),                                                 # not a ready-made one
])
def test_a_missing_ready_made_model_names_the_download(in_tmp, capsys, model, hint):
    """After "Try it in a minute"'s download failed, eval.py says how to get the model."""
    photo = make_photo(in_tmp / "photo.jpg", (24, 16))
    code, err = in_process(capsys, eval_command.main, "--model_file", model, "--image_file", photo, "--device", "cpu")
    assert_clean_in_process(code, err, f"Model file not found: {model}")
    assert (hint in err) if hint else ("download" not in err)


def test_vgg_offline_failure_has_the_same_shape(in_tmp, monkeypatch, capsys):
    monkeypatch.setattr(download, "_open", offline)
    code, _, err = run_main(capsys, "vgg19")
    assert code == 1
    assert err.startswith(f"error: Download of {VGG19.url} to {VGG19.file} failed: ")
    assert "\n" not in err.rstrip("\n")
    assert f"weights: download them on a machine with internet and put the file at {VGG19.file}" in err
    assert files_under(in_tmp) == []


@pytest.mark.parametrize("dest,file", [
    (".", VGG16.file.split("/")[-1]), ("sub/", "sub/" + VGG16.file.split("/")[-1]),
    ("made", "made/" + VGG16.file.split("/")[-1]),
])
def test_a_folder_as_dest_gets_the_published_file_name(in_tmp, monkeypatch, capsys, dest, file):
    """--dest . used to end in "ValueError: PosixPath('.') has an empty name", and an existing
    folder in the advice to put the file at that folder."""
    Path("made").mkdir()
    monkeypatch.setattr(download, "_open", offline)
    code, out, err = run_main(capsys, "vgg16", "--dest", dest)
    assert code == 1 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"error: Download of {VGG16.url} to {file} failed: ") and f"put the file at {file} (" in err
    assert files_under(in_tmp) == ["made"]


@pytest.mark.parametrize("dest", ["/dev/null", "fifo"])
def test_a_device_or_pipe_as_dest_is_refused_before_the_download(in_tmp, monkeypatch, capsys, dest):
    """os.replace used to put the weights in place of a FIFO (or, as root, of /dev/null)."""
    if dest == "fifo":
        os.mkfifo(dest)
    monkeypatch.setattr(download, "_open", offline)
    code, out, err = run_main(capsys, "vgg16", "--dest", dest)
    assert (code, out) == (1, "") and err == (f"error: --dest {dest} is not a regular file (a device, pipe or "
                                              "socket); refusing to replace it. Give the path of a file.\n"), err
    assert os.path.exists("/dev/null") and not os.path.isfile(dest)


@pytest.mark.parametrize("what", ["coco", "pretrained", "adain"])
@pytest.mark.parametrize("dest, says", [
    ("/dev/null", "--dest /dev/null is not a folder (a device, pipe or socket); give the path of a folder."),
    ("fifo", "--dest fifo is not a folder (a device, pipe or socket); give the path of a folder."),
    ("file", "--dest file is a file; give the path of a folder."),
    ("file/sub", "Cannot write --dest file/sub: file is a file, not a folder."),
])
def test_every_folder_target_refuses_a_dest_that_is_no_folder_before_any_download(in_tmp, monkeypatch, capsys,
                                                                                  what, dest, says):
    """As the loss networks refuse a --dest that is no file: pretrained and adain used to download
    first (tens to hundreds of MB) and fail after; coco named a path inside the --dest."""
    os.mkfifo("fifo")
    Path("file").write_text("mine")
    monkeypatch.setattr(download, "_open", lambda url, start, timeout=None: pytest.fail(f"downloaded {url}"))
    assert run_main(capsys, what, "--dest", dest) == (1, "", f"error: {says}\n")
    assert files_under(in_tmp) == ["fifo", "file"] and Path("file").read_text() == "mine"


@pytest.mark.parametrize("content", [b"junk\n", b"", os.urandom(4096)])
def test_a_file_already_there_is_checked_and_never_trusted_by_its_name(in_tmp, monkeypatch, capsys, content):
    """A junk, empty or random file at the destination used to be reported "Saved"; training
    then refused it and advised the same download again: a loop. Offline, the file is kept
    and the error says it does not match."""
    monkeypatch.setattr(download, "_open", offline)
    Path("junk.pth").write_bytes(content)
    code, out, err = run_main(capsys, "vgg16", "--dest", "junk.pth")
    assert code == 1 and out == "" and "Traceback" not in err, err
    assert err.startswith("Checking junk.pth\nerror: junk.pth does not match the published checksum (sha256 "), err
    assert f"expected {VGG16.sha256}...) and could not be replaced (it is left as it is): Download of " in err
    assert f"{VGG16.url} to junk.pth failed" in err and "\n" not in err.split("\n", 1)[1].rstrip("\n")
    assert Path("junk.pth").read_bytes() == content and files_under(in_tmp) == ["junk.pth"]


def test_a_mismatching_file_is_replaced_and_moved_aside(in_tmp, monkeypatch, capsys):
    body = b"the published weights"
    digest = hashlib.sha256(body).hexdigest()
    monkeypatch.setitem(LOSS_NETWORKS, "vgg16", dataclasses.replace(VGG16, sha256=digest[:8]))

    class Response(io.BytesIO):
        status = 200
        headers = {"Content-Length": str(len(body))}

    monkeypatch.setattr(download, "_open", lambda url, start, timeout=None: Response(body))
    dest = Path(VGG16.file)
    dest.parent.mkdir()
    dest.write_bytes(b"")  # a failed curl -o
    code, out, err = run_main(capsys, "vgg16")
    assert code == 0 and out == f"Saved {dest}\n", err
    aside = dest.with_name(dest.name + ".mismatch")
    assert f"Checking {dest}\n" in err and f"Moved {dest} to {aside}: it does not match the published" in err
    assert dest.read_bytes() == body and aside.read_bytes() == b""
    # Run again: the file is checked, matches, and nothing is downloaded.
    monkeypatch.setattr(download, "_open", lambda url, start, timeout=None: pytest.fail(f"downloaded {url}"))
    code, out, err = run_main(capsys, "vgg16")
    assert (code, out, err) == (0, f"Already there: {dest} (matches the published checksum)\n",
                                f"Checking {dest}\n")
    dest.write_bytes(b"junk")  # a second mismatch does not overwrite the first one moved aside
    monkeypatch.setattr(download, "_open", lambda url, start, timeout=None: Response(body))
    assert run_main(capsys, "vgg16")[0] == 0
    assert aside.read_bytes() == b"" and aside.with_name(aside.name + ".1").read_bytes() == b"junk"


def test_a_file_there_without_a_published_checksum_is_kept_and_said_so(in_tmp, monkeypatch, capsys):
    monkeypatch.setitem(LOSS_NETWORKS, "vgg16", dataclasses.replace(VGG16, sha256=""))
    monkeypatch.setattr(download, "_open", lambda url, start, timeout=None: pytest.fail(f"downloaded {url}"))
    Path("mine.pth").write_bytes(b"weights")
    code, out, err = run_main(capsys, "vgg16", "--dest", "mine.pth")
    assert (code, out, err) == (0, "Already there: mine.pth (not checked: no published checksum)\n", "")


def test_failure_keeps_folders_that_were_there(in_tmp, monkeypatch, capsys):
    monkeypatch.setattr(download, "_open", offline)
    (in_tmp / "data").mkdir()
    assert run_main(capsys, "coco")[0] == 1
    assert files_under(in_tmp) == ["data"]


class Broken(io.BytesIO):
    """A response that delivers ``data`` and then loses the connection."""
    status = 200
    headers = {"Content-Length": "9999999"}

    def read(self, n=-1):
        chunk = super().read(n)
        if not chunk:
            raise ConnectionResetError(104, "Connection reset by peer")
        return chunk


def test_interrupted_download_keeps_its_data_to_resume(in_tmp, monkeypatch, capsys):
    monkeypatch.setattr(download, "_open", lambda url, start, timeout=None: Broken(b"x" * 1000))
    code, _, err = run_main(capsys, "coco")
    assert code == 1 and "Connection reset by peer" in err
    part = Path("data/train2014.zip.part")
    # "The 0.0 MB downloaded so far" said nothing for a small part
    assert f"The 1,000 bytes downloaded so far are kept in {part}; running the command again resumes from there" in err
    assert files_under(in_tmp) == ["data", str(part)] and part.read_bytes() == b"x" * 1000


def test_connection_lost_before_any_data_leaves_nothing(in_tmp, monkeypatch, capsys):
    monkeypatch.setattr(download, "_open", lambda url, start, timeout=None: Broken(b""))
    code, _, err = run_main(capsys, "pretrained")
    assert code == 1 and "Connection reset by peer" in err and "kept in" not in err
    assert files_under(in_tmp) == []


def test_zip_put_in_place_by_hand_is_used(in_tmp, monkeypatch, capsys):
    # What the failure message promises: with the zip at the named path, no download is tried.
    monkeypatch.setattr(download, "_open", offline)
    os.makedirs("data")
    with zipfile.ZipFile("data/train2014.zip", "w") as zf:
        zf.writestr("train2014/COCO_train2014_000000000009.jpg", b"not really a jpeg")
    code, out, err = run_main(capsys, "coco")
    assert code == 0, err
    assert out.startswith(f"Saved {Path('data/train2014')}")
    assert files_under(in_tmp) == ["data", "data/train2014", "data/train2014/COCO_train2014_000000000009.jpg"]


def test_style_urls_sharing_a_file_name_are_cached_apart(tmp_path, monkeypatch):
    fetched = []

    def fake_download(url, dest, **kw):
        fetched.append(url)
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_text(url)
        return Path(dest)

    monkeypatch.setattr(download, "download_url", fake_download)
    a = download.fetch_style_image("https://a.example/art/style.jpg", tmp_path)
    b = download.fetch_style_image("https://b.example/other/style.jpg", tmp_path)
    assert a != b and a.read_text().startswith("https://a.") and b.read_text().startswith("https://b.")
    assert a.name.startswith("style-") and a.suffix == ".jpg"
    assert download.fetch_style_image("https://a.example/art/style.jpg", tmp_path) == a
    assert len(fetched) == 2  # the second request for the same URL is served from the cache


def test_coco_val_split_downloads_val2014(in_tmp, monkeypatch, capsys):
    urls = []

    def fake(url, dest, **kwargs):
        urls.append(url)
        raise download.DownloadError(f"Download of {url} to {dest} failed: offline")

    monkeypatch.setattr(download, "download_url", fake)
    code, out, err = run_main(capsys, "coco", "--split", "val")
    assert code == 1 and urls == ["http://images.cocodataset.org/zips/val2014.zip"]
    assert "data/val2014.zip" in err and "unpacks it into data/val2014" in err


def test_a_waiter_locks_the_file_at_the_path_not_the_one_removed_after_use(tmp_path):
    """The holder removes the lock file after use: a process that waited on it then held a
    lock on a file nobody else would open, and a newcomer locked a fresh one beside it: both
    downloaded at once (after a failed download, when there is no file to find)."""
    import fcntl
    import threading

    dest = tmp_path / "w.pth"
    lock = tmp_path / ".w.pth.lock"
    inside, leave = threading.Event(), threading.Event()

    def waiter():
        with download._one_at_a_time(dest):
            inside.set()
            leave.wait(60)

    with open(lock, "w") as holder:  # the first process, downloading
        fcntl.flock(holder, fcntl.LOCK_EX)
        thread = threading.Thread(target=waiter)
        thread.start()
        assert not inside.wait(0.2)  # the waiter waits for the holder
        lock.unlink()  # the holder's finish: its lock file removed, then released
    try:
        assert inside.wait(60)
        with open(lock, "w") as newcomer:  # a third process now finds the waiter's lock held
            with pytest.raises(BlockingIOError):
                fcntl.flock(newcomer, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        leave.set()
        thread.join(60)
    assert not lock.exists()
