"""``python -m fast_nst.app [--models models/]`` (also ``fast-nst-app``): a local web app for
stylizing, in Gradio (optional extra ``app``): pick a model found under ``--models`` (without
any there: the built-in model), drop a photo, adjust strength, colour and size, press Stylize, compare and download.

The page's logic is :class:`AppSession` (plain Python: the models, a cache of loaded stylizers,
the checks of uploads, stylizing and the result files); :func:`build_app` lays the Gradio page
over it and :func:`launch` serves it; the models it offers are found by
:mod:`fast_nst.commands.app_models`. Everything the page receives or writes stays in one work
folder (``GRADIO_TEMP_DIR``), a temporary folder that :func:`main` removes when the app stops.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from PIL import Image

from ..core.config import DEVICE_CHOICES
from ..core.device import resolve_device
from ..core.errors import DataError, FastNSTError
from ..core.files import safe_component
from ..core.images import save_image
from ..core.untrusted import bound_folder, input_file, open_image, shown, style_rgb
from ..io.bundled import BUNDLED_STYLE
from ..io.export import installed
from ..stylize import RUNTIMES, Stylizer, load_stylizer, require_packages
from ..stylize.base import LOAD_PRECISIONS
from . import add_max_image_pixels, apply_max_image_pixels, new_parser, precision_note, run_command
from .app_models import DEFAULT_MODELS_DIR, app_models, default_model, find_models

__all__ = ["APP_INSTALL_HINT", "AppSession", "DEFAULT_MODELS_DIR", "DEFAULT_PORT", "KEEP_RESULTS", "MAX_MODEL_MB",
           "MAX_PIXELS", "MAX_UPLOAD_MB", "UPLOAD_FORMATS", "UPLOADS_KEPT",
           "ModelInfo", "app_models", "build_app", "default_model", "find_models", "launch", "main", "parser"]

APP_INSTALL_HINT = 'pip install -e ".[app]"'
# Gradio's own default port, so the address is the one Gradio users expect.
DEFAULT_PORT = 7860
# The largest photo (or style image) the app takes, in pixels: stylizing holds several float32
# copies of the photo (12 bytes a pixel each, about 0.5 GB at 40 MP) besides the network's own
# tiled memory, and the PNG result is encoded in memory: beyond this one upload could exhaust
# the memory of the machine serving the page. eval.py has no such limit.
MAX_PIXELS = 40_000_000
# Largest upload Gradio accepts: a 40 MP photo is about 10-25 MB as JPEG, up to ~100 MB as PNG.
MAX_UPLOAD_MB = 100
# Uploads (and results) the work folder holds at most, in units of the largest upload: a photo and
# a style image for the request at hand plus two earlier ones. Beyond it the oldest files go.
UPLOADS_KEPT = 4
# Largest model file the app loads: published models are 1.7-7 MB, training checkpoints with their
# optimizer state a few times that; a larger file is refused before it is read or hashed.
MAX_MODEL_MB = 1024
# The image formats the app decodes (Pillow's name -> the name the page shows), and only these:
# Pillow reads some forty, a few through outside programs (EPS through Ghostscript), and a page
# open to a network has no need of them.
UPLOAD_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "GIF": "GIF", "TIFF": "TIFF",
                  "ICO": "ICO"}
# Result folders kept (newest first): each download stays valid while a user compares a few
# results, and a long-running app does not fill its temporary folder.
KEEP_RESULTS = 8


def _formats_text() -> str:
    """The accepted formats for the page: "JPEG, PNG, ... or ICO"."""
    names = list(UPLOAD_FORMATS.values())
    return f"{', '.join(names[:-1])} or {names[-1]}"


# Advice in the stylizers' messages that names eval.py's flags, in the words of the page's own
# controls (the page has Max size, and no tile size): (pattern, replacement), applied in turn to
# every message the page shows.
_PAGE_ADVICE = (
    (re.compile(r"use --max_size (\d+), or the \.pth model, which tiles; --tile_size 0 tries anyway"),
     r"set Max size to \1 or less, or use the .pth model, which tiles"),
    (re.compile(r"use --max_size to stylize it whole, or the \.pth model"),
     "set a smaller Max size to stylize it whole, or use the .pth model"),
)


def _page_error(error: FastNSTError) -> str:
    """The status line for ``error``: its message with command-line advice put in the page's words."""
    message = str(error)
    for pattern, replacement in _PAGE_ADVICE:
        message = pattern.sub(replacement, message)
    return f"error: {message}"


