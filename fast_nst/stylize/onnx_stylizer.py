"""Stylizing with an exported ``.onnx`` model through onnxruntime (optional extra ``onnx``).

>>> from fast_nst import load_stylizer
>>> s = load_stylizer("wave.onnx", device="cpu")     # dispatches here by the .onnx suffix
>>> out = s.stylize(Image.open("photo.jpg"))

:class:`OnnxStylizer` is a :class:`~fast_nst.stylize.base.Stylizer`: ``stylize`` takes the same
options and ``stylize_tensor`` the same tensors. It tiles (:mod:`fast_nst.stylize.onnx_tiling`)
where the export's metadata names a fast-nst network with instance norms: with ``tile_size``
"auto" only a photo whose forward would not fit the free memory (a whole image is faster), or
with an explicit ``tile_size``. Other graphs stylize whole images.

A multi-style export (a second input of style weights (S,), ``style_names`` in its metadata)
starts in its first style; :meth:`OnnxStylizer.set_style` chooses another or a blend.

An arbitrary-style export (model_type adain: a second input, the style image (1, 3, h, w), and
optionally ``alpha`` (1,); metadata ``style_input`` "image") stylizes once
:meth:`OnnxStylizer.set_style` gave it a style image, which it feeds to the graph (resized so
its longest side is ``style_size``) together with alpha; the graph computes the statistics. A
blend of several style images needs their statistics, which such a graph does not take: it is
refused (use the .pth model).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..core.device import resolve_device
from ..core.errors import CheckpointError, DataError, FastNSTError, quote
from ..core.files import safe_component
from ..core.images import shape_text, tensor_to_pil
from ..core.untrusted import load_json, onnx_session, read_onnx_file
from ..io.checkpoint import require_model_file, is_torchscript, torchscript_error
from ..io.export import EXPORT_FORMAT_VERSION, MAX_ONNX_BYTES, ONNX_INSTALL_HINT, installed
from ..io.int8_graph import for_onnxruntime, runs_int8
from ..nets.adain import AdaINNet
from ..nets.layers import check_images
from ..nets.multistyle import MAX_STYLES, StyleError, style_label
from .base import StylizeOptions, Stylizer, check_input
from .onnx_tiling import OnnxTiling, tiling_for
from .tiling import blend_tiles

__all__ = ["ImageStyleInputs", "ONNX_INSTALL_HINT", "OnnxStylizer", "load_onnx_stylizer", "require_onnxruntime"]

_EXPORT_HINT = "Export models with python -m fast_nst.export."
# Longest metadata number read as a step or version (int() of a long digit string is slow, and
# refused over 4300 digits).
_MAX_DIGITS = 18
# Longest style name read from the metadata: as checkpoints' style_names (io.checkpoint).
_MAX_STYLE_NAME = 200
# The smallest style image side an arbitrary-style export is assumed to take when its metadata
# does not say (style_min_side): 16 px, two pixels at relu4_1, the default AdaIN encoder's layer.
_DEFAULT_STYLE_MIN_SIDE = 16
# The largest style_min_side read from the metadata (untrusted text): an encoder to relu5_1
# needs 32; a bound keeps a hostile value from making every style image "too small".
_MAX_STYLE_MIN_SIDE = 1024


@dataclass(frozen=True)
class ImageStyleInputs:
    """The style inputs of an arbitrary-style export: the style image's input name, alpha's (""
    when the graph has none: alpha 1 baked in) and the smallest style image side it takes."""

    style_image: str
    alpha: str
    min_side: int


def _missing_onnxruntime(reason: str) -> FastNSTError:
    return FastNSTError(f"Running .onnx models needs onnxruntime, which is not installed ({reason}). "
                        f"Install it with: {ONNX_INSTALL_HINT}")


def require_onnxruntime() -> None:
    """FastNSTError naming the install command when onnxruntime is missing, found without
    importing it: checked before an .onnx model is fetched."""
    if not installed("onnxruntime"):
        raise _missing_onnxruntime("no module named 'onnxruntime'")


def _import_onnxruntime():
    try:
        import onnxruntime  # an optional extra: imported only when an .onnx model is loaded
    except ImportError as e:
        raise _missing_onnxruntime(str(e)) from None
    return onnxruntime


def _providers(ort, device: torch.device) -> list:
    """onnxruntime execution providers for ``device``."""
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise FastNSTError(
                f"device '{device}' requested, but this onnxruntime ({ort.__version__}) has no CUDA "
                "support (install onnxruntime-gpu instead of onnxruntime), or use --device cpu.")
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxStylizer(Stylizer):
    """A :class:`~fast_nst.stylize.Stylizer` whose network is an onnxruntime session.

    ``image_style``: the inputs of an arbitrary-style export (``style_input`` "image"), which
    stylizes once :meth:`set_style` gave it a style image."""

    # Peak memory of one forward per pixel, for the choice between a whole image and tiles (and
    # the check before a whole image, where the graph cannot tile): the default Johnson network's export in onnxruntime peaked at 588-643 bytes per
    # pixel in float32 and 316-514 in int8 (1024 x 1024 and 2048 x 2048, resident memory); in
    # OpenVINO at 2048 x 2048, 594 (float32) and 418 (int8) in its process plus 46 in the caller's;
    # arbitrary-style exports take what their PyTorch network does (AdaIN: 2048).
    bytes_per_pixel = 700

    def __init__(self, session, device: torch.device, name: str = "", info: dict | None = None,
                 style_names: Sequence[str] = (), image_style: Optional[ImageStyleInputs] = None,
                 tiling: Optional[OnnxTiling] = None):
        super().__init__(device, name, info, precision="fp32")
        self.session = session
        self.tiling = tiling  # None: whole images only
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name
        self.path = str(self.info.get("path") or name)
        self.style_names = list(style_names)  # a multi-style export's second input: their weights
        self.image_style = image_style
        self.style_input = "image" if image_style is not None else ""
        if image_style is not None:
            self.bytes_per_pixel = AdaINNet.bytes_per_pixel
        if image_style is not None:
            self.min_style_side = image_style.min_side
        # An arbitrary-style export's further inputs, once set_style gave it a style image.
        self.style_feeds: Optional[dict[str, np.ndarray]] = None
        if self.style_names:
            self.style_input_name = session.get_inputs()[1].name
            self.set_style(0)

    def _set_style_weights(self, w: torch.Tensor) -> None:
        self.style = w
        self.name = safe_component(style_label(w, self.style_names), fallback="stylized")

    def _set_style_images(self, images: list[torch.Tensor], weights: list[float], label: str,
                          alpha: float) -> None:
        """Feed the one style image (1, 3, h, w) and ``alpha`` from now on."""
        if not self.image_style.alpha and alpha != 1:
            raise StyleError(f"{self.path}: this export has no alpha input (alpha 1 is built in); use "
                             "alpha 1, or the .pth model for other alphas")
        used = [x for x, w in zip(images, weights) if w > 0]
        if len(used) > 1:
            raise StyleError(f"{self.path}: a blend of {len(used)} style images needs their AdaIN statistics "
                             "mixed, and this ONNX graph takes one style image, not statistics; give one "
                             "style image, or stylize the blend with the .pth model")
        feeds = {self.image_style.style_image: np.ascontiguousarray(used[0].numpy(), dtype=np.float32)}
        if self.image_style.alpha:
            feeds[self.image_style.alpha] = np.array([alpha], dtype=np.float32)
        self.style_feeds = feeds
        self.name = safe_component(label, fallback="stylized")

    def _style_inputs(self) -> dict[str, np.ndarray]:
        """The feeds besides the photo; StyleError (as TorchStylizer's) when a style image is missing."""
        if self.image_style is not None:
            if self.style_feeds is None:
                raise self._needs_style_image()
            return self.style_feeds
        if self.style_names:
            return {self.style_input_name: np.ascontiguousarray(self.style.numpy(), dtype=np.float32)}
        return {}

    @property
    def can_tile(self) -> bool:  # type: ignore[override]
        return self.tiling is not None and self.tiling.norms > 0

    @property
    def can_carry(self) -> bool:
        """Whether video frames can carry the norm statistics across them (the graphs tiling uses)."""
        return self.can_tile

    @torch.inference_mode()
    def stylize_carrying(self, x: torch.Tensor, restarts: Sequence[bool], momentum: float,
                         state: Optional[dict[str, np.ndarray]]) -> tuple[torch.Tensor, Optional[dict[str, np.ndarray]]]:
        """Consecutive frames ``x`` (N, 3, H, W) float in [0, 1] -> (their stylizations, the same
        shape in [0, 1] on the device of ``x``; the running averages for the next frames), each
        norm using ``momentum`` of the averages so far and ``1 - momentum`` of the frame's own
        statistics, afresh where ``restarts`` says (:mod:`fast_nst.stylize.temporal`)."""
        check_images(x)
        feeds, out = self._style_inputs(), []
        for frame, restart in zip(x, restarts):
            inp = np.ascontiguousarray(frame[None].detach().to("cpu", torch.float32).numpy())
            y, state = self.tiling.carry(self._run, inp, self.input_name, self.output_name, feeds, 1.0 - momentum,
                                         None if restart else state)
            out.append(self._image(y, inp.shape, shape_text(inp.shape)))
        return torch.cat(out).to(x.device) if out else torch.empty(x.shape, device=x.device), state

    def _run(self, session: Any, feeds: dict, label: str, names: Optional[list] = None) -> list:
        """``session``'s outputs ``names`` (default: the image) for ``feeds``; the runtime's errors
        as one CheckpointError naming the input's shape ``label``."""
        try:
            return session.run(names or [self.output_name], feeds)
        except FastNSTError:  # the runtime's own message (OpenVINO's worker), already for the user
            raise
        except Exception as e:  # onnxruntime's errors (a failing node, an allocation refused)
            detail = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", " ".join(str(e).split()))[:300]
            raise CheckpointError(f"{self.path}: the ONNX model failed on an input of shape {label} "
                                  f"({type(e).__name__}: {detail}). {_EXPORT_HINT}") from None

    def _image(self, out: Any, shape: tuple, label: str) -> torch.Tensor:
        """The graph's output ``out`` for an input of ``shape``, checked (the graph is the file's)
        before anything is made of it: a float32 tensor of that shape in [0, 1]."""
        if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype.kind != "f":
            got, kind = quote(getattr(out, "shape", None), 60), str(getattr(out, "dtype", type(out).__name__))[:40]
            raise CheckpointError(f"{self.path}: not a style transfer model: for an input of shape "
                                  f"{label} it returned {kind} of shape {got}, expected float32 of the "
                                  f"input's shape. {_EXPORT_HINT}")
        return torch.from_numpy(out).float().clamp_(0, 1)

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, 3, H, W) float in [0, 1] (any device) -> (N, 3, H, W) float32 in [0, 1] on
        the same device as ``x``."""
        check_input(x)
        extra = self._style_inputs()
        if x.shape[0] == 0:
            return torch.empty(x.shape, dtype=torch.float32, device=x.device)
        inp = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        label = shape_text(inp.shape)
        out = self._run(self.session, {self.input_name: inp, **extra}, label)[0]
        return self._image(out, inp.shape, label).to(x.device)

    def tile_size_for(self, height: int, width: int, options: StylizeOptions) -> Optional[int]:
        """As the base class's where this model cannot tile. Where it can: with tile_size "auto",
        tiles only for a photo whose whole forward would not fit the free memory on the CPU
        (a whole image is faster: no statistics pass, no context computed twice). Whether it can
        is asked only where tiles are wanted: the first answer parses the graph."""
        if options.tile_size is None:
            return None
        budget = None
        if options.tile_size == "auto":
            need, free = self._whole_image_memory(height, width)
            if self.device.type != "cpu" or need <= free:
                return None  # whole: what the base class says too for a model that cannot tile
            budget = min(free // 2, 1 << 30)  # half the free memory, at most 1 GiB: as the PyTorch network's tiles
        if not self.can_tile:
            return super().tile_size_for(height, width, options)
        return self._network_tile(height, width, options, self.tiling.context, budget)

    def _grid(self) -> int:
        return self.tiling.grid if self.tiling is not None else super()._grid()

    @torch.inference_mode()
    def _stylize_tiled(self, rgb: Image.Image, tile: int, overlap: int, progress: bool = False) -> Image.Image:
        x, small = self._tiling_inputs(rgb)
        h, w = x.shape[2:]
        x, overlap = self._to_grid(x, overlap)
        feeds = self._style_inputs()
        stats = self.tiling.statistics(self._run, small, self.input_name, feeds)
        session = self.tiling.tiles_session()

        def forward(t: torch.Tensor) -> torch.Tensor:  # a tile (1, 3, h, w) in [0, 1] -> its stylization
            inp = np.ascontiguousarray(t.numpy(), dtype=np.float32)
            label = shape_text(inp.shape)
            return self._image(self._run(session, {self.input_name: inp, **feeds, **stats}, label)[0], inp.shape, label)
        y, self.last_tile_count = blend_tiles(forward, x, tile, overlap, self.tiling.context, progress)
        return tensor_to_pil(y[0, :, :h, :w])


def _metadata_int(text: Optional[str]) -> Optional[int]:
    """A step or version number from the model's metadata (untrusted text); None if it is not one.
    (``str.isdigit`` accepts superscripts such as '²', which int() refuses.)"""
    if not isinstance(text, str) or not text.isascii() or not text.isdecimal() or len(text) > _MAX_DIGITS:
        return None
    return int(text)


def _check_signature(session, path: Path, meta: dict[str, str]) -> tuple[list[str], Optional[ImageStyleInputs]]:
    """Check the graph's inputs and outputs: (the style names of a multi-style export (its second
    input: the weights (S,), in the order of metadata ``style_names``), else []; the style inputs
    of an arbitrary-style export (metadata ``style_input`` "image"), else None)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    image_style = meta.get("style_input") == "image"
    if len(inputs) not in ((2, 3) if image_style else (1, 2)) or len(outputs) != 1:
        expected = ("the photo, the style image and optionally alpha in" if image_style else
                    "one image in (and optionally the style weights)")
        raise CheckpointError(f"{path}: not a style transfer model: it has {len(inputs)} inputs and "
                              f"{len(outputs)} outputs, expected {expected} and one out. Export models "
                              "with python -m fast_nst.export.")
    for kind, arg in (("input", inputs[0]), ("output", outputs[0])):
        shape = arg.shape
        channels_ok = len(shape) == 4 and (shape[1] == 3 or not isinstance(shape[1], int))
        if arg.type != "tensor(float)" or not channels_ok:
            raise CheckpointError(f"{path}: not a style transfer model: its {kind} is {quote(arg.type, 40)} "
                                  f"of shape {quote(shape, 60)}, expected float (N, 3, H, W). {_EXPORT_HINT}")
    if image_style:
        return [], _image_style_inputs(inputs, meta, path)
    return (_style_input(inputs[1], meta, path) if len(inputs) == 2 else []), None


