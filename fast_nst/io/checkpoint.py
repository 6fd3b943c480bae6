"""Self-describing checkpoints, written atomically and read with ``torch.load(weights_only=True)``.

A checkpoint is a dict::

    format          "fast-nst"
    format_version  2 (1: the same without model_type, which meant "johnson")
    kind            "model" (final model) or "training" (also optimizer and RNG state)
    model_type      the network's name in fast_nst.nets.NETWORKS
    model_args      its Args dataclass as a dict
    model_state     the transform net's state dict
    config          the resolved TrainConfig as a dict
    step            optimizer steps taken
    optimizer_state (training only) Adam's state dict
    rng_state       (training only) {"torch": ByteTensor, "cuda": [ByteTensor], "python": list}

A model file is untrusted input: nothing but tensors and plain containers is ever unpickled.
"""

from __future__ import annotations

import codecs
import json
import pickle
import random
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch

from ..core.config import TrainConfig
from ..core.errors import CheckpointError
from ..core.files import atomic_write
from ..core.version import __version__
from ..nets import NETWORKS, make_args, network_class
from ..nets.base import StyleNetwork
from .pytorch_examples import convert_pytorch_examples, is_pytorch_examples

__all__ = ["CHECKPOINT_DIR", "FORMAT_NAME", "FORMAT_VERSION", "atomic_torch_save", "build_model",
           "capture_rng_state", "checkpoint_name", "list_checkpoints",
           "load_model", "make_checkpoint", "read_checkpoint", "require_model_file",
           "restore_rng_state", "safe_torch_load", "save_training_checkpoint", "torchscript_error",
           "torchscript_source", "validate_checkpoint"]

FORMAT_NAME = "fast-nst"
# 2: checkpoints name their network (model_type). Version 1 files have none and are Johnson nets.
FORMAT_VERSION = 2
# What a version-1 checkpoint (no model_type entry) holds.
LEGACY_MODEL_TYPE = "johnson"
CHECKPOINT_DIR = "checkpoints"
_CKPT_RE = re.compile(r"^step_(\d+)\.pth$")
_REQUIRED = ("format_version", "kind", "model_args", "model_state", "config", "step")


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.pth"


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """Save so that ``path`` holds either its old content or the complete new one, even if the
    process is killed mid-write (see :func:`fast_nst.core.files.atomic_write`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def make_checkpoint(model: StyleNetwork, cfg: TrainConfig, step: int,
                    optimizer: Optional[torch.optim.Optimizer] = None,
                    rng_state: Optional[dict] = None) -> dict[str, Any]:
    """The checkpoint dict; with ``optimizer`` it is a training checkpoint that can resume."""
    ckpt: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "fast_nst_version": __version__,
        "kind": "training" if optimizer is not None else "model",
        "model_type": model.model_type,
        "model_args": model.args.to_dict(),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": cfg.to_dict(),
        "step": step,
    }
    if optimizer is not None:
        ckpt["optimizer_state"] = optimizer.state_dict()
        ckpt["rng_state"] = rng_state if rng_state is not None else capture_rng_state()
    return ckpt


def capture_rng_state() -> dict[str, Any]:
    version, state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(state), gauss],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        # A checkpoint from an 8-GPU node may resume on a 1-GPU machine (or the reverse): restore
        # the generators both have. (Training draws nothing from them; this keeps resume exact
        # for code that would.)
        for index, gpu_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(gpu_state, index)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        keys = list(obj)[:5]
        return f"a dict with keys {keys}{' ...' if len(obj) > 5 else ''}"
    return f"a {type(obj).__name__}"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint file without building a model.

    Raises :class:`CheckpointError` for a missing file, a file that is not a PyTorch checkpoint,
    one whose unpickling would run code or build arbitrary objects, another project's format,
    a newer format version or missing entries.
    """
    path = Path(path)
    ckpt = safe_torch_load(path)
    return validate_checkpoint(ckpt, path)