@dataclass(frozen=True)
class ModelInfo:
    """What the page shows for a loaded model: ``kind`` "one" (a single style), "many" (a
    multi-style model: ``styles`` are its style names) or "image" (an arbitrary-style model that
    takes a style image), and a one-line ``summary``."""

    kind: str
    styles: tuple[str, ...]
    summary: str


def _check_pixels(limit: int, what: str) -> Callable[[int, int], None]:
    def check(width: int, height: int) -> None:
        if width * height > limit:
            raise DataError(f"The {what} is {width} x {height} ({width * height / 1e6:.1f} MP); this app "
                            f"takes at most {limit / 1e6:g} MP, as larger images can exhaust the "
                            "memory of the machine serving it. Shrink the image, or stylize it with "
                            "eval.py (which tiles huge images).")
    return check


class AppSession:
    """The state behind the page: ``models`` (label -> path, see :func:`find_models`) loaded on
    ``device`` in ``precision`` (and ``runtime``) by ``loader`` (default :func:`~fast_nst.stylize.load_stylizer`) when first used
    and kept (one stylizer per model path), results written under ``work_dir/results``. Every
    method raises FastNSTError with a message for the page."""

    def __init__(self, models: dict[str, Path], device: str, work_dir: Path, max_pixels: int = MAX_PIXELS,
                 loader: Callable[..., Stylizer] = load_stylizer, max_work_bytes: int = UPLOADS_KEPT * MAX_UPLOAD_MB << 20,
                 max_model_bytes: int = MAX_MODEL_MB << 20, loss_model_file: Optional[Path] = None,
                 precision: str = "fp32", runtime: str = "default"):
        self.models = dict(models)
        # Arbitrary-style models' encoder weights (the user's file, as eval.py --loss_model_file);
        # never a path a model file names.
        self.loader_options: dict = {"loss_model_file": loss_model_file} if loss_model_file else {}
        if precision != "fp32":  # fp32 is load_stylizer's default (and custom loaders need not take it)
            self.loader_options["precision"] = precision
        if runtime != "default":
            self.loader_options["runtime"] = runtime
        self.device = device
        self.loader = loader
        self.work_dir = Path(work_dir)
        self.results_dir = self.work_dir / "results"
        self.max_pixels = max_pixels
        self.max_work_bytes = max_work_bytes
        self.max_model_bytes = max_model_bytes
        self._stylizers: dict[Path, Stylizer] = {}
        # Gradio runs events in worker threads: one stylize (set_style + stylize on a shared
        # stylizer) at a time, and one model load at a time, under its own lock: a slow load
        # never holds up stylizing with a loaded model.
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._results_lock = threading.Lock()

    def stylizer(self, label: str) -> Stylizer:
        if label not in self.models:
            raise FastNSTError(f"Unknown model {str(label)[:80]!r}; choose one from the list.")
        path = self.models[label]
        loaded = self._stylizers.get(path)  # a loaded model is used without waiting for another's load
        if loaded is not None:
            return loaded
        with self._load_lock, _named_as(path, label):
            if path not in self._stylizers:
                if path.exists() and not path.is_dir():  # checked before anything reads or hashes it
                    input_file(path, f"Model {label}:", self.max_model_bytes,
                               "the app loads models up to this size (MAX_MODEL_MB)")
                self._stylizers[path] = self.loader(path, device=self.device, **self.loader_options)
            return self._stylizers[path]

    def bound_uploads(self, *in_use: Optional[str]) -> None:
        """Remove the oldest uploads and results beyond :attr:`max_work_bytes` in the work
        folder, never the files ``in_use`` by the request at hand."""
        if self.work_dir.is_dir():
            bound_folder(self.work_dir, self.max_work_bytes, [Path(p) for p in in_use if p])

    def describe(self, label: str) -> ModelInfo:
        s = self.stylizer(label)
        step = s.info.get("step")
        trained = f", trained {step} steps" if isinstance(step, int) else ""
        if s.style_input == "image":
            return ModelInfo("image", (), f"{label}: arbitrary style (any style image){trained}. "
                                          "Upload a style image.")
        if s.style_names:
            return ModelInfo("many", tuple(s.style_names), f"{label}: {len(s.style_names)} styles"
                                                           f"{trained}. Choose one, or type a blend.")
        made = f" {s.info['about']}." if s.info.get("about") else ""
        return ModelInfo("one", (), f"{label}: one style ({shown(s.name)}){trained}.{made}")

    def open_photo(self, path: Optional[str], what: str = "photo", keep: Optional[str] = None) -> Image.Image:
        """The uploaded file at ``path`` as an RGB(A) image; DataError for no file, a file that is
        not an image, or one over :attr:`max_pixels` (checked before decoding). Older uploads
        beyond :attr:`max_work_bytes` are removed first (never ``path`` or ``keep``)."""
        if not path:
            raise DataError(f"No {what}: upload one first ({_formats_text()}).")
        self.bound_uploads(path, keep)
        try:
            # Named as the user knows the file, never by the server's temporary path (which a
            # long or escaped name once let through); the page's user cannot set --max_image_pixels.
            return open_image(path, check_size=_check_pixels(self.max_pixels, what), name=Path(path).name,
                              limit_fix=f"shrink the {what} (this app takes at most {self.max_pixels / 1e6:g} MP)",
                              formats=list(UPLOAD_FORMATS))
        except DataError as e:
            message = str(e).replace(
                "not an image file Pillow can read", f"not an image ({what}s must be {_formats_text()})")
            raise DataError(message) from None

    def stylize(self, label: str, photo: Optional[str], style: str = "", blend: str = "",
                style_image: Optional[str] = None, alpha: float = 1.0, strength: float = 1.0,
                preserve_color: bool = False, max_size: Optional[float] = None) -> tuple[Path, str]:
        """Stylize the uploaded ``photo`` with model ``label``: (the result's PNG, a status line
        with its size, the time it took and any notes on the inputs, such as a style image's
        transparent areas made white). ``style``/``blend`` for multi-style models (a
        non-empty blend wins), ``style_image`` and ``alpha`` for arbitrary-style ones;
        ``max_size`` 0 or None keeps the photo's size."""
        if max_size and not max_size >= 1:  # NaN too; the value as given, before it is cut to pixels
            raise FastNSTError(f"Max size must be 0 (the photo's size) or at least 1 px, got {max_size}")
        s = self.stylizer(label)
        image = self.open_photo(photo, keep=style_image)
        styled = self.open_photo(style_image, "style image", keep=photo) if s.style_input == "image" else None
        notes: list[str] = []
        if styled is not None:  # made RGB here, so that what style_rgb says reaches the page, not the console
            styled = style_rgb(styled, Path(style_image).name, warn=notes.append)
        # 0 (the field's default) keeps the photo's size; infinity reaches the option check.
        size = (int(max_size) if math.isfinite(max_size) else max_size) if max_size else None
        with self._lock, _named_as(self.models[label], label):
            start = time.perf_counter()
            try:
                if styled is not None:  # refused before the resize if too large (core.untrusted.images)
                    s.set_style(styled, alpha=float(alpha))
                elif s.style_names:
                    s.set_style(blend.strip() or style or s.style_names[0])
                out = s.stylize(image, max_size=size, strength=float(strength),
                                preserve_color=bool(preserve_color))
            except (MemoryError, torch.cuda.OutOfMemoryError, RuntimeError) as e:
                # PyTorch's CPU allocator fails with a RuntimeError, not a MemoryError.
                if isinstance(e, RuntimeError) and not _out_of_memory(e):
                    raise
                raise FastNSTError(f"Out of memory stylizing {image.width} x {image.height} px on {s.device}: "
                                   "set a smaller Max size.") from None
            seconds = time.perf_counter() - start
            tile_count = s.last_tile_count  # this request's: the next one sets it again
        # An uploaded style image is decoded without its file name: the result is named after it here.
        target = self._result_path(Path(photo).stem, Path(style_image).stem if styled is not None else s.name)
        save_image(out, target)
        tiles = f" in {tile_count} tiles" if tile_count > 1 else ""
        said = "".join(f" {note[:1].upper()}{note[1:]}" for note in notes)
        return target, (f"Stylized {image.width} x {image.height} -> {out.width} x {out.height} px with "
                        f"{label}{tiles} in {seconds:.2f} s on {s.device}.{said}")

    def _result_path(self, stem: str, style: str) -> Path:
        """A new result file's path, in a folder of its own made now; the oldest folders beyond
        :data:`KEEP_RESULTS` go. A folder removed after the listing (by the upload bounding of a
        photo being shown, or another stylization) made ``stat`` fail: the page said "Error" and
        the result was lost."""
        name = f"{safe_component(stem, fallback='photo')}_{safe_component(style, fallback='stylized')}.png"
        with self._results_lock:
            self.results_dir.mkdir(parents=True, exist_ok=True)
            old = sorted(((_mtime(p), p) for p in self.results_dir.iterdir()), reverse=True)
            for _, folder in old[KEEP_RESULTS - 1:]:
                shutil.rmtree(folder, ignore_errors=True)
            folder = self.results_dir / uuid.uuid4().hex
            folder.mkdir()
        return folder / name


