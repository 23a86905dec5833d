"""Host status and the overview's sparklines, from frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.aggregator import status
from edgewatch.aggregator.status import MINUTE_MS, SPARK_MINUTES, HostState, Spark
from edgewatch.protocol import Batch, Series

T0 = 1_764_000_000_000  # a minute boundary
CPU = Series("edgewatch_cpu_usage_percent", (("cpu", "all"),), precision=1)
MEM = Series("edgewatch_memory_used_percent", precision=1)
RX = Series("node_network_receive_bytes_total", (("device", "eth0"),))


def frame(seq: int, ts: int, cpu: float, rx: int) -> Batch:
    return Batch("h", 1, seq, [ts], [CPU, MEM, RX], [[cpu], [50.0], [rx]], {})


def test_sparklines_average_each_minute_and_keep_the_last_hour() -> None:
    state = HostState("h")
    for k in range(2 * 60 * 6):  # two hours at 10 s
        state.update(frame(k + 1, T0 + k * 10_000, cpu=float(k % 6 * 10), rx=k * 1000))
    now = T0 + 2 * 3_600_000 - 1
    spark = state.to_json(now, 3, spark=True)["spark"]
    assert set(spark) == {"cpu", "memory", "net"}  # no filesystem in these frames
    assert len(spark["cpu"]) == SPARK_MINUTES
    assert spark["cpu"] == [25.0] * SPARK_MINUTES  # 0, 10, ... 50 in every minute
    assert spark["memory"][-1] == 50.0
    assert spark["net"][-1] == 100.0  # 1000 bytes per 10 s
    assert len(state.spark["cpu"].sums) == SPARK_MINUTES  # a ring: no more memory after an hour
    # ten quiet minutes later the newest minutes are empty
    later = state.to_json(now + 600_000, 3, spark=True)["spark"]["cpu"]
    assert later[-10:] == [None] * 10
    assert later[0] == 25.0
    assert "spark" not in state.to_json(now, 3)


def test_a_host_sending_back_log_is_up_and_a_silent_one_goes_down() -> None:
    state = HostState("h")
    now = T0 + 6 * 3_600_000
    state.update(frame(1, T0, cpu=10.0, rx=0), now)  # six hours old: back-fill after an outage
    state.update(frame(2, T0 + 10_000, cpu=10.0, rx=1000), now + 1_000)
    assert state.status(now + 2_000, 3) == "up"  # it pushed a second ago
    assert state.status(now + 1_000 + 3 * 10_000 + 6_000, 3) == "down"  # three intervals of silence
    assert state.to_json(now, 3)["last_seen"] == T0 + 10_000  # the newest sample, as before


def test_headline_values_follow_a_series_list_that_changes() -> None:
    disk = Series("edgewatch_filesystem_used_percent", (("mountpoint", "/"),), precision=1)
    core = Series("edgewatch_cpu_usage_percent", (("cpu", "0"),), precision=1)
    state = HostState("h")
    state.update(Batch("h", 1, 1, (T0,), (core, CPU, MEM), ((99.0,), (20.0,), (40.0,)), {}))
    assert state.values == {"cpu": 20.0, "memory": 40.0}  # a single core is not the host's CPU
    # the agent found a filesystem: the list grows and the columns move
    state.update(Batch("h", 1, 2, (T0 + 10_000,), (disk, MEM, CPU), ((85.0,), (41.0,), (21.0,)), {}))
    assert state.values == {"cpu": 21.0, "memory": 41.0, "disk": 85.0}
    assert state.status(T0 + 10_000, 3) == "warning"
    # and back to the first list, given as a list this time
    state.update(Batch("h", 1, 3, [T0 + 20_000], [core, CPU, MEM], [[98.0], [96.0], [42.0]], {}))
    assert state.values["cpu"] == 96.0
    assert state.status(T0 + 20_000, 3) == "critical"


@given(
    st.lists(
        st.tuples(st.integers(0, 4 * 3_600_000), st.floats(0, 100, allow_nan=False)), min_size=1, max_size=80
    ),
    st.integers(0, 5 * 3_600_000),
)
def test_the_sparkline_ring_shows_what_averaging_each_minute_of_the_hour_shows(
    samples: list[tuple[int, float]], now_offset: int
) -> None:
    spark = Spark()
    for ts, v in samples:
        spark.add(T0 + ts, v)
    # the reference: every sample of a minute within the hour up to the newest minute, averaged
    newest = max(T0 + ts - (T0 + ts) % MINUTE_MS for ts, _ in samples)
    by_minute: dict[int, list[float]] = {}
    for ts, v in samples:
        minute = T0 + ts - (T0 + ts) % MINUTE_MS
        by_minute.setdefault(minute, []).append(v)
    now = max(T0 + now_offset, newest)
    end = now - now % MINUTE_MS
    expected = []
    for k in range(SPARK_MINUTES - 1, -1, -1):
        minute = end - k * MINUTE_MS
        kept = minute > newest - SPARK_MINUTES * MINUTE_MS and minute in by_minute
        expected.append(round(sum(by_minute[minute]) / len(by_minute[minute]), 2) if kept else None)
    assert spark.minutes(now) == pytest.approx(expected)


def test_each_headline_gets_one_ring_not_one_per_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Spark] = []

    class Counted(Spark):
        __slots__ = ()

        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(status, "Spark", Counted)
    state = HostState("h")
    for k in range(60):
        state.update(frame(k + 1, T0 + k * 10_000, cpu=10.0, rx=k * 1000))
    assert sorted(state.spark) == ["cpu", "memory", "net"]
    assert len(made) == 3  # not one per frame
    assert all(ring in made for ring in state.spark.values())