#: What every "not a checkpoint" message asks for: the files :func:`load_model` reads.
_EXPECTED = ("Expected a .pth model written by fast-nst (train.py's final model or a training "
             "checkpoint from its checkpoints/ folder) or a pytorch/examples fast_neural_style .pth.")
# Bytes sniffed to tell text from binary; the largest fast_nst.json read from a TorchScript archive.
_SNIFF_BYTES = 4096
_MAX_METADATA_BYTES = 1 << 16


def torchscript_source(path: Path) -> Optional[str]:
    """None unless ``path`` is a TorchScript archive (torch.jit.save); then the name of the
    checkpoint fast-nst exported it from, or "" when the archive does not say.

    torch.load itself recognises TorchScript by a ``constants.pkl`` entry and refuses it under
    weights_only=True with a warning and an error text that advises weights_only=False; looking
    first lets us explain the file instead."""
    import json
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if not any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
                return None
            # Only plain JSON is read from the archive (never its pickles or code).
            meta = next((i for i in zf.infolist() if i.filename.endswith("/extra/fast_nst.json")), None)
            if meta is None or meta.file_size > _MAX_METADATA_BYTES:
                return ""
            source = json.loads(zf.read(meta)).get("source")
            return source if isinstance(source, str) else ""
    except (OSError, zipfile.BadZipFile, ValueError, AttributeError, RuntimeError, EOFError):
        return None


def torchscript_error(path: Path, source: str) -> CheckpointError:
    origin = f" ({source})" if source and source != path.name else ""
    return CheckpointError(
        f"{path}: this is a TorchScript export (python -m fast_nst.export --format torchscript), "
        f"which eval.py, load_stylizer and fast-nst's other commands cannot read; use the .pth "
        f"checkpoint it was exported from{origin}, or an .onnx export (--format onnx)."
    )


def _what_is_it(path: Path, error: BaseException) -> str:
    """A short description of a file torch.load could not read, in our words: torch's own
    error texts advise re-running with weights_only=False, which must never reach a user."""

    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as e:
        return f"it cannot be read: {e.strerror or type(e).__name__}"
    if not head:
        return "the file is empty"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                is_torch = any(n.endswith("data.pkl") for n in zf.namelist())
        except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, EOFError):
            is_torch = False
        return ("a PyTorch archive that cannot be unpacked: truncated or corrupt" if is_torch
                else "it is a zip archive that is not a PyTorch checkpoint")
    if head.startswith(b"PK"):
        return "a zip archive that is truncated or corrupt: an interrupted copy or download?"
    if b"\0" not in head:
        try:
            # final=False: a multi-byte character cut at the end of the sample is not an error
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError:
            pass
        else:
            if path.suffix.lower() in (".yml", ".yaml"):
                return "it is a YAML text file, such as a config, not a model"
            return "it is a text file"
    if isinstance(error, (EOFError, pickle.UnpicklingError)):
        return "unreadable binary data: not a pickle, or a truncated one"
    return f"unreadable binary data ({type(error).__name__})"


