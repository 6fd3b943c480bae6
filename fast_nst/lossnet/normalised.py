"""Huang & Belongie's AdaIN encoder: the normalised VGG-19 of Gatys et al. as the reference
PyTorch port (naoto0804/pytorch-AdaIN, ``net.py``) lays it out, in fast-nst's layer names.

The published ``vgg_normalised.pth`` is the state dict of one ``nn.Sequential``: a 1x1
convolution (3 -> 3 channels, the Caffe preprocessing: RGB in [0, 1] to BGR 0-255 minus the mean
pixel), then VGG-19's layers with every 3x3 convolution preceded by its own reflection padding
module, and 2x2 max pools with ``ceil_mode``. fast-nst's form has one module per layer name of
:func:`fast_nst.lossnet.layer_names` (so every layer name, the AdaIN decoder's mirror and the
loss code work unchanged): ``conv1_1`` is the 1x1 convolution followed by the first 3x3
convolution, and each 3x3 convolution pads by reflection itself (``padding_mode="reflect"``:
the same padding, then the same convolution, so the features are the same to the bit).
"""

from __future__ import annotations

from torch import nn

from . import layer_names

__all__ = ["NORMALISED_ARCH", "from_published", "normalised_features", "published_keys"]

NORMALISED_ARCH = "vgg19_normalised"
# Output channels of VGG-19's five blocks.
_WIDTHS = (64, 128, 256, 512, 512)


def normalised_features() -> nn.Sequential:
    """The normalised VGG-19's layers to relu5_4 in fast-nst's form (random weights, PyTorch's
    default initialisation): one module per name of ``layer_names("vgg19_normalised")``."""
    modules: list[nn.Module] = []
    channels = 3
    for name in layer_names(NORMALISED_ARCH):
        if name.startswith("conv"):
            width = _WIDTHS[int(name[4]) - 1]
            conv = nn.Conv2d(channels, width, 3, padding=1, padding_mode="reflect")
            modules.append(nn.Sequential(nn.Conv2d(3, 3, 1), conv) if name == "conv1_1" else conv)
            channels = width
        elif name.startswith("relu"):
            modules.append(nn.ReLU())
        else:
            modules.append(nn.MaxPool2d(2, 2, ceil_mode=True))
    return nn.Sequential(*modules)


def published_keys() -> dict[str, str]:
    """{published key: fast-nst key} for every weight and bias: the port's Sequential index of
    each convolution (the 1x1 first, then one padding module before each 3x3 convolution)
    against the index of its layer name here."""
    mapping = {"0.weight": "0.0.weight", "0.bias": "0.0.bias"}
    index = 1  # after the 1x1 convolution
    for ours, name in enumerate(layer_names(NORMALISED_ARCH)):
        if name.startswith("conv"):
            target = "0.1" if name == "conv1_1" else str(ours)
            for kind in ("weight", "bias"):
                mapping[f"{index + 1}.{kind}"] = f"{target}.{kind}"
            index += 2  # the padding module and the convolution
        else:
            index += 1
    return mapping


def from_published(state: dict) -> dict:
    """A state dict in the port's keys (``0.weight`` of shape (3, 3, 1, 1), ``2.weight``, ...
    ``51.bias``) renamed to fast-nst's form; a state dict without the port's first key is
    returned as it is (already in fast-nst's form, or not this network: the caller checks)."""
    if "0.weight" not in state or "0.0.weight" in state:
        return state
    mapping = published_keys()
    return {mapping.get(k, k): v for k, v in state.items()}
