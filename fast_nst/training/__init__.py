"""Training a transform network: config -> data -> network -> loss -> checkpoints.

:func:`train` runs a :class:`~fast_nst.training.trainer.Trainer` for a config from
:func:`load_train_config`. Modules: ``config`` (the registry checks), ``data`` (photos ->
batches), ``cache`` (the pre-resized cache), ``coco`` (the COCO download), ``distributed``
(torchrun), ``networks`` (the network a config builds), ``setup`` (checks before step 1),
``monitor`` (loss bookkeeping), ``trainer`` (the loop).
"""

from __future__ import annotations

from .config import CONFIG_CHECKS, load_train_config, train_config_from_dict
from .trainer import Trainer, TrainResult, train

__all__ = ["CONFIG_CHECKS", "TrainResult", "Trainer", "load_train_config", "train", "train_config_from_dict"]
