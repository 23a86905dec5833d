"""How a tier's chunk stores the buckets (``rollup.Agg``) of one host.

A chunk holds the buckets of one host and one tier from ``t0`` to ``t0 + n * res_ms``: the format
byte ``0xC1``, ``<qqII`` (``t0``, ``res_ms``, ``n``, series count), the series ids (int64), then per
series (uint32 each) the length of its blob, its first and last bucket index and its bucket count,
then the blobs. A blob is one zstd frame (that declares its size) of the series' non-empty buckets,
field after field (``_CODES``): index minus the index before (-1 before the first), count,
``last_ts`` minus the bucket start, then min, max, sum and last as float64. Reading a series
decompresses its blob only (``read_columns`` reads no other bytes of the chunk at all); a replace
re-codes only the series with buckets in the range (and, to append after a series' last bucket,
needs no bucket index of it); merging rows of separate spans joins their fields (``chunk_concat``).
"""

from __future__ import annotations

import struct
import threading
from array import array
from bisect import bisect_left
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import partial, reduce
from itertools import accumulate, chain, islice, pairwise, repeat
from math import isfinite
from operator import add, floordiv, lt, mul, sub
from typing import Any, NamedTuple

import zstandard

from .lebytes import le_array as _array
from .lebytes import le_bytes as _le
from .memo import Memo
from .rollup import Agg

MAX_BUCKETS = 1_000_000  # n of one chunk
MAX_DECODED = 64 * 1024 * 1024  # decompressed bytes that one decode or replace may produce
FORMAT = 0xC1
LEVEL = 3

_HALF = 1 << 63
_MAX_WINDOW = 1 << 23
_HEAD = struct.Struct("<BqqII")
_local = threading.local()  # zstd contexts are not safe to share between threads


class ChunkError(ValueError):
    """A rollup chunk cannot be decoded: its bytes are corrupt, truncated or not a chunk at all."""


Fields = list[bytes]  # a series' fields (``_CODES``), each with one item per bucket
# a series' blob, first and last bucket index, bucket count
Entry = tuple[bytes | memoryview, int, int, int]
_CODES = ("I", "I", "q", "d", "d", "d", "d")  # index delta, count, last_ts offset, min, max, sum, last
_WIDTHS = tuple(array(code).itemsize for code in _CODES)
FIELDS = len(_CODES)
BUCKET_BYTES = sum(_WIDTHS)  # decompressed


def _items(raw: bytes | memoryview, code: str) -> list[Any]:
    return _array(raw, code).tolist()


def _deltas(idx: list[int], before: int) -> bytes:
    """The index field: each bucket index minus the one before (``before`` for the first)."""
    return _le(array("I", map(sub, idx, [before, *idx])))


def _pack(idx: list[int], starts: list[int], aggs: list[Agg], before: int = -1) -> Fields:
    """The fields of the buckets ``idx`` (sorted) that start at ``starts`` and hold ``aggs``."""
    floats = ([a.min for a in aggs], [a.max for a in aggs], [a.sum for a in aggs], [a.last for a in aggs])
    try:
        counts = array("I", [a.count for a in aggs])
        offsets = array("q", map(sub, [a.last_ts for a in aggs], starts))
        fields = [_le(array("d", f)) for f in floats]
    except (OverflowError, TypeError) as exc:
        raise ValueError(f"a bucket holds a value of the wrong type or range ({exc})") from None
    if 0 in counts:
        raise ValueError("a bucket has the count 0; chunks hold only buckets with samples")
    return [_deltas(idx, before), _le(counts), _le(offsets), *fields]


def _compress(fields: Fields) -> bytes:
    cctx: zstandard.ZstdCompressor | None = getattr(_local, "cctx", None)
    if cctx is None:
        cctx = _local.cctx = zstandard.ZstdCompressor(
            level=LEVEL, write_content_size=True, write_checksum=True
        )
    return cctx.compress(b"".join(fields))


def _index(fields: Fields, first: int, last: int) -> list[int]:
    """The bucket indices of a series, checked against the chunk header's ``first`` and ``last``."""
    deltas = _items(fields[0], "I")
    idx = list(accumulate(deltas, initial=-1))
    del idx[0]
    if 0 in deltas or idx[0] != first or idx[-1] != last:
        raise ChunkError("a chunk's bucket indices do not match its series table")
    return idx


