"""Arbitrary style transfer with adaptive instance normalisation (AdaIN): Huang & Belongie,
"Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization", ICCV 2017.

One network for every style: a frozen VGG encoder f (a loss network of
:data:`fast_nst.lossnet.LOSS_NETWORKS` cut at ``encoder_layer``, relu4_1 of VGG-19 as in the
paper), AdaIN, and a trained decoder g that mirrors the encoder::

    t = AdaIN(f(c), f(s)) = std(f(s)) * (f(c) - mean(f(c))) / std(f(c)) + mean(f(s))
    T(c, s, alpha) = g(alpha * t + (1 - alpha) * f(c))

with per-channel means and standard deviations over (H, W). The paper's interpolation of styles
s_k with weights w_k (sum 1), g(sum_k w_k AdaIN(f(c), f(s_k))), equals AdaIN with the blended
statistics (sum_k w_k mean_k, sum_k w_k std_k), because AdaIN is affine in them: that is how
:meth:`AdaINNet.style_statistics` blends.

The encoder's weights are the loss network's file, not the model's: checkpoints hold only the
decoder (:meth:`AdaINNet.state_dict`), and the encoder is rebuilt from the arguments: the loss
network ``encoder`` (a registry name), its file checked against ``encoder_sha256``, the checksum
of the file the decoder was trained with. The file is the user's: ``encoder_file`` as the user
gave it (training: loss_model_file; loading: --loss_model_file), else the registry's default
path. A model file's own ``encoder_file`` is never opened (io.checkpoint.build_model replaces
it; fast_nst.nets.USER_FILE_ARGS).

Stylizing runs :meth:`AdaINNet.for_style`, the network of one style (its statistics fixed): an
:class:`~fast_nst.nets.base.InferenceNetwork` of the photo alone, so the stylizers' precision,
tiling (the content statistics shared by all tiles, as instance norm's are) and options apply.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import torch
from torch import nn

from ..core.errors import CheckpointError
from ..core.untrusted.archives import check_file_size
from ..core.untrusted.downloads import sha256_file
from ..lossnet import LOSS_NETWORKS, get_loss_network, layer_names
from ..lossnet.losses import ADAIN_EPS, adain, mean_std
from ..lossnet.vgg import MAX_WEIGHTS_BYTES, VGGEncoder, build_loss_network, load_features
from .base import InferenceNetwork, NormStats, StyleNetwork
from .layers import check_images
from .multistyle import blend_weights

__all__ = ["AdaINArgs", "AdaINNet", "AdaINStyleNet", "ExportableAdaINNet", "build_decoder", "check_alpha",
           "encoder_path", "file_sha256", "load_encoder", "pad_indices"]

# Output channels of the five blocks of torchvision's VGG16/VGG19 (cfgs "D" and "E").
_VGG_WIDTHS = (64, 128, 256, 512, 512)
_SHA_HEX = re.compile(r"[0-9a-f]{8,64}")
_MAX_PATH = 4096  # an old model file's encoder_file: untrusted text (checked, then ignored)


@dataclass(frozen=True)
class AdaINArgs:
    """The encoder (a loss network of :data:`fast_nst.lossnet.LOSS_NETWORKS` and the layer it is
    cut at) and where its weights come from; the decoder mirrors the encoder up to that layer.

    ``encoder_weights``: "imagenet" (the user's file ``encoder_file``, or the registry's default
    path when it is empty) or "random" (seeded by ``encoder_seed``: tests only).
    ``encoder_sha256``: the start of the SHA-256 of the file the decoder was trained with ("" for
    no check). ``unbiased_std``: the feature statistics' variance divided by H*W - 1 instead of
    H*W, as in Huang & Belongie's Torch code and the PyTorch port whose published decoder was
    trained with it (``python -m fast_nst.download adain``); fast-nst trains with False.
    """

    encoder: str = "vgg19"  # Huang & Belongie: VGG-19 ...
    encoder_layer: str = "relu4_1"  # ... up to relu4_1
    encoder_file: str = ""
    encoder_sha256: str = ""
    encoder_weights: str = "imagenet"
    encoder_seed: int = 0
    unbiased_std: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, str) or self.encoder not in LOSS_NETWORKS:
            raise ValueError(f"encoder must be one of {', '.join(LOSS_NETWORKS)}, got {str(self.encoder)[:40]!r}")
        relus = [n for n in layer_names(LOSS_NETWORKS[self.encoder].arch) if n.startswith("relu")]
        if self.encoder_layer not in relus:
            raise ValueError(f"encoder_layer must be a ReLU layer of {self.encoder} ({', '.join(relus)}), "
                             f"got {str(self.encoder_layer)[:40]!r}")
        if self.encoder_weights not in ("imagenet", "random"):
            raise ValueError(f"encoder_weights must be imagenet or random, got {str(self.encoder_weights)[:40]!r}")
        if not isinstance(self.encoder_file, str) or len(self.encoder_file) > _MAX_PATH or "\0" in self.encoder_file:
            raise ValueError(f"encoder_file must be a path of at most {_MAX_PATH} characters")
        sha = self.encoder_sha256
        if not isinstance(sha, str) or (sha and not _SHA_HEX.fullmatch(sha)):
            raise ValueError(f"encoder_sha256 must be empty or 8 to 64 lower-case hex digits, got "
                             f"{str(self.encoder_sha256)[:70]!r}")
        seed = self.encoder_seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
            raise ValueError(f"encoder_seed must be a whole number from 0 to 2**63 - 1, got {str(seed)[:40]}")
        if not isinstance(self.unbiased_std, bool):
            raise ValueError(f"unbiased_std must be true or false, got {str(self.unbiased_std)[:40]}")

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)

    def encoder_layers(self) -> list[str]:
        """The layers the encoder gives: relu1_1, relu2_1, ... up to ``encoder_layer`` and that
        layer itself (the statistics Huang & Belongie match)."""
        block = int(self.encoder_layer[4])
        return list(dict.fromkeys([f"relu{b}_1" for b in range(1, block + 1)] + [self.encoder_layer]))

    def plan(self) -> list[tuple[int, int]]:
        """The encoder's layers up to ``encoder_layer``: (in, out) channels per 3x3 convolution,
        (0, 0) per 2x2 max pool."""
        names = layer_names(LOSS_NETWORKS[self.encoder].arch)
        out, channels = [], 3
        for name in names[: names.index(self.encoder_layer) + 1]:
            if name.startswith("conv"):
                width = _VGG_WIDTHS[int(name[4]) - 1]
                out.append((channels, width))
                channels = width
            elif name.startswith("pool"):
                out.append((0, 0))
        return out


class _DecoderConv(nn.Sequential):
    """Reflection pad -> 3x3 conv -> ReLU (none after the last), as the paper's decoder."""

    def __init__(self, cin: int, cout: int, relu: bool):
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def build_decoder(plan: Sequence[tuple[int, int]]) -> nn.Sequential:
    """The encoder's layout (:meth:`AdaINArgs.plan`) mirrored: each convolution (in -> out)
    becomes one (out -> in), each pool a nearest-neighbour x2 upsampling; no normalisation; the
    mirror of the first convolution is the last, to 3 channels without a ReLU (Huang & Belongie,
    Sec. 6.1: nearest upsampling against checkerboards, reflection padding against border artifacts)."""
    layers: list[nn.Module] = []
    for cin, cout in reversed(plan):
        if cin == 0:
            layers.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
        else:
            layers.append(_DecoderConv(cout, cin, relu=cin != 3))
    return nn.Sequential(*layers)


