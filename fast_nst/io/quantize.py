"""int8 post-training quantization of an ONNX export, for stylizing on a CPU (onnxruntime).

    python -m fast_nst.export models/wave/wave.pth --quantize int8 --output wave.int8.onnx
    python -m fast_nst.export wave.pth --quantize int8 --calibration_images photos/

onnxruntime's *static* quantization in QDQ form: every convolution gets int8 weights (one scale
per output channel) and uint8 activations whose scales come from running the float32 export on
a few calibration images (min/max of each convolution's input). Instance norm, the residual
additions and the output mapping stay in float32: they normalise with statistics a low-precision
input would skew (and onnxruntime has no int8 instance norm). The first and the last
convolution stay in float32 too: with 3 input or 12 output channels their int8 forms are no
faster here and cost 0.8-2.3 dB (docs/benchmarks.md). The interleave after each
upsampling convolution (``DepthToSpace``, see :mod:`fast_nst.nets.exportable`) runs on the int8
values, which onnxruntime moves 4x faster than float32 ones (~10 % of the forward).
So do the reflection pads in front of the int8 convolutions: :func:`pad_quantized_values` moves
each quantization before its pad (the same values; 10-13 % of the forward). When fast-nst loads
an int8 export into onnxruntime, it also splits each instance norm into channel groups that stay
in the cache and writes each interleave as block moves of the channels-last map onnxruntime's
int8 convolutions produce (:mod:`fast_nst.io.int8_graph`; exact, 5-8 % and 7-11 % faster).

A multi-style export keeps its style-weights input (every style and blend runs from the one int8
file) and is calibrated on each of its styles in turn (:func:`calibration_feeds`); arbitrary-style
models (a style image as input) are not quantized.

Calibration images: photos from ``--calibration_images`` (resized to :data:`CALIBRATION_SIZE`),
or by default :func:`synthetic_calibration`, a fixed set of generated images with photo-like
structure (smooth shading, edges, fine texture). Every convolution after the first reads the
output of an instance norm, whose range barely depends on the photo, so the generated set calibrates
about as well as photos do (measured in docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import DataError, FastNSTError
from ..core.files import atomic_write
from ..core.images import list_images, pil_to_tensor, psnr
from ..core.untrusted import input_folder, onnx_session, open_image, read_onnx_file, read_onnx_model
from ..nets.base import StyleNetwork
from ..nets.multistyle import MAX_STYLES
from .int8_graph import is_quantized, pad_quantized_values
from .export import (MAX_ONNX_BYTES, ONNX_INSTALL_HINT, STYLE_INPUT_NAME, ExportError, export_metadata,
                     export_onnx, installed, require_onnx, takes_style_image)
from .model_export import export_model

__all__ = ["CALIBRATION_COUNT", "CALIBRATION_SIZE", "QUANTIZE_MODES", "calibration_feeds",
           "calibration_from_folder", "check_quantizable", "export_quantized", "is_quantized",
           "pad_quantized_values", "quantize_network", "quantize_onnx", "quantized_psnr",
           "require_quantization", "style_count", "synthetic_calibration"]

QUANTIZE_MODES = ("int8",)
# Side of the calibration images: the activations' ranges hardly change with the image size
# (instance norm), and 256 px keeps calibration to a few seconds on a CPU.
CALIBRATION_SIZE = 256
# Images calibrated on: 8 already fix each convolution's range to a few percent (min/max).
CALIBRATION_COUNT = 8


def require_quantization() -> None:
    """FastNSTError naming the install command when onnxruntime (with its quantization tools),
    onnx or onnxscript are missing."""
    require_onnx()
    if not installed("onnxruntime.quantization"):  # part of onnxruntime; checked, not imported here
        raise FastNSTError(f"int8 quantization needs onnxruntime's quantization tools (onnxruntime.quantization "
                           f"not found). Install them with: {ONNX_INSTALL_HINT}")


def synthetic_calibration(count: int = CALIBRATION_COUNT, size: int = CALIBRATION_SIZE,
                          seed: int = 0) -> list[np.ndarray]:
    """``count`` generated images, each (1, 3, size, size) float32 in [0, 1]: noise summed over
    four octaves (shading and texture), a colour gradient and a few flat rectangles (edges),
    the same for every call with the same arguments."""
    g = torch.Generator().manual_seed(seed)
    images = []
    for _ in range(count):
        x = torch.zeros(1, 3, size, size)
        for octave, weight in ((4, 0.5), (16, 0.25), (64, 0.15), (size, 0.1)):
            noise = torch.rand(1, 3, octave, octave, generator=g)
            x += weight * F.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)
        ramp = torch.linspace(-0.2, 0.2, size)
        x += ramp.view(1, 1, 1, -1) * torch.rand(1, 3, 1, 1, generator=g)
        for _ in range(3):
            t, l = (int(v) for v in torch.randint(0, size * 3 // 4, (2,), generator=g))
            x[..., t:t + size // 4, l:l + size // 4] = torch.rand(1, 3, 1, 1, generator=g)
        images.append(x.clamp_(0, 1).numpy())
    return images


def calibration_from_folder(folder: str | Path, count: int = CALIBRATION_COUNT,
                            size: int = CALIBRATION_SIZE) -> list[np.ndarray]:
    """The first ``count`` images of ``folder`` (sorted by name), each resized to ``size`` x
    ``size``, as (1, 3, size, size) float32 in [0, 1]; DataError for a folder without images."""
    files = list_images(input_folder(folder, "--calibration_images"), recursive=False)[:count]
    if not files:
        raise DataError(f"--calibration_images {folder} holds no images; give a folder of a few photos.")
    return [pil_to_tensor(open_image(f).convert("RGB").resize((size, size))).unsqueeze(0).numpy()
            for f in files]


def style_count(model, where: str = "the export") -> int:
    """How many styles the export ``model`` (an ``onnx.ModelProto``) takes weights for: the length of
    its :data:`~fast_nst.io.export.STYLE_INPUT_NAME` input (a multi-style export); 0 for a
    single-style one. ExportError for a style input without one fixed length of at most
    :data:`~fast_nst.nets.multistyle.MAX_STYLES` (not fast-nst's)."""
    for value in model.graph.input:
        if value.name == STYLE_INPUT_NAME:
            dims = value.type.tensor_type.shape.dim
            if len(dims) != 1 or not 0 < dims[0].dim_value <= MAX_STYLES:
                raise ExportError(f"{where}: its {STYLE_INPUT_NAME!r} input is not one weight for each of 1 to "
                                  f"{MAX_STYLES} styles, so it cannot be calibrated; export the model again "
                                  "with python -m fast_nst.export.")
            return int(dims[0].dim_value)
    return 0


def calibration_feeds(images: Sequence[np.ndarray], styles: int, input_name: str = "input") -> list[dict]:
    """The inputs to calibrate (or compare) an export on: each image (1, 3, H, W) float32 in
    [0, 1]; for a multi-style export (``styles`` > 0) with the one-hot weights of one style,
    every style in turn, and at least one image per style (max(len(images), styles) feeds), so
    that each convolution's range covers every style's activations."""
    feeds, one_hot = [], np.eye(styles, dtype=np.float32)
    for k in range(max(len(images), styles)):
        feed = {input_name: np.ascontiguousarray(images[k % len(images)], dtype=np.float32)}
        if styles:
            feed[STYLE_INPUT_NAME] = one_hot[k % styles]
        feeds.append(feed)
    return feeds


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: Sequence[dict]):
        self.feeds = iter(feeds)

    def get_next(self) -> Optional[dict]:
        return next(self.feeds, None)

    def rewind(self) -> None:  # part of the protocol; each reader is used once
        pass


