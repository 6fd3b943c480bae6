"""fast-nst models as ``.safetensors`` files: the network's weights as tensors, and everything
else a checkpoint holds (format version, model_type, model_args, style names, training config,
provenance; see :mod:`fast_nst.io.checkpoint`) as JSON in the header's metadata::

    __metadata__ = {"format": "pt", "fast_nst": "{\\"format\\": \\"fast-nst\\", \\"model_type\\": ...}"}

A ``.safetensors`` file holds no code, and loads memory-mapped without unpickling anything. It
is outside data like any model file: its header is checked by the boundary
(:mod:`fast_nst.core.untrusted.safetensors_header`), the metadata's JSON is bounded
(:data:`MAX_METADATA_BYTES`, :data:`MAX_METADATA_DEPTH`), and :func:`read_state_for` compares
the tensors with the network the metadata describes before reading any of them.

Only a final model is written (``kind`` "model"): a training checkpoint's optimizer and RNG
state stay in its ``.pth``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..core.errors import CheckpointError, quote
from ..core.files import atomic_write
from ..core.untrusted import load_json
from ..core.untrusted.safetensors_header import (SafetensorsHeader, load_tensors, read_header,
                                                 require_safetensors)
from ..core.untrusted.weights import spec_of
from ..nets import USER_FILE_ARGS
from ..nets.base import StyleNetwork

try:  # an optional dependency (pip install safetensors): require_safetensors says so when missing
    from safetensors.torch import save
except ImportError:  # pragma: no cover - depends on the installation
    save = None

__all__ = ["MAX_METADATA_BYTES", "MAX_METADATA_DEPTH", "METADATA_KEY", "SAFETENSORS_SUFFIX", "is_safetensors",
           "network_words", "read_safetensors_checkpoint", "read_safetensors_metadata", "read_state_for",
           "write_safetensors"]

SAFETENSORS_SUFFIX = ".safetensors"
#: The header metadata entry holding the checkpoint's entries (all but the weights) as JSON.
METADATA_KEY = "fast_nst"
# A checkpoint's entries besides its weights are a few kB (the training config is under 2 kB);
# 256 kB leaves room for hundreds of style names of 200 characters.
MAX_METADATA_BYTES = 256 << 10
# checkpoint -> config -> model_args / a list: 3 levels; 8 leaves room for later entries.
MAX_METADATA_DEPTH = 8
# Checkpoint entries that are not written: the weights go to the tensors, training state nowhere.
_NOT_METADATA = ("model_state", "training_state", "optimizer_state", "rng_state")


def is_safetensors(path: str | Path) -> bool:
    """Whether ``path`` names a .safetensors file (by its suffix, as .onnx files are told)."""
    return Path(path).suffix.lower() == SAFETENSORS_SUFFIX


def write_safetensors(ckpt: dict[str, Any], path: str | Path) -> None:
    """Write checkpoint ``ckpt`` (:func:`~fast_nst.io.checkpoint.make_checkpoint`'s dict) to
    ``path`` atomically: its ``model_state`` as the tensors, its other entries (training state
    and the user's file paths in ``model_args`` left out, ``kind`` "model") as the metadata.
    CheckpointError when safetensors is missing, OSError when the file cannot be written."""
    path = Path(path)
    require_safetensors(path)
    meta = {k: v for k, v in ckpt.items() if k not in _NOT_METADATA}
    meta["kind"] = "model"
    # A file on this machine (AdaIN's encoder): the loader asks its user for it, and a shared
    # file should not carry the path.
    meta["model_args"] = {k: "" if k in USER_FILE_ARGS else v for k, v in ckpt["model_args"].items()}
    text = json.dumps(meta, sort_keys=True, ensure_ascii=False)
    if len(text.encode("utf-8")) > MAX_METADATA_BYTES:
        raise CheckpointError(f"{path}: the model's description is {len(text.encode('utf-8')):,} bytes of JSON, "
                              f"more than the {MAX_METADATA_BYTES:,} a .safetensors model may hold.")
    # safetensors refuses tensors sharing memory or not contiguous; a state dict's are neither
    # once cloned.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in ckpt["model_state"].items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    # "format": "pt" is what the Hugging Face libraries look for in a PyTorch safetensors file.
    # Written by Python, not by safetensors' writer, whose SafetensorError for a full disk no
    # caller of an OSError would catch.
    data = save(state, metadata={"format": "pt", METADATA_KEY: text})
    with atomic_write(path, keep_suffix=True) as tmp:
        tmp.write_bytes(data)


def network_words(model: StyleNetwork) -> str:
    """``model`` as the messages about weights that do not fit it name it."""
    return f"the transform net ({model.model_type})"


def read_safetensors_metadata(path: str | Path, max_bytes: int) -> tuple[SafetensorsHeader, dict[str, Any]]:
    """(the checked header, the checkpoint entries of its metadata) of the .safetensors file
    ``path`` of at most ``max_bytes``; no tensor is read. CheckpointError for a bad header, a
    file without fast-nst's metadata, or metadata that is not a bounded JSON object."""
    header = read_header(path, max_bytes)
    text = header.metadata.get(METADATA_KEY)
    if text is None:
        raise CheckpointError(f"{path}: a safetensors file without fast-nst's description of the network "
                              f"(no '{METADATA_KEY}' entry in its metadata), so not a fast-nst model. Export "
                              "one from a .pth with: python -m fast_nst.export MODEL.pth --format safetensors")
    meta = load_json(text, f"{path}: metadata '{METADATA_KEY}'", CheckpointError, MAX_METADATA_BYTES,
                     MAX_METADATA_DEPTH)
    if not isinstance(meta, dict) or "model_state" in meta:
        raise CheckpointError(f"{path}: its metadata '{METADATA_KEY}' is not a description of a fast-nst "
                              "model (a JSON object of checkpoint entries); the file is damaged.")
    if meta.get("kind") != "model":  # training state (optimizer, RNG) is never written to one
        raise CheckpointError(f"{path}: a .safetensors file is a final model (kind 'model'), this one says "
                              f"{quote(meta.get('kind'), 40)}; the file is damaged. Resume training from the "
                              "run's .pth checkpoints.")
    return header, meta


def read_state_for(path: str | Path, header: SafetensorsHeader, model: StyleNetwork) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` for ``model``: CheckpointError, before any is read, unless the
    header declares exactly the names and shapes of ``model.state_dict()``, each of a dtype of
    its kind (:func:`~fast_nst.core.untrusted.weights.check_state`, as a .pth's weights are checked)."""
    return load_tensors(path, header, spec_of(model.state_dict()), network=network_words(model))


def read_safetensors_checkpoint(path: str | Path, max_bytes: int) -> dict[str, Any]:
    """A checkpoint dict (its entries from the metadata, ``model_state`` from the tensors) of
    the .safetensors file ``path`` of at most ``max_bytes``; validate it as a .pth's content
    (:func:`~fast_nst.io.checkpoint.validate_checkpoint`)."""
    header, meta = read_safetensors_metadata(path, max_bytes)
    return {**meta, "model_state": load_tensors(path, header)}
