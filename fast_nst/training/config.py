"""A training config checked against the registries: ``model_type`` names a network whose
arguments (``model_args``) are in its bounds, ``loss_model`` a loss network, and the content and
style layers exist in it. Errors name the key and the file (or ``--set``) that set it, like the
schema's own checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from .. import lossnet, nets
from ..core.config import ConfigCheck, TrainConfig, config_from_dict, load_config
from .networks import network_args, repeated_style_names, style_layers_past_encoder

__all__ = ["CONFIG_CHECKS", "check_model_args", "check_style_names", "load_train_config", "train_config_from_dict"]


def check_model_args(cfg: TrainConfig, fail: Callable[[str, str], None]) -> None:
    """A :data:`ConfigCheck`: the network's arguments (``model_args`` with the styles and the
    encoder the config gives it) within the network's bounds, and an arbitrary-style network's
    style layers within its encoder, checked without building it, so that an error names the file
    that set them (training checks them again, with no file to name)."""
    try:
        args = nets.make_args(cfg.model_type, network_args(cfg))
    except ValueError as e:
        # An arbitrary-style network's encoder comes from the loss network's keys (seed for encoder_seed).
        arg = str(e).split(" ", 1)[0]
        key = nets.ENCODER_KEYS.get(arg, "")
        if key in TrainConfig.__dataclass_fields__:
            fail(key, f"gives the {cfg.model_type} network's encoder its {arg}: {e}")
        fail("model_args", str(e))
        return
    if nets.takes_style_image(cfg.model_type):
        problem = style_layers_past_encoder(cfg, args)
        if problem:
            fail("style_layers", problem)


def check_style_names(cfg: TrainConfig, fail: Callable[[str, str], None]) -> None:
    """A :data:`ConfigCheck`: each of ``style_images`` gives its own style name (its file's stem),
    checked when loading so that the error names the file that listed them (training checks it
    again, with no file to name)."""
    problem = repeated_style_names(cfg)
    if problem:
        fail("style_images", problem)


#: The registry checks every training config passes.
CONFIG_CHECKS: tuple[ConfigCheck, ...] = (nets.check_config, lossnet.check_config, check_model_args,
                                          check_style_names)


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """:func:`fast_nst.core.config.load_config` with the registries' checks."""
    return load_config(path, overrides, checks=CONFIG_CHECKS)


def train_config_from_dict(data: Any, where: str) -> TrainConfig:
    """A config rebuilt from a mapping (a checkpoint's, an API caller's), with the registries' checks."""
    return config_from_dict(data, where, checks=CONFIG_CHECKS)


