"""Exceptions for mistakes a user can make (bad config, missing files, bad model files).

The CLI catches :class:`FastNSTError`, prints its message without a traceback and exits
non-zero; anything else escaping is a bug in fast-nst.
"""

__all__ = ["CheckpointError", "ConfigError", "DataError", "DownloadError", "FastNSTError"]


class FastNSTError(Exception):
    """A problem the user can fix; the message says what was wrong and how to fix it."""


class ConfigError(FastNSTError):
    """A config file or override is invalid (unknown key, wrong type, bad value)."""


class DataError(FastNSTError):
    """Training data, style image or input image is missing or unreadable."""


class CheckpointError(FastNSTError):
    """A model or checkpoint file is missing, foreign, unsafe or corrupt."""


class DownloadError(FastNSTError):
    """A file could not be downloaded."""
