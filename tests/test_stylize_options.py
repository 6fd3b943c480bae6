"""Tiling, size control, colour preservation and strength, through the API and eval.py."""

import pytest
import torch
from PIL import Image

from fast_nst.io.checkpoint import atomic_torch_save, make_checkpoint
from fast_nst.commands.eval import main as eval_main
from fast_nst.training import load_train_config as load_config
from fast_nst.core.images import pil_to_tensor
from fast_nst.nets.johnson import TransformNet
from fast_nst.stylize import TorchStylizer as Stylizer, preserve_colors
from fast_nst.stylize.tiling import auto_tile_size, plan_tiles, stylize_tiled, tile_core

from conftest import make_photo, psnr, trained_like_norms


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    net = TransformNet().eval()
    trained_like_norms(net)  # trained-like norm parameters so statistics matter
    return net


@pytest.fixture(scope="module")
def model_file(net, tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "net.pth"
    atomic_torch_save(make_checkpoint(net, load_config(None, ["style_image=s", "naming=net"]), 1), path)
    return path


def test_every_tile_plan_allowed_covers_every_pixel():
    """A tile core under 4 px used to pass the checks and leave every other pair of columns
    uncovered (black in the output): tiles start on a 4 px grid."""
    for core in range(1, 24):
        for overlap in range(0, 8):
            try:
                boxes = plan_tiles(37, 53, core, overlap)
            except ValueError:
                assert core <= 2 * overlap or core - overlap < 4
                continue
            covered = torch.zeros(37, 53, dtype=torch.bool)
            for t, l, b, r in boxes:
                covered[t:b, l:r] = True
            assert covered.all(), (core, overlap)
    with pytest.raises(ValueError, match="at least 2 x context \\(64\\) \\+ 4 .* = 132 px"):
        tile_core(131, 0)
    assert tile_core(132, 0) == 4 and tile_core(137, 2) == 9


def test_plan_tiles_covers_image_with_overlap():
    boxes = plan_tiles(500, 300, tile=200, overlap=50)
    # steps of 148 (200 - 50, down to a multiple of 4): rows 0, 148, 296, 300; columns 0, 100
    assert len(boxes) == 4 * 2
    covered = torch.zeros(500, 300, dtype=torch.bool)
    for t, l, b, r in boxes:
        assert t % 4 == 0 and l % 4 == 0  # on the network's downsampling grid
        assert b - t <= 200 + 3 and r - l <= 200 + 3
        covered[t:b, l:r] = True
    assert covered.all()
    assert plan_tiles(100, 100, 200, 50) == [(0, 0, 100, 100)]
    with pytest.raises(ValueError):
        plan_tiles(100, 100, 100, 50)


def test_tiled_matches_untiled(net, tmp_path):
    """Shared norm statistics + feathered overlaps: no seams, PSNR well above 35 dB."""
    img = make_photo(tmp_path / "tile.png", (384, 320), seed=3, fmt="PNG")
    x = pil_to_tensor(Image.open(img)).unsqueeze(0)
    with torch.inference_mode():
        ref = net(x)
    tiled, count = stylize_tiled(net, x, tile=256, overlap=32)
    assert count == len(plan_tiles(320, 384, tile_core(256, 32), 32)) == 12
    assert tiled.shape == ref.shape
    assert psnr(tiled, ref) >= 35
    # without shared statistics (each tile normalised alone) the seams are much worse
    naive = torch.zeros_like(ref)
    with torch.inference_mode():
        for t, l, b, r in plan_tiles(320, 384, 192, 0):  # the same tile size, no context
            naive[..., t:b, l:r] = net(x[..., t:b, l:r])
    assert psnr(naive, ref) < psnr(tiled, ref) - 5


def test_large_image_is_tiled_with_bounded_tiles(net, tmp_path):
    s = Stylizer(net, torch.device("cpu"))  # the fast CPU network, with its own shared statistics
    img = Image.open(make_photo(tmp_path / "big.png", (700, 450), seed=4, fmt="PNG"))
    out = s.stylize(img, tile_size=256, overlap=32)
    assert out.size == (700, 450)
    assert s.last_tile_count == len(plan_tiles(450, 700, tile_core(256, 32), 32)) == 5 * 7
    whole = s.stylize(img, tile_size=None)
    assert s.last_tile_count == 1
    assert psnr(pil_to_tensor(out), pil_to_tensor(whole)) >= 35


def test_auto_tile_size_uses_the_memory_budget():
    cpu = torch.device("cpu")
    assert auto_tile_size(512, 512, cpu, budget=1 << 30) is None
    tile = auto_tile_size(6000, 4000, cpu, budget=1 << 28)
    assert tile is not None and tile % 64 == 0 and tile * tile * 640 <= 1 << 28
    assert auto_tile_size(6000, 4000, cpu) is not None  # 24 MP does not fit the 2 GiB CPU cap


def _channel(img: Image.Image, i: int) -> torch.Tensor:
    """Channel i of the YCbCr version of ``img`` as floats in [0, 1], (H, W)."""
    c = img.convert("YCbCr").split()[i]
    return pil_to_tensor(Image.merge("RGB", (c,) * 3))[0]


def test_preserve_colors_takes_brightness_from_style_and_chroma_from_photo(tmp_path):
    photo = Image.open(make_photo(tmp_path / "photo.png", (64, 48), seed=7, fmt="PNG"))
    photo = Image.blend(photo, Image.new("RGB", photo.size, (128, 128, 128)), 0.6)  # muted colours
    # a "stylized" image of moderate brightness, so no pixel leaves the RGB gamut
    styl = Image.open(make_photo(tmp_path / "styl.png", (64, 48), seed=8, fmt="PNG")).convert("L")
    styl = styl.point(lambda v: 100 + v // 4).convert("RGB")
    out = preserve_colors(photo, styl)
    for i in (1, 2):  # Cb, Cr from the photo
        assert (_channel(out, i) - _channel(photo, i)).abs().max() <= 3 / 255
    assert (_channel(out, 0) - _channel(styl, 0)).abs().max() <= 3 / 255  # Y from the style


def test_preserve_color_through_the_stylizer(net, tmp_path):
    s = Stylizer(net, torch.device("cpu"))
    img = Image.open(make_photo(tmp_path / "color.png", (64, 48), seed=7, fmt="PNG"))
    kept, plain = s.stylize(img, preserve_color=True), s.stylize(img)
    for i in (1, 2):
        err = (_channel(kept, i) - _channel(img, i)).abs().mean()
        # an untrained net's extreme brightness clips some pixels out of gamut: chroma is still
        # far closer to the photo's than without colour preservation
        assert err < 0.2 * (_channel(plain, i) - _channel(img, i)).abs().mean()
    assert s.stylize(img, preserve_color=True, strength=0).tobytes() == img.tobytes()


def test_strength_zero_is_the_photo_and_one_the_stylization(net, tmp_path):
    s = Stylizer(net, torch.device("cpu"))
    img = Image.open(make_photo(tmp_path / "strength.png", (40, 30), seed=2, fmt="PNG"))
    assert s.stylize(img, strength=0.0).tobytes() == img.tobytes()
    assert s.stylize(img, strength=1.0).tobytes() == s.stylize(img).tobytes()
    half = pil_to_tensor(s.stylize(img, strength=0.5))
    expect = (pil_to_tensor(img) + pil_to_tensor(s.stylize(img))) / 2
    assert (half - expect).abs().max() <= 1.5 / 255
    with pytest.raises(Exception, match="between 0 and 1"):
        s.stylize(img, strength=1.5)


def test_size_control(net):
    s = Stylizer(net, torch.device("cpu"))
    img = Image.new("RGB", (200, 100), (10, 200, 30))
    assert s.stylize(img, max_size=50).size == (50, 25)
    assert s.stylize(img, scale=0.25).size == (50, 25)
    assert s.stylize(img, max_size=50, keep_size=True).size == (200, 100)
    assert s.stylize(img, max_size=400).size == (200, 100)  # never enlarges


def test_eval_cli_options(model_file, tmp_path):
    photo = make_photo(tmp_path / "p.jpg", (300, 200), seed=1)
    out = tmp_path / "o.png"
    assert eval_main(["--model_file", str(model_file), "--image_file", str(photo), "--output_file", str(out),
                      "--tile_size", "224", "--overlap", "16", "--max_size", "240", "--preserve_color",
                      "--strength", "0.8"]) == 0
    assert Image.open(out).size == (240, 160)
    assert eval_main(["--model_file", str(model_file), "--image_file", str(photo), "--output_file", str(out),
                      "--scale", "0.5", "--keep_size"]) == 0
    assert Image.open(out).size == (300, 200)


@pytest.mark.parametrize("args,fragment", [
    (["--strength", "2"], "--strength must be between 0 and 1"),
    (["--tile_size", "big"], "--tile_size must be auto, 0 or a positive number"),
    (["--tile_size", "200", "--overlap", "64"], "--tile_size: tile size 200 is too small"),
    (["--scale", "0"], "--scale must be > 0"),
])
def test_eval_cli_option_errors(model_file, tmp_path, capsys, args, fragment):
    photo = make_photo(tmp_path / "p.jpg", (30, 20))
    assert eval_main(["--model_file", str(model_file), "--image_file", str(photo)] + args) == 1
    assert fragment in capsys.readouterr().err


def test_gpu_memory_budget_counts_what_the_allocator_caches(monkeypatch):
    """Memory PyTorch reserved but does not use is free for the next image's tiles."""
    from fast_nst.stylize.tiling import available_memory

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 8000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 700)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 200)
    assert available_memory(torch.device("cuda")) == 1500
