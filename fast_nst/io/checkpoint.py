"""Self-describing checkpoints, written atomically and read with ``torch.load(weights_only=True)``.

A checkpoint is a dict::

    format          "fast-nst"
    format_version  2 (1: the same without model_type, which meant "johnson")
    kind            "model" (final model) or "training" (also optimizer and RNG state)
    model_type      the network's name in fast_nst.nets.NETWORKS
    model_args      its Args dataclass as a dict
    model_state     the transform net's state dict
    style_names     (multi-style networks only) the styles' names, in the order of their rows
    config          the resolved TrainConfig as a dict
    step            optimizer steps taken
    optimizer_state (training only) Adam's state dict
    rng_state       (training only) {"torch": ByteTensor, "cuda": [ByteTensor], "python": list}
    about           (optional) one line of text on how the model was made (the built-in model's:
                    fast_nst.io.bundled)

A model file is untrusted input: nothing but tensors and plain containers is ever unpickled.
A ``.safetensors`` file (:mod:`fast_nst.io.safetensors_file`) holds the same entries: the
weights as tensors, the rest as JSON metadata; it is read wherever a ``.pth`` is.
"""

from __future__ import annotations

import io
import itertools
import random
import re
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..core.config import TrainConfig
from ..core.errors import CheckpointError, DataError, quote
from ..core.files import atomic_write
from ..core.untrusted import check_plain_data, input_file
from ..core.untrusted.archives import load_torch_file
from ..core.untrusted.weights import check_finite, check_state, spec_of
from ..core.version import __version__
from ..nets import NETWORKS, USER_FILE_ARGS, make_args, network_class
from ..nets.base import StyleNetwork
from ..nets import MAX_PARAMETERS
from .pytorch_examples import convert_pytorch_examples, is_pytorch_examples
from .safetensors_file import (is_safetensors, network_words, read_safetensors_checkpoint, read_safetensors_metadata,
                               read_state_for)

__all__ = ["CHECKPOINT_DIR", "FORMAT_NAME", "FORMAT_VERSION", "atomic_torch_save", "build_model",
           "capture_rng_state", "check_loss_model_file", "checkpoint_name", "list_checkpoints", "load_training_state",
           "load_model", "make_checkpoint", "read_checkpoint", "require_model_file",
           "restore_rng_state", "safe_torch_load", "save_training_checkpoint", "step_files",
           "is_torchscript", "torchscript_error", "validate_checkpoint"]

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
    buffer = io.BytesIO()
    # Written by Python, not torch.save's own writer: that one reports a full disk or a file
    # it cannot create as "RuntimeError: [enforce fail at inline_container.cc] unexpected pos",
    # where an OSError keeps the reason (ENOSPC, EACCES) for the messages that catch it.
    torch.save(obj, buffer)
    with atomic_write(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def make_checkpoint(model: StyleNetwork, cfg: TrainConfig, step: int,
                    optimizer: Optional[torch.optim.Optimizer] = None,
                    rng_state: Optional[dict] = None, trained: Optional[torch.nn.Module] = None) -> dict[str, Any]:
    """The checkpoint dict; with ``optimizer`` it is a training checkpoint that can resume.
    ``model``'s weights are the ones every loader stylizes with; ``trained``: the weights training
    continues from, when ``model`` holds their average (``training_state``, read only by a resume).
    Refuses (CheckpointError) a network with NaN or infinite weights: no such file is ever written."""
    state = _cpu_state(model)
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"refusing to save a network with NaN or infinite weights ({', '.join(bad[:3])}"
                              f"{' ...' if len(bad) > 3 else ''}); lower lr or the loss weights.")
    ckpt: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "fast_nst_version": __version__,
        "kind": "training" if optimizer is not None else "model",
        "model_type": model.model_type,
        "model_args": model.args.to_dict(),
        "model_state": state,
        "config": cfg.to_dict(),
        "step": step,
    }
    if model.style_names:
        ckpt["style_names"] = list(model.style_names)
    if trained is not None:
        ckpt["training_state"] = _cpu_state(trained)
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
    """What ``obj`` (read from a file) is, in a few words and bounded: never its full repr."""
    if isinstance(obj, dict):
        keys = ", ".join(quote(k, 40) for k in itertools.islice(obj, 5))
        return f"a dict with keys [{keys}]{' ...' if len(obj) > 5 else ''}"
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
# The most bytes a checkpoint archive may unpack to. The largest file fast-nst writes is a
# training checkpoint of the largest network the registry allows: MAX_PARAMETERS float32 weights
# (800 MB) plus Adam's two moments of the same size, 2.4 GB; 4 copies (3.2 GB) leave room for the
# pickle and RNG state.
MAX_ARCHIVE_BYTES = 4 * 4 * MAX_PARAMETERS


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (torch.jit.save).

    torch.load itself recognises TorchScript by a ``constants.pkl`` entry and refuses it under
    weights_only=True with a warning and an error text that advises weights_only=False; looking
    first lets us explain the file instead. Only the archive's table of contents is read: the
    name of the checkpoint fast-nst's export records inside (``fast_nst.json``) is the file's
    word, not ours, and a path named inside a model file is never given as advice."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, EOFError):
        return False


