"""``python -m fast_nst.stylize_dataset``: a folder tree of photos stylized with a tiny random
AdaIN model (each photo its painting), the manifest, bad photos, resuming after kill -9, and
two torchrun processes (gloo, CPU) writing exactly the files of one process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from fast_nst.commands.stylize_dataset import main as stylize_main
from fast_nst.core.config import config_from_dict
from fast_nst.io.checkpoint import atomic_torch_save, make_checkpoint
from fast_nst.nets.multistyle import MultiStyleArgs, MultiStyleNet
from fast_nst.stylize.dataset import MANIFEST, PAINTING_HASHES, RUN_SETTINGS, PaintingHashes, choose

from conftest import REPO, assert_clean_in_process, examples, in_process, make_photo, random_adain_net

TORCHRUN = Path(sys.executable).with_name("torchrun")
PAINTINGS = ["a.png", "b.jpg", "sub/c.png"]


def read_manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _save(net, path: Path) -> Path:
    cfg = config_from_dict({"naming": path.stem, "model_type": net.model_type, "model_args": net.args.to_dict(),
                            "style_image": "x"}, "test")
    atomic_torch_save(make_checkpoint(net, cfg, step=0), path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A tiny AdaIN model (random VGG16 encoder to relu2_1), 9 photos of two sizes in a nested
    tree plus one unreadable file, and 3 paintings."""
    root = tmp_path_factory.mktemp("sd")
    _save(random_adain_net("relu2_1"), root / "adain.pth")
    for i in range(9):
        make_photo(root / "photos" / ("n02/deeper" if i % 3 == 0 else "n01") / f"p{i}.jpg", (40, 32) if i % 2 else (32, 40), seed=i)
    (root / "photos" / "n01" / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    for i, name in enumerate(PAINTINGS):
        make_photo(root / "paintings" / name, (48, 40), seed=40 + i)
    return root


def args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--images", str(data / "photos"), "--styles", str(data / "paintings"), "--output", str(out),
            "--model_file", str(data / "adain.pth"), "--style_size", "32", "--batch_size", "3",
            "--workers", "0", "--no_progress", *extra]


