"""Unsigned LEB128 varints: at most 64 bits, and only in their shortest form (protocol.md §6.9)."""

from __future__ import annotations

from .errors import ProtocolError

_MASK = (1 << 64) - 1


def put(out: bytearray, u: int) -> None:
    """Append ``u`` (0 to 2**64 - 1) to ``out``."""
    while u > 0x7F:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)


def read(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """``(value, position after it)`` of the varint at ``pos``; ``what`` names it in errors."""
    u = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ProtocolError(f"{what} is cut short; the frame is truncated")
        byte = data[pos]
        pos += 1
        u |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 63:
            raise ProtocolError(f"{what} is longer than ten bytes")
    if u > _MASK:
        raise ProtocolError(f"{what} is wider than 64 bits")
    if byte == 0 and shift:
        raise ProtocolError(f"{what} is not in its shortest form")
    return u, pos