def torchscript_error(path: Path) -> CheckpointError:
    return CheckpointError(
        f"{path}: this is a TorchScript export (python -m fast_nst.export --format torchscript), "
        f"which eval.py, load_stylizer and fast-nst's other commands cannot read; use the .pth "
        f"checkpoint it was exported from, or an .onnx export (--format onnx)."
    )


def require_model_file(path: Path) -> None:
    """:class:`CheckpointError` unless ``path`` is an existing regular file (.pth and .onnx
    alike): a folder, a FIFO, a device (a link to /dev/zero) or a socket is refused before
    anything opens it."""
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"Model file not found: {path}")
    try:
        input_file(path, "Model file")
    except DataError as e:
        raise CheckpointError(str(e)) from None


def _refuse_other_formats(path: Path) -> None:
    """An ONNX or TorchScript export said to be one, with what to give instead."""
    if path.suffix.lower() == ".onnx":  # eval.py, load_stylizer and the app tell them by the suffix too
        raise CheckpointError(f"{path} is an ONNX export: this needs the .pth or .safetensors model it was "
                              "exported from (eval.py, load_stylizer and the web app run .onnx files).")
    if is_torchscript(path):
        raise torchscript_error(path)


def safe_torch_load(path: str | Path) -> Any:
    """A model file's content, loaded weights-only through the boundary
    (:func:`fast_nst.core.untrusted.archives.load_torch_file`, bounded by
    :data:`MAX_ARCHIVE_BYTES`; a ``.safetensors`` file: its checkpoint dict, see
    :func:`~fast_nst.io.safetensors_file.read_safetensors_checkpoint`); a TorchScript export is
    explained, every failure is a :class:`CheckpointError` in fast-nst's words."""
    path = Path(path)
    require_model_file(path)
    if is_safetensors(path):
        return read_safetensors_checkpoint(path, MAX_ARCHIVE_BYTES)
    return load_torch_file(path, MAX_ARCHIVE_BYTES, "a PyTorch checkpoint", _EXPECTED, inspect=_refuse_other_formats)


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
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path}: fast-nst checkpoint without a valid format_version ({quote(version)}).")
    if version < 1:
        raise CheckpointError(f"{path}: format_version {quote(version, 40)} is not one fast-nst ever wrote "
                              f"(1 to {FORMAT_VERSION}); the file is damaged or not from fast-nst.")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer fast-nst (format version {version}); this version reads up "
            f"to format version {FORMAT_VERSION}. Upgrade fast-nst to load it."
        )
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: incomplete fast-nst checkpoint, missing {', '.join(missing)}.")
    if not isinstance(ckpt["kind"], str) or ckpt["kind"] not in ("model", "training"):
        raise CheckpointError(f"{path}: unknown checkpoint kind {quote(ckpt['kind'])}; expected model or training.")
    _check_entry_types(ckpt, path)
    return ckpt


# Entries of tensors (and the RNG's state) that only torch reads; every other entry is plain data.
_TENSOR_ENTRIES = ("model_state", "training_state", "optimizer_state", "rng_state")
#: Values an architecture argument may have (what ``Args.to_dict`` writes).
_SCALARS = (str, int, float, bool, type(None))