def _starts(index_field: bytes | memoryview, t0: int, res_ms: int, first: int, last: int) -> list[int]:
    """The bucket starts of a series' index field, checked against the series table's first and last."""
    deltas = _items(index_field, "I")
    starts = list(accumulate(map(mul, deltas, repeat(res_ms)), initial=t0 - res_ms))
    del starts[0]
    if 0 in deltas or starts[0] != t0 + first * res_ms or starts[-1] != t0 + last * res_ms:
        raise ChunkError("a chunk's bucket indices do not match its series table")
    return starts


def _counts(count_field: bytes | memoryview) -> list[int]:
    counts = _items(count_field, "I")
    if 0 in counts:
        raise ChunkError("a chunk has a bucket with no samples")
    return counts


def _unpack(
    fields: Fields, t0: int, res_ms: int, first: int, last: int, *, span: tuple[int, int] | None = None
) -> dict[int, Agg]:
    """The buckets of a series' fields; with ``span`` ``(start, end)`` only those starting in it
    (the other fields' values are not read: an hour of a day's chunk costs an hour)."""
    starts = _starts(fields[0], t0, res_ms, first, last)
    if span is not None:
        starts, fields = _in_span(starts, fields, *span)
    counts = _counts(fields[1])
    last_ts = map(add, _items(fields[2], "q"), starts)
    mn, mx, total, lst = (_items(f, "d") for f in fields[3:])
    return dict(zip(starts, map(Agg, counts, mn, mx, total, lst, last_ts)))


def _in_span(starts: list[int], fields: Fields, start: int, end: int) -> tuple[list[int], Fields]:
    """The starts and fields of the buckets that start in ``[start, end)`` (the index field, whose
    deltas do not slice, as it is)."""
    lo, hi = bisect_left(starts, start), bisect_left(starts, end)
    if (lo, hi) == (0, len(starts)):
        return starts, fields
    return starts[lo:hi], [fields[0], *(f[w * lo : w * hi] for f, w in zip(fields[1:], _WIDTHS[1:]))]


def _geometry(head: bytes, size: int) -> tuple[int, int, int, int]:
    """``(t0, res_ms, n, series count)`` from the first bytes of a chunk of ``size`` bytes, checked."""
    try:
        fmt, t0, res_ms, n, c = _HEAD.unpack_from(head)
    except struct.error:
        raise ChunkError("these bytes are too short to be a rollup chunk") from None
    if fmt != FORMAT:
        raise ChunkError("these bytes are not a rollup chunk (wrong format byte)")
    if res_ms < 1 or not 0 <= n <= MAX_BUCKETS or 24 * c > size - _HEAD.size:
        raise ChunkError(f"a chunk claims {n} buckets of {res_ms} ms and {c} series")
    return t0, res_ms, n, c


class _Table(NamedTuple):
    """A chunk's series table: ids, blob lengths, first and last bucket index, bucket count."""

    ids: array[int]
    lens: array[int]
    firsts: array[int]
    lasts: array[int]
    counts: array[int]


def _table(raw: bytes, c: int, size: int) -> _Table:
    """The series table (``24 * c`` bytes) of a chunk of ``size`` bytes, checked against that size."""
    ids = _array(raw[: 8 * c], "q")
    rest = _array(raw[8 * c :], "I")
    lens, firsts, lasts, counts = rest[:c], rest[c : 2 * c], rest[2 * c : 3 * c], rest[3 * c :]
    if _HEAD.size + 24 * c + sum(lens) != size:
        raise ChunkError("a chunk's series table does not match its size")
    if BUCKET_BYTES * sum(counts) > MAX_DECODED:
        raise ChunkError(f"a chunk claims to decode to more than {MAX_DECODED} bytes, the size cap")
    return _Table(ids, lens, firsts, lasts, counts)


class _Index(NamedTuple):
    """A chunk's checked series table, the position of each series in it and where its blob starts."""

    table: _Table
    where: dict[int, int]
    offsets: list[int]


def _index_of(raw: bytes, c: int, size: int) -> _Index:
    """The index of a chunk of ``size`` bytes from its series table (``24 * c`` bytes)."""
    table = _table(raw, c, size)
    where = dict(zip(table.ids, range(c)))
    if len(where) != c:
        raise ChunkError("a chunk holds the same series twice")
    return _Index(table, where, list(accumulate(table.lens, initial=_HEAD.size + 24 * c)))


