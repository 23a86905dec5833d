"""Helpers that take frames apart and put them back together, for tests that forge frames."""

from __future__ import annotations

from typing import Any

import msgpack
import zstandard

from edgewatch.protocol.header import FLAG_ZSTD, read_header


def split(frame: bytes) -> tuple[bytes, dict[Any, Any], bytes]:
    """``(header, payload map, residual stream)`` of a well-formed frame."""
    flags, _, offset = read_header(frame)
    body = frame[offset:]
    if flags & FLAG_ZSTD:
        body = zstandard.ZstdDecompressor().decompress(body)
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(body)
    payload = unpacker.unpack()
    return bytes(frame[:offset]), payload, body[unpacker.tell() :]


def join(
    header: bytes, payload: dict[Any, Any] | bytes, stream: bytes = b"", compress: bool = False
) -> bytes:
    """A frame from its parts; ``payload`` may be raw bytes to forge any msgpack at all."""
    body = (payload if isinstance(payload, bytes) else msgpack.packb(payload, use_bin_type=True)) + stream
    flags = header[4] & ~FLAG_ZSTD
    if compress:
        body = zstandard.ZstdCompressor().compress(body)
        flags |= FLAG_ZSTD
    return header[:4] + bytes([flags]) + header[5:] + body
