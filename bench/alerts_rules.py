"""Rule-cost part of bench/alerts.py: the rule engine in-process, fed 1,000 simulated hosts.

``Engine.observe(host, batch, now_ms)`` is what the aggregator runs on its event loop after each
committed frame, and ``Engine.tick`` what its timer runs every ``alerts.interval`` (5 s). Both are
timed here on the aggregator's own code with no I/O around them (the engine's writer job and the
notifier are no-ops): the frames are ``SimHost`` batches (the agent's ~165 series a host, one sample
each), built before each timed round.

Three rule sets: a mix of 100 rules (``rule_mix``: last / avg / min / max / rate over 1 min to
45 min, label matchers of every kind, host globs and groups, ratios, several rules on the same
metric, two absence rules); the mix less its two ratio rules whose divisor series lacks the rule's
labels (``mix-98``: when such a divisor arrives, the engine looks through every window it holds, of
every host, for the series to re-evaluate); and the built-in rules alone (what a default install
evaluates).

The engine keeps a window of samples per series a rule reads and reduces the whole window on every
evaluation, so the cost depends on how full the windows are: before the timed rounds every window is
filled to what it holds in steady state (the longest window of the series' rules plus a minute, at
10 s), with the hosts' first sample repeated; the cost of a reducer depends on the number of samples,
not on their values.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

from aggregator_common import emit, logger, rnd, rss_mb
from aggregator_ingest import make_host

from edgewatch.aggregator.alertengine import MAX_WINDOW_S, Engine
from edgewatch.aggregator.rules import RuleSet, load_rules
from edgewatch.aggregator.simhost import SimHost
from edgewatch.protocol import Batch

log = logger("alerts")
INTERVAL_MS = 10_000
TIMER_S = 5.0  # alerts.interval: how often the aggregator runs Engine.tick
BOOT_ID = 7

# The rules of the mix: (name, fields). Variants of these make the 100 (see rule_mix).
BASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("cpu_avg", {"metric": "edgewatch_cpu_usage_percent", "labels": {"cpu": "all"}, "reducer": "avg",
                 "window": "5m", "warning": 70, "critical": 90}),
    ("cpu_peak", {"metric": "edgewatch_cpu_usage_percent", "labels": {"cpu": "all"}, "reducer": "max",
                  "window": "1m", "warning": 90, "critical": 98}),
    ("cpu_core", {"metric": "edgewatch_cpu_usage_percent", "labels": {"cpu": "!all"}, "critical": 99}),
    ("iowait", {"metric": "edgewatch_cpu_iowait_percent", "reducer": "avg", "window": "5m", "warning": 20}),
    ("steal", {"metric": "edgewatch_cpu_steal_percent", "reducer": "avg", "window": "15m", "warning": 10}),
    ("load1_core", {"metric": "node_load1", "divide_by": "node_cpu_count", "warning": 1.5, "critical": 3}),
    ("load15_core", {"metric": "node_load15", "divide_by": "node_cpu_count", "reducer": "avg",
                     "window": "15m", "warning": 1}),
    ("memory", {"metric": "edgewatch_memory_used_percent", "warning": 80, "critical": 95, "clear": 75}),
    ("mem_avail", {"metric": "node_memory_MemAvailable_bytes", "reducer": "min", "window": "5m", "op": "<",
                   "warning": 268_435_456}),
    ("swap_out", {"metric": "node_vmstat_pswpout", "reducer": "rate", "window": "5m", "warning": 100}),
    ("majfault", {"metric": "node_vmstat_pgmajfault", "reducer": "rate", "window": "5m", "warning": 500}),
    ("fs_root", {"metric": "edgewatch_filesystem_used_percent", "labels": {"mountpoint": "/"},
                 "warning": 75, "critical": 90}),
    ("fs_data", {"metric": "edgewatch_filesystem_used_percent", "labels": {"mountpoint": "~^/(srv|var|data)"},
                 "reducer": "max", "window": "15m", "warning": 85}),
    ("fs_other", {"metric": "edgewatch_filesystem_used_percent", "labels": {"mountpoint": "!~^/boot"},
                  "reducer": "avg", "window": "5m", "warning": 70}),
    ("fs_inodes", {"metric": "node_filesystem_files_free", "labels": {"fstype": "!vfat"}, "op": "<",
                   "warning": 10_000}),
    ("fs_readonly", {"metric": "node_filesystem_readonly", "op": ">=", "critical": 1}),
    ("disk_busy", {"metric": "edgewatch_disk_utilisation_percent", "reducer": "avg", "window": "5m",
                   "warning": 80, "critical": 95}),
    ("disk_write", {"metric": "node_disk_written_bytes_total", "reducer": "rate", "window": "5m",
                    "warning": 50e6}),
    ("disk_read", {"metric": "node_disk_read_bytes_total", "reducer": "rate", "window": "5m",
                   "warning": 100e6}),
    ("disk_io_time", {"metric": "node_disk_io_time_seconds_total", "reducer": "rate", "window": "1m",
                      "warning": 0.9}),
    ("net_rx", {"metric": "node_network_receive_bytes_total", "labels": {"device": "!~^docker"},
                "reducer": "rate", "window": "5m", "warning": 1e7}),
    ("net_tx", {"metric": "node_network_transmit_bytes_total", "reducer": "rate", "window": "5m",
                "warning": 1e7}),
    ("net_errors", {"metric": "node_network_receive_errs_total", "reducer": "rate", "window": "15m",
                    "warning": 1}),
    ("net_drops", {"metric": "node_network_transmit_drop_total", "reducer": "rate", "window": "15m",
                   "warning": 1}),
    ("tcp_established", {"metric": "node_tcp_connection_states", "labels": {"state": "established"},
                         "warning": 1000}),
    ("tcp_time_wait", {"metric": "node_tcp_connection_states", "labels": {"state": "time_wait"},
                       "reducer": "avg", "window": "5m", "warning": 2000}),
    ("procs_blocked", {"metric": "node_procs_blocked", "reducer": "max", "window": "5m", "warning": 5}),
    ("zombies", {"metric": "node_processes_state", "labels": {"state": "Z"}, "warning": 10}),
    ("threads", {"metric": "node_processes_threads", "warning": 5000}),
    ("proc_cpu", {"metric": "edgewatch_process_cpu_percent",
                  "labels": {"name": "~^(nginx|postgres|gunicorn)$"}, "reducer": "avg", "window": "5m",
                  "warning": 80}),
    ("proc_memory_share", {"metric": "edgewatch_process_resident_bytes", "labels": {"rank": "1"},
                           "divide_by": "node_memory_MemTotal_bytes", "warning": 0.5}),
    ("temperature", {"metric": "node_hwmon_temp_celsius", "labels": {"chip": "~coretemp"}, "reducer": "max",
                     "window": "5m", "warning": 80, "critical": 95}),
    ("unit_inactive", {"metric": "edgewatch_systemd_unit_active", "op": "<", "critical": 1}),
    ("unit_restarts", {"metric": "edgewatch_systemd_unit_restarts_total", "reducer": "rate", "window": "15m",
                       "warning": 0.001}),
    ("check_slow", {"metric": "edgewatch_check_duration_seconds", "reducer": "avg", "window": "5m",
                    "warning": 0.05, "critical": 1}),
    ("check_5xx", {"metric": "edgewatch_check_http_status", "op": ">=", "critical": 500}),
    ("context_switches", {"metric": "node_context_switches_total", "reducer": "rate", "window": "5m",
                          "warning": 50_000}),
    ("forks", {"metric": "node_forks_total", "reducer": "rate", "window": "5m", "warning": 100}),
    ("agent_memory", {"metric": "edgewatch_agent_resident_bytes", "warning": 50e6}),
    ("agent_cpu", {"metric": "edgewatch_agent_cpu_seconds_total", "reducer": "rate", "window": "15m",
                   "warning": 0.05}),
)  # fmt: skip
GROUPS = {"even": ["bench-*[02468]"], "first_half": ["bench-00[0-4]*"]}


def _seconds(window: str) -> int:
    return int(window[:-1]) * {"s": 1, "m": 60, "h": 3600}[window[-1]]


def rule_mix() -> dict[str, Any]:
    """100 rules as the tables of a rules file: the bases as they are (every host); again for the
    host group ``even``, with three times the window (those that have one) and thresholds 10 % lower;
    the first 18 once more for the hosts ``bench-00[0-4]*`` with ``for`` = 2 min and an extra label;
    and two absence rules."""
    rules: list[dict[str, Any]] = []
    for name, fields in BASES:
        rules.append({"name": f"{name}_all", **fields})
    for name, fields in BASES:
        longer: dict[str, Any] = {k: fields[k] * 0.9 for k in ("warning", "critical", "clear") if k in fields}
        if "window" in fields:
            longer["window"] = f"{min(3 * _seconds(fields['window']), 3600)}s"
        rules.append({"name": f"{name}_even", **fields, **longer, "groups": ["even"]})
    for name, fields in BASES[:18]:
        rules.append(
            {"name": f"{name}_half", **fields, "hosts": ["bench-00[0-4]*"], "for": "2m",
             "labels_add": {"team": "ops"}}
        )  # fmt: skip
    rules.append({"name": "down_even", "kind": "absence", "groups": ["even"], "critical": 2})
    rules.append({"name": "down_half", "kind": "absence", "hosts": ["bench-00[0-4]*"], "warning": 2})
    return {"rule": rules, "groups": GROUPS}


def without(tables: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The rule tables less those whose name starts with ``prefix``."""
    return {**tables, "rule": [r for r in tables["rule"] if not r["name"].startswith(prefix)]}


