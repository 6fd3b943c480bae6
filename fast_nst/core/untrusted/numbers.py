"""Numbers from outside (a style blend ``candy:0.7``, a weight in a form field, a value in a file)
checked before they reach a tensor: a number, finite, and inside the range of the dtype it will
be stored in. ``float("1e39")`` is finite in Python but overflows float32: torch then raises a
RuntimeError deep inside a tensor constructor.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from ..errors import FastNSTError
from .text import shown

__all__ = ["FLOAT32_MAX", "finite_float"]

#: The largest finite float32 (torch.finfo(torch.float32).max), written out: core imports no torch.
FLOAT32_MAX = 3.4028234663852886e38


def finite_float(value: Any, what: str, error: type[FastNSTError], low: Optional[float] = None,
                 high: Optional[float] = None, limit: float = FLOAT32_MAX) -> float:
    """``value`` (a number, or a string of one) as a float that is finite, of magnitude at most
    ``limit`` (default: float32's range) and within [``low``, ``high``] where given; otherwise
    ``error`` naming ``what`` it is and the bound it breaks."""
    number: Optional[float] = None
    if isinstance(value, str) and len(value) <= 100:
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            number = math.inf
    if number is None:
        raise error(f"{what} must be a number, got '{shown(value, 60)}'")
    if not math.isfinite(number) or abs(number) > limit:
        raise error(f"{what} must be a finite number of magnitude at most {limit:.4g}, got {shown(value, 60)}")
    if (low is not None and number < low) or (high is not None and number > high):
        span = (f"from {low:g} to {high:g}" if low is not None and high is not None
                else f">= {low:g}" if low is not None else f"<= {high:g}")
        raise error(f"{what} must be {span}, got {shown(value, 60)}")
    return number
