"""Training a transform network: config -> data -> network -> loss -> checkpoints.

:func:`train` runs :class:`~fast_nst.training.trainer.Trainer` for a config from
:func:`load_train_config` (which checks the config against the network and loss-network
registries). Modules: ``data`` (photos -> batches), ``cache`` (the pre-resized cache),
``coco`` (the COCO download), ``distributed`` (torchrun), ``setup`` (checks before step 1),
``monitor`` (loss bookkeeping), ``trainer`` (the loop).

This module imports no torch: a command can check a config before torch loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from .. import lossnet, nets
from ..core.config import ConfigCheck, TrainConfig, config_from_dict, load_config

if TYPE_CHECKING:
    from .trainer import TrainResult

__all__ = ["CONFIG_CHECKS", "load_train_config", "train_config_from_dict", "train"]

#: The registry checks every training config passes (model_type, loss_model, layer names).
CONFIG_CHECKS: tuple[ConfigCheck, ...] = (nets.check_config, lossnet.check_config)


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """:func:`fast_nst.core.config.load_config` with the registries' checks: errors name the
    key and the file (or ``--set``) that set it."""
    return load_config(path, overrides, checks=CONFIG_CHECKS)


def train_config_from_dict(data: Any, where: str) -> TrainConfig:
    """A config rebuilt from a checkpoint's dict, with the registries' checks."""
    return config_from_dict(data, where, checks=CONFIG_CHECKS)


def train(cfg: TrainConfig, resume: Union[bool, str, None] = None, overwrite: bool = False,
          progress: bool = True, command: Optional[str] = None) -> "TrainResult":
    """Train a transform network for ``cfg``; see :func:`fast_nst.training.trainer.train`."""
    from .trainer import train as _train  # torch loads here, when training starts

    return _train(cfg, resume=resume, overwrite=overwrite, progress=progress, command=command)