@contextlib.contextmanager
def _named_as(path: Path, label: str) -> Iterator[None]:
    """FastNSTErrors inside the block name the model ``path`` as the page lists it, ``label``:
    the page's user chose a label, and the server's folders are not theirs to see."""
    try:
        yield
    except FastNSTError as e:
        message = str(e).replace(shown(str(path)), label)
        if message == str(e):
            raise
        raise FastNSTError(message) from None


def _mtime(path: Path) -> float:
    """``path``'s modification time; 0 (the oldest) for one removed meanwhile (upload bounding)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _out_of_memory(error: RuntimeError) -> bool:
    """Whether ``error`` is an allocation failure: PyTorch's CPU allocator ("DefaultCPUAllocator:
    can't allocate memory", or "not enough memory")."""
    text = str(error)
    return "allocate memory" in text or "not enough memory" in text


def _import_gradio() -> Any:
    try:
        import gradio  # an optional extra: imported only when the app is built
    except ImportError as e:
        raise FastNSTError(f"The web app needs Gradio, which is not installed ({e}). Install it with: "
                           f"{APP_INSTALL_HINT}") from None
    if int(gradio.__version__.split(".")[0]) < 6:
        raise FastNSTError(f"The web app needs Gradio 6 or newer, found {gradio.__version__}. "
                           f"Upgrade with: {APP_INSTALL_HINT}")
    return gradio


