"""Keeping the aggregator's resident memory flat under a long, heavy load.

glibc gives every thread that allocates its own malloc arena (up to eight per core), and memory
freed in one arena is not reused by another: with the event loop, the writer, the decode workers and
the readers all allocating, the heap grows for hours before it settles. Two arenas are plenty for a
process whose Python code holds the GIL anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (before threads start); False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_ARENA_MAX, arenas))
    if not ok:
        log.debug("mallopt(M_ARENA_MAX) was refused; malloc keeps its default arenas")
    return ok
