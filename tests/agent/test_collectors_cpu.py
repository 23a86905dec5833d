"""CpuCollector on golden snapshots: CPU seconds, utilisation between two readings, load, malformed files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.agent.collectors.cpu import MODES, CpuCollector, utilisation
from edgewatch.agent.collectors.procfs import ProcFormatError

from .readings import PI, VM_NOW0, VM_NOW1, VM_T0, VM_T1, Reading, snapshot_copy, write


def two_vm_readings() -> Reading:
    """The second reading of a collector that read vm_t0 first (the proc root moves between calls)."""
    collector = CpuCollector(VM_T0 / "proc")
    collector.collect(VM_NOW0)
    collector._stat, collector._loadavg = VM_T1 / "proc" / "stat", VM_T1 / "proc" / "loadavg"
    return Reading(collector.collect(VM_NOW1))


def test_cpu_seconds_are_ticks_over_user_hz_per_core_and_mode() -> None:
    r = Reading(CpuCollector(PI / "proc").collect(0.0))
    assert r("node_cpu_seconds_total", cpu="2", mode="idle") == 24695.43  # 2469543 ticks
    assert r("node_cpu_seconds_total", cpu="0", mode="softirq") == 15.0
    assert r("node_cpu_seconds_total", cpu="3", mode="steal") == 0.0
    assert sorted(set(r.label_values("node_cpu_seconds_total", "cpu"))) == ["0", "1", "2", "3"]
    assert set(r.label_values("node_cpu_seconds_total", "mode")) == set(MODES)
    assert r.is_counter("node_cpu_seconds_total")


def test_totals_and_counts() -> None:
    r = Reading(CpuCollector(PI / "proc").collect(0.0))
    assert r("node_context_switches_total") == 123456789
    assert r("node_intr_total") == 98765432
    assert r("node_forks_total") == 54321
    assert r("node_procs_running") == 2
    assert r("node_procs_blocked") == 1
    assert r("node_cpu_count") == 4
    assert (r("node_load1"), r("node_load5"), r("node_load15")) == (1.52, 0.98, 0.61)


def test_first_reading_has_no_utilisation() -> None:
    r = Reading(CpuCollector(VM_T0 / "proc").collect(VM_NOW0))
    assert not {n for n in r.names() if n.startswith("edgewatch_cpu_")}


def test_utilisation_between_two_recorded_readings() -> None:
    # vm_t0 -> vm_t1 with a busy loop on cpu0 and dd writing: 1044 ticks passed in all, 608 busy,
    # 360 waiting for I/O, 15 stolen by the hypervisor
    r = two_vm_readings()
    assert r("edgewatch_cpu_usage_percent", cpu="all") == 58.2
    assert r("edgewatch_cpu_iowait_percent") == 34.5
    assert r("edgewatch_cpu_steal_percent") == 1.4
    assert r("edgewatch_cpu_usage_percent", cpu="0") == 99.2  # 509 of 513 ticks
    assert r("edgewatch_cpu_usage_percent", cpu="1") == 18.8  # 100 of 533
    assert r("node_cpu_seconds_total", cpu="0", mode="user") == 622.61
    assert r("node_context_switches_total") == 643111


def test_a_field_going_backwards_counts_as_no_time() -> None:
    before = (100, 0, 50, 1000, 40, 0, 0, 0)
    after = (150, 0, 50, 1050, 30, 0, 0, 0)  # iowait went back by 10 (NO_HZ accounting)
    assert utilisation(before, after) == (50.0, 0.0, 0.0)
    assert utilisation(after, after) is None


@given(
    st.lists(st.integers(0, 10**9), min_size=8, max_size=8),
    st.lists(st.integers(0, 10**6), min_size=8, max_size=8),
)
def test_utilisation_is_a_share(before: list[int], spent: list[int]) -> None:
    shares = utilisation(tuple(before), tuple(b + s for b, s in zip(before, spent)))
    if sum(spent) == 0:
        assert shares is None
    else:
        assert shares is not None
        assert all(0.0 <= x <= 100.0 for x in shares)
        assert shares[0] + shares[1] <= 100.0 + 1e-9  # busy and iowait do not overlap


def test_series_are_the_same_objects_every_reading() -> None:
    collector = CpuCollector(PI / "proc")
    first = [s for s, _ in collector.collect(0.0)]
    second = [s for s, _ in collector.collect(10.0)]
    assert all(a is b for a, b in zip(first, second))


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda text: text.split("cpu2")[0], "ends early"),
        (
            lambda text: text.replace("cpu1 26000 301 11500 2468000 3100 0 300 0 0 0", "cpu1 26000 301"),
            "not at least 8",
        ),
        (lambda text: text.replace("ctxt 123456789", "ctxt lots"), "ctxt lots"),
        (lambda text: text.replace("cpu3 26000", "cpu3 2x000"), "cpu3 2x000"),
        (lambda text: "", "ends early"),
    ],
    ids=["truncated", "short-cpu-line", "garbage-total", "garbage-ticks", "empty"],
)
def test_malformed_stat_raises_a_clear_error(
    tmp_path: Path, spoil: Callable[[str], str], message: str
) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    write(root / "stat", spoil((root / "stat").read_text()))
    with pytest.raises(ProcFormatError, match=message) as caught:
        CpuCollector(root).collect(0.0)
    assert str(root / "stat") in str(caught.value)


def test_malformed_loadavg_raises(tmp_path: Path) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    write(root / "loadavg", "1.52 oops\n")
    with pytest.raises(ProcFormatError, match="loadavg"):
        CpuCollector(root).collect(0.0)