def _model_controls(gr: Any, session: AppSession, label: str) -> tuple:
    """Updates of (status, style, blend, style image, alpha) for model ``label``."""
    try:
        info = session.describe(label)
    except FastNSTError as e:
        hidden = gr.update(visible=False)
        return _page_error(e), hidden, hidden, hidden, hidden
    many, image = info.kind == "many", info.kind == "image"
    # (label, value): the label made printable, the value the model's own name (what set_style takes)
    choices = [(shown(name, 60), name) for name in info.styles]
    style = gr.update(visible=many, choices=choices, value=info.styles[0] if many else None)
    return (info.summary, style, gr.update(visible=many, value=""), gr.update(visible=image),
            gr.update(visible=image))


def _inputs(gr: Any, session: AppSession) -> dict[str, Any]:
    """The left column: the model, its style controls (shown for the models that take them), the
    photo, the options and the button."""
    labels = list(session.models)
    c = {"model": gr.Dropdown(labels, value=default_model(session.models), label="Model", elem_id="model"),
         "style": gr.Dropdown([], label="Style", visible=False, elem_id="style"),
         "blend": gr.Textbox(label="Blend (overrides Style)", placeholder="candy:0.7,mosaic:0.3",
                             visible=False, elem_id="blend"),
         "style_image": gr.File(label="Style image", visible=False, elem_id="style-image"),
         "alpha": gr.Slider(0, 1, value=1, step=0.05, label="Style amount (alpha)", visible=False,
                            elem_id="alpha"),
         # One short line: a longer label runs under the file box's clear button.
         "photo": gr.File(label=f"Photo (≤ {session.max_pixels / 1e6:g} MP; {' '.join(UPLOAD_FORMATS.values())})",
                          elem_id="photo", height=160)}
    with gr.Accordion("Options", open=True):
        c["strength"] = gr.Slider(0, 1, value=1, step=0.05, label="Strength (0: the photo, 1: full style)",
                                  elem_id="strength")
        c["preserve"] = gr.Checkbox(label="Preserve the photo's colours", elem_id="preserve")
        c["max_size"] = gr.Number(0, precision=0, minimum=0, label="Max size (longest side, px; 0: the photo's)",
                                  elem_id="max-size")
    c["button"] = gr.Button("Stylize", variant="primary", elem_id="stylize")
    return c


