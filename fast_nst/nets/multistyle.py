"""One transform network for many styles: conditional instance normalisation (Dumoulin, Shlens &
Kudlur, "A Learned Representation for Artistic Style", ICLR 2017).

The layout is the Johnson network's (:mod:`fast_nst.nets.johnson`), convolution for convolution;
only the norms differ: each holds one scale and shift (gamma, beta) per style, (S, C) each, and a
style is a weight vector w (S,) that mixes them, gamma = w @ gammas. A one-hot w is one style;
any convex w is Dumoulin's blend, which is continuous in w.

Because the convolutions are shared and a norm's affine part is linear in (gamma, beta), the
network for one fixed w is exactly a single-style :class:`~fast_nst.nets.johnson.TransformNet`
(:meth:`MultiStyleNet.for_style`): stylizing, tiling, the fast CPU form and single-style export
all reuse the Johnson machinery. Training and the two-input export run the conditional form.
"""

from __future__ import annotations

import hashlib
import numbers
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import FastNSTError
from ..core.files import MAX_COMPONENT
from ..core.untrusted import finite_float, shown
from . import MAX_PARAMETERS
from .base import StyleNetwork
from .exportable import PhaseUpsampleConv, StridedOutputConv, pad_and_crop_indices
from .johnson import TransformNet, TransformNetArgs
from .layers import ConvLayer, check_images, output_mapping, pad_input

__all__ = ["ConditionalInstanceNorm", "ExportableMultiStyleNet", "MAX_STYLES", "MultiStyleArgs",
           "MultiStyleNet", "StyleError", "StyleSpec", "blend_weights", "resolve_style", "style_label", "style_list"]

# A model file is untrusted input: its style count is bounded before anything is allocated. 1024
# styles are 32x Dumoulin et al.'s 32, and cost ~4 MB of norm parameters at the default width.
MAX_STYLES = 1024


class StyleError(FastNSTError):
    """A style choice that names no style of the model, or weights that are no blend."""


#: What a style may be given as: a name ("candy"), a blend ("candy:0.7,mosaic:0.3"), an index,
#: a {name: weight} mapping, or one weight per style (a sequence or tensor).
StyleSpec = Union[str, int, Mapping[str, float], Sequence[float], torch.Tensor]


def blend_weights(values: Sequence[float]) -> list[float]:
    """``values`` normalised to sum 1: the weights of a blend of styles (or of style images);
    :class:`StyleError` unless every one is finite and >= 0 and their sum is positive."""
    # Each weight is stored as float32 before (tensors) or after (the blend) normalising: a
    # weight beyond float32's range (1e39) would overflow, so it is refused here, by name.
    w = [finite_float(v, "style weights", StyleError, low=0.0) for v in values]
    if sum(w) <= 0:
        raise StyleError(f"style weights must be >= 0 with a positive sum, got {[round(v, 4) for v in w][:8]}")
    return [v / sum(w) for v in w]


def _blend_from_text(text: str) -> dict[str, float]:
    """``name``, ``name,name`` (equal weights) or ``name:weight,name:weight`` as {name: weight}.
    Every entry has a weight or none does: ``candy:0.7,mosaic`` is more likely a typo than
    "mosaic at 1", so it is an error rather than a silent 59 % mosaic."""
    example = "write a blend as name:weight,name:weight (e.g. candy:0.7,mosaic:0.3)"
    items = [item.strip().partition(":") for item in text.split(",")]
    unweighted = [name.strip() for name, sep, _ in items if not sep]
    if len(items) > 1 and 0 < len(unweighted) < len(items):
        raise StyleError(f"style {shown(text)!r}: {', '.join(shown(n, 40) for n in unweighted)} has no "
                         f"weight; give every style of a blend a weight or none (equal weights); {example}")
    parts: dict[str, float] = {}
    for name, sep, weight in items:
        name = name.strip()
        if not name:  # "candy," or ",": not a second style named ""
            raise StyleError(f"style {shown(text)!r} has an empty style name; {example}")
        if name in parts:
            raise StyleError(f"style {shown(text)!r}: {shown(name, 40)} is named twice; {example}")
        try:
            parts[name] = float(weight) if sep else 1.0
        except ValueError:
            raise StyleError(f"style {shown(text)!r}: {shown(weight, 40)!r} is not a number; {example}") from None
        finite_float(parts[name], f"the weight of style '{shown(name, 60)}'", StyleError, low=0.0)
    return parts