def _check_entry(first: int, last: int, m: int, n: int) -> None:
    if not 0 < m <= last - first + 1 or last >= n:
        raise ChunkError("a chunk's series table is inconsistent")


def _body(blob: bytes | memoryview, m: int) -> memoryview:
    """The decompressed body of a series' blob (one zstd frame of ``m`` buckets): its fields in a row."""
    size = BUCKET_BYTES * m
    try:
        params = zstandard.get_frame_parameters(blob)
        if params.content_size != size or params.window_size > _MAX_WINDOW:
            raise ChunkError(f"a series of a chunk is not the zstd frame of {m} buckets it should be")
        dctx = getattr(_local, "dctx", None)
        if dctx is None:
            dctx = _local.dctx = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW)
        body = memoryview(dctx.decompress(blob, max_output_size=size, allow_extra_data=False))
    except zstandard.ZstdError as exc:
        raise ChunkError(f"a series of a chunk is corrupt ({exc})") from None
    if len(body) != size:
        raise ChunkError("a series of a chunk is truncated")
    return body


def _fields(blob: bytes | memoryview, m: int) -> Fields:
    """The fields of a series' blob (one zstd frame of ``m`` buckets)."""
    body = _body(blob, m)
    ends = list(accumulate((w * m for w in _WIDTHS), initial=0))
    return [body[a:b] for a, b in pairwise(ends)]  # type: ignore[misc]


class _Chunk:
    """The header of a chunk: its geometry, and where each series' blob is."""

    def __init__(self, data: bytes) -> None:
        self.t0, self.res_ms, self.n, c = _geometry(data, len(data))
        index = _index_of(data[_HEAD.size : _HEAD.size + 24 * c], c, len(data))
        self.firsts, self.lasts, self.counts = index.table.firsts, index.table.lasts, index.table.counts
        self.ends, self.where = index.offsets, index.where
        self.data = memoryview(data)

    def entry(self, sid: int) -> Entry:
        i = self.where[sid]
        first, last, m = self.firsts[i], self.lasts[i], self.counts[i]
        _check_entry(first, last, m, self.n)
        return self.data[self.ends[i] : self.ends[i + 1]], first, last, m

    def fields(self, entry: Entry) -> Fields:
        """The fields of a series' blob (one zstd frame)."""
        return _fields(entry[0], entry[3])


def _encode(t0: int, res_ms: int, n: int, entries: Mapping[int, Entry]) -> bytes:
    ids = sorted(entries)
    rows = [entries[sid] for sid in ids]
    if BUCKET_BYTES * sum(e[3] for e in rows) > MAX_DECODED:
        raise ValueError(f"the chunk would decode to more than {MAX_DECODED} bytes; use smaller chunks")
    table = [_HEAD.pack(FORMAT, t0, res_ms, n, len(ids)), _le(array("q", ids))]
    blobs, firsts, lasts, counts = zip(*rows) if rows else ((), (), (), ())
    table += [_le(array("I", column)) for column in (map(len, blobs), firsts, lasts, counts)]
    return b"".join([*table, *blobs])


def _check_geometry(t0: int, res_ms: int, n: int) -> None:
    if res_ms < 1 or not 0 <= n <= MAX_BUCKETS or not -_HALF <= t0 <= t0 + n * res_ms < _HALF:
        raise ValueError(f"a chunk of {n} buckets of {res_ms} ms from {t0} is out of range")


def _given(
    buckets: Mapping[int, Agg], t0: int, res_ms: int, lo: int, hi: int
) -> tuple[list[int], list[int], list[Agg]]:
    """``(indices, starts, aggs)`` of ``buckets``, sorted; each must be a bucket with index in [lo, hi)."""
    starts = sorted(buckets)
    idx = list(map(floordiv, map(sub, starts, repeat(t0)), repeat(res_ms)))
    if idx and (
        idx[0] < lo or idx[-1] >= hi or starts != list(map(add, map(mul, idx, repeat(res_ms)), repeat(t0)))
    ):
        raise ValueError(
            f"bucket starts {starts[0]}..{starts[-1]} are not all buckets {lo} to {hi - 1} "
            f"of the chunk ({res_ms} ms from {t0})"
        )
    return idx, starts, [buckets[k] for k in starts]


