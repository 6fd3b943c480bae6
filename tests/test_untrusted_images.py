"""The image boundary (fast_nst.core.untrusted.images): pixels bounded from the header before
decoding and before every resize, style images included; each case ends in an image or one
DataError. Style images' transparency becomes white wherever one is read."""

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import assert_clean_in_process, examples, in_process, make_photo, random_adain_net
from fast_nst.commands import eval as eval_cmd
from fast_nst.core.errors import DataError, FastNSTError
from fast_nst.core.images import pil_to_tensor
from fast_nst.core.untrusted import MAX_STYLE_PIXELS, open_image, resize_side, resize_style, style_rgb
from fast_nst.stylize.torch_stylizer import TorchStylizer

LIMIT = 10_000  # pixels: generated files stay tiny, declared sizes go far past it
PROPERTY = settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _png(width: int, height: int, tail: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + tail


def _gif(width: int, height: int, tail: bytes) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + tail


def _bmp(width: int, height: int, tail: bytes) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + len(tail), 0, 0, 14 + len(info)) + info + tail


def _jpeg(width: int, height: int, tail: bytes) -> bytes:
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"".join(bytes([i, 0x11, 0]) for i in (1, 2, 3))
    return b"\xff\xd8\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + tail


HEADERS = {"png": _png, "gif": _gif, "bmp": _bmp, "jpeg": _jpeg}


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LIMIT)


@PROPERTY
@given(kind=st.sampled_from(sorted(HEADERS)), width=st.integers(1, 65535), height=st.integers(1, 65535),
       tail=st.binary(max_size=200))
def test_declared_sizes_are_bounded_before_decoding(tmp_path, small_limit, kind, width, height, tail):
    path = tmp_path / f"x.{kind}"
    path.write_bytes(HEADERS[kind](width, height, tail))
    try:
        img = open_image(path)
    except DataError as e:
        assert "Traceback" not in str(e) and "\n" not in str(e)
        return
    assert img.width * img.height <= LIMIT and img.mode in ("RGB", "RGBA")


@PROPERTY
@given(data=st.binary(max_size=300))
def test_random_bytes_end_in_an_image_or_one_data_error(tmp_path, small_limit, data):
    path = tmp_path / "x.png"
    path.write_bytes(data)
    with pytest.raises(DataError):
        open_image(path)