def tree(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "out"
    assert stylize_main(args(data, out, "--seed", "7")) == 0
    return out


def test_tree_manifest_and_bad_photos(data, one_process, capsys):
    files = tree(one_process)
    photos = sorted(p.relative_to(data / "photos").as_posix() for p in (data / "photos").rglob("p*.jpg"))
    assert sorted(files) == sorted([MANIFEST, PAINTING_HASHES, RUN_SETTINGS, *photos])  # the same tree, nothing else left
    records = read_manifest(one_process / MANIFEST)
    assert records[0] == {"photo": "n01/broken.jpg",
                          "error": f"{data / 'photos/n01/broken.jpg'}: not an image file Pillow can read"}
    good = records[1:]
    assert [r["photo"] for r in good] == photos and all(r["output"] == r["photo"] for r in good)
    # the painting depends on the seed and the photo's path only
    assert [r["painting"] for r in good] == [PAINTINGS[choose(7, p, 0, 3)] for p in photos]
    assert len({r["painting"] for r in good}) > 1
    assert all(r["alpha"] == 1.0 and r["seed"] == 7 and r["model_type"] == "adain" for r in good)
    from PIL import Image
    with Image.open(one_process / "n02/deeper/p0.jpg") as img:
        assert img.size == (32, 40)


def test_torchrun_two_processes_write_the_same_files_as_one(data, one_process, tmp_path):
    """Also: only process 0 reads the paintings for their checksums (every process read them all:
    minutes each at the scale of Painter by Numbers) and the others are given the result."""
    if not TORCHRUN.exists():
        pytest.skip("torchrun is not installed next to python")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HASHED": str(tmp_path / "hashed-by-")}
    counting = tmp_path / "counting.py"  # stylize_dataset, each painting it hashes listed per rank
    counting.write_text("import os, sys\n"
                        "import fast_nst.stylize.dataset as d\n"
                        "real = d.file_sha256\n"
                        "def counted(path, *a, **k):\n"
                        "    with open(os.environ['HASHED'] + os.environ['RANK'], 'a') as f:\n"
                        "        f.write(os.path.basename(path) + '\\n')\n"
                        "    return real(path, *a, **k)\n"
                        "d.file_sha256 = counted\n"
                        "from fast_nst.commands.stylize_dataset import main\n"
                        "sys.exit(main(sys.argv[1:]))\n")
    two_args = [a if a != "0" else "1" for a in args(data, out, "--seed", "7")]  # decoding in a loader worker
    r = subprocess.run([str(TORCHRUN), "--nproc_per_node=2", "--standalone", str(counting),
                        *two_args], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Wrote 9 images in " in r.stderr and " s by 2 processes" in r.stderr and r.stderr.count("error: n01/broken.jpg") + r.stderr.count(
        "broken.jpg: not an image") == 1  # one rank met it
    assert tree(out) == tree(one_process)  # every byte, the manifest and the paintings' checksums too
    assert sorted((tmp_path / "hashed-by-0").read_text().split()) == ["a.png", "b.jpg", "c.png"]
    assert not (tmp_path / "hashed-by-1").exists()


def test_kill_9_mid_run_then_rerun_finishes_every_photo_once(data, one_process, tmp_path):
    """A run killed (SIGKILL) while writing its 4th image leaves 3 images and that image's
    temporary file; the rerun removes it, skips what is done and ends with the clean run's files."""
    out = tmp_path / "out"
    killer = ("import os, signal, sys\n"
              "from fast_nst.core.files import atomic_write\n"
              "import fast_nst.stylize.dataset_run as run\n"
              "calls = []\n"
              "def save(img, path, quality=95):\n"
              "    calls.append(path)\n"
              "    if len(calls) == 4:\n"
              "        with atomic_write(path) as tmp:\n"
              "            tmp.write_bytes(b'half an image')\n"
              "            os.kill(os.getpid(), signal.SIGKILL)\n"
              "    real(img, path, quality=quality)\n"
              "real, run.save_image = run.save_image, save\n"
              "from fast_nst.commands.stylize_dataset import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", killer, *args(data, out, "--seed", "7")], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert r.returncode == -9, r.stderr[-2000:]
    left = tree(out)
    assert len([n for n in left if not n.rsplit("/", 1)[-1].startswith(".")]) == 3 and MANIFEST not in left
    assert len([n for n in left if ".tmp" in n]) == 1
    assert stylize_main(args(data, out, "--seed", "7")) == 0
    assert tree(out) == tree(one_process)
    records = read_manifest(out / MANIFEST)
    assert len(records) == len({r["photo"] for r in records}) == 10


def test_a_finished_run_writes_nothing_again(data, one_process, capsys):
    before = {p: p.stat().st_mtime_ns for p in one_process.rglob("*.jpg")}
    code, err = in_process(capsys, stylize_main, *args(data, one_process, "--seed", "7"))
    assert code == 0 and "Wrote 0 images" in err and "now holds 9 stylized images" in err
    assert {p: p.stat().st_mtime_ns for p in one_process.rglob("*.jpg")} == before


def test_multi_style_model_draws_a_style_per_photo_or_uses_one(data, tmp_path, capsys):
    torch.manual_seed(0)
    net = MultiStyleNet(MultiStyleArgs(3, base_channels=8, num_residual=1)).eval()
    net.style_names = ["candy", "mosaic", "udnie"]
    model = _save(net, tmp_path / "multi.pth")
    common = ["--images", str(data / "photos"), "--output", str(tmp_path / "o"), "--model_file", str(model),
              "--workers", "0", "--no_progress", "--per_image", "2", "--format", "png"]
    assert stylize_main(common) == 0
    good = [r for r in read_manifest(tmp_path / "o" / MANIFEST) if "error" not in r]
    assert len(good) == 18 and good[1]["output"] == "n01/p1_1.png"
    assert all(r["style"] == net.style_names[choose(0, r["photo"], r["k"], 3)] for r in good)
    fixed = common[:3] + [str(tmp_path / "f")] + common[4:] + ["--style", "mosaic", "--per_image", "1"]
    assert stylize_main(fixed) == 0
    assert {r["style"] for r in read_manifest(tmp_path / "f" / MANIFEST) if "error" not in r} == {"mosaic"}
    code, err = in_process(capsys, stylize_main, *common, "--style", "starry")
    assert_clean_in_process(code, err, "--style 'starry':", "has the styles candy, mosaic, udnie")


@pytest.mark.parametrize("changed,shown", [
    (["--seed", "8"], "--seed 7, now 8"),
    (["--seed", "7", "--alpha", "0.5", "--max_size", "30"], "--max_size 0, now 30; --alpha 1.0, now 0.5"),
    (["--seed", "7", "--model_file", "OTHER"], "the model's weights (--model_file) differ"),
])
def test_a_rerun_with_other_settings_is_refused(data, one_process, tmp_path, capsys, changed, shown):
    """Its files would be kept and the manifest would describe them with the new settings."""
    if "OTHER" in changed:
        changed[changed.index("OTHER")] = str(_save(random_adain_net("relu2_1", seed=5), tmp_path / "other.pth"))
    before = tree(one_process)
    code, err = in_process(capsys, stylize_main, *args(data, one_process, *changed))  # the later flag counts
    assert_clean_in_process(code, err, f"--output {one_process} holds a run made with other settings ({shown})",
                            "Rerun with that run's settings to finish it, or choose another --output.")
    assert tree(one_process) == before


def test_a_painting_replaced_under_its_name_is_a_changed_setting(data, tmp_path, capsys):
    """Another image saved under a painting's name used to be resumed into: the photos drawn for
    it before in one painting, the rest in another, one name in the manifest for both."""
    paintings, out = tmp_path / "paintings", tmp_path / "out"
    shutil.copytree(data / "paintings", paintings)
    make_photo(tmp_path / "photos" / "p.jpg", (32, 40))
    argv = args(data, out)
    argv[argv.index("--images") + 1], argv[argv.index("--styles") + 1] = str(tmp_path / "photos"), str(paintings)
    assert in_process(capsys, stylize_main, *argv)[0] == 0
    before = tree(out)
    make_photo(paintings / "sub/c.png", (48, 40), seed=99)
    code, err = in_process(capsys, stylize_main, *argv)
    assert_clean_in_process(code, err, f"--output {out} holds a run made with other settings (the paintings' contents "
                            "(a file under --styles was replaced or edited) differ): its files would be kept",
                            "Rerun with that run's settings to finish it, or choose another --output.")
    assert tree(out) == before
    shutil.copy(data / "paintings/sub/c.png", paintings / "sub/c.png")  # the painting back: the same run
    code, err = in_process(capsys, stylize_main, *argv)
    assert code == 0 and "Wrote 0 images" in err, err


def test_a_resumed_run_reads_only_the_paintings_changed_since(data, tmp_path, capsys, monkeypatch):
    """Every run read every painting for the checksum of their contents (tens of GB for Painter
    by Numbers); the checksums are kept in the output folder by path, size and mtime_ns."""
    import fast_nst.stylize.dataset as dataset

    paintings, out = tmp_path / "paintings", tmp_path / "out"
    shutil.copytree(data / "paintings", paintings)
    make_photo(tmp_path / "photos" / "p.jpg", (32, 40))
    argv = args(data, out)
    argv[argv.index("--images") + 1], argv[argv.index("--styles") + 1] = str(tmp_path / "photos"), str(paintings)
    read: list[str] = []
    real = dataset.file_sha256
    monkeypatch.setattr(dataset, "file_sha256", lambda path, *a, **k: read.append(Path(path).name) or real(path, *a, **k))

    def run() -> list[str]:
        read.clear()
        code, err = in_process(capsys, stylize_main, *argv)
        assert code == 0, err
        return sorted(read)

    assert run() == ["a.png", "b.jpg", "c.png"]
    record = json.loads((out / PAINTING_HASHES).read_text())
    assert record["files"]["sub/c.png"][2] == hashlib.sha256((paintings / "sub/c.png").read_bytes()).hexdigest()
    assert run() == []  # nothing changed: nothing read
    st = (paintings / "b.jpg").stat()
    os.utime(paintings / "b.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 1000))  # touched: read again
    assert run() == ["b.jpg"] and run() == []
    (out / PAINTING_HASHES).write_text('{"version": 1, "files": {"a.png": [1, 2, "not a hash"]')  # damaged
    assert run() == ["a.png", "b.jpg", "c.png"] and run() == []
    assert read_manifest(out / MANIFEST)[0]["output"] == "p.jpg"


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300),
       files=st.dictionaries(st.sampled_from(["p.png", "q.png", ""]),
                             st.lists(st.none() | st.booleans() | st.integers() | st.text(max_size=70), max_size=4)
                             | st.integers() | st.text(max_size=10), max_size=3))
