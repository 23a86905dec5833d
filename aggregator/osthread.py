"""Give the aggregator's threads their names in the operating system too.

Python names its threads for itself only; ``top -H``, ``ps -L`` and ``/proc/PID/task/*/comm`` show
every thread as ``edgewatch``. ``name_os_thread()``, called first thing in a thread, sets the kernel's
name of the calling thread (15 bytes at most) from its Python name, so an operator (and the ingest
benchmark) can tell the writer's CPU from the decoders' and the readers'.
"""

from __future__ import annotations

import ctypes
import sys
import threading

PR_SET_NAME = 15
MAX_BYTES = 15


def os_name(python_name: str) -> str:
    """``edgewatch-reader_0`` -> ``ew-reader-0``: what fits the kernel's 15 bytes."""
    short = python_name.replace("edgewatch-", "ew-").replace("_", "-")
    return short.encode()[:MAX_BYTES].decode(errors="ignore")


def name_os_thread() -> None:
    """Set the calling thread's name in the kernel from its Python name (a no-op off Linux)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_NAME, os_name(threading.current_thread().name).encode(), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl here: the names are a convenience
        pass
