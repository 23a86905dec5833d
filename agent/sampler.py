"""Runs the collectors each tick and turns their samples into one row of the next batch.

Collectors that may block (``blocking = True``: filesystems, systemd, checks, scrapes, textfiles)
each have a long-lived worker thread, so one that hangs (``statvfs`` of a dead NFS mount) is
skipped for that tick and counted in ``edgewatch_agent_collector_errors_total{collector}`` while the
rest of the sample goes out; a worker still busy from an earlier tick is not started again (no
stacking). Collectors that only read ``/proc`` and ``/sys`` run in the sampling thread; one that
raises or runs over the time budget is skipped and counted the same way.

A collector with a longer interval than the tick (processes, sensors) is held: its last samples
are repeated until its next reading, so the set of series stays the same from frame to frame and
delta frames stay small. Held samples expire after two of its intervals; a collector that runs
every tick is never held: when it fails, its series are missing from that sample.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from edgewatch.protocol import Series

from . import logs
from .collectors.base import Collector, Sample

log = logs.get("edgewatch.agent.sampler")


class _Worker(threading.Thread):
    """Runs a collector that may block (statvfs, a subprocess, the network) in its own thread."""

    def __init__(self, collector: Collector, monotonic: Callable[[], float]) -> None:
        super().__init__(name=f"collector-{collector.name}", daemon=True)
        self.collector = collector
        self.monotonic = monotonic
        self._go = threading.Event()
        self.done = threading.Event()
        self.done.set()
        self._now = 0.0
        self.result: Sequence[Sample] = ()
        self.error: BaseException | None = None
        self.elapsed = 0.0
        self.stopping = False

    @property
    def busy(self) -> bool:
        return not self.done.is_set()

    def start_collect(self, now: float) -> None:
        self._now = now
        self.result, self.error = (), None
        self.done.clear()
        self._go.set()

    def run(self) -> None:
        while True:
            self._go.wait()
            self._go.clear()
            if self.stopping:
                return
            t0 = self.monotonic()
            try:
                self.result = self.collector.collect(self._now)
            except Exception as exc:  # reported by the sampler, one line, and counted
                self.error = exc
            finally:
                self.elapsed = self.monotonic() - t0
                self.done.set()

    def stop(self) -> None:
        self.stopping = True
        self._go.set()


class _Inline:
    """Runs a collector that cannot block (it reads /proc or /sys) in the sampling thread.

    A thread per collector would cost the agent about 200 KB each (stack and malloc arena).
    """

    busy = False

    def __init__(self, collector: Collector, monotonic: Callable[[], float]) -> None:
        self.collector = collector
        self.monotonic = monotonic
        self.result: Sequence[Sample] = ()
        self.error: BaseException | None = None
        self.elapsed = 0.0

    def start_collect(self, now: float) -> None:
        self.result, self.error = (), None
        t0 = self.monotonic()
        try:
            self.result = self.collector.collect(now)
        except Exception as exc:  # reported by the sampler, one line, and counted
            self.error = exc
        self.elapsed = self.monotonic() - t0


class Sampler:
    def __init__(
        self,
        collectors: Sequence[Collector],
        *,
        timeout: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        names = [c.name for c in collectors]
        if len(set(names)) != len(names):
            raise ValueError(f"collectors registered twice: {sorted(n for n in names if names.count(n) > 1)}")
        self.timeout = timeout
        self.monotonic = monotonic
        self.runners: list[_Worker | _Inline] = [
            _Worker(c, monotonic) if getattr(c, "blocking", False) else _Inline(c, monotonic)
            for c in collectors
        ]
        self.threads = [r for r in self.runners if isinstance(r, _Worker)]
        for w in self.threads:
            w.start()
        self.abort = threading.Event()  # set at shutdown: stop waiting for slow collectors
        self.errors: dict[str, int] = {c.name: 0 for c in collectors}
        self._held: dict[str, tuple[float, Sequence[Sample]]] = {}  # name -> (taken at, samples)
        self._last_run: dict[str, float] = {}
        self._reported: set[str] = set()

    def close(self) -> None:
        self.abort.set()
        for w in self.threads:
            w.stop()
        for w in self.threads:
            w.join(0.1)  # a hung one is a daemon thread: it does not hold up the exit

    def sample(self, now: float) -> list[Sample]:
        """One reading of every collector that is due at ``now`` (wall-clock seconds)."""
        due: list[_Worker | _Inline] = []
        for r in self.runners:
            c = r.collector
            last = self._last_run.get(c.name)
            if last is not None and c.interval and now - last < c.interval - 0.001:
                continue  # not due: its held samples stand in
            if r.busy:
                self._fail(c.name, "still running from an earlier tick")
                continue
            due.append(r)
        deadline = self.monotonic() + self.timeout
        threaded = [r for r in due if isinstance(r, _Worker)]
        for r in threaded:  # these run meanwhile, beside the ones read here
            self._last_run[r.collector.name] = now
            r.start_collect(now)
        for r in due:
            if isinstance(r, _Inline):
                self._last_run[r.collector.name] = now
                r.start_collect(now)
                self._settle(r, now)
        for w in threaded:
            # a collector that runs its own jobs with their own timeouts (checks, scrapes) gets those
            own = getattr(w.collector, "max_duration", 0.0)
            until = deadline + max(0.0, own - self.timeout)
            while not w.done.wait(min(0.1, max(0.0, until - self.monotonic()))):
                if self.abort.is_set() or self.monotonic() >= until:
                    break
            if not w.done.is_set():
                self._fail(w.collector.name, f"took longer than {max(self.timeout, own):g} s")
                continue
            self._settle(w, now)
        samples: list[Sample] = []
        for r in self.runners:
            c = r.collector
            held = self._held.get(c.name)
            if held is None:
                continue
            taken, result = held
            if taken != now and (not c.interval or now - taken > 2 * c.interval):
                continue  # failed this tick, or too old to stand in for a reading
            samples.extend(result)
        return samples

    def _settle(self, r: _Worker | _Inline, now: float) -> None:
        name = r.collector.name
        if r.error is not None:
            self._fail(name, f"{type(r.error).__name__}: {r.error}")
        elif r.elapsed > max(self.timeout, getattr(r.collector, "max_duration", 0.0)):
            self._fail(name, f"took {r.elapsed:.1f} s, longer than {self.timeout:g} s")
        else:
            self._held[name] = (now, r.result)
            self._reported.discard(name)

    def _fail(self, name: str, why: str) -> None:
        self.errors[name] += 1
        if name not in self._reported:  # once per failure streak, not every tick
            self._reported.add(name)
            log.warning("collector_failed collector=%s error=%r", name, why)


def dedupe(samples: Sequence[Sample]) -> tuple[list[Series], list[int | float | None]]:
    """Series and values in first-seen order; a series reported twice keeps its last value."""
    index: dict[Series, int] = {}
    series: list[Series] = []
    values: list[int | float | None] = []
    for s, v in samples:
        i = index.get(s)
        if i is None:
            index[s] = len(series)
            series.append(s)
            values.append(v)
        else:
            values[i] = v
    return series, values
