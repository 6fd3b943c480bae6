"""The web app (python -m fast_nst.app): its logic in plain Python, and the page end to end in a
real headless Chromium driven by Selenium (Debian's chromium and chromium-driver packages).

The README's screenshot (docs/images/app.png) is made with the built-in model by
docs/make_app_screenshot.py.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import sys
import urllib.request
from pathlib import Path
from typing import Optional

import pytest
import torch
from PIL import Image

from fast_nst.io.bundled import bundled_model
from fast_nst.commands.app import (APP_INSTALL_HINT, KEEP_RESULTS, UPLOAD_FORMATS, AppSession, _stylize, app_models,
                                   build_app, default_model, find_models, launch, main as app_main)
from fast_nst.core.untrusted import shown
from fast_nst.core.errors import FastNSTError
from fast_nst.io.checkpoint import atomic_torch_save, checkpoint_name, make_checkpoint
from fast_nst.nets.johnson import TransformNet, TransformNetArgs
from fast_nst.nets.multistyle import MultiStyleArgs, MultiStyleNet
from fast_nst.stylize import Stylizer
from fast_nst.training.config import train_config_from_dict

from conftest import assert_clean_in_process, in_process, make_photo, tiny_values

PHOTO_SIZE = (360, 240)


def _save_model(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = TransformNet(TransformNetArgs(base_channels=8, num_residual=1)).eval()
    values = tiny_values(path.parent, Path("train"), Path("style.jpg"), naming=path.stem)
    cfg = train_config_from_dict(values, "test")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(make_checkpoint(net, cfg, step=3), path)
    return path


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    _save_model(root / "tiny-random" / "tiny-random.pth")
    (root / "zz-broken.pth").write_bytes(b"not a model")  # listed last
    os.utime(root / "zz-broken.pth", (1e9, 1e9))  # older: the page opens the good one, the newest
    return root


# ---- the logic, without a browser ---------------------------------------------------------------

def test_find_models_lists_final_models_exports_and_unfinished_runs(tmp_path):
    _save_model(tmp_path / "wave" / "wave.pth")
    _save_model(tmp_path / "wave" / "checkpoints" / checkpoint_name(2))  # a finished run's: left out
    _save_model(tmp_path / "cut" / "checkpoints" / checkpoint_name(4))  # an unfinished run
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "wave.onnx").write_bytes(b"x")
    (tmp_path / ".hidden.pth").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    found = find_models(tmp_path)
    assert list(found) == ["cut/ (unfinished run: newest checkpoint)", "exports/wave.onnx", "wave/wave.pth"]
    assert found["cut/ (unfinished run: newest checkpoint)"] == tmp_path / "cut"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FastNSTError, match="no models found"):
        find_models(tmp_path / "empty")
    with pytest.raises(FastNSTError, match="no such folder"):
        find_models(tmp_path / "missing")


def test_a_run_folder_given_itself_is_its_model(tmp_path, capsys, monkeypatch):
    """--models RUN_FOLDER of an unfinished run offered the built-in model instead ("No models
    in ..."), though eval.py --model_file takes the folder and its parent lists it."""
    run = tmp_path / "cut"
    _save_model(run / "checkpoints" / checkpoint_name(4))
    label = "cut/ (unfinished run: newest checkpoint)"
    assert app_models(str(run)) == {label: run}
    assert "1 model(s) from" in capsys.readouterr().out
    monkeypatch.chdir(run)  # "." is named after the folder
    assert app_models(".") == {label: Path(".")}
    _save_model(run / "cut.pth")  # finished: its model, not its checkpoints
    assert app_models(str(run)) == {"cut.pth": run / "cut.pth"}



def test_the_page_opens_with_the_newest_final_model(tmp_path):
    """Not the alphabetically first (an early, barely trained run, say): the newest final model."""
    _save_model(tmp_path / "aa-early" / "aa-early.pth")
    _save_model(tmp_path / "wave" / "wave.pth")
    _save_model(tmp_path / "cut" / "checkpoints" / checkpoint_name(4))  # unfinished: never the default
    os.utime(tmp_path / "aa-early" / "aa-early.pth", (1e9, 1e9))
    os.utime(tmp_path / "wave" / "wave.pth", (2e9, 2e9))
    found = find_models(tmp_path)
    assert list(found)[0] == "aa-early/aa-early.pth" and default_model(found) == "wave/wave.pth"
    only_runs = {label: path for label, path in found.items() if path.is_dir()}
    assert default_model(only_runs) == "cut/ (unfinished run: newest checkpoint)"


def test_session_stylizes_and_explains_bad_input(models_dir, tmp_path):
    session = AppSession(find_models(models_dir), "cpu", tmp_path, max_pixels=100 * 100)
    assert session.describe("tiny-random/tiny-random.pth").kind == "one"
    photo = make_photo(tmp_path / "up" / "photo.png", (90, 60))
    out, message = session.stylize("tiny-random/tiny-random.pth", str(photo), strength=0.5)
    assert Image.open(out).size == (90, 60) and out.name == "photo_tiny-random.png"
    assert out.is_relative_to(tmp_path / "results") and message.startswith("Stylized 90 x 60 -> 90 x 60 px")
    out, _ = session.stylize("tiny-random/tiny-random.pth", str(photo), max_size=45)
    assert Image.open(out).size == (45, 30)
    for size in (0.4, -0.5, 2.5e-3):  # were cut to a whole number first: "max_size must be > 0, got 0"
        with pytest.raises(FastNSTError, match=rf"^Max size must be 0 \(the photo's size\) or at least 1 px, got {size}$"):
            session.stylize("tiny-random/tiny-random.pth", str(photo), max_size=size)
    text = tmp_path / "up" / "notes.txt"
    text.write_text("not a photo")
    with pytest.raises(FastNSTError, match=r"^notes.txt: not an image \(photos must be JPEG"):
        session.stylize("tiny-random/tiny-random.pth", str(text))
    big = make_photo(tmp_path / "up" / "big.png", (120, 100))
    with pytest.raises(FastNSTError, match=r"photo is 120 x 100 \(0.0 MP\); this app takes at most 0.01 MP"):
        session.open_photo(str(big))
    with pytest.raises(FastNSTError, match="No photo: upload one first"):
        session.stylize("tiny-random/tiny-random.pth", None)
    with pytest.raises(FastNSTError, match="strength must be between 0 and 1"):
        session.stylize("tiny-random/tiny-random.pth", str(photo), strength=2)


def test_multi_style_models_take_a_style_or_a_blend(tmp_path):
    torch.manual_seed(0)
    net = MultiStyleNet(MultiStyleArgs(2, base_channels=8, num_residual=1)).eval()
    with torch.no_grad():  # styles that differ, as trained ones do
        for p in net.norm_parameters():
            p.add_(0.5 * torch.randn_like(p))
    net.style_names = ["alpha", "beta"]
    cfg = train_config_from_dict(tiny_values(tmp_path, Path("train"), Path("s.jpg"), naming="two"), "test")
    atomic_torch_save(make_checkpoint(net, cfg, step=3), tmp_path / "two.pth")
    session = AppSession(find_models(tmp_path), "cpu", tmp_path / "work")
    info = session.describe("two.pth")
    assert (info.kind, info.styles) == ("many", ("alpha", "beta")) and "2 styles" in info.summary
    photo = str(make_photo(tmp_path / "photo.png", (40, 30)))
    beta, _ = session.stylize("two.pth", photo, style="beta")
    blend, _ = session.stylize("two.pth", photo, style="beta", blend="alpha:0.5,beta:0.5")  # the blend wins
    alpha, _ = session.stylize("two.pth", photo, style="alpha")
    assert len({Image.open(p).tobytes() for p in (alpha, beta, blend)}) == 3
    with pytest.raises(FastNSTError, match="candy"):
        session.stylize("two.pth", photo, blend="candy:1")


class _StyleImageStylizer(Stylizer):
    """Stands in for an arbitrary-style model (a trained AdaIN model needs a training run)."""

    style_input = "image"

    def __init__(self, fail: Optional[BaseException] = None):
        super().__init__(torch.device("cpu"), name="arbitrary")
        self.styles: list = []
        self.fail = fail

    def set_style(self, style, alpha=None, style_size=None):  # records what the app passes
        self.styles.append((style.size, alpha))

    def stylize_tensor(self, x):
        if self.fail:
            raise self.fail
        return 1 - x


def test_arbitrary_style_models_take_a_style_image_and_alpha(tmp_path):
    fake = _StyleImageStylizer()
    session = AppSession({"ad.pth": tmp_path / "ad.pth"}, "cpu", tmp_path / "work",
                         loader=lambda path, device: fake)
    assert session.describe("ad.pth").kind == "image"
    photo = str(make_photo(tmp_path / "photo.png", (40, 30)))
    with pytest.raises(FastNSTError, match="No style image: upload one first"):
        session.stylize("ad.pth", photo)
    style = str(make_photo(tmp_path / "s.png", (20, 24)))
    out, _ = session.stylize("ad.pth", photo, style_image=style, alpha=0.25)
    assert fake.styles == [((20, 24), 0.25)] and Image.open(out).size == (40, 30)
    assert out.name == "photo_s.png"  # named after the style image
    # PyTorch's CPU allocator raises a RuntimeError, which reached the page as a bare "Error"
    for fail in (MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                                             "can't allocate memory: you tried to allocate 40000000000000 bytes.")):
        fake.fail = fail
        with pytest.raises(FastNSTError, match="^Out of memory stylizing 40 x 30 px on cpu: set a smaller Max size"):
            session.stylize("ad.pth", photo, style_image=style)
    fake.fail = RuntimeError("a bug")  # not an allocation: not called one
    with pytest.raises(RuntimeError, match="^a bug$"):
        session.stylize("ad.pth", photo, style_image=style)


