"""Storing one pushed frame: the writer job, and the ``recent`` rows it writes.

A frame's samples are split by raw block window (``BLOCK_MS``) and each part becomes one ``recent``
row: zstd of msgpack ``[timestamps, series ids, columns]``. Compaction later folds the rows of a
window into its raw block and rollups. The job also records the frame's ``(host, boot, seq)`` as
acknowledged (a repeat stores nothing), the events, and the host's last-seen time and facts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import methodcaller

import msgpack
import zstandard

from edgewatch.protocol import Batch

from .catalog import Acked, SeriesIds, Undo, to_i64
from .schema import BLOCK_MS

Value = int | float | None
_count_none = methodcaller("count", None)
_compressor = zstandard.ZstdCompressor(level=1)  # used by the writer thread only
_local = threading.local()  # a decompressor per thread: zstd contexts are not safe to share


def encode_recent(
    timestamps: Sequence[int], sids: Sequence[int], columns: Sequence[Sequence[Value]]
) -> bytes:
    # msgpack packs tuples and lists alike (as arrays), so the decoded frame's tuples go as they are
    return _compressor.compress(msgpack.packb([timestamps, sids, columns]))


def _decompress(data: bytes) -> bytes:
    dctx: zstandard.ZstdDecompressor | None = getattr(_local, "dctx", None)
    if dctx is None:
        dctx = _local.dctx = zstandard.ZstdDecompressor()
    raw: bytes = dctx.decompress(data)
    return raw


def decode_recent(data: bytes) -> tuple[list[int], list[int], list[list[Value]]]:
    ts, sids, cols = msgpack.unpackb(_decompress(data), strict_map_key=False)
    return ts, sids, cols


Decoded = tuple[Sequence[int], Sequence[int], Sequence[Sequence[Value]]]
"""A ``recent`` row as ``(timestamps, series ids, columns)``."""


def decode_recent_shared(data: bytes) -> tuple[Decoded, int]:
    """A ``recent`` row as tuples, which readers can share (``memo.Memo``), and about the bytes it
    takes (40 a value and a series, and the row's own bytes, its key)."""
    ts, sids, cols = msgpack.unpackb(_decompress(data), strict_map_key=False, use_list=False)
    return (ts, sids, cols), len(data) + 40 * len(sids) * (len(ts) + 1)


def split_windows(timestamps: Sequence[int]) -> dict[int, list[int]]:
    """Window start → indexes of the timestamps in it."""
    out: dict[int, list[int]] = {}
    for i, ts in enumerate(timestamps):
        out.setdefault(ts - ts % BLOCK_MS, []).append(i)
    return out


@dataclass
class FrameResult:
    duplicate: bool
    samples: int = 0
    dropped_old: int = 0
    windows: list[int] = field(default_factory=list)  # the windows it wrote ``recent`` rows into


@dataclass
class FrameJob:
    """Store ``batch`` for host ``host`` unless ``(host, boot, seq)`` is stored already."""

    host: int
    batch: Batch
    series: SeriesIds
    acked: Acked
    oldest_ms: int  # samples older than this (raw retention) are dropped
    undo: list[Undo] = field(default_factory=list)

    def apply(self, conn: sqlite3.Connection) -> FrameResult:
        b = self.batch
        boot, seq = to_i64(b.boot_id), to_i64(b.seq)
        if self.acked.seen(conn, self.host, boot, seq):
            return FrameResult(duplicate=True)
        sids = self.series.resolve(conn, self.host, b.series, self.undo)
        stored = dropped = 0
        rows = []
        for win, idx in split_windows(b.timestamps).items():
            if win + BLOCK_MS <= self.oldest_ms:
                dropped += len(idx) * len(sids)
                continue
            ts = [b.timestamps[i] for i in idx]
            if len(idx) == len(b.timestamps):
                cols: list[Sequence[Value]] = list(b.values)
            else:
                cols = [[col[i] for i in idx] for col in b.values]
            if None not in chain.from_iterable(cols):  # in C: most frames hold one sample and no gap
                stored += len(idx) * len(cols)
                data = encode_recent(ts, sids, cols)
            else:
                gaps = list(map(_count_none, cols))
                keep = [k for k, g in enumerate(gaps) if g < len(idx)]
                if not keep:
                    continue
                stored += len(idx) * len(keep) - sum(gaps[k] for k in keep)
                data = encode_recent(ts, [sids[k] for k in keep], [cols[k] for k in keep])
            rows.append((self.host, win, ts[0], ts[-1], data))
        conn.executemany("INSERT INTO recent (host, win, t0, t1, data) VALUES (?, ?, ?, ?, ?)", rows)
        if b.events:
            conn.executemany(
                "INSERT INTO events (host, ts, type, attrs) VALUES (?, ?, ?, ?)",
                [(self.host, e.ts, e.type, json.dumps(dict(e.attrs), default=str)) for e in b.events],
            )
        last = b.timestamps[-1] if b.timestamps else max((e.ts for e in b.events), default=0)
        sets = ["last_seen_ms = max(coalesce(last_seen_ms, 0), ?)"]
        params: list[object] = [last]
        if len(b.timestamps) >= 2:
            sets.append("interval_ms = ?")
            params.append(b.timestamps[-1] - b.timestamps[-2])
        if b.host:
            sets.append("facts = ?")
            params.append(json.dumps(dict(b.host), default=str, sort_keys=True))
        conn.execute(f"UPDATE hosts SET {', '.join(sets)} WHERE id = ?", (*params, self.host))  # noqa: S608
        self.acked.add(conn, self.host, boot, seq, self.undo)
        return FrameResult(duplicate=False, samples=stored, dropped_old=dropped, windows=[r[1] for r in rows])

    def committed(self) -> None:
        self.undo.clear()

    def aborted(self) -> None:
        for back in reversed(self.undo):
            back()
        self.undo.clear()
