"""Notifications inside the aggregator: the pipeline built from the config, and what it keeps on disk.

``start_notifier`` builds the channels (``[[channel]]``) and routes (``[[route]]``, ``[notify]``)
of the config, adds the implicit Web Push channel ``push`` when no Web Push channel is configured
(``alerts.push``), and makes or reads the VAPID key in the data dir at the first start. The
`Notifier` then feeds the pipeline from the rule engine and keeps, in SQLite:

- every pipeline step (grouped, notified, delivery_failed, retry_scheduled, silenced, ...) as a line
  of the alert's history (``alert_log``), written in one job after each tick;
- the pipeline's restart state (``kv`` key ``notify.state``), saved after each tick that changed it,
  so a restart neither forgets what was sent nor sends it again (a send that crashed before the
  save is repeated: delivery is at least once);
- silences (``silences``), cached in memory and changed through the API;
- Web Push subscriptions (``push_subscriptions``); an endpoint the push service calls gone (404 or
  410) is deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgewatch.protocol.settings import ConfigError

from .alertstate import AlertState, Transition
from .metrics import Registry
from .notify.base import Channel, Delivery, send_test
from .notify.webpush import Subscription, Vapid, WebPushChannel, load_or_create_vapid
from .pipeline import Pipeline
from .routing import Silence, build_channels, parse_notify, parse_routes
from .store import Store

log = logging.getLogger("edgewatch.aggregator.notify")
PUSH_CHANNEL = "push"
STATE_KEY = "notify.state"
MAX_SILENCES = 10_000
QUIET_SAVE_MS = 30_000


@dataclass
class Notifier:
    store: Store
    vapid: Vapid
    public_url: str
    wall: Callable[[], float]
    allow_loopback_http: bool = False  # http://127.0.0.1 push endpoints (tests and benchmarks)
    pipeline: Pipeline = field(init=False)
    silences: dict[str, Silence] = field(default_factory=dict)
    _who: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # fp -> rule, host, severity
    _lines: list[tuple[Any, ...]] = field(default_factory=list)
    _saved: str = ""
    _saved_at: int = 0
    steps: Callable[[str, str], None] = lambda kind, channel: None

    @property
    def channels(self) -> Mapping[str, Channel]:
        return self.pipeline.channels

    # --- from the engine ----------------------------------------------------------------------

    def submit(
        self,
        state: AlertState,
        transition: Transition,
        annotations: Mapping[str, str],
        now_ms: int,
        severity: str,
    ) -> None:
        """A transition of the engine; the pipeline decides what is sent and when."""
        self._who[state.fingerprint] = (
            state.rule,
            state.labels.get("host", ""),
            severity,
        )
        self.pipeline.submit(
            state,
            transition,
            annotations,
            now_ms,
            severity=severity,
            url=self.alert_url(state.fingerprint),
        )

    def alert_url(self, fingerprint: str) -> str:
        return f"{self.public_url.rstrip('/')}/#/alerts/{fingerprint}" if self.public_url else ""

    def active_silences(self, now_ms: int | None = None) -> list[Silence]:
        return [s for s in self.silences.values() if now_ms is None or s.ends_at > now_ms]

    # --- history and state --------------------------------------------------------------------

    def log_step(self, fp: str, kind: str, detail: dict[str, Any]) -> None:
        """The pipeline's log callback: kept until `save` writes it with the state."""
        rule, host, severity = self._who.get(fp, ("", "", ""))
        self._lines.append(
            (
                fp,
                rule,
                host,
                int(detail.get("at", 0)),
                kind,
                severity or None,
                json.dumps(detail),
            )
        )
        self.steps(kind, str(detail.get("channel", "")))

    async def save(self) -> None:
        """Write the steps logged since the last save, with the pipeline state. Nothing changes in
        the pipeline without a step, except timing details, so without steps the state is saved only
        every ``QUIET_SAVE_MS`` (exporting it costs time on the event loop)."""
        now = int(self.wall() * 1000)
        if not self._lines and now - self._saved_at < QUIET_SAVE_MS:
            return
        self._saved_at = now
        exported = self.pipeline.export_state()
        state = json.dumps(exported, sort_keys=True, separators=(",", ":"))
        lines, self._lines = self._lines, []
        if not lines and state == self._saved:
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO alert_log (fingerprint, rule, host, at, kind, level, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                lines,
            )
            if state != self._saved:
                conn.execute(
                    "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                    (STATE_KEY, state),
                )

        try:
            await self.store.write(write)
        except Exception:
            log.exception("saving the notification state failed; trying again after the next tick")
            self._lines = lines + self._lines
            return
        self._saved = state
        live = set(exported["alerts"])  # not parsed back: at 1,500 alerts that was 5 MB of objects
        self._who = {fp: who for fp, who in self._who.items() if fp in live}

    # --- silences -----------------------------------------------------------------------------

    async def add_silence(
        self,
        matchers: Sequence[str],
        *,
        starts_at: int,
        ends_at: int,
        author: str,
        comment: str,
        now_ms: int,
    ) -> Silence:
        """A new silence (``ValueError`` with one line when the matchers or times are wrong)."""
        if len(self.active_silences(now_ms)) >= MAX_SILENCES:
            raise ValueError(f"there are {MAX_SILENCES} active silences already; expire some first")
        silence = Silence.parse(
            secrets.token_hex(8),
            matchers=matchers,
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=author,
            comment=comment,
        )
        await self.store.write(lambda conn: _store_silence(conn, silence, now_ms))
        self.silences[silence.id] = silence
        self.pipeline.wake.set()
        return silence

    async def expire_silence(self, silence_id: str, now_ms: int) -> Silence | None:
        """End a silence now (it stays listed as expired); None when there is no such active silence."""
        old = self.silences.get(silence_id)
        if old is None or old.ends_at <= now_ms:
            return None
        start = min(old.starts_at, now_ms - 1)  # a pending silence ends before it began
        new = Silence(old.id, old.matchers, start, now_ms, old.created_by, old.comment)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE silences SET start_ms = ?, end_ms = ? WHERE id = ?",
                (new.starts_at, new.ends_at, new.id),
            )

        await self.store.write(write)
        self.silences[silence_id] = new
        self.pipeline.wake.set()
        return new

    # --- Web Push subscriptions -----------------------------------------------------------------

    async def subscriptions(self) -> list[Subscription]:
        rows = await self.store.readers.run(
            lambda conn: conn.execute("SELECT endpoint, p256dh, auth FROM push_subscriptions").fetchall()
        )
        return [Subscription(*row) for row in rows]

    async def gone(self, channel: str, endpoints: Sequence[str]) -> None:
        """The push service says these subscriptions no longer exist: delete them."""

        def delete(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "DELETE FROM push_subscriptions WHERE endpoint = ?",
                [(e,) for e in endpoints],
            )

        await self.store.write(delete)
        log.info("channel=%s deleted_subscriptions=%d", channel, len(endpoints))

    def remember_saved(self, state: str) -> None:
        """``state`` is what the database holds (read at the start)."""
        self._saved = state

    async def test(self, channel: str, now_ms: int) -> Delivery:
        return await send_test(self.channels[channel], now_ms, self.public_url)


