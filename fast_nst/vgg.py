"""The frozen VGG16 loss network, with outputs addressed by layer name (``relu2_2``).

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
from .config import VGG16_LAYERS
from .errors import CheckpointError

# The statistics torchvision's ImageNet weights were trained with (torchvision.models docs).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> list[str]:
    """Name of each module of torchvision's vgg16().features, in order."""
    names = []
    for block, n in zip(range(1, 6), (2, 2, 3, 3, 3)):
        for i in range(1, n + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return names


LAYER_NAMES = _layer_names()
assert [n for n in LAYER_NAMES if not n.startswith("pool")] == list(VGG16_LAYERS)


class VGGEncoder(nn.Module):
    """VGG16 ``features`` cut after ``max(layers)``; ``forward(x, layers)`` returns {name: features}.

    Frozen: eval mode, ``requires_grad=False`` on every weight (gradients still flow to inputs).
    """

    def __init__(self, features: nn.Sequential, layers: Iterable[str]):
        super().__init__()
        layers = list(layers)
        unknown = [n for n in layers if n not in LAYER_NAMES]
        if unknown:
            raise ValueError(f"Unknown VGG16 layer(s) {unknown}; choose from: {', '.join(VGG16_LAYERS)}")
        depth = max(LAYER_NAMES.index(n) for n in layers) + 1
        modules = []
        for name, module in zip(LAYER_NAMES[:depth], list(features)[:depth]):
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
    features = tv_vgg.make_layers(tv_vgg.cfgs["D"], batch_norm=False)
    for m in features.modules():  # the same initialisation as torchvision.models.VGG.__init__
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
    return features


def _features_state(state: dict, path: Path) -> dict[str, torch.Tensor]:
    """Accept a full torchvision VGG16 state dict or a features-only one; return features keys."""
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{path}: not a VGG16 state dict (got {type(state).__name__}).")
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    expected = vgg16_features().state_dict()
    missing = sorted(set(expected) - set(state), key=lambda k: int(k.split(".")[0]))
    if missing:
        raise CheckpointError(
            f"{path}: not a torchvision VGG16 weights file (missing {', '.join(missing[:4])}...). "
            f"Expected the file from {download.VGG16_URL}."
        )
    for key, value in expected.items():
        if not isinstance(state[key], torch.Tensor) or state[key].shape != value.shape:
            shape = getattr(state[key], "shape", None)
            raise CheckpointError(f"{path}: {key} has shape {tuple(shape) if shape is not None else None}, "
                                  f"VGG16 needs {tuple(value.shape)}; is this a VGG16 file?")
    return {k: state[k] for k in expected}


def load_vgg16_features(path: str | Path, allow_download: bool = True) -> nn.Sequential:
    """torchvision VGG16 ``features`` with ImageNet weights from ``path``.

    A missing file is downloaded from torchvision's URL when ``allow_download`` (and the path
    has torchvision's file name); otherwise, or when the download fails, a
    :class:`~fast_nst.errors.FastNSTError` says where to get the file.
    """
    path = Path(path)
    if not path.exists():
        if allow_download and path.name == Path(download.VGG16_FILE).name:
            print(f"VGG16 weights not found at {path}; downloading {download.VGG16_URL}")
            download.download_vgg16(path)
        else:
            raise CheckpointError(
                f"VGG16 weights not found at {path}. Download {download.VGG16_URL} "
                f"(python -m fast_nst.download vgg16) and set loss_model_file to its path."
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for non-checkpoint files
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: cannot read VGG16 weights ({reason}). "
                              f"Delete it and download {download.VGG16_URL} again.") from None
    features = vgg16_features()
    features.load_state_dict(_features_state(state, path))
    return features


def random_vgg16_features(seed: int) -> nn.Sequential:
    """VGG16 ``features`` with torchvision's random initialisation, seeded (tests, smoke runs)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return vgg16_features()


RANDOM_WARNING = (
    "WARNING: the loss network has RANDOM weights (loss_model_weights: random). This is for tests "
    "and smoke runs only: the model will not learn a real style. Use loss_model_weights: imagenet "
    "for real training."
)


def build_loss_network(weights: str, layers: Iterable[str], weights_file: str | Path,
                       seed: int = 0, quiet: bool = False) -> VGGEncoder:
    """The frozen encoder for ``layers``; ``weights`` is "imagenet" (from ``weights_file``) or "random"."""
    if weights == "random":
        # Loud on purpose: a random loss network must never be mistaken for a real run.
        if not quiet:
            print(f"{'!' * 80}\n{RANDOM_WARNING}\n{'!' * 80}", file=sys.stderr)
        features = random_vgg16_features(seed)
    elif weights == "imagenet":
        features = load_vgg16_features(weights_file)
    else:
        raise ValueError(f"Unknown loss_model_weights {weights!r}; choose one of: imagenet, random")
    return VGGEncoder(features, layers)
