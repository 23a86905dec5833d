"""The sampler: a failing or slow collector is skipped and counted; the rest of the sample goes out."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from edgewatch.agent.collectors.base import Sample, SeriesCache
from edgewatch.agent.sampler import Sampler, dedupe

CACHE = SeriesCache()


class Fixed:
    def __init__(self, name: str, value: int = 1, interval: float = 0.0, blocking: bool = False) -> None:
        self.name = name
        self.value = value
        self.interval = interval
        self.blocking = blocking
        self.calls = 0

    def collect(self, now: float) -> Sequence[Sample]:
        self.calls += 1
        return [(CACHE.gauge(f"test_{self.name}"), self.value + self.calls)]


class Broken(Fixed):
    def collect(self, now: float) -> Sequence[Sample]:
        raise OSError("the file vanished")


class Hanging(Fixed):
    def __init__(self, name: str) -> None:
        super().__init__(name, blocking=True)
        self.release = threading.Event()

    def collect(self, now: float) -> Sequence[Sample]:
        self.calls += 1
        self.release.wait(10)
        return [(CACHE.gauge("test_hanging"), 1)]


def _names(samples: Sequence[Sample]) -> set[str]:
    return {s.name for s, _ in samples}


def test_a_failing_collector_is_counted_and_the_rest_goes_out(capsys: pytest.CaptureFixture[str]) -> None:
    sampler = Sampler([Fixed("a"), Broken("b"), Fixed("c", blocking=True)], timeout=1.0)
    try:
        for t in range(3):
            assert _names(sampler.sample(1000.0 + t)) == {"test_a", "test_c"}
        assert sampler.errors == {"a": 0, "b": 3, "c": 0}
        warnings = [line for line in capsys.readouterr().err.splitlines() if "collector_failed" in line]
        assert len(warnings) == 1  # once per failure streak, not every tick
        assert "the file vanished" in warnings[0]
    finally:
        sampler.close()


def test_a_hanging_collector_is_skipped_and_never_stacked() -> None:
    hanging = Hanging("hang")
    sampler = Sampler([Fixed("a"), hanging], timeout=0.2)
    try:
        started = time.monotonic()
        assert _names(sampler.sample(1.0)) == {"test_a"}
        assert time.monotonic() - started < 1.0  # the tick did not wait for it
        assert _names(sampler.sample(2.0)) == {"test_a"}
        assert hanging.calls == 1  # still busy: not started a second time
        assert sampler.errors["hang"] == 2
        hanging.release.set()
        time.sleep(0.1)
        assert "test_hanging" in _names(sampler.sample(3.0))
    finally:
        hanging.release.set()
        sampler.close()


def test_slow_collectors_are_held_between_readings() -> None:
    slow = Fixed("slow", interval=30.0)
    sampler = Sampler([Fixed("a"), slow], timeout=1.0)
    try:
        key = CACHE.gauge("test_slow")
        first = dict(sampler.sample(0.0))[key]
        assert slow.calls == 1
        for t in (10.0, 20.0):
            assert dict(sampler.sample(t))[key] == first
        assert slow.calls == 1  # not due before 30 s
        sampler.sample(30.0)
        assert slow.calls == 2
    finally:
        sampler.close()


def test_a_held_reading_expires() -> None:
    slow = Broken("slow", interval=10.0)
    slow_ok = Fixed("slow_ok", interval=10.0)
    sampler = Sampler([slow, slow_ok], timeout=1.0)
    try:
        assert _names(sampler.sample(0.0)) == {"test_slow_ok"}
        slow_ok.collect = lambda now: (_ for _ in ()).throw(OSError("gone"))  # type: ignore[method-assign]
        assert _names(sampler.sample(10.0)) == {"test_slow_ok"}  # failed, but the held value is young
        assert _names(sampler.sample(25.0)) == set()  # more than two intervals old: gone
    finally:
        sampler.close()


def test_registering_a_name_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="twice"):
        Sampler([Fixed("a"), Fixed("a")], timeout=1.0)


def test_dedupe_keeps_the_first_position_and_the_last_value() -> None:
    a, b = CACHE.gauge("x"), CACHE.gauge("y")
    assert dedupe([(a, 1), (b, 2), (a, 3)]) == ([a, b], [3, 2])


class OwnTimeout(Fixed):
    """Like the checks collector: it runs jobs with their own timeouts, longer than the tick budget."""

    max_duration = 0.8

    def collect(self, now: float) -> Sequence[Sample]:
        time.sleep(0.5)
        return [(CACHE.gauge("test_checked"), 0)]  # a check that is down still reports up = 0


def test_a_collector_with_its_own_timeouts_is_waited_for() -> None:
    sampler = Sampler([OwnTimeout("checks", blocking=True)], timeout=0.2)
    try:
        assert _names(sampler.sample(1.0)) == {"test_checked"}
        assert sampler.errors["checks"] == 0
    finally:
        sampler.close()


def test_abort_stops_waiting_for_a_hung_collector() -> None:
    hanging = Hanging("hang")
    sampler = Sampler([hanging], timeout=5.0)
    try:
        threading.Timer(0.2, sampler.abort.set).start()
        started = time.monotonic()
        sampler.sample(1.0)
        assert time.monotonic() - started < 1.0
    finally:
        hanging.release.set()
        sampler.close()


def test_the_series_cache_forgets_what_churns_and_keeps_what_is_used() -> None:
    cache = SeriesCache(limit=100)
    steady = cache.gauge("steady")
    for pid in range(10_000):  # processes come and go
        cache.gauge("proc_rss", {"pid": str(pid)})
        assert cache.gauge("steady") is steady
    assert len(cache) <= 200
