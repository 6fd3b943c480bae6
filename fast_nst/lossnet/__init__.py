"""Loss networks and their registry: one row per network, with everything fast-nst needs to
know about it (architecture, layer names, weights file, URL, checksum, input convention).

Adding a loss network of a known architecture (a VGG16/VGG19 with other weights) is one row in
:data:`LOSS_NETWORKS`; a new architecture also needs its layer layout in :data:`BLOCK_CONVS`
(and, if it is not a torchvision VGG, its feature builder in :mod:`fast_nst.lossnet.vgg`).

Nothing here imports torch, so a config's ``loss_model`` and layer names are checked at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

__all__ = ["BLOCK_CONVS", "CAFFE", "CAFFE_FEATURE_SCALE", "CONVENTIONS", "GRAM_STYLE_DEGREE", "InputConvention",
           "LOSS_NETWORKS", "LossNetworkEntry", "STATS_STYLE_DEGREE", "TORCHVISION", "VGG_NORMALISED", "check_config",
           "convert_weights", "get_convention", "get_loss_network", "layer_choices", "layer_names", "loss_weights",
           "min_side"]


@dataclass(frozen=True)
class InputConvention:
    """How a network wants its input, from fast-nst's RGB in [0, 1]: multiply by ``scale``,
    reorder to BGR if ``bgr``, then subtract ``mean`` and divide by ``std`` (both given in the
    network's own channel order).

    ``feature_scale`` is how large this convention's features are, for the same image at the
    same layer, relative to torchvision's (1.0): loss weights tuned for one convention are
    converted to another with :func:`convert_weights`.
    """

    name: str
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool
    feature_scale: float = 1.0  # torchvision's features are the unit


# torchvision's ImageNet weights: RGB in [0, 1] normalised with the ImageNet statistics they
# were trained with (torchvision.models documentation).
TORCHVISION = InputConvention("torchvision", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False)

# Caffe's input is 255 * x - mean, torchvision's (x - mean) / std with std ~0.226 (the mean of the
# three ImageNet stds), so a Caffe network sees inputs 255 * 0.226 ~ 57.6 times larger. Both
# kinds of VGG have first-layer weights of the same order (a trained network absorbs the input
# scale into its activations, not its weights: the Caffe VGG16's conv1_1 weights have a std of
# ~0.21, torchvision's are of the same order), and a ReLU network is linear in a common scale of
# its input and biases, so its features are ~57.6 times torchvision's at every layer. Exact for
# the re-expressed pair of the same network (the Caffe file folded into torchvision's convention
# and divided by 57.6); for the published files, trained apart, an estimate.
CAFFE_FEATURE_SCALE = 255 * 0.226

# The original Caffe VGGs (Simonyan & Zisserman 2014), which Johnson et al. (2016) trained
# against: BGR, 0-255 pixels minus the mean BGR pixel of ImageNet (the VGG model card on the Caffe
# model zoo; jcjohnson/pytorch-vgg's README), no division by a std.
CAFFE = InputConvention("caffe", 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0), True,
                        feature_scale=CAFFE_FEATURE_SCALE)

# Huang & Belongie's AdaIN encoder (models/download_models.sh of xunhuang1995/AdaIN-style): Gatys
# et al.'s normalised VGG-19 (each filter scaled so that its mean activation over ImageNet is 1)
# with reflection padding and a 1x1 convolution in front that does the Caffe preprocessing. The
# network takes RGB in [0, 1] as it is: that first layer, part of the weights file, converts it.
# feature_scale: its relu4_1 features average about 1, torchvision's about 2.5 on the same photos
# (docs/arbitrary.md); an estimate at the layer AdaIN uses, as the other layers differ.
VGG_NORMALISED = InputConvention("vgg_normalised", 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), False,
                                 feature_scale=0.4)

CONVENTIONS = {c.name: c for c in (TORCHVISION, CAFFE, VGG_NORMALISED)}

# How a style loss grows with the feature scale k (convert_weights): an MSE of Gram matrices by
# k**4, an MSE of feature means and standard deviations (AdaIN's) by k**2.
GRAM_STYLE_DEGREE = 4
STATS_STYLE_DEGREE = 2

# Convolutions per block of the VGG layouts (torchvision's cfgs "D" and "E").
# "vgg19_normalised": the VGG-19 layout with reflection padding, ceil-mode pooling and the 1x1
# input convolution in front of conv1_1 (fast_nst.lossnet.normalised).
BLOCK_CONVS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4), "vgg19_normalised": (2, 2, 4, 4, 4)}


@dataclass(frozen=True)
class LossNetworkEntry:
    """One loss network. ``sha256`` is the start of the published file's SHA-256 (torchvision
    names its files ``<name>-<first 8 hex digits>.pth``) or all of it; a downloaded file must match it, a
    file the user names with ``loss_model_file`` is checked for layout only (and refused when it
    is another row's published file of another input convention)."""

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
    # jcjohnson/pytorch-vgg: the Caffe weights in torchvision's features.N keys (its classifier
    # keys differ from torchvision's; a loss network loads features only).
    "vgg16_caffe": LossNetworkEntry("vgg16", "pretrained/vgg16-00b39a1b.pth",
                                    "https://web.eecs.umich.edu/~justincj/models/vgg16-00b39a1b.pth",
                                    "00b39a1b", CAFFE,
                                    "Caffe VGG16 (the original ImageNet weights Johnson et al. used, "
                                    "from jcjohnson/pytorch-vgg; 528 MB)"),
    "vgg19_caffe": LossNetworkEntry("vgg19", "pretrained/vgg19-d01eb7cb.pth",
                                    "https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth",
                                    "d01eb7cb", CAFFE,
                                    "Caffe VGG19 (the original ImageNet weights, from "
                                    "jcjohnson/pytorch-vgg; 548 MB)"),
    # naoto0804/pytorch-AdaIN's release v0.0.0: the Torch file of Huang & Belongie converted, in
    # the port's nn.Sequential keys (fast_nst.lossnet.normalised reads them). The release
    # publishes no checksum; this SHA-256 of its 80,102,481-byte file is the one that several
    # independent public projects pin for that release asset. A converted AdaIN model also pins
    # the SHA-256 of the file it was converted with (AdaINArgs.encoder_sha256).
    "vgg19_normalised": LossNetworkEntry("vgg19_normalised", "pretrained/vgg_normalised.pth",
                                         "https://github.com/naoto0804/pytorch-AdaIN/releases/download/"
                                         "v0.0.0/vgg_normalised.pth",
                                         "804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a",
                                         VGG_NORMALISED,
                                         "Huang & Belongie's normalised VGG-19 (AdaIN's encoder, from "
                                         "naoto0804/pytorch-AdaIN; 80 MB)"),
}