def style_list(names: Sequence[Any], most: int = 20) -> str:
    """``names`` (from a model file or a user: outside text) for a message: each made printable
    and bounded by :func:`~fast_nst.core.untrusted.shown`, at most ``most`` of them."""
    listed = ", ".join(shown(n, 60) for n in list(names)[:most])
    return listed + (f" ... ({len(names)} in all)" if len(names) > most else "")


_INDEX_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def resolve_style(style: Any, names: Sequence[str]) -> torch.Tensor:
    """The style weight vector (S,) float32, summing to 1, for ``style`` (see :data:`StyleSpec`)
    among the model's ``names``; :class:`StyleError` naming the valid choices otherwise."""
    valid = f"this model's styles: {style_list(names)}"
    if isinstance(style, str) and style in names:  # a name with ',' or ':' is no blend
        return torch.eye(len(names))[list(names).index(style)]
    if isinstance(style, str) and style.strip().isdecimal() and style.strip() not in names:
        style = int(style)
    if isinstance(style, bool):
        raise StyleError(f"style {style!r} is not a style; {valid}")
    if isinstance(style, numbers.Integral):  # numpy's integers too
        style = int(style)
    elif torch.is_tensor(style) and style.ndim == 0 and style.dtype in _INDEX_DTYPES:
        style = int(style.item())  # a 0-d integer tensor is an index, not one weight
    if isinstance(style, int):
        if not 0 <= style < len(names):
            raise StyleError(f"style index {style} is out of range 0..{len(names) - 1}; {valid}")
        return torch.eye(len(names))[style]
    if isinstance(style, str):
        style = _blend_from_text(style)
    if isinstance(style, Mapping):
        unknown = [k for k in style if k not in names]
        if unknown:
            listed = ", ".join(f"'{shown(k, 40)}'" for k in unknown[:20])
            raise StyleError(f"unknown style {listed}; {valid}")
        w = torch.zeros(len(names))
        for name, weight in style.items():
            w[list(names).index(name)] = finite_float(weight, f"the weight of style '{shown(name, 60)}'",
                                                      StyleError, low=0.0)
    else:
        try:
            w = torch.as_tensor(style, dtype=torch.float32).flatten()
        except (TypeError, ValueError, RuntimeError):
            raise StyleError(f"style {str(style)[:60]!r} is not a name, an index, a mapping or "
                             f"{len(names)} weights; {valid}") from None
        if w.numel() != len(names):
            raise StyleError(f"style weights: {w.numel()} given, the model has {len(names)} styles "
                             f"({style_list(names)})")
    return torch.tensor(blend_weights(w.tolist()), dtype=torch.float32)


def style_label(weights: Union[torch.Tensor, Sequence[float]], names: Sequence[str]) -> str:
    """A short name for a blend's weights (normalised) of the styles ``names``: ``candy``, or
    ``candy70-mosaic30``, ``candy99.9-mosaic0.1`` (percent, see :func:`_percent`). Output files
    are named after it, so two blends whose weights differ by more than a millionth get two
    names: 0.999 and 0.996 both made ``candy100-mosaic0``, and the second run's files replaced
    the first's. At most :data:`~fast_nst.core.files.MAX_COMPONENT` characters, a longer one
    cut and ended with a hash of the whole (a cut alone would make two blends one name)."""
    values = weights.tolist() if torch.is_tensor(weights) else list(weights)
    used = [(n, float(v)) for n, v in zip(names, values) if v > 0]
    if len(used) == 1:
        return used[0][0]
    label = "-".join(f"{n}{_percent(v)}" for n, v in used)
    if len(label) <= MAX_COMPONENT:
        return label
    tag = hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{label[:MAX_COMPONENT - len(tag) - 1]}-{tag}"


