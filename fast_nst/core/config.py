"""Training configuration: defaults in code -> YAML file (optionally with a base file) -> ``--set``.

A config is a frozen :class:`TrainConfig`. Every key a YAML file or an override names is checked
against the dataclass: unknown keys, wrong types and bad values raise :class:`ConfigError` with the
key and the file in the message.

This module knows the schema, not the tables of networks: choices that live in a registry
(``model_type``, ``loss_model`` and its layer names) are checked by functions the caller passes
as ``checks`` (see :data:`fast_nst.nets.check_config`, :data:`fast_nst.lossnet.check_config`),
which blame the file that set the key the same way.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import os
import types
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

import yaml

# Re-exported: the limits and the device names are part of the config's interface.
from .config_checks import DEVICE_CHOICES, MAX_NAMING_BYTES, MIN_IMAGE_SIZE, ConfigCheck, is_device_name, validate
from .errors import ConfigError, quote
from .files import atomic_write
from .untrusted.structured import MAX_YAML_BYTES, UnparsableYAML, load_yaml, read_text_file
from .untrusted.text import shown

__all__ = ["TrainConfig", "ConfigCheck", "load_config", "config_from_dict", "build_config",
           "save_config", "parse_override", "is_device_name", "MIN_IMAGE_SIZE", "MAX_NAMING_BYTES", "DEVICE_CHOICES"]

BASE_KEY = "base"  # a YAML file may name another YAML file (relative to itself) to start from
# Keys that hold paths (or lists of them): a leading ~ is the home folder, in a file as in a shell.
PATH_KEYS = ("style_image", "style_images", "style_dir", "train_dir", "model_path", "init_from", "loss_model_file",
             "sample_images", "val_dir")
# Files in a chain of base: files; each is read by a recursive call.
MAX_BASE_DEPTH = 16


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; saved into the run directory and every checkpoint."""

    # Run name: the run directory is <model_path>/<naming>/ and the model <naming>.pth.
    # Defaults to the config file's stem when the file does not set it.
    naming: str = ""
    # Style image: a local path or an https URL (downloaded once into data/styles/).
    style_image: str = ""
    # Several styles for one network (model_type johnson_multi, conditional instance norm,
    # Dumoulin et al. 2017), instead of style_image: paths or https URLs. Each is named after its
    # file (candy.jpg -> candy); each training step trains one of them, in turn.
    style_images: tuple[str, ...] = ()
    # One multiplier of style_weight per style_images entry (empty: all 1), so each style can
    # keep the weight tuned for it alone.
    style_weights: tuple[float, ...] = ()
    # A folder of paintings (flat or nested) for an arbitrary-style network (model_type adain,
    # Huang & Belongie 2017) instead of style_image: each step pairs a batch of photos with a
    # batch of painting crops. Huang & Belongie trained on WikiArt (~80,000 paintings).
    style_dir: str = ""
    # Arbitrary-style networks: the style loss's weight rises linearly from 0 to style_weight
    # over the first this many steps, so the decoder first learns to invert the encoder (the
    # content loss alone) and then to stylize. 0 (off) is Huang & Belongie's recipe (160k
    # steps). In short runs against a stand-in VGG16 the full weight from step 1 gave every photo
    # one texture and reconstructed none; 1,500 warm-up steps of 8,000 (128 px) kept the photos
    # and learned the styles (docs/arbitrary.md).
    style_warmup_steps: int = 0
    # Longest side of the style image in pixels; None keeps its size. 256 is
    # jcjohnson/fast-neural-style's default -style_image_size, matched to 256 px training crops.
    style_size: Optional[int] = 256
    # Folder of training photos (flat like COCO train2014, or nested).
    train_dir: str = "data/train2014"
    model_path: str = "models"
    # 256 x 256 training crops, as in Johnson et al. (2016) and pytorch/examples.
    image_size: int = 256
    # The shorter side training photos and paintings are resized to before the random
    # image_size crop; None: image_size itself (Johnson et al.: the crop spans the shorter side).
    # Huang & Belongie (2017) train AdaIN on 256 crops of images resized to 512 (resize_to: 512).
    resize_to: Optional[int] = None
    # Batch 4 for 2 epochs over COCO train2014 (~40k steps): Johnson et al. (2016), Sec. 4.1.
    batch_size: int = 4
    epochs: int = 2
    # If set, train exactly this many steps (overrides epochs).
    max_steps: Optional[int] = None
    # Adam. Johnson et al. (2016) and pytorch/examples use 1e-3; trained against real ImageNet
    # features (a stand-in VGG16, mosaic, 128 px, 300 steps) 1e-3 drove dark regions of the output
    # deep into the flat part of the tanh output mapping (pre-tanh values of -20 to -32, ~4 % of
    # pixels beyond |3|), where their gradient vanishes: solid black blots that never recover.
    # 3e-4 showed none, there and in the runs that tuned every style of conf/.
    lr: float = 3e-4
    # Save and ship an exponential moving average of the weights (fast_nst.training.average)
    # instead of the last step's; training continues from the raw weights. 0.99 averages about
    # the last 100 steps (the last ~11 % of a run's steps before step ~900). Measured (docs/video.md,
    # default network on mosaic fine-tuned 600 steps at 256 px, stand-in VGG16): 6.8 % lower
    # content and 4.0 % lower style loss than the same run's last weights (means of three
    # checkpoints), and checkpoints 100 steps apart within 5 % of each other in both losses where
    # the raw weights' differed by up to 26 %. 0: off (the last step's weights, as the papers and
    # other tools ship).
    ema_decay: float = 0.99
    # pytorch/examples trains with content 1e5 / style 1e10 on inputs normalised exactly as ours
    # (pixels /255, ImageNet mean/std) with the same C*H*W Gram normalisation and MSE losses.
    # Adam is invariant to the scale of the whole loss, so only the ratio (1e5) matters; we divide
    # both by 1e5 to keep the reported losses near 1.
    content_weight: float = 1.0
    style_weight: float = 1e5
    # Johnson et al. use 1e-6 on a summed squared-difference TV of 0-255 pixels. Our TV is the
    # mean squared neighbour difference of [0, 1] pixels, so at 256 x 256 x 3 their term is
    # 255^2 * 196608 * 1e-6 ~= 1.3e4 x ours, against a content term roughly 58^2 ~= 3.4e3 x ours
    # (their Caffe VGG sees 0-255 pixels, ours pixels / (255 * 0.226)): ~4 relative to content 1.
    # We use 1 because the upsample-conv decoder has no checkerboard artifacts for TV to fight.
    tv_weight: float = 1.0
    # Stability training (fast_nst.training.stability): the weight of the mean squared difference
    # between a stylization moved by a small random motion and the stylization of the moved photo
    # (pixels in [0, 1]). 0 (off) keeps the original method. Fine-tuning a trained mosaic model
    # 600 steps (docs/video.md): johnson_slim at 6000 gave 2.1x lower warping error at +7 % style
    # loss, 10000 2.4x at +19 %; the default johnson network (with ema_decay 0.99) at 1250 2.0x
    # at +9.7 % style and -1.6 % content, 2000 2.4x at +13 %. Start near 6000 (slim) or 1250-1500
    # (default) and compare checkpoints with python -m fast_nst.evaluate --stability. adain
    # networks take it too (not tuned for them yet).
    stability_weight: float = 0.0
    # relu2_2 for content and relu1_2, relu2_2, relu3_3, relu4_3 for style: Johnson et al. (2016).
    content_layers: tuple[str, ...] = ("relu2_2",)
    style_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    # One weight per style layer (multiplies that layer's Gram loss); None means all 1.
    style_layer_weights: Optional[tuple[float, ...]] = None
    # Transform network: a name in fast_nst.nets.NETWORKS, and its arguments (empty: the
    # network's defaults, e.g. {base_channels: 16, num_residual: 3} for a slimmer Johnson net).
    model_type: str = "johnson"
    model_args: Mapping[str, Any] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))
    # Start from a trained model instead of random weights (train.py --init_from sets it): a
    # one-style model of the very network model_type and model_args build (fine-tuning it, e.g.
    # for stability_weight, in a new run from step 0 with a fresh optimizer), or a multi-style
    # model whose styles are kept and the styles of style_images it lacks appended.
    init_from: str = ""
    # "convolutions": train only the per-style norm parameters of the styles in style_images (the
    # shared convolutions stay as init_from has them): adding a style to a trained network.
    freeze: Literal["none", "convolutions"] = "none"
    # Loss network: a name in fast_nst.lossnet.LOSS_NETWORKS: vgg16, vgg19 (torchvision's ImageNet
    # weights, the loss scale every weight below is for) or vgg16_caffe, vgg19_caffe (Johnson et
    # al.'s Caffe files: features ~57.6x larger, so weights from fast_nst.lossnet.convert_weights).
    loss_model: str = "vgg16"
    # The input convention content_weight, style_weight and tv_weight are given for: "caffe",
    # "torchvision", or empty for loss_model's own. When it differs from loss_model's, training
    # converts them (fast_nst.lossnet.convert_weights), so weights tuned against vgg16_caffe
    # (the styles in conf/) also train against torchvision's vgg16 with --set loss_model=vgg16.
    loss_weights_for: str = ""
    # Its weights file; empty means the loss network's default path (pretrained/vgg16-397923af.pth
    # for vgg16), downloaded there when absent.
    loss_model_file: str = ""
    # "imagenet" (real style transfer) or "random" (seeded random weights: tests and smoke runs).
    loss_model_weights: Literal["imagenet", "random"] = "imagenet"
    # Training arithmetic. bf16 autocast (GPUs from Ampere on, CPUs with AMX) runs the convolutions
    # in bfloat16; Gram matrices and loss reductions always stay float32. fp16 adds a GradScaler
    # (GPUs: on a CPU it trains ~80x slower, core.device.slow_training_note). fp32 is the default
    # because it is the reference the other two are checked against.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # torch.compile the transform net and the loss (compile time is paid once per run).
    compile: bool = False
    # channels_last memory format for images and both networks (off: on this project's CPU it
    # measured slower, see docs/benchmarks.md).
    channels_last: bool = False
    # pytorch/examples' default seed.
    seed: int = 42
    device: str = "auto"
    # 4 loader processes decode 256 px JPEGs faster than a GPU step of batch 4 needs them
    # (~200 img/s each with draft-mode decoding); capped at the CPU cores this process may use.
    num_workers: int = 4
    # Log scalars every 50 steps: often enough for smooth curves, rare enough to cost nothing.
    log_every: int = 50
    # Stylized sample photos in TensorBoard every 500 steps (pytorch/examples logs every 500).
    image_log_every: int = 500
    # pytorch/examples' checkpoint interval.
    checkpoint_every: int = 2000
    # Training checkpoints kept on disk (older ones are deleted); 3 survives a bad last write.
    keep_checkpoints: int = 3
    # "safetensors": the final model is also written as <naming>.safetensors (weights without
    # code, for sharing: docs/export.md); the .pth stays, for --resume and init_from. "pth" (the
    # default, as before the option existed): the .pth only.
    final_format: Literal["pth", "safetensors"] = "pth"
    # Photos stylized for TensorBoard; empty picks num_samples fixed photos from val_dir if set,
    # else from train_dir.
    sample_images: tuple[str, ...] = ()
    num_samples: int = 4
    # Held-out photos for validation (empty: none); COCO's val2014 with
    # python -m fast_nst.download coco --split val. Every val_every steps the losses of
    # val_images fixed photos (centre crops) are logged as val/... and their stylizations shown.
    # 500 steps and 16 photos: as often as the sample images, and enough photos that the mean
    # loss moves by less than the training curve's noise (~2 % step to step at batch 4).
    val_dir: str = ""
    val_every: int = 500
    val_images: int = 16

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples) for YAML and checkpoints."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    def total_weight_for(self, layer: str) -> float:
        """Weight of ``layer``'s Gram loss: style_weight times its per-layer weight."""
        if self.style_layer_weights is None:
            return self.style_weight
        return self.style_weight * self.style_layer_weights[self.style_layers.index(layer)]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return f"{_type_name(args[0])} or null"
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is collections.abc.Mapping:
        return "a mapping of name: value"
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any, where: str, shown: Any = None) -> Any:
    """Check ``value`` against annotation ``tp``; return it in the dataclass's representation.
    ``shown`` is the annotation named in the error (the Optional around ``tp``, say)."""

    def bad() -> ConfigError:
        # naming: 2020 (an int), naming: yes (a bool), naming: 2020-01-01 (a date) in YAML 1.1
        hint = ("; put it in quotes to give it as text" if tp is str and value is not None
                and not isinstance(value, (str, list, tuple, dict)) else "")
        return ConfigError(f"{where}: key '{key}' must be {_type_name(shown or tp)}, "
                           f"got {quote(value)} ({type(value).__name__}){hint}")

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)][0]
        return _coerce(key, value, inner, where, shown=tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad()
        return value
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if isinstance(value, str):
            # One item: a file lists in brackets or lines, so a path's comma is the path's. (--set
            # splits plain text at commas itself: parse_override.)
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad()
        return tuple(_coerce(f"{key}[{i}]", v, item_tp, where) for i, v in enumerate(value))
    if origin is collections.abc.Mapping:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise bad()
        return _coerce_mapping(key, value, where)
    return _coerce_scalar(key, value, tp, where, bad)


def _coerce_scalar(key: str, value: Any, tp: Any, where: str, bad: Callable[[], ConfigError]) -> Any:
    """``value`` as the bool, int, float or str ``tp``; ``bad()`` is the error to raise otherwise."""
    if tp in (bool, str):
        if not isinstance(value, tp):
            raise bad()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        _check_int64(key, value, where)
        return value
    if tp is float:
        # YAML 1.1 reads "1e5" (no dot) as a string; accept it since everyone writes weights so.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        try:
            return float(value)
        except OverflowError:  # an int past float's range (10**400): its range check then says why
            return float("inf") if value > 0 else float("-inf")
    raise AssertionError(f"unsupported config annotation {tp!r} for {key}")


def _coerce_mapping(key: str, value: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """A flat mapping of names to scalars (model_args), read-only; checked for content by its consumer."""
    for k, v in value.items():
        if not isinstance(v, (bool, int, float, str)) and v is not None:
            raise ConfigError(f"{where}: key '{key}.{shown(k, 40)}' must be a number, string or boolean, "
                              f"got {type(v).__name__}")
        if isinstance(v, int) and not isinstance(v, bool):
            _check_int64(f"{key}.{shown(k, 40)}", v, where)
    return types.MappingProxyType(dict(value))


def _check_int64(key: str, value: int, where: str) -> None:
    """Every whole number of a config is a count, a size or a seed: torch and the checkpoints
    take 64 bits. Beyond, messages would print it (str() of over 4300 digits raises)."""
    if not -2 ** 63 <= value < 2 ** 63:
        got = value if value.bit_length() <= 256 else f"an integer of {value.bit_length():,} bits"
        raise ConfigError(f"{where}: key '{key}' must be a whole number from -2**63 to 2**63 - 1, got {got}")


_HINTS = typing.get_type_hints(TrainConfig)
_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def _check_key(key: str, where: str) -> None:
    if key not in _FIELDS:
        # LR, Style_Image: difflib's ratio counts case, so the lower-case spelling is asked too.
        close = [key.lower()] if key.lower() in _FIELDS else difflib.get_close_matches(key, sorted(_FIELDS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{where}: unknown key '{shown(key, 60)}'{hint} Valid keys: {', '.join(sorted(_FIELDS))}")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, tuple[Any, str]]:
    """Read a YAML config (following ``base:``) into {key: (value, file it came from)}."""
    path = Path(path)
    if len(seen) >= MAX_BASE_DEPTH:
        raise ConfigError(f"{path}: '{BASE_KEY}' files nest more than {MAX_BASE_DEPTH} deep (from {seen[0]}); "
                          "a config needs one or two.")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: '{BASE_KEY}' files form a cycle: {' -> '.join(map(str, seen))}")
    if not path.is_file():
        named_by = f" (named by '{BASE_KEY}:' in {seen[-1]})" if seen else ""
        raise ConfigError(f"Config file not found: {path}{named_by}")
    data = load_yaml(read_text_file(path, "a config file", ConfigError, MAX_YAML_BYTES), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of key: value, got {type(data).__name__}")
    out: dict[str, tuple[Any, str]] = {}
    base = data.pop(BASE_KEY, None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{path}: key '{BASE_KEY}' must be a file path, got {quote(base)}")
        out.update(_read_yaml(path.parent / _home(base), seen + (path.resolve(),)))
    for key, value in data.items():
        _check_key(str(key), str(path))
        out[str(key)] = (value, str(path))
    return out


def _text_openers(key: str) -> Optional[tuple[str, ...]]:
    """For a key of text (a name, a path, a choice) or of a list of texts: the first characters
    that make a ``--set`` value YAML (quotes; for a list also its bracket); None for other keys."""
    tp = _HINTS.get(key)
    is_list = typing.get_origin(tp) is tuple
    if is_list:
        tp = typing.get_args(tp)[0]
    if tp is str or (typing.get_origin(tp) is Literal and all(isinstance(a, str) for a in typing.get_args(tp))):
        return ("'", '"', "[") if is_list else ("'", '"')
    return None


def _is_list_key(key: str) -> bool:
    tp = _HINTS.get(key)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # style_layer_weights: a list or null
        tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
    return typing.get_origin(tp) is tuple


def _what_it_takes(key: str) -> Optional[str]:
    """What a key needs after ``--set KEY=``; None for keys that take nothing ('' text, [] list)."""
    tp, null = _HINTS.get(key), ""
    if tp is None or _is_list_key(key):
        return None
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp, null = [a for a in typing.get_args(tp) if a is not type(None)][0], " (or null)"
    if typing.get_origin(tp) is Literal:
        return f"one of {', '.join(typing.get_args(tp))}{null}"
    if typing.get_origin(tp) is collections.abc.Mapping:
        return "a mapping such as {base_channels: 16} ({} for none)"
    if tp is str:
        return None
    return {int: "a whole number", float: "a number", bool: "true or false"}.get(tp, "a value") + null


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE`` from ``--set``. VALUE is read as YAML (so 3, 1e-3, [a, b], null work),
    except for a key of text (naming, paths, choices; lists of them unless given in brackets):
    there it is the text as typed, as a shell gives it, unless quoted in YAML ('...' or "...").
    A list given as plain text is split at its commas (``style_layers=relu1_2,relu3_3``); an
    empty VALUE is '' for text, [] for a list, and an error for other keys."""
    if "=" not in text:
        raise ConfigError(f"--set {quote(text)}: expected KEY=VALUE, e.g. --set max_steps=100")
    key, raw = text.split("=", 1)
    key, raw = key.strip(), raw.strip()
    what = _what_it_takes(key)
    if not raw and what is not None:  # YAML would read '' as the text '': "must be float, got ''"
        raise ConfigError(f"--set {shown(text, 120)}: {shown(key, 40)} needs {what} after '='")
    # YAML would read 'naming=2020' as an int, 'naming=yes' as true, 'naming=2020-01-01' as a date,
    # and cut 'style_image=my #1.jpg' at its comment to 'my', silently.
    openers = _text_openers(key)
    if openers is not None and not raw.startswith(openers):
        value: Any = raw
    else:
        try:
            value = load_yaml(raw, f"--set {shown(key, 40)}") if raw else ""
        except UnparsableYAML:
            if openers is not None and raw.startswith("["):  # a list that is not one: its error, not one odd path
                raise
            value = raw  # not YAML: the text itself (--set naming='a:b), checked as such
    if _is_list_key(key) and isinstance(value, str) and not raw.startswith(("'", '"')):
        # A shell's word: "a.jpg,b.jpg" (a YAML-quoted text stays one item, as in a file).
        value = [v.strip() for v in value.split(",") if v.strip()]
    return key, value


def build_config(values: dict[str, tuple[Any, str]], where: str = "defaults",
                 checks: Sequence[ConfigCheck] = ()) -> TrainConfig:
    """Make a validated config from {key: (value, where it came from)}; ``where`` names the
    source blamed for keys none of them set; ``checks`` see :data:`ConfigCheck`."""
    kwargs = {}
    for key, (value, source) in values.items():
        _check_key(key, source)
        kwargs[key] = _coerce(key, value, _HINTS[key], source)
    for key in set(PATH_KEYS) & kwargs.keys():
        kwargs[key] = tuple(map(_home, kwargs[key])) if isinstance(kwargs[key], tuple) else _home(kwargs[key])
    cfg = TrainConfig(**kwargs)
    validate(cfg, {k: w for k, (_, w) in values.items()}, where, checks)
    return cfg


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = (),
                checks: Sequence[ConfigCheck] = ()) -> TrainConfig:
    """Load ``path`` (YAML), apply ``--set KEY=VALUE`` overrides and validate (with ``checks``,
    see :data:`ConfigCheck`; :func:`fast_nst.load_config` passes the registries' checks).

    ``naming`` defaults to the file's stem.
    """
    # A lone string would be read one character at a time ("--set 'b': expected KEY=VALUE").
    texts = list(overrides) if isinstance(overrides, collections.abc.Iterable) and \
        not isinstance(overrides, (str, bytes)) else None
    if texts is None or not all(isinstance(t, str) for t in texts):
        raise ConfigError(f"overrides: expected a list of KEY=VALUE strings, e.g. ['max_steps=100'], "
                          f"not {shown(repr(overrides), 80)}")
    values: dict[str, tuple[Any, str]] = {}
    if path is not None:
        path = _home(str(path))
        values = _read_yaml(Path(path))
        if "naming" in values and values["naming"][1] != str(Path(path)):
            # A base file's naming is not this run's: candy_strong.yml with base: candy.yml must
            # not write into (or be refused by) models/candy.
            del values["naming"]
        values.setdefault("naming", (Path(path).stem, str(path)))
    for text in texts:
        key, value = parse_override(text)
        where = f"--set {shown(text, 120)}"  # every message names it: one printable line
        _check_key(key, where)
        values[key] = (value, where)
    _fit_style_weights(values)
    return build_config(values, str(path) if path is not None else "--set", checks)


def _home(path: str) -> str:
    """``path`` with a leading ``~`` or ``~/`` made the home folder, as a shell would (it never sees a
    file's paths); else as it is. ``~user`` stays: no user lookups for text a model file may hold."""
    home = path == "~" or path.startswith(tuple("~" + sep for sep in (os.sep, os.altsep) if sep))
    return os.path.expanduser(path) if home else path


def _fit_style_weights(values: dict[str, tuple[Any, str]]) -> None:
    """``--set style_images=[...]`` with another number of styles than the file's: the file's
    style_weights were tuned for its own styles and fit these no more, so every style gets weight
    1 (style_weight alone), said in a warning. The same number keeps them (the same paintings from
    elsewhere, e.g. local copies); a --set style_weights is the user's and is checked as given."""
    images, weights = values.get("style_images"), values.get("style_weights")
    if not (images and weights) or not images[1].startswith("--set") or weights[1].startswith("--set"):
        return
    if not (isinstance(images[0], list) and isinstance(weights[0], list)) or len(images[0]) == len(weights[0]):
        return
    del values["style_weights"]
    warnings.warn(f"--set style_images gives {len(images[0])} styles; the {len(weights[0])} style_weights of "
                  f"{weights[1]} were for its own styles, so every style gets weight 1 (style_weight "
                  "alone). To weight them: --set 'style_weights=[w1, w2, ...]' (quoted for the shell), "
                  "one per style.")


def config_from_dict(data: dict[str, Any], where: str, checks: Sequence[ConfigCheck] = ()) -> TrainConfig:
    """Rebuild a config saved by :meth:`TrainConfig.to_dict` (e.g. from a checkpoint)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: config must be a mapping, got {type(data).__name__}")
    return build_config({str(k): (v, where) for k, v in data.items()}, where, checks)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with :func:`load_config`)."""
    with atomic_write(path) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