def require_model_file(path: Path) -> None:
    """:class:`CheckpointError` unless ``path`` is an existing file (.pth and .onnx alike)."""
    if not path.is_file():
        raise CheckpointError(f"Model file not found: {path}" if not path.exists()
                              else f"Model file is a folder, not a file: {path}")


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into a :class:`CheckpointError`
    whose message is fast-nst's own (torch's texts recommend weights_only=False)."""
    path = Path(path)
    require_model_file(path)
    source = torchscript_source(path)
    if source is not None:
        raise torchscript_error(path, source)
    try:
        with warnings.catch_warnings():
            # torch warns (several lines) before refusing a TorchScript archive; we explain it below
            warnings.filterwarnings("ignore", message=".*TorchScript archive", category=UserWarning)
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the weights-only unpickler's refusals; zip/stream errors, EOF, bad magic...
        if isinstance(e, pickle.UnpicklingError):
            # torch labels every weights-only failure "Weights only load failed"; only a refused
            # global/class means the pickle asked to build arbitrary objects (a damaged file fails too).
            if "Unsupported global" in str(e) or "Unsupported class" in str(e):
                raise CheckpointError(
                    f"{path}: refused: the file contains pickled Python objects other than tensors "
                    "and plain containers, which could run code when loaded. fast-nst only loads "
                    "weights-only checkpoints; nothing from this file was executed."
                ) from None
        elif "TorchScript" in str(e):  # an archive our own check did not recognise
            raise torchscript_error(path, "") from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, or the file is damaged "
                              f"({_what_is_it(path, e)}). {_EXPECTED}") from None
    return ckpt


def validate_checkpoint(ckpt: Any, path: str | Path) -> dict[str, Any]:
    """Check that a loaded object is a fast-nst checkpoint this version can read."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_NAME:
        hint = ""
        if isinstance(ckpt, dict) and "conv1.conv2d.weight" in ckpt:
            hint = (" It looks like a pytorch/examples fast_neural_style model: eval.py and "
                    "load_stylizer read it directly, or convert it with "
                    "python -m fast_nst.convert IN OUT --from pytorch-examples.")
        raise CheckpointError(
            f"{path}: not a fast-nst checkpoint: it is {_describe(ckpt)}.{hint} Expected a dict "
            f"with format '{FORMAT_NAME}' written by fast-nst's train.py."
        )
    version = ckpt.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: fast-nst checkpoint without a valid format_version ({version!r}).")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer fast-nst (format version {version}); this version reads up "
            f"to format version {FORMAT_VERSION}. Upgrade fast-nst to load it."
        )
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: incomplete fast-nst checkpoint, missing {', '.join(missing)}.")
    if ckpt["kind"] not in ("model", "training"):
        raise CheckpointError(f"{path}: unknown checkpoint kind {ckpt['kind']!r}; expected model or training.")
    return ckpt


def build_model(ckpt: dict[str, Any], path: str | Path) -> StyleNetwork:
    """The network stored in ``ckpt`` (from :func:`read_checkpoint`), built from the registry
    by its ``model_type`` (version-1 files: the Johnson net), in eval mode."""
    model_type = ckpt.get("model_type", LEGACY_MODEL_TYPE)
    margs = ckpt["model_args"]
    if not isinstance(model_type, str) or model_type not in NETWORKS:
        raise CheckpointError(f"{path}: unknown model_type {str(model_type)[:60]!r}; this fast-nst "
                              f"knows: {', '.join(NETWORKS)}. Upgrade fast-nst to load it.")
    if not isinstance(margs, dict):
        raise CheckpointError(f"{path}: model_args is {_describe(margs)}, expected a dict.")
    try:
        model = network_class(model_type)(make_args(model_type, margs))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad model_args ({str(e)[:300]}).") from None
    state = ckpt["model_state"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: model_state is {_describe(state)}, expected a state dict.")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        raise CheckpointError(f"{path}: weights do not fit the transform net ({model_type}: {detail[:600]}).") from None
    return model.eval()


def load_model(path: str | Path) -> tuple[StyleNetwork, dict[str, Any]]:
    """(network in eval mode, checkpoint dict) from a model or training checkpoint, or
    from a pytorch/examples fast_neural_style model (converted on the fly)."""
    obj = safe_torch_load(path)
    if is_pytorch_examples(obj):
        net = convert_pytorch_examples(obj, str(path))
        return net, {"config": {"naming": Path(path).stem}, "step": None, "converted_from": "pytorch-examples"}
    ckpt = validate_checkpoint(obj, path)
    return build_model(ckpt, path), ckpt


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Training checkpoints in ``run_dir/checkpoints`` as (step, path), oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _CKPT_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def save_training_checkpoint(ckpt: dict[str, Any], run_dir: str | Path, keep: int) -> Path:
    """Write ``ckpt`` as ``run_dir/checkpoints/step_N.pth`` atomically; keep the newest ``keep``."""
    path = Path(run_dir) / CHECKPOINT_DIR / checkpoint_name(ckpt["step"])
    atomic_torch_save(ckpt, path)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path
