"""Writer jobs that keep the storage compact: window compaction, rollup merging and retention.

Compaction folds the ``recent`` rows of one host and window into its raw block (merging with what
the block holds: late and back-filled frames land in old windows too), then recomputes that
window's 1 m and 5 m buckets and its hour's 1 h bucket from the raw data, replacing what the tiers
held there. Recomputing from raw, never adding to a bucket, makes every tier hold each sample
exactly once however often a window is compacted. Rollup rows start one per window and are merged
into chunks (``Tier.chunk_ms``) later, so a 30-day query reads a few rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, compress
from operator import methodcaller

from edgewatch.protocol import Kind

from .blockcodec import decode_block, encode_block, merge_blocks
from .catalog import SeriesIds
from .chunks import (
    BUCKET_BYTES,
    MAX_DECODED,
    chunk_concat,
    chunk_replace,
    decode_chunk,
    encode_chunk,
    span_totals,
)
from .frames import Decoded, Value, decode_recent
from .rollup import Agg, BlockRollup, merge, rebucket
from .schema import BLOCK_MS, HOUR_MS, TIERS, Tier

T1M, T5M, T1H = TIERS[1], TIERS[2], TIERS[3]
Buckets = dict[int, dict[int, Agg]]  # series id -> bucket start -> aggregate
Block = tuple[list[int], dict[int, list[Value]]]


def fold_recent(
    rows: Sequence[bytes],
    only: Collection[int] | None = None,
    decode: Callable[[bytes], Decoded] = decode_recent,
) -> Block:
    """The samples of ``recent`` rows as one block; a later row wins for the same series and time.

    ``decode`` decodes a row (readers share decoded rows: ``query.ReadCache.decode_recent``)."""
    decoded: Iterable[Decoded] = map(decode, rows)
    if only is None:
        decoded = list(decoded)
        if (block := _concatenated(decoded)) is not None:
            return block
    by_sid: dict[int, dict[int, Value]] = {}
    for ts, sids, cols in decoded:
        pairs: Iterable[tuple[int, Sequence[Value]]] = zip(sids, cols)
        if only is not None:
            pairs = ((sids[i], cols[i]) for i in _positions(sids, only))
        for sid, col in pairs:
            target = by_sid.setdefault(sid, {})
            for t, v in zip(ts, col):
                if v is not None:
                    target[t] = v
    times = sorted({t for samples in by_sid.values() for t in samples})
    return times, {sid: [samples.get(t) for t in times] for sid, samples in by_sid.items()}


def _concatenated(decoded: Sequence[Decoded]) -> Block | None:
    """The block of rows that hold the same series in the same order, no gap, and each row's
    samples after the one before: the usual window of frames, whose block is the rows one after the
    other (no row overrides another, every timestamp has values); None for any other rows."""
    if not decoded:
        return None
    sids = decoded[0][1]
    last = None
    for ts, row_sids, cols in decoded:
        if not ts or (last is not None and ts[0] <= last) or row_sids != sids or _has_gaps(cols):
            return None
        last = ts[-1]
    if len(set(sids)) != len(sids):
        return None
    times = list(chain.from_iterable(ts for ts, _, _ in decoded))
    columns = zip(*(cols for _, _, cols in decoded))  # per series, its column in each row
    return times, dict(zip(sids, map(list, map(chain.from_iterable, columns))))


def _has_gaps(cols: Sequence[Sequence[Value]]) -> bool:
    return any(map(_holds_none, cols))  # in C, column by column


_holds_none = methodcaller("__contains__", None)


def _positions(sids: Sequence[int], only: Collection[int]) -> list[int]:
    """Where the series of ``only`` are in ``sids`` (a series' own places in order); a query of a few
    series counts and finds each (in C) rather than testing every series of the host."""
    if len(only) > 8:
        return list(compress(range(len(sids)), map(only.__contains__, sids)))
    out = []
    for sid in only:
        at = -1
        for _ in range(sids.count(sid)):
            at = sids.index(sid, at + 1)
            out.append(at)
    return out


def window_rollups(block: Block, kinds: Mapping[int, int]) -> Buckets:
    """1 m buckets of every series of a block (counters as per-second rates)."""
    times, cols = block
    out: Buckets = {}
    rolls = BlockRollup(times, T1M.res_ms)
    for sid, col in cols.items():
        buckets = rolls.counter(col) if kinds.get(sid) == Kind.COUNTER else rolls.gauge(col)
        if buckets:
            out[sid] = buckets
    return out


def _tier_rows(conn: sqlite3.Connection, tier: Tier, host: int, start: int, end: int) -> list[bytes]:
    """The rows of ``tier`` that may hold buckets of ``host`` in ``[start, end)``, in time order."""
    return [
        data
        for (data,) in conn.execute(
            "SELECT data FROM rollups WHERE tier = ? AND host = ? AND t0 >= ? AND t0 < ? AND t1 > ?"
            " ORDER BY t0",
            (tier.id, host, start - tier.chunk_ms, end, start),
        )
    ]


def read_tier(
    conn: sqlite3.Connection, tier: Tier, host: int, start: int, end: int, *, only: set[int] | None = None
) -> Buckets:
    return _merged(_tier_rows(conn, tier, host, start, end), start, end, only)


def _merged(rows: Iterable[bytes], start: int, end: int, only: set[int] | None = None) -> Buckets:
    out: Buckets = {}
    for data in rows:
        for sid, buckets in decode_chunk(data, only, (start, end)).items():
            merge_into(out.setdefault(sid, {}), buckets, start, end)
    return {sid: b for sid, b in out.items() if b}


def hour_rollup(conn: sqlite3.Connection, host: int, hour: int) -> Buckets:
    """The 1 h bucket of every series of ``host`` in the hour from ``hour``: its 5 m buckets merged
    (``span_totals`` from their fields, or bucket by bucket when it cannot)."""
    end = hour + HOUR_MS
    rows = _tier_rows(conn, T5M, host, hour, end)
    totals = span_totals(rows, hour, end)
    if totals is not None:
        return {sid: {hour: agg} for sid, agg in totals.items()}
    return {s: rebucket(b, HOUR_MS) for s, b in _merged(rows, hour, end).items()}


def merge_into(target: dict[int, Agg], buckets: Mapping[int, Agg], start: int, end: int) -> None:
    """Add the buckets in ``[start, end)`` to ``target`` in place (the decoded Aggs are fresh)."""
    for b, agg in buckets.items():
        if start <= b < end:
            have = target.get(b)
            target[b] = agg if have is None else merge(have, agg)


def store_tier(
    conn: sqlite3.Connection, tier: Tier, host: int, start: int, end: int, *, series: Buckets
) -> None:
    """Replace the buckets of ``tier`` in ``[start, end)`` with ``series`` (a row per span, or in a chunk)."""
    row = conn.execute(
        "SELECT t0, t1, data FROM rollups WHERE tier = ? AND host = ? AND t0 <= ? AND t1 > ?"
        " ORDER BY t0 DESC LIMIT 1",
        (tier.id, host, start, start),
    ).fetchone()
    if row is not None and row[1] >= end:
        t0, t1, data = row
        new = chunk_replace(data, t0, tier.res_ms, (t1 - t0) // tier.res_ms, start, end, series)
        conn.execute(
            "UPDATE rollups SET data = ? WHERE tier = ? AND host = ? AND t0 = ?", (new, tier.id, host, t0)
        )
    elif series:
        data = encode_chunk(start, tier.res_ms, (end - start) // tier.res_ms, series)
        conn.execute(
            "INSERT OR REPLACE INTO rollups (tier, host, t0, t1, data) VALUES (?, ?, ?, ?, ?)",
            (tier.id, host, start, end, data),
        )


@dataclass
class CompactJob:
    """Fold the ``recent`` rows of ``host`` in window ``win`` into its raw block and rollups."""

    host: int
    win: int
    series: SeriesIds
    samples: int = 0

    def apply(self, conn: sqlite3.Connection) -> int:
        rows = conn.execute(
            "SELECT id, data FROM recent WHERE host = ? AND win = ? ORDER BY id", (self.host, self.win)
        ).fetchall()
        if not rows:
            return 0
        block = fold_recent([data for _, data in rows])
        old = conn.execute(
            "SELECT data FROM raw_blocks WHERE host = ? AND t0 = ?", (self.host, self.win)
        ).fetchone()
        if old is not None:
            block = merge_blocks(decode_block(old[0]), block)
        times, cols = block
        precisions, kinds = self.series.meta(tuple(cols))
        self.samples = sum(len(col) - col.count(None) for col in cols.values())
        conn.execute(
            "INSERT OR REPLACE INTO raw_blocks (host, t0, samples, data) VALUES (?, ?, ?, ?)",
            (self.host, self.win, self.samples, encode_block(times, cols, precisions)),
        )
        end = self.win + BLOCK_MS
        m1 = window_rollups(block, kinds)
        store_tier(conn, T1M, self.host, self.win, end, series=m1)
        m5w = {s: rebucket(b, T5M.res_ms) for s, b in m1.items()}
        store_tier(conn, T5M, self.host, self.win, end, series=m5w)
        hour = self.win - self.win % HOUR_MS
        store_tier(conn, T1H, self.host, hour, hour + HOUR_MS, series=hour_rollup(conn, self.host, hour))
        conn.executemany("DELETE FROM recent WHERE id = ?", [(rid,) for rid, _ in rows])
        return len(rows)

    def committed(self) -> None:
        pass

    def aborted(self) -> None:
        pass


@dataclass
class MergeRollupsJob:
    """Merge the rollup rows of one host inside one chunk span of a tier into one row."""

    tier: Tier
    host: int
    chunk: int

    def apply(self, conn: sqlite3.Connection) -> int:
        end = self.chunk + self.tier.chunk_ms
        rows = conn.execute(
            "SELECT t0, t1 FROM rollups WHERE tier = ? AND host = ? AND t0 >= ? AND t0 < ?",
            (self.tier.id, self.host, self.chunk, end),
        ).fetchall()
        if len(rows) < 2:
            return 0
        t1 = max(r[1] for r in rows)
        count = conn.execute("SELECT count(*) FROM series WHERE host = ?", (self.host,)).fetchone()[0]
        if count * (t1 - self.chunk) // self.tier.res_ms * BUCKET_BYTES > MAX_DECODED // 2:
            return 0  # a host with this many series keeps smaller rows: a chunk must stay decodable
        n = (t1 - self.chunk) // self.tier.res_ms
        blobs = [
            blob
            for (blob,) in conn.execute(
                "SELECT data FROM rollups WHERE tier = ? AND host = ? AND t0 >= ? AND t0 < ? ORDER BY t0",
                (self.tier.id, self.host, self.chunk, end),
            )
        ]
        data = chunk_concat(self.chunk, self.tier.res_ms, n, blobs)  # rows of separate windows, as a rule
        if data is None:
            data = encode_chunk(
                self.chunk, self.tier.res_ms, n, read_tier(conn, self.tier, self.host, self.chunk, t1)
            )
        conn.execute(
            "DELETE FROM rollups WHERE tier = ? AND host = ? AND t0 >= ? AND t0 < ?",
            (self.tier.id, self.host, self.chunk, end),
        )
        conn.execute(
            "INSERT INTO rollups (tier, host, t0, t1, data) VALUES (?, ?, ?, ?, ?)",
            (self.tier.id, self.host, self.chunk, t1, data),
        )
        return len(rows)

    def committed(self) -> None:
        pass

    def aborted(self) -> None:
        pass


MERGE_AT = 24  # small rows in one chunk span that are merged even before the span is complete

Span = tuple[int, int, int]  # (tier id, host, chunk start): the rollup rows one merge makes one


def spans_of(host: int, win: int) -> list[Span]:
    """The chunk spans whose rows the compaction of ``host``'s window ``win`` writes."""
    return [(tier.id, host, win - win % tier.chunk_ms) for tier in TIERS[1:]]


def merge_candidates(
    conn: sqlite3.Connection, now_ms: int, busy: Collection[Span] = ()
) -> list[tuple[Tier, int, int]]:
    """``(tier, host, chunk start)`` of rollup rows worth merging: ``MERGE_AT`` rows in a span, or a
    span that is complete and not ``busy`` (compacted into lately: a back-fill or a late frame may
    add to it again, and each merge rewrites the whole span)."""
    out = []
    for tier in TIERS[1:]:
        c = tier.chunk_ms
        for host, chunk, count in conn.execute(
            "SELECT host, (t0 / ?) * ? AS chunk, count(*) FROM rollups WHERE tier = ?"
            " GROUP BY host, chunk HAVING count(*) > 1",
            (c, c, tier.id),
        ):
            if count >= MERGE_AT or (chunk + c + BLOCK_MS <= now_ms and (tier.id, host, chunk) not in busy):
                out.append((tier, host, chunk))
    return out


@dataclass
class RetentionJob:
    """Delete whole blocks and rollup rows older than each tier's retention; give back free pages."""

    now_ms: int
    retention_s: Mapping[str, float]
    deleted: int = 0

    def apply(self, conn: sqlite3.Connection) -> int:
        raw_cut = self.now_ms - int(self.retention_s["raw"] * 1000)
        n = conn.execute("DELETE FROM raw_blocks WHERE t0 + ? <= ?", (BLOCK_MS, raw_cut)).rowcount
        n += conn.execute("DELETE FROM recent WHERE win + ? <= ?", (BLOCK_MS, raw_cut)).rowcount
        n += conn.execute("DELETE FROM events WHERE ts < ?", (raw_cut,)).rowcount
        for tier in TIERS[1:]:
            cut = self.now_ms - int(self.retention_s[tier.name] * 1000)
            n += conn.execute("DELETE FROM rollups WHERE tier = ? AND t1 <= ?", (tier.id, cut)).rowcount
        self.deleted = n
        return n

    def committed(self) -> None:
        pass

    def aborted(self) -> None:
        pass


def vacuum_some(conn: sqlite3.Connection, keep_fraction: float = 0.25) -> int:
    """Release free pages beyond ``keep_fraction`` of the file (they are reused first anyway)."""
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    total = conn.execute("PRAGMA page_count").fetchone()[0]
    extra = free - int(total * keep_fraction)
    if extra > 0:
        conn.execute(f"PRAGMA incremental_vacuum({int(extra)})")
        return int(extra)
    return 0
