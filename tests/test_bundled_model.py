"""The built-in model (fast_nst/assets/mosaic_slim.pth): shipped in the package, used by eval.py,
load_stylizer() and the web app when no model is named, labelled with how it was made, and a real
stylization (trained, not random)."""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import numpy as np
import pytest
import setuptools
import torch
from PIL import Image

from fast_nst import load_stylizer
from fast_nst.commands.app import AppSession, app_models
from fast_nst.commands.eval import main as eval_main
from fast_nst.core.errors import FastNSTError
from fast_nst.io import bundled
from fast_nst.io.bundled import BUNDLED_MODEL, about

from conftest import REPO, assert_clean_in_process, in_process, make_photo

# A photo-like test image: smooth colour bands (the conftest's generator) at a size where the
# network's texture (strokes of tens of pixels) shows.
PHOTO_SIZE = (128, 96)


@pytest.fixture(scope="module")
def stylizer():
    return load_stylizer(device="cpu")


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    return make_photo(tmp_path_factory.mktemp("photo") / "photo.png", PHOTO_SIZE, seed=164)


def test_the_model_file_is_small_weights_only_and_says_how_it_was_made():
    assert BUNDLED_MODEL.is_file() and BUNDLED_MODEL.stat().st_size < 2_000_000
    ckpt = torch.load(BUNDLED_MODEL, map_location="cpu", weights_only=True)
    assert ckpt["kind"] == "model" and ckpt["config"]["model_type"] == "johnson_slim"
    assert ckpt["model_args"]["base_channels"] == 16 and ckpt["model_args"]["num_residual"] == 3
    assert "optimizer_state" not in ckpt and "rng_state" not in ckpt  # an inference model
    line = about(ckpt)
    for fragment in ("mosaic", "stand-in VGG16", "fine-tuned on MRI scans", "1,649 photos",
                     f"{ckpt['step']:,} steps", "at 256 px", "CPU"):
        assert fragment in line, line
    assert ckpt["config"]["image_size"] == 256 and ckpt["config"]["loss_model"] == "vgg16_caffe"


def _setup_argument(name: str):
    tree = ast.parse((REPO / "setup.py").read_text())
    return next(k.value for k in ast.walk(tree) if isinstance(k, ast.keyword) and k.arg == name)


def test_setup_ships_it_as_package_data_with_every_package(monkeypatch):
    """setup.py's package_data for fast_nst matches the file, and its packages are every folder
    of code (core and io have no __init__.py), so that pip install . carries them all."""
    patterns = ast.literal_eval(_setup_argument("package_data"))["fast_nst"]
    rel = BUNDLED_MODEL.relative_to(REPO / "fast_nst").as_posix()
    assert any(fnmatch.fnmatch(rel, p) for p in patterns), (rel, patterns)
    monkeypatch.chdir(REPO)
    packages = set(eval(compile(ast.Expression(_setup_argument("packages")), "setup.py", "eval"),
                        {"find_namespace_packages": setuptools.find_namespace_packages}))
    code = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "fast_nst").rglob("*.py")}
    assert code <= packages, code - packages


def test_load_stylizer_without_a_path_is_the_built_in_model(stylizer):
    assert Path(stylizer.info["path"]) == BUNDLED_MODEL and stylizer.name == "mosaic"
    assert "stand-in VGG16" in stylizer.info["about"]
    assert not stylizer.style_names and stylizer.style_input != "image"


def test_it_stylizes_for_real(stylizer, photo):
    """A trained network, not an identity or a random one: the photo's layout survives (its
    brightness correlates with the result's) while the mosaic's texture is added (the result has
    far more fine detail than the smooth photo). Measured on the same photo: the run's checkpoint
    at step 7 (barely trained) correlates 0.35 and has 1.35x the photo's detail; at step 100,
    0.83 and 2.4x; the shipped model (step 857), 0.80 and 2.2x."""
    image = Image.open(photo).convert("RGB")
    out = stylizer.stylize(image)
    assert out.size == image.size and out.mode == "RGB"
    x = np.asarray(image, dtype=np.float32) / 255
    y = np.asarray(out, dtype=np.float32) / 255
    assert np.abs(y - x).mean() > 0.05
    lum_x, lum_y = x.mean(-1), y.mean(-1)
    assert np.corrcoef(lum_x.ravel(), lum_y.ravel())[0, 1] > 0.6

    def detail(a: np.ndarray) -> float:  # mean absolute difference of neighbouring pixels
        return float(np.abs(np.diff(a, axis=0)).mean() + np.abs(np.diff(a, axis=1)).mean())

    assert detail(lum_y) > 1.8 * detail(lum_x)


def test_eval_without_a_model_file_uses_it_and_says_so(stylizer, photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    code, err = in_process(capsys, eval_main, "--image_file", photo, "--output_file", out, "--device", "cpu")
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("No --model_file: using the built-in model mosaic_slim.pth: "
                                                   "mosaic (johnson_slim), trained against a stand-in VGG16"), err
    expected = stylizer.stylize(Image.open(photo))
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(expected))
    assert not np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(photo).convert("RGB")))


def test_a_missing_built_in_model_is_a_message(photo, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bundled, "BUNDLED_MODEL", tmp_path / "gone.pth")
    code, err = in_process(capsys, eval_main, "--image_file", photo, "--output_file", tmp_path / "o.png")
    assert_clean_in_process(code, err, "missing from this installation", "--model_file")
    with pytest.raises(FastNSTError, match="missing from this installation"):
        load_stylizer()


def test_the_app_offers_it_without_models(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no models/ folder here
    builtin = {"mosaic (built-in)": BUNDLED_MODEL}
    assert app_models(None) == builtin
    (tmp_path / "empty").mkdir()
    assert app_models("empty") == builtin
    assert "offering the built-in model mosaic_slim.pth" in capsys.readouterr().out
    with pytest.raises(FastNSTError, match="no such folder"):
        app_models("typo")  # a folder that was named but does not exist
    (tmp_path / "models" / "mine").mkdir(parents=True)
    mine = tmp_path / "models" / "mine" / "mine.pth"
    mine.write_bytes(BUNDLED_MODEL.read_bytes())
    assert app_models(None) == {"mine/mine.pth": Path("models") / "mine" / "mine.pth"}
    summary = AppSession(builtin, "cpu", tmp_path / "work").describe("mosaic (built-in)").summary
    assert summary.startswith("mosaic (built-in): one style (mosaic), trained ") and "stand-in VGG16" in summary
