"""The rule engine: evaluation on arrival, absence on the timer, persistence across a restart."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edgewatch.aggregator.alertengine import Engine, load_states, persist
from edgewatch.aggregator.alertstate import AlertState, Transition
from edgewatch.aggregator.db import open_writer
from edgewatch.aggregator.rules import load_rules
from edgewatch.protocol import Batch, Series

T0 = 1_764_000_000_000
CPU = Series("edgewatch_cpu_usage_percent", {"cpu": "all"}, precision=1)
RULES = """
[[rule]]
name = "cpu_now"
metric = "edgewatch_cpu_usage_percent"
labels = { cpu = "all" }
reducer = "last"
op = ">"
warning = 80
critical = 95
clear = 70
summary = "CPU of {host} at {value:.0f} %"
"""


class Harness:
    def __init__(self, db: Path) -> None:
        self.conn = open_writer(db)
        self.sent: list[tuple[str, str, str | None, str]] = []
        self.engine = self.make()

    def make(self) -> Engine:
        async def write(fn: Any) -> Any:
            self.conn.execute("BEGIN")
            result = fn(self.conn)
            self.conn.execute("COMMIT")
            return result

        def notify(state: AlertState, t: Transition, annotations: dict[str, str], now: int) -> None:
            self.sent.append((state.labels["host"], t.to_state, t.level, annotations["summary"]))

        engine = Engine(load_rules(RULES, defaults={}), write, notify)
        engine.load(load_states(self.conn))
        return engine

    def push(self, host: str, ts: int, cpu: float) -> list[Transition]:
        transitions = self.engine.observe(host, Batch(host, 1, ts, [ts], [CPU], [[cpu]]), ts)
        asyncio.run(self.engine.flush())
        return transitions


def test_a_threshold_fires_notifies_once_and_resolves_past_the_clear_value(tmp_path: Path) -> None:
    h = Harness(tmp_path / "a.db")
    assert h.push("web-1", T0, 50.0) == []
    assert [t.to_state for t in h.push("web-1", T0 + 10_000, 90.0)] == ["firing"]
    assert h.push("web-1", T0 + 20_000, 85.0) == []  # still warning: nothing new
    assert [(t.to_state, t.level) for t in h.push("web-1", T0 + 30_000, 97.0)] == [("firing", "critical")]
    # below 80 but above clear: still firing, at the lowest level
    assert [(t.to_state, t.level) for t in h.push("web-1", T0 + 40_000, 75.0)] == [("firing", "warning")]
    assert [t.to_state for t in h.push("web-1", T0 + 50_000, 60.0)] == ["resolved"]
    assert h.push("web-2", T0 + 50_000, 10.0) == []  # another host is another alert
    assert h.sent == [
        ("web-1", "firing", "warning", "CPU of web-1 at 90 %"),
        ("web-1", "firing", "critical", "CPU of web-1 at 97 %"),
        ("web-1", "firing", "warning", "CPU of web-1 at 75 %"),
        ("web-1", "resolved", "warning", "CPU of web-1 at 60 %"),
    ]
    rows = h.conn.execute("SELECT level FROM alert_log WHERE kind = 'transition' ORDER BY id").fetchall()
    assert rows == [("warning",), ("critical",), ("warning",), ("warning",)]


def test_a_restart_keeps_firing_alerts_and_does_not_notify_them_again(tmp_path: Path) -> None:
    h = Harness(tmp_path / "b.db")
    h.push("web-1", T0, 99.0)
    assert len(h.sent) == 1
    h.engine = h.make()  # a restart: the state comes back from the database
    assert [s.state for s in h.engine.active()] == ["firing"]
    assert h.push("web-1", T0 + 10_000, 99.0) == []
    assert len(h.sent) == 1
    assert [t.to_state for t in h.push("web-1", T0 + 20_000, 10.0)] == ["resolved"]


def test_host_down_fires_on_the_timer_after_three_silent_intervals(tmp_path: Path) -> None:
    h = Harness(tmp_path / "c.db")
    h.engine.rules = load_rules("")  # the built-in rules, host_down among them
    hosts = {"web-1": (T0, 10_000)}
    assert asyncio.run(h.engine.tick(T0 + 20_000, hosts)) == []
    fired = asyncio.run(h.engine.tick(T0 + 31_000, hosts))
    assert [(t.to_state, t.level) for t in fired] == [("firing", "critical")]
    assert h.sent[-1][:2] == ("web-1", "firing")
    hosts = {"web-1": (T0 + 40_000, 10_000)}
    assert [t.to_state for t in asyncio.run(h.engine.tick(T0 + 41_000, hosts))] == ["resolved"]
    stored = sqlite3.connect(tmp_path / "c.db").execute("SELECT status FROM alerts").fetchall()
    assert stored == [("resolved",)]


def test_persist_writes_state_and_transitions_together(tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "d.db")
    state = AlertState("r", "abc", {"host": "h"}, "firing", "warning", 1.0, 1, 1)
    conn.execute("BEGIN")
    persist(conn, [(state, [Transition("inactive", "firing", "warning", 1.0, 1)])])
    conn.execute("COMMIT")
    assert load_states(conn) == [state]


LONG_RULES = """
[[rule]]
name = "fs_soon"
metric = "node_filesystem_avail_bytes"
reducer = "predict"
window = "6h"
predict_in = "24h"
op = "<="
warning = 0

