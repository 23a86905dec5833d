"""Little-endian bytes of typed arrays, the byte order of every stored block and chunk."""

from __future__ import annotations

import sys
from array import array
from typing import Any

_LITTLE = sys.byteorder == "little"


def le_bytes(a: array[Any]) -> bytes:
    """The items of ``a`` as little-endian bytes (``a`` is byte-swapped in place on a big-endian host)."""
    if not _LITTLE:
        a.byteswap()
    return a.tobytes()


def le_array(raw: bytes | bytearray | memoryview, code: str) -> array[Any]:
    """The array of type ``code`` whose little-endian bytes are ``raw``."""
    a = array(code)
    a.frombytes(raw)
    if not _LITTLE:
        a.byteswap()
    return a
