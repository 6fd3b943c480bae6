"""The model that ships inside the package: what ``eval.py``, ``load_stylizer()`` and the web app
use when no model is named, so that a fresh install stylizes a photo with no network.

It is an ordinary fast-nst model file (``kind`` "model") with one more entry, ``about``: one
line saying how it was made (benchmarks/train_default_model.sh trains it and
benchmarks/package_default_model.py writes it; docs/gallery.md shows it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import CheckpointError
from ..core.untrusted import shown

__all__ = ["ABOUT_KEY", "BUNDLED_MODEL", "BUNDLED_STYLE", "MAX_ABOUT", "about", "bundled_model"]

BUNDLED_STYLE = "mosaic"
# Inside the package (setup.py's package_data), so a non-editable install carries it.
BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "assets" / f"{BUNDLED_STYLE}_slim.pth"
#: The checkpoint entry that says, in one line of text, how a model was made.
ABOUT_KEY = "about"
# The longest about line shown: the built-in model's is about 250 characters.
MAX_ABOUT = 400


def bundled_model() -> Path:
    """The built-in model's file; CheckpointError when the installation lacks it (an install
    made without package data, or a checkout that deleted it)."""
    if not BUNDLED_MODEL.is_file():
        raise CheckpointError(f"The built-in model {BUNDLED_MODEL} is missing from this installation: "
                              "reinstall fast-nst (pip install .), or name a model with --model_file.")
    return BUNDLED_MODEL


def about(ckpt: Any) -> str:
    """A checkpoint's ``about`` line, made printable and bounded ("" when it has none): it is
    read from a model file, so it is outside text."""
    text = ckpt.get(ABOUT_KEY) if isinstance(ckpt, dict) else None
    return shown(text, MAX_ABOUT) if isinstance(text, str) else ""
