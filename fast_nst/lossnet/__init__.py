"""Loss networks and their registry: one row per network, with everything fast-nst needs to
know about it (architecture, layer names, weights file, URL, checksum, input convention).

Adding a loss network of a known architecture (a VGG16/VGG19 with other weights) is one row in
:data:`LOSS_NETWORKS`; a new architecture also needs its layer layout in :data:`BLOCK_CONVS`
(and, if it is not a torchvision VGG, its feature builder in :mod:`fast_nst.lossnet.vgg`).

Nothing here imports torch, so a config's ``loss_model`` and layer names are checked at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["BLOCK_CONVS", "InputConvention", "LOSS_NETWORKS", "LossNetworkEntry", "TORCHVISION",
           "check_config", "get_loss_network", "layer_choices", "layer_names"]


@dataclass(frozen=True)
class InputConvention:
    """How a network wants its input, from fast-nst's RGB in [0, 1]: multiply by ``scale``,
    reorder to BGR if ``bgr``, then subtract ``mean`` and divide by ``std`` (both given in the
    network's own channel order)."""

    name: str
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool


# torchvision's ImageNet weights: RGB in [0, 1] normalised with the ImageNet statistics they
# were trained with (torchvision.models documentation).
TORCHVISION = InputConvention("torchvision", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False)

# Convolutions per block of the VGG layouts (torchvision's cfgs "D" and "E").
BLOCK_CONVS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}


@dataclass(frozen=True)
class LossNetworkEntry:
    """One loss network. ``sha256`` is the start of the published file's SHA-256 (torchvision
    names its files ``<name>-<first 8 hex digits>.pth``); a downloaded file must match it, a
    file the user names with ``loss_model_file`` is checked for layout only."""

    arch: str  # a key of BLOCK_CONVS
    file: str  # default location, relative to the working folder
    url: str
    sha256: str
    convention: InputConvention
    summary: str

    @property
    def label(self) -> str:
        return self.arch.upper()


LOSS_NETWORKS: dict[str, LossNetworkEntry] = {
    "vgg16": LossNetworkEntry("vgg16", "pretrained/vgg16-397923af.pth",
                              "https://download.pytorch.org/models/vgg16-397923af.pth", "397923af",
                              TORCHVISION, "torchvision's ImageNet VGG16 (528 MB)"),
    "vgg19": LossNetworkEntry("vgg19", "pretrained/vgg19-dcbb9e9d.pth",
                              "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", "dcbb9e9d",
                              TORCHVISION, "torchvision's ImageNet VGG19 (548 MB)"),
}


def get_loss_network(name: str) -> LossNetworkEntry:
    """The registry row ``name``; ValueError listing the choices otherwise."""
    if not isinstance(name, str) or name not in LOSS_NETWORKS:
        raise ValueError(f"Unknown loss model {str(name)[:60]!r}; choose one of: {', '.join(LOSS_NETWORKS)}")
    return LOSS_NETWORKS[name]


def layer_names(arch: str) -> list[str]:
    """Name of each module of torchvision's ``vgg16().features`` (or vgg19's), in order:
    conv1_1, relu1_1, ..., pool1, conv2_1, ..."""
    names = []
    for block, n in zip(range(1, 6), BLOCK_CONVS[arch]):
        for i in range(1, n + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


def layer_choices(name: str) -> list[str]:
    """The conv/relu layer names of loss network ``name`` a user may choose (pools left out)."""
    return [n for n in layer_names(get_loss_network(name).arch) if not n.startswith("pool")]


def check_config(cfg: Any, fail: Callable[[str, str], None]) -> None:
    """A :data:`fast_nst.core.config.ConfigCheck`: ``loss_model`` is registered and the content
    and style layers exist in it."""
    if cfg.loss_model not in LOSS_NETWORKS:
        fail("loss_model", f"is {cfg.loss_model!r}; choose one of: {', '.join(LOSS_NETWORKS)}")
    valid = layer_choices(cfg.loss_model)
    for key in ("content_layers", "style_layers"):
        for name in getattr(cfg, key):
            if name not in valid:
                fail(key, f"names unknown layer {name!r} of {cfg.loss_model}; choose from: {', '.join(valid)}")
