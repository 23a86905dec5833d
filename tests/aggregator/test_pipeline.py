"""The notification pipeline with fake channels and a driven clock, Hypothesis properties over
random alert histories, its configuration, and one trip through the real webhook channel."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.aggregator.alertstate import AlertState, Transition, fingerprint
from edgewatch.aggregator.notify.base import Delivery, Notification
from edgewatch.aggregator.notify.webhook import WebhookChannel
from edgewatch.aggregator.pipeline import LOG_KINDS, Pipeline
from edgewatch.aggregator.routing import (
    NotifyDefaults,
    Silence,
    build_channels,
    parse_matcher,
    parse_notify,
    parse_routes,
)

from .notify_services import WebhookReceiver

T0 = 1_764_000_000_000
S = 1000
MIN = 60 * S


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


class Clock:
    def __init__(self) -> None:
        self.ms = T0


Outcome = Callable[[int, Sequence[Notification]], Delivery]


class FakeChannel:
    """Records every send; ``outcome(now, notes)`` decides how it goes (default: it arrives)."""

    def __init__(self, name: str, clock: Clock, outcome: Outcome | None = None, kind: str = "fake") -> None:
        self.name, self.kind, self.clock = name, kind, clock
        self.outcome = outcome or (lambda now, notes: Delivery(ok=True))
        self.calls: list[tuple[int, list[Notification], Any]] = []
        self.delivered: list[tuple[int, Notification]] = []
        self.check: Callable[[str, Sequence[Notification]], None] | None = None

    async def send(self, notifications: Sequence[Notification], *, only: Any = None) -> Delivery:
        self.calls.append((self.clock.ms, list(notifications), only))
        if self.check is not None:
            self.check(self.name, notifications)
        d = self.outcome(self.clock.ms, notifications)
        if d.ok or any(p.ok for p in d.parts):
            self.delivered += [(self.clock.ms, n) for n in notifications]
        return d

    def public_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name}

    def seen(self) -> list[tuple[int, str, str, str]]:
        """(time, alert key, state, level) of every notification that arrived."""
        return [(t, n.key, str(n.state), str(n.level)) for t, n in self.delivered]


class Rig:
    def __init__(
        self,
        routes: list[dict[str, Any]] | None = None,
        notify: dict[str, Any] | None = None,
        channels: Sequence[str] = ("a", "b"),
        silences: list[Silence] | None = None,
        outcomes: dict[str, Outcome] | None = None,
        kinds: dict[str, str] | None = None,
    ) -> None:
        self.clock = Clock()
        self.channels = {
            n: FakeChannel(n, self.clock, (outcomes or {}).get(n), (kinds or {}).get(n, "fake"))
            for n in channels
        }
        self.defaults = parse_notify(notify or {})
        self.routes = parse_routes(routes, self.defaults, list(self.channels))
        self.silences = silences if silences is not None else []
        self.log: list[tuple[str, str, dict[str, Any]]] = []
        self.gone: list[tuple[str, tuple[str, ...]]] = []
        self.violations: list[str] = []
        self.resolutions: list[tuple[str, int]] = []  # (alert key, time) of each resolved transition
        self.pipeline = self.new_pipeline()

    def new_pipeline(self) -> Pipeline:
        async def record(fp: str, kind: str, detail: dict[str, Any]) -> None:
            self.log.append((fp, kind, detail))

        return Pipeline(
            self.channels,
            self.routes,
            self.defaults,
            log=record,
            silences=lambda: self.silences,
            on_gone=lambda ch, eps: self.gone.append((ch, eps)),
        )

    async def at(self, ms: int) -> None:
        """Tick at ``ms`` after T0."""
        self.clock.ms = T0 + ms
        await self.pipeline.tick(self.clock.ms)

    async def ticks(self, until_ms: int, step: int = S) -> None:
        """Tick now, then every ``step`` until ``until_ms`` after T0."""
        now = self.clock.ms - T0
        await self.at(now)
        while now < until_ms:
            now = min(now + step, until_ms)
            await self.at(now)

    def fire(
        self, a: AlertState, ms: int, level: str | None = None, severity: str | None = None
    ) -> AlertState:
        self.clock.ms = T0 + ms
        level = level or a.level
        was = "firing" if a.state == "firing" else "pending"
        fired = a.fired_at if a.state == "firing" else T0 + ms
        new = dataclasses.replace(a, state="firing", level=level, fired_at=fired)
        summary = {"summary": f"{a.rule} on {a.labels.get('host')}"}
        self.pipeline.submit(
            new, Transition(was, "firing", level, 97.0, T0 + ms), summary, T0 + ms, severity=severity
        )
        return new

    def resolve(self, a: AlertState, ms: int) -> AlertState:
        self.clock.ms = T0 + ms
        new = dataclasses.replace(a, state="resolved", resolved_at=T0 + ms, acked_by=None)
        self.pipeline.submit(new, Transition("firing", "resolved", a.level, 10.0, T0 + ms), {}, T0 + ms)
        return new

    def kinds(self, fp: str | None = None) -> list[str]:
        return [k for f, k, _ in self.log if fp is None or f == fp]


def alert(rule: str = "cpu_high", host: str = "web-1", level: str = "critical", **labels: str) -> AlertState:
    lab = {"host": host, **labels}
    return AlertState(rule, fingerprint(rule, lab), lab, state="inactive", level=level, value=97.0)


# --- timing, grouping, repeats ---------------------------------------------------------------


def test_a_critical_alert_goes_out_at_the_next_tick_and_a_warning_waits_for_its_group() -> None:
    async def scenario() -> None:
        rig = Rig()
        cpu = alert()
        rig.fire(cpu, 0)
        assert rig.pipeline.wake.is_set()  # `run` ticks at once
        await rig.at(0)
        assert [s[1:] for s in rig.channels["a"].seen()] == [(cpu.fingerprint, "firing", "critical")]
        assert rig.channels["b"].seen() == rig.channels["a"].seen()
        mem, disk = alert("mem_high", "web-2", level="warning"), alert("disk_high", "web-2", level="warning")
        rig.fire(mem, 1 * S)
        await rig.ticks(20 * S)
        rig.fire(disk, 20 * S)
        await rig.ticks(30 * S)  # group_wait 30 s for warnings, counted from the first
        assert len(rig.channels["a"].calls) == 1
        await rig.at(31 * S)
        assert len(rig.channels["a"].calls) == 2
        _, notes, _ = rig.channels["a"].calls[1]
        assert {n.key for n in notes} == {mem.fingerprint, disk.fingerprint}  # one message for the group
        assert notes[0].group == "0:host=web-2"
        assert "grouped" in rig.kinds(mem.fingerprint)
        assert rig.kinds(cpu.fingerprint) == ["grouped", "notified", "notified"]  # one per channel

    run(scenario())


def test_later_alerts_of_a_group_wait_for_the_group_interval_and_critical_ones_do_not() -> None:
    async def scenario() -> None:
        rig = Rig(notify={"group_interval": "5m"})
        w1, w2 = alert("a1", level="warning"), alert("a2", level="warning")
        rig.fire(w1, 0)
        await rig.ticks(30 * S)
        assert len(rig.channels["a"].calls) == 1
        rig.fire(w2, 60 * S)
        await rig.ticks(5 * MIN - S)
        assert len(rig.channels["a"].calls) == 1
        crit = alert("a3")
        rig.fire(crit, 5 * MIN - S)
        await rig.at(5 * MIN - S)  # the critical goes now, and takes the waiting warning along
        _, notes, _ = rig.channels["a"].calls[1]
        assert {n.key for n in notes} == {w2.fingerprint, crit.fingerprint}

    run(scenario())


def test_repeats_come_every_repeat_interval_until_acked_and_the_resolution_still_comes() -> None:
    async def scenario() -> None:
        rig = Rig(notify={"repeat_interval": "1h"}, channels=("a",))
        cpu = rig.fire(alert(), 0)
        await rig.ticks(60 * MIN - S, step=MIN)
        assert len(rig.channels["a"].delivered) == 1
        await rig.at(60 * MIN)
        await rig.ticks(2 * 60 * MIN, step=MIN)
        assert [t - T0 for t, _ in rig.channels["a"].delivered] == [0, 60 * MIN, 120 * MIN]
        rig.pipeline.acknowledge(cpu.fingerprint)
        await rig.ticks(5 * 60 * MIN, step=MIN)
        assert len(rig.channels["a"].delivered) == 3
        rig.resolve(cpu, 5 * 60 * MIN)
        await rig.at(5 * 60 * MIN)
        assert rig.channels["a"].seen()[-1][2] == "resolved"

    run(scenario())


def test_an_alert_that_resolves_within_its_group_wait_sends_nothing() -> None:
    async def scenario() -> None:
        rig = Rig()
        mem = rig.fire(alert("mem_high", level="warning"), 0)
        await rig.ticks(10 * S)
        rig.resolve(mem, 10 * S)
        await rig.ticks(10 * MIN)
        assert rig.channels["a"].calls == []
        assert rig.kinds(mem.fingerprint) == ["grouped", "dropped"]

    run(scenario())


def test_a_change_of_level_is_sent_and_a_bounce_within_the_group_interval_is_not() -> None:
    async def scenario() -> None:
        rig = Rig(notify={"repeat_interval": "1h", "group_interval": "5m"}, channels=("a",))
        cpu = alert(level="warning")
        for minute, level in ((0, "warning"), (5, "critical"), (10, "warning"), (12, "critical")):
            await rig.ticks(minute * MIN)
            cpu = rig.fire(cpu, minute * MIN, level=level)
        await rig.ticks(13 * MIN)
        cpu = rig.fire(cpu, 13 * MIN, level="warning")  # waits for the group interval: 17 min
        await rig.ticks(14 * MIN)
        cpu = rig.fire(cpu, 14 * MIN, level="critical")  # what the channel was told already
        await rig.ticks(80 * MIN, step=10 * S)
        assert [(t - T0, lv) for t, _, _, lv in rig.channels["a"].seen()] == [
            (30 * S, "warning"),  # group_wait
            (5 * MIN, "critical"),  # at once
            (10 * MIN + 30 * S, "warning"),
            (12 * MIN, "critical"),
            (72 * MIN, "critical"),  # the repeat
        ]

    run(scenario())


def test_a_critical_alert_that_eases_to_a_warning_and_resolves_is_resolved_as_critical_at_once() -> None:
    """The channel was told "critical": its resolution skips the warnings' group wait and interval
    (before, it waited the group interval as a warning, minutes after the host was fine)."""

    async def scenario() -> None:
        rig = Rig(notify={"group_interval": "5m"}, channels=("a",))
        cpu = rig.fire(alert(level="critical"), 0)
        await rig.ticks(2 * S)
        cpu = rig.fire(cpu, 2 * S, level="warning")  # waits for its group: not sent before the resolution
        await rig.ticks(3 * S)
        rig.resolve(cpu, 3 * S)
        await rig.ticks(4 * S)
        assert [(t - T0, state, lv) for t, _, state, lv in rig.channels["a"].seen()] == [
            (0, "firing", "critical"),
            (3 * S, "resolved", "critical"),
        ]
        await rig.ticks(10 * MIN, step=10 * S)
        assert len(rig.channels["a"].calls) == 2  # and nothing after it

    run(scenario())


def test_a_digest_route_sends_one_message_per_digest_interval() -> None:
    async def scenario() -> None:
        rig = Rig(
            routes=[
                {"match": {"severity": ["critical"]}, "channels": ["a"]},
                {"channels": ["b"], "digest": True, "digest_interval": "15m"},
            ]
        )
        alerts = [alert(f"r{i}", host=f"web-{i}", level="warning") for i in range(3)]
        for i, a in enumerate(alerts):
            await rig.ticks(i * MIN)
            rig.fire(a, i * MIN)
        await rig.ticks(15 * MIN + 29 * S)  # the first one joined the digest at 30 s
        assert rig.channels["b"].calls == []
        await rig.ticks(16 * MIN)
        [(_, notes, _)] = rig.channels["b"].calls
        assert len(notes) == 3
        assert rig.channels["a"].calls == []
        assert rig.kinds(alerts[0].fingerprint)[:2] == ["grouped", "digest"]

    run(scenario())


# --- routing, silences, inhibition, escalation -------------------------------------------------


def test_the_first_matching_route_wins_unless_it_says_continue() -> None:
    async def scenario() -> None:
        rig = Rig(
            routes=[
                {"match": {"labels": {"env": "prod"}}, "channels": ["a"], "continue": True},
                {"match": {"severity": ["critical"]}, "channels": ["b"]},
                {"channels": ["c"]},
            ],
            channels=("a", "b", "c"),
        )
        prod = rig.fire(alert("x", env="prod"), 0)
        dev = rig.fire(alert("y", env="dev", level="warning"), 0)
        await rig.ticks(MIN)
        got = {n: {k for _, k, _, _ in ch.seen()} for n, ch in rig.channels.items()}
        assert got == {"a": {prod.fingerprint}, "b": {prod.fingerprint}, "c": {dev.fingerprint}}
        rig2 = Rig(routes=[{"match": {"severity": ["info"]}, "channels": ["a"]}])
        lost = rig2.fire(alert(), 0)
        assert rig2.log == []  # submit logs with the next tick
        await rig2.at(0)
        assert rig2.log[-1][1:] == ("dropped", {"at": T0, "state": "firing", "reason": "no route matches"})
        assert lost.fingerprint == rig2.log[-1][0]
        unit = rig2.fire(alert("unit_failed", level="critical"), MIN, severity="info")  # the rule's severity
        await rig2.at(MIN + 30 * S)  # info waits 30 s like a warning
        assert [(k, lv) for _, k, _, lv in rig2.channels["a"].seen()] == [(unit.fingerprint, "info")]

    run(scenario())


def test_a_silenced_alert_is_not_sent_until_the_silence_ends_and_then_it_is() -> None:
    async def scenario() -> None:
        silence = Silence.parse(
            "s1", matchers=["host=web-1", "rule=~^cpu"], starts_at=T0, ends_at=T0 + 10 * MIN
        )
        rig = Rig(silences=[silence])
        cpu = rig.fire(alert(), 0)
        other = rig.fire(alert(host="web-2"), 0)
        await rig.ticks(10 * MIN - S)
        assert {k for _, k, _, _ in rig.channels["a"].seen()} == {other.fingerprint}
        assert ("silenced", {"at": T0, "state": "firing", "silence": "s1"}) in [e[1:] for e in rig.log]
        await rig.at(10 * MIN)
        assert rig.channels["a"].seen()[-1][1:3] == (cpu.fingerprint, "firing")

    run(scenario())


def test_a_silence_made_later_stops_repeats_and_a_silenced_resolution() -> None:
    async def scenario() -> None:
        rig = Rig(notify={"repeat_interval": "10m"}, channels=("a",))
        cpu = rig.fire(alert(), 0)
        await rig.at(0)
        rig.silences.append(
            Silence.parse("s", matchers=["rule=cpu_high"], starts_at=T0, ends_at=T0 + 60 * MIN)
        )
        await rig.ticks(30 * MIN, step=MIN)
        rig.resolve(cpu, 30 * MIN)
        await rig.ticks(40 * MIN, step=MIN)
        assert len(rig.channels["a"].delivered) == 1

    run(scenario())


def test_a_host_that_is_down_mutes_its_other_alerts_and_they_come_back_when_it_is_up() -> None:
    async def scenario() -> None:
        rig = Rig(channels=("a",))
        down = rig.fire(alert("host_down"), 0)
        cpu1 = rig.fire(alert("cpu_high", host="web-1"), 0)
        cpu2 = rig.fire(alert("cpu_high", host="web-2"), 0)
        await rig.ticks(5 * MIN)
        assert {k for _, k, _, _ in rig.channels["a"].seen()} == {down.fingerprint, cpu2.fingerprint}
        assert "inhibited" in rig.kinds(cpu1.fingerprint)
        rig.resolve(down, 5 * MIN)
        await rig.at(5 * MIN)
        assert {(k, s) for _, k, s, _ in rig.channels["a"].seen()[2:]} == {
            (down.fingerprint, "resolved"),
            (cpu1.fingerprint, "firing"),
        }

    run(scenario())


def test_an_unacknowledged_critical_alert_escalates_once_and_an_acked_one_does_not() -> None:
    async def scenario() -> None:
        route = {"channels": ["a"], "escalate_after": "30m", "escalate_to": ["pager"]}
        rig = Rig(routes=[route], channels=("a", "pager"), notify={"repeat_interval": "4h"})
        cpu = rig.fire(alert(), 0)
        acked = rig.fire(alert(host="web-2"), 0)
        rig.pipeline.acknowledge(acked.fingerprint)
        await rig.ticks(30 * MIN - S, step=MIN)
        assert rig.channels["pager"].calls == []
        await rig.ticks(3 * 60 * MIN, step=MIN)
        assert [k for _, k, _, _ in rig.channels["pager"].seen()] == [cpu.fingerprint]
        assert rig.kinds(cpu.fingerprint).count("escalated") == 1
        rig.resolve(cpu, 3 * 60 * MIN)
        await rig.at(3 * 60 * MIN)
        assert rig.channels["pager"].seen()[-1][2] == "resolved"

    run(scenario())


# --- delivery and retry ------------------------------------------------------------------------


def test_a_resolution_that_comes_while_its_firing_is_being_sent_follows_it() -> None:
    async def scenario() -> None:
        rig = Rig(channels=("a",))
        gate = asyncio.Event()
        channel = rig.channels["a"]
        plain_send = channel.send

        async def slow_send(notifications: Sequence[Notification], *, only: Any = None) -> Delivery:
            await gate.wait()
            return await plain_send(notifications, only=only)

        channel.send = slow_send  # type: ignore[method-assign]
        cpu = rig.fire(alert(), 0)
        sending = asyncio.create_task(rig.at(0))
        await asyncio.sleep(0)
        rig.resolve(cpu, 500)  # the engine goes on while the webhook is slow
        gate.set()
        await sending
        await rig.at(S)
        assert [(t - T0, s) for t, _, s, _ in channel.seen()] == [(500, "firing"), (S, "resolved")]

    run(scenario())


def test_a_channel_that_raises_and_a_log_that_raises_do_not_stop_the_pipeline() -> None:
    async def scenario() -> None:
        def broken(now: int, notes: Sequence[Notification]) -> Delivery:
            raise RuntimeError("bug in a channel")

        rig = Rig(channels=("a", "b"), outcomes={"a": broken})

        def bad_log(fp: str, kind: str, detail: dict[str, Any]) -> None:
            raise OSError("disk full")

        rig.pipeline = Pipeline(rig.channels, rig.routes, rig.defaults, log=bad_log)
        cpu = rig.fire(alert(), 0)
        await rig.ticks(10 * S)
        assert len(rig.channels["a"].calls) == 1  # not worth a retry: it is a bug
        assert [k for _, k, _, _ in rig.channels["b"].seen()] == [cpu.fingerprint]

    run(scenario())


def test_an_ack_on_a_submitted_alert_stops_repeats_but_a_change_of_level_is_still_sent() -> None:
    async def scenario() -> None:
        rig = Rig(notify={"repeat_interval": "10m"}, channels=("a",))
        cpu = rig.fire(alert(), 0)
        await rig.at(0)
        rig.fire(dataclasses.replace(cpu, acked_by="ann"), MIN, level="warning")  # the engine's view
        await rig.ticks(60 * MIN, step=10 * S)  # the warning waits for the group interval
        assert [(t - T0, lv) for t, _, _, lv in rig.channels["a"].seen()] == [
            (0, "critical"),
            (5 * MIN, "warning"),
        ]

    run(scenario())


def test_retryable_failures_back_off_and_give_up_after_max_attempts() -> None:
    async def scenario() -> None:
        rig = Rig(
            channels=("a", "b"),
            notify={"max_attempts": 4},
            outcomes={
                "a": lambda now, notes: Delivery(ok=False, retryable=True, detail="HTTP 503"),
                "b": lambda now, notes: Delivery(ok=False, status=400, detail="HTTP 400"),
            },
        )
        cpu = rig.fire(alert(), 0)
        await rig.at(0)
        await rig.ticks(60 * S, step=S // 2)
        assert [t - T0 for t, _, _ in rig.channels["a"].calls] == [0, 1 * S, 3 * S, 7 * S]
        assert [t - T0 for t, _, _ in rig.channels["b"].calls] == [0]
        kinds = rig.kinds(cpu.fingerprint)
        assert kinds.count("retry_scheduled") == 3
        assert kinds.count("dropped") == 2
        assert {e[2]["reason"] for e in rig.log if e[1] == "dropped"} == {
            "gave up after 4 attempts",
            "not worth a retry",
        }

    run(scenario())


def test_a_firing_that_never_arrived_gets_no_resolution_and_is_tried_again_at_the_repeat() -> None:
    async def scenario() -> None:
        def refuse_at_first(now: int, notes: Sequence[Notification]) -> Delivery:
            return Delivery(ok=now >= T0 + MIN, status=403)

        rig = Rig(channels=("a",), outcomes={"a": refuse_at_first}, notify={"repeat_interval": "10m"})
        one, three = rig.fire(alert(host="web-1"), 0), rig.fire(alert(host="web-3"), 0)
        await rig.ticks(2 * MIN, step=10 * S)
        two = rig.fire(alert(host="web-2"), 2 * MIN)
        await rig.ticks(5 * MIN, step=10 * S)
        rig.resolve(one, 5 * MIN)
        rig.resolve(two, 5 * MIN)
        await rig.ticks(11 * MIN, step=10 * S)
        assert [(t - T0, k, s) for t, k, s, _ in rig.channels["a"].seen()] == [
            (2 * MIN, two.fingerprint, "firing"),
            (5 * MIN, two.fingerprint, "resolved"),
            (10 * MIN, three.fingerprint, "firing"),  # refused at 0: tried again at the repeat
        ]

    run(scenario())


def test_retry_after_is_honoured_and_a_retry_that_arrives_counts_as_the_notification() -> None:
    async def scenario() -> None:
        def flaky(now: int, notes: Sequence[Notification]) -> Delivery:
            if now < T0 + 30 * S:
                return Delivery(ok=False, retryable=True, retry_after=20.0, status=429)
            return Delivery(ok=True)

        rig = Rig(channels=("a",), outcomes={"a": flaky}, notify={"repeat_interval": "1h"})
        rig.fire(alert(), 0)
        await rig.ticks(2 * 60 * MIN, step=S)
        assert [t - T0 for t, _, _ in rig.channels["a"].calls] == [0, 20 * S, 40 * S, 40 * S + 60 * MIN]

    run(scenario())


def test_gone_push_targets_are_reported_and_only_failed_endpoints_are_retried() -> None:
    async def scenario() -> None:
        def push(now: int, notes: Sequence[Notification]) -> Delivery:
            parts = (
                Delivery(ok=True, target="https://p/1"),
                Delivery(ok=False, gone=True, status=410, target="https://p/2"),
                Delivery(ok=False, retryable=True, status=500, target="https://p/3"),
            )
            return Delivery(ok=False, retryable=True, parts=parts)

        rig = Rig(channels=("phones",), outcomes={"phones": push}, kinds={"phones": "webpush"})
        rig.fire(alert(), 0)
        await rig.ticks(2 * S)
        assert rig.gone[0] == ("phones", ("https://p/2",))
        assert [only for _, _, only in rig.channels["phones"].calls[:2]] == [None, ["https://p/3"]]
        assert "notified" in rig.kinds()  # one phone got it

    run(scenario())


def test_export_and_import_continue_a_retry_and_a_pending_group() -> None:
    async def scenario() -> None:
        def down_for_a_while(now: int, notes: Sequence[Notification]) -> Delivery:
            return Delivery(ok=now >= T0 + 5 * S, retryable=True)

        rig = Rig(channels=("a",), outcomes={"a": down_for_a_while})
        rig.fire(alert(), 0)
        rig.fire(alert("mem_high", "web-2", level="warning"), 0)
        await rig.at(0)
        state = json.loads(json.dumps(rig.pipeline.export_state()))
        rig.pipeline = rig.new_pipeline()
        rig.pipeline.import_state(state)
        await rig.ticks(MIN)
        assert [(t - T0, len(notes)) for t, notes, _ in rig.channels["a"].calls] == [
            (0, 1),
            (1 * S, 1),
            (3 * S, 1),
            (7 * S, 1),
            (30 * S, 1),
        ]
        with pytest.raises(ValueError, match="notification state"):
            rig.pipeline.import_state({"version": 1, "alerts": {"x": {}}})

    run(scenario())


# --- properties ---------------------------------------------------------------------------------

ALERTS = (alert("host_down", host="h1"), alert(host="h1"), alert(host="h2"), alert("mem_high", host="h2"))
PROPERTY_NOTIFY = {
    "group_wait": {"warning": "10s", "info": "10s"},
    "group_interval": "20s",
    "repeat_interval": "60s",
    "digest_interval": "45s",
    "retry_initial": "1s",
    "retry_max": "4s",
    "max_attempts": 3,
}
PROPERTY_ROUTES = [
    {
        "match": {"labels": {"host": "h1"}},
        "channels": ["a", "b"],
        "escalate_after": "90s",
        "escalate_to": ["c"],
    },
    {"channels": ["b"], "digest": True, "continue": True},
    {"channels": ["a"]},
]


KINDS = ("fire", "fire", "fire", "resolve", "resolve", "tick", "tick", "ack", "silence")
MATCHERS = ("host=h2", "rule=cpu_high", "host=h1", "severity=warning")
events = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 3), st.sampled_from(["warning", "critical"])),
    min_size=5,
    max_size=40,
)
failures = st.lists(st.tuples(st.integers(0, 120), st.integers(1, 30), st.booleans()), max_size=4)


def outcome_from(windows: list[tuple[int, int, bool]]) -> Outcome:
    """Fail during the windows (start s, length s, retryable), deterministically by time."""

    def outcome(now: int, notes: Sequence[Notification]) -> Delivery:
        for start, length, retryable in windows:
            if T0 + start * S <= now < T0 + (start + length) * S:
                return Delivery(ok=False, retryable=retryable, detail="down")
        return Delivery(ok=True)

    return outcome


class Model:
    """Drives a rig from a list of events, the way the engine would, and knows what is muted."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.states = {a.fingerprint: a for a in ALERTS}
        self.now = 0

    def muted(self, key: str) -> bool:
        a = self.states[key]
        down = self.states[ALERTS[0].fingerprint]
        if a.rule != "host_down" and a.labels["host"] == "h1" and down.state == "firing":
            return True
        labels = {"rule": a.rule, "severity": a.level or "", **a.labels}
        return any(s.matches(labels, T0 + self.now) for s in self.rig.silences)

    async def step(self, kind: str, n: int, arg: str) -> None:
        """One event, then a tick a second later (the runner ticks every second); ``tick`` jumps
        ahead 1 to 40 s."""
        a = self.states[ALERTS[n].fingerprint]
        if kind == "tick":
            self.now += (n * 13 + 1) * S
        elif kind == "fire" and (a.state != "firing" or a.level != arg):
            self.states[a.fingerprint] = self.rig.fire(a, self.now, level=arg)
        elif kind == "resolve" and a.state == "firing":
            self.states[a.fingerprint] = self.rig.resolve(a, self.now)
            self.rig.resolutions.append((a.fingerprint, T0 + self.now))
        elif kind == "ack" and a.state == "firing":
            self.states[a.fingerprint] = dataclasses.replace(a, acked_by="op")
            self.rig.pipeline.acknowledge(a.fingerprint)
        elif kind == "silence":
            start = T0 + self.now + (n if arg == "warning" else 0) * 10 * S
            self.rig.silences.append(
                Silence.parse(
                    f"s{len(self.rig.silences)}",
                    matchers=[MATCHERS[n]],
                    starts_at=start,
                    ends_at=start + 60 * S,
                )
            )
        if kind != "tick":
            self.now += S
        await self.rig.at(self.now)