def test_any_painting_checksums_record_is_used_or_ignored(tmp_path, raw, files):
    """The record of the paintings' checksums lies in the user's folder: whatever it holds, a
    painting's checksum is its bytes' (an entry that does not match its size and mtime_ns is
    not used), never an exception."""
    (tmp_path / "p.png").write_bytes(b"a painting")
    truth = hashlib.sha256(b"a painting").hexdigest()
    st_ = (tmp_path / "p.png").stat()
    for content in (raw, json.dumps({"version": 1, "files": files}).encode(), json.dumps(files).encode()):
        (tmp_path / PAINTING_HASHES).write_bytes(content)
        hashes = PaintingHashes(tmp_path)
        assert hashes.sha256(tmp_path, "p.png") == truth
        assert hashes.now == {"p.png": [st_.st_size, st_.st_mtime_ns, truth]}
    hashes.save()
    assert PaintingHashes(tmp_path).known == {"p.png": [st_.st_size, st_.st_mtime_ns, truth]}


def test_a_run_recorded_without_the_paintings_contents_resumes_and_records_them(tmp_path):
    """A run recorded by an earlier fast-nst cannot be told either way: resumed, and from then on
    a replaced painting is caught. Other paintings say so once, as other styles."""
    from fast_nst.core.errors import FastNSTError
    from fast_nst.stylize.dataset import check_run_settings, save_run_settings

    now = {"seed": 0, "styles": "names", "painting_files": "contents"}
    (tmp_path / RUN_SETTINGS).write_text(json.dumps({"seed": 0, "styles": "names"}))
    check_run_settings(tmp_path, now)
    save_run_settings(tmp_path, now)
    assert json.loads((tmp_path / RUN_SETTINGS).read_text()) == now
    with pytest.raises(FastNSTError, match=r"other settings \(the paintings' contents \(a file under --styles was "
                                           r"replaced or edited\) differ\)"):
        check_run_settings(tmp_path, {**now, "painting_files": "replaced"})
    with pytest.raises(FastNSTError, match=r"other settings \(the styles drawn from \(--styles, --style\) differ\)"):
        check_run_settings(tmp_path, {**now, "styles": "more", "painting_files": "more"})