def _corrupt(exc: Exception) -> ChunkError:
    return exc if isinstance(exc, ChunkError) else ChunkError(f"a chunk is corrupt ({exc})")


def encode_chunk(t0: int, res_ms: int, n: int, series: Mapping[int, Mapping[int, Agg]]) -> bytes:
    """A chunk of buckets ``t0 + i * res_ms`` (``0 <= i < n``); series with no bucket are left out.

    ``ValueError`` for a bucket that is not one of the chunk's, or a count outside 1 to 2**32 - 1.
    """
    _check_geometry(t0, res_ms, n)
    entries: dict[int, Entry] = {}
    for sid, buckets in series.items():
        if buckets:
            idx, starts, aggs = _given(buckets, t0, res_ms, 0, n)
            entries[sid] = (_compress(_pack(idx, starts, aggs)), idx[0], idx[-1], len(idx))
    return _encode(t0, res_ms, n, entries)


def decode_chunk(
    data: bytes, only: Collection[int] | None = None, span: tuple[int, int] | None = None
) -> dict[int, dict[int, Agg]]:
    """Series id -> bucket start -> aggregate, only the series in ``only`` and the buckets that
    start in ``span`` (``(start, end)``) if given; a series with no bucket there maps to ``{}``.

    Raises ``ChunkError`` and nothing else for any bytes; each series read decompresses one blob.
    """
    chunk = _Chunk(data)
    sids = chunk.where if only is None else [sid for sid in only if sid in chunk.where]
    out = {}
    try:
        for sid in sids:
            e = chunk.entry(sid)
            out[sid] = _unpack(chunk.fields(e), chunk.t0, chunk.res_ms, e[1], e[2], span=span)
    except (IndexError, ValueError, OverflowError) as exc:  # ChunkError is a ValueError
        raise _corrupt(exc) from None
    return out


def span_totals(rows: Sequence[bytes], start: int, end: int) -> dict[int, Agg] | None:
    """Per series, the one ``Agg`` of all its buckets that start in ``[start, end)`` of ``rows``
    (chunks in time order): what merging those buckets in time order makes (``rollup.rebucket`` to
    one bucket), to the bit, computed from the fields without making a bucket of them. ``None``
    when rows overlap or come out of order (a bucket in two rows is merged before the others), a
    series' ``last_ts`` do not increase or a min or max is not finite: merge the buckets instead.
    ``ChunkError`` for corrupt rows."""
    parts: dict[int, list[Fields]] = {}
    after: dict[int, int] = {}  # per series, the start of its last bucket so far
    try:
        for data in rows:
            chunk = _Chunk(data)
            t0, res_ms = chunk.t0, chunk.res_ms
            for sid in chunk.where:
                e = chunk.entry(sid)
                first, last = t0 + e[1] * res_ms, t0 + e[2] * res_ms
                if last < start or first >= end:
                    continue
                f = chunk.fields(e)
                starts, f = _in_span(_starts(f[0], t0, res_ms, e[1], e[2]), f, start, end)
                if not starts:
                    continue
                if starts[0] <= after.get(sid, starts[0] - 1):
                    return None
                after[sid] = starts[-1]
                last_ts = array("q", map(add, _array(f[2], "q"), starts))
                parts.setdefault(sid, []).append([_le(last_ts), *f[1:]])
        return _totals(parts)
    except (IndexError, ValueError, OverflowError) as exc:  # ChunkError is a ValueError
        raise _corrupt(exc) from None


def _totals(parts: Mapping[int, list[Fields]]) -> dict[int, Agg] | None:
    """``span_totals`` of each series' pieces: ``[last_ts, count, offset, min, max, sum, last]`` fields."""
    out = {}
    for sid, pieces in parts.items():
        f = pieces[0] if len(pieces) == 1 else list(map(b"".join, zip(*pieces)))
        last_ts = _items(f[0], "q")
        counts = _counts(f[1])
        mins, maxs, sums, lasts = (_array(x, "d") for x in f[3:])
        if not (all(map(lt, last_ts, islice(last_ts, 1, None))) and all(map(isfinite, chain(mins, maxs)))):
            return None
        out[sid] = Agg(sum(counts), min(mins), max(maxs), reduce(add, sums), lasts[-1], last_ts[-1])
    return out