def _check_entry_types(ckpt: dict[str, Any], path: str | Path) -> None:
    """:class:`CheckpointError` unless the entries have the types fast-nst writes: a damaged or
    hand-made file otherwise fails deep inside torch or the network's constructor."""
    step, config = ckpt["step"], ckpt["config"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{path}: step is {quote(step, 40)}, not a step count; the file is damaged.")
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: config is {_describe(config)}, expected the training config "
                              "as a dict; the file is damaged.")
    # Every entry besides the weights may be printed, formatted into a model card or written as
    # JSON (a .safetensors export): bounded here, once, rather than wherever it is shown.
    check_plain_data({k: v for k, v in ckpt.items() if k not in _TENSOR_ENTRIES},
                     f"{path}: the checkpoint's entries besides its weights", CheckpointError)
    if not isinstance(config.get("naming"), (str, type(None))):
        config.pop("naming")  # a name is a string: anything else is ignored, the file's stem named instead
    margs = ckpt["model_args"]
    if not isinstance(margs, dict):
        raise CheckpointError(f"{path}: model_args is {_describe(margs)}, expected a dict.")
    bad = next((k for k, v in margs.items() if not isinstance(k, str) or not isinstance(v, _SCALARS)), None)
    if bad is not None:
        raise CheckpointError(f"{path}: bad model_args: entry {quote(bad, 40)} is "
                              f"{quote(margs[bad], 60)}; expected a number or a string.")
    for entry in ("model_state", "training_state"):  # training_state: only in averaging runs
        if entry in ckpt:
            _check_state_dict(ckpt[entry], entry, path)


