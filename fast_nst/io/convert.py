"""Converting models trained by other projects into fast-nst checkpoints
(``python -m fast_nst.convert IN.pth OUT.pth --from pytorch-examples``; IN may be an ``hf://``
reference or an http(s) URL, as wherever a model file is taken).

The layouts themselves are read in :mod:`fast_nst.io.pytorch_examples`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.config import MAX_NAMING_BYTES, config_from_dict
from ..core.errors import CheckpointError, FastNSTError, quote
from ..core.files import MAX_COMPONENT, check_output_file, safe_component
from ..core.untrusted import shown
from ..core.untrusted.safetensors_header import require_safetensors
from .checkpoint import atomic_torch_save, make_checkpoint, safe_torch_load
from .hub import is_remote_model, local_model_file, remote_model_name
from .pytorch_examples import convert_pytorch_examples, is_pytorch_examples
from .safetensors_file import SAFETENSORS_SUFFIX, write_safetensors

__all__ = ["FORMATS", "TORCH_SUFFIXES", "check_dest_suffix", "check_naming", "convert_file", "converted_checkpoint",
           "default_naming", "write_converted"]

FORMATS = ("pytorch-examples",)
#: What ``dest``'s suffix can be: a PyTorch checkpoint or a .safetensors model, as eval.py reads them.
TORCH_SUFFIXES = (".pth", ".pt")


def check_dest_suffix(dest: Path) -> None:
    """FastNSTError unless ``dest``'s suffix names a format convert writes (and, for
    .safetensors, the package that writes it is installed): eval.py tells a model file's format
    by its suffix, so a .pth pickle saved as x.safetensors or x.onnx could not be read back."""
    suffix = dest.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        return
    if suffix == SAFETENSORS_SUFFIX:
        require_safetensors(dest)
        return
    pth = dest.with_suffix(".pth")
    if suffix == ".onnx":
        raise FastNSTError(f"{dest}: convert does not write ONNX; convert to {pth}, then export that: "
                           f"python -m fast_nst.export {pth} --format onnx --output {dest}")
    raise FastNSTError(f"{dest}: convert writes {', '.join(TORCH_SUFFIXES)} (a fast-nst checkpoint) or "
                       f"{SAFETENSORS_SUFFIX} files, not {quote(suffix) if suffix else 'a file without a suffix'}; "
                       f"name the output e.g. {pth}")


def default_naming(dest: Path) -> str:
    """The style name of a model converted to ``dest`` when none is given: its stem made a plain
    name ("my model.pth" -> my_model, ".hidden.pth" -> hidden, at most 64 characters);
    FastNSTError saying to give ``--naming`` when the stem leaves none."""
    name = safe_component(dest.stem, fallback="")
    if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_NAMING_BYTES:
        raise FastNSTError(f"{dest}: no style name can be made from the file name {quote(dest.stem)}; "
                           "give one with --naming NAME (letters, digits, '-', '_').")
    return name


def check_naming(naming: str) -> str:
    """``naming`` (a style name the user gave) when it is a plain name, the kind a model's
    default comes from its file name; FastNSTError saying what a name may hold otherwise."""
    if (not naming or naming != safe_component(naming, fallback="")
            or len(naming.encode("utf-8", "surrogatepass")) > MAX_NAMING_BYTES):
        raise FastNSTError(f"--naming '{shown(naming, 80)}': a style name is letters, digits, '-' and '_' (dots "
                           f"inside), at most {MAX_COMPONENT} characters and {MAX_NAMING_BYTES} bytes, e.g. --naming "
                           f"{safe_component(naming, fallback='my_style')}; or leave --naming out to name the style "
                           "after the output file.")
    return naming


def converted_checkpoint(src: str | Path, dest: str | Path, fmt: str = "pytorch-examples",
                         naming: Optional[str] = None) -> dict:
    """The fast-nst checkpoint of ``src`` to be written to ``dest`` (:func:`write_converted`), once
    ``dest`` is checked (a new regular file, never ``src`` itself, a folder or a device; a
    suffix convert writes) and ``src`` read; nothing is written. ``src``: a path, or (a str) an
    ``hf://`` reference or an http(s) URL, fetched as eval.py fetches one
    (:func:`~fast_nst.io.hub.local_model_file`)."""
    if fmt not in FORMATS:
        raise FastNSTError(f"Unknown format {quote(fmt)}; choose one of: {', '.join(FORMATS)}")
    remote, dest = is_remote_model(src), Path(dest)
    # first: a folder or device is named as what it is
    check_output_file(dest, "the output file", [] if remote else [Path(src)])
    check_dest_suffix(dest)
    name = remote_model_name(str(src)) if remote else Path(src).name
    cfg = config_from_dict({"naming": default_naming(dest) if naming is None else check_naming(naming),
                            "style_image": f"{name} (converted from {fmt})"}, "convert")
    local = local_model_file(src)
    if remote:
        check_output_file(dest, "the output file", [local])  # not the downloaded copy either
    obj = safe_torch_load(local)
    if not is_pytorch_examples(obj):
        raise CheckpointError(f"{local}: not a pytorch/examples fast_neural_style model (expected keys "
                              "conv1.conv2d.weight ... deconv3.conv2d.weight).")
    return make_checkpoint(convert_pytorch_examples(obj, str(local)), cfg, step=0)


def write_converted(ckpt: dict, dest: str | Path) -> Path:
    """Write :func:`converted_checkpoint`'s ``ckpt`` to ``dest`` in the format of its suffix;
    CheckpointError, ``dest`` keeping what it held, when it cannot be written."""
    dest = Path(dest)
    try:
        if dest.suffix.lower() == SAFETENSORS_SUFFIX:
            write_safetensors(ckpt, dest)
        else:
            atomic_torch_save(ckpt, dest)
    except OSError as e:  # permissions, a full disk
        raise CheckpointError(f"cannot write {dest}: {e.strerror or e}; choose a writable output file.") from None
    return dest


def convert_file(src: str | Path, dest: str | Path, fmt: str = "pytorch-examples",
                 naming: Optional[str] = None) -> Path:
    """Convert ``src`` into a fast-nst model at ``dest``, a checkpoint (``.pth``, ``.pt``) or a
    ``.safetensors`` model as its suffix says (checked, with ``naming``, default from ``dest``'s
    stem, before anything is read or written)."""
    return write_converted(converted_checkpoint(src, dest, fmt, naming), dest)
