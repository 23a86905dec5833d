"""The read path: pick a tier, read raw blocks or rollup rows plus the not-yet-compacted frames.

Everything here runs in a reader thread with its own connection. A query picks the coarsest tier
whose bucket still fits the asked step and that keeps data back to the start (``choose_tier``), so a
30-day chart reads a few rollup rows and never raw blocks. The newest minutes live in ``recent``
rows until their window is compacted; they are folded in on the fly, so a chart is never stale.
Counters are answered as per-second rates.

A rollup row holds every series of a host; a query reads only its series table and the blobs of the
series asked for (``sqlite3.Blob``), and turns their buckets into points as columns (``points``).
The ``ReadCache`` keeps decoded bytes for the next queries, keyed by those bytes, never by row ids.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from edgewatch.protocol import Kind

from .blockcodec import decode_block
from .chunks import ChunkCache, Columns, ReadAt, read_columns
from .compaction import fold_recent
from .frames import Decoded, Value, decode_recent, decode_recent_shared
from .memo import DEFAULT_BUDGET, Memo
from .points import Point, agg_point, clip, combine, of_aggs, points
from .rollup import Agg, rates, rollup
from .schema import BLOCK_MS, RAW, TIERS, Tier

NATIVE_MS = 10_000  # the agents' default interval: raw data is this fine
MAX_POINTS = 11_000
DEFAULT_POINTS = 500


class QueryError(ValueError):
    """A query that cannot be answered, as one sentence (400, or 404 when ``status`` says so)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SeriesRow:
    id: int
    name: str
    labels: dict[str, str]
    kind: int
    precision: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "labels": self.labels,
            "kind": "counter" if self.kind == Kind.COUNTER else "gauge",
            "precision": self.precision,
        }


def host_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM hosts WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise QueryError(f"there is no host named {name!r}; see /api/v1/hosts", 404)
    return int(row[0])


_SERIES = "SELECT id, name, labels, kind, precision FROM series WHERE host = ?"