def chunk_concat(t0: int, res_ms: int, n: int, rows: Sequence[bytes]) -> bytes | None:
    """The chunk of buckets ``t0 + i * res_ms`` (``0 <= i < n``) that holds the buckets of ``rows``,
    chunks of the same resolution inside it in time order, made from their series' fields without
    making a bucket of them: the bytes ``encode_chunk`` makes of their buckets. ``None`` when a
    bucket is in two rows or out of order (decode and merge them instead); ``ChunkError`` for
    corrupt rows."""
    _check_geometry(t0, res_ms, n)
    pieces: dict[int, list[tuple[int, _Chunk, Entry]]] = {}
    try:
        for data in rows:
            chunk = _Chunk(data)
            shift, rest = divmod(chunk.t0 - t0, res_ms)
            if chunk.res_ms != res_ms or rest or shift < 0 or shift + chunk.n > n:
                return None
            for sid in chunk.where:
                pieces.setdefault(sid, []).append((shift, chunk, chunk.entry(sid)))
        entries: dict[int, Entry] = {}
        for sid, parts in pieces.items():
            if len(parts) == 1 and parts[0][0] == 0:
                entries[sid] = parts[0][2]  # its indices and fields stay as they are
                continue
            idx: list[int] = []
            fields: list[list[bytes | memoryview]] = [[] for _ in range(FIELDS - 1)]
            for shift, chunk, e in parts:
                f = chunk.fields(e)
                more = _index(f, e[1], e[2])
                if shift:
                    more = list(map(add, more, repeat(shift)))
                if idx and more[0] <= idx[-1]:
                    return None
                idx += more
                for k, field in enumerate(f[1:]):
                    fields[k].append(field)
            merged = [_deltas(idx, -1), *map(b"".join, fields)]
            entries[sid] = (_compress(merged), idx[0], idx[-1], len(idx))
    except (IndexError, ValueError, OverflowError) as exc:  # ChunkError is a ValueError
        raise _corrupt(exc) from None
    return _encode(t0, res_ms, n, entries)


class Columns(NamedTuple):
    """Buckets of one series in time order as parallel sequences: what a chart needs of each ``Agg``."""

    starts: Sequence[int]
    counts: Sequence[int]
    mins: Sequence[float]
    maxs: Sequence[float]
    sums: Sequence[float]


ReadAt = Callable[[int, int], bytes]
"""``read(offset, length)``: that many bytes of a chunk from ``offset`` (fewer at its end)."""

SeriesKey = tuple[int, int, int, int, int, bytes]  # t0, res_ms, first and last index, count, blob


