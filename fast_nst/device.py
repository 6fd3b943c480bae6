"""Choosing the torch device from a user's setting (auto | cpu | cuda | cuda:N)."""

from __future__ import annotations

import torch

from .config import DEVICE_CHOICES, is_device_name
from .errors import FastNSTError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without CUDA is a :class:`FastNSTError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not is_device_name(name):
        raise FastNSTError(f"Unknown device {name!r}; choose one of: {DEVICE_CHOICES}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FastNSTError(
                f"device '{name}' requested but CUDA is not available (torch {torch.__version__}, "
                "no usable GPU or driver). Run on the CPU: --device cpu (eval.py, optimize) or "
                "--set device=cpu (train.py); device auto picks CUDA only when it works."
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise FastNSTError(f"device '{name}' requested but only {torch.cuda.device_count()} "
                               "CUDA device(s) exist.")
    return torch.device(name)