def build_app(session: AppSession) -> Any:
    """The Gradio page (a ``gr.Blocks``) over ``session``. Set ``GRADIO_TEMP_DIR`` before calling
    it: Gradio's components read it when they are made. FastNSTError without Gradio."""
    gr = _import_gradio()
    with gr.Blocks(title="fast-nst", analytics_enabled=False, delete_cache=(600, 3600)) as page:
        gr.Markdown("## fast-nst: choose a model, upload a photo, press **Stylize**")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                c = _inputs(gr, session)
            with gr.Column(scale=2):
                with gr.Row():
                    images = [gr.Image(label=label, type="filepath", format="png", interactive=False,
                                       elem_id=elem_id, height=360, buttons=["download", "fullscreen"])
                              for label, elem_id in (("Photo", "preview"), ("Result", "result"))]
                status = gr.Textbox(label="Status", interactive=False, elem_id="status")
                download = gr.File(label="Download the full-size result (PNG)", interactive=False,
                                   elem_id="download", height=112)
        controls = [status, c["style"], c["blend"], c["style_image"], c["alpha"]]
        c["model"].change(lambda label: _model_controls(gr, session, label), c["model"], controls)
        page.load(lambda label: _model_controls(gr, session, label), c["model"], controls)
        c["photo"].change(lambda path: _show_photo(session, path), c["photo"], [images[0], status])
        names = ["model", "photo", "style", "blend", "style_image", "alpha", "strength", "preserve", "max_size"]
        # Named for scripted calls (gradio_client: predict(..., api_name="/stylize")).
        c["button"].click(lambda *values: _stylize(session, *values), [c[n] for n in names],
                          [images[1], download, status], api_name="stylize")
    return page


def _show_photo(session: AppSession, path: Optional[str]) -> tuple:
    if not path:
        return None, ""
    try:
        image = session.open_photo(path)
    except FastNSTError as e:
        return None, _page_error(e)
    return path, f"{Path(path).name}: {image.width} x {image.height} px."


def _stylize(session: AppSession, *values: Any) -> tuple:
    try:
        target, message = session.stylize(*values)
    except FastNSTError as e:
        return None, None, _page_error(e)
    return str(target), str(target), message


