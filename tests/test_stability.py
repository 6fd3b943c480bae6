"""Video flicker: known-motion warps and the stability measure against hand-computed cases,
stable statistics across frames (every kind of model), the stability training term, and a
stability-trained toy model measurably more stable than one trained without it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fast_nst.commands.evaluate import main as evaluate_main
from fast_nst.core.errors import ConfigError
from fast_nst.core.images import tensor_to_pil
from fast_nst.core.motion import ClipMotion, affine, clip_frames, warp, warping_error
from fast_nst.io.checkpoint import atomic_torch_save, load_model, make_checkpoint
from fast_nst.nets.johnson import TransformNet, TransformNetArgs
from fast_nst.nets.multistyle import MultiStyleArgs, MultiStyleNet
from fast_nst.report.stability import change_ratio, clip_of, clip_size, measure_stability, score_clip
from fast_nst.stylize import TorchStylizer
from fast_nst.stylize.base import OptionError
from fast_nst.stylize.temporal import TemporalStatistics
from fast_nst.training import load_train_config, train
from fast_nst.training.stability import moved_copy, stability_loss

from conftest import in_process, make_photo, random_adain_net, tiny_values, write_config

CPU = torch.device("cpu")


def test_warp_moves_by_whole_and_half_pixels_and_marks_what_it_sees():
    x = torch.rand(1, 3, 6, 8)
    y, valid = warp(x, affine((2.0, 0.0)))  # reads 2 px to the right: content moves left
    assert torch.allclose(y[..., :6], x[..., 2:], atol=1e-6)
    assert valid[0, 0, :, :6].all() and not valid[0, 0, :, 6:].any()
    half, _ = warp(x, affine((0.0, 0.5)))
    assert torch.allclose(half[..., :5, :], (x[..., :5, :] + x[..., 1:, :]) / 2, atol=1e-6)
    same, valid = warp(x, affine(angle=0.0, scale=1.0, centre=(3.5, 2.5)))
    assert torch.allclose(same, x, atol=1e-6) and valid.all()
    # a 90-degree turn about the centre of a 4 x 4 image: out(x, y) = in(cx - (y - cy), cy + (x - cx))
    sq = torch.arange(16.0).reshape(1, 1, 4, 4)
    turned, _ = warp(sq, affine(angle=90.0, centre=(1.5, 1.5)))
    assert torch.allclose(turned[0, 0], sq[0, 0].t().flip(0), atol=1e-5)


def test_warping_error_and_change_ratio_by_hand():
    prev = torch.zeros(1, 3, 6, 8)
    cur = torch.full((1, 3, 6, 8), 10 / 255)
    assert warping_error(prev, cur, affine((1.0, 0.0))) == pytest.approx(10.0, abs=1e-4)
    # an exact 2 px move has no error on the pixels both frames see, whatever the rest holds
    a = torch.rand(1, 3, 6, 8)
    b = torch.rand(1, 3, 6, 8)
    b[..., :6] = a[..., 2:]
    assert warping_error(a, b, affine((2.0, 0.0))) == pytest.approx(0.0, abs=1e-4)
    assert warping_error(a, b, affine((2.0, 0.0)), margin=1) == pytest.approx(0.0, abs=1e-4)
    # a fine texture (period 5 px) moved by exactly half a pixel: bicubic reading is close to the
    # exact move, bilinear reading blurs it (the measure would call that flicker)
    xs = torch.arange(40.0)
    wave = lambda shift: (0.5 + 0.4 * torch.cos(2 * torch.pi * (xs + shift) / 5)).expand(1, 3, 8, 40)
    half = affine((0.5, 0.0))
    exact = wave(0.5)
    assert warping_error(wave(0), exact, half, margin=2) < 2.0
    assert warping_error(wave(0), exact, half, margin=2, mode="bilinear") > 10.0
    # inputs step by 0.1, stylizations by 0.3: they change 3 times as much
    frames = torch.stack([torch.full((3, 4, 4), v) for v in (0.0, 0.1, 0.2)])
    styled = torch.stack([torch.full((3, 4, 4), v) for v in (0.0, 0.3, 0.6)])
    assert change_ratio(frames, styled) == pytest.approx(3.0)


def test_a_clip_follows_its_known_motion():
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 16), size=(120, 160), mode="bilinear")
    clip, steps = clip_frames(photo, 6, (72, 96), ClipMotion(pan=(1.4, 0.5), zoom=0.01, rotate=0.3, noise=0.0))
    assert clip.shape == (6, 3, 72, 96) and steps.shape == (5, 3, 3)
    score = score_clip(clip, clip, steps)
    assert score.input_warp_error < 0.5  # resampling only: the motion is what the steps say
    assert score.warp_error == score.input_warp_error and score.change_ratio == pytest.approx(1.0)
    noisy, _ = clip_frames(photo, 6, (72, 96), ClipMotion(noise=4.0))
    assert warping_error(noisy[:-1], noisy[1:], _[0:5]) > 2.0  # noise of 4 levels shows
    with pytest.raises(ValueError, match="too small"):
        clip_frames(photo, 6, (200, 300))


@pytest.mark.parametrize("size", [(52, 52), (64, 64), (96, 64), (200, 30), (300, 200)])
def test_a_photo_is_shrunk_for_its_clip_no_smaller_than_the_motion_needs(size):
    """clip_of shrinks a photo to 1.25 x its frame, but never below full_view_size: the pan needs
    room around the frame (a 64 x 64 photo, shrunk to 45 x 45 around a 36 x 36 frame, made no clip)."""
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    clip, steps = clip_of(photo)
    assert clip.shape == (10, 3, *clip_size(size)) and steps.shape == (9, 3, 3)
    with pytest.raises(ValueError, match="a 50 x 50 photo is too small for a 32 x 32 clip"):
        clip_of(photo.resize((50, 50)))


def _net(seed: int = 0) -> TransformNet:
    torch.manual_seed(seed)
    return TransformNet(TransformNetArgs(base_channels=8, num_residual=1)).eval()


def _stylizer(kind: str) -> TorchStylizer:
    """A small random model of ``kind``: johnson (plain form), fast (the fast CPU form), multi
    (a multi-style net's one style), adain (with a random style image)."""
    if kind in ("johnson", "fast"):
        return TorchStylizer(_net(), CPU, fast=kind == "fast")
    if kind == "multi":
        torch.manual_seed(1)
        multi = MultiStyleNet(MultiStyleArgs(num_styles=2, base_channels=8, num_residual=1)).eval()
        multi.style_names = ["a", "b"]
        return TorchStylizer(multi, CPU)
    adain = TorchStylizer(random_adain_net(), CPU)
    adain.set_style(tensor_to_pil(torch.rand(3, 40, 40)), style_size=None)
    return adain


@pytest.mark.parametrize("kind", ["johnson", "fast", "multi", "adain"])
def test_stable_statistics_carry_across_frames_and_restart_at_a_cut(kind):
    s = _stylizer(kind)
    torch.manual_seed(2)
    scene = torch.rand(1, 3, 32, 32)
    frames = torch.cat([scene, (scene + 0.05 * torch.rand(1, 3, 32, 32)).clamp(0, 1), 1 - scene])  # a cut last
    per_frame = s.stylize_tensor(frames)
    with TemporalStatistics(s, momentum=0.0) as video:
        assert torch.allclose(video.stylize(frames), per_frame, atol=1e-5)  # momentum 0: per frame
    with TemporalStatistics(s) as video:
        together = video.stylize(frames)
        assert video.cuts == 1
    with TemporalStatistics(s) as video:
        split = torch.cat([video.stylize(frames[:2]), video.stylize(frames[2:])])
    assert torch.allclose(together, split, atol=1e-5)  # batches do not matter, only the order
    assert torch.allclose(together[0], per_frame[0], atol=1e-5)  # the first frame has its own
    assert not torch.allclose(together[1], per_frame[1], atol=1e-4)  # the second carries the first's
    assert torch.allclose(together[2], per_frame[2], atol=1e-5)  # the cut starts afresh
    assert torch.allclose(s.stylize_tensor(frames), per_frame)  # and nothing stays behind


def test_stable_statistics_refuse_a_model_that_cannot():
    class Export:  # what an .onnx stylizer offers: no network to share statistics in
        name, runner, can_tile = "wave.onnx", None, False

    with pytest.raises(OptionError, match="--temporal off"):
        TemporalStatistics(Export())


def test_moved_copies_are_fixed_by_seed_step_and_index():
    x = torch.rand(4, 3, 24, 24)
    moved, motions = moved_copy(x, seed=3, step=7)
    tail, tail_motions = moved_copy(x[2:], seed=3, step=7, first=2)  # the second rank's half
    assert torch.equal(moved[2:], tail) and torch.equal(motions[2:], tail_motions)
    other, _ = moved_copy(x, seed=3, step=8)
    assert not torch.equal(moved, other)
    assert (moved - x).abs().mean() > 0.01 and moved.min() >= 0 and moved.max() <= 1
    # a stylization that follows the motion exactly costs nothing; one stuck to the grid does
    flat = torch.full_like(x, 0.3)
    assert float(stability_loss(flat, flat, motions)) == pytest.approx(0.0, abs=1e-10)
    assert float(stability_loss(x, x, motions)) > 1e-3


def test_stability_loss_against_the_formula():
    """A pure 1 px shift (an exact move, whatever the interpolation): the moved stylization is y
    shifted; the term is the mean squared difference to y_moved over the pixels with a source."""
    torch.manual_seed(0)
    y = torch.rand(2, 3, 8, 10)
    y_moved = torch.rand(2, 3, 8, 10)
    shift = affine((1.0, 0.0)).expand(2, 3, 3)  # reads x + 1
    d = y[..., 1:7, 1:9] - y_moved[..., 1:7, :8]  # bicubic reads a pixel beyond its source on each side
    assert float(stability_loss(y, y_moved, shift)) == pytest.approx(float(d.square().mean()), rel=1e-5)


def test_stability_training_config_checks(tmp_path, train_dir, style_file):
    values = tiny_values(tmp_path / "m", train_dir, style_file, stability_weight=-1)
    with pytest.raises(ConfigError, match="stability_weight"):
        load_train_config(write_config(tmp_path / "neg.yml", **values))
    cfg = load_train_config(None, ["naming=x", "model_type=adain", f"style_dir={train_dir}", "stability_weight=1",
                                   "style_layers=[relu1_1, relu4_1]"])
    assert cfg.stability_weight == 1.0  # arbitrary-style networks train with it too


def _toy_pair(folder: Path, train_dir: Path, style_file: Path, weight: float, **values) -> list[Path]:
    """Two seeded 6-step toy runs in ``folder``, the same but for stability_weight (0, ``weight``):
    their final models."""
    files = []
    for name, w in (("plain", 0.0), ("stable", weight)):
        config = tiny_values(folder / "models", train_dir, style_file, naming=name, max_steps=6, lr=3e-3,
                             image_size=32, batch_size=2, checkpoint_every=3, stability_weight=w, log_every=3,
                             image_log_every=100, **values)
        files.append(train(load_train_config(write_config(folder / f"{name}.yml", **config)), progress=False).model_file)
    return files


def _test_clip() -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed 6-frame clip (6, 3, 48, 64) of a smooth photo panning and zooming, and its motions."""
    torch.manual_seed(5)
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 10), size=(96, 120), mode="bicubic").clamp(0, 1)
    return clip_frames(photo, 6, (48, 64), ClipMotion(pan=(1.3, 0.4), zoom=0.01, noise=2.0))


@pytest.fixture(scope="module")
def toy_pair(tmp_path_factory, train_dir, style_file):
    """Two seeded johnson_slim toy runs, the same but for stability_weight: (without, with)."""
    return _toy_pair(tmp_path_factory.mktemp("toy"), train_dir, style_file, 3e4, model_type="johnson_slim")


def test_stability_trained_toy_flickers_less(toy_pair):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    clip, steps = _test_clip()
    errors = []
    for path in toy_pair:
        model, _ = load_model(path)
        styled = TorchStylizer(model, CPU).stylize_tensor(clip)
        errors.append(score_clip(clip, styled, steps).warp_error)
    assert errors[1] < 0.8 * errors[0], errors
    logged = EventAccumulator(str(toy_pair[1].parent)).Reload().Scalars("loss/stability")
    assert [e.step for e in logged] == [1, 2, 3, 6] and all(e.value > 0 for e in logged)


def test_report_measures_stability_per_frame_and_with_stable_statistics(tmp_path, capsys):
    make_photo(tmp_path / "photos" / "p.jpg", (160, 120), seed=3)
    model = tmp_path / "m.pth"
    cfg = load_train_config(None, ["naming=m", f"style_image={tmp_path / 'photos' / 'p.jpg'}"])
    atomic_torch_save(make_checkpoint(_net(), cfg, step=1), model)
    code, err = in_process(capsys, evaluate_main, "--model_file", model, "--images", tmp_path / "photos",
                           "--output", tmp_path / "out", "--loss_model_weights", "random", "--device", "cpu",
                           "--stability")
    assert code == 0, err
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["stability"]
    assert [(r["model"], r["mode"]) for r in rows] == [("m", "per-frame"), ("m", "stable statistics")]
    for r in rows:
        assert r["warp_error"] > r["input_warp_error"] > 0 and r["change_ratio"] > 0 and r["ms_per_frame"] > 0
        assert r["still_change_ratio"] > 0
    page = (tmp_path / "out" / "index.html").read_text()
    assert "change ratio, still" in page
    # 60 % of the 160 x 120 photo, not the 256 x 192 of larger ones
    assert "a 10-frame 96 x 72 clip" in page and "256 x 192" not in page
    assert tuple(clip_of(Image.open(tmp_path / "photos" / "p.jpg"))[0].shape[-2:]) == clip_size((160, 120)) == (72, 96)
    direct = measure_stability("m", TorchStylizer(_net(), CPU), [Image.open(tmp_path / "photos" / "p.jpg")])
    assert direct[0].warp_error == pytest.approx(rows[0]["warp_error"], rel=1e-4)
    assert direct[0].still_change_ratio == pytest.approx(rows[0]["still_change_ratio"], rel=1e-4)


@pytest.fixture(scope="module")
def adain_toy_pair(tmp_path_factory, train_dir):
    """Two seeded AdaIN toy runs (decoders on a shallow random VGG16 encoder, the photos as
    paintings), the same but for stability_weight: (without, with)."""
    return _toy_pair(tmp_path_factory.mktemp("adain_toy"), train_dir, train_dir, 3e3, style_image="",
                     style_dir=str(train_dir), model_type="adain", loss_model="vgg16",
                     model_args={"encoder_layer": "relu2_1"}, style_layers=["relu1_1", "relu2_1"],
                     style_weight=10.0, tv_weight=0.0)


def test_stability_trained_adain_toy_flickers_less(adain_toy_pair):
    """Arbitrary-style networks take the term too: moved photos decoded in the same style."""
    clip, steps = _test_clip()
    style = tensor_to_pil(torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6), size=(48, 48), mode="bicubic")[0].clamp(0, 1))
    errors = []
    for path in adain_toy_pair:
        model, _ = load_model(path)
        stylizer = TorchStylizer(model, CPU)
        stylizer.set_style(style, style_size=None)
        errors.append(score_clip(clip, stylizer.stylize_tensor(clip), steps).warp_error)
    assert errors[1] < 0.8 * errors[0], errors  # 0.19 against 0.43 (seeded)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = EventAccumulator(str(adain_toy_pair[1].parent)).Reload().Scalars("loss/stability")
    assert [e.step for e in logged] == [1, 2, 3, 6] and all(e.value > 0 for e in logged)
