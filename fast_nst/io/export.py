"""Export a trained transform net to ONNX or TorchScript, checked against PyTorch before success.

    python -m fast_nst.export models/wave/wave.pth --format onnx --output wave.onnx
    python -m fast_nst.export models/wave/wave.pth --format torchscript --output wave.pt

The exported graph takes ``input`` (N, 3, H, W) float32 RGB in [0, 1] with dynamic N, H and W
(any H, W >= 1, including sizes not divisible by 4 and tiny ones like 3 x 7) and returns
``output`` of the same shape in [0, 1]: exactly what :meth:`fast_nst.stylize.Stylizer.stylize_tensor`
computes. See docs/export.md.

A multi-style network (non-empty ``net.style_names``) is exported with a second input ``style``:
the weights (S,) float32 of its styles, in ``style_names`` order (stored in the metadata), >= 0
and summing to 1. ``model_export.export_model(..., style=...)`` instead bakes one style or blend into an
ordinary one-input file (:meth:`~fast_nst.nets.multistyle.MultiStyleNet.for_style`).

An arbitrary-style network (registry ``style_input`` "image", model_type adain) is exported with
two more inputs: ``style_image`` (1, 3, h, w) float32 RGB in [0, 1] with dynamic h, w (each at
least the network's ``min_style_side``, 16 px for an encoder to relu4_1), and ``alpha`` (1,)
float32 in [0, 1]; the graph computes the style statistics itself (the network's own exportable form). It has
no TorchScript form (its encoder does not script) and no baked style.

The network's own :meth:`~fast_nst.nets.base.StyleNetwork.exportable` form is exported (for the
Johnson net, :class:`~fast_nst.nets.exportable.ExportableTransformNet`, which keeps the sizes
symbolic), with ``torch.export.export`` and explicit ``Dim``s first, which fails loudly instead
of specialising, and the ExportedProgram is then translated by ``torch.onnx.export``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from ..core.device import require_torch
from ..core.errors import FastNSTError, quote
from ..core.images import shape_text
from ..core.version import __min_torch_onnx__, __version__
from ..core.untrusted import onnx_session
from ..nets import MAX_PARAMETERS
from ..nets import takes_style_image as _takes_style_image
from ..nets.base import StyleNetwork
from .checkpoint import FORMAT_NAME

__all__ = ["ALPHA_INPUT_NAME", "CHECK_SHAPES", "EXPORT_FORMAT_VERSION", "ExportError", "FORMATS",
           "MAX_ONNX_BYTES",
           "STYLE_IMAGE_INPUT_NAME", "TOLERANCE", "TORCHSCRIPT_METADATA", "MIN_OPSET",
           "LOSS_CONFIG_KEYS", "MAX_LOSS_CONFIG", "STYLE_INPUT_NAME", "check_exported", "check_opset",
           "check_style_sizes", "export_metadata",
           "export_onnx", "export_torchscript", "metadata_text", "refuse_torchscript", "require_onnx",
           "require_onnx_export", "takes_style_image"]

#: Version of the exported-file layout (input/output names, metadata keys); readers check it.
EXPORT_FORMAT_VERSION = 1
FORMATS = ("onnx", "torchscript")
#: Shapes every export is checked on: batch 1 and 2, sizes divisible by 4 and not, and a size
#: smaller than the network's minimum of 8 (the replicate-padding branch).
CHECK_SHAPES: tuple[tuple[int, int, int, int], ...] = ((1, 3, 64, 96), (2, 3, 50, 37), (1, 3, 3, 7))
#: Largest allowed max-abs difference between the exported model and PyTorch, on [0, 1] pixels.
TOLERANCE = 1e-3
#: torch's ONNX exporter implements opset 18 and newer; lower versions are not converted reliably.
MIN_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "output"
#: The second input of a multi-style export: the style weights (S,) float32, summing to 1.
STYLE_INPUT_NAME = "style"
#: The further inputs of an arbitrary-style (AdaIN) export: the style image (1, 3, h, w) float32
#: in [0, 1], h and w dynamic, and alpha (1,) float32 in [0, 1].
STYLE_IMAGE_INPUT_NAME, ALPHA_INPUT_NAME = "style_image", "alpha"
#: The alphas an AdaIN export is checked with, one per style-image size of check_style_sizes:
#: the full style (the default) and a partial one (the blend with the photo's own features).
_CHECK_ALPHAS = (1.0, 0.35)
TORCHSCRIPT_METADATA = "fast_nst.json"  # name of the metadata file inside a TorchScript archive
ONNX_INSTALL_HINT = 'pip install -e ".[onnx]"'
#: The largest .onnx file read: the registry's largest network (MAX_PARAMETERS float32 weights,
#: 800 MB) and room for its graph and metadata. (One protobuf message cannot exceed 2 GB anyway.)
MAX_ONNX_BYTES = 4 * MAX_PARAMETERS + (64 << 20)
# An example input for tracing: batch 2 and sizes above 1 so torch.export does not specialise them.
_EXAMPLE_SHAPE = (2, 3, 50, 37)


class ExportError(FastNSTError):
    """Exporting failed, or the exported model does not match PyTorch."""


# ---- metadata ----------------------------------------------------------------------------------

#: Longest text copied from a checkpoint into the metadata (names are a few words).
_MAX_META_TEXT = 200


#: The training config's fields a quality report measures a model with (the layers, weights and
#: loss networks of fast_nst.report.collect.loss_settings), stored as JSON in metadata
#: ``loss_config``: an export is measured as the checkpoint it came from. Its style images go by
#: file name only (multi-style weights are matched by name; a path may name a private file).
LOSS_CONFIG_KEYS = ("model_type", "naming", "loss_model", "loss_weights_for", "content_layers", "style_layers",
                    "content_weight", "style_weight", "style_layer_weights", "style_size", "style_weights")
#: Longest ``loss_config`` written or read (a few hundred characters for any real config).
MAX_LOSS_CONFIG = 8000


def _loss_config(config: dict) -> str:
    """``config``'s :data:`LOSS_CONFIG_KEYS` (and style image names) as JSON, "" when it has
    none or they are not plain JSON of a bounded size (a checkpoint is untrusted input)."""
    # Only plain values, checked before json.dumps: a nested list of shared references takes
    # minutes and gigabytes to write out however short the file that holds it.
    found = {k: config[k] for k in LOSS_CONFIG_KEYS if k in config and _plain(config[k])}
    images = config.get("style_images")
    if isinstance(images, list) and _plain(images):
        found["style_images"] = [Path(s).name if isinstance(s, str) else s for s in images]
    try:
        text = json.dumps(found, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        return ""
    return text if found and len(text) <= MAX_LOSS_CONFIG else ""


def _plain(value: Any) -> bool:
    """A number, bool, None, short string, or a short flat list of them."""
    scalar = lambda v: v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 1000)  # noqa: E731
    return scalar(value) or (isinstance(value, (list, tuple)) and len(value) <= 256 and all(map(scalar, value)))


def metadata_text(value: Any) -> str:
    """``value`` from a checkpoint (untrusted: str() of a nested structure can be unbounded) as
    at most :data:`_MAX_META_TEXT` characters."""
    return value[:_MAX_META_TEXT] if isinstance(value, str) else quote(value, _MAX_META_TEXT)


def export_metadata(net: StyleNetwork, ckpt: dict[str, Any], model_path: Path) -> dict[str, str]:
    """String key/value pairs stored in the exported file (ONNX metadata_props, or
    ``fast_nst.json`` inside a TorchScript archive). ``ckpt`` is :func:`load_model`'s dict (for
    a pytorch/examples model converted on the fly it has no step or format version)."""
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    name = config.get("naming") or model_path.stem
    meta = {
        "format": FORMAT_NAME,
        "format_version": str(EXPORT_FORMAT_VERSION),
        "fast_nst_version": __version__,
        "name": metadata_text(name),
        "naming": metadata_text(config.get("naming") or ""),
        "style_image": Path(metadata_text(config.get("style_image") or "")).name,
        "step": "" if ckpt.get("step") is None else metadata_text(ckpt["step"]),
        "model_type": net.model_type,
        "model_args": json.dumps(net.args.to_dict(), sort_keys=True),
        "source": model_path.name,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "layout": "NCHW, RGB, float32; N, H and W dynamic (H, W >= 1)",
        "input_range": "[0, 1]",
        "output_range": "[0, 1]",
    }
    loss = _loss_config(config)
    if loss:
        meta["loss_config"] = loss
    if ckpt.get("format_version") is not None:
        meta["checkpoint_format_version"] = metadata_text(ckpt["format_version"])
    if ckpt.get("converted_from"):
        meta["converted_from"] = metadata_text(ckpt["converted_from"])
    if net.style_names:  # the order of the style input's weights
        meta["style_names"] = json.dumps(list(net.style_names))
        meta["style_input"] = STYLE_INPUT_NAME
    if takes_style_image(net):
        meta["style_input"] = "image"  # as the registry's NetworkEntry.style_input
        meta["style_min_side"] = str(net.min_style_side)
        meta["style_layout"] = "(1, 3, h, w) float32 RGB in [0, 1]; h, w dynamic, >= style_min_side"
        meta["alpha_range"] = "[0, 1]"
    meta["input_names"] = json.dumps(_input_names(net))
    return meta


def takes_style_image(net: StyleNetwork) -> bool:
    """Whether ``net`` is an arbitrary-style network (registry ``style_input`` "image"), exported
    with the inputs :data:`STYLE_IMAGE_INPUT_NAME` and :data:`ALPHA_INPUT_NAME`."""
    return _takes_style_image(getattr(net, "model_type", ""))


def _input_names(net: StyleNetwork) -> list[str]:
    if takes_style_image(net):
        return [INPUT_NAME, STYLE_IMAGE_INPUT_NAME, ALPHA_INPUT_NAME]
    return [INPUT_NAME, STYLE_INPUT_NAME] if net.style_names else [INPUT_NAME]


def check_style_sizes(net: StyleNetwork) -> list[tuple[int, int]]:
    """The style-image sizes (h, w) an AdaIN export is checked with: the smallest the network
    takes (its ``min_style_side``) and one off its pooling grid, taller than wide."""
    least = int(net.min_style_side)
    return [(least, least + 3), (max(least, 37) + 13, max(least, 37))]


# ---- exporters ----------------------------------------------------------------------------------

def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (onnx and onnxscript take
    1-2 s to import, which a load that needs neither should not pay); a submodule's parent
    package is imported."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that fails to import; a module set to None
        return False


def _missing_onnx_packages() -> list[str]:
    return [module for module in ("onnx", "onnxruntime", "onnxscript") if not installed(module)]


def require_onnx() -> None:
    """Raise a :class:`FastNSTError` naming the install command when the optional ONNX packages
    are missing."""
    missing = _missing_onnx_packages()
    if missing:
        raise FastNSTError(f"ONNX export needs the optional packages onnx, onnxruntime and onnxscript "
                           f"(missing: {', '.join(missing)}). Install them with: {ONNX_INSTALL_HINT}")


def require_onnx_export() -> None:
    """:func:`require_onnx`, plus a torch new enough to export the network with free sizes."""
    require_onnx()
    require_torch(__min_torch_onnx__, "ONNX export", alternative=", or export TorchScript: --format torchscript")


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints, log messages and deprecation warnings."""
    buffer = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(buffer), \
            contextlib.redirect_stderr(buffer):
        warnings.simplefilter("ignore")
        yield buffer


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:500]


