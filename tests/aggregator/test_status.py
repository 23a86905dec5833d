"""Host status and the overview's sparklines, from frames."""

from __future__ import annotations

from edgewatch.aggregator.status import SPARK_MINUTES, HostState
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
    assert len(state.spark["cpu"].sums) <= SPARK_MINUTES + 5
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
