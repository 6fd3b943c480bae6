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
| :mod:`.paths` | a path a user names as input: a regular file or folder, never a FIFO, device or socket |
| :mod:`.images` | image files (photos, style images, uploads): pixels bounded from the header and before a resize |
| :mod:`.uploads` | the web app's uploads: their total bytes bounded, oldest removed |
| :mod:`.downloads` | URLs: http(s) only, bytes, deadline and content checked before the file lands in place |
"""

from .text import shown
from .paths import input_file, input_folder, input_path
from .images import (MAX_STYLE_PIXELS, check_pixels, open_image, pixel_limit, resize_side, resize_style,
                     set_max_image_pixels)
from .downloads import download_url, fetch_style_image, is_url
from .uploads import bound_folder

__all__ = ["shown"]
__all__ += ["input_file", "input_folder", "input_path"]
__all__ += ["MAX_STYLE_PIXELS", "check_pixels", "open_image", "pixel_limit", "resize_side", "resize_style",
            "set_max_image_pixels"]
__all__ += ["download_url", "fetch_style_image", "is_url"]
__all__ += ["bound_folder"]