def _percent(weight: float) -> str:
    """``weight`` (0..1) in percent with the fewest decimals, up to 4, that give it to within
    0.00005 %: 70, 99.9, 0.1, 33.3333 (float32's rounding of 0.7 still reads 70)."""
    p = 100 * weight
    decimals = next(d for d in range(5) if d == 4 or abs(round(p, d) - p) <= 5e-5)
    text = f"{p:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if decimals else text


@dataclass(frozen=True)
class MultiStyleArgs:
    """The Johnson network's arguments plus the number of styles (its norms' rows)."""

    num_styles: int = 2
    base_channels: int = 32  # as TransformNetArgs (Johnson et al.)
    num_residual: int = 5
    output_activation: str = "tanh"

    def __post_init__(self) -> None:
        n = self.num_styles
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_STYLES:
            raise ValueError(f"num_styles must be a whole number from 1 to {MAX_STYLES}, got {str(n)[:40]}")
        self.single()  # checks the other arguments (TransformNetArgs raises ValueError)
        if self.parameter_count() > MAX_PARAMETERS:
            raise ValueError(f"num_styles {n} makes {self.parameter_count():,} parameters, over the "
                             f"limit of {MAX_PARAMETERS:,}")

    def single(self) -> TransformNetArgs:
        """The arguments of the single-style network with the same convolutions."""
        return TransformNetArgs(self.base_channels, self.num_residual, self.output_activation)

    def parameter_count(self) -> int:
        single = self.single()
        return single.parameter_count() + 2 * single.norm_channels() * (self.num_styles - 1)

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose affine part is mixed from ``num_styles`` rows: for x (N, C, H, W) and
    style weights w (1 or N, S), ``norm(x) * (w @ weight) + (w @ bias)``, weight and bias (S, C)."""

    def __init__(self, channels: int, num_styles: int, eps: float = 1e-5):
        super().__init__()
        # Every style starts as the identity affine map, as nn.InstanceNorm2d(affine=True) does.
        self.weight = nn.Parameter(torch.ones(num_styles, channels))
        self.bias = nn.Parameter(torch.zeros(num_styles, channels))
        self.eps = eps  # nn.InstanceNorm2d's default, so for_style() is exact

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma = style @ self.weight.to(style.dtype)  # (1 or N, C)
        beta = style @ self.bias.to(style.dtype)
        if gamma.shape[0] == 1:
            # One style for the whole batch: the affine part inside the norm, one pass fewer over
            # x, and one InstanceNormalization node in an ONNX export (its int8 form runs the norm
            # in channel groups, see fast_nst.io.int8_graph).
            return F.instance_norm(x, weight=gamma[0].to(x.dtype), bias=beta[0].to(x.dtype), eps=self.eps)
        gamma, beta = gamma[:, :, None, None].to(x.dtype), beta[:, :, None, None].to(x.dtype)  # (N, C, 1, 1)
        return F.instance_norm(x, eps=self.eps) * gamma + beta

    def mixed(self, style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gamma, beta), each (C,), for one style vector (S,)."""
        return style @ self.weight, style @ self.bias


