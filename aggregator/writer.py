"""The one writer: a thread that owns the write connection and commits jobs in groups.

Jobs come from a bounded queue. The writer takes the first waiting job, gathers more for up to
``commit_delay`` (group commit), runs each inside its own savepoint (a failing job rolls back alone
and gets its exception; the others go on), commits once, then calls each job's ``committed()`` and
answers its future. A push is answered only after that commit. ``close()`` lets the queued jobs
finish, commits them, and is safe to call twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from .osthread import name_os_thread

log = logging.getLogger("edgewatch.aggregator.writer")


class Job(Protocol):
    def apply(self, conn: sqlite3.Connection) -> Any:
        """Do the writes (inside a savepoint); the return value answers the job's future."""

    def committed(self) -> None:
        """Called after the commit that holds this job: update in-memory state."""

    def aborted(self) -> None:
        """Called when this job's writes were rolled back: forget what ``apply`` prepared."""


class Overloaded(Exception):
    """The writer's queue is full: answer 503 with Retry-After."""


class WriterClosed(Exception):
    """The writer is shutting down or failed: answer 503."""


_STOP = object()


class Writer:
    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        commit_delay: float = 0.005,
        max_queue: int = 5000,
        max_group: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = conn
        self.commit_delay = commit_delay
        self.max_group = max_group
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._clock = clock
        self._thread = threading.Thread(target=self._run, name="edgewatch-writer", daemon=True)
        self._closed = False
        self._lock = threading.Lock()
        self.commits = 0
        self.commit_seconds = 0.0
        self.jobs_done = 0
        self.failed: BaseException | None = None
        self._thread.start()

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def submit(self, job: Job) -> asyncio.Future[Any]:
        """Queue ``job``; the future resolves after its commit. ``Overloaded`` when the queue is full."""
        if self._closed or self.failed is not None:
            raise WriterClosed("the aggregator is shutting down")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        try:
            self._queue.put_nowait((job, future, loop))
        except queue.Full:
            raise Overloaded from None
        return future

    def call(self, job: Job, timeout: float = 300.0) -> Any:
        """Run ``job`` from a thread that is not the event loop (CLI, tests); waits for its commit."""
        done = threading.Event()
        box: list[Any] = []

        def finish(ok: bool, value: Any) -> None:
            box.append((ok, value))
            done.set()

        self._queue.put((job, finish, None), timeout=timeout)
        if not done.wait(timeout):
            raise TimeoutError("the writer did not answer in time")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()

    # the writer thread

    def _gather(self, first: Any) -> tuple[list[Any], bool]:
        group = [first]
        deadline = self._clock() + self.commit_delay
        while len(group) < self.max_group:
            remaining = deadline - self._clock()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return group, True
            group.append(item)
        return group, False

    def _run(self) -> None:
        name_os_thread()
        stop = False
        while not stop:
            item = self._queue.get()
            if item is _STOP:
                break
            group, stop = self._gather(item)
            try:
                self._commit(group)
            except BaseException as exc:  # a bug: fail loudly (healthz says 503) rather than hang pushes
                log.exception("the writer failed; the aggregator needs a restart")
                self.failed = exc
                error = WriterClosed("the aggregator's writer failed; it needs a restart")
                while True:  # and whatever waits behind the group
                    try:
                        queued = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if queued is not _STOP:
                        group.append(queued)
                for _, target, loop in group:
                    if loop is None:
                        target(False, error)
                    else:
                        loop.call_soon_threadsafe(_resolve, target, False, error)
                raise
        # drain what was queued before the stop
        rest = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                rest.append(item)
        for start in range(0, len(rest), self.max_group):
            self._commit(rest[start : start + self.max_group])

    def _commit(self, group: list[Any]) -> None:
        started = time.perf_counter()
        results: list[tuple[bool, Any]] = []
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, _, _ in group:
                conn.execute("SAVEPOINT job")
                try:
                    value = job.apply(conn)
                except Exception as exc:  # one job's failure never takes the others down
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    job.aborted()
                    results.append((False, exc))
                    if not isinstance(exc, ValueError):
                        log.exception("job=%s failed", type(job).__name__)
                else:
                    conn.execute("RELEASE job")
                    results.append((True, value))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("commit failed: %s", exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            for i in reversed(range(len(group))):
                # a job that failed at its savepoint was told already; the one in progress and
                # those that succeeded are told now (those not yet run have nothing to undo)
                if i >= len(results) or results[i][0]:
                    group[i][0].aborted()
            error = WriterClosed(f"the database write failed ({exc}); try again later")
            results = [(False, error)] * len(group)
        else:
            for (job, _, _), (ok, _) in zip(group, results):
                if ok:
                    job.committed()
            self.commits += 1
            self.jobs_done += len(group)
        self.commit_seconds += time.perf_counter() - started
        for (_, target, loop), (ok, value) in zip(group, results):
            if loop is None:
                target(ok, value)
            else:
                loop.call_soon_threadsafe(_resolve, target, ok, value)


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
