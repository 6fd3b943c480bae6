"""The run folder's own files: what a previous run left there, what ``--overwrite`` deletes
(only those: a user's other files stay), and the checkpoints of a branch a resume abandons.

A resume from a checkpoint older than the run's newest starts a new branch of the run. The later
step files belong to the branch it leaves: left beside the new ones, pruning (which keeps the
highest step numbers) would delete the new branch's files and a later plain ``--resume`` would
continue the abandoned branch. They are moved into ``checkpoints/abandoned-after-step_N/``,
which nothing that lists checkpoints looks into.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from ..core.errors import FastNSTError
from ..core.files import probe_writable
from ..io import checkpoint as ckpt_io
from ..io.safetensors_file import SAFETENSORS_SUFFIX

__all__ = ["ABANDONED_PREFIX", "check_run_folder_writable", "clear_previous_run", "run_files", "set_aside_later"]

ABANDONED_PREFIX = "abandoned-after-"


def run_files(run_dir: Path, naming: str) -> list[Path]:
    """What a previous run left that starting afresh would overwrite."""
    found = [p for _, p in ckpt_io.list_checkpoints(run_dir)]
    finals = [run_dir / f"{naming}.pth", run_dir / f"{naming}{SAFETENSORS_SUFFIX}"]
    return found + [final for final in finals if final.exists()]


def check_run_folder_writable(run_dir: Path) -> None:
    """FastNSTError, before any work, unless the run can write its files: the run folder, and
    its checkpoints folder when something is there already (a file of that name was found only
    at the first checkpoint save, thousands of steps in)."""
    probe_writable(run_dir, "the run folder", "Set model_path to a writable folder.")
    folder = run_dir / ckpt_io.CHECKPOINT_DIR
    if folder.is_dir():
        probe_writable(folder, "the checkpoints folder", "Make it writable, or set model_path to a writable folder.")
    elif folder.exists() or folder.is_symlink():
        raise FastNSTError(f"{folder} is a file, not a folder: the run keeps its checkpoints there. Move or "
                           "rename that file, or train into another run folder (naming or model_path).")


def _abandoned_folders(run_dir: Path) -> list[Path]:
    folder = run_dir / ckpt_io.CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.name.startswith(ABANDONED_PREFIX) and p.is_dir()
            and not p.is_symlink()]


def clear_previous_run(run_dir: Path, naming: str) -> None:
    """Delete what a run writes (``--overwrite``): its step files (abandoned branches' too), their
    half-written temporaries, the final model and the TensorBoard logs; a checkpoints folder is
    removed only when nothing else is left in it."""
    for folder in _abandoned_folders(run_dir):
        for _, path in ckpt_io.step_files(folder):
            path.unlink(missing_ok=True)
        _remove_if_empty(folder)
    folder = run_dir / ckpt_io.CHECKPOINT_DIR
    for _, path in ckpt_io.list_checkpoints(run_dir):
        path.unlink(missing_ok=True)
    if folder.is_dir():
        for stale in folder.glob(".step_*.tmp*"):
            stale.unlink(missing_ok=True)
        _remove_if_empty(folder)
    (run_dir / f"{naming}.pth").unlink(missing_ok=True)
    (run_dir / f"{naming}{SAFETENSORS_SUFFIX}").unlink(missing_ok=True)
    for p in run_dir.glob("events.out.tfevents.*"):
        p.unlink()


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def set_aside_later(run_dir: Path, step: int) -> Optional[Path]:
    """Move the step files of ``run_dir`` past ``step`` (the step a resume starts from) into a
    new ``checkpoints/abandoned-after-step_N[-K]/``, said in one line on stderr; the folder, or
    None when there were none."""
    later = [p for s, p in ckpt_io.list_checkpoints(run_dir) if s > step]
    if not later:
        return None
    base = run_dir / ckpt_io.CHECKPOINT_DIR / f"{ABANDONED_PREFIX}{Path(ckpt_io.checkpoint_name(step)).stem}"
    dest, k = base, 1
    while dest.exists() or dest.is_symlink():  # the same step abandoned before: keep both
        k += 1
        dest = base.with_name(f"{base.name}-{k}")
    dest.mkdir()
    for path in later:
        path.rename(dest / path.name)
    print(f"Resuming at step {step}: moved the {len(later)} later checkpoint(s) of the branch this resume "
          f"leaves ({', '.join(p.name for p in later[:3])}{' ...' if len(later) > 3 else ''}) into {dest}; "
          "delete that folder when you no longer need them.", file=sys.stderr)
    return dest