def launch(page: Any, host: str = "127.0.0.1", port: int = DEFAULT_PORT, max_upload_mb: int = MAX_UPLOAD_MB,
           block: bool = True) -> str:
    """Serve ``page`` on ``host``:``port``; its URL. ``block``: print the URL and serve until
    Ctrl-C or SIGTERM (else return at once, the server running in a thread: ``page.close()``
    stops it). FastNSTError when the port is taken."""
    try:
        # run_history off: Gradio would keep every call in the browser's storage.
        _, url, _ = page.launch(server_name=host, server_port=port, max_file_size=f"{max_upload_mb}mb",
                                prevent_thread_lock=True, show_error=False, run_history=False,
                                footer_links=["api", "gradio"], quiet=True)
    except OSError:  # Gradio's message gives advice for its own API, not for these flags
        raise FastNSTError(f"Cannot serve on {host}:{port}: the port is in use, or {host} is not an "
                           "address of this machine. Choose another --port (or --host).") from None
    if block:
        print(f"Open {url} in a browser. Ctrl-C stops the app.", flush=True)
        previous = signal.signal(signal.SIGTERM, _interrupt)  # a service stop cleans up like Ctrl-C
        try:
            page.block_thread()  # until Ctrl-C: then it closes the server
        finally:
            signal.signal(signal.SIGTERM, previous)
    return url


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` inside the block (main() also runs in-process, in tests)."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def parser() -> argparse.ArgumentParser:
    p = new_parser(
        "python -m fast_nst.app",
        description="A local web app for stylizing: pick a model, upload a photo, adjust, compare and\n"
                    f"download. Needs the optional extra: {APP_INSTALL_HINT}",
        epilog="Examples: python -m fast_nst.app --models models/   (then open http://127.0.0.1:7860)\n"
               "          python -m fast_nst.app --models models/ --models hf://someone/fast-nst-wave/wave.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--models", metavar="DIR|FILE|hf://...", action="append",
                   help=f"a folder searched (recursively) for models: *.pth, *.safetensors, *.onnx and run folders "
                        f"(default: {DEFAULT_MODELS_DIR}/; without models there, the built-in {BUNDLED_STYLE} model), "
                        "a model file, a Hugging Face Hub reference hf://OWNER/REPO/FILE[@REVISION][#sha256=HEX] "
                        "or a URL https://HOST/PATH/NAME.pth[#sha256=HEX] (fetched once into a cache); "
                        "repeat it to offer several")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only; 0.0.0.0 lets "
                        "anyone who can reach this machine use the app and its models)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--device", default="auto", help=f"device to stylize on: {DEVICE_CHOICES} (default auto)")
    p.add_argument("--precision", default="fp32", choices=LOAD_PRECISIONS,
                   help="arithmetic for the network, as eval.py's: bf16 is the fastest on CPUs with AMX "
                        "and on GPUs; int8: onnxruntime on the CPU, the fast one on CPUs without AMX "
                        "(single- and multi-style models); auto: bf16 where it is fast, else fp16 on GPUs and fp32 "
                        "on CPUs")
    p.add_argument("--runtime", default="default", choices=RUNTIMES,
                   help="who runs the network, as eval.py's: default, or openvino (the fastest on Intel CPUs)")
    p.add_argument("--loss_model_file", metavar="FILE",
                   help="arbitrary-style models: the VGG weights file their encoder was trained with, as "
                        "in eval.py (default: the loss network's default path); checked against the "
                        "checksum the model records")
    p.add_argument("--max_upload_mb", type=int, default=MAX_UPLOAD_MB, metavar="MB",
                   help=f"largest upload accepted, in MB (default {MAX_UPLOAD_MB}); uploads and results "
                        f"together are kept to {UPLOADS_KEPT} times this, the oldest removed first")
    add_max_image_pixels(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)

    def run() -> int:
        if not 0 < args.port < 65536:
            raise FastNSTError(f"--port must be from 1 to 65535, got {args.port}")
        if args.max_upload_mb < 1:
            raise FastNSTError(f"--max_upload_mb must be at least 1, got {args.max_upload_mb}")
        resolve_device(args.device)
        apply_max_image_pixels(args.max_image_pixels)
        if not installed("gradio"):  # found, not imported (Gradio reads GRADIO_TEMP_DIR on import)
            raise FastNSTError(f"The web app needs Gradio, which is not installed. Install it with: {APP_INSTALL_HINT}")
        require_packages(None, args.precision, args.runtime)  # before models are listed or fetched
        precision_note(args.device, args.precision, args.runtime)
        encoder = input_file(args.loss_model_file, "--loss_model_file") if args.loss_model_file else None
        models = app_models(args.models)
        # Uploads, Gradio's cache and the results all go here, and go with it at exit.
        with tempfile.TemporaryDirectory(prefix="fast-nst-app-") as work, _environ("GRADIO_TEMP_DIR", work):
            page = build_app(AppSession(models, args.device, Path(work),
                                        max_work_bytes=UPLOADS_KEPT * args.max_upload_mb << 20,
                                        loss_model_file=encoder, precision=args.precision,
                                        runtime=args.runtime))
            launch(page, args.host, args.port, args.max_upload_mb, block=True)
        return 0

    return run_command(run)