def _store_silence(conn: sqlite3.Connection, s: Silence, now_ms: int) -> None:
    matchers = json.dumps(s.to_dict()["matchers"])
    conn.execute(
        "INSERT INTO silences (id, matchers, start_ms, end_ms, author, comment, created_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (s.id, matchers, s.starts_at, s.ends_at, s.created_by, s.comment, now_ms),
    )


def load_silences(conn: sqlite3.Connection, now_ms: int, keep_ms: int = 7 * 86_400_000) -> dict[str, Silence]:
    """The silences that are active, or ended within ``keep_ms`` (listed as expired)."""
    out = {}
    for sid, matchers, start, end, author, comment in conn.execute(
        "SELECT id, matchers, start_ms, end_ms, author, comment FROM silences WHERE end_ms > ?"
        " ORDER BY created_ms",
        (now_ms - keep_ms,),
    ):
        try:
            out[sid] = Silence.parse(
                sid,
                matchers=json.loads(matchers),
                starts_at=start,
                ends_at=end,
                created_by=author,
                comment=comment,
            )
        except ValueError as exc:
            log.warning("skipping stored silence %s: %s", sid, exc)
    return out


def _metrics(registry: Registry, n: Notifier) -> Callable[[str, float, bool], None]:
    """Register the notification metrics; the send timer for the pipeline."""
    steps = registry.counter(
        "edgewatch_notification_steps_total",
        "Steps of the notification pipeline (notified, delivery_failed, silenced, ...), by kind and channel.",
    )
    sends = registry.counter(
        "edgewatch_notification_sends_total",
        "Sends to a channel, by channel and outcome.",
    )
    seconds = registry.counter(
        "edgewatch_notification_send_seconds_total",
        "Time spent sending to a channel, by channel.",
    )

    def step(kind: str, channel: str) -> None:
        steps.inc(kind=kind, channel=channel)

    def timer(channel: str, took: float, ok: bool) -> None:
        sends.inc(channel=channel, outcome="ok" if ok else "failed")
        seconds.inc(took, channel=channel)

    def in_force() -> dict[tuple[tuple[str, str], ...], float]:
        now = int(n.wall() * 1000)
        return {(): float(sum(1 for s in n.silences.values() if s.starts_at <= now < s.ends_at))}

    n.steps = step
    registry.gauge("edgewatch_silences_active", "Silences in force now.", in_force)
    return timer


