"""Storage through the real app: compaction, every tier exactly once after back-fill, retention, queries."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

from edgewatch.aggregator.chunks import encode_chunk
from edgewatch.aggregator.compaction import hour_rollup, read_tier
from edgewatch.aggregator.db import open_writer
from edgewatch.aggregator.rollup import Agg, rebucket
from edgewatch.aggregator.schema import HOUR_MS, TIERS
from edgewatch.aggregator.store import QUIET_MS, SETTLE_LIMIT_MS, SETTLE_MS

from .conftest import SERIES, T0, batch, harness

HOUR = 3_600_000


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _load1(h: Any, token: str, start: int, end: int, tier: str) -> dict[str, Any]:
    """web-1's node_load1 from ``start`` to ``end`` as ``tier`` answers it (asserting a 200)."""
    status, body = await h.get(
        "/api/v1/query", token, host="web-1", name="node_load1", start=start, end=end, tier=tier
    )
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def _load(points: list[list[float]]) -> tuple[int, float]:
    return sum(int(p[4]) for p in points), sum(p[2] * p[4] for p in points)


def test_outage_back_fill_lands_in_every_tier_exactly_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, now_ms=T0 + HOUR + 120_000) as h:
            await h.add_agent("web-1")
            token = await h.api_token()
            times = [T0 + i * 10_000 for i in range(360)]
            gap = [t for t in times if T0 + 20 * 60_000 <= t < T0 + 40 * 60_000]
            live = [t for t in times if t not in gap]
            seq = 100
            for t in live:  # one sample per frame, as the default agent sends
                seq += 1
                assert (await h.push(batch("web-1", seq, [t])))[0] == 200
            # every frame came just now (this clock stands still): the closed windows settle first
            report = await h.store.maintain(h.clock.ms)
            assert (report.compacted_windows, report.settling_windows) == (0, 4)
            h.clock.ms += SETTLE_MS
            report = await h.store.maintain(h.clock.ms)
            assert report.compacted_windows == 4  # the windows without a sample stay empty
            # the back-log comes after the outage: key frames of 30 samples, one sent twice
            for i in range(0, len(gap), 30):
                seq_b = 10 + i
                b = batch("web-1", seq_b, gap[i : i + 30])
                assert (await h.push(b))[0] == 200
                assert (await h.push(b))[0] == 200
            before = h.sql("SELECT count(*) FROM recent")[0][0]
            assert before == 4  # 120 back-filled samples in 4 frames over 2 windows
            h.clock.ms += SETTLE_MS
            await h.store.maintain(h.clock.ms)
            assert h.sql("SELECT count(*) FROM recent") == [(0,)]
            assert h.sql("SELECT count(*), sum(samples) FROM raw_blocks") == [(6, 360 * 3)]

            raw_sum = sum(round(0.5 + ((t - T0) // 10_000 % 7) / 10, 2) for t in times)
            answers = {}
            for tier in ("raw", "1m", "5m", "1h"):
                body = await _load1(h, token, T0, T0 + HOUR, tier)
                assert body["tier"] == tier
                count, total = _load(body["series"][0]["points"])
                assert count == 360, tier
                assert math.isclose(total, raw_sum, rel_tol=1e-9), tier
                pts = body["series"][0]["points"]
                answers[tier] = (min(p[1] for p in pts), max(p[3] for p in pts))
            assert len(set(answers.values())) == 1, answers  # every tier agrees on min and max
            # a counter answers rates: 1000 per 10 s is 100/s everywhere
            status, body = await h.get(
                "/api/v1/query", token, host="web-1", name=SERIES[2].name, start=T0, end=T0 + HOUR, tier="5m"
            )
            assert status == 200, body
            pts = body["series"][0]["points"]
            assert all(math.isclose(p[2], 100.0) for p in pts)

    run(scenario())


def test_queries_include_frames_not_yet_compacted_and_pick_tiers(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, now_ms=T0 + 25 * HOUR) as h:
            await h.add_agent("web-1")
            token = await h.api_token()
            # 25 hours of data in 1-hour key frames (the back-log of a long outage)
            for i in range(25):
                ts = [T0 + i * HOUR + k * 10_000 for k in range(360)]
                assert (await h.push(batch("web-1", i + 1, ts)))[0] == 200
            await h.store.maintain(T0 + 24 * HOUR + 60_000)  # the last hour stays recent
            expected = {"-1h": "raw", "-24h": "1m", "-7d": "5m"}
            for start, tier in expected.items():
                status, body = await h.get(
                    "/api/v1/query", token, host="web-1", name="node_load1", start=start
                )
                assert status == 200
                assert body["tier"] == tier, (start, body.get("tier"))
                points = body["series"][0]["points"]
                assert points[-1][0] >= T0 + 24 * HOUR, start  # the recent hour is there
            status, body = await h.get("/api/v1/query", token, host="web-1", name="node_load1", start="-30d")
            assert body["tier"] == "1h"
            status, body = await h.get(
                "/api/v1/summary", token, host="web-1", name="node_load1", start="-24h"
            )
            assert status == 200
            s = body["series"][0]["summary"]
            assert s["min"] == 0.5
            assert s["max"] == 1.1
            assert s["samples"] > 8000
            assert body["series"][0]["trend"]["direction"] == "stable"
            status, body = await h.get(
                "/api/v1/patterns", token, host="web-1", name="node_load1", tz="Europe/Berlin"
            )
            assert status == 200
            assert len(body["series"][0]["patterns"]["hours"]) == 24
            status, text = await h.get(
                "/api/v1/export", token, host="web-1", name="node_load1", format="csv", start="-1h"
            )
            lines = text.strip().splitlines()
            assert lines[0].startswith("host,name,labels,timestamp")
            assert len(lines) == 361
            status, body = await h.get(
                "/api/v1/export", token, host="web-1", format="json", start="-1h", step="5m"
            )
            assert status == 200
            assert len(body["series"]) == 3

    run(scenario())


def test_retention_deletes_whole_old_blocks_and_the_file_stops_growing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(
            tmp_path,
            now_ms=T0,
            retention__raw="2h",
            retention__1m="3h",
            retention__5m="4h",
            retention__1h="5h",
        ) as h:
            await h.add_agent("web-1")
            sizes = []
            for hour in range(12):
                ts = [T0 + hour * HOUR + k * 10_000 for k in range(360)]
                h.clock.ms = ts[-1] + 60_000
                assert (await h.push(batch("web-1", hour + 1, ts)))[0] == 200
                await h.store.maintain(h.clock.ms, h.retention)
                sizes.append((h.data_dir / "edgewatch.db").stat().st_size)
            now = h.clock.ms
            oldest_raw = h.sql("SELECT min(t0) FROM raw_blocks")[0][0]
            assert oldest_raw >= now - 2 * HOUR - 600_000
            for tier, keep in ((1, 3), (2, 4), (3, 5)):
                t1 = h.sql("SELECT min(t1) FROM rollups WHERE tier = ?", tier)[0][0]
                assert t1 > now - keep * HOUR, tier
            assert max(sizes[6:]) <= max(sizes[:6]) * 1.5, sizes  # steady state: pages are reused

    run(scenario())


def test_bad_query_parameters_are_400_not_500(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await h.add_agent("web-1")
            token = await h.api_token()
            assert (await h.push(batch("web-1", 1, [T0])))[0] == 200
            for params in (
                {"start": "nan"},
                {"start": "inf"},
                {"end": "-" + "9" * 400 + "d"},
                {"step": "9" * 400},
                {"step": "0.1s"},
                {"start": "yesterday"},
                {"tier": "2m"},
                {"series": "x"},
            ):
                status, body = await h.get("/api/v1/query", token, host="web-1", **params)
                assert status == 400, (params, body)
                assert body["error"]
            status, body = await h.get("/api/v1/query", token, host="nobody")
            assert status == 404
            status, body = await h.get("/api/v1/query", token, host="web-1", name="nothing")
            assert status == 404
            status, body = await h.get("/api/v1/hosts", "ewt_x.y")
            assert status == 401
            status, body = await h.get("/api/v1/hosts", "ewt_é.ü")
            assert status == 401

    run(scenario())


def test_a_window_that_cannot_be_compacted_does_not_stop_the_others_or_retention(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, now_ms=T0 + HOUR) as h:
            await h.add_agent("web-1")
            await h.add_agent("web-2")
            assert (await h.push(batch("web-1", 1, [T0 + 10_000])))[0] == 200
            assert (await h.push(batch("web-2", 1, [T0 + 10_000])))[0] == 200
            hid = h.sql("SELECT id FROM hosts WHERE name = 'web-1'")[0][0]
            await h.store.write(
                lambda conn: conn.execute(
                    "INSERT INTO recent (host, win, t0, t1, data) VALUES (?, ?, ?, ?, ?)",
                    (hid, T0, T0, T0, b"not zstd"),
                )
            )
            report = await h.store.maintain(h.clock.ms + SETTLE_MS, h.retention)
            assert report.failed == 1
            assert report.compacted_windows == 1
            assert h.sql("SELECT count(*) FROM raw_blocks") == [(1,)]
            status = await h.store.readers.run(lambda conn: conn.execute("PRAGMA auto_vacuum").fetchone()[0])
            assert status == 2  # incremental: free pages can be given back

    run(scenario())


def test_a_closed_window_is_compacted_once_frames_stop_coming_into_it(tmp_path: Path) -> None:
    """A back-fill in progress is compacted once, when it is done: a closed window is left alone
    while frames come into it, and compacted ``SETTLE_LIMIT_MS`` after the first if they keep coming."""

    async def scenario() -> None:
        async with harness(tmp_path, now_ms=T0 + HOUR) as h:
            await h.add_agent("web-1")
            start = h.clock.ms
            passes = []
            step = SETTLE_MS // 2
            frames = SETTLE_LIMIT_MS // step + 1
            for k in range(frames):  # frames of the first window (closed long ago), one each step
                h.clock.ms = start + k * step
                assert (await h.push(batch("web-1", k + 1, [T0 + k * 1_000])))[0] == 200
                report = await h.store.maintain(h.clock.ms + 1)
                passes.append((report.compacted_windows, report.settling_windows))
            # left while the frames come, compacted once the last came SETTLE_LIMIT_MS after the first
            assert passes == [(0, 1)] * (frames - 1) + [(1, 0)]
            assert (await h.push(batch("web-1", frames + 1, [T0 + frames * 1_000])))[0] == 200
            report = await h.store.maintain(h.clock.ms + SETTLE_MS - 1)
            assert (report.compacted_windows, report.settling_windows) == (0, 1)
            report = await h.store.maintain(h.clock.ms + SETTLE_MS)
            assert (report.compacted_windows, report.settling_windows) == (1, 0)
            assert h.sql("SELECT count(*) FROM recent") == [(0,)]
            assert h.sql("SELECT count(*), sum(samples) FROM raw_blocks") == [(1, (frames + 1) * len(SERIES))]

    run(scenario())


def test_a_complete_chunk_span_is_merged_once_no_compaction_writes_into_it(tmp_path: Path) -> None:
    """A back-fill into a span that is over leaves its rows unmerged while compactions still write
    into it, and merges them one quiet period later; the answers do not change."""
    span = T0 - T0 % (6 * HOUR)  # the 1 m tier's chunk span of T0 (6 hours)
    now = span + 7 * HOUR

    async def scenario() -> None:
        async with harness(tmp_path, now_ms=now) as h:
            await h.add_agent("web-1")
            token = await h.api_token()

            def rows() -> int:
                return int(h.sql("SELECT count(*) FROM rollups WHERE tier = 1 AND t0 >= ?", span)[0][0])

            async def answer() -> object:
                return (await _load1(h, token, span, span + HOUR, "1m"))["series"]

            for k in range(3):  # three windows of a back-log, one pass each, as the spool drains
                h.clock.ms = now + k * 60_000
                ts = [span + k * 600_000 + i * 10_000 for i in range(60)]
                assert (await h.push(batch("web-1", k + 1, ts)))[0] == 200
                report = await h.store.maintain(h.clock.ms + SETTLE_MS)
                assert (report.compacted_windows, report.merged_rows) == (1, 0)
            assert rows() == 3
            before = await answer()
            last = h.clock.ms + SETTLE_MS  # the last compaction into the span
            report = await h.store.maintain(last + QUIET_MS - 1)
            assert (report.merged_rows, rows()) == (0, 3)  # still within the quiet period
            report = await h.store.maintain(last + QUIET_MS)
            assert (report.merged_rows, rows()) == (3, 1)
            assert await answer() == before

    run(scenario())


def test_an_hour_of_5m_rows_that_overlap_is_merged_bucket_by_bucket(tmp_path: Path) -> None:
    """The 1 h bucket is its 5 m buckets merged in time order, a bucket held by two rows merged
    first: from their fields (``span_totals``) when the rows follow each other, and bucket by bucket
    (``read_tier``) when they overlap, as here."""
    five, hour = TIERS[2], T0 - T0 % HOUR_MS
    a = {
        7: {
            hour: Agg(1, 0.0, 0.0, 1e16, 0.0, hour),
            hour + 300_000: Agg(1, 1.0, 1.0, 1.0, 1.0, hour + 300_005),
        }
    }
    b = {7: {hour + 300_000: Agg(2, -1.0, 2.0, 1.0, 2.0, hour + 300_009)}}
    conn = open_writer(tmp_path / "x.db", "normal")
    try:
        rows = [
            (hour, encode_chunk(hour, five.res_ms, 2, a)),
            (hour + 300_000, encode_chunk(hour + 300_000, five.res_ms, 1, b)),
        ]
        conn.executemany(
            "INSERT INTO rollups (tier, host, t0, t1, data) VALUES (?, 1, ?, ?, ?)",
            [(five.id, t0, t0 + five.res_ms * 2, data) for t0, data in rows],
        )
        got = hour_rollup(conn, 1, hour)
        expected = rebucket(read_tier(conn, five, 1, hour, hour + HOUR_MS)[7], HOUR_MS)
    finally:
        conn.close()
    assert got == {7: expected} == {7: {hour: Agg(4, -1.0, 2.0, 1e16 + 2.0, 2.0, hour + 300_009)}}
