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
from .checkpoint import atomic_torch_save, make_checkpoint, safe_torch_load
from .pytorch_examples import convert_pytorch_examples, is_pytorch_examples

__all__ = ["FORMATS", "convert_file"]

FORMATS = ("pytorch-examples",)


def convert_file(src: str | Path, dest: str | Path, fmt: str = "pytorch-examples",
                 naming: Optional[str] = None) -> Path:
    """Convert ``src`` into a fast-nst model checkpoint at ``dest``: a new regular file, never
    ``src`` itself, a folder or a device (checked before anything is read or written)."""
    if fmt not in FORMATS:
        raise FastNSTError(f"Unknown format {quote(fmt)}; choose one of: {', '.join(FORMATS)}")
    src, dest = Path(src), Path(dest)
    check_output_file(dest, "the output file", [src])
    obj = safe_torch_load(src)
    if not is_pytorch_examples(obj):
        raise CheckpointError(f"{src}: not a pytorch/examples fast_neural_style model (expected keys "
                              "conv1.conv2d.weight ... deconv3.conv2d.weight).")
    net = convert_pytorch_examples(obj, str(src))
    naming = naming or Path(dest).stem
    cfg = config_from_dict({"naming": naming, "style_image": f"{Path(src).name} (converted from {fmt})"},
                           "convert")
    try:
        atomic_torch_save(make_checkpoint(net, cfg, step=0), dest)
    except OSError as e:  # permissions, a full disk: dest keeps what it held
        raise CheckpointError(f"cannot write {dest}: {e.strerror or e}; choose a writable output file.") from None
    return dest