def test_photos_whose_names_clash_get_a_file_each(data, tmp_path, capsys):
    """x.jpg, x.JPG and x_jpg.jpg: three files (x.JPG's used to overwrite x.jpg's, and x_jpg.jpg's
    to be taken for done)."""
    photos = tmp_path / "photos"
    for i, name in enumerate(["x.jpg", "x.JPG", "x_jpg.jpg"]):
        make_photo(photos / name, (32, 40), seed=i)
    argv = args(data, tmp_path / "out")
    argv[argv.index("--images") + 1] = str(photos)
    code, err = in_process(capsys, stylize_main, *argv)
    assert code == 0 and "Wrote 3 images" in err, err
    assert {r["photo"]: r["output"] for r in read_manifest(tmp_path / "out" / MANIFEST)} == {
        "x.JPG": "x_jpg_2.jpg", "x.jpg": "x_jpg_3.jpg", "x_jpg.jpg": "x_jpg.jpg"}


def test_a_too_small_painting_skips_the_photos_drawn_for_it(data, tmp_path, capsys):
    """A painting of 1 x 60 px used to end the whole run in a traceback."""
    paintings = tmp_path / "paintings"
    make_photo(paintings / "ok.png", (48, 40), seed=9)
    make_photo(paintings / "thin.png", (1, 60), seed=10)
    argv = args(data, tmp_path / "out")
    argv[argv.index("--styles") + 1] = str(paintings)
    code, err = in_process(capsys, stylize_main, *argv)
    assert code == 0, err
    photos = sorted(p.relative_to(data / "photos").as_posix() for p in (data / "photos").rglob("p*.jpg"))
    thin = {p for p in photos if ["ok.png", "thin.png"][choose(0, p, 0, 2)] == "thin.png"}
    assert thin and thin != set(photos)  # the draw of seed 0 gives both
    records = read_manifest(tmp_path / "out" / MANIFEST)
    assert {r["photo"] for r in records if "error" in r} == thin | {"n01/broken.jpg"}
    assert {r["photo"] for r in records if "error" not in r} == set(photos) - thin
    assert err.count("its painting thin.png is 1 x 32 px at --style_size 32: style images need at least 4 px "
                     "per side (skipped)") == len(thin)