async def _no_write(job: Any) -> None:
    """The engine's writer job (persisting transitions) is not what is measured here."""


def batches(hosts: Sequence[SimHost], start_ms: int, seq: int) -> list[Batch]:
    """One frame per host with its sample in ``[start_ms, start_ms + 10 s)`` (a rebooting host has none)."""
    out = []
    for host in hosts:
        stamps = host.ticks(start_ms, start_ms + INTERVAL_MS)
        if stamps:
            out.append(host.batch(stamps, BOOT_ID, seq, host.name))
    return out


def prefill(engine: Engine, frames: Sequence[Batch]) -> int:
    """Fill every window the rules read to its steady-state length with the frame's values (the
    samples before the frame, 10 s apart), through ``observe`` with one long frame per host (each
    window keeps what its rules need); answers how many samples the windows hold."""
    for b in frames:
        ts0 = b.timestamps[0]
        keeps = [
            int(max(min(r.window_s, MAX_WINDOW_S) for r in rules) * 1000) + 60_000
            for s in b.series
            if (rules := engine.rules.for_metric(s.name))
        ]
        if not keeps:
            continue
        n = max(keeps) // INTERVAL_MS
        stamps = [ts0 - j * INTERVAL_MS for j in range(n, 0, -1)]
        columns = [[column[0]] * n for column in b.values]
        engine.observe(
            b.agent_id, Batch(b.agent_id, b.boot_id, 0, stamps, list(b.series), columns, {}), stamps[-1]
        )
    return sum(len(w) for w in engine.windows.values())


