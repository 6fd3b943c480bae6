"""Choosing the torch device from a user's setting (auto | cpu | cuda | cuda:N), refusing
PyTorch versions older than fast-nst runs on, and keeping torch.compile quiet on the CPU."""

from __future__ import annotations

import importlib
import logging
import re
import sys
from typing import Optional

import torch

from .config import DEVICE_CHOICES, is_device_name
from .errors import FastNSTError
from .version import __min_torch__

__all__ = ["resolve_device", "require_torch", "check_versions", "prepare_compile", "cpu_has_amx",
           "auto_precision", "INT8_MODELS", "slow_bf16_note", "slow_training_note"]

# torch.compile's C++ builder imports this module, which logs "No CUDA runtime is found, using
# CUDA_HOME=..." on import when a CUDA build of torch finds a CUDA toolkit but no usable GPU: true,
# and of no use to a run that was asked for on the CPU.
_CUDA_PROBE_MODULE = "torch.utils.cpp_extension"
_CUDA_PROBE_MESSAGE = "No CUDA runtime is found"


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without CUDA is a :class:`FastNSTError`.
    A ``torch.device`` is taken by its name."""
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise FastNSTError(f"device must be a name or a torch.device, got {type(name).__name__}; choose one of: "
                           f"{DEVICE_CHOICES}")
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


def cpu_has_amx() -> Optional[bool]:
    """Whether this CPU's AMX tile unit is usable here (None where torch cannot tell). oneDNN's
    fast bf16 convolutions need it: AVX-512 BF16 alone is not enough (see slow_bf16_note)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch: guarded
    try:
        return bool(probe()) if probe is not None else None
    except Exception:  # noqa: BLE001 - a probe that fails tells nothing
        return None


#: The models --precision int8 runs, where advice to use it is given before the model is known
#: (arbitrary-style models, model_type adain, refuse int8).
INT8_MODELS = "for single- and multi-style models"


def auto_precision(device: torch.device) -> tuple[str, str]:
    """(precision, why) for stylizing with ``--precision auto`` on ``device``: the fastest of
    fp32, bf16 and fp16 there, each within 50 dB of fp32's output and able to tile. On a CPU,
    bf16 where it has AMX (3-4x faster than fp32 where measured, 51-53 dB from it), fp32
    otherwise (bf16 1.2-1.6x slower there; docs/benchmarks.md); on a GPU, bf16 where it has
    bf16 arithmetic (Ampere and newer), fp16 before. int8, faster still on CPUs without AMX,
    is never chosen for the user: it costs more (about 38 dB, visible on images without texture)."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "this GPU has bf16 arithmetic"
        return "fp16", "this GPU has no bf16 arithmetic"
    amx = cpu_has_amx()
    if amx:
        return "bf16", "this CPU has AMX"
    if amx is None:  # torch cannot tell (another architecture): fp32 is the safe choice
        return "fp32", "AMX not detected on this CPU"
    # Said before the model loads, when its kind is not known
    return "fp32", f"this CPU has no AMX; --precision int8 is faster on such CPUs {INT8_MODELS}, at some quality cost"


def slow_bf16_note(device: torch.device, precision: str) -> Optional[str]:
    """A one-line note for bf16 asked of a CPU without AMX, None otherwise. On a 2-core Xeon VM
    with AVX-512 BF16 but no AMX, oneDNN's bf16 convolutions (avx512_core_bf16) took 1.7-1.9x
    the time of float32 ones and the whole network in bf16 1.2-1.6x its fp32 time, in PyTorch
    and in OpenVINO alike (docs/benchmarks.md); with AMX, bf16 was 3-4x faster than fp32."""
    if precision != "bf16" or device.type != "cpu" or cpu_has_amx() is not False:
        return None
    return ("note: this CPU has no AMX, and without it bf16 runs slower than fp32 (1.2-1.6x the time "
            f"where measured); on such CPUs --precision int8 is the fast one {INT8_MODELS} "
            "(docs/stylize.md#precision-and-speed)")


def slow_training_note(device: torch.device, precision: str, work: str = "trains") -> Optional[str]:
    """A one-line warning for a precision that makes gradient steps slow where they run (fp16 on
    any CPU, bf16 on a CPU without AMX), None otherwise; ``work`` is the verb ("trains",
    "optimizes"). Measured on a 2-core Xeon VM without AMX: one training step of the default
    network against a VGG16 loss, 128 x 128, batch 2, fp32 0.69 s, bf16 0.88 s, fp16 51-64 s
    (PyTorch's CPU convolutions have no fast fp16 backward pass: it runs a plain loop, while
    the fp16 forward alone is as fast as bf16's); one step of the Gatys optimiser (VGG16 to
    relu4_3 and back, 384 x 384) fp32 1.07 s, bf16 1.37 s."""
    if device.type != "cpu":
        return None
    if precision == "fp16":
        return (f"precision fp16 {work} about 80x slower than fp32 on a CPU (PyTorch has no fast fp16 "
                "backward pass for convolutions there); use fp32 on a CPU, or bf16 where the CPU "
                "has AMX; fp16 is for CUDA GPUs")
    if precision == "bf16" and cpu_has_amx() is False:
        return (f"this CPU has no AMX, and without it bf16 {work} slower than fp32 (1.3x the time "
                "where measured); fp32 is the faster choice here")
    return None


def _release(version: str) -> tuple[int, int]:
    """(major, minor) of a version string: (2, 6) for '2.6.0+cu124', (0, 21) for '0.21.0a0'."""
    numbers = re.findall(r"\d+", version.split("+")[0])[:2]
    return int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else 0


def _require(package: str, installed: str, minimum: str, purpose: str, alternative: str) -> None:
    if _release(installed) < _release(minimum):
        raise FastNSTError(f"{purpose} needs {package} >= {minimum}, but {package} {installed} is "
                           f"installed. Upgrade it with: pip install -U torch torchvision{alternative}")


def require_torch(minimum: str, purpose: str = "fast-nst", alternative: str = "") -> None:
    """Raise a :class:`FastNSTError` if the installed torch is older than ``minimum`` ('2.9')."""
    _require("torch", torch.__version__, minimum, purpose, alternative)


def check_versions() -> None:
    """Refuse a torch older than :data:`fast_nst.__min_torch__` (setup.py's floor) with one
    message, instead of an error deep inside a run. (fast-nst no longer imports torchvision: only
    the tests use it, to compare the loss networks against torchvision's.)"""
    require_torch(__min_torch__)


def prepare_compile(device: torch.device) -> None:
    """Call before ``torch.compile`` for ``device``: on the CPU, import the module that torch
    imports while compiling now, with its "No CUDA runtime is found" warning filtered (it logs it
    once, on import; on a GPU the warning would mean something and is left alone)."""
    if device.type != "cpu" or _CUDA_PROBE_MODULE in sys.modules:
        return
    logger = logging.getLogger(_CUDA_PROBE_MODULE)

    def quiet(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_CUDA_PROBE_MESSAGE)

    logger.addFilter(quiet)
    try:
        importlib.import_module(_CUDA_PROBE_MODULE)
    finally:
        logger.removeFilter(quiet)