def test_the_pixel_limit_is_an_option_here_too(data, tmp_path, capsys):
    """The message of a photo over the limit advises --max_image_pixels: it must exist here."""
    from PIL import Image
    before = Image.MAX_IMAGE_PIXELS
    code, err = in_process(capsys, stylize_main, *args(data, tmp_path / "out", "--max_image_pixels", "1000"))
    assert code == 0 and "Wrote 0 images" in err, err
    assert err.count("larger than the decompression-bomb limit of 1000 pixels. If you trust this file, raise "
                     "the limit with --max_image_pixels N") == 9
    assert Image.MAX_IMAGE_PIXELS == before  # given back to this process


def test_the_default_model_missing_names_its_download(data, tmp_path, capsys, monkeypatch):
    """The docs run it without --model_file after `download adain`: without that download, the
    error says which command makes models/adain/adain.pth."""
    monkeypatch.chdir(tmp_path)
    argv = args(data, tmp_path / "out")
    i = argv.index("--model_file")
    del argv[i:i + 2]
    code, err = in_process(capsys, stylize_main, *argv)
    assert_clean_in_process(code, err, "Model file not found: models/adain/adain.pth. It is the published AdaIN "
                                       "model: python -m fast_nst.download adain puts it there.")
    assert not (tmp_path / "out").exists()


def test_a_model_url_is_fetched_as_eval_fetches_it(data, tmp_path, capsys, monkeypatch):
    """--model_file takes an hf:// reference or URL like eval.py (it was made a Path:
    "Model file not found: hf:/owner/repo/adain.pth"); the manifest records what was given."""
    from fast_nst.commands import stylize_dataset as command

    fetched = []
    monkeypatch.setattr(command, "local_model_file", lambda ref: fetched.append(ref) or data / "adain.pth")
    argv = args(data, tmp_path / "out")
    argv[argv.index("--model_file") + 1] = "hf://owner/repo/adain.pth"
    code, err = in_process(capsys, stylize_main, *argv)
    assert code == 0, err
    assert fetched == ["hf://owner/repo/adain.pth"]
    records = [r for r in read_manifest(tmp_path / "out" / MANIFEST) if "error" not in r]
    assert records and all(r["model"] == "hf://owner/repo/adain.pth" for r in records)


@pytest.mark.parametrize("extra,message", [
    (["--styles", None], "is an arbitrary-style (AdaIN) model: give --styles PAINTINGS_DIR"),
    (["--alpha", "1.5"], "--alpha: alpha must be between 0"),
    (["--output", "INSIDE"], "is inside --images"),
    # Its outputs joined the paintings: any rerun, even one resuming it, was refused.
    (["--output", "IN_STYLES"], "is inside --styles"),
    # n02 inside n02/deeper's output: n02/deeper/p0.jpg was taken for p0.jpg's finished output.
    (["--output", "HOLDS_IMAGES"], "/n02/deeper is inside --output"),
    (["--output", "LINK_TO_STYLES"], "out is --styles"),
    (["--output", "A_FILE"], "is a file, not a folder; give a folder for the stylized photos."),
    (["--output", "UNDER_A_FILE"], "cannot write into --output"),
])
def test_mistakes_are_one_line(data, tmp_path, capsys, extra, message):
    argv = args(data, tmp_path / "out")
    if extra[0] in argv and extra[1] is None:
        i = argv.index(extra[0])
        del argv[i:i + 2]
    elif extra[1] == "INSIDE":
        argv[argv.index("--output") + 1] = str(data / "photos" / "stylized")
    elif extra[1] == "IN_STYLES":
        argv[argv.index("--output") + 1] = str(data / "paintings" / "stylized")
    elif extra[1] == "HOLDS_IMAGES":
        argv[argv.index("--images") + 1] = str(data / "photos" / "n02" / "deeper")
        argv[argv.index("--output") + 1] = str(data / "photos" / "n02")
    elif extra[1] == "LINK_TO_STYLES":
        (tmp_path / "out").symlink_to(data / "paintings")
    elif extra[1] == "UNDER_A_FILE":
        (tmp_path / "out").write_text("mine")
        argv[argv.index("--output") + 1] = str(tmp_path / "out" / "sub")
    elif extra[1] == "A_FILE":
        (tmp_path / "out").write_text("mine")
        argv[argv.index("--output") + 1] = str(tmp_path / "out")
    else:
        argv += extra
    before = tree(data)
    code, err = in_process(capsys, stylize_main, *argv)
    assert_clean_in_process(code, err, message)
    assert tree(data) == before
    out = tmp_path / "out"
    assert not out.exists() or out.is_symlink() or out.read_text() == "mine"


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300), recorded=st.dictionaries(st.sampled_from(["seed", "alpha", "weights", "max_size",
                                                                              "x"]),
                                                             st.none() | st.integers() | st.text(max_size=20),
                                                             max_size=5))
