"""Reading models trained by pytorch/examples' fast_neural_style as fast-nst networks.

pytorch/examples saves a bare state dict of its ``TransformerNet`` (conv1.conv2d.weight, in1.weight,
res1..res5, deconv1..deconv3; older files also carry stale ``in*.running_mean/var`` entries) whose
input and output are 0-255 pixels with a linear last layer. The architecture is the same as the
Johnson network's, so the conversion is exact:

* the x255 input scale is folded into the first convolution's weights, the /255 output scale
  into the last convolution's weight and bias, and the output is clipped to [0, 1]
  (``output_activation="clamp"``) as pytorch/examples clamps when saving;
* biases of convolutions followed by instance norm are dropped (the norm's mean subtraction
  cancels them exactly), as are the stale running statistics (instance norm does not use them).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..core.errors import CheckpointError
from ..core.untrusted.weights import check_finite, check_state
from ..nets.johnson import TransformNet, TransformNetArgs

__all__ = ["convert_pytorch_examples", "is_pytorch_examples"]

_STALE = re.compile(r"(^|\.)in\d\.(running_mean|running_var|num_batches_tracked)$")


def is_pytorch_examples(obj: Any) -> bool:
    """True for a state dict in pytorch/examples' TransformerNet layout."""
    return isinstance(obj, dict) and "conv1.conv2d.weight" in obj and "deconv3.conv2d.weight" in obj


def _their_modules(net: TransformNet) -> dict[str, nn.Module]:
    """pytorch/examples' module name (without ``.conv2d``) -> our module holding that layer."""
    first, down1, down2 = net.downsampling
    up1, up2 = (u.conv_layer for u in net.upsampling)
    modules: dict[str, nn.Module] = {
        "conv1": first.conv, "in1": first.norm, "conv2": down1.conv, "in2": down1.norm,
        "conv3": down2.conv, "in3": down2.norm, "deconv1": up1.conv, "in4": up1.norm,
        "deconv2": up2.conv, "in5": up2.norm, "deconv3": net.output_conv.conv,
    }
    for k, block in enumerate(net.blocks, start=1):
        modules.update({f"res{k}.conv1": block.first.conv, f"res{k}.in1": block.first.norm,
                        f"res{k}.conv2": block.conv2, f"res{k}.in2": block.norm2})
    return modules


def _copy_weights(state: dict, net: TransformNet, where: str) -> None:
    """Copy every entry of ``state`` into ``net``; KeyError/ValueError for what does not fit,
    CheckpointError for a tensor of a dtype or shape the layer cannot hold (as for a fast-nst
    model: :func:`~fast_nst.core.untrusted.weights.check_state`)."""
    modules = _their_modules(net)
    filled: set[int] = set()
    for key, value in state.items():
        if _STALE.search(key):
            continue
        name, param = key.replace(".conv2d", "").rsplit(".", 1)
        target = getattr(modules[name], param)
        if target is None and param == "bias":
            continue  # a convolution followed by instance norm: the norm cancels its bias
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{key} is a {type(value).__name__}, not a tensor")
        check_state({key: (value.dtype, tuple(value.shape))}, {key: (target.dtype, tuple(target.shape))}, where,
                    "pytorch/examples' TransformerNet")
        target.data.copy_(value.detach())
        filled.add(id(target))
    missing = [n for n, p in net.named_parameters() if id(p) not in filled]
    if missing:
        raise KeyError(f"no weights for {', '.join(missing[:3])}")


def convert_pytorch_examples(state: dict, where: str = "state dict") -> TransformNet:
    """A :class:`TransformNet` computing exactly what pytorch/examples' model computes, with our
    [0, 1] input and output convention."""
    net = TransformNet(TransformNetArgs(output_activation="clamp"))
    try:
        with torch.no_grad():
            _copy_weights(state, net, where)
            net.downsampling[0].conv.weight.mul_(255.0)  # they feed 0-255 pixels
            net.output_conv.conv.weight.div_(255.0)  # and produce 0-255 pixels
            net.output_conv.conv.bias.div_(255.0)
    except (KeyError, IndexError, AttributeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: incomplete or unexpected pytorch/examples model "
                              f"({type(e).__name__}: {str(e)[:300]}).") from None
    check_finite({k: v for k, v in state.items() if isinstance(v, torch.Tensor) and not _STALE.search(k)}, where)
    return net.eval()
