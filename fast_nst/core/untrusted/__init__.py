"""The one boundary for data that comes from outside fast-nst: config files and overrides, JSON,
model and weight files, images, downloads, uploads, metadata, and any text from them that is shown
to a person.

Everything here bounds what it reads before it does the work (bytes, pixels, nesting depth,
time) and ends in a value or one :class:`~fast_nst.core.errors.FastNSTError` whose message
is safe to print. Nothing outside this package opens outside data raw: the architecture test
(tests/test_architecture.py) refuses a direct ``yaml.safe_load``, ``json.load(s)``,
``torch.load``, URL open or ``Image.open`` of a user's path anywhere else.

| module | what comes in through it |
| --- | --- |
| :mod:`.text` | any outside string shown in a message or on a terminal |
| :mod:`.structured` | YAML (configs, ``--set`` values) and JSON (metadata, indexes, lock files): bytes, depth, alias expansion, duplicate keys; unpickled plain data (a checkpoint's config): values, characters and depth, shared references counted each time |
| :mod:`.archives` | every ``torch.load``: checkpoints, loss-network and encoder weights (regular file, bytes on disk, sizes declared in the zip, weights-only, fast-nst's own messages) |
| :mod:`.onnx_files` | ``.onnx`` model files: bytes, then parsed from memory, so that paths a model names (external data) are never opened |
| :mod:`.safetensors_header` | ``.safetensors`` model files: header length and JSON depth before reading, dtypes, offsets inside the file and not overlapping, shapes against the network before any tensor is read |
| :mod:`.weights` | a model file's tensors against the network they are for (names, dtype kinds, shapes, finite values), one check for .pth, .safetensors and pytorch/examples files |
| :mod:`.numbers` | numbers bound for tensors (style and blend weights): finite, inside float32's range |
| :mod:`.paths` | a path a user names as input: a regular file or folder, never a FIFO, device or socket; a file's SHA-256, bytes bounded |
| :mod:`.images` | image files (photos, style images, uploads): pixels bounded from the header and before a resize; style images' transparency composited onto white |
| :mod:`.videos` | video files: a regular file, a container FFmpeg reads with a video stream, the frame size bounded before the first frame is decoded and again on it |
| :mod:`.uploads` | the web app's uploads: their total bytes bounded, oldest removed |
| :mod:`.downloads` | URLs: http(s) only, bytes, deadline and content checked before the file lands in place |
| :mod:`.events` | a run's TensorBoard event files, for a model card's last losses: bytes before parsing, scalars only, fast-nst's loss tags, finite values |
| :mod:`.hub` | ``hf://OWNER/REPO/FILE[@REVISION][#sha256=HEX]`` model references: checked names, fetched once into the Hugging Face cache, optional checksum |
| :mod:`.model_urls` | ``https://HOST/PATH/NAME.pth[#sha256=HEX]`` model URLs: a model file's name, fetched once into fast-nst's cache, kept only when it starts like a model file and is whole (a download cut short is not kept), optional checksum |

:mod:`.archives`, :mod:`.safetensors_header` and :mod:`.weights` import torch and are imported on first use, so that configs are checked
without loading it.
"""

import importlib
from typing import Any

from .numbers import FLOAT32_MAX, finite_float
from .structured import UnparsableYAML, check_plain_data, load_json, load_yaml, read_json_file, read_text_file
from .text import shown
from .paths import file_sha256, input_file, input_folder, input_path
from .images import (MAX_STYLE_PIXELS, check_pixels, open_image, pixel_limit, resize_side, resize_style,
                     set_max_image_pixels, style_rgb)
from .downloads import download_url, fetch_style_image, is_url
from .uploads import bound_folder
from .onnx_files import onnx_session, read_onnx_file, read_onnx_model

__all__ = ["FLOAT32_MAX", "UnparsableYAML", "check_archive_sizes", "check_file_size", "check_plain_data", "finite_float",
           "load_json", "load_torch_file", "load_yaml", "read_json_file", "read_text_file", "shown"]
__all__ += ["file_sha256", "input_file", "input_folder", "input_path"]
__all__ += ["MAX_STYLE_PIXELS", "check_pixels", "open_image", "pixel_limit", "resize_side", "resize_style",
            "set_max_image_pixels", "style_rgb"]
__all__ += ["download_url", "fetch_style_image", "is_url"]
__all__ += ["bound_folder"]
__all__ += ["onnx_session", "read_onnx_file", "read_onnx_model"]

# Name -> module of this package, imported on first use (it imports torch).
_LAZY = {"check_archive_sizes": "archives", "check_file_size": "archives", "load_torch_file": "archives"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
