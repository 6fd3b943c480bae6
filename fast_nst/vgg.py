"""The frozen VGG16 (or VGG19) loss network, with outputs addressed by layer name (``relu2_2``).

Inputs are RGB images (N, 3, H, W) in [0, 1]; the ImageNet normalisation torchvision's weights
expect is applied inside :meth:`VGGEncoder.forward` and nowhere else.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path
from typing import Iterable

import torch
from torch import nn
from torchvision.models import vgg as tv_vgg

from . import download
from .download import VGG19_FILE, VGG19_URL
from .config import VGG16_LAYERS
from .errors import CheckpointError

_URLS = {"vgg16": download.VGG16_URL, "vgg19": VGG19_URL}
_FILES = {"vgg16": download.VGG16_FILE, "vgg19": VGG19_FILE}

# The statistics torchvision's ImageNet weights were trained with (torchvision.models docs).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# Convolutions per block: torchvision's cfgs "D" (VGG16) and "E" (VGG19).
_BLOCK_CONVS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
_CFG = {"vgg16": "D", "vgg19": "E"}
ARCHS = tuple(_BLOCK_CONVS)


def _layer_names(arch: str = "vgg16") -> list[str]:
    """Name of each module of torchvision's vgg16().features (or vgg19's), in order."""
    names = []
    for block, n in zip(range(1, 6), _BLOCK_CONVS[arch]):
        for i in range(1, n + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


LAYER_NAMES = _layer_names()
assert [n for n in LAYER_NAMES if not n.startswith("pool")] == list(VGG16_LAYERS)
VGG19_LAYER_NAMES = _layer_names("vgg19")
ARCH_LAYER_NAMES = {"vgg16": LAYER_NAMES, "vgg19": VGG19_LAYER_NAMES}


def layer_choices(arch: str = "vgg16") -> list[str]:
    """The conv/relu layer names of ``arch`` a user may choose from (pools left out)."""
    return [n for n in ARCH_LAYER_NAMES[arch] if not n.startswith("pool")]


def _check_arch(arch: str) -> None:
    if arch not in _BLOCK_CONVS:
        raise ValueError(f"Unknown loss model {arch!r}; choose one of: {', '.join(ARCHS)}")


class VGGEncoder(nn.Module):
    """VGG16 ``features`` cut after ``max(layers)``; ``forward(x, layers)`` returns {name: features}.

    ``arch="vgg19"`` names the modules of torchvision's vgg19().features instead.
    Frozen: eval mode, ``requires_grad=False`` on every weight (gradients still flow to inputs).
    """

    def __init__(self, features: nn.Sequential, layers: Iterable[str], arch: str = "vgg16"):
        super().__init__()
        _check_arch(arch)
        self.arch = arch
        names = ARCH_LAYER_NAMES[arch]
        layers = list(layers)
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise ValueError(f"Unknown {arch.upper()} layer(s) {unknown}; choose from: "
                             f"{', '.join(layer_choices(arch))}")
        depth = max(names.index(n) for n in layers) + 1
        modules = []
        for name, module in zip(names[:depth], list(features)[:depth]):
            if isinstance(module, nn.ReLU):
                module = nn.ReLU(inplace=False)  # in-place would overwrite the conv outputs we return
            modules.append((name, module))
        self.layers = nn.Sequential(OrderedDict(modules))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGGEncoder":
        return super().train(False)  # always frozen

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Features of ``x`` (N, 3, H, W) in [0, 1] at ``layers``, running only as deep as needed."""
        wanted = set(layers)
        out: dict[str, torch.Tensor] = {}
        h = (x - self.mean) / self.std
        for name, module in self.layers.named_children():
            h = module(h)
            if name in wanted:
                out[name] = h
                if len(out) == len(wanted):
                    break
        missing = wanted - out.keys()
        if missing:
            raise ValueError(f"layers {sorted(missing)} are deeper than this encoder was built for")
        return out


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` with its random initialisation, without building the
    138M-parameter classifier (2.4 s on a 2-core CPU) that a loss network never uses."""
    return vgg_features("vgg16")


def vgg19_features() -> nn.Sequential:
    """torchvision's ``vgg19().features`` with its random initialisation (no classifier)."""
    return vgg_features("vgg19")


def vgg_features(arch: str = "vgg16") -> nn.Sequential:
    """``vgg16().features`` or ``vgg19().features`` with torchvision's random initialisation."""
    _check_arch(arch)
    features = tv_vgg.make_layers(tv_vgg.cfgs[_CFG[arch]], batch_norm=False)
    for m in features.modules():  # the same initialisation as torchvision.models.VGG.__init__
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
    return features


def _features_state(state: dict, path: Path, arch: str = "vgg16") -> dict[str, torch.Tensor]:
    """Accept a full torchvision VGG16/19 state dict or a features-only one; return features keys."""
    label, url = arch.upper(), _URLS[arch]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{path}: not a {label} state dict (got {type(state).__name__}).")
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    expected = vgg_features(arch).state_dict()
    missing = sorted(set(expected) - set(state), key=lambda k: int(k.split(".")[0]))
    if missing:
        raise CheckpointError(
            f"{path}: not a torchvision {label} weights file (missing {', '.join(missing[:4])}...). "
            f"Expected the file from {url}."
        )
    for key, value in expected.items():
        if not isinstance(state[key], torch.Tensor) or state[key].shape != value.shape:
            shape = getattr(state[key], "shape", None)
            raise CheckpointError(f"{path}: {key} has shape {tuple(shape) if shape is not None else None}, "
                                  f"{label} needs {tuple(value.shape)}; is this a {label} file?")
    return {k: state[k] for k in expected}


def load_vgg_features(path: str | Path, arch: str = "vgg16", allow_download: bool = True) -> nn.Sequential:
    """torchvision VGG16/VGG19 ``features`` with ImageNet weights from ``path`` (a full
    torchvision state dict or a features-only one).

    A missing file is downloaded from torchvision's URL when ``allow_download`` (and the path
    has torchvision's file name); otherwise, or when the download fails, a
    :class:`~fast_nst.errors.FastNSTError` says where to get the file.
    """
    _check_arch(arch)
    label, url = arch.upper(), _URLS[arch]
    path = Path(path)
    if not path.exists():
        if allow_download and path.name == Path(_FILES[arch]).name:
            print(f"{label} weights not found at {path}; downloading {url}")
            download.download_vgg(arch, path)
        else:
            raise CheckpointError(
                f"{label} weights not found at {path}. Download {url} "
                f"(python -m fast_nst.download {arch}) and set loss_model_file to its path."
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for non-checkpoint files
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: cannot read {label} weights ({reason}). "
                              f"Delete it and download {url} again.") from None
    features = vgg_features(arch)
    features.load_state_dict(_features_state(state, path, arch))
    return features


def load_vgg16_features(path: str | Path, allow_download: bool = True) -> nn.Sequential:
    """:func:`load_vgg_features` for VGG16."""
    return load_vgg_features(path, "vgg16", allow_download)


def load_vgg19_features(path: str | Path, allow_download: bool = True) -> nn.Sequential:
    """:func:`load_vgg_features` for VGG19."""
    return load_vgg_features(path, "vgg19", allow_download)


def random_vgg_features(arch: str, seed: int) -> nn.Sequential:
    """VGG16/VGG19 ``features`` with torchvision's random initialisation, seeded (tests, smoke runs)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return vgg_features(arch)


def random_vgg19_features(seed: int) -> nn.Sequential:
    return random_vgg_features("vgg19", seed)


def random_vgg16_features(seed: int) -> nn.Sequential:
    return random_vgg_features("vgg16", seed)


RANDOM_WARNING = (
    "WARNING: the loss network has RANDOM weights (loss_model_weights: random). This is for tests "
    "and smoke runs only: the model will not learn a real style. Use loss_model_weights: imagenet "
    "for real training."
)


def build_loss_network(weights: str, layers: Iterable[str], weights_file: str | Path,
                       seed: int = 0, quiet: bool = False, arch: str = "vgg16") -> VGGEncoder:
    """The frozen encoder for ``layers``; ``weights`` is "imagenet" (from ``weights_file``) or "random".
    ``arch`` is "vgg16" (default) or "vgg19"."""
    _check_arch(arch)
    if weights == "random":
        # Loud on purpose: a random loss network must never be mistaken for a real run.
        if not quiet:
            print(f"{'!' * 80}\n{RANDOM_WARNING}\n{'!' * 80}", file=sys.stderr)
        features = random_vgg_features(arch, seed)
    elif weights == "imagenet":
        features = load_vgg_features(weights_file, arch)
    else:
        raise ValueError(f"Unknown loss_model_weights {weights!r}; choose one of: imagenet, random")
    return VGGEncoder(features, layers, arch=arch)
