"""The fleet simulator: the host model (pure, seeded) and `edgewatch sim` against the real receiver."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from agent.conftest import ROOT, ReceiverProcess
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.aggregator.sim import (
    Identity,
    ScenarioSpec,
    SimConfig,
    fleet,
    parse_duration,
    parse_scenario,
    run_sim,
)
from edgewatch.aggregator.simcatalog import MEMORY_FIELDS, SCENARIOS, Scenario
from edgewatch.aggregator.simhost import SimHost, history
from edgewatch.protocol import Kind, Series, as_decoded, decode, encode, next_reference

EDGEWATCH = str(Path(sys.executable).with_name("edgewatch"))
T0 = 1_764_547_200_000  # 2025-12-01 00:00 UTC, a Monday
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
Value = int | float | None


def values(host: SimHost, ts: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], Value]:
    return {(s.name, s.labels): v for s, v in zip(host.series, host.sample(ts))}


def pick(row: dict[tuple[str, tuple[tuple[str, str], ...]], Value], name: str, **labels: str) -> Value:
    """The value of the one series named ``name`` whose labels include ``labels``."""
    found = [v for (n, ls), v in row.items() if n == name and labels.items() <= dict(ls).items()]
    assert len(found) == 1, (name, labels, len(found))
    return found[0]


# -- the host model ----------------------------------------------------------------------------


def test_a_seed_is_a_host_and_its_data() -> None:
    a, b, c = SimHost("sim-001", 7), SimHost("sim-001", 7), SimHost("sim-001", 8)
    assert a.series == b.series
    stamps = a.ticks(T0, T0 + 10 * MIN)
    assert a.batch(stamps, 1, 1, "sim-001") == b.batch(stamps, 1, 1, "sim-001")
    assert a.sample(T0) != c.sample(T0)
    assert SimHost("sim-001", 7).sample(T0 + DAY) == a.sample(T0 + DAY)  # no state: any order


def test_a_host_has_as_many_series_as_a_real_one() -> None:
    counts = [len(SimHost(f"sim-{n:03d}", n).series) for n in range(40)]
    assert min(counts) >= 100
    assert sum(counts) / len(counts) <= 180
    for n in range(40):
        host = SimHost(f"sim-{n:03d}", n)
        assert len(set(host.series)) == len(host.series)
        assert len(host.sample(T0)) == len(host.series)


def _agent_table() -> dict[str, tuple[str, set[str]]]:
    """docs/agent.md's metrics table: series name -> (kind, label names)."""
    table = {}
    for line in (ROOT / "docs" / "agent.md").read_text().splitlines():
        m = re.fullmatch(r"\| \w+ \| `([A-Za-z0-9_]+)` \| (gauge|counter) \| ([a-z, ]*) \|", line.strip())
        if m:
            table[m.group(1)] = (m.group(2), {x.strip() for x in m.group(3).split(",") if x.strip()})
    assert len(table) > 50
    return table


def test_series_are_named_and_labelled_as_the_agent_documents_them() -> None:
    table = _agent_table()
    self_metrics = {"edgewatch_agent_resident_bytes", "edgewatch_agent_cpu_seconds_total"}
    for n in range(20):
        for s in SimHost(f"sim-{n:03d}", n).series:
            if s.name in self_metrics:
                continue
            assert s.name in table, s.name
            kind, labels = table[s.name]
            assert (s.kind == Kind.COUNTER) == (kind == "counter"), s
            assert {k for k, _ in s.labels} == labels, s