class _CondConv(nn.Module):
    """Reflection pad -> conv (no bias, the norm cancels it) -> conditional norm -> optional ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, num_styles: int, stride: int = 1,
                 relu: bool = True, upsample: bool = False):
        super().__init__()
        self.upsample = upsample  # nearest x2 first (the Johnson decoder's UpsampleConv)
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, bias=False)
        self.norm = ConditionalInstanceNorm(cout, num_styles)
        self.relu = relu

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        y = self.norm(self.conv(self.pad(x)), style)
        return F.relu(y) if self.relu else y


class _CondResidual(nn.Module):
    def __init__(self, channels: int, num_styles: int):
        super().__init__()
        self.first = _CondConv(channels, channels, 3, num_styles)
        self.second = _CondConv(channels, channels, 3, num_styles, relu=False)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return x + self.second(self.first(x, style), style)


class MultiStyleNet(StyleNetwork):
    """Maps a photo (N, 3, H, W) in [0, 1] and style weights (S,) or (N, S) to a stylization
    (N, 3, H, W) in (0, 1). Any H x W, as :class:`TransformNet`.

    ``style_names``: the styles' names, row order (stored in checkpoints beside the weights);
    ``thumbnails`` (S, 3, 64, 64) uint8: the style images, small, so a model file shows its styles.
    """

    model_type = "johnson_multi"
    Args = MultiStyleArgs
    bytes_per_pixel = TransformNet.bytes_per_pixel  # stylizing runs for_style()'s TransformNet
    THUMBNAIL = 64  # pixels per side of the stored style thumbnails

    def __init__(self, args: MultiStyleArgs = MultiStyleArgs()):
        super().__init__()
        self.args = args
        c, s = args.base_channels, args.num_styles
        self.downsampling = nn.ModuleList([_CondConv(3, c, 9, s), _CondConv(c, 2 * c, 3, s, stride=2),
                                           _CondConv(2 * c, 4 * c, 3, s, stride=2)])
        self.blocks = nn.ModuleList([_CondResidual(4 * c, s) for _ in range(args.num_residual)])
        self.upsampling = nn.ModuleList([_CondConv(4 * c, 2 * c, 3, s, upsample=True),
                                         _CondConv(2 * c, c, 3, s, upsample=True)])
        self.output_conv = ConvLayer(c, 3, 9, norm_act=False)
        self.register_buffer("thumbnails", torch.zeros(s, 3, self.THUMBNAIL, self.THUMBNAIL, dtype=torch.uint8))
        self.style_names: list[str] = [f"style{i}" for i in range(s)]
        self.tanh_output: bool = args.output_activation == "tanh"

    # TorchScript (the two-input export scripts body()) must not compile these; the style names
    # travel in the export's metadata.
    __jit_unused_properties__ = ["num_styles", "receptive_radius"]
    __jit_ignored_attributes__ = ["style_names"]

    @property
    def num_styles(self) -> int:
        return self.args.num_styles

    @property
    def receptive_radius(self) -> int:
        return self.radius_of(self.args)

    @classmethod
    def radius_of(cls, args: MultiStyleArgs) -> int:
        return TransformNet.radius_of(args)  # the same layout and formula

    def set_thumbnails(self, names: Sequence[str], images: Sequence[torch.Tensor]) -> None:
        """Store each style image (1, 3, h, w) in [0, 1] as the thumbnail of the style ``name``."""
        with torch.no_grad():
            for name, image in zip(names, images, strict=True):
                small = F.interpolate(image.float(), size=(self.THUMBNAIL, self.THUMBNAIL), mode="bilinear",
                                      antialias=True, align_corners=False)  # (1, 3, 64, 64)
                row = self.style_names.index(name)
                self.thumbnails[row] = (small[0].clamp(0, 1) * 255).round().to(torch.uint8)

    def norm_parameters(self) -> Iterator[nn.Parameter]:
        """The per-style (S, C) scales and shifts: what adding a style trains."""
        for m in self.modules():
            if isinstance(m, ConditionalInstanceNorm):
                yield from (m.weight, m.bias)

    def style_vector(self, style: torch.Tensor, batch: int) -> torch.Tensor:
        """``style`` (S,) or (N, S) -> (1 or N, S) float32 on this network's device."""
        w = style.to(self.output_conv.conv.weight.device, torch.float32)
        w = w.unsqueeze(0) if w.dim() == 1 else w
        if w.dim() != 2 or w.shape[1] != self.num_styles or w.shape[0] not in (1, batch):
            raise ValueError(f"style weights must be ({self.num_styles},) or (N, {self.num_styles}), "
                             f"got {tuple(style.shape)}")
        return w

    @torch.jit.unused  # the two-input export scripts body() only
    def forward(self, x: torch.Tensor, style: Optional[torch.Tensor] = None) -> torch.Tensor:
        check_images(x)
        if style is None:
            raise ValueError(f"a {self.num_styles}-style network needs style weights: "
                             "forward(x, style) with style of shape (S,) or (N, S)")
        w = self.style_vector(style, x.shape[0])
        h, wd = x.shape[-2:]
        y = self.body(pad_input(x), w)
        return y[..., :h, :wd]

    def body(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The layers on an already padded input (N, 3, H, W), to the output in (0, 1)."""
        for layer in self.downsampling:
            x = layer(x, w)
        for block in self.blocks:
            x = block(x, w)
        for layer in self.upsampling:
            x = layer(x, w)
        return output_mapping(self.output_conv(x), self.tanh_output)

    # -- the single-style network of one style vector ----------------------------------------

    def for_style(self, style: torch.Tensor) -> TransformNet:
        """The :class:`TransformNet` that computes ``forward(x, style)`` for one ``style`` (S,):
        the same convolutions, each norm's (gamma, beta) mixed by ``style``."""
        w = self.style_vector(style, 1)[0].detach()
        net = TransformNet(self.args.single()).to(w.device)
        single = [(l.conv, l.norm) for l in net.downsampling]
        single += [pair for b in net.blocks for pair in ((b.first.conv, b.first.norm), (b.conv2, b.norm2))]
        single += [(l.conv_layer.conv, l.conv_layer.norm) for l in net.upsampling]
        mine = list(self.downsampling) + [l for b in self.blocks for l in (b.first, b.second)] + list(self.upsampling)
        with torch.no_grad():
            for (conv, norm), layer in zip(single, mine, strict=True):
                conv.weight.copy_(layer.conv.weight)
                gamma, beta = layer.norm.mixed(w)
                norm.weight.copy_(gamma)
                norm.bias.copy_(beta)
            net.output_conv.load_state_dict(self.output_conv.state_dict())
        return net.eval() if not self.training else net

    def exportable(self) -> nn.Module:
        return ExportableMultiStyleNet(self)

    def shared_norm_statistics(self):
        raise NotImplementedError("tile with for_style(w), the single-style network of one style")

    # -- adding styles -----------------------------------------------------------------------

    def with_styles(self, names: Sequence[str]) -> "MultiStyleNet":
        """A copy with the styles ``names`` appended (those not already here); each new style
        starts from the mean (gamma, beta) of the existing ones, an average style."""
        new = [n for n in names if n not in self.style_names]
        bigger = MultiStyleNet(MultiStyleArgs(self.num_styles + len(new), self.args.base_channels,
                                              self.args.num_residual, self.args.output_activation))
        bigger.to(self.thumbnails.device)
        state = {}
        for key, value in self.state_dict().items():
            if key == "thumbnails" or (key.endswith((".norm.weight", ".norm.bias")) and value.dim() == 2):
                extra = (torch.zeros_like(value[:1]) if key == "thumbnails"
                         else value.mean(dim=0, keepdim=True)).expand(len(new), *value.shape[1:])
                value = torch.cat([value, extra])
            state[key] = value
        bigger.load_state_dict(state)
        bigger.style_names = list(self.style_names) + new
        return bigger


class _CondPhaseUpsample(PhaseUpsampleConv):
    """A :class:`_CondConv` with ``upsample=True`` in the phase form of
    :class:`~fast_nst.nets.exportable.PhaseUpsampleConv`: its norm is the conditional one."""

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.relu(self.norm(self.upsampled(x), style))


class ExportableMultiStyleNet(nn.Module):
    """``forward(x, style)`` for graph exporters: x (N, 3, H, W) in [0, 1] with dynamic sizes, style
    (S,) weights (normalised by the caller); padding and crop as index gathers and the decoder in
    the fast form, as :class:`~fast_nst.nets.exportable.ExportableTransformNet` (the same function
    to float rounding)."""

    def __init__(self, net: MultiStyleNet):
        super().__init__()
        self.downsampling = net.downsampling
        self.blocks = net.blocks
        self.upsampling = nn.ModuleList([_CondPhaseUpsample(layer.conv, layer.norm) for layer in net.upsampling])
        self.output_conv = StridedOutputConv(net.output_conv)
        self.tanh_output: bool = net.tanh_output

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        rows, cols, keep_h, keep_w = pad_and_crop_indices(x)
        x = x.index_select(2, rows).index_select(3, cols)
        w = style.reshape(1, -1).to(x.dtype)
        for layer in self.downsampling:
            x = layer(x, w)
        for block in self.blocks:
            x = block(x, w)
        for up in self.upsampling:
            x = up(x, w)
        y = output_mapping(self.output_conv(x), self.tanh_output)
        return y.index_select(2, keep_h).index_select(3, keep_w)
