"""The image boundary (fast_nst.core.untrusted.images): pixels bounded from the header before
decoding and before every resize, style images included; each case ends in an image or one
DataError."""

import io
import struct
import zlib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import assert_clean_in_process, examples, in_process, make_photo, random_adain_net
from fast_nst.commands import eval as eval_cmd
from fast_nst.core.errors import DataError, FastNSTError
from fast_nst.core.untrusted import MAX_STYLE_PIXELS, open_image, resize_side, resize_style
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
