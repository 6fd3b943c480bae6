"""Converting models trained by other projects into fast-nst checkpoints
(``python -m fast_nst.convert IN.pth OUT.pth --from pytorch-examples``).

The layouts themselves are read in :mod:`fast_nst.io.pytorch_examples`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.config import config_from_dict
from ..core.errors import CheckpointError, FastNSTError, quote
from ..core.files import check_output_file
from ..core.untrusted.safetensors_header import require_safetensors
from .checkpoint import atomic_torch_save, make_checkpoint, safe_torch_load
from .pytorch_examples import convert_pytorch_examples, is_pytorch_examples
from .safetensors_file import SAFETENSORS_SUFFIX, write_safetensors

__all__ = ["FORMATS", "TORCH_SUFFIXES", "check_dest_suffix", "convert_file"]

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


def convert_file(src: str | Path, dest: str | Path, fmt: str = "pytorch-examples",
                 naming: Optional[str] = None) -> Path:
    """Convert ``src`` into a fast-nst model at ``dest``, a checkpoint (``.pth``, ``.pt``) or a
    ``.safetensors`` model as its suffix says: a new regular file, never ``src`` itself, a folder
    or a device (checked, with the suffix, before anything is read or written)."""
    if fmt not in FORMATS:
        raise FastNSTError(f"Unknown format {quote(fmt)}; choose one of: {', '.join(FORMATS)}")
    src, dest = Path(src), Path(dest)
    check_output_file(dest, "the output file", [src])  # first: a folder or device is named as what it is
    check_dest_suffix(dest)
    obj = safe_torch_load(src)
    if not is_pytorch_examples(obj):
        raise CheckpointError(f"{src}: not a pytorch/examples fast_neural_style model (expected keys "
                              "conv1.conv2d.weight ... deconv3.conv2d.weight).")
    net = convert_pytorch_examples(obj, str(src))
    naming = naming or Path(dest).stem
    cfg = config_from_dict({"naming": naming, "style_image": f"{Path(src).name} (converted from {fmt})"},
                           "convert")
    try:
        if dest.suffix.lower() == SAFETENSORS_SUFFIX:
            write_safetensors(make_checkpoint(net, cfg, step=0), dest)
        else:
            atomic_torch_save(make_checkpoint(net, cfg, step=0), dest)
    except OSError as e:  # permissions, a full disk: dest keeps what it held
        raise CheckpointError(f"cannot write {dest}: {e.strerror or e}; choose a writable output file.") from None
    return dest
