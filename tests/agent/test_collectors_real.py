"""The system collectors on this machine's real /proc and /sys, checked against psutil.

psutil is a test-only dependency here: the agent reads the kernel's files itself (importing psutil
costs 2.6 MB of an 18 MB budget). Counters are read by psutil just before and just after the
collector, so each value the collector reports must lie between the two.
"""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import psutil
import pytest

from edgewatch.agent.collectors.base import Collector
from edgewatch.agent.collectors.cpu import CpuCollector
from edgewatch.agent.collectors.disk import DEFAULT_EXCLUDE, DiskCollector
from edgewatch.agent.collectors.filesystem import FilesystemCollector
from edgewatch.agent.collectors.host import HostFacts, UptimeCollector
from edgewatch.agent.collectors.memory import MemoryCollector
from edgewatch.agent.collectors.network import NetworkCollector
from edgewatch.agent.collectors.processes import ProcessCollector
from edgewatch.agent.collectors.sensors import SensorsCollector
from edgewatch.protocol import Kind

from .readings import Reading

MODULES = ("procfs", "cpu", "memory", "filesystem", "disk", "network", "processes", "sensors", "host")
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def all_collectors() -> list[Collector]:
    return [
        CpuCollector(),
        MemoryCollector(),
        FilesystemCollector(),
        DiskCollector(),
        NetworkCollector(),
        ProcessCollector(),
        SensorsCollector(),
        UptimeCollector(),
    ]


def twice(collector: Collector) -> Reading:
    """The second reading (the first has no rates), one second of wall clock after the first."""
    now = time.time()
    collector.collect(now)
    time.sleep(0.2)
    return Reading(collector.collect(now + 1.0))


def between(low: float, value: object, high: float) -> bool:
    return isinstance(value, int | float) and low <= value <= high


@pytest.fixture(scope="module")
def readings() -> dict[str, Reading]:
    return {c.name: twice(c) for c in all_collectors()}


def test_names_labels_and_kinds_follow_prometheus_conventions(readings: dict[str, Reading]) -> None:
    for name, r in readings.items():
        for series, value in r.samples:
            assert METRIC_NAME.fullmatch(series.name), series
            assert series.name.startswith(("node_", "edgewatch_")), series
            assert all(LABEL_NAME.fullmatch(k) and not k.startswith("__") for k, _ in series.labels), series
            if series.kind == Kind.COUNTER:
                assert series.name.endswith("_total") or series.name.startswith("node_vmstat_"), series
            else:
                assert not series.name.endswith("_total"), f"gauge {series.name} is named like a counter"
            assert value is not None
            assert type(value) in (int, float), (series, value)
            assert math.isfinite(value), (series, value)
            assert value >= 0 or series.name == "node_thermal_zone_temp", (series, value)
            if series.name.endswith("_percent"):
                assert 0.0 <= value <= 100.0 * max(1, os.cpu_count() or 1), (series, value)
        assert name != "cpu" or r.has("edgewatch_cpu_usage_percent", cpu="all")


def test_series_are_interned_between_readings() -> None:
    for c in all_collectors():
        if c.name == "processes":
            continue  # ranks move between processes
        first = {s: s for s, _ in c.collect(time.time())}
        for s, _ in c.collect(time.time() + 1.0):
            assert first.get(s, s) is s, f"{c.name}: {s} is a new object for the same series"


def test_memory_matches_psutil() -> None:
    r = Reading(MemoryCollector().collect(time.time()))
    vm, swap = psutil.virtual_memory(), psutil.swap_memory()
    assert r("node_memory_MemTotal_bytes") == vm.total
    assert abs(r("node_memory_MemAvailable_bytes") - vm.available) < max(64 << 20, vm.total * 0.02)
    assert r("node_memory_SwapTotal_bytes") == swap.total
    assert abs(r("edgewatch_memory_used_percent") - 100.0 * (vm.total - vm.available) / vm.total) < 2.0


def test_cpu_matches_psutil() -> None:
    before = psutil.cpu_times(percpu=True)
    r = Reading(CpuCollector().collect(time.time()))
    after = psutil.cpu_times(percpu=True)
    assert r("node_cpu_count") == len(after)
    for cpu, (low, high) in enumerate(zip(before, after)):
        for mode in ("user", "system", "idle", "iowait", "steal"):
            value = r("node_cpu_seconds_total", cpu=str(cpu), mode=mode)
            assert between(getattr(low, mode) - 0.01, value, getattr(high, mode) + 0.01), (cpu, mode, value)
    assert r("node_forks_total") > 0
    load = os.getloadavg()
    assert abs(r("node_load1") - load[0]) < 1.0


def test_disks_match_psutil() -> None:
    before = psutil.disk_io_counters(perdisk=True)
    r = Reading(DiskCollector().collect(time.time()))
    after = psutil.disk_io_counters(perdisk=True)
    expected = {d for d in after if not re.search(DEFAULT_EXCLUDE, d)}
    assert set(r.label_values("node_disk_read_bytes_total", "device")) >= expected
    for device in expected:
        low, high = before[device], after[device]
        assert between(low.read_bytes, r("node_disk_read_bytes_total", device=device), high.read_bytes)
        assert between(low.write_bytes, r("node_disk_written_bytes_total", device=device), high.write_bytes)
        assert between(low.read_count, r("node_disk_reads_completed_total", device=device), high.read_count)
        assert between(
            low.busy_time / 1000, r("node_disk_io_time_seconds_total", device=device), high.busy_time / 1000
        )


