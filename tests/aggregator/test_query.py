"""Range queries of the rollup tiers answer what the ``Agg`` path answers, over a real store."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import math
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.aggregator import accounts, compaction, query
from edgewatch.aggregator.compaction import fold_recent, merge_into, read_tier
from edgewatch.aggregator.frames import FrameJob, decode_recent, encode_recent
from edgewatch.aggregator.points import Point, agg_point
from edgewatch.aggregator.rollup import Agg, rates, rebucket, rollup
from edgewatch.aggregator.schema import HOUR_MS, TIER_BY_NAME, Tier
from edgewatch.aggregator.store import GRACE_MS, Store
from edgewatch.protocol import Kind, Series, Value

from .conftest import SERIES, T0, batch

RETENTION = {"raw": 7 * 86_400.0, "1m": 30 * 86_400.0, "5m": 90 * 86_400.0, "1h": 365 * 86_400.0}
DISKS = tuple(Series("node_filesystem_avail_bytes", {"mountpoint": m}, precision=0) for m in ("/", "/home"))


def wobble(k: int, ts: int) -> float | int | None:
    """Values whose sums depend on the order of the additions; a gap now and then; a counter."""
    step = (ts - T0) // 10_000
    if k == 2:
        return 1000 * step + step % 7
    if step % 13 == 5:
        return None
    return round(math.sin(step / 7 + k) * 1e3 + 0.1 * k, 3)


class _Feed:
    """Frames of web-1 (with the disks and odd values) through the writer, as a live agent's."""

    def __init__(self, store: Store, host: int, seq: int = 0) -> None:
        self.store, self.host, self.seq = store, host, seq

    async def push(self, stamps: Sequence[int]) -> None:
        self.seq += 1
        b = batch("web-1", self.seq, stamps, series=[*SERIES, *DISKS], value=wobble)
        await self.store.writer.submit(FrameJob(self.host, b, self.store.series, self.store.acked, 0))


async def _fill(feed: _Feed, now: int) -> None:
    """Three hours at 10 s (compacted, rows merged), then late frames for a compacted window and the
    current window's frames (both left in ``recent``, so they are merged into the rollups' buckets)."""
    for hour in range(3):
        for win in range(6):
            start = T0 + hour * HOUR_MS + win * 600_000
            await feed.push(range(start, start + 600_000, 10_000))
        await feed.store.maintain(T0 + (hour + 1) * HOUR_MS + GRACE_MS)
    late = T0 + HOUR_MS + 5_000  # between the samples of a window that is compacted already
    await feed.push(range(late, late + 300_000, 20_000))
    await feed.push(range(T0 + 3 * HOUR_MS, now, 10_000))


def _agg_path(
    conn: sqlite3.Connection,
    tier: Tier,
    host: int,
    series: Sequence[query.SeriesRow],
    start: int,
    end: int,
    step: int,
) -> dict[int, list[Point]]:
    """What ``range_query`` answered before it read columns: decoded rows, ``merge_into``, ``rebucket``."""
    sids = {s.id for s in series}
    buckets = read_tier(conn, tier, host, start, end, only=sids)
    rows = conn.execute(
        "SELECT data FROM recent WHERE host = ? AND t1 >= ? AND t0 < ? ORDER BY id", (host, start, end)
    ).fetchall()
    times, cols = fold_recent([r[0] for r in rows], sids)
    kinds = {s.id: s.kind for s in series}
    for sid, col in cols.items():
        if kinds[sid] == Kind.COUNTER:
            rt, rv = rates(times, col)
            head = rollup(rt, list(rv), tier.res_ms)
        else:
            head = rollup(times, col, tier.res_ms)
        merge_into(buckets.setdefault(sid, {}), head, start, end)
    out = {}
    for s in series:
        b: dict[int, Agg] = buckets.get(s.id, {})
        if step != tier.res_ms:
            b = rebucket(b, step)
        out[s.id] = [agg_point(k, b[k]) for k in sorted(b)]
    return out