def _name_axes(proto, names: dict[int, dict[int, str]]) -> None:
    """Give the inputs' symbolic sizes readable names (torch calls them s0, s77, ...) in every
    shape of the graph, expressions such as ``2*s77 + 4`` included; ``names``: {input index:
    {axis: name}}. (ONNXProgram.rename_axes does this from torch 2.11 on; this works on the
    exporter's output of any version.)"""
    rename = {}
    for k, axes in names.items():
        dims = proto.graph.input[k].type.tensor_type.shape.dim
        rename.update({dims[i].dim_param: name for i, name in axes.items() if dims[i].dim_param})
    if not rename:
        return
    symbol = re.compile(r"\b(" + "|".join(re.escape(k) for k in rename) + r")\b")
    for info in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        for dim in info.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = symbol.sub(lambda m: rename[m.group(1)], dim.dim_param)


def check_opset(opset: Optional[int]) -> None:
    if opset is not None and opset < MIN_OPSET:
        raise ExportError(f"--opset {opset} is not supported: torch's ONNX exporter writes opset "
                          f"{MIN_OPSET} or newer.")


def _example_inputs(net: StyleNetwork) -> tuple[tuple, dict[str, Any], list[str]]:
    """(example arguments, dynamic shapes, input names) for capturing the network's exportable form: the
    image with dynamic N, H, W; for a multi-style network the style weights (S,), static; for an
    arbitrary-style one the style image (1, 3, h, w), h and w dynamic from ``min_style_side``
    (below it the deepest features have one pixel: no standard deviation), and alpha (1,)."""
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(_EXAMPLE_SHAPE, generator=generator)
    dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("height", min=1),
            3: torch.export.Dim("width", min=1)}
    if takes_style_image(net):
        least = int(net.min_style_side)
        # Sizes unlike the photo's and off the pooling grid, so that none is specialised.
        style = torch.rand(1, 3, least + 29, least + 42, generator=generator)
        style_dims = {2: torch.export.Dim("style_height", min=least),
                      3: torch.export.Dim("style_width", min=least)}
        return ((example, style, torch.tensor([0.5])), {"x": dims, "style_image": style_dims, "alpha": None},
                _input_names(net))
    if not net.style_names:
        return (example,), {"x": dims}, _input_names(net)
    # Any weights do: the style is a graph input, its example values are not baked in.
    style = torch.full((len(net.style_names),), 1.0 / len(net.style_names))
    return (example, style), {"x": dims, "style": None}, _input_names(net)