def property_rig(windows: list[tuple[int, int, bool]]) -> Rig:
    out = outcome_from(windows)
    return Rig(PROPERTY_ROUTES, PROPERTY_NOTIFY, ("a", "b", "c"), outcomes={"a": out, "b": out})


async def play(
    steps: list[tuple[str, int, str]], windows: list[tuple[int, int, bool]], restart_at: int | None = None
) -> Rig:
    """Play ``steps`` then ten minutes of ticks; at step ``restart_at`` export the state through JSON
    into a new pipeline (with the same channels, which decide by time alone)."""
    rig = property_rig(windows)
    model = Model(rig)

    def check(channel: str, notes: Sequence[Notification]) -> None:  # the pipeline catches raises
        rig.violations += [f"{channel} got {n.key} while it was muted" for n in notes if model.muted(n.key)]

    for ch in rig.channels.values():
        ch.check = check
    for i, step in enumerate([*steps, *[("tick", 0, "")] * 15, *[("tick", 3, "")] * 15]):
        if i == restart_at:
            state = json.loads(json.dumps(rig.pipeline.export_state(), allow_nan=False))
            rig.pipeline = rig.new_pipeline()
            rig.pipeline.import_state(state)
        await model.step(*step)
    return rig


@given(events, failures)
def test_property_silenced_and_inhibited_alerts_are_never_sent(
    steps: list[tuple[str, int, str]], windows: list[tuple[int, int, bool]]
) -> None:
    rig = run(play(steps, windows))
    assert rig.violations == []


