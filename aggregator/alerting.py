"""The alerting resource of the aggregator: the rule engine, the notifier, and the tasks that drive them.

`alerting_context` is the cleanup context ``make_app`` installs after the storage: it loads the
rules and the alerts that were pending or firing at the last stop, builds the notifier from the
config, hooks the engine onto every committed frame, and runs two tasks — the timer for absence and
z-score rules (``alerts.interval``) and the notification pipeline (every second, and at once when
an alert fires). On the way out it persists what the engine holds and saves the pipeline state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from edgewatch.protocol import Batch

from . import alertapi, ingest
from .alertengine import Engine, SeriesKey, load_states
from .alertstate import AlertState, Transition
from .catalog import labels_key
from .compaction import read_tier
from .config import AggregatorConfig
from .live import HUB
from .metrics import Registry
from .notifier import Notifier, start_notifier
from .rules import load_rules
from .schema import TIERS
from .store import Store

log = logging.getLogger("edgewatch.aggregator.alerts")
NOTIFIER = web.AppKey("notifier", Notifier)
T1H = TIERS[3]
Baseline = dict[tuple[SeriesKey, int, int], float | None]


def _baseline_of(
    conn: sqlite3.Connection, key: SeriesKey, spans: list[tuple[int, int]]
) -> list[float | None]:
    """The average of the series ``key`` over each span, from the 1 h tier (None where it has no data)."""
    host, metric, labels = key
    row = conn.execute(
        "SELECT s.id, h.id FROM series s JOIN hosts h ON h.id = s.host"
        " WHERE h.name = ? AND s.name = ? AND s.labels = ?",
        (host, metric, labels_key(labels)),
    ).fetchone()
    if row is None:
        return [None] * len(spans)
    sid, hid = row
    out: list[float | None] = []
    for start, end in spans:
        buckets = read_tier(conn, T1H, hid, start, end, only={sid}).get(sid, {})
        count = sum(a.count for a in buckets.values())
        out.append(sum(a.sum for a in buckets.values()) / count if count else None)
    return out


BaselineFn = Callable[[str, SeriesKey, list[tuple[int, int]]], Awaitable[list[float | None]]]


def baseline_reader(store: Store) -> BaselineFn:
    """The engine's z-score baseline: hourly averages of earlier days, read once per hour and series."""
    cache: Baseline = {}

    async def baseline(metric: str, key: SeriesKey, spans: list[tuple[int, int]]) -> list[float | None]:
        wanted = [(key, start, end) for start, end in spans]
        missing = [(s, e) for k, s, e in wanted if (k, s, e) not in cache]
        if missing:
            values = await store.readers.run(lambda conn: _baseline_of(conn, key, missing))
            if len(cache) > 200_000:
                cache.clear()
            cache.update({(key, s, e): v for (s, e), v in zip(missing, values)})
        return [cache[w] for w in wanted]

    return baseline


async def start_alerting(
    app: web.Application,
    config: AggregatorConfig,
    registry: Registry,
    wall: Callable[[], float],
) -> alertapi.Alerting:
    """The rule engine with the rules file and the alerts that were pending or firing at the last stop,
    wired to a new notifier (``app[NOTIFIER]``)."""
    store, ing = app[ingest.INGEST].store, app[ingest.INGEST]
    notifier = await start_notifier(store, config, registry, wall)
    app[NOTIFIER] = notifier
    tasks: set[asyncio.Task[None]] = set()

    def notify(
        state: AlertState,
        transition: Transition,
        annotations: dict[str, str],
        now_ms: int,
    ) -> None:
        rule = al.engine.rules.get(state.rule)
        severity = rule.severity_of(transition.level or state.level) if rule else (state.level or "warning")
        log.info(
            "alert rule=%s host=%s %s->%s severity=%s summary=%r",
            state.rule,
            state.labels.get("host", ""),
            transition.from_state,
            transition.to_state,
            severity,
            annotations.get("summary", ""),
        )
        notifier.submit(state, transition, annotations, now_ms, severity)
        if (hub := app.get(HUB)) is not None:
            hub.alert(alertapi.alert_json(state, al.engine), transition.to_dict())

    al = alertapi.Alerting(
        Engine(load_rules("", defaults={}), store.write, notify),
        Path(config["alerts.rules_file"]),
        on_ack=notifier.pipeline.acknowledge,
    )
    switches = await store.readers.run(
        lambda conn: conn.execute("SELECT value FROM kv WHERE key = ?", (alertapi.RULE_SWITCHES,)).fetchone()
    )
    al.switches = json.loads(switches[0]) if switches else {}
    al.engine.rules = al.load_file()
    al.engine.load(await store.readers.run(load_states))
    for name, last_seen, interval in await store.readers.run(
        lambda conn: conn.execute(
            "SELECT name, last_seen_ms, interval_ms FROM hosts WHERE revoked_ms IS NULL"
        ).fetchall()
    ):
        state = ing.state(name)
        state.last_seen_ms, state.interval_ms = last_seen, interval

    def observe(host: str, batch: Batch, now_ms: int) -> None:
        if al.engine.observe(host, batch, now_ms):
            task = asyncio.create_task(al.engine.flush())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    ing.observers["rules"] = observe
    registry.gauge(
        "edgewatch_rule_evaluations_total",
        "Rule evaluations (a rule on one series), on arrival and on the timer.",
        lambda: {(): float(al.engine.evaluations)},
    )
    registry.gauge(
        "edgewatch_rule_evaluation_seconds_total",
        "Time spent evaluating rules.",
        lambda: {(): al.engine.seconds},
    )
    registry.gauge(
        "edgewatch_alerts",
        "Alerts by state (pending, firing).",
        lambda: _alert_counts(al),
    )
    return al


def _alert_counts(al: alertapi.Alerting) -> dict[tuple[tuple[str, str], ...], float]:
    counts = {"pending": 0.0, "firing": 0.0}
    for s in al.engine.active():
        counts[s.state] = counts.get(s.state, 0.0) + 1
    return {(("state", k),): v for k, v in counts.items()}


async def _timer(app: web.Application, interval: float, wall: Callable[[], float]) -> None:
    al, ing = app[alertapi.ALERTING], app[ingest.INGEST]
    baseline = baseline_reader(app[ingest.INGEST].store)
    while True:
        await asyncio.sleep(interval)
        hosts = {name: (s.alive_ms, s.interval_ms) for name, s in ing.states.items()}
        try:
            await al.engine.tick(int(wall() * 1000), hosts, baseline)
        except Exception:
            log.exception("alert evaluation failed; retrying at the next interval")


async def _send(notifier: Notifier, wall: Callable[[], float]) -> None:
    """Run the notification pipeline; a bug in it is logged and the pipeline goes on a second later."""
    while True:
        try:
            await notifier.pipeline.run(lambda: int(wall() * 1000), after=notifier.save)
        except Exception:
            log.exception("the notification pipeline failed; going on in 1 s")
            await asyncio.sleep(1)


def alerting_context(
    config: AggregatorConfig, registry: Registry, wall: Callable[[], float]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context of the alerting resource (after the storage's)."""

    async def alerting(app: web.Application) -> AsyncIterator[None]:
        al = await start_alerting(app, config, registry, wall)
        app[alertapi.ALERTING] = al
        notifier = app[NOTIFIER]
        timer = asyncio.create_task(_timer(app, float(config["alerts.interval"]), wall))
        sender = asyncio.create_task(_send(notifier, wall))
        yield
        for task in (timer, sender):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await al.engine.flush()
        await notifier.save()

    return alerting