def test_any_settings_file_ends_in_a_pass_or_one_error(tmp_path, raw, recorded):
    """The run's settings file lies in the user's folder: whatever it holds, the check passes
    (the same settings) or raises one FastNSTError, never another exception."""
    from fast_nst.core.errors import FastNSTError
    from fast_nst.stylize.dataset import check_run_settings

    now = {"seed": 0, "alpha": 1.0, "weights": "w", "max_size": None}
    for content in (raw, json.dumps(recorded).encode(), json.dumps(now).encode()):
        (tmp_path / RUN_SETTINGS).write_bytes(content)
        try:
            check_run_settings(tmp_path, now)
        except FastNSTError as e:
            assert "\n" not in str(e) and len(str(e)) < 2000
    check_run_settings(tmp_path, now)  # the last one written: the same settings


# Characters that end a line for str.splitlines() but that json.dumps(ensure_ascii=False) kept.
LINE_ENDS = ["\u2028", "\u2029", "\x85"]


def test_photo_names_that_end_lines_elsewhere_keep_one_manifest_line_each(data, tmp_path, capsys):
    """A photo named with U+2028 (or U+2029, U+0085) used to end the run in a traceback after all
    the work, with no manifest (every rerun the same); one whose name is not UTF-8 likewise."""
    photos = tmp_path / "photos"
    names = [f"a{c}b.jpg" for c in LINE_ENDS] + [os.fsdecode(b"bad\xff.jpg")]
    for i, name in enumerate(names):
        make_photo(photos / name, (32, 40), seed=i)
    argv = args(data, tmp_path / "out")
    argv[argv.index("--images") + 1] = str(photos)
    code, err = in_process(capsys, stylize_main, *argv)
    assert code == 0 and "Wrote 4 images" in err, err
    text = (tmp_path / "out" / MANIFEST).read_text(encoding="utf-8")
    assert text.isascii() and len(text.splitlines()) == len(text.split("\n")) - 1 == 4
    assert [r["photo"] for r in read_manifest(tmp_path / "out" / MANIFEST)] == sorted(names)


def test_parts_written_before_the_escape_merge_too(tmp_path):
    """A part of an earlier version holds U+2028 as it is; its manifest line escapes it."""
    from fast_nst.stylize.dataset import merge_manifest, part_path

    part = part_path(tmp_path, 0, 1)
    part.parent.mkdir()
    records = [{"photo": f"a{c}é.jpg", "k": 0, "style": "", "output": f"a{c}é.jpg"} for c in LINE_ENDS]
    part.write_text("".join(f"0\tok\t{json.dumps(r, ensure_ascii=False)}\n" for r in records), encoding="utf-8")
    assert merge_manifest(tmp_path, 1)[1:] == (3, 0)
    text = (tmp_path / MANIFEST).read_text(encoding="utf-8")
    assert "\\u2028" in text and "é" in text and read_manifest(tmp_path / MANIFEST) == records
    assert not part.parent.exists()


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(photos=st.lists(st.text(st.characters(blacklist_categories=()), min_size=1, max_size=12), min_size=1,
                       max_size=6, unique=True),
       errors=st.lists(st.text(st.characters(blacklist_categories=()) | st.sampled_from(LINE_ENDS), max_size=20),
                       min_size=6, max_size=6))
def test_any_names_and_errors_come_back_from_the_manifest(tmp_path, photos, errors):
    """Whatever the photos' names (surrogates, line ends) and error texts, every record is one
    line of the manifest, read back by str.splitlines() as by a split at "\\n"."""
    from fast_nst.stylize.dataset import DatasetPlan, merge_manifest, write_part

    photos = sorted(photos)
    plan = DatasetPlan(tmp_path, tmp_path / "out", [[p] for p in photos], {p: [] for p in photos})
    bad = dict(zip(photos, errors))
    write_part(plan, range(len(photos)), bad, {}, 0, 1)
    assert merge_manifest(plan.output, 1)[1:] == (0, len(photos))
    text = (plan.output / MANIFEST).read_text(encoding="utf-8")
    assert text.splitlines() == text.split("\n")[:-1]
    assert [json.loads(line) for line in text.splitlines()] == [{"photo": p, "error": bad[p]} for p in photos]


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300) | st.lists(st.tuples(st.integers(-5, 10 ** 20), st.sampled_from(["ok", "bad", "x"]),
                                                         st.text(max_size=30)), max_size=5).map(
    lambda rows: "".join(f"{j}\t{kind}\t{{{body}}}\n" for j, kind, body in rows).encode("utf-8", "surrogatepass")))