def export_onnx(net: StyleNetwork, path: str | Path, opset: Optional[int] = None,
                metadata: Optional[dict[str, str]] = None) -> int:
    """Write ``net`` as an ONNX file (weights inside, no external data); returns the opset.
    A multi-style ``net`` gets the second input :data:`STYLE_INPUT_NAME`, (S,) float32; an
    arbitrary-style one :data:`STYLE_IMAGE_INPUT_NAME` (1, 3, h, w) and :data:`ALPHA_INPUT_NAME`
    (1,), float32."""
    require_onnx_export()
    import onnx

    check_opset(opset)
    module = net.exportable().eval()
    example, dynamic_shapes, input_names = _example_inputs(net)
    with _quiet():
        try:
            # Explicit Dims: torch.export raises instead of specialising a size. (Passing the
            # module straight to torch.onnx.export would defer such guards to runtime asserts
            # and silently bake the example's size into the graph.)
            program = torch.export.export(module, example, dynamic_shapes=dynamic_shapes, strict=False)
            onnx_program = torch.onnx.export(program, example, input_names=input_names,
                                             output_names=[OUTPUT_NAME], opset_version=opset,
                                             dynamo=True, verbose=False)
            proto = onnx_program.model_proto
        except Exception as e:
            raise ExportError(f"ONNX export failed ({_first_line(e)}).") from None
    axes = {0: {0: "batch", 2: "height", 3: "width"}}
    if takes_style_image(net):
        axes[1] = {2: "style_height", 3: "style_width"}
    _name_axes(proto, axes)
    used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and used != opset:
        raise ExportError(f"the ONNX exporter could not write opset {opset} (it wrote opset {used} "
                          "instead); leave --opset out to use the exporter's default.")
    proto.doc_string = ("fast-nst fast neural style transfer network: input (N, 3, H, W) float32 "
                        "RGB in [0, 1] -> output of the same shape in [0, 1].")
    if net.style_names:
        proto.doc_string += (f" Input {STYLE_INPUT_NAME!r}: ({len(net.style_names)},) float32 weights "
                             ">= 0 summing to 1, one per style, in the order of metadata style_names.")
    if takes_style_image(net):
        proto.doc_string += (f" Input {STYLE_IMAGE_INPUT_NAME!r}: the style image (1, 3, h, w) float32 RGB "
                             f"in [0, 1], h, w >= {net.min_style_side}; {ALPHA_INPUT_NAME!r}: (1,) float32 "
                             "in [0, 1], 0 the photo's own features, 1 the full style.")
    del proto.metadata_props[:]
    for key, value in (metadata or {}).items():
        proto.metadata_props.add(key=key, value=value)
    proto.metadata_props.add(key="opset", value=str(used))
    onnx.save_model(proto, str(path))
    return int(used)