def test_loss_model_file_goes_to_every_model_load_and_is_checked_first(tmp_path, capsys):
    """--loss_model_file (arbitrary-style models' encoder weights, as in eval.py) reaches the
    loader; a missing file is one line before the app starts."""
    seen = []
    encoder = tmp_path / "vgg.pth"
    encoder.write_bytes(b"weights")
    session = AppSession({"ad.pth": tmp_path / "ad.pth"}, "cpu", tmp_path / "work", loss_model_file=encoder,
                         loader=lambda path, device, **kw: seen.append(kw) or _StyleImageStylizer())
    assert session.describe("ad.pth").kind == "image" and seen == [{"loss_model_file": encoder}]
    code = app_main(["--loss_model_file", str(tmp_path / "missing.pth"), "--models", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: --loss_model_file") and "missing.pth" in err, err


def test_a_model_file_that_fails_to_load_is_a_message(tmp_path):
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    session = AppSession(find_models(tmp_path), "cpu", tmp_path / "work")
    with pytest.raises(FastNSTError, match="^broken.pth: not a PyTorch checkpoint") as e:
        session.describe("broken.pth")
    assert str(tmp_path) not in str(e.value)  # named as the page lists it, not by the server's folders
    with pytest.raises(FastNSTError, match="Unknown model"):
        session.describe("other.pth")


class _BaseStyleImages(Stylizer):
    """An arbitrary-style stand-in that keeps Stylizer.set_style (its checks and resizes)."""

    style_input = "image"
    min_style_side = 16  # as an encoder that pools: a 1 px wide style image is refused

    def __init__(self):
        super().__init__(torch.device("cpu"), name="arbitrary")

    def _set_style_images(self, images, weights, label, alpha):
        self.shapes = [tuple(t.shape) for t in images]

    def stylize_tensor(self, x):
        return 1 - x


def test_a_thin_style_upload_is_one_line_on_the_page(tmp_path):
    fake = _BaseStyleImages()
    session = AppSession({"ad.pth": tmp_path / "ad.pth"}, "cpu", tmp_path / "work", loader=lambda path, device: fake)
    photo = str(make_photo(tmp_path / "photo.png", (40, 30)))
    thin = tmp_path / "thin.png"
    Image.new("RGB", (16, 20000)).save(thin)  # 2.9 KB: it used to show a bare "Error"
    result, download, status = _stylize(session, "ad.pth", str(photo), "", "", str(thin), 1.0, 1.0, False, 0)
    assert (result, download) == (None, None) and status.startswith("error: style image")
    assert "1 x 512 px" in status and "\n" not in status
    # the page has no style size control: the size the image needs, not an option to set
    assert "style_size" not in status and status.endswith("px or more; use a less elongated image"), status
    _stylize(session, "ad.pth", str(photo), "", "", str(make_photo(tmp_path / "s.png", (20, 24))), 1.0, 1.0, False, 0)
    assert fake.shapes == [(1, 3, 512, 427)]  # a usable style image still works


def test_a_transparent_style_upload_is_said_on_the_page(tmp_path, recwarn):
    """That a style image's transparent areas are used as white was a warning on the server's
    console only: the page's user, who uploaded the image, never saw it."""
    fake = _BaseStyleImages()
    fake._set_style_images = lambda images, weights, label, alpha: setattr(fake, "images", images)
    session = AppSession({"ad.pth": tmp_path / "ad.pth"}, "cpu", tmp_path / "work", loader=lambda path, device: fake)
    photo = str(make_photo(tmp_path / "photo.png", (40, 30)))
    cutout = Image.new("RGBA", (40, 40), (200, 0, 0, 255))
    cutout.paste((0, 0, 0, 0), (0, 0, 20, 40))  # the left half transparent (black underneath)
    cutout.save(tmp_path / "cutout.png")
    result, _, status = _stylize(session, "ad.pth", photo, "", "", str(tmp_path / "cutout.png"), 1.0, 1.0, False, 0)
    assert result and status.startswith("Stylized 40 x 30 -> 40 x 30 px with ad.pth") and "\n" not in status
    assert status.endswith(" s on cpu. Style image cutout.png has transparent areas: they are used as white "
                           "(composited onto a white background); fill them in an image editor for another "
                           "colour."), status
    assert fake.images[0][0, :, 0, 0].tolist() == [1.0, 1.0, 1.0]  # white, not the black underneath
    assert not [w for w in recwarn if "transparent" in str(w.message)]  # said once, on the page
    _, _, status = _stylize(session, "ad.pth", photo, "", "", str(make_photo(tmp_path / "s.png", (20, 24), mode="RGBA")),
                            1.0, 1.0, False, 0)
    assert status.endswith(" s on cpu."), status  # an opaque image: no note


def test_the_photo_label_names_the_formats_the_app_decodes(tmp_path):
    """The label said JPEG, PNG, WebP or BMP while any of Pillow's forty formats was decoded
    (GIF, TIFF and ICO, but also EPS, which Pillow decodes by running Ghostscript)."""
    session = AppSession({"built-in": bundled_model()}, "cpu", tmp_path / "work")
    for fmt in UPLOAD_FORMATS:
        path = make_photo(tmp_path / f"photo.{fmt.lower()}", (40, 30), fmt=fmt)
        size = session.open_photo(str(path)).size
        assert size == (40, 30) or fmt == "ICO", (fmt, size)  # an icon holds squares: 24 x 24 px
    accepted = "JPEG, PNG, WebP, BMP, GIF, TIFF or ICO"
    for fmt in ("PPM", "TGA"):
        path = make_photo(tmp_path / f"photo.{fmt.lower()}", (40, 30), fmt=fmt)
        with pytest.raises(FastNSTError, match=rf"^photo.{fmt.lower()}: not an image \(photos must be {accepted}\)$"):
            session.open_photo(str(path))
    with pytest.raises(FastNSTError, match=rf"^No style image: upload one first \({accepted}\)\.$"):
        session.open_photo(None, "style image")
    page = build_app(session)
    labels = [c["props"].get("label") for c in page.config["components"] if c["props"].get("elem_id") == "photo"]
    assert labels == ["Photo (≤ 40 MP; JPEG PNG WebP BMP GIF TIFF ICO)"], labels


class _WholeImages(Stylizer):
    """Stands in for an .onnx model that cannot tile, on a machine with 1 GiB free."""

    def __init__(self):
        super().__init__(torch.device("cpu"), name="whole")
        self.fail: Optional[Exception] = None

    bytes_per_pixel = 1 << 20  # 40 x 30 px need 1.2 GiB

    def _whole_image_memory(self, height, width):
        return height * width * self.bytes_per_pixel, 1 << 30

    def stylize_tensor(self, x):
        if self.fail:
            raise self.fail
        return 1 - x


def test_memory_advice_names_the_pages_control_not_command_line_flags(tmp_path):
    """An .onnx model that cannot tile, given a photo too large for the memory free, told the
    page's user to use --max_size or --tile_size 0, flags of eval.py the page does not have."""
    from fast_nst.stylize.onnx_tiling import OnnxTiling

    fake = _WholeImages()
    session = AppSession({"m.onnx": tmp_path / "m.onnx"}, "cpu", tmp_path / "work", loader=lambda path, device: fake)
    photo = str(make_photo(tmp_path / "photo.png", (40, 30)))
    _, _, status = _stylize(session, "m.onnx", photo, "", "", None, 1.0, 1.0, False, 0)
    assert status.startswith("error: a 40 x 30 image needs about 1.2 GiB to stylize in one piece, more than the "
                             "1.0 GiB free, and this model cannot tile"), status
    assert status.endswith("set Max size to 64 or less, or use the .pth model, which tiles."), status
    assert "--" not in status
    with pytest.raises(FastNSTError) as e:  # what an export whose graph the tiling rewrite refuses says
        OnnxTiling(b"not an onnx graph", 1000, lambda graph, arena: None, 16).sessions()
    fake.can_tile, fake.fail = True, e.value
    _, _, status = _stylize(session, "m.onnx", photo, "", "", None, 1.0, 1.0, False, 0)
    assert status.startswith("error: this .onnx model cannot stylize in tiles (") and status.endswith(
        "); set a smaller Max size to stylize it whole, or use the .pth model"), status
    assert "--" not in status


def test_upload_errors_name_the_file_never_the_servers_path(tmp_path, monkeypatch):
    """A name shown() escapes, or one long enough to be cut, left the server's temporary path in
    the message (only the exact path was replaced by the name); an image over the decoding limit
    told the page's user to set --max_image_pixels, a flag of the server's command line."""
    session = AppSession({}, "cpu", tmp_path / "work")
    upload = tmp_path / "work" / ("0123456789abcdef" * 4)  # as Gradio stores uploads: a hash folder
    data = make_photo(tmp_path / "photo.png", (40, 30)).read_bytes()
    for name in ("x" * 150 + ".png", "tab\tand\x1b.png"):
        path = upload / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[:len(data) // 2])  # truncated
        with pytest.raises(FastNSTError) as e:
            session.open_photo(str(path))
        assert str(tmp_path) not in str(e.value) and "0123456789abcdef" not in str(e.value), str(e.value)
        assert str(e.value).startswith(f"{shown(name)}: could not decode image"), str(e.value)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40 x 30 px is over it
    big = upload / "big.png"
    big.write_bytes(data)
    for limit in (1000, 600):  # Pillow's warning (1-2x the limit) and its error (beyond)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(FastNSTError) as e:
            session.open_photo(str(big), "style image")
        assert str(e.value).startswith("big.png: ") and str(e.value).endswith(
            "Shrink the style image (this app takes at most 40 MP)."), str(e.value)
        assert "--max_image_pixels" not in str(e.value)


def test_results_survive_a_folder_removed_while_listed(tmp_path, monkeypatch):
    """An old result folder removed after the listing (the upload bounding of a photo being
    shown, which runs beside a stylization, removes emptied folders) failed the listing's stat()
    (FileNotFoundError: the page said "Error" and the stylization was lost)."""
    session = AppSession({}, "cpu", tmp_path)
    results = tmp_path / "results"
    for i in range(KEEP_RESULTS + 2):
        (results / f"old{i}").mkdir(parents=True)
        os.utime(results / f"old{i}", (1000 + i, 1000 + i))
    listed = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: iter([*listed(self), self / "removed-meanwhile"]))
    target = session._result_path("photo", "wave")
    assert target.name == "photo_wave.png" and target.parent.is_dir()
    monkeypatch.undo()
    kept = sorted(p.name for p in results.iterdir())
    assert len(kept) == KEEP_RESULTS and target.parent.name in kept and "old0" not in kept, kept


def test_uploads_are_bounded_in_total_oldest_first(tmp_path):
    work = tmp_path / "work"
    old = []
    for i in range(4):  # earlier uploads, 1000 bytes each, oldest first
        path = work / f"upload{i}" / "x.bin"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"\0" * 1000)
        os.utime(path, (1000 + i, 1000 + i))
        old.append(path)
    photo = make_photo(work / "new" / "photo.png", (40, 30))  # the newest upload, in use
    cap = photo.stat().st_size + 1500
    session = AppSession({}, "cpu", work, max_work_bytes=cap)
    assert session.open_photo(str(photo)).size == (40, 30)
    assert [p.exists() for p in old] == [False, False, False, True] and photo.exists()
    assert not (work / "upload0").exists()  # emptied folders go too
    assert sum(f.stat().st_size for f in work.rglob("*") if f.is_file()) <= cap


def test_model_loads_are_bounded_and_never_hold_up_stylizing(tmp_path):
    import threading

    big = tmp_path / "big.pth"
    big.write_bytes(b"\0" * 5000)
    calls = []
    session = AppSession({"big.pth": big}, "cpu", tmp_path / "work", max_model_bytes=4096,
                         loader=lambda path, device: calls.append(path))
    with pytest.raises(FastNSTError, match="5,000 bytes, more than the limit of 4,096"):
        session.describe("big.pth")
    assert calls == []  # refused before it was read
    started, release = threading.Event(), threading.Event()

    def slow_loader(path, device):
        if path.name == "slow.pth":
            started.set()
            release.wait(30)
        return _BaseStyleImages() if path.name == "slow.pth" else _StyleImageStylizer()

    for name in ("slow.pth", "fast.pth"):
        (tmp_path / name).write_bytes(b"m")
    session = AppSession({"slow.pth": tmp_path / "slow.pth", "fast.pth": tmp_path / "fast.pth"}, "cpu",
                         tmp_path / "work", loader=slow_loader)
    session.stylizer("fast.pth")  # loaded before the slow load starts
    loading = threading.Thread(target=session.stylizer, args=("slow.pth",), daemon=True)
    loading.start()
    assert started.wait(30)
    photo = str(make_photo(tmp_path / "p.png", (20, 16)))
    style = str(make_photo(tmp_path / "s.png", (20, 16)))
    done = []
    stylizing = threading.Thread(target=lambda: done.append(session.stylize("fast.pth", photo, style_image=style)),
                                 daemon=True)
    stylizing.start()
    stylizing.join(30)  # while the other model is still loading
    release.set()
    loading.join(30)
    assert len(done) == 1 and done[0][0].is_file()


def test_command_errors_and_missing_gradio(tmp_path, capsys, monkeypatch):
    assert_clean_in_process(*in_process(capsys, app_main, "--models", tmp_path / "none"), "no such folder")
    code, err = in_process(capsys, app_main, "--models", tmp_path, "--device", "tpu")
    assert_clean_in_process(code, err, "Unknown device")
    code, err = in_process(capsys, app_main, "--models", tmp_path, "--max_upload_mb", "0")
    assert_clean_in_process(code, err, "--max_upload_mb must be at least 1, got 0")
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the extra were not installed
    with pytest.raises(FastNSTError, match="needs Gradio.*" + re.escape(APP_INSTALL_HINT)):
        build_app(AppSession({"m.pth": tmp_path / "m.pth"}, "cpu", tmp_path))


def test_the_stylize_button_is_a_named_api_endpoint(tmp_path):
    """Scripted calls name the endpoint ("/stylize"), not Gradio's generated "/lambda_3"."""
    page = build_app(AppSession({"built-in": bundled_model()}, "cpu", tmp_path))
    assert "stylize" in [d.get("api_name") for d in page.config["dependencies"]]


# ---- the page in a real browser -----------------------------------------------------------------

def _browser_paths() -> tuple[str, str]:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None)
    if not browser or not driver:
        pytest.skip("needs Chromium and its driver (Debian: apt-get install chromium chromium-driver); "
                    f"found browser={browser}, chromedriver={driver}")
    return browser, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(models_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("app-work")
    with pytest.MonkeyPatch.context() as mp:
        # As main() does, with a folder the test owns; before Gradio is imported, as some of
        # its modules read it then.
        mp.setenv("GRADIO_TEMP_DIR", str(work))
        pytest.importorskip("gradio", reason=f"the web app's extra is not installed ({APP_INSTALL_HINT})")
        page = build_app(AppSession(find_models(models_dir), "cpu", work))
        url = launch(page, "127.0.0.1", _free_port(), block=False)
        try:
            yield url
        finally:
            page.close()


def test_a_port_in_use_is_a_message(app_url, models_dir, tmp_path, capsys):
    port = int(app_url.rstrip("/").rsplit(":", 1)[1])
    code, err = in_process(capsys, app_main, "--models", models_dir, "--port", port, "--device", "cpu")
    assert_clean_in_process(code, err, f"Cannot serve on 127.0.0.1:{port}: the port is in use")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
    binary, driver_path = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,800",
                 "--force-device-scale-factor=1", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float = 15):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def _status(driver) -> str:
    return driver.execute_script("const t = document.querySelector('#status textarea'); return t ? t.value : ''")


