"""``decode``: a frame back to a batch, for any bytes, raising only ``ProtocolError``."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import msgpack
import zstandard

from . import keys as K
from . import limits as L
from .checks import check_event, check_name, check_strmap, check_uint64
from .columns import INT, history_of
from .errors import ProtocolError
from .header import FLAG_ZSTD, read_header
from .scan import MAX_STR_BYTES, map_end
from .stream import CLOCK, Decoder, History
from .table import RefColumns, decode_columns
from .types import Batch, Event, Series

_U64 = 1 << 64
_MAX_WINDOW = 1 << 23  # zstd window a frame may ask for; the encoder's level 3 stays far below
_local = threading.local()  # zstd contexts are not safe to share between threads


def _decompressor() -> zstandard.ZstdDecompressor:
    dctx: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW)
    return dctx


def _decompress(data: bytes) -> bytes:
    """One zstd frame that declares its size, within the caps, with nothing after it."""
    try:
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError as exc:
        raise ProtocolError(f"the compressed payload is not a zstd frame ({exc})") from None
    size = params.content_size
    if size == zstandard.CONTENTSIZE_UNKNOWN:
        raise ProtocolError("the compressed payload does not declare its size; edgewatch encoders always do")
    if size > L.MAX_PAYLOAD_BYTES:
        raise ProtocolError(
            f"the payload declares {size} bytes, over the cap of {L.MAX_PAYLOAD_BYTES}", too_large=True
        )
    if params.window_size > _MAX_WINDOW:
        raise ProtocolError(
            f"the compressed payload asks for a {params.window_size}-byte window, over {_MAX_WINDOW}"
        )
    try:
        # one buffer of exactly the declared size: libzstd refuses to write past it
        out = _decompressor().decompress(data, max_output_size=size, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise ProtocolError(
            f"the compressed payload is corrupt or has bytes after its zstd frame ({exc})"
        ) from None
    if len(out) != size:
        raise ProtocolError("the compressed payload is truncated")
    return out


def _pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """A msgpack map as a dict, before Python's ``True == 1`` and ``1.0 == 1`` can merge keys.

    Field keys are ints and names are strings; a key of any other type is one this reader does not
    know and is dropped. A key that appears twice makes the frame malformed.
    """
    out = {k: v for k, v in pairs if type(k) is int or type(k) is str}
    if len(out) != sum(1 for k, _ in pairs if type(k) is int or type(k) is str):
        raise ProtocolError("a map in the payload has the same key twice")
    return out


def _unpack_map(body: bytes) -> tuple[dict[int, Any], int]:
    end = map_end(body)  # depth, object count and claims are checked before msgpack allocates
    try:
        payload = msgpack.unpackb(
            body[:end],
            raw=False,
            strict_map_key=False,
            object_pairs_hook=_pairs,
            max_str_len=MAX_STR_BYTES,
            max_bin_len=L.MAX_PAYLOAD_BYTES,
            max_array_len=L.MAX_OBJECTS,
            max_map_len=L.MAX_OBJECTS,
            max_ext_len=0,
        )
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises many types for bad input; all mean the same here
        raise ProtocolError(f"the payload is not valid msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict):
        raise ProtocolError(f"the payload must start with a msgpack map, not {type(payload).__name__}")
    return payload, end


def _read_definition(d: object) -> Series:
    if not isinstance(d, dict):
        raise ProtocolError(f"a series definition must be a map, not {type(d).__name__}")
    labels = d.get(K.DEF_LABELS, {})
    if not isinstance(labels, dict):
        raise ProtocolError("the labels of a series definition must be a map")
    name = d.get(K.DEF_NAME)
    if not isinstance(name, str):
        raise ProtocolError("a series definition has no metric name")
    return Series(name, labels, d.get(K.DEF_KIND, 0), d.get(K.DEF_PRECISION))


def _read_series_map(items: object, ref: Batch) -> tuple[list[Series], list[int | None]]:
    if not isinstance(items, list):
        raise ProtocolError("the series map of a delta frame must be an array")
    series: list[Series] = []
    origin: list[int | None] = []
    n = len(ref.series)
    for item in items:
        if type(item) is int:
            start, count = item, 1
        elif isinstance(item, list):
            if len(item) != 2 or type(item[0]) is not int or type(item[1]) is not int:
                raise ProtocolError("a run in the series map must be [start, count]")
            start, count = item
        else:
            if len(series) >= L.MAX_SERIES:
                raise ProtocolError(f"the series map holds more than {L.MAX_SERIES} series")
            series.append(_read_definition(item))
            origin.append(None)
            continue
        if not (start >= 0 and count >= 1 and start + count <= n):
            raise ProtocolError(
                f"the series map names reference series {start}..{start + count - 1}, "
                f"but the reference has {n}; the reference is not the one this frame was coded against",
                needs_reference=True,
            )
        if len(series) + count > L.MAX_SERIES:
            raise ProtocolError(f"the series map holds more than {L.MAX_SERIES} series")
        series.extend(ref.series[start : start + count])
        origin.extend(range(start, start + count))
    return series, origin


def _read_events(items: object) -> tuple[Event, ...]:
    if not isinstance(items, list) or len(items) > L.MAX_EVENTS:
        raise ProtocolError(f"the events must be an array of at most {L.MAX_EVENTS}")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise ProtocolError("an event must be a map")
        attrs = item.get(K.EVENT_ATTRS, {})
        if not isinstance(attrs, dict):
            raise ProtocolError("the attributes of an event must be a map")
        out.append(check_event(Event(item.get(K.EVENT_TS), item.get(K.EVENT_TYPE), attrs)))  # type: ignore[arg-type]
    return tuple(out)


def _read_gaps(gaps: object, n_series: int, n: int) -> dict[int, list[bool]]:
    if not isinstance(gaps, dict):
        raise ProtocolError("the gap map must be a map of series index to bitmap")
    out: dict[int, list[bool]] = {}
    size = (n + 7) >> 3
    for j, bitmap in gaps.items():
        if type(j) is not int or not 0 <= j < n_series:
            raise ProtocolError(f"the gap map names series {j!r}, which the frame does not have")
        if not isinstance(bitmap, bytes) or len(bitmap) != size:
            raise ProtocolError(f"the gap bitmap of series {j} must be {size} bytes")
        out[j] = [bool(bitmap[i >> 3] >> (i & 7) & 1) for i in range(n)]
    return out


def _index_set(obj: object, n_series: int, what: str) -> set[int]:
    if not isinstance(obj, (list, dict)):
        raise ProtocolError(f"{what} must be an array or map of series indexes")
    out = set()
    for j in obj:
        if type(j) is not int or not 0 <= j < n_series:
            raise ProtocolError(f"{what} names series {j!r}, which the frame does not have")
        out.add(j)
    return out


def decode(data: bytes, ref: Batch | None = None) -> Batch:
    """Decode a frame; a delta frame needs the batch of the frame its header names as ``ref``.

    Raises ``ProtocolError`` and nothing else, whatever ``data`` holds; ``needs_reference`` is set on
    it when ``ref`` is missing or is not the frame the delta was coded against.
    """
    flags, named, offset = read_header(data)
    if named is not None:
        if ref is None:
            raise ProtocolError(
                f"this delta frame needs reference boot {named.boot_id} seq {named.seq}; send a key frame",
                needs_reference=True,
            )
        if (ref.boot_id, ref.seq) != named:
            raise ProtocolError(
                f"this delta frame is coded against boot {named.boot_id} seq {named.seq}, "
                f"not boot {ref.boot_id} seq {ref.seq}; send a key frame",
                needs_reference=True,
            )
    body = bytes(data[offset:])
    if flags & FLAG_ZSTD:
        body = _decompress(body)
    elif len(body) > L.MAX_PAYLOAD_BYTES:
        raise ProtocolError("the payload is over the size cap", too_large=True)
    payload, stream_at = _unpack_map(body)
    same_series = False

    if named is None:  # a key frame decodes on its own, whatever reference the caller holds
        ref = None
        agent_id = check_name("the agent id", payload.get(K.AGENT), L.MAX_NAME_LEN)
        boot_id = check_uint64("the boot id", payload.get(K.BOOT))
        seq = check_uint64("seq", payload.get(K.SEQ))
        host = check_strmap("the host metadata", payload.get(K.HOST, {}), L.MAX_HOST_FIELDS, L.MAX_STRING_LEN)
        defs = payload.get(K.SERIES, [])
        if not isinstance(defs, list) or len(defs) > L.MAX_SERIES:
            raise ProtocolError(
                f"the series of a key frame must be an array of at most {L.MAX_SERIES} definitions"
            )
        series = [_read_definition(d) for d in defs]
        ref_cols: RefColumns = [None] * len(series)
        ts_history: History = (None, None)
    else:
        assert ref is not None  # a delta frame without its reference was refused above
        agent_id, boot_id = ref.agent_id, ref.boot_id
        step = check_uint64("the seq step", payload.get(K.SEQ, 1))
        seq = ref.seq + step
        if step == 0 or seq >= _U64:
            raise ProtocolError(f"the seq step {step} does not move past the reference")
        host = (
            check_strmap("the host metadata", payload[K.HOST], L.MAX_HOST_FIELDS, L.MAX_STRING_LEN)
            if K.HOST in payload
            else dict(ref.host)
        )
        if K.SERIES in payload:
            series, origin = _read_series_map(payload[K.SERIES], ref)
            ref_cols = [None if r is None else ref.values[r] for r in origin]
        else:
            series, ref_cols = list(ref.series), ref.values
            same_series = True  # the reference's, which were checked when it was decoded
        ts_history = history_of(INT, None, ref.timestamps)
    if not same_series and len(set(series)) != len(series):
        raise ProtocolError("a series appears twice in the frame")
    n = payload.get(K.SAMPLES, 1)
    if type(n) is not int or not 0 <= n <= L.MAX_TIMESTAMPS or n * len(series) > L.MAX_SAMPLES:
        raise ProtocolError(f"the sample count {n!r} is not a whole number within the caps")

    n_series = len(series)
    floats_obj = payload.get(K.FLOAT_COLUMNS, [])
    raws_obj = payload.get(K.RAW_COLUMNS, {})
    if not isinstance(floats_obj, list) or not isinstance(raws_obj, dict):
        raise ProtocolError("the float columns must be an array and the raw columns a map")
    floats = _index_set(floats_obj, n_series, "the float column list")
    raws = _index_set(raws_obj, n_series, "the raw column map")
    if floats & raws:
        raise ProtocolError("a column cannot be both a float and a raw column")
    gaps = _read_gaps(payload.get(K.GAPS, {}), n_series, n)
    gap_count = sum(sum(bits) for j, bits in gaps.items() if j not in raws)
    dec = Decoder(body[stream_at:], n + (n_series - len(raws)) * n - gap_count)

    ts = [t for t in dec.int_column([False] * n, ts_history, CLOCK) if t is not None]
    if any(b <= a for a, b in itertools.pairwise(ts)):
        raise ProtocolError("the timestamps of the frame do not increase")
    values = decode_columns(dec, series, ref_cols, n, floats=floats, raws=raws_obj, gaps=gaps)
    dec.finish()
    events = _read_events(payload.get(K.EVENTS, []))
    return Batch(
        agent_id=agent_id,
        boot_id=boot_id,
        seq=seq,
        timestamps=tuple(ts),
        series=tuple(series),
        values=tuple(values),
        host=host,
        events=events,
    )