def export_torchscript(net: StyleNetwork, path: str | Path,
                       metadata: Optional[dict[str, str]] = None) -> None:
    """Write ``net`` as a scripted TorchScript archive (metadata in ``fast_nst.json``);
    :class:`ExportError` for an arbitrary-style network, which has no TorchScript form."""
    refuse_torchscript(net)
    with _quiet():
        try:
            scripted = torch.jit.script(net.exportable().eval())
            torch.jit.save(scripted, str(path),
                           _extra_files={TORCHSCRIPT_METADATA: json.dumps(metadata or {}, indent=1)})
        except OSError:
            raise
        except Exception as e:
            raise ExportError(f"TorchScript export failed ({_first_line(e)}).") from None


def refuse_torchscript(net: StyleNetwork) -> None:
    if takes_style_image(net):
        raise ExportError(f"an arbitrary-style model (model_type {net.model_type}) cannot be exported to "
                          "TorchScript: its VGG encoder does not script. Export it to ONNX (--format onnx, "
                          "an .onnx --output), which takes the style image and alpha as inputs.")


# ---- checking --------------------------------------------------------------------------------

def _runner(path: Path, fmt: str, names: Sequence[str]):
    """A function (x, extra) -> output tensor running the exported file: x (N, 3, H, W) float32
    and ``extra`` the tensors of the further inputs ``names[1:]`` (none for a single-style export)."""
    if fmt == "onnx":
        import onnxruntime as ort

        try:
            session = onnx_session(path, MAX_ONNX_BYTES)
        except Exception as e:
            raise ExportError(f"onnxruntime {ort.__version__} cannot load the exported model "
                              f"({_first_line(e)}).") from None

        def run_onnx(x: torch.Tensor, extra: Sequence[torch.Tensor]) -> torch.Tensor:
            feeds = {INPUT_NAME: x.numpy(), **{n: t.numpy() for n, t in zip(names[1:], extra)}}
            return torch.from_numpy(session.run([OUTPUT_NAME], feeds)[0])

        return run_onnx
    with _quiet():
        module = torch.jit.load(str(path), map_location="cpu")
    return lambda x, extra: module(x, *extra)