def test_series_have_the_agents_kind_and_precision() -> None:
    """The agent's own collectors, run on this machine, define the same series the same way."""
    from edgewatch.agent.collectors.cpu import CpuCollector
    from edgewatch.agent.collectors.disk import DiskCollector
    from edgewatch.agent.collectors.filesystem import FilesystemCollector
    from edgewatch.agent.collectors.host import UptimeCollector
    from edgewatch.agent.collectors.memory import MemoryCollector
    from edgewatch.agent.collectors.network import NetworkCollector
    from edgewatch.agent.collectors.processes import ProcessCollector

    agent: dict[str, Series] = {}
    collectors = (
        CpuCollector(),
        MemoryCollector(),
        FilesystemCollector(),
        DiskCollector(),
        NetworkCollector(),
    )
    for c in (*collectors, UptimeCollector(), ProcessCollector(interval=0)):
        for now in (time.time(), time.time() + 1):
            agent.update((s.name, s) for s, _ in c.collect(now))
    sim = {s.name: s for n in range(20) for s in SimHost(f"sim-{n:03d}", n).series}
    shared = agent.keys() & sim.keys()
    assert len(shared) > 40
    for name in shared:
        assert (sim[name].kind, sim[name].precision) == (agent[name].kind, agent[name].precision), name


def test_host_facts_are_the_agents() -> None:
    host = SimHost("sim-004", 4)
    facts = host.batch([T0], 1, 1, "sim-004").host
    assert set(facts) == {"hostname", "os", "kernel", "arch", "cpu_model", "cpu_count", "memory_bytes",
                          "boot_time", "agent_version"}  # fmt: skip
    assert facts["hostname"] == "sim-004"
    assert (
        int(facts["cpu_count"])
        == host.cpus
        == len({dict(s.labels).get("cpu") for s in host.series} - {None, "all"})
    )
    assert int(facts["memory_bytes"]) == pick(values(host, T0), "node_memory_MemTotal_bytes")


@given(seed=st.integers(0, 2**64 - 1), at=st.integers(0, 400 * DAY), step=st.integers(1, 6 * HOUR))
def test_counters_grow_and_values_stay_physical(seed: int, at: int, step: int) -> None:
    host = SimHost("sim-x", seed)
    t1, t2 = T0 + at, T0 + at + step
    a, b = values(host, t1), values(host, t2)
    rebooted = pick(a, "node_boot_time_seconds") != pick(b, "node_boot_time_seconds")
    for s in host.series:
        v1, v2 = a[s.name, s.labels], b[s.name, s.labels]
        if s.kind == Kind.COUNTER and not rebooted:
            assert v1 is not None
            assert v2 is not None
            assert v2 >= v1, (s, v1, v2)
        if s.name.endswith("_percent") and s.name != "edgewatch_process_cpu_percent":
            assert v1 is not None
            assert 0 <= v1 <= 100, (s, v1)
        if v1 is not None and "temp" not in s.name:
            assert v1 >= 0, (s, v1)
    for row in (a, b):
        assert pick(row, "node_memory_MemFree_bytes") <= pick(row, "node_memory_MemAvailable_bytes")
        assert pick(row, "node_memory_MemAvailable_bytes") <= pick(row, "node_memory_MemTotal_bytes")
        assert pick(row, "node_memory_SwapFree_bytes") <= pick(row, "node_memory_SwapTotal_bytes")
        for mount in {dict(s.labels)["mountpoint"] for s in host.series if "mountpoint" in dict(s.labels)}:
            size = pick(row, "node_filesystem_size_bytes", mountpoint=mount)
            assert (
                pick(row, "node_filesystem_avail_bytes", mountpoint=mount)
                <= pick(row, "node_filesystem_free_bytes", mountpoint=mount)
                <= size
            )
        for unit in host.units:
            assert (
                sum(
                    v for (n, ls), v in row.items() if n == "node_systemd_unit_state" and ("unit", unit) in ls
                )
                == 1
            )


@pytest.mark.parametrize("seed", range(0, 120, 4))
def test_counters_grow_second_by_second_in_the_quietest_hour(seed: int) -> None:
    host = SimHost(f"sim-{seed:03d}", seed)
    rows = [host.sample(T0 + 3 * HOUR + n * 1000) for n in range(15)]  # at night, one second apart
    for s, *column in zip(host.series, *rows):
        if s.kind == Kind.COUNTER:
            assert all(b >= a for a, b in itertools.pairwise(column)), s