def test_network_matches_psutil() -> None:
    before = psutil.net_io_counters(pernic=True, nowrap=False)
    r = Reading(NetworkCollector().collect(time.time()))
    after = psutil.net_io_counters(pernic=True, nowrap=False)
    assert set(r.label_values("node_network_receive_bytes_total", "device")) == set(after) - {"lo"}
    for nic in set(after) - {"lo"}:
        low, high = before[nic], after[nic]
        assert between(low.bytes_recv, r("node_network_receive_bytes_total", device=nic), high.bytes_recv)
        assert between(low.bytes_sent, r("node_network_transmit_bytes_total", device=nic), high.bytes_sent)
        assert between(
            low.packets_recv, r("node_network_receive_packets_total", device=nic), high.packets_recv
        )
        assert between(low.dropin, r("node_network_receive_drop_total", device=nic), high.dropin)


def test_tcp_states_match_psutil() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()), server.accept()[0]:
            r = Reading(NetworkCollector().collect(time.time()))
            ours = {dict(k)["state"]: v for k, v in r.of("node_tcp_connection_states").items()}
            theirs = [c.status for c in psutil.net_connections("tcp")]
    assert ours["listen"] >= 1
    assert ours["established"] >= 2
    assert abs(ours["listen"] - theirs.count("LISTEN")) <= 2
    assert abs(ours["established"] - theirs.count("ESTABLISHED")) <= 4


def test_filesystems_match_psutil() -> None:
    collector = FilesystemCollector()
    r = Reading(collector.collect(time.time()))
    reported = set(r.label_values("node_filesystem_size_bytes", "mountpoint"))
    assert "/" in reported
    for mountpoint in reported:
        usage = psutil.disk_usage(mountpoint)
        labels = next(
            dict(k) for k in r.of("node_filesystem_size_bytes") if dict(k)["mountpoint"] == mountpoint
        )
        assert r("node_filesystem_size_bytes", **labels) == usage.total
        assert abs(r("node_filesystem_avail_bytes", **labels) - usage.free) < max(
            64 << 20, usage.total * 0.01
        )
        assert abs(r("edgewatch_filesystem_used_percent", **labels) - usage.percent) <= 0.5
    # every physical filesystem psutil lists is reported, at this or a shorter mount point of its device
    for part in psutil.disk_partitions(all=False):
        if not part.mountpoint.startswith(("/dev", "/proc", "/sys", "/var/lib/docker/")):
            assert part.mountpoint in reported or os.stat(part.mountpoint).st_dev in {
                os.stat(m).st_dev for m in reported
            }, part


def test_processes_match_psutil() -> None:
    pids = len(psutil.pids())
    r = Reading(ProcessCollector(interval=0.0).collect(time.time()))
    assert abs(r("node_processes_pids") - pids) <= max(5, pids // 10)
    mine = psutil.Process()
    ranked = {dict(k)["pid"]: v for k, v in r.of("edgewatch_process_resident_bytes").items()}
    if str(mine.pid) in ranked:  # this test runner is often among the largest
        assert abs(ranked[str(mine.pid)] - mine.memory_info().rss) < 16 << 20
    assert len(ranked) == min(
        5,
        sum(
            1
            for p in psutil.process_iter(["memory_info"])
            if p.info["memory_info"] and p.info["memory_info"].rss > 0
        ),
    )


def test_top_cpu_finds_a_busy_process() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        collector = ProcessCollector(top_n=3)
        time.sleep(0.3)
        start = time.time()
        collector.collect(start)
        time.sleep(1.0)
        r = Reading(collector.collect(start + 1.0))
    finally:
        busy.kill()
        busy.wait()
    ranked = {dict(k)["pid"]: (dict(k), v) for k, v in r.of("edgewatch_process_cpu_percent").items()}
    labels, percent = ranked[str(busy.pid)]
    # rank 1 unless something else on this shared machine burns a whole core too
    assert labels["rank"] == "1" or all(v >= 50.0 for _, v in ranked.values() if _["rank"] < labels["rank"])
    assert labels["user"] == psutil.Process().username()
    assert percent > 50.0


def test_uptime_and_facts_match_psutil() -> None:
    r = Reading(UptimeCollector().collect(time.time()))
    assert abs(r("node_boot_time_seconds") - psutil.boot_time()) <= 1
    assert abs(r("edgewatch_uptime_seconds") - (time.time() - psutil.boot_time())) <= 2
    facts = HostFacts().facts(time.time())
    assert facts["cpu_count"] == str(psutil.cpu_count())
    assert facts["memory_bytes"] == str(psutil.virtual_memory().total)
    assert facts["hostname"] == socket.gethostname()
    assert facts["kernel"] == os.uname().release
    assert facts["arch"] == os.uname().machine
    assert set(facts) >= {"os", "cpu_model", "boot_time", "agent_version"}


def test_sensors_match_psutil() -> None:
    r = Reading(SensorsCollector().collect(time.time()))
    hwmon = psutil.sensors_temperatures()
    assert bool(r.of("node_hwmon_temp_celsius")) == bool(hwmon) or not hwmon


def test_importing_the_collectors_stays_light() -> None:
    heavy = ("psutil", "dataclasses", "http.client", "ssl", "json", "subprocess", "asyncio", "email")
    code = (
        "import sys\n"
        f"for m in {MODULES!r}: __import__('edgewatch.agent.collectors.' + m)\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def _median_ms(collect: Callable[[float], object], runs: int = 15) -> float:
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        collect(1000.0 + 10 * i)
        times.append((time.perf_counter() - t0) * 1000)
    return sorted(times)[runs // 2]


def test_collect_is_cheap_enough_for_the_tick_budget() -> None:
    """Loose bounds (CI machines are slow and shared); the measured times are printed with -s."""
    for c in all_collectors():
        c.collect(990.0)
        ms = _median_ms(c.collect)
        print(f"collect {c.name}: {ms:.3f} ms")
        assert ms < (50.0 if c.name == "processes" else 10.0), (c.name, ms)