def get_loss_network(name: str) -> LossNetworkEntry:
    """The registry row ``name``; ValueError listing the choices otherwise."""
    if not isinstance(name, str) or name not in LOSS_NETWORKS:
        raise ValueError(f"Unknown loss model {str(name)[:60]!r}; choose one of: {', '.join(LOSS_NETWORKS)}")
    return LOSS_NETWORKS[name]


def get_convention(which: "InputConvention | str") -> InputConvention:
    """An input convention, given itself, its name (``caffe``) or a loss network's (``vgg16_caffe``)."""
    if isinstance(which, InputConvention):
        return which
    if which in CONVENTIONS:
        return CONVENTIONS[which]
    if which in LOSS_NETWORKS:
        return LOSS_NETWORKS[which].convention
    raise ValueError(f"Unknown input convention {str(which)[:60]!r}; choose one of: "
                     f"{', '.join([*CONVENTIONS, *LOSS_NETWORKS])}")


def convert_weights(content_weight: float, style_weight: float, tv_weight: float,
                    from_convention: "InputConvention | str",
                    to_convention: "InputConvention | str",
                    style_degree: int = GRAM_STYLE_DEGREE) -> tuple[float, float, float]:
    """(content, style, tv) weights tuned for one convention (or loss network, ``vgg16``) that
    give the same loss terms with another (``vgg16_caffe``).

    With features k = to.feature_scale / from.feature_scale times larger: the content loss (an
    MSE of features) grows by k**2; the Gram matrix (features times features, normalised by
    C*H*W) by k**2, so the style loss (an MSE of Grams) by k**4 (``style_degree`` 4); AdaIN's
    style loss (an MSE of feature means and standard deviations) by k**2 (``style_degree`` 2);
    the TV loss is computed on the output image's pixels, not on features, and does not change.
    Torchvision -> Caffe: k ~ 57.6, content / 3321, Gram style / 1.1e7, TV as is.
    """
    if style_degree not in (STATS_STYLE_DEGREE, GRAM_STYLE_DEGREE):
        raise ValueError(f"style_degree must be {STATS_STYLE_DEGREE} or {GRAM_STYLE_DEGREE}, got {style_degree}")
    k = get_convention(to_convention).feature_scale / get_convention(from_convention).feature_scale
    return content_weight / k ** 2, style_weight / k ** style_degree, tv_weight


def loss_weights(cfg: Any, style_degree: int = GRAM_STYLE_DEGREE) -> tuple[float, float, float]:
    """The (content, style, tv) weights a config trains with: its own, converted from
    ``loss_weights_for`` to its ``loss_model``'s convention when those differ (``style_degree``:
    as :func:`convert_weights`, 2 for AdaIN's statistics loss)."""
    weights = (cfg.content_weight, cfg.style_weight, cfg.tv_weight)
    if not cfg.loss_weights_for:
        return weights
    return convert_weights(*weights, cfg.loss_weights_for, cfg.loss_model, style_degree)


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


def min_side(name: str, layers: Sequence[str]) -> int:
    """The smallest image side whose features reach the deepest of ``layers`` of loss network
    ``name`` (each 2x2 pool halves the side, rounding down)."""
    names = layer_names(get_loss_network(name).arch)
    deepest = max((names.index(n) for n in layers), default=0)
    return 2 ** sum(1 for n in names[:deepest] if n.startswith("pool"))


def check_config(cfg: Any, fail: Callable[[str, str], None]) -> None:
    """A :data:`fast_nst.core.config.ConfigCheck`: ``loss_model`` is registered and the content
    and style layers exist in it."""
    if cfg.loss_model not in LOSS_NETWORKS:
        fail("loss_model", f"is {cfg.loss_model[:60]!r}; choose one of: {', '.join(LOSS_NETWORKS)}")
    if cfg.loss_weights_for and cfg.loss_weights_for not in CONVENTIONS:
        fail("loss_weights_for", f"is {cfg.loss_weights_for[:60]!r}; choose one of: {', '.join(CONVENTIONS)} "
                                 "(or empty: the weights are for loss_model's own convention)")
    valid = layer_choices(cfg.loss_model)
    for key in ("content_layers", "style_layers"):
        for name in getattr(cfg, key):
            if name not in valid:
                fail(key, f"names unknown layer {name[:60]!r} of {cfg.loss_model}; choose from: {', '.join(valid)}")