def measure(what: str, rules: RuleSet, hosts: Sequence[SimHost], rounds: int, ticks: int) -> dict[str, Any]:
    transitions = 0

    def notify(*_: Any) -> None:
        nonlocal transitions
        transitions += 1

    engine = Engine(rules, _no_write, notify)
    start = 1_764_000_000_000  # a Monday, 16:00 UTC
    first = batches(hosts, start, 1)
    gc.collect()
    rss0 = rss_mb_self()
    t0 = time.perf_counter()
    held = prefill(engine, first)
    prefill_s = time.perf_counter() - t0
    for b in first:  # warm-up: alert states made, the fnmatch and regex caches filled
        engine.observe(b.agent_id, b, b.timestamps[-1] + 50)
    rss1 = rss_mb_self()
    per_round: list[float] = []  # CPU seconds of this process (other processes may share the cores)
    wall: list[float] = []
    samples = frames = evaluations = read = 0
    transitions = 0
    for r in range(1, rounds + 1):
        now = start + r * INTERVAL_MS
        todo = batches(hosts, now, r + 1)
        evaluations_before = engine.evaluations
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        for b in todo:
            engine.observe(b.agent_id, b, b.timestamps[-1] + 50)
        per_round.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
        evaluations += engine.evaluations - evaluations_before
        frames += len(todo)
        samples += sum(len(b.series) * len(b.timestamps) for b in todo)
        read += sum(len(b.timestamps) for b in todo for s in b.series if rules.for_metric(s.name))
    observed_transitions = transitions
    total = sum(per_round)
    before_ticks = engine.evaluations
    tick_s = _ticks(engine, hosts, start + (rounds + 1) * INTERVAL_MS, ticks)
    tick_evaluations = engine.evaluations - before_ticks
    rules_list = list(rules)
    return {
        "bench": "alerts",
        "what": "rule-cost",
        "rules": what,
        "rule_count": len(rules_list),
        "threshold_rules": sum(r.enabled and r.kind == "threshold" for r in rules_list),
        "absence_rules": len(rules.absence),
        "hosts": len(hosts),
        "rounds": rounds,
        "frames": frames,
        "samples": samples,
        "series_per_frame": rnd(samples / max(frames, 1), 1),
        "series_read_by_rules_per_frame": rnd(read / max(frames, 1), 1),
        "rule_evaluations": evaluations,
        "evaluations_per_frame": rnd(evaluations / max(frames, 1), 1),
        "us_per_sample": rnd(total / max(samples, 1) * 1e6, 3),
        "us_per_frame": rnd(total / max(frames, 1) * 1e6, 1),
        "us_per_rule_evaluation": rnd(total / max(evaluations, 1) * 1e6, 2),
        "round_cpu_s_p50": rnd(statistics.median(per_round), 3),
        "round_cpu_s_max": rnd(max(per_round), 3),
        "round_wall_s_p50": rnd(statistics.median(wall), 3),
        "event_loop_share_at_10s": rnd(statistics.median(per_round) / (INTERVAL_MS / 1000), 3),
        "transitions_in_rounds": observed_transitions,
        "tick_ms_p50": rnd(statistics.median(tick_s) * 1000, 2) if tick_s else None,
        "tick_ms_max": rnd(max(tick_s) * 1000, 2) if tick_s else None,
        "evaluations_per_tick": tick_evaluations // max(ticks, 1),
        "tick_share_at_5s": rnd(statistics.median(tick_s) / TIMER_S, 4) if tick_s else None,
        "window_samples_held": held,
        "windows": len(engine.windows),
        "windows_rss_mb": rnd(rss1 - rss0, 1),
        "prefill_s": rnd(prefill_s, 2),
        "note": "the aggregator's Engine in this process, no I/O, times in CPU seconds of this process: "
        "us_per_sample is observe() time over "
        "every sample of the frames (all series, read by a rule or not), us_per_rule_evaluation the same "
        "time over the rule evaluations it made (window upkeep included); event_loop_share_at_10s is "
        "one round of every host (one frame each, the agent's default 10 s) as a share of one core of "
        "the aggregator's event loop; tick_* is Engine.tick for every host (absence rules; no z-score "
        "rules here), which the aggregator runs every alerts.interval (5 s). Windows were pre-filled to "
        "steady state (longest window of the series' rules + 1 min, at 10 s) before the timed rounds; "
        "windows_rss_mb is how much this process's RSS grew meanwhile (approximate)",
    }