def _float_ends(graph) -> list[str]:
    """Names of the nodes kept in float32: the first and the last conv, and what reads the last
    conv's output (the output interleave: quantizing it would round the output itself)."""
    convs = [n for n in graph.node if n.op_type == "Conv"]
    if len(convs) <= 2:
        return []
    last_out = convs[-1].output[0]
    return [convs[0].name, convs[-1].name] + [n.name for n in graph.node if last_out in n.input]


def quantize_onnx(source: str | Path, output: str | Path, images: Optional[Sequence[np.ndarray]] = None,
                  input_name: str = "input", float_ends: bool = True) -> None:
    """Write an int8 (QDQ) quantization of the float32 ONNX export ``source`` to ``output``,
    calibrated on ``images`` (each (1, 3, H, W) float32 in [0, 1]; default
    :func:`synthetic_calibration`; a multi-style export on each of its styles in turn, see
    :func:`calibration_feeds`). Only the convolutions (and the interleaves after them) are
    quantized (see the module's docs); metadata and the graph's inputs and outputs (a multi-style
    export's style weights among them) are kept."""
    require_quantization()
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = synthetic_calibration() if images is None else images
    data = read_onnx_file(source, MAX_ONNX_BYTES)
    original = read_onnx_model(data, MAX_ONNX_BYTES)
    logger = logging.getLogger()  # onnxruntime's quantizer logs its progress on the root logger
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="fast-nst-quantize-") as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            # The quantizer's tools read paths: they get a copy alone in a fresh folder, where
            # external data the model names cannot resolve (see core.untrusted.onnx_files).
            copy = Path(tmp) / "source.onnx"
            copy.write_bytes(data)
            # Shape inference and constant folding first, as onnxruntime recommends for static
            # quantization (it finds the per-channel axes and folds the padding index arithmetic).
            quant_pre_process(str(copy), str(prepared), skip_symbolic_shape=True)
            exclude = _float_ends(read_onnx_model(prepared, MAX_ONNX_BYTES).graph) if float_ends else []
            feeds = calibration_feeds(images, style_count(original, str(source)), input_name)
            quantize_static(str(prepared), str(output), _Reader(feeds),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv", "DepthToSpace"],
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            nodes_to_exclude=exclude)
    finally:
        logger.setLevel(level)
    quantized = read_onnx_model(output, MAX_ONNX_BYTES)
    pad_quantized_values(quantized.graph)
    del quantized.metadata_props[:]
    for prop in original.metadata_props:
        quantized.metadata_props.add(key=prop.key, value=prop.value)
    quantized.metadata_props.add(key="quantization", value="int8")
    quantized.doc_string = original.doc_string + " Convolutions quantized to int8 (QDQ)."
    onnx.save_model(quantized, str(output))


