"""A pass over the payload's msgpack map that builds nothing: depth, object count and claims first.

msgpack allocates a container as soon as it reads its header, so a few hostile bytes that nest
headers claiming thousands of elements could cost a reader gigabytes before any check ran. This
walk reads only headers and lengths: it refuses nesting deeper than ``MAX_DEPTH``, more than
``MAX_OBJECTS`` objects, containers that claim more elements than bytes remain, strings over their
cap, ext types and the byte 0xc1, and returns where the map ends (the residual stream starts there).
Only then does msgpack build the map.
"""

from __future__ import annotations

from . import limits as L
from .errors import ProtocolError

_SCALAR, _STR, _BIN, _ARRAY, _MAP, _BAD = range(6)


def _table() -> list[tuple[int, int, int]]:
    """For each first byte: (kind, bytes after it: fixed size or length-field size, inline count)."""
    t = [(_BAD, 0, 0)] * 256
    for b in range(0x80):
        t[b] = (_SCALAR, 0, 0)
    for b in range(0x80, 0x90):
        t[b] = (_MAP, 0, b & 0x0F)
    for b in range(0x90, 0xA0):
        t[b] = (_ARRAY, 0, b & 0x0F)
    for b in range(0xA0, 0xC0):
        t[b] = (_STR, 0, b & 0x1F)
    for b in range(0xE0, 0x100):
        t[b] = (_SCALAR, 0, 0)
    for b, size in ((0xC0, 0), (0xC2, 0), (0xC3, 0), (0xCA, 4), (0xCB, 8), (0xCC, 1), (0xCD, 2), (0xCE, 4)):
        t[b] = (_SCALAR, size, 0)
    for b, size in ((0xCF, 8), (0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
        t[b] = (_SCALAR, size, 0)
    for b, size in ((0xC4, 1), (0xC5, 2), (0xC6, 4)):
        t[b] = (_BIN, size, -1)
    for b, size in ((0xD9, 1), (0xDA, 2), (0xDB, 4)):
        t[b] = (_STR, size, -1)
    t[0xDC], t[0xDD] = (_ARRAY, 2, -1), (_ARRAY, 4, -1)
    t[0xDE], t[0xDF] = (_MAP, 2, -1), (_MAP, 4, -1)
    return t


_TABLE = _table()
MAX_STR_BYTES = 4 * L.MAX_EVENT_STRING_LEN  # a character takes at most four bytes of UTF-8


def map_end(body: bytes) -> int:
    """Check the msgpack map at the start of ``body`` and return the offset just past it."""
    n = len(body)
    if not n or _TABLE[body[0]][0] != _MAP:
        raise ProtocolError("the payload must start with a msgpack map")
    table = _TABLE
    stack: list[int] = []  # items still to come in each open container
    pos = 0
    objects = 0
    while True:
        if pos >= n:
            raise ProtocolError("the payload ends inside its msgpack map; the frame is truncated")
        kind, size, inline = table[body[pos]]
        objects += 1
        if objects > L.MAX_OBJECTS:
            raise ProtocolError(f"the payload map holds more than {L.MAX_OBJECTS} objects")
        if kind == _SCALAR:
            pos += 1 + size
        elif kind in (_STR, _BIN):
            length = inline if inline >= 0 else int.from_bytes(body[pos + 1 : pos + 1 + size], "big")
            if length > (MAX_STR_BYTES if kind == _STR else L.MAX_PAYLOAD_BYTES):
                raise ProtocolError(f"a string in the payload claims {length} bytes, over its cap")
            pos += 1 + size + length
        elif kind == _BAD:
            raise ProtocolError(
                f"the payload holds msgpack type byte 0x{body[pos]:02x}, which frames never use"
            )
        else:
            count = inline if inline >= 0 else int.from_bytes(body[pos + 1 : pos + 1 + size], "big")
            items = 2 * count if kind == _MAP else count
            pos += 1 + size
            if items > n - pos:
                raise ProtocolError(f"a msgpack container claims {count} elements, more than the frame holds")
            if items:
                stack.append(items)
                if len(stack) > L.MAX_DEPTH:
                    raise ProtocolError(f"the payload nests deeper than {L.MAX_DEPTH} levels")
                continue
        # an object is complete: count it off its container, closing every container it completes
        while stack:
            stack[-1] -= 1
            if stack[-1]:
                break
            stack.pop()
        if not stack:
            if pos > n:
                raise ProtocolError("the payload ends inside its msgpack map; the frame is truncated")
            return pos