@given(events, failures)
def test_property_no_second_firing_within_the_repeat_interval_and_no_resolution_without_a_firing(
    steps: list[tuple[str, int, str]], windows: list[tuple[int, int, bool]]
) -> None:
    rig = run(play(steps, windows))
    repeat = 60 * S
    for name, ch in rig.channels.items():
        last: dict[str, tuple[int, str]] = {}  # key -> (time, level) of the last firing since a resolution
        for t, key, state, level in ch.seen():
            if state == "resolved":
                assert key in last, f"{name}: a resolution of {key} without a notified firing"
                del last[key]
                continue
            resolved = any(k == key and last[key][0] <= at <= t for k, at in rig.resolutions if key in last)
            if key in last and level == last[key][1] and not resolved:
                assert t - last[key][0] >= repeat, f"{name}: {key} again after {t - last[key][0]} ms"
            last[key] = (t, level)


@given(events, failures)
def test_property_retries_only_for_retryable_failures_and_within_max_attempts(
    steps: list[tuple[str, int, str]], windows: list[tuple[int, int, bool]]
) -> None:
    rig = run(play(steps, windows))
    assert {k for _, k, _ in rig.log} <= set(LOG_KINDS)
    failed: dict[tuple[int, int], bool] = {}
    attempts: dict[int, list[int]] = {}
    for _, kind, d in rig.log:
        if "message" not in d:
            continue
        m, n = d["message"], d["attempt"]
        assert n <= 3
        if kind in ("notified", "delivery_failed") and n not in attempts.setdefault(m, []):
            attempts[m].append(n)
        if kind == "delivery_failed":
            failed[m, n] = d["retryable"]
        if kind == "retry_scheduled":
            assert failed[m, n] is True
            assert n < 3
    for m, ns in attempts.items():
        assert ns == list(range(1, len(ns) + 1)), f"message {m}: attempts {ns}"
        assert all(failed.get((m, n)) is not False for n in ns[:-1]), (
            "a send after a failure not worth a retry"
        )
    assert sum(len(ch.calls) for ch in rig.channels.values()) == sum(len(ns) for ns in attempts.values())
    dropped = {d["message"] for _, kind, d in rig.log if kind == "dropped" and "message" in d}
    assert {m for (m, n), retryable in failed.items() if n == 3 or not retryable} <= dropped