def test_any_part_file_ends_in_a_manifest_or_one_error(tmp_path, raw):
    """A part lies in the user's folder: whatever it holds, the merge writes a manifest of JSON
    lines or raises one FastNSTError, never another exception."""
    from fast_nst.core.errors import FastNSTError
    from fast_nst.stylize.dataset import merge_manifest, part_path

    part_path(tmp_path, 0, 1).parent.mkdir(exist_ok=True)
    part_path(tmp_path, 0, 1).write_bytes(raw)
    try:
        merge_manifest(tmp_path, 1)
    except FastNSTError as e:
        assert "\n" not in str(e) and "run the same command again" in str(e)
        return
    assert all(isinstance(r, dict) for r in read_manifest(tmp_path / MANIFEST))


def test_max_size_shrinks_but_never_enlarges(data, tmp_path, capsys):
    """--max_size 30 used to write a 20 x 16 photo at 30 x 24 (and a large --max_size ran out of
    memory), where every other command only shrinks."""
    from PIL import Image
    make_photo(tmp_path / "photos" / "big.jpg", (40, 32), seed=1)
    make_photo(tmp_path / "photos" / "small.jpg", (20, 16), seed=2)
    argv = args(data, tmp_path / "out", "--max_size", "30", "--format", "png")
    argv[argv.index("--images") + 1] = str(tmp_path / "photos")
    code, err = in_process(capsys, stylize_main, *argv)
    assert code == 0 and "Wrote 2 images" in err, err
    sizes = {}
    for name in ("big", "small"):
        with Image.open(tmp_path / "out" / f"{name}.png") as img:
            sizes[name] = img.size
    assert sizes == {"big": (30, 24), "small": (20, 16)}


@pytest.fixture(scope="module")
def other_models(tmp_path_factory) -> dict[str, Path]:
    """A multi-style model (candy, mosaic, udnie) and a one-style model, both tiny."""
    from fast_nst.nets.johnson import TransformNet, TransformNetArgs
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    multi = MultiStyleNet(MultiStyleArgs(3, base_channels=8, num_residual=1)).eval()
    multi.style_names = ["candy", "mosaic", "udnie"]
    return {"multi": _save(multi, root / "multi.pth"),
            "one": _save(TransformNet(TransformNetArgs(base_channels=8, num_residual=1)).eval(), root / "one.pth")}


@pytest.mark.parametrize("model,extra,message", [
    ("multi", ["--alpha", "0.5"], "--alpha is for AdaIN models; MODEL is a johnson_multi model: leave --alpha out."),
    ("one", ["--style_size", "256"], "--style_size is for AdaIN models; MODEL is a johnson model"),
    ("one", ["--loss_model_file", "vgg.pth"], "--loss_model_file is for AdaIN models"),
    ("one", ["--per_image", "3"], "--per_image 3 would write 3 identical files per photo: MODEL has one style."),
    ("multi", ["--per_image", "2", "--style", "mosaic"], "--per_image 2 would write 2 identical files per photo: "
                                                          "--style 'mosaic' fixes the style."),
    ("adain", ["--per_image", "2", "--styles", "ONE_PAINTING"], "holds one painting"),
])
def test_flags_that_would_change_nothing_are_refused(data, other_models, tmp_path, capsys, model, extra, message):
    """They were accepted and ignored (--per_image: K identical files per photo)."""
    path = data / "adain.pth" if model == "adain" else other_models[model]
    argv = ["--images", str(data / "photos"), "--output", str(tmp_path / "out"), "--model_file", str(path),
            "--workers", "0", "--no_progress", *extra]
    if "ONE_PAINTING" in argv:
        make_photo(tmp_path / "one" / "p.png", (48, 40))
        argv[argv.index("ONE_PAINTING")] = str(tmp_path / "one")
    code, err = in_process(capsys, stylize_main, *argv)
    assert_clean_in_process(code, err, message.replace("MODEL", str(path)))
    assert not (tmp_path / "out").exists()
