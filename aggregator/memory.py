"""Keeping the aggregator's resident memory flat under a long, heavy load.

glibc gives every thread that allocates its own malloc arena (up to eight per core), and memory
freed in one arena is not reused by another: with the event loop, the writer, the decode workers and
the readers all allocating, the heap grows for hours before it settles. Two arenas are plenty for a
process whose Python code holds the GIL anyway. After a burst (a maintenance pass compacts every
host's closed window at once) ``trim_malloc`` hands the freed pages back instead of keeping them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _libc_function(name: str) -> Any | None:
    """A function of the C library, or None where there is no such library or function."""
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        return getattr(ctypes.CDLL(path), name)
    except (OSError, AttributeError):
        return None


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (before threads start); False where the C library is not glibc."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_ARENA_MAX, arenas))
    if not ok:
        log.debug("mallopt(M_ARENA_MAX) was refused; malloc keeps its default arenas")
    return ok


def trim_malloc() -> bool:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``); False elsewhere
    or when there was nothing to give back."""
    malloc_trim = _libc_function("malloc_trim")
    if malloc_trim is None:
        return False
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int
    return bool(malloc_trim(0))
