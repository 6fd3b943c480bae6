"""A training config checked against the registries: ``model_type`` names a network,
``loss_model`` a loss network, and the content and style layers exist in it. Errors name the key
and the file (or ``--set``) that set it, like the schema's own checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .. import lossnet, nets
from ..core.config import ConfigCheck, TrainConfig, config_from_dict, load_config

__all__ = ["CONFIG_CHECKS", "load_train_config", "train_config_from_dict"]

#: The registry checks every training config passes.
CONFIG_CHECKS: tuple[ConfigCheck, ...] = (nets.check_config, lossnet.check_config)


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """:func:`fast_nst.core.config.load_config` with the registries' checks."""
    return load_config(path, overrides, checks=CONFIG_CHECKS)


def train_config_from_dict(data: Any, where: str) -> TrainConfig:
    """A config rebuilt from a mapping (a checkpoint's, an API caller's), with the registries' checks."""
    return config_from_dict(data, where, checks=CONFIG_CHECKS)