async def start_notifier(
    store: Store, config: Any, registry: Registry, wall: Callable[[], float]
) -> Notifier:
    """The notifier of ``config`` with the state, silences and subscriptions of the database.

    A wrong ``[[channel]]``, ``[[route]]`` or ``[notify]`` table is a ``ConfigError`` naming it."""
    tables: Mapping[str, Any] = config.tables
    vapid = await asyncio.to_thread(load_or_create_vapid, config.data_dir)
    insecure = bool(config["alerts.push_allow_loopback_http"])
    n = Notifier(store, vapid, config.public_url, wall, insecure)
    try:
        defaults = parse_notify(tables.get("notify"))
        channels = await asyncio.to_thread(
            build_channels,
            tables.get("channel"),
            data_dir=config.data_dir,
            subscriptions_provider=n.subscriptions,
            allow_insecure_localhost=insecure,
        )
        if config["alerts.push"] and not any(c.kind == "webpush" for c in channels.values()):
            if PUSH_CHANNEL in channels:
                raise ValueError(f"channel {PUSH_CHANNEL!r}: name: reserved for the Web Push channel")
            channels[PUSH_CHANNEL] = WebPushChannel(
                PUSH_CHANNEL,
                n.subscriptions,
                vapid,
                str(config["alerts.push_subject"]),
                allow_insecure_localhost=insecure,
            )
        routes = parse_routes(tables.get("route"), defaults, list(channels))
    except ValueError as exc:
        raise ConfigError(f"{exc} (in the aggregator's config; see docs/rules.md)") from None
    timer = _metrics(registry, n)
    n.pipeline = Pipeline(
        channels,
        routes,
        defaults,
        log=n.log_step,
        silences=n.active_silences,
        on_gone=n.gone,
        timer=timer,
    )
    now_ms = int(wall() * 1000)

    def read(conn: sqlite3.Connection) -> tuple[str | None, dict[str, Silence]]:
        row = conn.execute("SELECT value FROM kv WHERE key = ?", (STATE_KEY,)).fetchone()
        return (row[0] if row else None), load_silences(conn, now_ms)

    state, n.silences = await store.readers.run(read)
    if state:
        try:
            n.pipeline.import_state(json.loads(state))
            n.remember_saved(state)
        except ValueError as exc:
            log.warning("the saved notification state cannot be used (%s); starting afresh", exc)
    log.info("notifications channels=%s routes=%d", ",".join(channels) or "-", len(routes))
    return n