def test_counters_restart_only_when_the_host_reboots() -> None:
    host = SimHost("sim-009", 9)
    boot = host.boot_time(T0 / 1000)
    reboot_ms = next(t for t in range(T0, T0 + 70 * DAY, HOUR) if host.boot_time(t / 1000) != boot)
    reboot_ms = int(host.boot_time(reboot_ms / 1000) * 1000)
    before, after = values(host, reboot_ms - 10_000), values(host, reboot_ms + 100_000)
    assert host.silent(reboot_ms + 30_000)
    assert not host.silent(reboot_ms + 100_000)
    assert pick(after, "edgewatch_uptime_seconds") in (99, 100)
    assert pick(after, "node_boot_time_seconds") == reboot_ms // 1000
    for s in host.series:
        if s.kind == Kind.COUNTER:
            assert after[s.name, s.labels] <= before[s.name, s.labels], s
    assert (
        pick(after, "node_cpu_seconds_total", cpu="0", mode="idle")
        < 100
        < pick(before, "node_cpu_seconds_total", cpu="0", mode="idle")
    )


def test_the_day_has_busy_working_hours_and_a_quiet_night() -> None:
    busier, hosts = 0, [h for n in range(12) if (h := SimHost(f"sim-{n:03d}", n)).role != "batch"]
    for host in hosts:  # (batch hosts are busy at night)
        by_hour = [
            pick(values(host, T0 + 2 * DAY + h * HOUR), "edgewatch_cpu_usage_percent", cpu="all")
            for h in range(24)
        ]
        busier += sum(by_hour[9:18]) / 9 > sum(by_hour[0:5]) / 5
    assert busier >= 0.8 * len(hosts) >= 6


def test_cpu_usage_agrees_with_the_cpu_counters() -> None:
    host = SimHost("sim-002", 2, interval_s=60)
    a, b = values(host, T0), values(host, T0 + 60_000)
    busy = total = 0.0
    for mode in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"):
        for cpu in range(host.cpus):
            delta = pick(b, "node_cpu_seconds_total", cpu=str(cpu), mode=mode) - pick(
                a, "node_cpu_seconds_total", cpu=str(cpu), mode=mode
            )
            total += delta
            busy += delta if mode not in ("idle", "iowait") else 0
    assert 100 * busy / total == pytest.approx(pick(b, "edgewatch_cpu_usage_percent", cpu="all"), abs=0.2)
    assert total == pytest.approx(60 * host.cpus, abs=0.1)


def _twins(scenario: Scenario, seed: int = 3) -> tuple[SimHost, SimHost]:
    return SimHost("sim-003", seed), SimHost("sim-003", seed, scenarios=[scenario])


def _same_outside(plain: SimHost, changed: SimHost, start: int, end: int, settle: int = 16 * MIN) -> None:
    """Before the window everything is equal; after it (and after the load averages forgot it) the
    gauges are equal and the counters grow alike."""
    for ts in range(start - 2 * HOUR, start, 7 * MIN):
        assert plain.sample(ts) == changed.sample(ts)
    later = [end + settle + n * 13 * MIN for n in range(8)]
    for t1, t2 in itertools.pairwise(later):
        for s, p1, p2, c1, c2 in zip(
            plain.series, plain.sample(t1), plain.sample(t2), changed.sample(t1), changed.sample(t2)
        ):
            if s.kind == Kind.GAUGE:
                assert p2 == c2, s
            elif isinstance(p1, int):
                assert abs((p2 - p1) - (c2 - c1)) <= 512, s  # a rounding: one sector, one packet
            else:
                assert (p2 - p1) == pytest.approx(c2 - c1, abs=0.02), s


def test_cpu_spike() -> None:
    start, end = T0 + 3 * HOUR, T0 + 4 * HOUR
    plain, spiked = _twins(Scenario("cpu-spike", start, end))
    for ts in range(start + MIN, end, 5 * MIN):
        assert pick(values(spiked, ts), "edgewatch_cpu_usage_percent", cpu="all") == pytest.approx(
            97, abs=1.5
        )
    assert pick(values(spiked, end - MIN), "node_load1") > 0.9 * spiked.cpus
    _same_outside(plain, spiked, start, end)


