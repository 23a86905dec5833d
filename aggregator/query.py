"""The read path: pick a tier, read raw blocks or rollup rows plus the not-yet-compacted frames.

Everything here runs in a reader thread with its own connection. A query picks the coarsest tier
whose bucket still fits the asked step and that keeps data back to the start (``choose_tier``), so a
30-day chart reads a few rollup rows and never raw blocks. The newest minutes live in ``recent``
rows until their window is compacted; they are folded in on the fly, so a chart is never stale.
Counters are answered as per-second rates.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgewatch.protocol import Kind

from .blockcodec import decode_block
from .compaction import fold_recent, merge_into, read_tier
from .frames import Value
from .rollup import Agg, rates, rebucket, rollup
from .schema import BLOCK_MS, RAW, TIERS, Tier

NATIVE_MS = 10_000  # the agents' default interval: raw data is this fine
MAX_POINTS = 11_000
DEFAULT_POINTS = 500

Point = tuple[int, float | None, float | None, float | None, int]


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


def host_series(conn: sqlite3.Connection, host: int) -> list[SeriesRow]:
    rows = conn.execute(
        "SELECT id, name, labels, kind, precision FROM series WHERE host = ? ORDER BY name, labels", (host,)
    )
    return [SeriesRow(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]


def select_series(
    conn: sqlite3.Connection, host: int, name: str | None, match: Mapping[str, str], ids: Sequence[int] = ()
) -> list[SeriesRow]:
    rows = host_series(conn, host)
    if ids:
        wanted = set(ids)
        rows = [r for r in rows if r.id in wanted]
    if name:
        rows = [r for r in rows if r.name == name]
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


def _head(
    conn: sqlite3.Connection, host: int, start: int, end: int, sids: set[int]
) -> tuple[list[int], dict[int, list[Value]]]:
    rows = conn.execute(
        "SELECT data FROM recent WHERE host = ? AND t1 >= ? AND t0 < ? ORDER BY id", (host, start, end)
    ).fetchall()
    return fold_recent([r[0] for r in rows], sids)


def raw_samples(
    conn: sqlite3.Connection, host: int, sids: set[int], start: int, end: int
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
    times, cols = _head(conn, host, start, end, sids)
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


def tier_buckets(
    conn: sqlite3.Connection, tier: Tier, host: int, series: Sequence[SeriesRow], *, start: int, end: int
) -> dict[int, dict[int, Agg]]:
    """Buckets of ``tier`` in ``[start, end)`` per series: rollup rows plus uncompacted frames."""
    sids = {s.id for s in series}
    out = read_tier(conn, tier, host, start, end, only=sids)
    times, cols = _head(conn, host, start, end, sids)
    kinds = {s.id: s.kind for s in series}
    for sid, col in cols.items():
        if sid not in sids:
            continue
        if kinds[sid] == Kind.COUNTER:
            rt, rv = rates(times, col)
            head = rollup(rt, list(rv), tier.res_ms)
        else:
            head = rollup(times, col, tier.res_ms)
        merge_into(out.setdefault(sid, {}), head, start, end)
    return {sid: b for sid, b in out.items() if b}


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def agg_point(bucket: int, a: Agg) -> Point:
    return (bucket, _finite(a.min), _finite(a.sum / a.count) if a.count else None, _finite(a.max), a.count)


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
) -> tuple[Tier, int, dict[int, list[Point]]]:
    """Points ``(ts, min, avg, max, count)`` per series id, the tier that answered, and the step."""
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
    points: dict[int, list[Point]] = {}
    if tier is RAW:
        samples = raw_samples(conn, host, {s.id for s in series}, start, end)
        for s in series:
            ts, vals = samples[s.id]
            if s.kind == Kind.COUNTER:
                ts, rv = rates(ts, vals)
                vals = list(rv)
            if step >= NATIVE_MS:
                buckets = rollup(ts, vals, step)
                points[s.id] = [agg_point(b, buckets[b]) for b in sorted(buckets)]
            else:
                points[s.id] = [
                    (t, float(v), float(v), float(v), 1)
                    for t, v in zip(ts, vals)
                    if v is not None and math.isfinite(v)
                ]
        return tier, step, points
    buckets_by_sid = tier_buckets(conn, tier, host, series, start=start, end=end)
    for s in series:
        buckets = buckets_by_sid.get(s.id, {})
        if step != tier.res_ms:
            buckets = rebucket(buckets, step)
        points[s.id] = [agg_point(b, buckets[b]) for b in sorted(buckets)]
    return tier, step, points
