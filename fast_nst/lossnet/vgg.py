"""The frozen VGG loss network, with outputs addressed by layer name (``relu2_2``).

Inputs are RGB images (N, 3, H, W) in [0, 1]; the input convention of the weights (from the
registry row, :data:`fast_nst.lossnet.LOSS_NETWORKS`) is applied inside
:meth:`VGGEncoder.forward` and nowhere else.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from ..core.untrusted import downloads
from ..core.errors import CheckpointError, DownloadError
from ..core.untrusted.archives import check_file_size, load_torch_file
from . import (BLOCK_CONVS, LOSS_NETWORKS, TORCHVISION, InputConvention, LossNetworkEntry, get_loss_network,
               layer_choices, layer_names)
from .normalised import NORMALISED_ARCH, from_published, normalised_features

__all__ = ["MAX_WEIGHTS_BYTES", "RANDOM_WARNING", "TRAIN_FLAGS", "VGGEncoder", "WeightFlags", "bias_ratio", "build_loss_network", "download_weights", "load_features",
           "other_convention_warning", "random_features", "vgg_features"]

# The largest loss-network file fast-nst reads: the published VGG19 files are 548 MB (with the
# 120M-parameter classifier a loss network never uses); 2 GB leaves room for a float64 copy.
MAX_WEIGHTS_BYTES = 2 * 10**9


@dataclass(frozen=True)
class WeightFlags:
    """How the calling command sets the loss network's weights file (``file``), the network
    (``model``, formatted with ``name``) and random weights (``random``): messages name the
    flags of the command that was run."""

    file: str = "loss_model_file / --loss_model_file"
    model: str = "train.py: --set loss_model={name}; optimize: --loss_model {name}"
    random: str = "--set loss_model_weights=random (train.py) or --loss_model_weights random (optimize)"


#: train.py's and optimize's flags (the default).
TRAIN_FLAGS = WeightFlags()

# The convolution widths of VGG16 and VGG19 (Simonyan & Zisserman 2015, configurations D and E),
# "M" a 2x2 max pool: the layout of torchvision's ``vgg16().features``, whose state-dict keys
# (features.N.weight) the weight files use. Written out here rather than imported from
# torchvision.models, whose import pulls in torch._dynamo and doubles every command's start-up
# (measured: 1.7 s -> 3.4 s of CPU for ``import torch`` vs ``import torch, torchvision.models``).
_LAYOUTS = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}


class VGGEncoder(nn.Module):
    """VGG ``features`` cut after ``max(layers)``; ``forward(x, layers)`` returns {name: features}.

    ``entry`` (a registry row, default vgg16's) names the layers and the input convention. Frozen: eval mode,
    ``requires_grad=False`` on every weight (gradients still flow to inputs).
    """

    def __init__(self, features: nn.Sequential, layers: Iterable[str],
                 entry: LossNetworkEntry | None = None):
        super().__init__()
        entry = entry or get_loss_network("vgg16")
        self.entry = entry
        names = layer_names(entry.arch)
        layers = list(layers)
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise ValueError(f"Unknown {entry.label} layer(s) {unknown}; choose from: "
                             f"{', '.join(n for n in names if not n.startswith('pool'))}")
        depth = max(names.index(n) for n in layers) + 1
        modules = []
        for name, module in zip(names[:depth], list(features)[:depth]):
            if isinstance(module, nn.ReLU):
                module = nn.ReLU(inplace=False)  # in-place would overwrite the conv outputs we return
            modules.append((name, module))
        self.layers = nn.Sequential(OrderedDict(modules))
        conv = entry.convention
        self.scale = conv.scale
        self.bgr = conv.bgr
        self.register_buffer("mean", torch.tensor(conv.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(conv.std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @property
    def convention(self) -> InputConvention:
        return self.entry.convention

    def train(self, mode: bool = True) -> "VGGEncoder":
        return super().train(False)  # always frozen

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """RGB (N, 3, H, W) in [0, 1] -> the network's input convention (a new tensor)."""
        if self.scale != 1.0:
            x = x * self.scale
        if self.bgr:
            x = x.flip(1)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Features of ``x`` (N, 3, H, W) in [0, 1] at ``layers``, running only as deep as needed."""
        wanted = set(layers)
        out: dict[str, torch.Tensor] = {}
        h = self.normalize(x)
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


def _torchvision_layout(arch: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for width in _LAYOUTS[arch]:  # modules created in torchvision's order: the same seeded weights
        if width == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = width
    return nn.Sequential(*layers)


def vgg_features(arch: str = "vgg16") -> nn.Sequential:
    """``vgg16().features`` or ``vgg19().features`` with torchvision's random initialisation,
    without building the 138M-parameter classifier (2.4 s on a 2-core CPU) a loss network never uses;
    ``vgg19_normalised``: AdaIN's encoder (:mod:`fast_nst.lossnet.normalised`), initialised the same way."""
    if arch == NORMALISED_ARCH:
        features = normalised_features()
    elif arch in _LAYOUTS:
        features = _torchvision_layout(arch)
    else:
        raise ValueError(f"Unknown VGG layout {arch!r}; choose one of: {', '.join([*_LAYOUTS, NORMALISED_ARCH])}")
    for m in features.modules():  # the same initialisation as torchvision.models.VGG.__init__
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
    return features


def random_features(arch: str, seed: int) -> nn.Sequential:
    """VGG16/VGG19 ``features`` with torchvision's random initialisation, seeded (tests, smoke runs)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return vgg_features(arch)


def _features_state(state: dict, path: Path, entry: LossNetworkEntry) -> dict[str, torch.Tensor]:
    """Accept a full VGG state dict or a features-only one; return the features keys. Keys outside
    ``features.`` (torchvision's classifier, or jcjohnson/pytorch-vgg's with other indices and
    shapes) are ignored: a loss network has no classifier."""
    label = entry.label
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{path}: not a {label} state dict (got {type(state).__name__}).")
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    if entry.arch == NORMALISED_ARCH:  # the published file is in the reference port's keys
        state = from_published(state)
    with torch.device("meta"):  # shapes only: no 20-140M random numbers drawn for nothing
        expected = vgg_features(entry.arch).state_dict()
    missing = sorted(set(expected) - set(state), key=lambda k: int(k.split(".")[0]))
    if missing:
        raise CheckpointError(
            f"{path}: not a {label} weights file (missing {', '.join(missing[:4])}...). "
            f"Expected the file from {entry.url}."
        )
    for key, value in expected.items():
        if not isinstance(state[key], torch.Tensor) or state[key].shape != value.shape:
            shape = getattr(state[key], "shape", None)
            raise CheckpointError(f"{path}: {key} has shape {tuple(shape) if shape is not None else None}, "
                                  f"{label} needs {tuple(value.shape)}; is this a {label} file?")
    return {k: state[k] for k in expected}


# A file's input convention is recognised by its checksum, for the published files, and not by
# the scale of its weights, because that scale does not tell the conventions apart. A network fed
# 0-255 pixels does not have first-layer weights 57.6 times smaller than one fed normalised
# pixels: training absorbs the input scale into the activations (CAFFE_FEATURE_SCALE in
# fast_nst.lossnet), not into the weights. A Caffe VGG16 (fine-tuned from the ImageNet weights)
# has conv1_1 weights of mean |w| 0.17 (std 0.21) and biases of mean |b| 0.50; torchvision's
# vgg16-397923af.pth (values printed from it in public notebooks) has weights of the same order
# (|w| up to ~1, ~0.3 in its first filters) and biases of mean |b| 0.42. A pair derived from one
# network (folded into the other convention and rescaled by 1/57.6) even has the same
# first-layer weight statistics, to 0.1 %, and differs only in its biases (57.6 times), where
# the published files do not. And fed the other convention's input, a network's features keep
# about the right magnitude (the derived torchvision file fed Caffe input: 56 to 57.5 times its
# own features at relu1_2 to relu3_3, where the Caffe file gives 57.6), so no probe of the
# features' scale tells either. A threshold on any of these scales would miss the mistake or
# refuse torchvision's own file (the bias ratio below catches a file converted between them).
def _refuse_other_convention(path: Path, name: str, entry: LossNetworkEntry, flags: WeightFlags) -> None:
    """Refuse ``path`` if it is the published file of a loss network of the same layout but
    another input convention (vgg16's file given as vgg16_caffe, or the reverse).

    Only a file with that network's published name is hashed (~0.4 s for 528 MB), so a file of
    one's own that reuses the name but not the content is loaded as asked.
    """
    for other_name, other in LOSS_NETWORKS.items():
        if (other.arch != entry.arch or other.convention == entry.convention or not other.sha256
                or path.name != Path(other.file).name):
            continue
        if downloads.sha256_file(path).startswith(other.sha256):
            raise CheckpointError(
                f"{path} is the published {other_name} file: {other.summary.split(' (')[0]} weights, "
                f"for the {other.convention.name} input convention, but the loss model is {name} "
                f"({entry.convention.name} convention), which would feed it pixels in the wrong convention. "
                f"Use loss_model {other_name} ({flags.model.format(name=other_name)}) with this file, or give "
                f"{name} its own file ({entry.url})."
            )


# The one thing a probe of the features does tell: how much the biases matter. A ReLU network
# fed the convention's zero (the mean pixel) answers with its biases alone; fed an image, mostly
# with its weights. Their ratio is scale-free, and a network fed its own convention's input keeps
# it at what training made it: at relu3_3, relu4_3 and relu5_3 (geometric mean, 32 px probe)
# 0.014 for the stand-in Caffe VGG16 (a VGG16 initialised from the Caffe weights) on Caffe input,
# 0.015 for its torchvision re-expression on torchvision input. That re-expression (biases divided
# by 57.6, the input normalisation folded into conv1_1: how a file is converted between the
# conventions) fed Caffe pixels gives 0.00027, 51 times less, with features of the right size
# and plausible losses. The threshold sits between the two, 7 times from each. Checked only for
# Caffe-convention loss networks: two networks trained apart (the published torchvision and
# Caffe files) differ in this ratio for reasons of their own, and torchvision's file must never
# be refused as vgg16.
_BIAS_PROBE_SIZE = 32  # px: relu5_3 still has 2 x 2 positions; 0.6 GFLOP for both probes
_BIAS_RATIO_MIN = 0.0019


def bias_ratio(features: nn.Sequential, name: str) -> float:
    """How much the biases of ``features`` count when fed loss network ``name``'s convention:
    the geometric mean, over the last ReLU of blocks 3 to 5, of mean |features| of the
    convention's zero input (the mean pixel) over those of a fixed seeded 32 px image
    (a float >= 0; about 0.014 for a VGG16 fed its own convention)."""
    entry = get_loss_network(name)
    convs = BLOCK_CONVS[entry.arch]
    layers = [f"relu{b}_{convs[b - 1]}" for b in (3, 4, 5)]
    image = torch.rand(1, 3, _BIAS_PROBE_SIZE, _BIAS_PROBE_SIZE, generator=torch.Generator().manual_seed(0))
    encoder = VGGEncoder(features, layers, entry)
    with torch.no_grad():
        h = torch.cat([torch.zeros_like(image), encoder.normalize(image)])
        ratios = []
        for layer, module in encoder.layers.named_children():
            h = module(h)
            if layer in layers:
                ratios.append(h[0].abs().mean() / h[1].abs().mean().clamp_min(1e-30))
    return float(torch.stack(ratios).clamp_min(1e-30).log().mean().exp())


def other_convention_warning(features: nn.Sequential, name: str, path: str | Path) -> str | None:
    """A warning (one paragraph, with the fix) when ``features``, loaded from ``path`` for a
    Caffe-convention loss network ``name``, answer like a network made for torchvision's
    convention (see the bias ratio above); None otherwise, and always for torchvision's."""
    entry = get_loss_network(name)
    if entry.convention.feature_scale <= TORCHVISION.feature_scale:
        return None
    ratio = bias_ratio(features, name)
    if ratio >= _BIAS_RATIO_MIN:
        return None
    tv_name = next((n for n, e in LOSS_NETWORKS.items() if e.arch == entry.arch and e.convention == TORCHVISION), "vgg16")
    conv = entry.convention.name
    return (f"WARNING: {path} looks like {entry.label} weights for torchvision's input convention "
            f"(RGB in [0, 1], normalised), not for {name}'s {conv} convention: fed {conv} pixels, its "
            f"biases barely count (bias/feature ratio {ratio:.2g}; a {conv}-convention {entry.label} "
            f"gives about 0.014). The losses look plausible but the network sees the wrong input. Use "
            f"loss_model {tv_name} with this file (train.py: --set loss_model={tv_name}; the conf files "
            f"keep loss_weights_for: caffe), or get {name}'s own file: python -m fast_nst.download {name}.")


def download_weights(name: str, dest: str | Path | None = None, quiet: bool = False,
                     flags: WeightFlags = TRAIN_FLAGS) -> Path:
    """Fetch the weights of loss network ``name`` (a registry row) into ``dest`` (default: the
    row's file), verified against the row's checksum; a failure names ``flags``."""
    entry = get_loss_network(name)
    dest = dest or entry.file
    try:
        return downloads.download_url(entry.url, dest, sha256_prefix=entry.sha256 or None, quiet=quiet)
    except DownloadError as e:
        raise DownloadError(
            f"{e} The {name} loss network needs {entry.summary.split(' (')[0]} weights: download "
            f"them on a machine with internet and put the file at {dest} (or set {flags.file} to "
            f"where it is). For a smoke test without them, use {flags.random}."
        ) from None


def load_features(name: str, path: str | Path | None = None, allow_download: bool = True,
                  flags: WeightFlags = TRAIN_FLAGS) -> nn.Sequential:
    """VGG ``features`` of loss network ``name`` with the weights in ``path`` (default: the
    registry's file; a full state dict or a features-only one).

    A missing file is downloaded from the row's URL when ``allow_download`` (and the path has
    the published file name); otherwise, or when the download fails, a
    :class:`~fast_nst.core.errors.FastNSTError` says where to get the file. Another loss
    network's published file of another input convention is refused, naming that network.
    The file is read through the boundary (:func:`~fast_nst.core.untrusted.archives.load_torch_file`,
    at most :data:`MAX_WEIGHTS_BYTES`); messages name the command's ``flags``.
    """
    entry = get_loss_network(name)
    path = Path(path or entry.file)
    if not path.exists():
        if allow_download and path.name == Path(entry.file).name:
            print(f"{entry.label} weights not found at {path}; downloading {entry.url}", file=sys.stderr)
            download_weights(name, path, flags=flags)
        else:
            raise CheckpointError(
                f"{entry.label} weights not found at {path}. Download {entry.url} "
                f"(python -m fast_nst.download {name}) and set {flags.file} to its path."
            )
    what = f"{entry.label} weights file"
    check_file_size(path, MAX_WEIGHTS_BYTES, what)  # before it is hashed
    _refuse_other_convention(path, name, entry, flags)
    state = load_torch_file(path, MAX_WEIGHTS_BYTES, f"a {what}",
                            f"Expected {entry.summary.split(' (')[0]} weights: download {entry.url} "
                            f"(python -m fast_nst.download {name}).")
    with torch.device("meta"):  # every weight is loaded below: skip the random initialisation
        features = vgg_features(entry.arch)
    features.to_empty(device="cpu").load_state_dict(_features_state(state, path, entry))
    warning = other_convention_warning(features, name, path)
    if warning:
        print(warning, file=sys.stderr)
    return features


RANDOM_WARNING = (
    "WARNING: the loss network has RANDOM weights (loss_model_weights: random). This is for tests "
    "and smoke runs only: the model will not learn a real style. Use loss_model_weights: imagenet "
    "for real training."
)


def build_loss_network(weights: str, layers: Iterable[str], weights_file: str | Path | None = None,
                       seed: int = 0, quiet: bool = False, name: str = "vgg16",
                       flags: WeightFlags = TRAIN_FLAGS) -> VGGEncoder:
    """The frozen encoder of loss network ``name`` for ``layers``; ``weights`` is "imagenet"
    (from ``weights_file``, default the registry's file) or "random" (seeded); messages name
    the command's ``flags``."""
    entry = get_loss_network(name)
    layers = list(layers)
    bad = [n for n in layers if n not in layer_choices(name)]
    if bad:
        raise ValueError(f"Unknown {entry.label} layer(s) {bad}; choose from: {', '.join(layer_choices(name))}")
    if weights == "random":
        # Loud on purpose: a random loss network must never be mistaken for a real run.
        if not quiet:
            print(f"{'!' * 80}\n{RANDOM_WARNING}\n{'!' * 80}", file=sys.stderr)
        features = random_features(entry.arch, seed)
    elif weights == "imagenet":
        features = load_features(name, weights_file, flags=flags)
    else:
        raise ValueError(f"Unknown loss_model_weights {weights!r}; choose one of: imagenet, random")
    return VGGEncoder(features, layers, entry)
