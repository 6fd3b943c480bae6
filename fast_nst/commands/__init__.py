"""The command lines: one module per command, each with ``parser()`` and ``main(argv) -> exit
code``, and the one error handler they share (:func:`run_command`).

| command | module | also |
| --- | --- | --- |
| ``python train.py`` | :mod:`.train` | ``fast-nst-train`` |
| ``python eval.py`` | :mod:`.eval` | ``fast-nst-eval`` |
| ``python -m fast_nst.export`` | :mod:`.export` | ``fast-nst-export`` |
| ``python -m fast_nst.convert`` | :mod:`.convert` | ``fast-nst-convert`` |
| ``python -m fast_nst.download`` | :mod:`.download` | ``fast-nst-download`` |
| ``python -m fast_nst.data`` | :mod:`.data` | ``fast-nst-data`` |
| ``python -m fast_nst.optimize`` | :mod:`.optimize` | ``fast-nst-optimize`` |
| ``python -m fast_nst.evaluate`` | :mod:`.evaluate` | ``fast-nst-evaluate`` |
| ``python -m fast_nst.app`` | :mod:`.app` | ``fast-nst-app`` |

Flags are long options with underscores (``--model_file``, ``--image_size``), spelt out in full:
every parser comes from :func:`new_parser`, which turns argparse's prefix matching off. Nothing below this
package imports it: the library raises :class:`~fast_nst.core.errors.FastNSTError`, and only here
does it become one ``error: ...`` line and an exit code.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional

import torch
from PIL import Image

from ..core.device import check_versions, resolve_device, slow_bf16_note
from ..core.errors import DataError, FastNSTError, Stopped
from ..core.untrusted import set_max_image_pixels
from ..stylize import resolve_precision

__all__ = ["CommandParser", "add_max_image_pixels", "apply_max_image_pixels", "new_parser", "precision_note",
           "prog", "run_command", "started_as"]


class CommandParser(argparse.ArgumentParser):
    """argparse without abbreviations: by default argparse takes any unambiguous prefix of a flag
    for the flag, so ``train.py ... --over`` would act as ``--overwrite`` and delete a run without
    a word. Here a prefix is an unknown argument. Subcommands (``add_subparsers``) are made with
    this class too, so they refuse prefixes as well."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def new_parser(default_prog: str, parser_class: type[CommandParser] = CommandParser,
               **kwargs) -> CommandParser:
    """The parser of a command: ``parser_class`` (a :class:`CommandParser`) named :func:`prog`
    of ``default_prog``, with ``kwargs`` (description, epilog...) passed on."""
    return parser_class(prog=prog(default_prog), **kwargs)


def add_max_image_pixels(p: argparse.ArgumentParser) -> None:
    """``--max_image_pixels N``: every command that decodes images takes it, since the message of
    an image over the limit advises it."""
    p.add_argument("--max_image_pixels", type=int, default=None, metavar="N",
                   help="Pillow's decompression-bomb limit in pixels (default Pillow's, ~89M); 0 removes it")


def apply_max_image_pixels(value: Optional[int]) -> None:
    """Set the decoding limit of ``--max_image_pixels`` (None: leave Pillow's)."""
    if value is None:
        return
    if value < 0:
        raise DataError(f"--max_image_pixels must be >= 0 (0 removes the limit), got {value}")
    set_max_image_pixels(value)


def _short_warning(message, category, filename, lineno, line=None) -> str:
    # Users need the message, not our source line: "warning: ..." like the rest of the output.
    return f"warning: {message}\n"


def run_command(fn: Callable[[], int]) -> int:
    """Run a command's body: a :class:`FastNSTError` becomes one ``error: ...`` line and its exit
    code, Ctrl-C ``error: interrupted`` (130), warnings one ``warning: ...`` line each."""
    previous = warnings.formatwarning
    warnings.formatwarning = _short_warning
    # --max_image_pixels changes Pillow's process-wide limit: put it back for in-process callers.
    limit = Image.MAX_IMAGE_PIXELS
    try:
        check_versions()
        return fn()
    except FastNSTError as e:
        if str(e):  # empty on torchrun ranks that leave the explaining to rank 0
            # A stop the user asked for is not an error: say what was saved, without "error:".
            print(str(e) if isinstance(e, Stopped) else f"error: {e}", file=sys.stderr)
        return int(getattr(e, "exit_code", 1))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = previous
        Image.MAX_IMAGE_PIXELS = limit


def precision_note(device: str, precision: str, runtime: str = "default", model_file: Optional[str] = None) -> None:
    """Print (stderr) what ``--precision auto`` chose and why, or a note when ``precision`` is a
    slow choice where the model will run (bf16 on a CPU without AMX); before the model loads, so
    the note comes first. The OpenVINO runtime runs on the CPU whatever ``device`` says (its
    loader refuses a GPU)."""
    if precision == "auto":
        chosen, why = resolve_precision(precision, model_file or "", device, runtime)
        print(f"precision auto: {chosen} ({why})", file=sys.stderr)
        return
    if precision != "bf16" or (runtime == "default" and str(model_file or "").lower().endswith(".onnx")):
        return  # an .onnx file in onnxruntime has no bf16: the load says so, without a note first
    where = torch.device("cpu") if runtime == "openvino" else resolve_device(device)
    note = slow_bf16_note(where, precision)
    if note:
        print(note, file=sys.stderr)


def started_as() -> str:
    """How this process was started: sys.argv[0] ("" for in-process callers)."""
    return sys.argv[0] if sys.argv and sys.argv[0] else ""


def prog(default: str) -> str:
    """``default`` (train.py, python -m fast_nst.export), or the console script's name when
    started as one (fast-nst-train)."""
    name = Path(started_as()).name
    return name if name.startswith("fast-nst-") else default