def _image_style_inputs(inputs: Sequence[Any], meta: dict[str, str], path: Path) -> ImageStyleInputs:
    """The style inputs of an arbitrary-style export: the second, float (1, 3, h, w); the third,
    if any, alpha, float (1,) or a scalar. CheckpointError naming the input otherwise."""
    style, shape = inputs[1], inputs[1].shape
    fits = lambda dim, n: dim == n or not isinstance(dim, int)  # a symbolic size takes any
    if style.type != "tensor(float)" or len(shape) != 4 or not (fits(shape[0], 1) and fits(shape[1], 3)):
        raise CheckpointError(f"{path}: its metadata says it takes a style image, but its second input "
                              f"{quote(style.name, 40)} is {quote(style.type, 40)} of shape {quote(shape, 60)}; "
                              f"an arbitrary-style export's is float (1, 3, h, w). {_EXPORT_HINT}")
    alpha = ""
    if len(inputs) == 3:
        arg = inputs[2]
        if arg.type != "tensor(float)" or list(arg.shape) not in ([], [1]):
            raise CheckpointError(f"{path}: its third input {quote(arg.name, 40)} is {quote(arg.type, 40)} of "
                                  f"shape {quote(arg.shape, 60)}; an arbitrary-style export's alpha is float "
                                  f"(1,). {_EXPORT_HINT}")
        alpha = arg.name
    least = _metadata_int(meta.get("style_min_side"))
    if least is None or not 1 <= least <= _MAX_STYLE_MIN_SIDE:
        least = _DEFAULT_STYLE_MIN_SIDE
    return ImageStyleInputs(style.name, alpha, least)