@given(events, failures, st.integers(0, 40))
def test_property_export_and_import_mid_sequence_gives_the_same_future_deliveries(
    steps: list[tuple[str, int, str]], windows: list[tuple[int, int, bool]], cut: int
) -> None:
    def sends(rig: Rig) -> dict[str, list[tuple[int, list[tuple[str, str, str]]]]]:
        return {
            name: [(t, [(n.key, str(n.state), str(n.level)) for n in notes]) for t, notes, _ in ch.calls]
            for name, ch in rig.channels.items()
        }

    assert sends(run(play(steps, windows, restart_at=cut))) == sends(run(play(steps, windows)))


# --- configuration ------------------------------------------------------------------------------


def test_notify_defaults_and_overrides() -> None:
    d = parse_notify(None)
    assert d == NotifyDefaults()
    assert dict(d.group_wait) == {"info": 30.0, "warning": 30.0, "error": 0.0, "critical": 0.0}
    assert (d.group_interval, d.repeat_interval, d.digest_interval) == (300.0, 14400.0, 900.0)
    assert (d.retry_initial, d.retry_max, d.max_attempts) == (1.0, 300.0, 10)
    assert [d.retry_delay(n) for n in (1, 2, 3, 9, 10)] == [1.0, 2.0, 4.0, 256.0, 300.0]
    d = parse_notify({"group_wait": {"warning": "1m"}, "repeat_interval": 7200, "inhibitors": []})
    assert d.group_wait["warning"] == 60.0
    assert d.group_wait["critical"] == 0.0
    assert d.repeat_interval == 7200.0
    assert d.inhibitors == ()
    assert parse_notify({"group_wait": "5s"}).group_wait["critical"] == 5.0