class ChunkCache(NamedTuple):
    """What ``read_columns`` keeps between reads (``Memo``, keyed by the bytes each value comes from):
    the index of a chunk by its size and series table, a series' columns by its blob and geometry."""

    indexes: Memo[tuple[int, bytes], _Index]
    series: Memo[SeriesKey, Columns]

    @classmethod
    def new(cls, budget: int) -> ChunkCache:
        return cls(Memo(budget // 4), Memo(budget - budget // 4))


def read_columns(
    read: ReadAt, size: int, only: Collection[int], cache: ChunkCache | None = None
) -> dict[int, Columns]:
    """Series id -> its buckets as ``Columns`` (of tuples), for the series in ``only`` of a chunk of
    ``size`` bytes.

    ``read`` reads the chunk: this reads its header, its series table and the blob of each series
    asked for, and nothing else, so a query of one series reads a few kB of a row that holds every
    series of a host (``sqlite3.Blob``). The buckets and the errors are those of ``decode_chunk``.
    """
    t0, res_ms, n, c = _geometry(read(0, _HEAD.size), size)
    raw = read(_HEAD.size, 24 * c)
    if cache is None:
        index = _index_of(raw, c, size)
    else:  # about 8 bytes of arrays, dict and offsets for each byte of the table
        index = cache.indexes.get((size, raw), lambda: (_index_of(raw, c, size), 8 * len(raw)))
    table, out = index.table, {}
    try:
        for sid in only:
            i = index.where.get(sid)
            if i is None:
                continue
            first, last, m = table.firsts[i], table.lasts[i], table.counts[i]
            _check_entry(first, last, m, n)
            key = (t0, res_ms, first, last, m, read(index.offsets[i], table.lens[i]))
            out[sid] = _series(key) if cache is None else cache.series.get(key, partial(_costed_series, key))
    except (IndexError, ValueError, OverflowError) as exc:  # ChunkError is a ValueError
        raise _corrupt(exc) from None
    return out


def _series(key: SeriesKey) -> Columns:
    """The columns of a series' blob (``key`` holds the blob and what its buckets need of the chunk)."""
    t0, res_ms, first, last, m, blob = key
    body = _body(blob, m)
    starts = tuple(_starts(body[: 4 * m], t0, res_ms, first, last))
    counts = tuple(_counts(body[4 * m : 8 * m]))
    floats = _array(body[16 * m : 40 * m], "d")  # min, max, sum
    return Columns(starts, counts, tuple(floats[:m]), tuple(floats[m : 2 * m]), tuple(floats[2 * m :]))


def _costed_series(key: SeriesKey) -> tuple[Columns, int]:
    return _series(key), 200 * key[4] + len(key[5])  # about 40 bytes a figure, and the key's blob


def chunk_replace(  # noqa: PLR0917 - the storage engine calls it positionally
    data: bytes | None,
    t0: int,
    res_ms: int,
    n: int,
    start: int,
    end: int,
    series: Mapping[int, Mapping[int, Agg]],
) -> bytes:
    """The chunk with every bucket in ``[start, end)`` replaced by the buckets of ``series``.

    A series with buckets in the range but none in ``series`` loses them; buckets outside the range
    stay, and a series with no bucket in the range keeps its blob as it is. ``data`` None is an
    empty chunk. ``ChunkError`` for corrupt ``data`` or ``data`` of another geometry; ``ValueError``
    for a bucket of ``series`` outside the range.
    """
    _check_geometry(t0, res_ms, n)
    lo = max(0, min(n, -((t0 - start) // res_ms)))  # the first index whose bucket starts at or after start
    hi = max(lo, min(n, -((t0 - end) // res_ms)))
    chunk = _Chunk(data) if data is not None else None
    entries: dict[int, Entry] = {}
    if chunk is not None:
        if (chunk.t0, chunk.res_ms, chunk.n) != (t0, res_ms, n):
            raise ChunkError(
                f"the chunk holds {chunk.n} buckets of {chunk.res_ms} ms from {chunk.t0}, "
                f"not {n} of {res_ms} ms from {t0}"
            )
        entries = {sid: chunk.entry(sid) for sid in chunk.where}
    for sid in series.keys() | entries.keys():
        new_idx, starts, aggs = _given(series.get(sid) or {}, t0, res_ms, lo, hi)
        old = entries.pop(sid, None)
        if old is None or chunk is None or (lo <= old[1] and old[2] < hi):  # no old bucket stays
            if new_idx:
                blob = _compress(_pack(new_idx, starts, aggs))
                entries[sid] = (blob, new_idx[0], new_idx[-1], len(new_idx))
            continue
        if not new_idx and (old[2] < lo or old[1] >= hi):
            entries[sid] = old  # nothing of this series in the range: its blob stays as it is
            continue
        m = old[3]
        try:
            fields = chunk.fields(old)
            idx = _index(fields, old[1], old[2]) if old[1] < hi and old[2] >= lo else []
        except (IndexError, ValueError, OverflowError) as exc:
            raise _corrupt(exc) from None
        if idx:
            a, b = bisect_left(idx, lo), bisect_left(idx, hi)
            before, after = (idx[a - 1] if a else -1), (idx[b] if b < m else -1)
        elif old[2] < lo:  # all of it before the range: the new buckets are appended
            a, b, before, after = m, m, old[2], -1
        else:  # all of it after the range
            a, b, before, after = 0, 0, -1, old[1]
        added = _pack(new_idx, starts, aggs, before) if new_idx else [b""] * FIELDS
        tail = _deltas([after], new_idx[-1] if new_idx else before) if after >= 0 else b""
        merged = [b"".join((fields[0][: 4 * a], added[0], tail, fields[0][4 * b + 4 :]))]
        merged += [
            b"".join((f[: w * a], x, f[w * b :])) for f, x, w in zip(fields[1:], added[1:], _WIDTHS[1:])
        ]
        first = old[1] if a else (new_idx[0] if new_idx else after)
        last = old[2] if b < m else (new_idx[-1] if new_idx else before)
        entries[sid] = (_compress(merged), first, last, m - (b - a) + len(new_idx))
    return _encode(t0, res_ms, n, entries)