def _style_input(arg, meta: dict[str, str], path: Path) -> list[str]:
    """The style names for the second input ``arg``, which must be float (S,) with S static and
    metadata ``style_names`` a JSON list of S distinct names (untrusted: checked, bounded)."""
    shape = arg.shape
    count = shape[0] if len(shape) == 1 and isinstance(shape[0], int) else None
    if arg.type != "tensor(float)" or count is None or not 1 <= count <= MAX_STYLES:
        raise CheckpointError(f"{path}: not a style transfer model: its second input {quote(arg.name, 40)} "
                              f"is {quote(arg.type, 40)} of shape {quote(shape, 60)}; a multi-style "
                              f"export's is float (S,) with 1 <= S <= {MAX_STYLES}. {_EXPORT_HINT}")
    names, problem = _parse_style_names(meta.get("style_names"), count)
    if problem:
        raise CheckpointError(f"{path}: its second input {quote(arg.name, 40)} takes {count} style weights, "
                              f"but {problem}, so which style is which is unknown. Re-export it with "
                              "python -m fast_nst.export (which writes the names), or bake one style "
                              "into a single-input file: python -m fast_nst.export MODEL.pth --style NAME.")
    return names


def _parse_style_names(text: Any, count: int) -> tuple[list[str], str]:
    """(names, "") from metadata ``style_names``, or ([], what is wrong with it)."""
    if not isinstance(text, str):
        return [], "its metadata has no style_names"
    # Each name at most _MAX_STYLE_NAME characters of up to 6 in JSON (\uXXXX), quotes and ", ".
    if len(text) > count * (6 * _MAX_STYLE_NAME + 4) + 2:
        return [], f"its metadata style_names is {len(text):,} characters long, too long for {count} names"
    try:  # a flat list of strings: depth 1
        names = load_json(text, "style_names", CheckpointError, max_depth=1)
    except CheckpointError:
        return [], f"its metadata style_names {quote(text, 60)} is not JSON of a flat list of names"
    if (not isinstance(names, list) or len(names) != count
            or not all(isinstance(n, str) and 0 < len(n) <= _MAX_STYLE_NAME for n in names)
            or len(set(names)) != count):
        return [], (f"its metadata style_names is {quote(names, 80)}, not {count} distinct names "
                    f"of 1 to {_MAX_STYLE_NAME} characters")
    return names, ""