def rss_mb_self() -> float:
    return rss_mb(os.getpid())


def _ticks(engine: Engine, hosts: Sequence[SimHost], now_ms: int, count: int) -> list[float]:
    seen = {h.name: (now_ms - 4_000, INTERVAL_MS) for h in hosts}

    async def run() -> list[float]:
        await engine.flush()
        out = []
        for k in range(count):
            c0 = time.process_time()
            await engine.tick(now_ms + k * 5_000, seen)
            out.append(time.process_time() - c0)
        return out

    return asyncio.run(run()) if count else []


def run(hosts: int, rounds: int, ticks: int, cases: Sequence[str]) -> list[dict[str, Any]]:
    log(f"rule cost: drawing {hosts} simulated hosts")
    fleet = [make_host(i, hosts) for i in range(hosts)]
    sets = {
        "mix-100": lambda: load_rules(rule_mix(), defaults={}),
        "builtin": lambda: load_rules(""),
        "mix-98": lambda: load_rules(without(rule_mix(), "proc_memory_share_"), defaults={}),
    }
    out = []
    for name in cases:
        rules = sets[name]()
        log(f"rule cost: {name} ({len(rules)} rules), {rounds} rounds of {hosts} frames, {ticks} ticks")
        line = measure(name, rules, fleet, rounds, ticks)
        emit(line)
        out.append(line)
        gc.collect()
    return out