#: One check input besides the photo: (label, the export's further inputs, net's further arguments).
_Case = tuple[str, tuple, tuple]


def _check_cases(net: StyleNetwork, generator: torch.Generator) -> list[_Case]:
    """What an export of ``net`` is checked with besides the photos: nothing for a single-style
    network; for a multi-style one the last style alone and two random blends (all styles
    mixed); for an arbitrary-style one each of :func:`check_style_sizes` with an alpha."""
    if takes_style_image(net):
        cases = []
        for (h, w), alpha in zip(check_style_sizes(net), _CHECK_ALPHAS):
            style = torch.rand(1, 3, h, w, generator=generator)
            cases.append((f" with a {w}x{h} style image at alpha {alpha:g}", (style, torch.tensor([alpha])),
                          (style, alpha)))
        return cases
    count = len(net.style_names)
    if not count:
        return [("", (), ())]
    # -log(uniform) is Exp(1): normalised, a uniform (Dirichlet(1)) draw of the convex weights.
    blends = [-torch.rand(count, generator=generator).clamp_min(1e-12).log() for _ in range(2)]
    styles = [torch.eye(count)[-1]] + [b / b.sum() for b in blends]
    return [(f" with style weights {[round(v, 3) for v in w.tolist()]}"[:300], (w,), (w,)) for w in styles]


def check_exported(path: str | Path, fmt: str, net: StyleNetwork,
                   shapes: Sequence[Sequence[int]] = CHECK_SHAPES,
                   tolerance: Optional[float] = None) -> float:
    """Run the exported file on random inputs of each shape and compare with ``net``; returns
    the largest max-abs difference, or raises :class:`ExportError` above ``tolerance``.
    A multi-style export is compared with ``net(x, w)`` for each of :func:`_check_cases`' style
    vectors, an arbitrary-style one with ``net(x, style_image, alpha)`` for two style-image sizes."""
    tolerance = TOLERANCE if tolerance is None else tolerance
    run = _runner(Path(path), fmt, _input_names(net))
    generator = torch.Generator().manual_seed(1234)
    cases = _check_cases(net, generator)
    worst = 0.0
    for shape in shapes:
        x = torch.rand(tuple(shape), generator=generator)
        for case in cases:
            worst = max(worst, _check_one(run, net, x, case, tolerance))
    return worst


def _check_one(run, net: StyleNetwork, x: torch.Tensor, case: _Case, tolerance: float) -> float:
    """The max-abs difference of the export ``run`` from ``net`` on one input; ExportError above
    ``tolerance``, for a failed run or for a wrong shape."""
    label = shape_text(x.shape) + case[0]
    with torch.inference_mode():
        expected = net(x, *case[2])
        try:
            got = run(x, case[1])
        except Exception as e:
            raise ExportError(f"the exported model failed on an input of shape {label} "
                              f"({_first_line(e)}).") from None
    if tuple(got.shape) != tuple(expected.shape):
        raise ExportError(f"the exported model returned shape {tuple(got.shape)} for an input of "
                          f"shape {label}; expected {tuple(expected.shape)}.")
    diff = (got.float() - expected).abs().max().item()
    if not diff <= tolerance:  # also catches NaN
        raise ExportError(f"the exported model differs from PyTorch by {diff:.3g} (max abs) on an "
                          f"input of shape {label}; the tolerance is {tolerance:g}.")
    return diff