def _check_format_version(meta: dict[str, str], path: Path) -> None:
    version = meta.get("format_version")
    if meta.get("format") == "fast-nst" and version is not None:
        number = _metadata_int(version)
        if number is None or number > EXPORT_FORMAT_VERSION:
            raise CheckpointError(f"{path}: exported by a newer fast-nst (export format version "
                                  f"{quote(version, 40)}); this version reads up to {EXPORT_FORMAT_VERSION}. "
                                  "Upgrade fast-nst to load it.")


def _read_model(path: Path) -> bytes:
    """The bytes of the .onnx file ``path`` (bounded by MAX_ONNX_BYTES; CheckpointError if larger)."""
    try:
        return read_onnx_file(path, MAX_ONNX_BYTES)
    except DataError as e:
        raise CheckpointError(str(e)) from None


def _session(path: Path, data: bytes, options: Any, providers: list) -> Any:
    """An onnxruntime session of the graph ``data`` read from ``path``; CheckpointError for a
    file onnxruntime does not take (a TorchScript export given an .onnx name said as such)."""
    try:
        return onnx_session(data, MAX_ONNX_BYTES, options, providers)
    except Exception as e:
        if is_torchscript(path):
            raise torchscript_error(path) from None
        detail = " ".join(str(e).split())[:300]
        raise CheckpointError(f"{path}: not a valid ONNX model, or the file is damaged "
                              f"({type(e).__name__}: {detail}). Export models with "
                              "python -m fast_nst.export.") from None