def _check_state_dict(state: Any, entry: str, path: str | Path) -> None:
    """:class:`CheckpointError` unless ``state`` (the checkpoint's ``entry``) maps names to tensors."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: {entry} is {_describe(state)}, expected a state dict.")
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: {entry} has the key {quote(key, 40)}, which is not a "
                                  "parameter name (a string); the file is damaged.")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: {entry}[{quote(key, 60)}] is {_describe(value)}, not a "
                                  "tensor; the file is damaged.")


def _user_files(margs: dict[str, Any], loss_model_file: Optional[str | Path],
                loss_model: Optional[str]) -> dict[str, Any]:
    """``margs`` with every argument that names a file (:data:`fast_nst.nets.USER_FILE_ARGS`)
    set from the user's ``loss_model_file`` (when it is for that argument's loss network, or
    ``loss_model`` is None) or "" (the registry's default path): never the model file's value."""
    margs = dict(margs)
    for key, network_key in USER_FILE_ARGS.items():
        if key in margs:
            mine = loss_model_file is not None and loss_model in (None, margs.get(network_key))
            margs[key] = str(loss_model_file) if mine else ""
    return margs


def build_model(ckpt: dict[str, Any], path: str | Path, loss_model_file: Optional[str | Path] = None,
                loss_model: Optional[str] = None,
                read_state: Optional[Callable[[StyleNetwork], dict]] = None) -> StyleNetwork:
    """The network stored in ``ckpt`` (from :func:`read_checkpoint`), built from the registry
    by its ``model_type`` (version-1 files: the Johnson net), in eval mode. A network that
    needs a loss network's weights (AdaIN's encoder) takes them from ``loss_model_file``
    (the user's, for loss network ``loss_model``; None: any) or the registry's default path,
    never from a path the model file names. ``read_state(network)``: its weights, read once the
    network is built (a .safetensors file's, checked against the network first), instead of
    ``ckpt["model_state"]``."""
    model_type = ckpt.get("model_type", LEGACY_MODEL_TYPE)
    margs = ckpt["model_args"]
    if not isinstance(model_type, str) or model_type not in NETWORKS:
        raise CheckpointError(f"{path}: unknown model_type {quote(model_type, 60)}; this fast-nst "
                              f"knows: {', '.join(NETWORKS)}. Upgrade fast-nst to load it.")
    if not isinstance(margs, dict):
        raise CheckpointError(f"{path}: model_args is {_describe(margs)}, expected a dict.")
    margs = _user_files(margs, loss_model_file, loss_model)
    try:
        model = network_class(model_type)(make_args(model_type, margs))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad model_args ({str(e)[:300]}).") from None
    state = ckpt["model_state"] if read_state is None else read_state(model)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: model_state is {_describe(state)}, expected a state dict.")
    _load_weights(model, state, path)
    if NETWORKS[model_type].many_styles:
        model.style_names = _style_names(ckpt.get("style_names"), model.args.num_styles, path)
    return model.eval()


def _load_weights(model: StyleNetwork, state: dict[str, torch.Tensor], where: str | Path) -> None:
    """``state`` into ``model``, once its names, dtypes and shapes fit (the check a .safetensors
    file's header passes before its tensors are read) and its values are finite; CheckpointError
    naming the tensor otherwise."""
    check_state(spec_of(state), spec_of(model.state_dict()), str(where), network_words(model))
    check_finite(state, str(where))
    model.load_state_dict(state)


def load_training_state(model: StyleNetwork, ckpt: dict[str, Any], path: str | Path) -> None:
    """Give ``model`` the weights training continues from: ``ckpt["training_state"]`` when the run
    saved an average of its weights as ``model_state`` (see :func:`make_checkpoint`); ``ckpt``
    comes from :func:`read_checkpoint`, which checked that entry's types."""
    try:
        _load_weights(model, ckpt["training_state"], f"{path}: its training_state")
    except CheckpointError as e:
        raise CheckpointError(f"{e} Resume from another checkpoint (--resume PATH).") from None


def _style_names(names: Any, count: int, path: str | Path) -> list[str]:
    """A multi-style checkpoint's style names, checked: ``count`` distinct short strings."""
    if names is None:
        return [f"style{i}" for i in range(count)]
    if (not isinstance(names, list) or len(names) != count
            or not all(isinstance(n, str) and 0 < len(n) <= 200 for n in names) or len(set(names)) != count):
        raise CheckpointError(f"{path}: style_names is {quote(names, 80)}, expected {count} distinct "
                              "names, one per style; the file is damaged.")
    return names


def check_loss_model_file(loss_model_file: Optional[str | Path], has_encoder: bool, where: str | Path) -> None:
    """DataError when ``loss_model_file`` (a command's --loss_model_file) is given for the model
    at ``where``, which has no encoder to read it (``has_encoder``: an arbitrary-style model's):
    a flag that would change nothing is said, not ignored."""
    if loss_model_file is not None and not has_encoder:
        raise DataError(f"--loss_model_file: {where} is not an arbitrary-style model (model_type adain), "
                        "the only kind with an encoder to read VGG weights into; remove --loss_model_file.")


def load_model(path: str | Path, loss_model_file: Optional[str | Path] = None,
               loss_model: Optional[str] = None) -> tuple[StyleNetwork, dict[str, Any]]:
    """(network in eval mode, checkpoint dict) from a model or training checkpoint, or
    from a pytorch/examples fast_neural_style model (converted on the fly);
    ``loss_model_file``, ``loss_model``: see :func:`build_model`."""
    if is_safetensors(path):
        require_model_file(Path(path))
        header, meta = read_safetensors_metadata(path, MAX_ARCHIVE_BYTES)
        ckpt = validate_checkpoint({**meta, "model_state": {}}, path)
        net = build_model(ckpt, path, loss_model_file, loss_model, lambda m: read_state_for(path, header, m))
        return net, {**ckpt, "model_state": net.state_dict()}
    obj = safe_torch_load(path)
    if is_pytorch_examples(obj):
        net = convert_pytorch_examples(obj, str(path))
        return net, {"config": {"naming": Path(path).stem}, "step": None, "converted_from": "pytorch-examples"}
    ckpt = validate_checkpoint(obj, path)
    return build_model(ckpt, path, loss_model_file, loss_model), ckpt


def step_files(folder: str | Path) -> list[tuple[int, Path]]:
    """The ``step_N.pth`` files directly in ``folder`` as (step, path), oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _CKPT_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Training checkpoints in ``run_dir/checkpoints`` as (step, path), oldest first (not those
    in its subfolders, where a resume sets aside the checkpoints of a branch it abandoned)."""
    return step_files(Path(run_dir) / CHECKPOINT_DIR)


def save_training_checkpoint(ckpt: dict[str, Any], run_dir: str | Path, keep: int) -> Path:
    """Write ``ckpt`` as ``run_dir/checkpoints/step_N.pth`` atomically; keep it and the newest
    ``keep - 1`` others."""
    path = Path(run_dir) / CHECKPOINT_DIR / checkpoint_name(ckpt["step"])
    atomic_torch_save(ckpt, path)
    # Never the file just written, even where higher step numbers are there (another branch's).
    others = [p for _, p in list_checkpoints(run_dir) if p != path]
    for old in others[:max(0, len(others) - (keep - 1))]:
        old.unlink(missing_ok=True)
    return path
