"""The writer thread: group commit, a failing job rolls back alone, overload, a close that drains."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgewatch.aggregator.db import Readers, open_writer
from edgewatch.aggregator.osthread import os_name
from edgewatch.aggregator.store import CallJob
from edgewatch.aggregator.writer import Overloaded, Writer, WriterClosed


@dataclass
class Insert:
    value: int
    fail: bool = False
    done: bool = False
    undone: bool = False

    def apply(self, conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (v) VALUES (?)", (self.value,))
        if self.fail:
            raise ValueError("this job is bad")
        return self.value

    def committed(self) -> None:
        self.done = True

    def aborted(self) -> None:
        self.undone = True


def _writer(tmp_path: Path, **kw: float) -> Writer:
    conn = open_writer(tmp_path / "w.db")
    conn.execute("CREATE TABLE t (v INTEGER)")
    return Writer(conn, **kw)  # type: ignore[arg-type]


def _values(tmp_path: Path) -> list[int]:
    conn = sqlite3.connect(tmp_path / "w.db")
    try:
        return [v for (v,) in conn.execute("SELECT v FROM t ORDER BY v")]
    finally:
        conn.close()


def test_jobs_arriving_together_share_a_commit_and_a_bad_one_rolls_back_alone(tmp_path: Path) -> None:
    writer = _writer(tmp_path, commit_delay=0.05)

    async def scenario() -> list[object]:
        jobs = [Insert(i, fail=(i == 3)) for i in range(6)]
        futures = [writer.submit(j) for j in jobs]
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert [j.done for j in jobs] == [True, True, True, False, True, True]
        assert jobs[3].undone
        return results

    results = asyncio.run(scenario())
    assert results[:3] == [0, 1, 2]
    assert isinstance(results[3], ValueError)
    assert writer.commits == 1
    writer.close()
    writer.close()  # safe twice
    assert _values(tmp_path) == [0, 1, 2, 4, 5]


def test_a_full_queue_is_overloaded_and_close_commits_what_was_queued(tmp_path: Path) -> None:
    writer = _writer(tmp_path, commit_delay=0.2, max_queue=3)

    async def scenario() -> None:
        futures = []
        with pytest.raises(Overloaded):  # noqa: PT012 - fill the queue until it says so
            for i in range(100):
                futures.append(writer.submit(Insert(i)))
        assert len(futures) >= 3
        writer.close()
        assert [await f for f in futures] == list(range(len(futures)))
        with pytest.raises(WriterClosed):
            writer.submit(Insert(1000))

    asyncio.run(scenario())
    assert len(_values(tmp_path)) >= 3


def test_the_writer_and_reader_threads_carry_their_names_in_the_kernel(tmp_path: Path) -> None:
    """``top -H`` and the ingest benchmark tell the writer's CPU from the readers' (osthread)."""
    writer = _writer(tmp_path)
    readers = Readers(tmp_path / "w.db", threads=1)

    def comm(conn: object = None) -> str:
        return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()

    async def scenario() -> tuple[str, str]:
        return await writer.submit(CallJob(comm)), await readers.run(comm)

    try:
        assert asyncio.run(scenario()) == ("ew-writer", "ew-reader-0")
    finally:
        writer.close()
        readers.close()
    assert os_name("edgewatch-decode_1") == "ew-decode-1"
    assert os_name("a-thread-name-that-is-long") == "a-thread-name-t"  # the kernel keeps 15 bytes
