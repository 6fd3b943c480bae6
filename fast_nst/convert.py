"""Converting models trained by other projects into fast-nst checkpoints.

``python -m fast_nst.convert IN.pth OUT.pth --from pytorch-examples``

pytorch/examples' fast_neural_style saves a bare state dict of its ``TransformerNet``
(conv1.conv2d.weight, in1.weight, res1..res5, deconv1..deconv3; older files also carry stale
``in*.running_mean/var`` entries) whose input and output are 0-255 pixels with a linear last
layer. The architecture is the same as ours, so the conversion is exact:

* the x255 input scale is folded into the first convolution's weights, the /255 output scale
  into the last convolution's weight and bias, and the output is clipped to [0, 1]
  (``output_activation="clamp"``) as pytorch/examples clamps when saving;
* biases of convolutions followed by instance norm are dropped (the norm's mean subtraction
  cancels them exactly), as are the stale running statistics (instance norm does not use them).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from .checkpoint import atomic_torch_save, make_checkpoint, safe_torch_load
from .config import config_from_dict
from .cli import run_command
from .errors import CheckpointError, FastNSTError
from .model import TransformNet, TransformNetArgs

FORMATS = ("pytorch-examples",)

# pytorch/examples name -> ours (weights of convolutions, affine parameters of norms).
_CONV = {"conv1": "encoder.0.1", "conv2": "encoder.1.1", "conv3": "encoder.2.1",
         "deconv1": "decoder.0.1.1", "deconv2": "decoder.1.1.1", "deconv3": "decoder.2.1"}
_NORM = {"in1": "encoder.0.2", "in2": "encoder.1.2", "in3": "encoder.2.2",
         "in4": "decoder.0.1.2", "in5": "decoder.1.1.2"}
_RES = {"conv1": "block.0.1", "in1": "block.0.2", "conv2": "block.2", "in2": "block.3"}
_STALE = re.compile(r"(^|\.)in\d\.(running_mean|running_var|num_batches_tracked)$")


def is_pytorch_examples(obj: Any) -> bool:
    """True for a state dict in pytorch/examples' TransformerNet layout."""
    return isinstance(obj, dict) and "conv1.conv2d.weight" in obj and "deconv3.conv2d.weight" in obj


def _our_key(key: str) -> Optional[str]:
    """Our state-dict key for one of theirs; None for entries we drop."""
    if _STALE.search(key):
        return None
    parts = key.split(".")
    if parts[0].startswith("res") and parts[0][3:].isdigit():
        block = int(parts[0][3:]) - 1
        layer, rest = parts[1], parts[2:]
        if layer.startswith("conv"):
            if rest[-1] == "bias":
                return None  # followed by instance norm
            return f"residuals.{block}.{_RES[layer]}.weight"
        return f"residuals.{block}.{_RES[layer]}.{rest[-1]}"
    if parts[0] in _CONV:
        if parts[-1] == "bias" and parts[0] != "deconv3":
            return None  # followed by instance norm
        return f"{_CONV[parts[0]]}.{parts[-1]}"
    if parts[0] in _NORM:
        return f"{_NORM[parts[0]]}.{parts[-1]}"
    raise KeyError(key)


def convert_pytorch_examples(state: dict, where: str = "state dict") -> TransformNet:
    """A :class:`TransformNet` computing exactly what pytorch/examples' model computes, with our
    [0, 1] input and output convention."""
    net = TransformNet(TransformNetArgs(output_activation="clamp"))
    ours: dict[str, torch.Tensor] = {}
    try:
        for key, value in state.items():
            target = _our_key(key)
            if target is not None:
                ours[target] = value.detach().float().clone()
        ours["encoder.0.1.weight"] *= 255.0  # they feed 0-255 pixels
        ours["decoder.2.1.weight"] /= 255.0  # and produce 0-255 pixels
        ours["decoder.2.1.bias"] /= 255.0
    except (KeyError, IndexError, AttributeError, TypeError) as e:
        raise CheckpointError(f"{where}: incomplete or unexpected pytorch/examples model "
                              f"({type(e).__name__}: {e}).") from None
    try:
        net.load_state_dict(ours)
    except RuntimeError as e:
        raise CheckpointError(f"{where}: does not fit pytorch/examples' TransformerNet "
                              f"({' '.join(str(e).split())[:400]}).") from None
    return net.eval()


def convert_file(src: str | Path, dest: str | Path, fmt: str = "pytorch-examples",
                 naming: Optional[str] = None) -> Path:
    """Convert ``src`` into a fast-nst model checkpoint at ``dest``."""
    if fmt not in FORMATS:
        raise FastNSTError(f"Unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    obj = safe_torch_load(src)
    if not is_pytorch_examples(obj):
        raise CheckpointError(f"{src}: not a pytorch/examples fast_neural_style model (expected keys "
                              "conv1.conv2d.weight ... deconv3.conv2d.weight).")
    net = convert_pytorch_examples(obj, str(src))
    naming = naming or Path(dest).stem
    cfg = config_from_dict({"naming": naming, "style_image": f"{Path(src).name} (converted from {fmt})"},
                           "convert")
    atomic_torch_save(make_checkpoint(net, cfg, step=0), dest)
    return Path(dest)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fast_nst.convert",
                                description="Convert another project's model into a fast-nst checkpoint.")
    p.add_argument("src", help="model file to convert")
    p.add_argument("dest", help="fast-nst checkpoint to write (.pth)")
    p.add_argument("--from", dest="fmt", default=FORMATS[0], choices=FORMATS,
                   help=f"layout of SRC (default {FORMATS[0]})")
    p.add_argument("--naming", help="style name stored in the checkpoint (default: DEST's stem)")
    args = p.parse_args(argv)

    def run() -> int:
        print(f"Saved {convert_file(args.src, args.dest, args.fmt, args.naming)}")
        return 0

    return run_command(run)


if __name__ == "__main__":
    sys.exit(main())
