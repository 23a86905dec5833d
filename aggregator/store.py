"""The storage engine as one object: the writer, the readers, the in-memory catalogs, maintenance.

``Store(data_dir)`` takes the data dir's lock (``datadir``: one aggregator per data dir, and no
restore under it), migrates the database and starts the writer thread; ``maintain(now_ms)``
compacts closed windows, merges rollup rows and applies retention (the server calls it on a timer,
tests call it with their own clock); ``close()`` lets queued writes commit and is safe twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from .catalog import Acked, SeriesIds
from .compaction import (
    CompactJob,
    MergeRollupsJob,
    RetentionJob,
    Span,
    merge_candidates,
    spans_of,
    vacuum_some,
)
from .datadir import DataDirLock
from .db import DB_NAME, Readers, open_writer
from .schema import BLOCK_MS
from .writer import Overloaded, Writer, WriterClosed

log = logging.getLogger("edgewatch.aggregator.store")
T = TypeVar("T")
GRACE_MS = 30_000  # a window is compacted this long after it ends, when late frames are unlikely
# a complete chunk span's rows are merged once no compaction has written into it for this long, so a
# back-fill of many windows (an agent's spool after an outage) rewrites each span once, not each pass
QUIET_MS = BLOCK_MS
# a closed window is compacted once no frame has come into it for SETTLE_MS, so a back-fill in
# progress (frames of old windows arriving in a burst) is compacted once, when it is done; a window
# that frames keep coming into is compacted SETTLE_LIMIT_MS after the first of them all the same
SETTLE_MS = 2_000
SETTLE_LIMIT_MS = 60_000


@dataclass
class CallJob(Generic[T]):
    """A writer job that runs ``fn(conn)`` and answers its result."""

    fn: Callable[[sqlite3.Connection], T]

    def apply(self, conn: sqlite3.Connection) -> T:
        return self.fn(conn)

    def committed(self) -> None:
        pass

    def aborted(self) -> None:
        pass


@dataclass
class MaintenanceReport:
    compacted_windows: int = 0
    compacted_rows: int = 0
    settling_windows: int = 0  # closed windows left for a later pass: frames came into them lately
    merged_rows: int = 0
    deleted: int = 0
    vacuumed_pages: int = 0
    failed: int = 0


class Store:
    def __init__(
        self, data_dir: Path, *, synchronous: str = "full", commit_delay: float = 0.005, max_queue: int = 5000
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir = data_dir
        self.path = data_dir / DB_NAME
        self._lock = DataDirLock(data_dir, "an edgewatch aggregator")  # DataDirBusy when taken
        try:
            conn = open_writer(self.path, synchronous)
            os.chmod(self.path, 0o600)
        except BaseException:
            self._lock.release()
            raise
        self.series = SeriesIds()
        self.series.load(conn)
        self.acked = Acked()
        self.writer = Writer(conn, commit_delay=commit_delay, max_queue=max_queue)
        self.readers = Readers(self.path)
        self.auth_readers = Readers(self.path, threads=1)  # token checks never wait behind queries
        self._closed = False
        self.last_report = MaintenanceReport()
        # chunk span -> when a compaction last wrote into it: complete spans merge once quiet
        self._touched: dict[Span, int] = {}
        # (host, window) -> when the first and the last frame came into it since its compaction
        self._arrivals: dict[tuple[int, int], tuple[int, int]] = {}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.writer.close()
        self.readers.close()
        self.auth_readers.close()
        self._lock.release()

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        result: T = await self.writer.submit(CallJob(fn))
        return result

    async def maintain(
        self, now_ms: int, retention_s: Mapping[str, float] | None = None
    ) -> MaintenanceReport:
        """Compact every window closed by ``now_ms``, merge rollup rows, apply retention."""
        report = MaintenanceReport()
        windows = await self.readers.run(
            lambda conn: conn.execute(
                "SELECT DISTINCT host, win FROM recent WHERE win + ? <= ? ORDER BY win",
                (BLOCK_MS + GRACE_MS, now_ms),
            ).fetchall()
        )
        for host, win in windows:
            arrived = self._arrivals.get((host, win))
            if (
                arrived is not None
                and now_ms - arrived[1] < SETTLE_MS
                and now_ms - arrived[0] < SETTLE_LIMIT_MS
            ):
                report.settling_windows += 1
                continue
            self._arrivals.pop((host, win), None)  # before: a frame that comes meanwhile is noted again
            rows = await self._submit_wait(CompactJob(host, win, self.series), report)
            report.compacted_windows += rows is not None
            report.compacted_rows += rows or 0
            self._touched.update(dict.fromkeys(spans_of(host, win), now_ms))
        self._touched = {span: t for span, t in self._touched.items() if 0 <= now_ms - t < QUIET_MS}
        self._arrivals = {k: t for k, t in self._arrivals.items() if 0 <= now_ms - t[1] < SETTLE_LIMIT_MS}
        busy = set(self._touched)
        candidates = await self.readers.run(lambda conn: merge_candidates(conn, now_ms, busy))
        for tier, host, chunk in candidates:
            report.merged_rows += await self._submit_wait(MergeRollupsJob(tier, host, chunk), report) or 0
        if retention_s is not None:
            report.deleted = await self._submit_wait(RetentionJob(now_ms, retention_s), report) or 0
            report.vacuumed_pages = await self._submit_wait(CallJob(vacuum_some), report) or 0
        self.last_report = report
        return report

    def arrived(self, host: int, windows: Iterable[int], now_ms: int) -> None:
        """Note that a frame of ``host`` came into ``windows`` (``FrameResult.windows``) at ``now_ms``."""
        for win in windows:
            first = self._arrivals.get((host, win), (now_ms, now_ms))[0]
            self._arrivals[(host, win)] = (first, now_ms)

    async def _submit_wait(self, job: Any, report: MaintenanceReport) -> Any:
        """Run a maintenance job, waiting for room in the queue rather than failing. A job that fails
        is logged and counted and the others go on: one bad window never stops the rest."""
        while True:
            try:
                return await self.writer.submit(job)
            except Overloaded:
                await asyncio.sleep(0.05)
            except WriterClosed:
                raise
            except Exception as exc:
                report.failed += 1
                log.error("maintenance job=%s failed: %s", job, exc)
                return None

    def storage_bytes(self) -> dict[str, int]:
        """Bytes on disk: the database file and its WAL."""
        out = {}
        for suffix in ("", "-wal"):
            try:
                out["db" + suffix.replace("-", "_")] = (self.data_dir / (DB_NAME + suffix)).stat().st_size
            except FileNotFoundError:
                out["db" + suffix.replace("-", "_")] = 0
        return out