# -- the encoder's weights -------------------------------------------------------------------------

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Union[str, Path]) -> str:
    """The SHA-256 (hex) of ``path``, remembered per (path, size, mtime): hashing a 548 MB VGG19
    takes about a second, and every model load checks it. CheckpointError for anything but a
    regular file of at most MAX_WEIGHTS_BYTES (a sparse 100 GB file would hash for minutes)."""
    check_file_size(Path(path), MAX_WEIGHTS_BYTES, "VGG weights file")
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


def encoder_path(args: AdaINArgs) -> Path:
    """The encoder's weights file: the user's ``encoder_file`` if given, else the registry's
    default path; CheckpointError (saying where to get it) when it does not exist or is no
    regular file."""
    entry = get_loss_network(args.encoder)
    path = Path(args.encoder_file or entry.file)
    if not path.exists():
        given = (f"the file given for it, {path}, does not exist" if args.encoder_file
                 else f"not found at {path}")
        raise CheckpointError(
            f"this AdaIN model needs the {args.encoder} encoder weights ({entry.summary}): {given}. Download "
            f"them (python -m fast_nst.download {args.encoder}, or {entry.url}) to {entry.file}, or give "
            "the weights file it was trained with: --loss_model_file FILE.")
    check_file_size(path, MAX_WEIGHTS_BYTES, f"{entry.label} weights file")
    return path


