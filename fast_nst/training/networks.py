"""The network a training config builds, and how another network differs from it: its
arguments (with a multi-style network's number of styles, an arbitrary-style network's encoder),
the loss network's layers a run needs and the styles it learns. init_from and --resume compare
their network with :func:`network_difference`, so that both say the same.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from .. import nets
from ..core.config import TrainConfig
from ..core.errors import ConfigError
from ..core.untrusted.downloads import style_name
from ..core.untrusted.text import shown
from ..lossnet import get_loss_network, layer_names
from ..nets.base import StyleNetwork

__all__ = ["build_network", "check_network_args", "encoder_layers", "network_args", "network_difference",
           "repeated_style_names", "style_layers_past_encoder", "style_sources"]


def _takes_style_image(cfg: TrainConfig) -> bool:
    return nets.takes_style_image(cfg.model_type)


def network_args(cfg: TrainConfig, encoder_sha256: str = "") -> dict:
    """The network's arguments: ``cfg.model_args``, and for a multi-style network one style per
    ``style_images`` entry; an arbitrary-style network's encoder is the loss network
    (``loss_model``, ``loss_model_file``, ``loss_model_weights``, seeded by ``seed``)."""
    args = dict(cfg.model_args)
    if nets.NETWORKS[cfg.model_type].many_styles:
        args["num_styles"] = len(cfg.style_images)
    if _takes_style_image(cfg):
        args.update(encoder=cfg.loss_model, encoder_file=cfg.loss_model_file, encoder_seed=cfg.seed,
                    encoder_weights=cfg.loss_model_weights, encoder_sha256=encoder_sha256)
    return args


def build_network(cfg: TrainConfig) -> StyleNetwork:
    """A new network of ``cfg.model_type`` with :func:`network_args`; ConfigError for bad arguments."""
    try:
        return nets.build_network(cfg.model_type, network_args(cfg))
    except ValueError as e:
        raise ConfigError(f"config: key 'model_args' {e}") from None


def check_network_args(cfg: TrainConfig) -> None:
    """ConfigError unless the network's arguments are in bounds (an arbitrary-style network is
    checked without building it: that loads its encoder). The config loader checked them too,
    naming the file (:func:`fast_nst.training.config.check_model_args`); here for a config
    built another way."""
    if not _takes_style_image(cfg):
        build_network(cfg)  # built again, seeded, by the trainer
        return
    try:
        args = nets.make_args(cfg.model_type, network_args(cfg))
    except ValueError as e:
        raise ConfigError(f"config: key 'model_args' {e}") from None
    problem = style_layers_past_encoder(cfg, args)
    if problem:
        raise ConfigError(f"config: key 'style_layers' {problem}")


def style_layers_past_encoder(cfg: TrainConfig, args: Any) -> str:
    """For an arbitrary-style network of arguments ``args``: why its ``style_layers`` do not fit
    its encoder (a style layer past ``encoder_layer``: the encoder does not compute it), or ''.
    The layers' names must be the loss network's (:func:`fast_nst.lossnet.check_config`)."""
    names = layer_names(get_loss_network(cfg.loss_model).arch)
    deeper = [n for n in cfg.style_layers if names.index(n) > names.index(args.encoder_layer)]
    if not deeper:
        return ""
    return (f"names {', '.join(deeper)}, deeper than the encoder's last layer {args.encoder_layer} (model_args "
            f"encoder_layer); Huang & Belongie match {', '.join(args.encoder_layers())}")


def encoder_layers(cfg: TrainConfig) -> list[str]:
    """The loss network's layers a run needs: the content and style layers, or for an
    arbitrary-style network its encoder's (which is the loss network) and the style layers."""
    if _takes_style_image(cfg):
        encoder = nets.make_args(cfg.model_type, network_args(cfg)).encoder_layers()
        return list(dict.fromkeys(encoder + list(cfg.style_layers)))
    return list(dict.fromkeys(cfg.content_layers + cfg.style_layers))


def style_sources(cfg: TrainConfig) -> list[tuple[str, str]]:
    """(name, path or URL) of each style the config trains; ConfigError for two of one name."""
    if not cfg.style_images:
        return [(cfg.naming, cfg.style_image)]
    problem = repeated_style_names(cfg)
    if problem:  # the loader checked it too, naming the file (fast_nst.training.config.check_style_names)
        raise ConfigError(f"config: key 'style_images' {problem}")
    return [(style_name(src), src) for src in cfg.style_images]


def repeated_style_names(cfg: TrainConfig) -> str:
    """Why ``style_images`` cannot name each style apart (two files of one stem, so one style
    name: a multi-style network keeps its styles by name), or ''."""
    first: dict[str, str] = {}
    for src in cfg.style_images:
        name = style_name(src)
        if name in first:
            return (f"names the style {name} more than once ({shown(first[name], 80)} and {shown(src, 80)}; a "
                    "style is named after its file); rename the files or drop the repeats")
        first[name] = src
    return ""


# Arguments network_difference leaves out: a multi-style network's number of styles (its styles
# are compared by name) and what an arbitrary-style network's encoder is (_arbitrary_checks).
_NOT_COMPARED = ("num_styles", "encoder", "encoder_layer", "encoder_file", "encoder_weights", "encoder_seed",
                 "encoder_sha256")


def network_difference(cfg: TrainConfig, model_type: str, args: Any) -> Optional[tuple[str, str]]:
    """None when a network of ``model_type`` with arguments ``args`` (its ``Args``) is the one the
    config trains, else how it differs (", the config trains model_type X", or " with
    base_channels 8 (the config: 4)") and the settings that train it ("model_type: johnson_slim
    and no model_args"). Used by init_from and --resume, so both say the same."""
    try:
        cls, want = nets.network_class(cfg.model_type), nets.make_args(cfg.model_type, network_args(cfg))
    except ValueError as e:
        raise ConfigError(f"config: key 'model_args' {e}") from None
    if nets.network_class(model_type) is not cls:
        return f", the config trains model_type {cfg.model_type}", f"model_type: {model_type}"
    theirs, ours = dataclasses.asdict(args), dataclasses.asdict(want)
    keys = [k for k in ours if k not in _NOT_COMPARED]
    differ = ", ".join(f"{k} {theirs[k]!r} (the config: {ours[k]!r})" for k in keys if theirs[k] != ours[k])
    if not differ:
        return None
    # The registry's name for these arguments (a preset such as johnson_slim), else the
    # arguments that differ from the class's defaults.
    preset = next((name for name in nets.NETWORKS if nets.network_class(name) is cls and all(
        theirs[k] == getattr(nets.make_args(name, {}), k) for k in keys)), None)
    defaults = dataclasses.asdict(nets.make_args(model_type, {}))
    settings = (f"model_type: {preset} and no model_args" if preset else f"model_type: {model_type} and "
                f"model_args: {({k: theirs[k] for k in keys if theirs[k] != defaults[k]})}")
    return f" with {differ}", settings
