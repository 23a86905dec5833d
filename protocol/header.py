"""The frame header: magic, version, flags and, in a delta frame, the reference it needs.

``"EW"``, the major and minor version (one byte each), a flags byte and, when the delta flag is
set, the reference's boot id (8 bytes, little-endian) and seq (unsigned LEB128). The payload follows.
"""

from __future__ import annotations

from typing import NamedTuple

from . import varint
from .errors import ProtocolError
from .limits import MAX_FRAME_BYTES

MAGIC = b"EW"
MAJOR = 1
MINOR = 0
FLAG_DELTA = 0x01
FLAG_ZSTD = 0x02


class Reference(NamedTuple):
    """Which frame a delta frame is coded against: the same agent's ``(boot_id, seq)``."""

    boot_id: int
    seq: int


def write_header(flags: int, ref: Reference | None) -> bytearray:
    out = bytearray(MAGIC)
    out += bytes((MAJOR, MINOR, flags))
    if ref is not None:
        out += ref.boot_id.to_bytes(8, "little")
        varint.put(out, ref.seq)
    return out


def read_header(data: bytes) -> tuple[int, Reference | None, int]:
    """``(flags, reference or None, offset of the payload)``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"a frame is bytes, not {type(data).__name__}")
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError(
            f"the frame is {len(data)} bytes, over the cap of {MAX_FRAME_BYTES}; send smaller batches",
            too_large=True,
        )
    if len(data) < 5:
        raise ProtocolError(f"the frame is only {len(data)} bytes, shorter than a header")
    if bytes(data[:2]) != MAGIC:
        raise ProtocolError("this is not an edgewatch frame (wrong magic bytes)")
    major = data[2]
    if major != MAJOR:
        raise ProtocolError(
            f"the frame has protocol major version {major} and this reader speaks {MAJOR}; "
            "run agent and aggregator releases that share a major protocol version"
        )
    flags = data[4]
    if not flags & FLAG_DELTA:
        return flags, None, 5
    if len(data) < 14:
        raise ProtocolError("the delta frame is truncated inside its reference")
    boot_id = int.from_bytes(data[5:13], "little")
    seq, pos = varint.read(data, 13, "the reference seq of the delta frame")
    return flags, Reference(boot_id, seq), pos


def reference_of(data: bytes) -> Reference | None:
    """The reference a frame needs, read from its header alone; ``None`` for a key frame."""
    return read_header(data)[1]