@pytest.mark.parametrize(
    ("notify", "routes", "message"),
    [
        ({"repeat_interval": "soon"}, None, "notify: repeat_interval: must be a duration"),
        ({"max_attempts": 0}, None, "notify: max_attempts: must be a whole number"),
        ({"retries": 3}, None, "notify: retries: unknown field"),
        ({"group_wait": {"fatal": "1s"}}, None, "notify: group_wait: 'fatal' is not a severity"),
        ({}, [{"channels": ["nope"]}], "route 1: channels: no channel is named 'nope'"),
        ({}, [{"channels": ["a"]}, {"channels": []}], "route 2: channels: name at least one channel"),
        ({}, [{"channels": ["a"], "match": {"severity": ["bad"]}}], "route 1: match: severity: 'bad'"),
        ({}, [{"channels": ["a"], "match": {"labels": {"h": "~("}}}], "route 1: match: labels: .*regular"),
        ({}, [{"channels": ["a"], "match": {"host": "x"}}], "route 1: match: host: unknown field"),
        ({}, [{"channels": ["a"], "repeat_interval": 0}], "route 1: repeat_interval: must be more than 0"),
        ({"retry_initial": "0s"}, None, "notify: retry_initial: must be more than 0"),
        ({}, [{"channels": ["a"], "escalate_after": "5m"}], "route 1: escalate_to: .*go together"),
        ({}, [{"channels": ["a"], "digest": "yes"}], "route 1: digest: must be true or false"),
        ({}, [{"channels": ["a"], "group_by": "host", "colour": 1}], "route 1: colour: unknown field"),
    ],
)
def test_config_errors_are_one_line_naming_the_entry_and_field(
    notify: dict[str, Any], routes: list[dict[str, Any]] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_routes(routes, parse_notify(notify), ["a", "b"])
    assert "\n" not in str(info.value)


def test_routes_default_to_every_channel_and_take_the_notify_defaults() -> None:
    defaults = parse_notify({"repeat_interval": "2h"})
    [route] = parse_routes(None, defaults, ["a", "b"])
    assert route.channels == ("a", "b")
    assert route.matches("warning", {})
    assert route.matches("critical", {})
    assert not route.matches("info", {})  # info alerts stay in the UI unless a route sends them
    assert route.repeat_interval == 7200.0
    assert route.group_by == ("host",)
    [route] = parse_routes(
        [{"channels": "a", "group_wait": "10s", "group_by": ["host", "rule"]}], defaults, ["a"]
    )
    assert route.wait_for("critical") == 10.0
    assert route.group_of(0, {"host": "h", "rule": "r"}) == "0:host=h,rule=r"


def test_build_channels_makes_each_kind_and_names_the_bad_field(tmp_path: Path) -> None:
    async def subs() -> list[Any]:
        return []

    items = [
        {
            "name": "ops",
            "type": "webhook",
            "url": "https://hooks.example.com/x",
            "secret": "s",
            "timeout": "5s",
        },
        {"name": "chat", "type": "apprise", "urls": ["json://127.0.0.1:9/x"]},
        {"name": "phones", "type": "webpush", "subject": "mailto:ops@example.com"},
    ]
    channels = build_channels(items, data_dir=tmp_path, subscriptions_provider=subs)
    assert {n: c.kind for n, c in channels.items()} == {
        "ops": "webhook",
        "chat": "apprise",
        "phones": "webpush",
    }
    assert channels["ops"].public_config()["secret"] == "****"
    assert (tmp_path / "vapid_private.pem").exists()
    bad = [
        ({"name": "x", "type": "sms"}, "channel 'x': type: must be one of webhook, apprise, webpush"),
        ({"name": "x", "type": "webhook", "url": "ftp://h"}, "channel 'x': url: the webhook URL must start"),
        (
            {"name": "x", "type": "webhook", "url": "https://h", "headers": {"Content-Type": "a"}},
            "channel 'x': headers:",
        ),
        ({"name": "x", "type": "webhook", "url": "https://h", "port": 1}, "channel 'x': port: unknown field"),
        ({"name": "x", "type": "apprise", "urls": ["nonsense://"]}, "channel 'x': urls: Apprise URL 1"),
        ({"name": "x", "type": "webpush", "subject": "ops"}, "channel 'x': subject: the Web Push subject"),
        ({"type": "webpush", "subject": "ops"}, "channel 1: name: use 1 to 64"),
    ]
    for item, message in bad:
        with pytest.raises(ValueError, match=message):
            build_channels([item], data_dir=tmp_path, subscriptions_provider=subs)
    with pytest.raises(ValueError, match="channel 'ops': name: another channel"):
        build_channels([items[0], items[0]], data_dir=tmp_path, subscriptions_provider=subs)


def test_silence_matchers() -> None:
    labels = {"host": "web-1", "rule": "cpu_high", "env": "prod"}
    assert parse_matcher("host=web-1").matches(labels)
    assert not parse_matcher("host!=web-1").matches(labels)
    assert parse_matcher('rule=~"^cpu_"').matches(labels)
    assert parse_matcher("env!~^dev").matches(labels)
    assert parse_matcher("team=").matches(labels)  # a missing label is ""
    for bad in ("host", "=x", "host=~(", "1x=y"):
        with pytest.raises(ValueError, match=r"matcher|regular expression"):
            parse_matcher(bad)
    s = Silence.parse(
        "s1", matchers=["host=web-1", "env=~prod"], starts_at=T0, ends_at=T0 + MIN, created_by="ann"
    )
    assert s.matches(labels, T0)
    assert not s.matches(labels, T0 + MIN)
    assert not s.matches({**labels, "host": "web-2"}, T0)
    assert Silence.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(ValueError, match="at least one matcher"):
        Silence("s", (), T0, T0 + 1)


# --- through a real channel ----------------------------------------------------------------------


def test_a_critical_alert_reaches_a_real_webhook_within_a_second_of_submit() -> None:
    async def scenario() -> None:
        async with WebhookReceiver(secret="hook-secret") as hook:
            channel = WebhookChannel("ops", hook.url("/edgewatch"), secret="hook-secret")
            defaults = parse_notify({})
            pipeline = Pipeline({"ops": channel}, parse_routes(None, defaults, ["ops"]), defaults)
            loop = asyncio.get_running_loop()
            start = loop.time()
            runner = asyncio.create_task(
                pipeline.run(lambda: T0 + round((loop.time() - start) * 1000), interval_s=5)
            )
            await asyncio.sleep(0.05)  # the runner is idle now, waiting up to 5 s
            cpu = alert()
            fired = dataclasses.replace(cpu, state="firing", fired_at=T0)
            pipeline.submit(
                fired,
                Transition("pending", "firing", "critical", 97.0, T0),
                {"summary": "CPU at 97 %"},
                T0 + 50,
            )
            while not hook.received and loop.time() - start < 2:
                await asyncio.sleep(0.01)
            elapsed = loop.time() - start
            runner.cancel()
            with pytest.raises(asyncio.CancelledError):
                await runner
            [got] = hook.received
            assert got.signature_ok is True
            assert elapsed < 1.0
            assert got.body["status"] == "firing"
            assert got.body["alerts"][0]["key"] == cpu.fingerprint
            assert got.body["alerts"][0]["summary"] == "CPU at 97 %"

    run(scenario())
