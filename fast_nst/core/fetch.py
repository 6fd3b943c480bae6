"""The old import path of the download helpers, kept for code that imports it: downloads are
made in the boundary for outside data, :mod:`fast_nst.core.untrusted.downloads` (patch that
module, not this one, in tests)."""

from .untrusted.downloads import (STYLE_CACHE, download_url, fetch_style_image, finish_by_hand, is_url,
                                  sha256_file, style_cache_path, style_name)

__all__ = ["download_url", "fetch_style_image", "finish_by_hand", "is_url", "sha256_file", "style_cache_path",
           "style_name", "STYLE_CACHE"]