def _check_sha(args: AdaINArgs, path: Path) -> None:
    if not args.encoder_sha256:
        return
    found = file_sha256(path)
    if found.startswith(args.encoder_sha256):
        return
    entry = get_loss_network(args.encoder)
    published = (f" (the published {args.encoder} file, {entry.url})"
                 if entry.sha256 and args.encoder_sha256.startswith(entry.sha256) else "")
    raise CheckpointError(
        f"this AdaIN model was trained with an encoder file of sha256 {args.encoder_sha256[:12]}...{published}, "
        f"but {path} has sha256 {found[:12]}...: its decoder only fits the features of the file it was "
        f"trained with. Give that file with --loss_model_file FILE, or put it at {entry.file}.")


def load_encoder(args: AdaINArgs) -> VGGEncoder:
    """The frozen encoder ``args`` describe (weights checked against ``encoder_sha256``); never
    downloads (a model load must not fetch 548 MB unasked: the error says how)."""
    layers = args.encoder_layers()
    if args.encoder_weights == "random":
        return build_loss_network("random", layers, seed=args.encoder_seed, quiet=True, name=args.encoder)
    path = encoder_path(args)
    _check_sha(args, path)
    features = load_features(args.encoder, path, allow_download=False)
    return VGGEncoder(features, layers, get_loss_network(args.encoder))


# -- padding and the forward pass, shared by every form ---------------------------------------------

def pad_indices(n: int, multiple: int, device: torch.device) -> torch.Tensor:
    """Indices that pad a side of ``n`` at its end to a multiple of ``multiple`` (at least two:
    the deepest decoder convolution pads by 1 by reflection), by reflection, or by replication
    where the pad is not smaller than ``n``. Tensor ops on the size: exporters keep it dynamic."""
    padded = max(2 * multiple, (n + multiple - 1) // multiple * multiple)
    i = torch.arange(padded, device=device)
    reflect = torch.where(i < n, i, 2 * (n - 1) - i)
    return torch.where(reflect.min() >= 0, reflect, torch.clamp(i, max=n - 1))


def _transfer(encoder: VGGEncoder, decoder: nn.Module, layer: str, multiple: int, x: torch.Tensor,
              style: Optional[tuple[torch.Tensor, torch.Tensor]], alpha: Union[float, torch.Tensor],
              shared: Optional[NormStats] = None, unbiased: bool = False, as_graph: bool = False) -> torch.Tensor:
    """decoder(alpha * AdaIN(f(x), style) + (1 - alpha) * f(x)) for x (N, 3, H, W) in [0, 1],
    padded at the bottom and right and cropped back: (N, 3, H, W), not clamped. ``style``: (mean,
    std) (1 or N, C, 1, 1), or None for decoder(f(x)); ``alpha`` a number, or a (1,) tensor (an
    export's input: always blended, no branch on its value); ``shared``: tiling's content statistics
    (biased: with ``unbiased`` (AdaINArgs.unbiased_std) tiles differ from the untiled result by
    that factor, sqrt(n / (n - 1)) for n features per channel, below 1e-3 past 32 x 32 features);
    ``as_graph``: the content normalised by one instance norm, for exports (losses.instance_normalised)."""
    rows = pad_indices(x.shape[2], multiple, x.device)
    cols = pad_indices(x.shape[3], multiple, x.device)
    f = encoder(x.index_select(2, rows).index_select(3, cols), [layer])[layer]
    tensor_alpha = torch.is_tensor(alpha)
    if style is not None and (tensor_alpha or alpha > 0):
        stats = None
        if shared is not None:
            mean, var = shared(f.float())
            stats = (mean, (var + ADAIN_EPS).sqrt())
        t = adain(f, style[0], style[1], stats, unbiased, as_instance_norm=as_graph)
        a = alpha.reshape(1, 1, 1, 1) if tensor_alpha else alpha
        f = t if not tensor_alpha and alpha == 1 else a * t + (1 - a) * f.float()
    y = decoder(f)
    keep_h = torch.arange(x.shape[2], device=x.device)
    keep_w = torch.arange(x.shape[3], device=x.device)
    return y.index_select(2, keep_h).index_select(3, keep_w)


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float; ValueError unless it is a number from 0 to 1."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 (the photo's own features) and 1 (full style), got {alpha}")
    return float(alpha)