def _upload(driver, elem_id: str, path: Path) -> None:
    from selenium.webdriver.common.by import By

    field = _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]"))
    field.send_keys(str(path))


@pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")  # Gradio's own, on pandas 3
def test_page_stylizes_a_photo_and_reports_a_non_image(app_url, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(app_url)
    _wait(browser, lambda d: "one style" in _status(d))  # the model was loaded when the page opened
    text = tmp_path / "notes.txt"
    text.write_text("this is not a photo")
    _upload(browser, "photo", text)
    _wait(browser, lambda d: _status(d).startswith("error: "))
    assert "notes.txt: not an image (photos must be JPEG, PNG, WebP, BMP, GIF, TIFF or ICO)" in _status(browser)
    assert "Traceback" not in browser.page_source

    browser.get(app_url)  # a fresh page: the upload field is empty again
    _wait(browser, lambda d: "one style" in _status(d))
    # The empty upload box shows its whole upload icon below the label (at height 120 the label
    # covered it)
    label_bottom, icon_top = browser.execute_script(
        "const box = document.querySelector('#photo'), label = box.querySelector('label, [data-testid=block-label]');"
        "const icon = [...box.querySelectorAll('svg')].find(s => !label.contains(s));"
        "return [label.getBoundingClientRect().bottom, icon.getBoundingClientRect().top]")
    assert icon_top >= label_bottom, (label_bottom, icon_top)
    photo = make_photo(tmp_path / "photo.png", PHOTO_SIZE, seed=164)  # broad colour bands
    _upload(browser, "photo", photo)
    _wait(browser, lambda d: "360 x 240 px" in _status(d))
    browser.find_element(By.CSS_SELECTOR, "#stylize").click()
    _wait(browser, lambda d: _status(d).startswith("Stylized"))
    size = _wait(browser, lambda d: d.execute_script(
        "const i = document.querySelector('#result img');"
        "return i && i.complete && i.naturalWidth ? [i.naturalWidth, i.naturalHeight] : null"))
    assert tuple(size) == PHOTO_SIZE, size
    assert _status(browser).startswith("Stylized 360 x 240 -> 360 x 240 px with tiny-random/tiny-random.pth in ")
    link = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#download a[href]"))
    with urllib.request.urlopen(link.get_attribute("href"), timeout=10) as r:
        assert Image.open(io.BytesIO(r.read())).size == PHOTO_SIZE
    scrolling = browser.execute_script(  # one file to download fits its box, without a scrollbar
        "return [...document.querySelectorAll('#download *')].filter(e => e.scrollHeight > e.clientHeight + 1"
        " && getComputedStyle(e).overflowY != 'visible').map(e => e.className)")
    assert scrolling == [], scrolling

    # A model file that fails to load: its error on the page, the style controls unchanged.
    browser.find_element(By.CSS_SELECTOR, "#model input").click()
    _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, 'li[role=option][aria-label="zz-broken.pth"]')).click()
    _wait(browser, lambda d: _status(d).startswith("error: "))
    assert "zz-broken.pth" in _status(browser) and "Traceback" not in browser.page_source, _status(browser)
