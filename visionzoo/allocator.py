"""Keep the memory a forward pass frees inside the process (glibc malloc on Linux).

With glibc's default settings, the activations of a CPU forward pass are handed back to the system as soon
as they are freed, and the next call page-faults every one of their pages in again: zeroed by the kernel,
one fault per 4 KiB page. Keeping that memory for the next call instead made our eager models up to 1.6x
faster on the 2-core machine the benchmarks run on (``visionzoo benchmark`` with and without
``--keep-freed-memory``, median per call, two processes each): regnet_y_800mf at batch 8 112-125 -> 73-80 ms,
efficientnet_b0 at batch 1 19.5-22.5 -> 13.4-13.7 ms; resnet50 at batch 8 varied too much there to tell
(299-380 ms -> 247-380 ms). ``benchmarks/results/eager.json`` counts the faults per call of every model.
:func:`keep_freed_memory` tells malloc to do so in a running process, which is what the environment variables
``MALLOC_MMAP_MAX_`` and ``MALLOC_TRIM_THRESHOLD_`` do for a process started with them, or what jemalloc
and tcmalloc do by design.

The price is resident memory: the process stays at the peak of its largest forward pass rather than shrinking
between calls. :func:`keep_freed_memory` with ``False`` hands everything free back and restores glibc's
starting thresholds (without their automatic adjustment).

The setting belongs to the whole process (every library's allocations, on every thread), so it is made only
where a caller asks for speed: the ``visionzoo predict`` and ``validate`` commands make it for their own process,
``optimize_for_inference`` makes it by default (its ``keep_freed_memory`` argument says so and turns it off), and
a program that embeds models calls :func:`keep_freed_memory` when it wants it.
"""

from __future__ import annotations

import ctypes
import functools

__all__ = ["keep_freed_memory"]

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4

# Blocks up to 32 MiB come from the heap rather than from their own mapping (glibc refuses a higher threshold
# on 64-bit systems), larger ones too because no block gets a mapping of its own (M_MMAP_MAX 0), and the heap is
# never trimmed (-1, as mallopt(3) documents). Efficientnet_b0 at batch 8 has a 38.5 MiB activation: with the
# threshold alone it still page-faulted 9409 times a call.
KEEP_MMAP_THRESHOLD = 32 << 20
KEEP_MMAP_MAX = 0
KEEP_TRIM_THRESHOLD = -1
# glibc's starting values (before its dynamic adjustment raises the thresholds).
DEFAULT_THRESHOLD = 128 << 10
DEFAULT_MMAP_MAX = 65536


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc (it has ``gnu_get_libc_version``), else None."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # no dynamic C library to open (Windows)
        return None
    if not all(hasattr(libc, name) for name in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc


def keep_freed_memory(enable: bool = True) -> bool:
    """Make glibc's malloc keep freed memory in this process (``enable=True``), or give it back (``False``).

    Speeds up eager CPU inference wherever activations are re-allocated on every call (see the module
    docstring for figures); results do not change. Affects the whole process.

    Args:
        enable: True to serve every block from the heap (none gets a mapping of its own) and never trim it;
            False to return all free memory to the system now and restore glibc's starting settings (blocks of
            128 KiB and more mapped on their own, the heap trimmed beyond 128 KiB free).

    Returns:
        True if the C library took the setting; False where it is not glibc (macOS, Windows, musl), where
        there is nothing to set: those allocators keep their own policies.
    """
    libc = _glibc()
    if libc is None:
        return False
    if enable:
        accepted = libc.mallopt(_M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD)
        accepted &= libc.mallopt(_M_MMAP_MAX, KEEP_MMAP_MAX)
        accepted &= libc.mallopt(_M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)
    else:
        accepted = libc.mallopt(_M_MMAP_THRESHOLD, DEFAULT_THRESHOLD)
        accepted &= libc.mallopt(_M_MMAP_MAX, DEFAULT_MMAP_MAX)
        accepted &= libc.mallopt(_M_TRIM_THRESHOLD, DEFAULT_THRESHOLD)
        libc.malloc_trim(0)
    return bool(accepted)
