"""Opening the SQLite file: pragmas for the writer and for readers, and a reader pool.

One writer connection (``writer.Writer`` owns it in its own thread); readers each have their own
connection in a small thread pool, so a slow query never holds up a commit (WAL mode).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from .osthread import name_os_thread
from .schema import migrate

T = TypeVar("T")
DB_NAME = "edgewatch.db"


def open_writer(path: Path, synchronous: str = "full") -> sqlite3.Connection:
    """The write connection, migrated to the current schema."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # a new file: before WAL mode creates it
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA cache_size = -16384")  # 16 MiB; the kernel's page cache holds the rest
    conn.execute("PRAGMA journal_size_limit = 67108864")
    migrate(conn)
    return conn


def open_reader(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA query_only = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA cache_size = -8192")  # 8 MiB per reader
    return conn


class Readers:
    """A pool of reader threads, each with its own connection; ``await readers.run(fn)`` runs ``fn(conn)``."""

    def __init__(self, path: Path, threads: int = 3) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="edgewatch-reader", initializer=name_os_thread
        )
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_reader(self.path)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with a reader connection in one read transaction (one snapshot of the file)."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.call, fn)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
