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
"""

from .text import shown

__all__ = ["shown"]