class AdaINNet(StyleNetwork):
    """The encoder, AdaIN and the decoder. ``forward(x, style=None, alpha=1.0)``: photos x (N, 3,
    H, W) in [0, 1] (any H, W), style images (1 or N, 3, h, w) in [0, 1] (at least
    :attr:`min_style_side` px per side) -> (N, 3, H, W), clamped to [0, 1] in eval mode only.
    ``style`` None: decoder(f(x)), the photo reconstructed (the photo as its own style, as alpha 0;
    the single-input call every registered network answers). Stylizers refuse to run without a style.

    ``encoder``: an already built encoder of the arguments (training shares the loss network's);
    by default it is built (and its file checked) from ``args``. Only the decoder is trained and
    saved: :meth:`state_dict` and :meth:`load_state_dict` leave the encoder out.
    """

    model_type = "adain"
    Args = AdaINArgs
    # Peak fp32 inference memory per pixel of for_style()'s network, measured as the growth of
    # the peak resident memory of a CPU process stylizing one 512 x 512 or 768 x 768 photo under
    # inference_mode: 1.1 to 1.5 kB/px for VGG-19 to relu4_1, 1.0 kB/px for VGG-16 (the full-size
    # 64-channel maps of the first and last two convolutions, several alive at once); 2 kB with
    # a margin for the allocator.
    bytes_per_pixel = 2048

    def __init__(self, args: AdaINArgs = AdaINArgs(), encoder: Optional[VGGEncoder] = None):
        super().__init__()
        self.args = args
        encoder = encoder if encoder is not None else load_encoder(args)
        last = list(encoder.layers.named_children())[-1][0]
        if encoder.entry != get_loss_network(args.encoder) or last != args.encoder_layer:
            raise ValueError(f"the encoder given ({encoder.entry.label} to {last}) is not the one of the "
                             f"arguments ({args.encoder} to {args.encoder_layer})")
        self.encoder = encoder
        plan = args.plan()
        self.decoder = build_decoder(plan)
        self.multiple = self.grid_of(args)  # the encoder's total downsampling
        self.layer = args.encoder_layer
        self._radius = self.radius_of(args)

    @property
    def receptive_radius(self) -> int:
        return self._radius

    @classmethod
    def radius_of(cls, args: AdaINArgs) -> int:
        return _receptive_radius(args.plan())

    @classmethod
    def grid_of(cls, args: AdaINArgs) -> int:
        """The encoder's total downsampling: 2 per pool (8 to relu4_1)."""
        return 2 ** sum(1 for cin, _ in args.plan() if cin == 0)

    @property
    def min_style_side(self) -> int:
        """The smallest style image side: two pixels at the encoder layer, so a std exists."""
        return 2 * self.multiple

    # -- checkpoints hold the decoder only ---------------------------------------------------

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key in [k for k in state if k.startswith(prefix + "encoder.")]:
            del state[key]
        return state

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load the decoder from ``state_dict``; encoder entries (of files that hold them) are
        ignored, any other key outside the decoder is an error when ``strict``."""
        other = [k for k in state_dict if not k.startswith(("decoder.", "encoder."))]
        if strict and other:
            raise RuntimeError(f"Unexpected key(s) in state_dict: {', '.join(map(repr, other[:5]))}.")
        decoder = {k[len("decoder."):]: v for k, v in state_dict.items() if k.startswith("decoder.")}
        return self.decoder.load_state_dict(decoder, strict=strict, assign=assign)

    # -- styles ------------------------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features (N, C, h, w) at ``encoder_layer`` of x (N, 3, H, W) in [0, 1], unpadded."""
        return self.encoder(x, [self.layer])[self.layer]

    def style_statistics(self, images: Union[torch.Tensor, Sequence[torch.Tensor]],
                         weights: Optional[Sequence[float]] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the encoder features of style ``images`` ((K, 3, h, w), or a sequence of K
        (1, 3, h_k, w_k) of any sizes, in [0, 1]): (K, C, 1, 1) each, float32; with ``weights`` (K
        numbers >= 0, normalised to sum 1) their blend, (1, C, 1, 1) each."""
        batches = [images] if torch.is_tensor(images) else list(images)
        if not batches:
            raise ValueError("no style images given")
        for b in batches:
            check_images(b, "style images", self.min_style_side)
        stats = [mean_std(self.encode(b), unbiased=self.args.unbiased_std) for b in batches]
        mean = torch.cat([m for m, _ in stats])
        std = torch.cat([s for _, s in stats])
        if weights is None:
            return mean, std
        if len(weights) != mean.shape[0]:
            raise ValueError(f"style weights must be {mean.shape[0]} numbers, one per style image, got {len(weights)}")
        wt = torch.tensor(blend_weights(weights), device=mean.device).view(-1, 1, 1, 1)
        return (wt * mean).sum(0, keepdim=True), (wt * std).sum(0, keepdim=True)

    def forward(self, x: torch.Tensor, style: Optional[torch.Tensor] = None, alpha: float = 1.0) -> torch.Tensor:
        check_images(x, "photos")
        alpha = check_alpha(alpha)
        stats = None
        if style is not None:
            stats = self.style_statistics(style)
            if stats[0].shape[0] not in (1, x.shape[0]):
                raise ValueError(f"{stats[0].shape[0]} style images for {x.shape[0]} photos: give 1 or {x.shape[0]}")
        y = _transfer(self.encoder, self.decoder, self.layer, self.multiple, x, stats, alpha,
                      unbiased=self.args.unbiased_std)
        return y if self.training else y.clamp(0, 1)

    def transfer(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """Photos x (N, 3, H, W) in [0, 1], each with its own style statistics ``mean``, ``std``
        (N or 1, C, 1, 1) from :meth:`style_statistics` -> (N, 3, H, W) in [0, 1] (a dataset's
        batch of photos, each in another painting's style)."""
        check_images(x, "photos")
        if mean.shape[0] not in (1, x.shape[0]) or mean.shape != std.shape:
            raise ValueError(f"style statistics of shape {tuple(mean.shape)} for {x.shape[0]} photos")
        y = _transfer(self.encoder, self.decoder, self.layer, self.multiple, x, (mean, std), check_alpha(alpha),
                      unbiased=self.args.unbiased_std)
        return y.clamp(0, 1)

    def for_style(self, mean: torch.Tensor, std: torch.Tensor, alpha: float = 1.0) -> "AdaINStyleNet":
        """The network of one style: photos -> stylizations with the style statistics ``mean``,
        ``std`` (1, C, 1, 1) (from :meth:`style_statistics`) and ``alpha`` fixed."""
        return AdaINStyleNet(self, mean, std, check_alpha(alpha))

    def exportable(self) -> nn.Module:
        return ExportableAdaINNet(self)

    def shared_norm_statistics(self):
        raise NotImplementedError("tile with for_style(mean, std), the network of one style")


def _receptive_radius(plan: Sequence[tuple[int, int]]) -> int:
    """Half the receptive field of encoder + decoder: each 3x3 convolution widens it by 2 pixels
    of its resolution, each 2x2 pool by 1; upsampling halves the pixel size (64 px for VGG-19 to
    relu4_1, 56 px for VGG-16)."""
    field, step = 1, 1
    for cin, _ in plan:  # the encoder
        field += step if cin == 0 else 2 * step
        step *= 2 if cin == 0 else 1
    for cin, _ in reversed(plan):  # the decoder, its mirror
        if cin == 0:
            step //= 2
        else:
            field += 2 * step
    return field // 2


class AdaINStyleNet(InferenceNetwork):
    """The AdaIN network for one style: ``forward(x)`` (N, 3, H, W) in [0, 1] -> the stylization in
    [0, 1]. Shares the encoder and decoder of the :class:`AdaINNet` it came from (no copy).

    Tiling: :meth:`shared_norm_statistics` fixes the content features' statistics (AdaIN's
    instance normalisation of the photo) to those of the whole (downscaled) image.
    """

    def __init__(self, net: AdaINNet, mean: torch.Tensor, std: torch.Tensor, alpha: float):
        super().__init__()
        self.args = net.args
        self.encoder, self.decoder = net.encoder, net.decoder
        self.layer, self.multiple, self.alpha = net.layer, net.multiple, alpha
        self.tile_grid = net.multiple  # tiles start on the encoder's pooling grid (stylize.torch_stylizer)
        self.register_buffer("style_mean", mean.detach().float().reshape(1, -1, 1, 1).clone())
        self.register_buffer("style_std", std.detach().float().reshape(1, -1, 1, 1).clone())
        self.bytes_per_pixel = net.bytes_per_pixel
        self._radius = net.receptive_radius
        self._shared: Optional[NormStats] = None

    @property
    def receptive_radius(self) -> int:
        return self._radius

    def fast_inference(self, channels_last: bool = True) -> "AdaINStyleNet":
        """Itself: plain convolutions and no norms, already oneDNN's fastest CPU path."""
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, "photos")
        if self._shared is not None:
            self._shared.index = 0  # one statistic per forward
        y = _transfer(self.encoder, self.decoder, self.layer, self.multiple, x,
                      (self.style_mean, self.style_std), self.alpha, self._shared, self.args.unbiased_std)
        return y.clamp(0, 1)

    @contextmanager
    def shared_norm_statistics(self) -> Iterator[NormStats]:
        stats = NormStats()
        stats.mode = "record"
        self._shared = stats
        try:
            yield stats
        finally:
            self._shared = None


class ExportableAdaINNet(nn.Module):
    """``forward(x, style_image=None, alpha=None)`` for graph exporters: photos x (N, 3, H, W) and
    style images (1 or N, 3, h, w), both in [0, 1] with dynamic sizes, and ``alpha`` a (1,) tensor
    in [0, 1] (None: 1), -> (N, 3, H, W) in [0, 1]; ``style_image`` None reconstructs the photo, as
    :class:`AdaINNet`. The padding and crop are index gathers built from the symbolic sizes (in
    :class:`AdaINNet` too, so both compute the same)."""

    def __init__(self, net: AdaINNet):
        super().__init__()
        self.encoder, self.decoder = net.encoder, net.decoder
        self.layer, self.multiple = net.layer, net.multiple
        self.unbiased = net.args.unbiased_std

    def forward(self, x: torch.Tensor, style_image: Optional[torch.Tensor] = None,
                alpha: Optional[torch.Tensor] = None) -> torch.Tensor:
        if style_image is None and torch.compiler.is_exporting():
            # A graph of the photo alone would be the autoencoder, a silent non-stylizer.
            raise NotImplementedError("an AdaIN model exports with two inputs, the photo and the style "
                                      "image: export exportable()(x, style_image, alpha)")
        stats = (None if style_image is None
                 else mean_std(self.encoder(style_image, [self.layer])[self.layer], unbiased=self.unbiased))
        return _transfer(self.encoder, self.decoder, self.layer, self.multiple, x, stats,
                         1.0 if alpha is None else alpha, unbiased=self.unbiased, as_graph=True).clamp(0, 1)
