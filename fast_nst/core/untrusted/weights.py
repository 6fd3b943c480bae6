"""A model file's weights checked against the network they are for: names, dtypes, shapes and
values, in one set of messages whatever the file's format.

A ``.pth``'s state dict (after its weights-only unpickling), a ``.safetensors`` header (before any
tensor is read) and a pytorch/examples state dict all pass :func:`check_state`, so that the same
damage reads the same in every format. ``load_state_dict`` would otherwise take a complex tensor
(dropping its imaginary part), integers or booleans into float weights without a word.
:func:`check_finite` refuses NaN or infinite weights, which would turn every photo black.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ..errors import CheckpointError, FastNSTError
from .text import shown

__all__ = ["WEIGHT_DTYPES", "Spec", "check_finite", "check_state", "spec_of"]

#: name -> (dtype, shape): what a state dict holds, or a safetensors header declares.
Spec = Mapping[str, tuple[torch.dtype, tuple[int, ...]]]

#: The dtypes a network's state may hold, by kind: a tensor is read into an entry of its kind
#: (float16 weights into float32 ones, as ``load_state_dict`` copies them), never another kind.
WEIGHT_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "float", torch.float32: "float", torch.float16: "float", torch.bfloat16: "float",
    torch.int64: "int", torch.int32: "int", torch.int16: "int", torch.int8: "int", torch.uint8: "int",
    torch.bool: "bool",
}
_KIND_WORDS = {
    "float": "real floating point: float32, float16, bfloat16 or float64",
    "int": "integers: int64, int32, int16, int8 or uint8",
    "bool": "booleans",
}
# Names listed in one message; a wholly different network would list hundreds.
_LISTED = 3


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _names(names: list[str]) -> str:
    return ", ".join(shown(n, 60) for n in names[:_LISTED]) + (" ..." if len(names) > _LISTED else "")


def spec_of(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """The :data:`Spec` of a state dict of tensors."""
    return {k: (v.dtype, tuple(v.shape)) for k, v in state.items()}


def check_state(declared: Spec, expected: Spec, where: str, network: str = "the transform net",
                error: type[FastNSTError] = CheckpointError) -> None:
    """``error`` unless ``declared`` (a file's tensors) has exactly ``expected``'s names (a
    network's state dict, ``network`` in words), each of its shape and of a dtype of the same
    kind (:data:`WEIGHT_DTYPES`). The message names the first tensor that does not fit and why."""
    fix = "the file is damaged or holds another program's weights."
    missing = [n for n in expected if n not in declared]
    extra = [n for n in declared if n not in expected]
    if missing or extra:
        parts = ([f"missing {_names(missing)}"] if missing else []) + ([f"unexpected {_names(extra)}"] if extra else [])
        raise error(f"{where}: weights do not fit {network} ({'; '.join(parts)}); {fix}")
    for name, (dtype, shape) in expected.items():
        got_dtype, got_shape = declared[name]
        label = f"{where}: weights do not fit {network}: tensor '{shown(name, 80)}'"
        kind = WEIGHT_DTYPES.get(dtype)
        if WEIGHT_DTYPES.get(got_dtype) != kind:
            holds = f"{_name(dtype)} ({_KIND_WORDS[kind]})" if kind else _name(dtype)
            raise error(f"{label} is {_name(got_dtype)}, where the network holds {holds}; {fix}")
        if tuple(got_shape) != tuple(shape):
            raise error(f"{label} has shape {list(got_shape)}, where the network needs {list(shape)}; {fix}")


def check_finite(state: Mapping[str, torch.Tensor], where: str,
                 error: type[FastNSTError] = CheckpointError) -> None:
    """``error`` naming the tensors of ``state`` holding NaN or infinite values."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise error(f"{where}: its weights are NaN or infinite ({_names(bad)}): the training that wrote it "
                    "diverged, or the file is damaged. Use an earlier checkpoint, or train again with a lower lr.")
