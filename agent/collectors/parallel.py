"""Run a collector's slow jobs (checks, scrapes) side by side, each in its own thread.

``Jobs.run`` starts one thread per job and waits until they have all finished or the timeout has
passed, whichever comes first, so one slow target does not delay the others. A job whose thread is
still running from an earlier round is not started again (work never stacks); it simply has no
result this round, like a job that did not finish in time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from edgewatch.agent import logs

T = TypeVar("T")

log = logs.get("edgewatch.agent.collectors.parallel")


class Jobs(Generic[T]):
    def __init__(self, prefix: str, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.prefix = prefix
        self.monotonic = monotonic
        self._threads: dict[str, threading.Thread] = {}

    def busy(self, key: str) -> bool:
        thread = self._threads.get(key)
        return thread is not None and thread.is_alive()

    def run(self, jobs: Mapping[str, Callable[[], T]], timeout: float) -> dict[str, T]:
        """The results of the jobs that finished within ``timeout`` seconds, by key."""
        results: dict[str, T] = {}
        started: list[threading.Thread] = []
        for key, job in jobs.items():
            if self.busy(key):
                continue
            thread = threading.Thread(
                target=_call, args=(job, key, results), name=f"{self.prefix}-{key}", daemon=True
            )
            thread.start()
            self._threads[key] = thread
            started.append(thread)
        deadline = self.monotonic() + timeout
        for thread in started:
            thread.join(max(0.0, deadline - self.monotonic()))
        return dict(results)  # a copy: a straggler that finishes later writes into the old dict

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for stragglers (for shutdown and tests)."""
        deadline = self.monotonic() + timeout
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - self.monotonic()))


def _call(job: Callable[[], T], key: str, results: dict[str, T]) -> None:
    try:
        results[key] = job()
    except Exception:  # a bug in a job must not kill the collector; it counts as no result
        log.exception("job_failed job=%s", key)
