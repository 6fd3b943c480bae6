"""The run folder across runs: a resume applies the config's lr, a resume from an older checkpoint
sets the abandoned branch's later checkpoints aside, --overwrite deletes only the run's own files,
and the set-up checks (photos for a batch, sample images, a file named checkpoints) come before
anything in the folder is cleared or made. In-process, tiny runs; each test failed before its fix."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch

from conftest import assert_clean_in_process, in_process, tiny_values, write_config
from fast_nst.commands.train import main as train_main
from fast_nst.io.checkpoint import atomic_torch_save, list_checkpoints, save_training_checkpoint
from fast_nst.training.run_folder import clear_previous_run, set_aside_later
from fast_nst.training.setup import find_resume_checkpoint


@pytest.fixture(scope="module")
def ran(tmp_path_factory, train_dir, style_file):
    """A finished 6-step run: checkpoints at steps 2, 4 and 6, and its final model."""
    base = tmp_path_factory.mktemp("ran")
    conf = write_config(base / "conf" / "run.yml", **tiny_values(base / "models", train_dir, style_file,
                                                                 max_steps=6, keep_checkpoints=3))
    assert train_main(["-c", str(conf), "--no_progress"]) == 0
    return conf, base / "models" / "run"


@pytest.fixture
def run(ran, tmp_path):
    """(config, run folder, the options that point the config at it): a copy of ``ran`` to change."""
    conf, run_dir = ran
    copy = tmp_path / "models" / "run"
    shutil.copytree(run_dir, copy)
    return conf, copy, ["--set", f"model_path={tmp_path / 'models'}", "--no_progress"]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _lr(path: Path) -> float:
    return torch.load(path, weights_only=True)["optimizer_state"]["param_groups"][0]["lr"]


def test_a_resume_trains_with_the_configs_lr(run, capsys):
    conf, run_dir, where = run
    assert _lr(list_checkpoints(run_dir)[-1][1]) == pytest.approx(3e-4)
    with pytest.warns(UserWarning, match=r"differs from the checkpoint's in: lr;"):
        code, err = in_process(capsys, train_main, "-c", conf, "--resume", *where, "--set", "max_steps=7",
                               "--set", "lr=0.05")
    assert code == 0, err
    newest = list_checkpoints(run_dir)[-1][1]
    assert newest.name == "step_00000007.pth" and _lr(newest) == pytest.approx(0.05)


def test_resuming_into_a_run_of_another_name_is_no_config_change(run, capsys, tmp_path):
    conf, run_dir, _ = run
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, err = in_process(capsys, train_main, "-c", conf, "--resume", list_checkpoints(run_dir)[-1][1],
                               "--set", f"model_path={tmp_path / 'other'}", "--set", "naming=renamed",
                               "--set", "max_steps=7", "--no_progress")
    assert code == 0, err
    assert not [w for w in caught if "differs" in str(w.message)], [str(w.message) for w in caught]
    assert (tmp_path / "other" / "renamed" / "checkpoints" / "step_00000007.pth").is_file()


def test_resuming_from_an_older_checkpoint_sets_the_later_ones_aside(run, capsys):
    conf, run_dir, where = run
    later = {name: (run_dir / "checkpoints" / name).read_bytes() for name in ("step_00000004.pth", "step_00000006.pth")}
    code, err = in_process(capsys, train_main, "-c", conf, "--resume", run_dir / "checkpoints" / "step_00000002.pth",
                           *where, "--set", "max_steps=5", "--set", "keep_checkpoints=1")
    assert code == 0, err
    aside = run_dir / "checkpoints" / "abandoned-after-step_00000002"
    assert f"moved the 2 later checkpoint(s) of the branch this resume leaves (step_00000004.pth, " \
           f"step_00000006.pth) into {aside}" in err
    assert {p.name: p.read_bytes() for p in aside.iterdir()} == later  # moved, not deleted
    # keep_checkpoints 1 kept the new branch's newest, not the old branch's step 6.
    assert [p.name for _, p in list_checkpoints(run_dir)] == ["step_00000005.pth"]
    assert find_resume_checkpoint(run_dir, True)[1].name == "step_00000005.pth"  # a plain --resume goes on here
    assert torch.load(run_dir / "run.pth", weights_only=True)["step"] == 5


def test_a_branch_abandoned_twice_keeps_both_and_pruning_keeps_the_new_file(tmp_path, capsys):
    run_dir = tmp_path / "r"
    for step in (2, 4, 6):
        atomic_torch_save({"step": step}, run_dir / "checkpoints" / f"step_{step:08d}.pth")
    (run_dir / "checkpoints" / "abandoned-after-step_00000002").mkdir()
    assert set_aside_later(run_dir, 6) is None
    dest = set_aside_later(run_dir, 2)
    assert dest.name == "abandoned-after-step_00000002-2"
    assert sorted(p.name for p in dest.iterdir()) == ["step_00000004.pth", "step_00000006.pth"]
    # A step file of a higher number never costs the file just written its place.
    atomic_torch_save({"step": 9}, run_dir / "checkpoints" / "step_00000009.pth")
    path = save_training_checkpoint({"step": 3}, run_dir, keep=1)
    assert [p.name for _, p in list_checkpoints(run_dir)] == ["step_00000003.pth"] and path.is_file()


def test_overwrite_deletes_only_what_the_run_wrote(run, capsys):
    conf, run_dir, where = run
    (run_dir / "checkpoints" / "notes.txt").write_text("mine")
    aside = run_dir / "checkpoints" / "abandoned-after-step_00000002"
    aside.mkdir()
    (aside / "step_00000004.pth").write_bytes(b"an abandoned branch's")
    code, err = in_process(capsys, train_main, "-c", conf, "--overwrite", *where, "--set", "max_steps=1")
    assert code == 0, err
    assert (run_dir / "checkpoints" / "notes.txt").read_text() == "mine"
    assert not aside.exists()  # the run's own, emptied and removed
    assert [p.name for _, p in list_checkpoints(run_dir)] == ["step_00000001.pth"]
    # Emptied of the run's files, the folder goes too; a folder the user left something in stays.
    (run_dir / "checkpoints" / "notes.txt").unlink()
    clear_previous_run(run_dir, "run")
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "run.pth").exists()


@pytest.mark.parametrize("resume", [False, True])
def test_a_file_named_checkpoints_is_refused_before_training(tmp_path, train_dir, style_file, capsys, resume):
    conf = write_config(tmp_path / "c.yml", **tiny_values(tmp_path / "models", train_dir, style_file))
    blocker = tmp_path / "models" / "c" / "checkpoints"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a user's file")
    code, err = in_process(capsys, train_main, "-c", conf, *(["--resume"] if resume else []))
    assert_clean_in_process(code, err, f"{blocker} is a file, not a folder: the run keeps its checkpoints there",
                            "Move or rename that file")
    assert _tree(tmp_path / "models") == ["c", "c/checkpoints"] and blocker.read_text() == "a user's file"


def test_too_few_photos_for_a_batch_fail_before_overwrite_clears_or_a_folder_is_made(run, capsys, tmp_path):
    conf, run_dir, where = run
    before = _tree(run_dir)
    code, err = in_process(capsys, train_main, "-c", conf, "--overwrite", *where, "--set", "batch_size=13")
    assert_clean_in_process(code, err, "Only 12 training images for a global batch of 13", "lower batch_size")
    assert _tree(run_dir) == before  # nothing deleted, no lock left
    code, err = in_process(capsys, train_main, "-c", conf, *where, "--set", "batch_size=13", "--set", "naming=fresh")
    assert_clean_in_process(code, err, "Only 12 training images")
    assert not (tmp_path / "models" / "fresh").exists()


def test_a_sample_image_that_is_no_image_fails_before_overwrite_clears(run, capsys, tmp_path):
    conf, run_dir, where = run
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    before = _tree(run_dir)
    code, err = in_process(capsys, train_main, "-c", conf, "--overwrite", *where, "--set", f"sample_images=[{text}]")
    assert_clean_in_process(code, err, f"sample_images: {text}: not an image file Pillow can read")
    assert _tree(run_dir) == before
