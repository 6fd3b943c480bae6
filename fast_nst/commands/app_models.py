"""The web app's models (:mod:`fast_nst.commands.app`): what ``--models`` names (folders searched
recursively, model files, ``hf://`` references and URLs), the built-in model when there are none,
and the model the page opens with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..core.errors import FastNSTError
from ..core.untrusted import input_file, shown
from ..io.bundled import BUNDLED_STYLE, bundled_model
from ..io.checkpoint import CHECKPOINT_DIR, list_checkpoints
from ..io.hub import is_remote_model, local_model_file

__all__ = ["DEFAULT_MODELS_DIR", "MODEL_SUFFIXES", "app_models", "default_model", "find_models"]

# Where train.py writes its models (its model_path default).
DEFAULT_MODELS_DIR = "models"


def find_models(root: Path) -> dict[str, Path]:
    """Models under ``root``, recursively, by a label (their path relative to ``root``): final
    models and pytorch/examples models (``*.pth``), ``*.safetensors`` and ``*.onnx`` exports, and run folders whose run
    has not finished (only ``checkpoints/step_*.pth``: the newest is used), ``root`` itself
    included. Training checkpoints of finished runs and hidden files are left out. FastNSTError
    when there are none."""
    root = Path(root)
    if not root.is_dir():
        raise FastNSTError(f"--models {root}: no such folder. Give the folder that holds your models "
                           "(train.py writes models/<name>/<name>.pth; python -m fast_nst.download "
                           "pretrained fetches four into models/).")
    found: dict[str, Path] = {}
    name = root.resolve().name  # "." is a run folder too
    if not (root / f"{name}.pth").is_file() and list_checkpoints(root):
        # --models given a run folder itself (eval.py --model_file takes one too): its checkpoints
        # are the model, as they are when the folder above is given.
        found[f"{name}/ (unfinished run: newest checkpoint)"] = root
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or CHECKPOINT_DIR in rel.parts[:-1]:
            continue
        if path.is_file() and path.suffix.lower() in (".pth", ".onnx", ".safetensors"):
            found[rel.as_posix()] = path
        elif path.is_dir() and not (path / f"{path.name}.pth").is_file() and list_checkpoints(path):
            found[f"{rel.as_posix()}/ (unfinished run: newest checkpoint)"] = path
    if not found:
        raise FastNSTError(f"--models {root}: no models found (*.pth, *.safetensors, *.onnx or run folders). Train "
                           "one (python train.py -c conf/wave.yml) or fetch some (python -m "
                           "fast_nst.download pretrained).")
    return found


MODEL_SUFFIXES = (".pth", ".onnx", ".safetensors")


def _named_models(entry: str) -> dict[str, Path]:
    """The models one ``--models`` entry names: an ``hf://`` reference or a URL (fetched into
    a cache now, labelled by the reference), a model file, or a folder (:func:`find_models`)."""
    if is_remote_model(entry):
        return {shown(entry.split("#")[0], 160): local_model_file(entry)}
    path = Path(entry)
    if path.is_file() or path.suffix.lower() in MODEL_SUFFIXES:
        if path.suffix.lower() not in MODEL_SUFFIXES:
            raise FastNSTError(f"--models {shown(entry)}: not a model file (*.pth, *.safetensors or *.onnx) "
                               "nor a folder of models.")
        return {path.name: input_file(path, "--models")}
    return find_models(path)


def app_models(entries: Optional[str | Sequence[str]]) -> dict[str, Path]:
    """The page's models: those each entry of ``entries`` names (see :func:`_named_models`; one
    str is one entry), or without entries those under ``models/``; the built-in model when a
    folder holds none (or, for the default folder, there is no folder)."""
    if isinstance(entries, str):
        entries = [entries]
    models: dict[str, Path] = {}
    if entries and (len(entries) > 1 or not Path(entries[0]).is_dir()):
        for entry in entries:
            for label, path in _named_models(entry).items():
                models[label if label not in models else f"{label} ({shown(entry)})"] = path
        print(f"{len(models)} model(s).")
        return models
    root = Path(entries[0] if entries else DEFAULT_MODELS_DIR)
    if entries or root.is_dir():
        try:
            models = find_models(root)
        except FastNSTError:
            if not root.is_dir():
                raise  # a --models folder that does not exist: a typo must not go unnoticed
    if models:
        print(f"{len(models)} model(s) from {root}.")
        return models
    path = bundled_model()
    print(f"No models in {root}: offering the built-in model {path.name}.")
    return {f"{BUNDLED_STYLE} (built-in)": path}


def default_model(models: dict[str, Path]) -> str:
    """The label the page opens with: the most recently written final model or export (what
    was just trained), not the alphabetically first (often an early test run); an unfinished
    run only when there is nothing else."""
    finished = [label for label, path in models.items() if path.is_file()]
    if not finished:
        return next(iter(models))
    return max(finished, key=lambda label: (models[label].stat().st_mtime, label))