def quantized_psnr(float_model: str | Path, int8_model: str | Path, images: Sequence[np.ndarray]) -> float:
    """Mean PSNR (dB, pixels in [0, 1]) of the int8 export's outputs against the float32 one's
    on ``images`` (each (1, 3, H, W) float32 in [0, 1]; a multi-style export in each of its
    styles, as :func:`calibration_feeds`), both run by onnxruntime on the CPU."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    runs = [onnx_session(m, MAX_ONNX_BYTES, options) for m in (float_model, int8_model)]
    styles = style_count(read_onnx_model(float_model, MAX_ONNX_BYTES))
    feeds = calibration_feeds(images, styles, runs[0].get_inputs()[0].name)
    return float(np.mean([psnr(*(r.run(None, feed)[0] for r in runs)) for feed in feeds]))


def check_quantizable(where: str, style_input: bool, fix: str = "export it without --quantize") -> None:
    """FastNSTError if the model at ``where`` takes a ``style_input`` image (an arbitrary-style
    model, whose int8 form is not calibrated here), ending with what to do instead (``fix``: the
    export command's by default; loading gives its own); single- and multi-style models pass."""
    if style_input:
        raise FastNSTError(f"{where} is an arbitrary-style model: int8 quantization is for single- and "
                           f"multi-style models; {fix}.")


def quantize_network(net: StyleNetwork, ckpt: dict, model_path: Path, output: Path,
                     images: Optional[Sequence[np.ndarray]] = None) -> None:
    """Export the single- or multi-style ``net`` (loaded from ``model_path``, ``ckpt`` its
    checkpoint dict) to float32 ONNX and write its int8 quantization to ``output``."""
    check_quantizable(str(model_path), takes_style_image(net))
    with tempfile.TemporaryDirectory(prefix="fast-nst-int8-") as tmp:
        source = Path(tmp) / "float32.onnx"
        export_onnx(net, source, metadata=export_metadata(net, ckpt, model_path))
        quantize_onnx(source, output, images)


def export_quantized(model_path: str | Path, output: str | Path, calibration_images: Optional[str | Path] = None,
                     **export_args) -> dict:
    """``python -m fast_nst.export M --quantize int8``: the float32 export of :func:`export_model`
    (checked against PyTorch), quantized to int8 into ``output``. Returns export_model's summary
    plus ``psnr``: the int8 export's mean PSNR against the float32 one on the calibration images."""
    output = Path(output)
    if output.suffix.lower() in (".pt", ".pth", ".safetensors") or export_args.get("fmt") not in (None, "onnx"):
        raise ExportError("--quantize int8 writes an ONNX file: use --format onnx and an .onnx --output.")
    require_quantization()
    images = calibration_from_folder(calibration_images) if calibration_images is not None else None

    def quantizable(net: StyleNetwork) -> None:  # run by export_model before its slow export
        check_quantizable(str(model_path), takes_style_image(net))

    with tempfile.TemporaryDirectory(prefix="fast-nst-int8-") as tmp:
        source = Path(tmp) / "float32.onnx"
        summary = export_model(model_path, source, **{**export_args, "fmt": "onnx"}, check_net=quantizable)
        images = synthetic_calibration() if images is None else images
        output.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(output) as partial:
            quantize_onnx(source, partial, images)
            summary["psnr"] = quantized_psnr(source, partial, images)
    summary.update(output=output, bytes=output.stat().st_size, quantize="int8",
                   calibration=str(calibration_images) if calibration_images is not None else "generated")
    return summary