def _series_rows(rows: Iterable[tuple[int, str, str, int, int | None]]) -> list[SeriesRow]:
    return [SeriesRow(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]


def host_series(conn: sqlite3.Connection, host: int) -> list[SeriesRow]:
    return _series_rows(conn.execute(_SERIES + " ORDER BY name, labels", (host,)))


def select_series(
    conn: sqlite3.Connection, host: int, name: str | None, match: Mapping[str, str], ids: Sequence[int] = ()
) -> list[SeriesRow]:
    """The series of a host named ``name``, among ``ids`` and with the labels ``match`` (each if given),
    by name and labels. SQL picks by name and id, so a host's other series are not even parsed."""
    sql = _SERIES
    params: list[int | str] = [host]
    if name:
        sql += " AND name = ?"
        params.append(name)
    if ids:  # as JSON: any number of ids, and one out of the int64 range matches nothing
        sql += " AND id IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(sorted(set(ids))))
    rows = _series_rows(conn.execute(sql + " ORDER BY name, labels", params))
    if match:
        rows = [r for r in rows if all(r.labels.get(k) == v for k, v in match.items())]
    return rows


def choose_tier(
    start: int, end: int, step: int | None, now: int, retention_s: Mapping[str, float]
) -> tuple[Tier, int]:
    """The tier that answers ``[start, end)`` at ``step`` (ms), and the step it will use."""
    if end <= start:
        raise QueryError("end must be after start")
    if step is None:
        step = max((end - start) // DEFAULT_POINTS, 1)
    kept = [t for t in TIERS if start >= now - int(retention_s[t.name] * 1000) - BLOCK_MS]
    if not kept:
        kept = [TIERS[-1]]
    fitting = [t for t in kept if max(t.res_ms, NATIVE_MS if t is RAW else 0) <= max(step, NATIVE_MS)]
    tier = max(fitting, key=lambda t: t.res_ms) if fitting else min(kept, key=lambda t: t.res_ms)
    if tier.res_ms:
        step = max(tier.res_ms, -(-step // tier.res_ms) * tier.res_ms)
    if (end - start) // step > MAX_POINTS:
        raise QueryError(
            f"the query asks for over {MAX_POINTS} points per series; use a larger step or a shorter range"
        )
    return tier, step


@dataclass
class ReadCache:
    """What the read path keeps between queries, each value by the bytes it comes from (``memo``):
    decoded ``recent`` rows, and the tables and series of rollup chunks; 16 MB in all, as estimated."""

    recent: Memo[bytes, Decoded] = field(default_factory=lambda: Memo(DEFAULT_BUDGET // 2))
    chunks: ChunkCache = field(default_factory=lambda: ChunkCache.new(DEFAULT_BUDGET // 2))

    def decode_recent(self, data: bytes) -> Decoded:
        return self.recent.get(data, partial(decode_recent_shared, data))


def _head(
    conn: sqlite3.Connection, host: int, start: int, end: int, sids: set[int], *, cache: ReadCache | None
) -> tuple[list[int], dict[int, list[Value]]]:
    rows = conn.execute(
        "SELECT data FROM recent WHERE host = ? AND t1 >= ? AND t0 < ? ORDER BY id", (host, start, end)
    ).fetchall()
    return fold_recent([r[0] for r in rows], sids, cache.decode_recent if cache else decode_recent)


def raw_samples(
    conn: sqlite3.Connection,
    host: int,
    sids: set[int],
    start: int,
    end: int,
    *,
    cache: ReadCache | None = None,
) -> dict[int, tuple[list[int], list[Value]]]:
    """Raw ``(timestamps, values)`` per series in ``[start, end)``: blocks, then uncompacted frames."""
    merged: dict[int, dict[int, Value]] = {sid: {} for sid in sids}
    for (data,) in conn.execute(
        "SELECT data FROM raw_blocks WHERE host = ? AND t0 > ? AND t0 < ? ORDER BY t0",
        (host, start - BLOCK_MS, end),
    ):
        times, cols = decode_block(data, sids)
        for sid, col in cols.items():
            target = merged[sid]
            for t, v in zip(times, col):
                if v is not None and start <= t < end:
                    target[t] = v
    times, cols = _head(conn, host, start, end, sids, cache=cache)
    for sid, col in cols.items():
        if sid in merged:
            target = merged[sid]
            for t, v in zip(times, col):
                if v is not None and start <= t < end:
                    target[t] = v
    out = {}
    for sid, samples in merged.items():
        ts = sorted(samples)
        out[sid] = (ts, [samples[t] for t in ts])
    return out


@contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction around the block, unless the connection is in one already."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def _blob_reader(blob: sqlite3.Blob) -> ReadAt:
    def read(offset: int, length: int) -> bytes:
        blob.seek(offset)
        return blob.read(length)

    return read


def rollup_columns(
    conn: sqlite3.Connection,
    tier: Tier,
    host: int,
    sids: set[int],
    *,
    start: int,
    end: int,
    cache: ChunkCache | None = None,
) -> list[dict[int, Columns]]:
    """The buckets of the series ``sids`` in each rollup row of ``tier`` that overlaps ``[start, end)``,
    by time; only those series' bytes of a row are read (a row holds every series of the host), through
    a blob handle on its rowid (``rollups`` must stay a rowid table)."""
    out = []
    with _snapshot(conn):  # the rowids and the blobs of one state of the file
        rows = conn.execute(
            "SELECT rowid FROM rollups WHERE tier = ? AND host = ? AND t0 >= ? AND t0 < ? AND t1 > ?"
            " ORDER BY t0",
            (tier.id, host, start - tier.chunk_ms, end, start),
        ).fetchall()
        for (rowid,) in rows:
            with conn.blobopen("rollups", "data", rowid, readonly=True) as blob:
                out.append(read_columns(_blob_reader(blob), len(blob), sids, cache))
    return out


def _head_buckets(
    conn: sqlite3.Connection,
    tier: Tier,
    host: int,
    series: Sequence[SeriesRow],
    *,
    start: int,
    end: int,
    cache: ReadCache | None,
) -> dict[int, dict[int, Agg]]:
    """Buckets of ``tier`` from the frames not compacted yet (counters as per-second rates)."""
    sids = {s.id for s in series}
    kinds = {s.id: s.kind for s in series}
    times, cols = _head(conn, host, start, end, sids, cache=cache)
    out = {}
    for sid, col in cols.items():
        if sid not in sids:
            continue
        if kinds[sid] == Kind.COUNTER:
            rt, rv = rates(times, col)
            out[sid] = rollup(rt, list(rv), tier.res_ms)
        else:
            out[sid] = rollup(times, col, tier.res_ms)
    return out


def tier_columns(
    conn: sqlite3.Connection,
    tier: Tier,
    host: int,
    series: Sequence[SeriesRow],
    *,
    start: int,
    end: int,
    cache: ReadCache | None = None,
) -> dict[int, Columns]:
    """Buckets of ``tier`` in ``[start, end)`` per series: rollup rows plus uncompacted frames."""
    parts: dict[int, list[Columns]] = {s.id: [] for s in series}
    chunks = cache.chunks if cache else None
    for row in rollup_columns(conn, tier, host, set(parts), start=start, end=end, cache=chunks):
        for sid, cols in row.items():
            parts[sid].append(clip(cols, start, end))
    for sid, buckets in _head_buckets(conn, tier, host, series, start=start, end=end, cache=cache).items():
        parts[sid].append(clip(of_aggs(buckets), start, end))
    merged = {sid: combine(p) for sid, p in parts.items()}
    return {sid: cols for sid, cols in merged.items() if cols.starts}


def range_query(
    conn: sqlite3.Connection,
    host: int,
    series: Sequence[SeriesRow],
    start: int,
    end: int,
    *,
    step: int | None,
    now: int,
    retention_s: Mapping[str, float],
    tier_name: str | None = None,
    cache: ReadCache | None = None,
) -> tuple[Tier, int, dict[int, list[Point]]]:
    """Points ``(ts, min, avg, max, count)`` per series id, the tier that answered, and the step;
    ``cache`` keeps what the next queries will decode again."""
    if tier_name is not None:
        tier = next((t for t in TIERS if t.name == tier_name), None)
        if tier is None:
            raise QueryError(f"tier {tier_name!r} is unknown; use one of {', '.join(t.name for t in TIERS)}")
        step = max(step or (end - start) // DEFAULT_POINTS, tier.res_ms, 1)
        if tier.res_ms:
            step = -(-step // tier.res_ms) * tier.res_ms
        if (end - start) // max(step, NATIVE_MS if tier is RAW else 1) > MAX_POINTS:
            raise QueryError(
                f"the query asks for more than {MAX_POINTS} points per series; use a larger step"
            )
    else:
        tier, step = choose_tier(start, end, step, now, retention_s)
    start -= start % step if tier.res_ms else 0
    out: dict[int, list[Point]] = {}
    if tier is RAW:
        samples = raw_samples(conn, host, {s.id for s in series}, start, end, cache=cache)
        for s in series:
            ts, vals = samples[s.id]
            if s.kind == Kind.COUNTER:
                ts, rv = rates(ts, vals)
                vals = list(rv)
            if step >= NATIVE_MS:
                buckets = rollup(ts, vals, step)
                out[s.id] = [agg_point(b, buckets[b]) for b in sorted(buckets)]
            else:
                out[s.id] = [
                    (t, float(v), float(v), float(v), 1)
                    for t, v in zip(ts, vals)
                    if v is not None and math.isfinite(v)
                ]
        return tier, step, out
    cols_by_sid = tier_columns(conn, tier, host, series, start=start, end=end, cache=cache)
    empty = Columns([], [], [], [], [])
    for s in series:
        out[s.id] = points(cols_by_sid.get(s.id, empty), None if step == tier.res_ms else step)
    return tier, step, out
