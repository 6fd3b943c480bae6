"""fast-nst: fast neural style transfer (Johnson, Alahi & Fei-Fei 2016) in PyTorch.

The public API, importable from here without loading torch until it is used::

    from fast_nst import load_stylizer, load_config, train, optimize, TrainConfig, FastNSTError

    s = load_stylizer()                                       # the built-in mosaic model
    s = load_stylizer("models/wave/wave.pth", device="cpu")   # fast_nst.stylize
    out = s.stylize(Image.open("photo.jpg"))
    result = train(load_config("conf/wave.yml", ["max_steps=1000"]))  # fast_nst.training
    img = optimize("photo.jpg", "wave.jpg", steps=300)         # fast_nst.gatys

The packages, from the bottom layer up (docs/architecture.md): ``core`` (errors, config,
images, files, downloads), ``nets`` (transform networks + registry), ``lossnet`` (loss networks
+ registry, losses), ``io`` (checkpoints, conversion, export), ``training``, ``stylize``,
``gatys``, and ``commands`` (the command lines) on top.
"""

from __future__ import annotations

import importlib
from typing import Any

from .core.errors import FastNSTError
from .core.version import __min_torch__, __min_torch_onnx__, __min_torchvision__, __version__

__all__ = ["FastNSTError", "TrainConfig", "load_config", "load_stylizer", "optimize", "train",
           "__version__"]

# Name -> (module, attribute), imported on first use: `import fast_nst` stays light.
_LAZY = {
    "TrainConfig": ("fast_nst.core.config", "TrainConfig"),
    "load_config": ("fast_nst.training", "load_train_config"),
    "load_stylizer": ("fast_nst.stylize", "load_stylizer"),
    "optimize": ("fast_nst.gatys", "optimize"),
    "train": ("fast_nst.training", "train"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'fast_nst' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip this function
    return value
