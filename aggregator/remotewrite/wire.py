"""The Prometheus remote-write 1.0 wire format, hand-encoded: protobuf ``WriteRequest`` + snappy.

The messages (prometheus/prompb ``remote.proto`` and ``types.proto``)::

    message WriteRequest { repeated TimeSeries timeseries = 1; }
    message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    message Label        { string name = 1; string value = 2; }
    message Sample       { double value = 1; int64 timestamp = 2; }  // ms since the epoch

A repeated field is its elements one after another, so a request is the concatenation of its
encoded ``timeseries`` fields: `series_fields` encodes a batch once and every endpoint's request
takes the bytes as they are. `decode_request` reads a request back (tests and the fake receiver).
The body of the HTTP request is the request compressed with snappy's block format (not framed).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import cramjam

from edgewatch.aggregator.promlabels import LabelCache, Labels
from edgewatch.protocol import Batch, Series

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
_DOUBLE = struct.Struct("<d")
_SAMPLE_VALUE = b"\x09"  # field 1, 64-bit
_SAMPLE_TS = b"\x10"  # field 2, varint
_SAMPLES = b"\x12"  # TimeSeries.samples: field 2, length-delimited
_FIELD1 = b"\x0a"  # field 1, length-delimited: TimeSeries.labels, Label.name, WriteRequest.timeseries
_FIELD2 = b"\x12"  # field 2, length-delimited: Label.value


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint; a negative int64 as its 64-bit two's complement (10 bytes)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _delimited(tag: bytes, data: bytes) -> bytes:
    return tag + varint(len(data)) + data


def encode_labels(name: str, labels: Labels) -> bytes:
    """The ``labels`` fields of a TimeSeries: ``__name__`` and the others, sorted by name."""
    pairs = sorted((("__name__", name), *labels))
    return b"".join(
        _delimited(_FIELD1, _delimited(_FIELD1, k.encode()) + _delimited(_FIELD2, v.encode()))
        for k, v in pairs
    )


def sample(value: float, ts_field: bytes) -> bytes:
    """One ``samples`` field; ``ts_field`` is ``_SAMPLE_TS + varint(ts)`` (shared within a frame)."""
    body = _SAMPLE_VALUE + _DOUBLE.pack(value) + ts_field
    return _SAMPLES + bytes((len(body),)) + body  # at most 20 bytes: the length is one byte


class LabelBytes:
    """host → series → its encoded labels, made once per series; it starts over beyond ``limit``
    series (the names and labels fixed by a `LabelCache` of the same bound)."""

    def __init__(self, limit: int = 1_000_000) -> None:
        self.names = LabelCache(limit)
        self.limit = limit
        self._hosts: dict[str, dict[Series, bytes]] = {}
        self._count = 0

    def of_host(self, host: str) -> dict[Series, bytes]:
        known = self._hosts.get(host)
        if known is None:
            known = self._hosts[host] = {}
        return known

    def make(self, host: str, series: Series, known: dict[Series, bytes]) -> bytes:
        """The labels of a series not in ``known`` (= ``of_host(host)``), now kept there."""
        if self._count >= self.limit:
            self._hosts.clear()
            self._count = 0
            known = self.of_host(host)
        name, labels = self.names.get(host, series)
        got = known[series] = encode_labels(name, labels)
        self._count += 1
        return got

    def get(self, host: str, series: Series) -> bytes:
        known = self.of_host(host)
        got = known.get(series)
        return got if got is not None else self.make(host, series, known)


_LENGTHS = [varint(n) for n in range(1 << 14)]  # the varint of each short length, made once


def _length(n: int) -> bytes:
    return _LENGTHS[n] if n < 16384 else varint(n)


def series_fields(host: str, batch: Batch, labels: LabelBytes) -> list[tuple[bytes, int]]:
    """The batch as ``WriteRequest.timeseries`` fields, one per series with samples: (bytes, samples).

    Gaps (``None``) are left out; ints are sent as doubles (exact up to 2**53). Frames of one
    sample (the agents' default) take a shorter path: this runs for every ingested sample."""
    stamps = batch.timestamps
    if not stamps:
        return []
    known = labels.of_host(host)
    pack = _DOUBLE.pack
    out: list[tuple[bytes, int]] = []
    if len(stamps) == 1:
        tail = _SAMPLE_TS + varint(stamps[0])
        head = _SAMPLES + bytes((9 + len(tail),)) + _SAMPLE_VALUE
        for s, column in zip(batch.series, batch.values):
            v = column[0]
            if v is None:
                continue
            lab = known.get(s) or labels.make(host, s, known)
            body = lab + head + pack(v) + tail
            out.append((_FIELD1 + _length(len(body)) + body, 1))
        return out
    ts_fields = [_SAMPLE_TS + varint(t) for t in stamps]
    for s, column in zip(batch.series, batch.values):
        parts = [sample(float(v), tf) for v, tf in zip(column, ts_fields) if v is not None]
        if parts:
            body = (known.get(s) or labels.make(host, s, known)) + b"".join(parts)
            out.append((_FIELD1 + _length(len(body)) + body, len(parts)))
    return out


def compress(request: bytes) -> bytes:
    """The HTTP body: snappy's block format of the encoded WriteRequest."""
    return bytes(cramjam.snappy.compress_raw(request))


# --- reading (tests and the fake receiver) ----------------------------------------------------

Field = tuple[int, bytes | int]  # field number; bytes (length-delimited, fixed64) or int (varint)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("a varint is cut off or too long")
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7


def _fields(data: bytes) -> Iterator[Field]:
    """The fields of one message, in order."""
    i, n = 0, len(data)
    while i < n:
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
            yield number, value
            continue
        if wire == 2:
            length, i = _read_varint(data, i)
        elif wire in (1, 5):
            length = 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire} is not used by remote write")
        if i + length > n:
            raise ValueError("a field runs past the end of the message")
        yield number, data[i : i + length]
        i += length


def _bytes(fields: dict[int, bytes | int], number: int) -> bytes:
    value = fields.get(number, b"")
    if not isinstance(value, bytes):
        raise ValueError(f"field {number} must be length-delimited")
    return value


def decode_request(
    body: bytes, *, compressed: bool = True
) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    """A WriteRequest as ``[(labels with __name__, [(timestamp ms, value), ...]), ...]``;
    ValueError when the bytes are not one."""
    data = bytes(cramjam.snappy.decompress_raw(body)) if compressed else body
    out: list[tuple[dict[str, str], list[tuple[int, float]]]] = []
    for number, series in _fields(data):
        if number != 1 or not isinstance(series, bytes):
            continue
        labels: dict[str, str] = {}
        samples: list[tuple[int, float]] = []
        for kind, part in _fields(series):
            if not isinstance(part, bytes):
                continue
            parts = dict(_fields(part))
            if kind == 1:
                labels[_bytes(parts, 1).decode()] = _bytes(parts, 2).decode()
            elif kind == 2:
                stamp = parts.get(2, 0)
                if not isinstance(stamp, int):
                    raise ValueError("Sample.timestamp must be a varint")
                raw = _bytes(parts, 1)
                value = _DOUBLE.unpack(raw)[0] if raw else 0.0
                samples.append((stamp - (1 << 64) if stamp >= 1 << 63 else stamp, value))
        out.append((labels, samples))
    return out
