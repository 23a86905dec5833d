"""``encode``: a batch to a key frame, or to a delta frame against a reference batch."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import zstandard

from . import keys as K
from . import limits as L
from .checks import check_batch
from .columns import INT, history_of
from .errors import ProtocolError
from .header import FLAG_DELTA, FLAG_ZSTD, Reference, write_header
from .stream import CLOCK, Encoder
from .table import RefColumns, encode_columns
from .types import Batch, Event, Kind, Series

_COMPRESS_FROM = 96  # payloads shorter than this are never worth a zstd frame header
_ZSTD_LEVEL = 3
_local = threading.local()  # zstd contexts are not safe to share between threads


def _compressor() -> zstandard.ZstdCompressor:
    cctx: zstandard.ZstdCompressor | None = getattr(_local, "cctx", None)
    if cctx is None:
        cctx = _local.cctx = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_content_size=True)
    return cctx


_definitions: dict[Series, dict[int, Any]] = {}  # key frames repeat them: made once per series


def _definition(s: Series) -> dict[int, Any]:
    d = _definitions.get(s)
    if d is None:
        d = {K.DEF_NAME: s.name}
        if s.labels:
            d[K.DEF_LABELS] = dict(s.labels)
        if s.kind != Kind.GAUGE:
            d[K.DEF_KIND] = int(s.kind)
        if s.precision is not None:
            d[K.DEF_PRECISION] = s.precision
        if len(_definitions) >= 50_000:  # series churn must not grow it without bound
            _definitions.clear()
        _definitions[s] = d
    return d


def _series_map(series: Sequence[Series], ref_index: Mapping[Series, int]) -> list[Any]:
    """Delta-code ``series`` against the reference's: runs ``[start, count]``, single indexes, definitions."""
    out: list[Any] = []
    i = 0
    while i < len(series):
        start = ref_index.get(series[i])
        if start is None:
            out.append(_definition(series[i]))
            i += 1
            continue
        count = 1
        while i + count < len(series) and ref_index.get(series[i + count]) == start + count:
            count += 1
        out.append(start if count == 1 else [start, count])
        i += count
    return out


def _event(e: Event) -> dict[int, Any]:
    d: dict[int, Any] = {K.EVENT_TS: e.ts, K.EVENT_TYPE: e.type}
    if e.attrs:
        d[K.EVENT_ATTRS] = dict(e.attrs)
    return d


def encode(batch: Batch, ref: Batch | None = None) -> bytes:
    """Encode ``batch`` as a key frame, or as a delta frame against ``ref`` when one is given.

    ``ref`` must be the batch the receiver decoded for the frame it names: an agent keeps
    ``next_reference(ref, batch)`` of each acknowledged batch, never its own unrounded batch.
    Raises ``ProtocolError`` for a batch that breaks a cap or a rule of the format.
    """
    check_batch(batch)
    payload: dict[int, Any] = {}
    if ref is not None:
        if ref.agent_id != batch.agent_id or ref.boot_id != batch.boot_id:
            raise ProtocolError("a delta frame's reference must come from the same agent and boot")
        if not ref.seq < batch.seq:
            raise ProtocolError(
                f"a delta frame's reference (seq {ref.seq}) must be older than it (seq {batch.seq})"
            )
        if batch.seq - ref.seq != 1:
            payload[K.SEQ] = batch.seq - ref.seq
        if dict(batch.host) != dict(ref.host):
            payload[K.HOST] = dict(batch.host)
        ref_cols: RefColumns
        if tuple(batch.series) == tuple(ref.series):  # a list and a tuple of the same series alike
            ref_cols = ref.values
        else:
            ref_index = {s: i for i, s in enumerate(ref.series)}
            payload[K.SERIES] = _series_map(batch.series, ref_index)
            ref_cols = [None if (r := ref_index.get(s)) is None else ref.values[r] for s in batch.series]
        ts_history = history_of(INT, None, ref.timestamps)
    else:
        payload[K.AGENT] = batch.agent_id
        payload[K.BOOT] = batch.boot_id
        payload[K.SEQ] = batch.seq
        payload[K.HOST] = dict(batch.host)
        payload[K.SERIES] = [_definition(s) for s in batch.series]
        ref_cols = [None] * len(batch.series)
        ts_history = (None, None)
    if len(batch.timestamps) != 1:
        payload[K.SAMPLES] = len(batch.timestamps)

    enc = Encoder()
    enc.int_column(batch.timestamps, ts_history, CLOCK)
    layout = encode_columns(enc, batch.series, batch.values, ref_cols, len(batch.timestamps))
    if layout.floats:
        payload[K.FLOAT_COLUMNS] = layout.floats
    if layout.raws:
        payload[K.RAW_COLUMNS] = layout.raws
    if layout.gaps:
        payload[K.GAPS] = layout.gaps
    if batch.events:
        payload[K.EVENTS] = [_event(e) for e in batch.events]

    body = msgpack.packb(payload, use_bin_type=True) + enc.stream()
    if len(body) > L.MAX_PAYLOAD_BYTES:  # the reader checks the size it decompresses to
        raise ProtocolError(
            f"the payload would be {len(body)} bytes, over the cap; send smaller batches", too_large=True
        )
    flags = FLAG_DELTA if ref is not None else 0
    if len(body) >= _COMPRESS_FROM:
        packed = _compressor().compress(body)
        if len(packed) < len(body):
            body = packed
            flags |= FLAG_ZSTD
    header = write_header(flags, Reference(ref.boot_id, ref.seq) if ref is not None else None)
    frame = bytes(header + body)
    if len(frame) > L.MAX_FRAME_BYTES:
        raise ProtocolError(
            f"the frame would be {len(frame)} bytes, over the cap of {L.MAX_FRAME_BYTES}; "
            "send smaller batches",
            too_large=True,
        )
    return frame
