import pytest
import torch
from PIL import Image

import fast_nst
from fast_nst import load_stylizer
from fast_nst.io.checkpoint import make_checkpoint, atomic_torch_save
from fast_nst.training import load_train_config as load_config
from fast_nst.core.errors import CheckpointError, FastNSTError
from fast_nst.nets.johnson import TransformNet, TransformNetArgs


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    net = TransformNet(TransformNetArgs(base_channels=8, num_residual=2))
    cfg = load_config(None, ["style_image=s.jpg", "naming=tiny"])
    path = tmp_path_factory.mktemp("m") / "tiny.pth"
    atomic_torch_save(make_checkpoint(net, cfg, step=7), path)
    return path, net


def test_stylize_tensor_shape_range_and_equals_model(model_file):
    path, net = model_file
    s = load_stylizer(path, device="cpu")
    assert s.name == "tiny" and s.info["step"] == 7
    x = torch.rand(2, 3, 23, 41)
    y = s.stylize_tensor(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert 0 <= y.min() and y.max() <= 1
    with torch.no_grad():
        assert torch.allclose(y, net.eval()(x), atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        s.stylize_tensor(torch.rand(3, 8, 8))


@pytest.mark.parametrize("mode,size", [("RGB", (31, 17)), ("L", (9, 5)), ("RGBA", (16, 16)),
                                       ("P", (12, 20)), ("I;16", (10, 11)), ("CMYK", (7, 3))])
def test_stylize_pil_keeps_size_and_alpha(model_file, mode, size):
    s = load_stylizer(model_file[0], device="cpu")
    img = Image.new("RGB", size, (120, 60, 200)).convert(mode) if mode != "I;16" else \
        Image.new("I;16", size, 30000)
    if mode == "RGBA":
        img.putalpha(Image.linear_gradient("L").resize(size))
    out = s.stylize(img)
    assert out.size == size
    assert out.mode == ("RGBA" if mode == "RGBA" else "RGB")
    if mode == "RGBA":
        assert out.getchannel("A").tobytes() == img.getchannel("A").tobytes()


def test_package_exports():
    assert callable(fast_nst.load_stylizer) and isinstance(fast_nst.__version__, str)
    assert issubclass(CheckpointError, FastNSTError)


def test_load_stylizer_errors(tmp_path, model_file):
    with pytest.raises(CheckpointError, match="not found"):
        load_stylizer(tmp_path / "none.pth")
    if not torch.cuda.is_available():
        with pytest.raises(FastNSTError, match="CUDA is not available"):
            load_stylizer(model_file[0], device="cuda")
    with pytest.raises(FastNSTError, match="choose one of|CUDA"):
        load_stylizer(model_file[0], device="tpu")


def test_api_inputs_a_user_may_pass(model_file):
    """Found by a hunt through the API: each used to end in a bare AttributeError or TypeError
    from deep inside, or in a wrong picture."""
    from fast_nst.core.images import normalize_mode
    from fast_nst.stylize.base import OptionError

    s = load_stylizer(model_file[0], device=torch.device("cpu"))  # a torch.device, not only a name
    assert s.device == torch.device("cpu")
    with pytest.raises(FastNSTError, match="device must be a name or a torch.device, got NoneType"):
        load_stylizer(model_file[0], device=None)
    for wrong in (5, b"tiny.pth"):
        with pytest.raises(CheckpointError, match="load_stylizer takes a model's path"):
            load_stylizer(wrong)
    img = Image.new("RGB", (12, 9), (120, 60, 200))
    for wrong in ("photo.jpg", torch.rand(3, 9, 12)):
        with pytest.raises(OptionError, match="stylize takes a PIL image, got"):
            s.stylize(wrong)
    with pytest.raises(OptionError, match="options must be a StylizeOptions or a dict, got int"):
        s.stylize(img, 5)
    # mode I holding 8-bit values (img.convert("I")) is not 16-bit: it used to come out near black
    grey = img.convert("L")
    assert normalize_mode(grey.convert("I")).tobytes() == grey.convert("RGB").tobytes()
    assert normalize_mode(Image.new("I;16", (2, 2), 257 * 200)).getpixel((0, 0)) == (200, 200, 200)
    # premultiplied La: Pillow converts it only to LA (it used to raise "conversion from La to L")
    la = img.convert("RGBA").convert("La")
    assert s.stylize(la).mode == "RGBA"


def test_options_take_numpy_numbers_and_refuse_bools_as_numbers(model_file):
    import numpy as np

    from fast_nst.stylize.base import OptionError, StylizeOptions

    o = StylizeOptions(strength=np.float32(0.5), overlap=np.int64(8), max_size=np.int64(32), tile_size=np.int64(256))
    assert (o.strength, o.overlap, o.max_size, o.tile_size) == (0.5, 8, 32, 256)
    assert type(o.overlap) is int and type(o.strength) is float
    for wrong, message in (({"strength": True}, "strength must be a number, got True"),
                           ({"max_size": True}, "max_size must be a number, got True"),
                           ({"preserve_color": "no"}, "preserve_color must be True or False, got 'no'")):
        with pytest.raises(OptionError, match=message):
            StylizeOptions(**wrong)
    s = load_stylizer(model_file[0], device="cpu")
    assert s.stylize(Image.new("RGB", (40, 30)), strength=np.float64(0.25), max_size=np.int32(20)).size == (20, 15)


def test_stylize_tensor_refuses_what_is_not_a_finite_image_batch(model_file):
    """One NaN pixel spread through every instance norm: the whole output was NaN."""
    from fast_nst.stylize.base import InputError

    s = load_stylizer(model_file[0], device="cpu")
    x = torch.rand(1, 3, 16, 16)
    for bad in (float("nan"), float("inf")):
        y = x.clone()
        y[0, 1, 3, 4] = bad
        with pytest.raises(InputError, match="holds NaN or infinite values"):
            s.stylize_tensor(y)
    with pytest.raises(InputError, match="takes a torch tensor"):
        s.stylize_tensor(x.numpy())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):  # InputError is a ValueError, as before
        s.stylize_tensor(torch.rand(3, 8, 8))