def test_memory_leak() -> None:
    start, end = T0 + 3 * HOUR, T0 + 5 * HOUR
    plain, leaking = _twins(Scenario("memory-leak", start, end))
    avail = [pick(values(leaking, start + n * 10 * MIN), "node_memory_MemAvailable_bytes") for n in range(12)]
    assert all(b < a for a, b in itertools.pairwise(avail))
    assert pick(values(leaking, end - 1000), "node_memory_MemAvailable_bytes") < 0.03 * leaking.memory_bytes
    assert pick(values(leaking, end - 1000), "edgewatch_memory_used_percent") >= 97
    _same_outside(plain, leaking, start, end, settle=0)


def test_disk_fill_reaches_100_percent_in_the_time_given() -> None:
    start, end = T0 + 3 * HOUR, T0 + 6 * HOUR
    plain, filling = _twins(Scenario("disk-fill", start, end, str(HOUR // 1000)))
    used = [
        pick(values(filling, start + n * 10 * MIN), "edgewatch_filesystem_used_percent", mountpoint="/")
        for n in range(7)
    ]
    assert all(b > a for a, b in itertools.pairwise(used))
    for ts in (start + HOUR, start + 2 * HOUR, end - 1000):
        row = values(filling, ts)
        assert pick(row, "edgewatch_filesystem_used_percent", mountpoint="/") == 100.0
        assert pick(row, "node_filesystem_avail_bytes", mountpoint="/") == 0
    disk, before, after = _root_disk(filling), values(filling, start), values(filling, start + HOUR)
    written = pick(after, "node_disk_written_bytes_total", device=disk) - pick(
        before, "node_disk_written_bytes_total", device=disk
    )
    assert written > 0.5 * pick(before, "node_filesystem_avail_bytes", mountpoint="/")
    _same_outside(plain, filling, start, end, settle=0)


def _root_disk(host: SimHost) -> str:
    devices = sorted({dict(s.labels)["device"] for s in host.series if s.name == "node_disk_io_now"})
    return devices[0]


def test_service_down_fails_the_unit_and_its_check_and_says_so_in_events() -> None:
    start, end = T0 + 3 * HOUR, T0 + 4 * HOUR
    plain, broken = _twins(Scenario("service-down", start, end))
    unit = broken.units[0]
    row = values(broken, start + 10 * MIN)
    assert pick(row, "edgewatch_systemd_unit_active", unit=unit) == 0
    assert pick(row, "node_systemd_unit_state", unit=unit, state="failed") == 1
    assert pick(row, "edgewatch_check_up") == 0
    assert pick(row, "edgewatch_check_duration_seconds") is None
    assert pick(row, "edgewatch_check_http_status") == 0
    assert pick(row, "edgewatch_systemd_unit_active", unit=broken.units[1]) == 1
    stamps = broken.ticks(start - 20_000, start + 20_000)
    batch = broken.batch(stamps, 1, 1, "sim-003")
    (event,) = [e for e in batch.events if e.attrs["unit"] == unit and not e.attrs.get("restarted")]
    assert (event.type, event.attrs["from"], event.attrs["to"]) == ("service", "active", "failed")
    assert event.ts == min(ts for ts in stamps if ts >= start)
    after = broken.batch(broken.ticks(end - 20_000, end + 20_000), 1, 2, "sim-003")
    changes = [
        (e.attrs["from"], e.attrs["to"])
        for e in after.events
        if e.attrs["unit"] == unit and "restarted" not in e.attrs
    ]
    assert changes == [("failed", "active")]
    _same_outside(plain, broken, start, end, settle=0)


def test_silent_hosts_send_nothing_in_their_window() -> None:
    start, end = T0 + 3 * HOUR, T0 + 4 * HOUR
    plain, silent = _twins(Scenario("silent", start, end))
    assert silent.ticks(start, end) == []
    assert silent.ticks(end, end + HOUR) == plain.ticks(end, end + HOUR)
    assert silent.ticks(start - HOUR, start) == plain.ticks(start - HOUR, start)
    assert silent.sample(start + MIN) == plain.sample(start + MIN)


def test_flapping_crosses_80_percent_every_few_samples() -> None:
    start, end = T0 + 3 * HOUR, T0 + 4 * HOUR
    plain, flapping = _twins(Scenario("flapping", start, end))
    usage = [
        pick(values(flapping, ts), "edgewatch_cpu_usage_percent", cpu="all")
        for ts in flapping.ticks(start + MIN, start + 11 * MIN)
    ]
    above = [u > 80 for u in usage]
    assert sum(a != b for a, b in itertools.pairwise(above)) >= len(usage) // 3
    assert min(usage) < 76
    assert max(usage) > 84
    _same_outside(plain, flapping, start, end)


def test_restarts_are_counted_and_announced() -> None:
    host = SimHost("sim-005", 5)
    events = host.events(T0, T0 + 20 * DAY)
    restarts = [(ts, e["unit"]) for ts, e in events if e.get("restarted")]
    assert restarts
    ts, unit = restarts[0]
    if host.boot_time(ts / 1000) == host.boot_time((ts - 60_000) / 1000):
        before = pick(values(host, ts - 1), "edgewatch_systemd_unit_restarts_total", unit=str(unit))
        assert pick(values(host, ts), "edgewatch_systemd_unit_restarts_total", unit=str(unit)) == before + 1


def test_ticks_are_aligned_jittered_and_partition_time() -> None:
    host = SimHost("sim-001", 1, interval_s=10, phase_s=2.5)
    stamps = host.ticks(T0, T0 + HOUR)
    assert all(0 <= (ts - T0 - 2500) % 10_000 < 200 for ts in stamps)
    assert host.ticks(T0, T0 + HOUR // 2) + host.ticks(T0 + HOUR // 2, T0 + HOUR) == stamps
    assert len(stamps) == 360


def test_frames_round_trip_through_the_protocol() -> None:
    host = SimHost("sim-006", 6, scenarios=[Scenario("service-down", T0 + 5 * MIN, T0 + 7 * MIN)])
    batches = list(history(host, T0, T0 + 10 * MIN, agent_id="sim-006", boot_id=42, per_frame=30))
    assert [b.seq for b in batches] == [1, 2]
    assert sum(len(b.events) for b in batches) >= 2
    ref = None
    for b in batches:
        assert as_decoded(b) == b  # values are already at their series' precision
        assert decode(encode(b)) == b
        ref = next_reference(None, b)
    live = host.batch(
        host.ticks(T0 + 10 * MIN, T0 + 10 * MIN + 10_000), 42, 3, "sim-006", batches[-1].timestamps[-1]
    )
    assert decode(encode(live, ref), ref) == live
    assert len(encode(live, ref)) < len(encode(live)) / 3  # a delta frame is small


def test_fleet_spreads_hosts_over_the_interval_and_places_scenarios() -> None:
    config = SimConfig("http://x", hosts=4, interval=10, scenarios=[parse_scenario("cpu-spike:2-3@-1h+30m")])
    hosts = fleet(config, T0)
    assert [h.name for h in hosts] == ["sim-001", "sim-002", "sim-003", "sim-004"]
    assert sorted((h.tick_time(h.first_tick(T0)) - T0) // 2500 for h in hosts) == [0, 1, 2, 3]
    assert [len(h.scenarios) for h in hosts] == [0, 1, 1, 0]
    assert hosts[1].scenarios[0] == Scenario("cpu-spike", T0 - HOUR, T0 - 30 * MIN, "")
    assert fleet(config, T0)[0].sample(T0) == hosts[0].sample(T0)


# -- the command line ---------------------------------------------------------------------------


def test_scenario_and_duration_syntax() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("-2h") == -7200
    assert parse_scenario("cpu-spike") == ScenarioSpec("cpu-spike", "1", 0.0, None, "")
    assert parse_scenario("disk-fill/30m:2-4@-1h+2h") == ScenarioSpec(
        "disk-fill", "2-4", -3600.0, 7200.0, "1800"
    )
    assert parse_scenario("service-down/nginx.service:all@5m") == ScenarioSpec(
        "service-down", "all", 300.0, None, "nginx.service"
    )
    assert parse_scenario("cpu-spike/90%:sim-002") == ScenarioSpec("cpu-spike", "sim-002", 0.0, None, "90")


def _sim(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EDGEWATCH, "sim", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_help_is_complete() -> None:
    result = _sim("--help")
    assert result.returncode == 0
    flags = ["--hosts", "--interval", "--aggregator", "--enroll-token", "--state", "--prefix", "--scenario"]
    flags += ["--history", "--duration", "--seed", "--batch-samples", "--concurrency", *SCENARIOS]
    for flag in flags:
        assert flag in result.stdout, flag


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (("--hosts", "0"), "--hosts"),
        (("--interval", "soon"), "--interval"),
        (("--aggregator", "ftp://x"), "--aggregator"),
        (("--scenario", "meltdown"), "meltdown"),
        (("--scenario", "cpu-spike:7"), "7"),
        (("--scenario", "service-down/nope.service:all"), "nope.service"),
        (("--scenario", "cpu-spike@1h+0s"), "DURATION"),
        (("--history", "-1h"), "--history"),
    ],
)
def test_bad_arguments_are_one_clear_line_and_exit_2(args: tuple[str, ...], names: str) -> None:
    argv = ["--aggregator", "http://127.0.0.1:9", "--hosts", "5", *args]
    result = _sim(*argv)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("edgewatch sim: ")
    assert names in line


def test_without_an_identity_or_an_enrollment_token_it_says_what_to_give() -> None:
    result = _sim("--aggregator", "http://127.0.0.1:9", "--hosts", "2")
    assert result.returncode == 1
    assert "--enroll-token" in result.stderr.strip().splitlines()[-1]


# -- against the real receiver --------------------------------------------------------------------

# tests/receiver.py with an enrollment token good for N uses (as `add-enrollment --uses N`) that logs
# each enrollment: the receiver's own token is for one use only
_MULTI_USE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("receiver", sys.argv[1])
r = importlib.util.module_from_spec(spec)
spec.loader.exec_module(r)
uses, log = [int(sys.argv[2])], sys.argv[3]
one_use = r.enroll
async def enroll(request):
    state = request.app[r.STATE]
    token = state.enroll_token
    answer = await one_use(request)
    if answer.status == 200:
        uses[0] -= 1
        with open(log, "a") as f:
            f.write(answer.text + "\\n")
    state.enroll_token = token if uses[0] > 0 else ""
    return answer
r.enroll = enroll
sys.argv = [sys.argv[1], *sys.argv[4:]]
r.main()
"""


class SimReceiver(ReceiverProcess):
    def __init__(self, tmp: Path, uses: int) -> None:
        super().__init__(tmp, enroll_token="enroll-sim")
        self.uses = uses
        self.enrollments = tmp / "enrolled.jsonl"

    def start(self) -> None:
        argv = [sys.executable, "-c", _MULTI_USE, str(ROOT / "tests" / "receiver.py"), str(self.uses)]
        argv += [str(self.enrollments), "--port", str(self.port), "--token", self.token]
        argv += ["--log", str(self.log), "--enroll-token", self.enroll_token]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == b"ready\n"

    def enrolled(self) -> list[str]:
        text = self.enrollments.read_text() if self.enrollments.exists() else ""
        return [json.loads(line)["agent_id"] for line in text.splitlines()]


@pytest.fixture
def sim_receiver(tmp_path: Path) -> Any:
    r = SimReceiver(tmp_path, uses=5)
    r.start()
    try:
        yield r
    finally:
        r.stop()


def _by_agent(frames: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in frames:
        out[f["agent"]].append(f)
    return out


def _summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr[-2000:]
    (line,) = result.stdout.strip().splitlines()
    return dict(json.loads(line))


@pytest.mark.slow
def test_sim_enrolls_once_back_fills_and_pushes_live(sim_receiver: SimReceiver, tmp_path: Path) -> None:
    state = tmp_path / "sim-state.json"
    argv = ["--hosts", "5", "--interval", "1", "--duration", "4", "--history", "10m"]
    argv += ["--aggregator", sim_receiver.url, "--enroll-token", "enroll-sim", "--state", str(state)]
    started = time.time()
    summary = _summary(_sim(*argv))
    assert sorted(sim_receiver.enrolled()) == [f"sim-00{n}" for n in range(1, 6)]
    assert summary["hosts"] == summary["enrolled"] == 5
    assert summary["errors"] == summary["dropped_frames"] == summary["pending_frames"] == 0
    frames = sim_receiver.received()
    assert summary["frames_sent"] == len(frames)
    assert not sim_receiver.duplicates()
    assert summary["p50_ms"] is not None
    assert summary["p99_ms"] >= summary["p50_ms"]
    for agent, own in _by_agent(frames).items():
        seqs = [f["seq"] for f in own]
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), agent
        assert len({f["boot"] for f in own}) == 1
        stamps = sorted(ts for f in own for ts in f["timestamps"])
        assert len(stamps) == len(set(stamps))
        assert stamps[0] <= (started - 590) * 1000  # ten minutes of history
        assert all(b - a < 1500 for a, b in itertools.pairwise(stamps))  # and nothing missing since
        history_frames = [f for f in own if f["timestamps"][0] < started * 1000]
        assert len(history_frames) >= 10
        assert all(f["kind"] == "key" for f in history_frames)
        assert {len(f["timestamps"]) for f in history_frames[:-1]} == {60}
        assert any(f["kind"] == "delta" for f in own)  # live frames are deltas
        assert own[0]["host"]["hostname"] == agent
        assert own[0]["series"] >= 100
    assert json.loads(state.read_text())["hosts"]["sim-003"]["agent_id"] == "sim-003"

    # a second run reuses the identities: the token has no use left, so enrolling again would fail
    again = _summary(_sim(*argv[:4], "--duration", "2", *argv[8:]))
    assert again["enrolled"] == 0
    assert again["frames_sent"] > 0
    assert len(sim_receiver.enrolled()) == 5
    assert len({f["boot"] for f in sim_receiver.received()}) == 10  # a new boot id per host and run


def test_a_token_with_too_few_uses_enrolls_what_it_can_and_says_so(tmp_path: Path) -> None:
    receiver = SimReceiver(tmp_path, uses=3)
    receiver.start()
    try:
        state = tmp_path / "state.json"
        argv = [
            "--hosts",
            "5",
            "--aggregator",
            receiver.url,
            "--enroll-token",
            "enroll-sim",
            "--state",
            str(state),
        ]
        result = _sim(*argv)
    finally:
        receiver.stop()
    assert result.returncode == 1
    assert "used up" in result.stderr.strip().splitlines()[-1]
    assert len(json.loads(state.read_text())["hosts"]) == len(receiver.enrolled()) == 3
    assert oct(state.stat().st_mode & 0o777) == "0o600"  # it holds tokens


@pytest.mark.slow
def test_an_outage_loses_nothing_and_a_lost_reference_costs_a_key_frame(
    sim_receiver: SimReceiver, tmp_path: Path
) -> None:
    argv = ["--hosts", "5", "--interval", "1", "--duration", "14", "--aggregator", sim_receiver.url]
    argv += ["--enroll-token", "enroll-sim", "--seed", "3"]
    proc = subprocess.Popen(
        [EDGEWATCH, "sim", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        sim_receiver.wait_for(10)
        outage_ms = time.time() * 1000
        sim_receiver.control(status=503, retry_after=1)
        time.sleep(3)
        sim_receiver.control()
        time.sleep(3)
        sim_receiver.control(forget=True)  # as an aggregator restarted without its references
        forgot_ms = time.time() * 1000
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    summary = _summary(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert summary["error_reasons"].get("http_503", 0) >= 5
    assert summary["retries"] >= 10
    assert summary["conflicts_409"] >= 1
    assert summary["dropped_frames"] == summary["pending_frames"] == 0
    for agent, own in _by_agent(sim_receiver.received()).items():
        stamps = sorted(ts for f in own for ts in f["timestamps"])
        assert len(stamps) == len(set(stamps)), agent  # each sample once
        assert all(b - a < 1500 for a, b in itertools.pairwise(stamps)), agent  # and none missing
        assert stamps[0] < outage_ms, agent  # from before the outage ...
        assert stamps[-1] > forgot_ms, agent  # ... to after the lost reference
        assert sorted(f["seq"] for f in own) == list(range(1, len(own) + 1))


@pytest.mark.slow
def test_refused_frames_and_a_full_backlog_are_dropped_and_counted(
    sim_receiver: SimReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> Any:
        stop = asyncio.Event()
        config = SimConfig(
            sim_receiver.url, hosts=2, interval=0.2, enroll_token="enroll-sim", backlog_frames=3, stop_grace=0
        )
        task = asyncio.create_task(run_sim(config, stop))
        await asyncio.sleep(1.5)
        await asyncio.to_thread(sim_receiver.control, status=400)
        await asyncio.sleep(1)
        await asyncio.to_thread(sim_receiver.control, status=503, retry_after=30)
        await asyncio.sleep(2)
        stop.set()
        return await task

    stats = asyncio.run(scenario())
    refused = stats.error_reasons["http_400"]
    assert refused >= 4
    backlog_full = stats.dropped_frames - (
        refused - 2
    )  # each host's first refusal was a delta, then a key frame
    assert backlog_full >= 2 * 3
    assert stats.dropped_samples > 100 * stats.dropped_frames
    assert stats.pending_frames == 2 * 3
    assert len([r for r in caplog.records if "reason=refused" in r.getMessage()]) == 1  # logged once


@pytest.mark.slow
def test_a_simulated_history_is_the_same_for_the_same_clock_and_seeds(tmp_path: Path) -> None:
    """Time and randomness are parameters: history only, a fixed clock and rng, two receivers."""
    now = T0 / 1000
    sent = []
    for run in range(2):
        receiver = SimReceiver(tmp_path / str(run), uses=0)
        (tmp_path / str(run)).mkdir()
        receiver.start()
        try:
            known = {f"sim-00{n}": Identity(f"sim-00{n}", receiver.token) for n in range(1, 4)}
            config = SimConfig(receiver.url, hosts=3, interval=10, history=3600, history_only=True, seed=5,
                               identities=known, clock=lambda: now, rng=random.Random(9))  # fmt: skip
            stats = asyncio.run(run_sim(config))
            sent.append((stats.frames_sent, stats.samples_sent, stats.bytes_sent))
            frames = receiver.received()
        finally:
            receiver.stop()
        assert stats.history_frames == stats.key_frames == stats.frames_sent == 3 * 6
        stamps = sorted(ts for f in frames for ts in f["timestamps"])
        assert T0 - HOUR <= stamps[0] < T0 - HOUR + 10_000
        assert T0 - 10_000 <= stamps[-1] < T0
        assert Counter(f["agent"] for f in frames) == {"sim-001": 6, "sim-002": 6, "sim-003": 6}
    assert sent[0] == sent[1]
    assert math.isclose(sent[0][1], 360 * sum(len(h.series) for h in fleet(config, T0)), rel_tol=0.01)


def test_the_simulated_memory_fields_are_the_agents() -> None:
    """The simulator sends the /proc/meminfo fields the agent's memory collector sends, in its order."""
    from edgewatch.agent.collectors.memory import FIELDS

    assert MEMORY_FIELDS == FIELDS