[[rule]]
name = "rss_share"
metric = "edgewatch_process_resident_bytes"
labels = { rank = "1" }
divide_by = "node_memory_MemTotal_bytes"
warning = 0.5
"""
AVAIL = Series("node_filesystem_avail_bytes", {"mountpoint": "/"})
RSS = Series("edgewatch_process_resident_bytes", {"rank": "1"})
TOTAL = Series("node_memory_MemTotal_bytes")


async def _no_write(fn: Any) -> Any:
    return None


def test_long_windows_are_evaluated_once_per_part_of_them_and_ratios_touch_only_their_host() -> None:
    engine = Engine(load_rules(LONG_RULES, defaults={}), _no_write, lambda *a: None)
    for k in range(72):  # 12 minutes at 10 s
        ts = T0 + k * 10_000
        engine.observe("db-1", Batch("db-1", 1, k, [ts], [AVAIL], [[1e12 - k * 1e9]]), ts)
    # a six-hour window, every 72nd of it (5 minutes): at 0 s (one sample: no fit, not counted), 300
    # and 600 s, not 72 times
    assert engine.evaluations == 2
    for host in ("a", "b"):
        engine.observe(host, Batch(host, 1, 1, [T0], [RSS, TOTAL], [[6e9], [8e9]]), T0)
    before = engine.evaluations
    engine.observe("a", Batch("a", 1, 2, [T0 + 10_000], [TOTAL], [[8e9]]), T0 + 10_000)
    assert engine.evaluations == before + 1  # the divisor re-evaluates host a's series only
    assert sorted(s.labels["host"] for s in engine.active() if s.rule == "rss_share") == ["a", "b"]
    assert [s.labels["host"] for s in engine.active() if s.rule == "fs_soon"] == ["db-1"]  # full in 24 h
    # series silent for longer than they are kept are forgotten
    kept = len(engine.windows)
    assert kept == 5
    assert engine.prune(T0 + 7 * 3_600_000) == kept
    assert engine.windows == {}


@pytest.mark.parametrize(("window", "due"), [("30m", 360), ("1h", 60), ("6h", 12), ("24h", 3)])
def test_how_often_a_rule_is_due_on_arrival_goes_by_its_window(window: str, due: int) -> None:
    """Short windows at every arrival; an hour or more at most once a minute and at most once per
    72nd of the window, so a long fit costs the same a minute whatever its length."""
    text = LONG_RULES.split("[[rule]]")[1].replace('"6h"', f'"{window}"')
    engine = Engine(load_rules("[[rule]]" + text, defaults={}), _no_write, lambda *a: None)
    rule = engine.rules.rules[0]
    key = ("db-1", AVAIL.name, AVAIL.labels)
    assert sum(engine._due(rule, key, T0 + k * 10_000) for k in range(360)) == due  # an hour at 10 s


def test_a_host_whose_series_list_changes_or_whose_rules_change_is_planned_again(tmp_path: Path) -> None:
    h = Harness(tmp_path / "a.db")
    core = Series("edgewatch_cpu_usage_percent", {"cpu": "0"}, precision=1)
    mem = Series("edgewatch_memory_used_percent", precision=1)
    e = h.engine
    # the host-wide CPU is not in the first list: a single core is not what the rule reads
    assert e.observe("web-1", Batch("web-1", 1, 1, (T0,), (core, mem), ((99.0,), (50.0,))), T0) == []
    # the list changes, columns move: the rule finds its series where it now is
    batch = Batch("web-1", 1, 2, (T0 + 10_000,), (mem, CPU, core), ((50.0,), (97.0,), (10.0,)))
    assert [t.level for t in e.observe("web-1", batch, T0 + 10_000)] == ["critical"]
    # only what a rule reads is kept: no window for a single core or for memory (no rule reads it)
    assert set(e.windows) == {("web-1", CPU.name, CPU.labels)}
    # rules switched off without a reload (a new rule set): the old plan is not used
    e.rules = load_rules(RULES.replace('reducer = "last"', 'reducer = "last"\nenabled = false'), defaults={})
    batch = Batch("web-1", 1, 3, (T0 + 20_000,), (mem, CPU, core), ((50.0,), (10.0,), (10.0,)))
    assert e.observe("web-1", batch, T0 + 20_000) == []
    assert e.windows[("web-1", CPU.name, CPU.labels)].newest == T0 + 10_000  # no rule reads it any more
