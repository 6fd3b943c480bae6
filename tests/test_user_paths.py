"""What new and careless users hit: resuming with other processes, checks before the work, run
folders as models, output names and folders, clean stops, progress, missing prerequisites, NaN
runs, run-folder locks and damaged checkpoints. Each test failed before its fix."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_clean_in_process, in_process, make_photo, tiny_values, write_config
from fast_nst.commands.eval import main as eval_main
from fast_nst.commands.optimize import main as optimize_main
from fast_nst.commands.train import main as train_main
from fast_nst.core.errors import CheckpointError
from fast_nst.io.checkpoint import atomic_torch_save, list_checkpoints, make_checkpoint
from fast_nst.nets.johnson import TransformNet, TransformNetArgs
from fast_nst.training import train_config_from_dict

UNWRITABLE = Path("/proc/fast_nst_no_such_dir")  # mkdir fails there, also for root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_dir, style_file):
    """A 3-step run (checkpoints at 2 and 3) to resume, stylize with and damage."""
    base = tmp_path_factory.mktemp("trained")
    conf = write_config(base / "conf" / "tiny.yml", **tiny_values(base / "models", train_dir, style_file))
    assert train_main(["-c", str(conf), "--no_progress"]) == 0
    return conf, base / "models" / "tiny"


def _model(path: Path, naming: str, **args) -> Path:
    torch.manual_seed(0)
    net = TransformNet(TransformNetArgs(base_channels=4, num_residual=1, **args))
    cfg = train_config_from_dict({"naming": "x", "style_image": "s.jpg"}, "test")
    ckpt = make_checkpoint(net, cfg, step=1)
    ckpt["config"]["naming"] = naming  # as a hostile file would: not validated on loading
    atomic_torch_save(ckpt, path)
    return path


# ---- training ----------------------------------------------------------------------------------

def test_resume_with_another_global_batch_is_refused_with_the_launch(trained, capsys, tmp_path):
    conf, run_dir = trained
    copy = tmp_path / "models" / "tiny"
    copy.mkdir(parents=True)
    ckpt = torch.load(list_checkpoints(run_dir)[-1][1], weights_only=True)
    ckpt["world_size"] = 2  # as a 2-process torchrun run writes it
    atomic_torch_save(ckpt, copy / "checkpoints" / "step_00000003.pth")
    code, err = in_process(capsys, train_main, "-c", conf, "--resume", "--set", f"model_path={tmp_path / 'models'}",
                           "--set", "max_steps=5")
    assert_clean_in_process(code, err, "trained by 2 processes x batch_size 2 = global batch 4",
                            "this run has 1 process x batch_size 2 = 2",
                            "torchrun --nproc_per_node=2 train.py ... --resume")


def test_resume_hint_and_done_line_after_resuming(trained, capsys, tmp_path, train_dir, style_file):
    conf = write_config(tmp_path / "c" / "r.yml", **tiny_values(tmp_path / "m", train_dir, style_file, max_steps=2))
    assert in_process(capsys, train_main, "-c", conf, "--no_progress")[0] == 0
    code, err = in_process(capsys, train_main, "-c", conf, "--resume", "--set", "max_steps=3", "--no_progress")
    assert code == 0 and "Done: 1 step in " in err and "(resumed at step 2, now at step 3)" in err
    code, err = in_process(capsys, train_main, "-c", conf, "--resume", "--set", "max_steps=3")
    assert_clean_in_process(code, err, "nothing left to train")
    assert err.count("max_steps=") == 1 and "--set max_steps=1003" in err  # not repeated


def test_short_runs_log_their_first_steps(capsys, tmp_path, train_dir, style_file):
    conf = write_config(tmp_path / "c" / "s.yml", **tiny_values(tmp_path / "m", train_dir, style_file,
                                                              max_steps=5, log_every=50))
    code, err = in_process(capsys, train_main, "-c", conf, "--no_progress")
    assert code == 0
    logged = [line.split(":")[0] for line in err.splitlines() if line.startswith("step ")]
    assert logged == ["step 1/5", "step 2/5", "step 4/5", "step 5/5"]


def test_every_missing_prerequisite_is_reported_at_once(capsys, tmp_path):
    conf = write_config(tmp_path / "fresh.yml", style_image=str(tmp_path / "no_style.jpg"),
                        train_dir=str(tmp_path / "no_photos"), model_path=str(tmp_path / "models"),
                        loss_model_file=str(tmp_path / "my_vgg.pth"), device="cpu")
    code, err = in_process(capsys, train_main, "-c", conf)
    assert_clean_in_process(code, err, "3 things are missing before training can start",
                            "1. train_dir", "python -m fast_nst.download coco",
                            "2. Style image", "3. VGG16 weights not found", "python -m fast_nst.download vgg16")
    assert not (tmp_path / "models").exists()


def test_non_finite_lr_and_weights_are_refused_by_the_config(capsys, tmp_path, train_dir, style_file):
    conf = write_config(tmp_path / "c" / "n.yml", **tiny_values(tmp_path / "m", train_dir, style_file))
    for override, message in (("lr=.inf", "key 'lr' must be a finite number > 0, got inf"),
                              ("lr=.nan", "key 'lr' must be a finite number > 0, got nan"),
                              ("style_weight=.nan", "key 'style_weight' must be a finite number >= 0")):
        code, err = in_process(capsys, train_main, "-c", conf, "--set", override)
        assert_clean_in_process(code, err, message)


def test_weights_that_turn_nan_are_never_saved(monkeypatch, capsys, tmp_path, train_dir, style_file):
    from fast_nst.training.trainer import Trainer

    original = Trainer.train_step

    def diverging(self, images):
        original(self, images)
        with torch.no_grad():
            next(self.model.parameters()).fill_(float("nan"))  # finite loss, NaN weights (lr far too high)

    monkeypatch.setattr(Trainer, "train_step", diverging)
    conf = write_config(tmp_path / "c" / "d.yml", **tiny_values(tmp_path / "m", train_dir, style_file,
                                                              max_steps=1, checkpoint_every=1))
    code, err = in_process(capsys, train_main, "-c", conf)
    assert_clean_in_process(code, err, "weights became NaN or infinite by step 1", "nothing was saved")
    run_dir = tmp_path / "m" / "d"
    assert list_checkpoints(run_dir) == [] and not (run_dir / "d.pth").exists()
    net = TransformNet(TransformNetArgs(base_channels=4, num_residual=1))
    next(net.parameters()).data.fill_(float("inf"))
    with pytest.raises(CheckpointError, match="refusing to save a network with NaN or infinite weights"):
        make_checkpoint(net, train_config_from_dict({"naming": "x", "style_image": "s"}, "t"), 1)


def test_eval_refuses_a_model_with_non_finite_weights(capsys, tmp_path):
    path = _model(tmp_path / "m.pth", "m")
    ckpt = torch.load(path, weights_only=True)
    ckpt["model_state"]["encoder.0.1.weight"][0] = float("nan")
    torch.save(ckpt, path)  # written around fast-nst's own check, as a damaged file would be
    make_photo(tmp_path / "p.jpg")
    code, err = in_process(capsys, eval_main, "--model_file", path, "--image_file", tmp_path / "p.jpg",
                           "--output_file", tmp_path / "o.jpg", "--device", "cpu")
    assert_clean_in_process(code, err, "weights are NaN or infinite", "encoder.0.1.weight")
    assert not (tmp_path / "o.jpg").exists()


def test_a_second_run_on_the_same_folder_is_refused_and_a_stale_lock_is_taken_over(capsys, tmp_path, train_dir,
                                                                                    style_file):
    import json
    import socket

    conf = write_config(tmp_path / "c" / "l.yml", **tiny_values(tmp_path / "m", train_dir, style_file, max_steps=1))
    lock = tmp_path / "m" / "l" / ".lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": 0}))  # alive
    code, err = in_process(capsys, train_main, "-c", conf)
    assert_clean_in_process(code, err, "is in use by another training run", f"process {os.getpid()}",
                            "--set naming=NEW_NAME")
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": 2 ** 22 + 12345, "since": 0}))  # gone
    with pytest.warns(UserWarning, match="removing the stale lock"):
        code, err = in_process(capsys, train_main, "-c", conf, "--no_progress")
    assert code == 0, err
    assert not lock.exists()  # released at the end


def test_resume_skips_a_truncated_newest_checkpoint(trained, capsys, tmp_path):
    import shutil

    conf, run_dir = trained
    copy = tmp_path / "models" / "tiny"
    shutil.copytree(run_dir, copy)
    newest = list_checkpoints(copy)[-1][1]
    newest.write_bytes(newest.read_bytes()[:500])
    with pytest.warns(UserWarning, match=rf"skipped damaged checkpoint\(s\) {newest.name} .*"
                                         r"resuming from step_00000002.pth, the newest intact one"):
        code, err = in_process(capsys, train_main, "-c", conf, "--resume", "--no_progress",
                               "--set", f"model_path={tmp_path / 'models'}", "--set", "max_steps=4")
    assert code == 0, err
    assert "steps 2 -> 4" in err


@pytest.mark.parametrize("field, value, message", [
    ("step", "abc", "step is 'abc', not a step count"),
    ("rng_state", {"torch": "x"}, "its random-number state does not fit"),
    ("optimizer_state", {"state": {}, "param_groups": "x"}, "its optimizer state does not fit"),
])
def test_resume_from_a_damaged_checkpoint_says_so(trained, capsys, tmp_path, field, value, message):
    conf, run_dir = trained
    ckpt = torch.load(list_checkpoints(run_dir)[-1][1], weights_only=True)
    ckpt[field] = value
    bad = tmp_path / "bad.pth"
    torch.save(ckpt, bad)
    code, err = in_process(capsys, train_main, "-c", conf, "--resume", str(bad), "--set", "max_steps=9",
                           "--set", f"model_path={tmp_path / 'models'}")
    assert_clean_in_process(code, err, message)


def test_sigterm_while_starting_stops_with_a_message(monkeypatch, capsys, tmp_path, train_dir, style_file):
    from fast_nst.training.trainer import Trainer

    monkeypatch.setattr(Trainer, "_announce", lambda self: os.kill(os.getpid(), signal.SIGTERM))
    conf = write_config(tmp_path / "c" / "t.yml", **tiny_values(tmp_path / "m", train_dir, style_file))
    code, err = in_process(capsys, train_main, "-c", conf)
    assert code == 128 + signal.SIGTERM and "Stopped (SIGTERM) before the first step" in err
    assert "error:" not in err and "Traceback" not in err


# ---- stylizing -----------------------------------------------------------------------------------

def test_run_folder_of_an_interrupted_run_uses_its_newest_checkpoint(trained, capsys, tmp_path):
    import shutil

    _, run_dir = trained
    copy = tmp_path / "tiny"
    shutil.copytree(run_dir, copy)
    (copy / "tiny.pth").unlink()
    make_photo(tmp_path / "p.jpg")
    with pytest.warns(UserWarning, match=r"holds no final model .*step_00000003.pth \(step 3\)"):
        code, err = in_process(capsys, eval_main, "--model_file", copy, "--image_file", tmp_path / "p.jpg",
                               "--output_file", tmp_path / "o.jpg", "--device", "cpu")
    assert code == 0, err
    assert (tmp_path / "o.jpg").is_file()
    shutil.rmtree(copy / "checkpoints")
    code, err = in_process(capsys, eval_main, "--model_file", copy, "--image_file", tmp_path / "p.jpg")
    assert_clean_in_process(code, err, "is a folder without a model")


def test_output_mistakes_are_found_before_the_model_loads(capsys, tmp_path):
    make_photo(tmp_path / "in" / "a.jpg")
    make_photo(tmp_path / "in" / "b.jpg", seed=1)
    (tmp_path / "afile").write_text("x")
    model = tmp_path / "does_not_matter.pth"  # never loaded: every case fails first
    cases = [
        ((tmp_path / "in" / "a.jpg", tmp_path / "afile" / "out.jpg"), "Cannot write --output_file",
         "afile is a file, not a folder"),
        ((tmp_path / "in" / "a.jpg", tmp_path / "outdir"), "has no extension", "end it with '/'"),
        ((tmp_path / "in", tmp_path / "single.jpg"), "names an image, but --image_file is a folder"),
        ((tmp_path / "in", UNWRITABLE / "out"), "Cannot write to the output folder", "--output_file"),
    ]
    for (src, out), *fragments in cases:
        code, err = in_process(capsys, eval_main, "--model_file", model, "--image_file", src, "--output_file", out)
        assert_clean_in_process(code, err, *fragments)
        assert "Model file not found" not in err
    assert not (tmp_path / "single.jpg").exists() and not (tmp_path / "outdir").exists()


def test_optimize_checks_its_output_before_optimising(capsys, tmp_path):
    content, style = make_photo(tmp_path / "c.jpg"), make_photo(tmp_path / "s.jpg", seed=2)
    code, err = in_process(capsys, optimize_main, "--content", content, "--style", style,
                           "--output", UNWRITABLE / "x.jpg", "--loss_model_weights", "random", "--no_progress")
    assert_clean_in_process(code, err, "Cannot write to the output folder", "--output")
    assert "--output_file" not in err and "RANDOM weights" not in err  # refused before the loss network


def test_names_from_model_files_never_leave_the_output_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _model(tmp_path / "evil.pth", "../../../victim")
    make_photo(tmp_path / "p.jpg")
    code, err = in_process(capsys, eval_main, "--model_file", model, "--image_file", "p.jpg", "--device", "cpu")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "generated").iterdir()) == ["p_victim.jpg"]
    assert not (tmp_path.parent / "victim.jpg").exists()


def test_a_folder_run_never_writes_onto_an_input(capsys, tmp_path):
    coll = tmp_path / "coll"
    make_photo(coll / "a.jpg")
    make_photo(coll / "a_base.jpg", seed=1)
    before = (coll / "a_base.jpg").read_bytes()
    model = _model(tmp_path / "base.pth", "base")
    capsys.readouterr()
    code = eval_main([str(a) for a in ("--model_file", model, "--image_file", coll, "--output_file", coll,
                                       "--device", "cpu")])
    out, err = capsys.readouterr()
    assert code == 1 and "a.jpg: Output" in err and "refusing to overwrite it" in err
    assert "Stylized 1 of 2 images" in out
    assert (coll / "a_base.jpg").read_bytes() == before
    assert sorted(p.name for p in coll.iterdir()) == ["a.jpg", "a_base.jpg", "a_base_base.jpg"]


def test_a_folder_run_goes_on_after_a_failing_image(capsys, tmp_path):
    folder = tmp_path / "photos"
    make_photo(folder / "a.jpg")
    Image.new("RGB", (300, 300)).save(folder / "big.png")
    make_photo(folder / "c.jpg", seed=3)
    model = _model(tmp_path / "m.pth", "m")
    code, err = in_process(capsys, eval_main, "--model_file", model, "--image_file", folder, "--output_file",
                           tmp_path / "out", "--device", "cpu", "--scale", "2", "--max_image_pixels", "100000")
    assert code == 1
    assert "error: big.png: scale 2 would make a 600 x 600 image" in err and "(skipped)" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_m.jpg", "c_m.jpg"]


@pytest.mark.parametrize("flag, value", [("--scale", "nan"), ("--scale", "inf"), ("--max_size", "0")])
def test_nan_and_inf_sizes_are_refused(capsys, tmp_path, flag, value):
    make_photo(tmp_path / "p.jpg")
    code, err = in_process(capsys, eval_main, "--model_file", tmp_path / "m.pth", "--image_file",
                           tmp_path / "p.jpg", flag, value)
    assert_clean_in_process(code, err, f"{flag} must be > 0")


# ---- validation while training -----------------------------------------------------------------

def test_validation_losses_and_images_are_logged(capsys, tmp_path, train_dir, style_file):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fast_nst.training.data import crop_transform

    val = tmp_path / "val"
    for i in range(3):
        make_photo(val / f"v{i}.jpg", (50, 40), seed=50 + i)
    conf = write_config(tmp_path / "c" / "v.yml", **tiny_values(tmp_path / "m", train_dir, style_file, max_steps=4,
                                                              val_dir=str(val), val_every=2, val_images=2,
                                                              log_every=4))
    code, err = in_process(capsys, train_main, "-c", conf, "--no_progress")
    assert code == 0, err
    assert "step 4/4: " in err and " val=" in err.split("step 4/4: ")[1].splitlines()[0]
    events = EventAccumulator(str(tmp_path / "m" / "v"), size_guidance={"images": 0}).Reload()
    for tag in ("val/total", "val/content", "val/style", "val/tv"):
        assert [e.step for e in events.Scalars(tag)] == [2, 4], tag
    assert [e.step for e in events.Images("val/stylized")] == [2, 4]
    # The TensorBoard sample photos come from val_dir, not from the training photos: the first
    # tile of the logged grid is v0.jpg's centre crop.
    first = crop_transform(Image.open(val / "v0.jpg").convert("RGB"), 32, None)  # (3, 32, 32)
    logged = Image.open(io.BytesIO(events.Images("samples/content")[0].encoded_image_string)).convert("RGB")
    tile = torch.from_numpy(np.array(logged)).permute(2, 0, 1)[:, :32, :32].float() / 255
    assert (tile - first).abs().max() < 0.02


def test_missing_val_dir_fails_fast_with_the_download(capsys, tmp_path, train_dir, style_file):
    conf = write_config(tmp_path / "c" / "w.yml", **tiny_values(tmp_path / "m", train_dir, style_file,
                                                              val_dir=str(tmp_path / "no_val")))
    code, err = in_process(capsys, train_main, "-c", conf)
    assert_clean_in_process(code, err, "val_dir", "does not exist", "python -m fast_nst.download coco --split val")


def test_tiled_stylizing_shows_a_progress_bar(capsys, tmp_path):
    model = _model(tmp_path / "m.pth", "m")
    make_photo(tmp_path / "big.jpg", (400, 300))
    code, err = in_process(capsys, eval_main, "--model_file", model, "--image_file", tmp_path / "big.jpg",
                           "--output_file", tmp_path / "o.jpg", "--device", "cpu", "--tile_size", "200",
                           "--overlap", "8")
    from fast_nst.stylize.tiling import plan_tiles, tile_core

    assert code == 0, err
    tiles = len(plan_tiles(300, 400, tile_core(200, 8), 8))
    assert tiles > 1 and f"tiles:   0%|          | 0/{tiles}" in err
    assert Image.open(tmp_path / "o.jpg").size == (400, 300)


@pytest.mark.parametrize("loss_model, model_type", [("vgg19", "johnson"), ("vgg16", "johnson_slim")])
def test_training_builds_the_networks_the_config_names(capsys, tmp_path, train_dir, style_file, loss_model,
                                                       model_type):
    from fast_nst.io.checkpoint import read_checkpoint

    conf = write_config(tmp_path / "c" / "n.yml", **tiny_values(tmp_path / "m", train_dir, style_file, max_steps=2,
                                                              loss_model=loss_model, model_type=model_type,
                                                              style_layers=["relu1_2", "relu3_4" if loss_model == "vgg19"
                                                                            else "relu3_3"]))
    code, err = in_process(capsys, train_main, "-c", conf, "--no_progress")
    assert code == 0, err
    ckpt = read_checkpoint(tmp_path / "m" / "n" / "n.pth")
    assert ckpt["model_type"] == "johnson" and ckpt["config"]["loss_model"] == loss_model
    expected = (16, 3) if model_type == "johnson_slim" else (32, 5)
    assert (ckpt["model_args"]["base_channels"], ckpt["model_args"]["num_residual"]) == expected


def test_a_full_disk_while_saving_is_one_message_and_keeps_the_last_checkpoint(monkeypatch, capsys, tmp_path,
                                                                                train_dir, style_file):
    import errno

    import fast_nst.io.checkpoint as ckpt_io

    real_save = torch.save
    calls = []

    def filling_up(obj, f, *a, **k):
        calls.append(1)
        if len(calls) > 1:  # the first checkpoint fits, the disk is full after it
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ckpt_io.torch, "save", filling_up)
    conf = write_config(tmp_path / "c" / "f.yml", **tiny_values(tmp_path / "m", train_dir, style_file,
                                                              max_steps=4, checkpoint_every=2))
    code, err = in_process(capsys, train_main, "-c", conf)
    assert_clean_in_process(code, err, "Cannot write the checkpoint of step 4", "No space left on device",
                            "step_00000002.pth is intact", "--resume")
    files = sorted(p.name for p in (tmp_path / "m" / "f" / "checkpoints").iterdir())
    assert files == ["step_00000002.pth"]  # no temporary file left beside it


def test_a_missing_sample_image_fails_before_overwrite_deletes_anything(trained, capsys, tmp_path):
    import shutil

    conf, run_dir = trained
    copy = tmp_path / "models" / "tiny"
    shutil.copytree(run_dir, copy)
    before = sorted(p.name for p in copy.rglob("*"))
    code, err = in_process(capsys, train_main, "-c", conf, "--overwrite", "--set", f"model_path={tmp_path / 'models'}",
                           "--set", f"sample_images=[{tmp_path / 'nope.jpg'}]")
    assert_clean_in_process(code, err, "sample_images:", "nope.jpg not found")
    assert sorted(p.name for p in copy.rglob("*")) == before  # nothing deleted, no lock left


def test_tiles_too_small_for_a_deeper_network_are_one_line(tmp_path):
    from fast_nst.core.errors import FastNSTError
    from fast_nst.stylize import TorchStylizer

    net = TransformNet(TransformNetArgs(base_channels=4, num_residual=7))  # 70 px reach: 72 px context
    s = TorchStylizer(net, torch.device("cpu"))
    photo = Image.new("RGB", (300, 240))
    with pytest.raises(FastNSTError, match=r"tile_size: .*2 x context \(72\).*for this network"):
        s.stylize(photo, tile_size=150, overlap=8)  # enough for 64 px of context, not for 72
    assert s.stylize(photo, tile_size=240, overlap=8).size == (300, 240)