@PROPERTY
@given(cut=st.integers(0, 300))
def test_truncated_files_end_in_an_image_or_one_data_error(tmp_path, small_limit, cut):
    full = io.BytesIO()
    Image.new("RGB", (60, 40), (200, 10, 10)).save(full, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(full.getvalue()[:cut])
    try:
        assert open_image(path).size == (60, 40)
    except DataError:
        pass


@settings(max_examples=examples(60), deadline=None)
@given(width=st.integers(1, 64), height=st.integers(1, 64), size=st.one_of(st.none(), st.integers(1, 100_000)),
       side=st.sampled_from(["shorter", "longer"]))
def test_resizes_are_bounded_before_the_work(width, height, size, side):
    img = Image.new("RGB", (width, height))
    try:
        out = resize_side(img, size, side, LIMIT, "the image", "lower its size")
    except DataError as e:
        assert f"more than the limit of {LIMIT:,} pixels; lower its size" in str(e)
        return
    assert out.width * out.height <= LIMIT
    if size is not None:
        assert (min if side == "shorter" else max)(out.size) == size


# -- the instances: a 2.9 KB PNG of 16 x 20000 px, and --style_size 30000 ------------------------

@pytest.fixture(scope="module")
def thin_style(tmp_path_factory):
    path = tmp_path_factory.mktemp("thin") / "thin.png"
    Image.new("RGB", (16, 20000), (30, 60, 90)).save(path)
    assert path.stat().st_size < 4000
    return path


@pytest.fixture(scope="module")
def adain_stylizer():
    return TorchStylizer(random_adain_net("relu2_1"), torch.device("cpu"))


def test_a_thin_style_image_is_refused_before_it_is_resized(thin_style, adain_stylizer):
    stylizer = adain_stylizer
    with pytest.raises(FastNSTError, match=r"style image of 1 x 512 px: style images need at least"):
        stylizer.set_style(thin_style)  # was (shorter side 512: 512 x 640000 px) a MemoryError traceback
    with pytest.raises(DataError, match=r"is 30000 x 30000 px .* more than the limit of 4,194,304 pixels; "
                                        r"lower style_size \(--style_size\)"):
        stylizer.set_style(Image.new("RGB", (40, 40)), style_size=30000)
    with pytest.raises(DataError, match="2100 x 2100 px"):  # style_size None: the image as it is
        stylizer.set_style(Image.new("RGB", (2100, 2100)), style_size=None)


def test_a_thin_style_image_is_told_the_size_it_needs_without_an_option_it_may_not_have(thin_style,
                                                                                        adain_stylizer):
    """The message said "(resize it with style_size)", also in the web app, which has no such control:
    it says the longest side at which the image would do, and eval.py adds its option."""
    least = adain_stylizer.min_style_side
    fits = -(-least * 20000 // 16)
    with pytest.raises(FastNSTError) as caught:
        adain_stylizer.set_style(thin_style)
    assert str(caught.value) == (f"style image of 1 x 512 px: style images need at least {least} px per side, which "
                                 f"this one has at a longest side of {fits} px or more; use a less elongated image")
    assert adain_stylizer.set_style(thin_style, style_size=fits) is None  # it does, at that size
    with pytest.raises(FastNSTError, match=rf"^style image of 1 x 1 px: .* {least} px or more; use a larger or less "):
        adain_stylizer.set_style(Image.new("RGB", (1, 1)), style_size=None)
    with pytest.raises(FastNSTError, match=r"^style image of 1 x 512 px: style images need at least \d+ px per side; "
                                           r"use a less elongated image$"):  # no size within the pixel limit
        adain_stylizer.set_style(Image.new("RGB", (1, 2_000_000)))


def test_eval_refuses_a_thin_style_image_in_one_line(thin_style, adain_stylizer, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(eval_cmd, "load_stylizer", lambda *a, **k: adain_stylizer)
    photo = make_photo(tmp_path / "p.jpg")
    for extra, words in (([], "need at least"), (["--style_size", "30000"], "more than the limit of 4,194,304 pixels")):
        code, err = in_process(capsys, eval_cmd.main, "--model_file", "m.pth", "--image_file", photo,
                               "--style_image", thin_style if not extra else photo, *extra,
                               "--output_file", tmp_path / "o.jpg")
        assert_clean_in_process(code, err, words, "style_size")
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o.jpg").exists()
    fits = -(-adain_stylizer.min_style_side * 20000 // 16)
    code, err = in_process(capsys, eval_cmd.main, "--model_file", "m.pth", "--image_file", photo,
                           "--style_image", thin_style, "--output_file", tmp_path / "o.jpg")
    assert err.strip().endswith(f"use a less elongated image, or --style_size {fits}"), err


def test_training_style_size_is_bounded_too(thin_style):
    with pytest.raises(FastNSTError, match="at style_size 30000 is 30000 x 30000 px"):
        resize_style(Image.new("RGB", (50, 50)), 30000, "longer", "s.png", "style_size")
    assert resize_style(Image.new("RGB", (50, 100)), 256, "longer", "s.png", "style_size").size == (128, 256)
    assert MAX_STYLE_PIXELS == 2048 * 2048


# -- transparency in style images: composited onto white, everywhere one is read ----------------

def _see_through(size=(40, 32)) -> Image.Image:
    """RGBA: the left half transparent over black (what editors store there), a half-transparent
    column, the rest an opaque colour."""
    w, h = size
    arr = np.zeros((h, w, 4), np.uint8)
    arr[:, w // 2:] = (200, 50, 20, 255)
    arr[:, w // 2] = (0, 0, 200, 128)
    return Image.fromarray(arr, "RGBA")


def _on_white(img: Image.Image) -> np.ndarray:
    """What compositing ``img`` (RGBA) onto white gives, in float: a * colour + (1 - a) * 255."""
    arr = np.asarray(img, np.float64)
    a = arr[..., 3:] / 255
    return arr[..., :3] * a + 255 * (1 - a)


@pytest.fixture(scope="module")
def see_through_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("alpha") / "cutout.png"
    _see_through().save(path)
    return path


def test_a_transparent_style_image_is_composited_onto_white_with_one_warning():
    """Its transparent half used to be read as the black stored under it."""
    img = _see_through()
    with pytest.warns(UserWarning, match=r"^style image cutout.png has transparent areas: they are used as white") \
            as seen:
        out = style_rgb(img, "cutout.png")
    assert len(seen) == 1 and out.mode == "RGB"
    assert np.abs(np.asarray(out, np.float64) - _on_white(img)).max() <= 1
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((39, 0)) == (200, 50, 20)
    opaque = Image.new("RGBA", (8, 8), (10, 20, 30, 255))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing transparent: nothing said, nothing changed
        assert style_rgb(opaque, "x").tobytes() == opaque.convert("RGB").tobytes()
        assert style_rgb(_see_through(), warn=False).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["LA", "P", "PNG-tRNS-RGB", "PNG-tRNS-L"])
def test_other_kinds_of_transparency_are_white_too(tmp_path, mode):
    """Grey with alpha, a palette with a transparent index, a PNG's transparent colour."""
    base = Image.new("L", (6, 4), 0)
    base.paste(180, (3, 0, 6, 4))
    if mode == "LA":
        img = Image.merge("LA", [base, base.point(lambda v: 255 if v else 0)])
    elif mode == "P":
        img = base.convert("P")
        img.info["transparency"] = img.getpixel((0, 0))
    else:
        path = tmp_path / "t.png"
        (base.convert("RGB") if mode.endswith("RGB") else base).save(
            path, transparency=(0, 0, 0) if mode.endswith("RGB") else 0)
        img = open_image(path)
    with pytest.warns(UserWarning, match="transparent areas"):
        out = style_rgb(img, "t.png")
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((5, 3)) == (180, 180, 180)


@PROPERTY
@given(data=st.binary(min_size=4 * 6, max_size=4 * 6))
def test_any_pixels_composite_as_alpha_says(data):
    img = Image.frombytes("RGBA", (3, 2), data)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = style_rgb(img, "x")
    assert out.mode == "RGB" and np.abs(np.asarray(out, np.float64) - _on_white(img)).max() <= 1
    assert len(seen) == (min(data[3::4]) < 255)


def test_every_reader_of_style_images_makes_transparency_white(see_through_file, tmp_path, monkeypatch):
    """Stylizing (eval, the web app, evaluate), training, optimize, stylize_dataset and the
    report's style loss read one image alike: the transparent half white, not black."""
    from fast_nst.gatys import _as_image
    from fast_nst.report.measure import load_style
    from fast_nst.stylize.base import style_images
    from fast_nst.stylize.dataset_run import DatasetSettings, _Chunks
    from fast_nst.training.config import train_config_from_dict
    from fast_nst.training.setup import load_style_tensor
    from types import SimpleNamespace
    from conftest import tiny_values

    want = torch.from_numpy(_on_white(_see_through())).permute(2, 0, 1).float() / 255
    said = []
    monkeypatch.setattr(warnings, "warn", lambda message, *a, **k: said.append(str(message)))
    cfg = train_config_from_dict(tiny_values(tmp_path / "m", tmp_path, see_through_file, style_size=40,
                                                naming="m"), "test")
    entry = SimpleNamespace(name="m", style_note="", style_path=see_through_file,
                            settings=SimpleNamespace(style_size=40, style_layers=("relu1_2",), content_layers=("relu1_2",),
                                                     content_target="photo"))
    read = {"style_images (path)": lambda: pil_to_tensor(style_images(see_through_file)[0][0]),
            "style_images (PIL image)": lambda: pil_to_tensor(style_images(_see_through())[0][0]),
            "training": lambda: load_style_tensor(cfg)[0],
            "optimize": lambda: pil_to_tensor(_as_image(see_through_file, style=True)),
            "stylize_dataset": lambda: _Chunks(None, [], see_through_file.parent,
                                               DatasetSettings(style_size=40))._painting("cutout.png"),
            "report": lambda: load_style(entry, "vgg16")[0]}
    for reader, read_it in read.items():
        said.clear()
        got = read_it()
        assert got.shape == want.shape and (got - want).abs().max() <= 1.5 / 255, reader
        warned = reader not in ("stylize_dataset", "report")  # thousands of paintings; said at training
        assert len(said) == warned and all("transparent areas" in s for s in said), (reader, said)
