"""Keeping freed CPU memory for the next forward pass (glibc's malloc): no page faults on
every forward's fresh activations.

Why: every forward pass of a transform network allocates its activations afresh, tens to hundreds
of megabytes per tensor. glibc serves allocations above its mmap threshold (at most 32 MB) with
``mmap`` and hands them back with ``munmap`` when freed, so the next forward page-faults every
page in again and the kernel zeroes it: on a 2-core Intel Xeon VM (2.1 GHz, AVX-512, AMX) this
was a third to half of every forward of the slim network, at any size (68,000 page faults a
forward at 512 x 512, 533,000 at 1920 x 1080; docs/benchmarks.md). PyTorch's GPU
allocator caches freed blocks for the same reason; on the CPU :func:`keep_freed_memory` makes
glibc do it: no ``mmap`` for allocations (the heap grows instead) and freed memory is returned
to the system only above ``trim`` bytes at the top of the heap.

The price is memory held: freed blocks stay in the process for reuse (a process that ran two
networks in two precisions at 1920 x 1080 peaked at 4.1 GiB resident instead of 3.2 GiB). It
changes the allocator of the whole process, once; ``FAST_NST_KEEP_MEMORY=0`` leaves glibc's
defaults alone. It does nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["DEFAULT_TRIM", "keep_freed_memory"]

# Free memory at the top of the heap that is kept rather than returned to the system: a 1920 x
# 1080 forward of the default network peaks near 1 GB (480 bytes a pixel, fast_cpu's
# bytes_per_pixel), so 1 GiB keeps a full-HD forward's memory between photos.
DEFAULT_TRIM = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
_applied: list[bool] = []


def keep_freed_memory(trim: int = DEFAULT_TRIM) -> bool:
    """Make glibc keep freed memory for reuse (see the module's docs); True when it is in
    effect (now or from an earlier call), False on other C libraries or when
    ``FAST_NST_KEEP_MEMORY=0``."""
    if _applied:
        return _applied[0]
    ok = False
    if sys.platform.startswith("linux") and os.environ.get("FAST_NST_KEEP_MEMORY", "1") != "0":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # musl and others: no mallopt
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, min(trim, 2**31 - 1)))
    _applied.append(ok)
    return ok