def _check_precision(precision: str) -> None:
    """FastNSTError unless ``precision`` is "fp32": onnxruntime runs the graph as it was exported."""
    if precision != "fp32":
        # OpenVINO (load_stylizer's runtime="openvino") is what runs an .onnx file in bf16.
        openvino = "; OpenVINO runs .onnx files in bf16: --runtime openvino" if precision == "bf16" else ""
        raise FastNSTError(f"precision {precision!r} is not available for .onnx models in onnxruntime (the graph "
                           "runs as it was exported: float32, or int8 if quantized); use fp32, or the .pth "
                           f"checkpoint for bf16/fp16{openvino}.")


def _info(path: Path, meta: dict[str, str], session: Any) -> dict[str, Any]:
    """The stylizer's ``info`` of the export ``path``: its metadata, providers and step."""
    info = {"path": str(path), "format": "onnx", "metadata": dict(meta), "providers": session.get_providers()}
    step = _metadata_int(meta.get("step"))
    if step is not None:
        info["step"] = step
    return info


def load_onnx_stylizer(path: Union[str, Path], device: str = "auto",
                       precision: str = "fp32") -> OnnxStylizer:
    """Load an exported ``.onnx`` model for stylizing with onnxruntime.

    ``device``: "auto" (CUDA when both torch and onnxruntime have it, else CPU), "cpu", "cuda"
    or "cuda:N". ``precision``: only "fp32": the graph runs as it was exported (a quantized
    export, fast-nst's or another tool's, runs in int8, and the stylizer's ``precision`` says so).
    A multi-style export (second input: the style weights) starts in its first style; choose
    another with ``set_style``. An arbitrary-style export (second input: the style image)
    stylizes once ``set_style`` gave it a style image.
    Raises :class:`~fast_nst.core.errors.FastNSTError` if onnxruntime is missing and
    :class:`~fast_nst.core.errors.CheckpointError` for a missing, corrupt or foreign file.
    """
    path = Path(path)
    _check_precision(precision)
    require_model_file(path)
    if is_torchscript(path):  # a TorchScript export given an .onnx name: say so, onnxruntime or not
        raise torchscript_error(path)
    ort = _import_onnxruntime()
    dev = resolve_device(device)
    if device == "auto" and dev.type == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        dev = torch.device("cpu")
    options = ort.SessionOptions()
    # Fatal only: every error (a damaged file, a node failing while running) reaches us as an
    # exception and becomes one line of ours; onnxruntime would also print each, in colour.
    options.log_severity_level = 4
    data = _read_model(path)
    if dev.type == "cpu":  # an int8 export rewritten for onnxruntime's CPU kernels (exact; int8_graph)
        data = for_onnxruntime(data, MAX_ONNX_BYTES)
    session = _session(path, data, options, _providers(ort, dev))
    if dev.type == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        # onnxruntime-gpu falls back to CPU silently when its CUDA libraries fail to load.
        if device != "auto":
            raise FastNSTError(
                f"device '{device}' requested, but onnxruntime could not start its CUDA provider "
                f"(it runs on: {', '.join(session.get_providers())}); check that onnxruntime-gpu "
                "matches the installed CUDA and cuDNN, or use --device cpu.")
        dev = torch.device("cpu")
    meta = session.get_modelmeta().custom_metadata_map or {}
    style_names, image_style = _check_signature(session, path, meta)
    _check_format_version(meta, path)
    name = meta.get("name") or meta.get("naming") or path.stem
    providers = _providers(ort, dev)

    def make_session(graph: bytes, arena: bool) -> Any:  # the graphs tiles run (onnx_tiling)
        tile_options = ort.SessionOptions()
        tile_options.log_severity_level = options.log_severity_level
        tile_options.enable_cpu_mem_arena = arena
        return onnx_session(graph, MAX_ONNX_BYTES, tile_options, providers)
    tiling = tiling_for(data, MAX_ONNX_BYTES, meta, make_session)
    stylizer = OnnxStylizer(session, dev, name=name, info=_info(path, meta, session), style_names=style_names,
                            image_style=image_style, tiling=tiling)
    if runs_int8(data, MAX_ONNX_BYTES):  # a quantized export runs as it is: say so, not "fp32"
        stylizer.precision = "int8"
    return stylizer