async def _add_host(store: Store, name: str) -> int:
    await store.write(lambda conn: accounts.add_host(conn, name, T0))
    host: int = await store.readers.run(lambda conn: query.host_id(conn, name))
    return host


def _answers_as_the_agg_path(db: Path, host: int, now: int, cache: query.ReadCache) -> None:
    """Every tier, a few ranges and steps, each without and with the cache (twice: cold, then warm)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        series = query.host_series(conn, host)
        cases = [(T0, now, None), (T0 + 90_000, now - 60_000, None), (T0 - HOUR_MS, now + HOUR_MS, 900_000)]
        for name in ("1m", "5m", "1h", None):
            res = TIER_BY_NAME[name or "1m"].res_ms
            for start, end, step in [*cases, (T0 + 30_000, now, 7 * res), (T0 + 50_000, now, 3 * res)]:
                for c in (None, cache, cache):
                    tier, used, got = query.range_query(
                        conn,
                        host,
                        series,
                        start,
                        end,
                        step=step,
                        now=now,
                        retention_s=RETENTION,
                        tier_name=name,
                        cache=c,
                    )
                    if tier.res_ms:
                        want = _agg_path(conn, tier, host, series, start - start % used, end, used)
                        assert json.dumps(got) == json.dumps(want), (name, start, end, step, c)
                        assert all(got.values()), name
    finally:
        conn.close()


def _rows(db: Path, table: str) -> dict[int, bytes]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute(f"SELECT rowid, data FROM {table}").fetchall())
    finally:
        conn.close()


def test_tier_queries_answer_what_the_agg_path_answers_and_a_cache_is_never_stale(tmp_path: Path) -> None:
    now, later = T0 + 3 * HOUR_MS + 250_000, T0 + 3 * HOUR_MS + 900_000
    db = tmp_path / "data" / "edgewatch.db"

    async def build() -> int:
        store = Store(tmp_path / "data", synchronous="normal")
        try:
            host = await _add_host(store, "web-1")
            await _fill(_Feed(store, host), now)
            return host
        finally:
            store.close()

    async def change(host: int) -> None:
        """Late frames for compacted windows, compaction (rollup rows rewritten in place, ``recent``
        rows deleted), then new frames (whose rows take the ids of deleted ones)."""
        store = Store(tmp_path / "data", synchronous="normal")
        try:
            feed = _Feed(store, host, seq=1000)
            await feed.push(range(T0 + 2 * HOUR_MS + 7_000, T0 + 2 * HOUR_MS + 900_000, 30_000))
            await feed.push(range(now, T0 + 3 * HOUR_MS + 600_000, 10_000))
            await store.maintain(T0 + 3 * HOUR_MS + 600_000 + GRACE_MS)
            await feed.push(range(T0 + 3 * HOUR_MS + 600_000, later, 10_000))
        finally:
            store.close()

    host = asyncio.run(build())
    assert len(_rows(db, "recent")) == 2  # a late frame for a compacted window, the current window's
    cache = query.ReadCache()
    _answers_as_the_agg_path(db, host, now, cache)
    assert min(len(cache.recent), len(cache.chunks.indexes), len(cache.chunks.series)) > 0
    rollups, recent = _rows(db, "rollups"), _rows(db, "recent")
    asyncio.run(change(host))
    rollups_after, recent_after = _rows(db, "rollups"), _rows(db, "recent")
    assert any(rollups_after.get(k, v) != v for k, v in rollups.items())  # a row rewritten in place
    assert any(recent_after.get(k, v) != v for k, v in recent.items())  # an id with other bytes now
    _answers_as_the_agg_path(db, host, later, cache)


@pytest.mark.parametrize(
    ("name", "match", "ids"),
    [
        (None, {}, ()),
        ("node_filesystem_avail_bytes", {}, ()),
        ("node_filesystem_avail_bytes", {"mountpoint": "/home"}, ()),
        (None, {"device": "eth0"}, ()),
        (None, {}, (3, 1, 1, 1 << 70, -5)),
        ("node_load1", {}, (2, 3)),
        ("", {"mountpoint": "/"}, (4, 5)),
        ("nothing", {}, ()),
    ],
)
def test_select_series_picks_what_filtering_every_series_picks(
    tmp_path: Path, name: str | None, match: dict[str, str], ids: tuple[int, ...]
) -> None:
    async def build() -> int:
        store = Store(tmp_path / "data", synchronous="normal")
        try:
            host = await _add_host(store, "web-1")
            b = batch("web-1", 1, [T0], series=[*SERIES, *DISKS])
            await store.writer.submit(FrameJob(host, b, store.series, store.acked, 0))
            return host
        finally:
            store.close()

    host = asyncio.run(build())
    conn = sqlite3.connect(tmp_path / "data" / "edgewatch.db", isolation_level=None)
    try:
        every = query.host_series(conn, host)
        want = [
            s
            for s in every
            if (not ids or s.id in ids)
            and (not name or s.name == name)
            and all(s.labels.get(k) == v for k, v in match.items())
        ]
        got = query.select_series(conn, host, name, match, ids)
        assert [dataclasses.astuple(s) for s in got] == [dataclasses.astuple(s) for s in want]
    finally:
        conn.close()


@st.composite
def recent_rows(draw: st.DrawFn) -> list[bytes]:
    """``recent`` rows of up to 12 series (a row may hold a series twice), with gaps and overlaps."""
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        ts = sorted(draw(st.sets(st.integers(0, 20).map(lambda k: T0 + 10_000 * k), min_size=1, max_size=5)))
        sids = draw(st.lists(st.integers(1, 12), min_size=1, max_size=14))
        value = st.none() | st.integers(-5, 5) | st.floats(-1e3, 1e3)
        cols = [draw(st.lists(value, min_size=len(ts), max_size=len(ts))) for _ in sids]
        rows.append(encode_recent(ts, sids, cols))
    return rows


@st.composite
def steady_rows(draw: st.DrawFn) -> tuple[list[bytes], list[int]]:
    """``recent`` rows as a window of frames makes them: the same series, no gap, one after another."""
    sids = draw(st.lists(st.integers(1, 500), min_size=1, max_size=12, unique=True))
    stamps = sorted(draw(st.sets(st.integers(0, 59).map(lambda k: T0 + 10_000 * k), min_size=1, max_size=30)))
    cuts = sorted(draw(st.sets(st.integers(1, len(stamps) - 1), max_size=6))) if len(stamps) > 1 else []
    value = st.integers(-(1 << 62), 1 << 62) | st.floats(allow_nan=False)
    rows = []
    for a, b in itertools.pairwise([0, *cuts, len(stamps)]):
        cols = [draw(st.lists(value, min_size=b - a, max_size=b - a)) for _ in sids]
        rows.append(encode_recent(stamps[a:b], sids, cols))
    return rows, sids


@given(steady_rows())
def test_a_steady_window_folds_by_concatenation_to_what_the_general_fold_makes(
    sample: tuple[list[bytes], list[int]],
) -> None:
    rows, sids = sample
    assert compaction._concatenated([decode_recent(r) for r in rows]) is not None  # the fast path
    fast = fold_recent(rows)
    general = fold_recent(rows, set(sids))  # asking for series takes the general path
    assert fast[0] == general[0]
    assert repr(fast[1]) == repr(dict(sorted(general[1].items(), key=lambda kv: sids.index(kv[0]))))


def _samples(block: tuple[list[int], dict[int, list[Value]]]) -> dict[int, dict[int, Value]]:
    times, cols = block
    return {sid: {t: v for t, v in zip(times, col) if v is not None} for sid, col in cols.items()}


@given(recent_rows(), st.sets(st.integers(0, 13), max_size=10))
def test_folding_some_series_of_recent_rows_keeps_what_folding_all_keeps(
    rows: list[bytes], only: set[int]
) -> None:
    every = _samples(fold_recent(rows))
    want = {sid: samples for sid, samples in every.items() if sid in only}
    assert _samples(fold_recent(rows, only)) == want
    cache = query.ReadCache()
    for _ in range(2):
        assert _samples(fold_recent(rows, only, cache.decode_recent)) == want
