"""The notification pipeline: what the engine's alert transitions become on the channels, and when.

The engine calls ``submit(alert, transition, annotations, now_ms, severity=…)`` (synchronous, no
I/O) for each transition to firing (new, or a change of level) or resolved; ``run(clock)`` awaits
``tick(now_ms)`` every second and right after a submit. Time is an argument and there is no SQLite
here: every step goes to ``log(fingerprint, kind, detail)`` (kind in `LOG_KINDS`, ``detail["at"]``
the time), restart state to ``export_state``/``import_state`` (``pipelinestate``). The stages, in order:

1. inhibition: while an alert of an ``inhibitors`` rule (``host_down``) fires, the other alerts
   with its ``host`` label are muted. The pipeline tracks those alerts itself from what is submitted.
2. silences: ``silences()`` gives the current `Silence` list. Mutes are checked at submit, at every
   tick and right before each send, so a muted alert is never delivered (firing or resolved); when
   the mute ends and the alert still fires, it is notified then.
3. routing (`routing.assign`): each channel gets an alert from the first route naming it.
4. ack (``acknowledge``, or ``acked_by`` on a submitted alert): no repeats, no escalation.
5. grouping: an alert waits in its group (route + ``group_by`` labels) for ``group_wait`` of its
   severity and until ``group_interval`` after the group's last send (a wait of 0, critical and
   error by default, skips both: the next tick sends it); the group's waiting alerts then go as one
   message per channel. Firing alerts are sent again every ``repeat_interval``. A critical alert not
   acked ``escalate_after`` after it fired goes to the route's ``escalate_to`` channels that do not
   have it yet, once per firing; they then get its repeats and resolution too.
6. digest: a ``digest`` route collects its messages per channel for ``digest_interval``.
7. delivery: sends run concurrently; a failure the channel calls retryable is sent again after
   ``retry_initial`` doubling to ``retry_max`` (or the channel's ``retry_after`` when longer), up to
   ``max_attempts`` sends; other failures are dropped at once. Gone Web Push endpoints go to
   ``on_gone(channel, endpoints)``; the failed endpoints of a partial Web Push send are retried alone.

Guarantees: no channel gets a second firing message about an alert within ``repeat_interval`` of the
last that arrived, unless its level (severity) changed or the alert resolved in between (a new
firing is news, even when a silence kept the resolution from being sent); a resolution goes only to
channels that got the firing, with the severity (and so the waits) of the firing they got. Delivery
is at least once: a crash between a send and the next ``export_state`` repeats that send after the
restart.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol, cast

from .alertstate import AlertState, Transition
from .notify.base import Channel, Delivery, Notification, json_number, one_line
from .pipelinestate import Item, Message, Target, Tracked, note_of, read_state, state_json
from .routing import NotifyDefaults, Route, Silence, assign, match_labels
from .rules import SEVERITIES

log = logging.getLogger("edgewatch.aggregator.pipeline")

LOG_KINDS: tuple[str, ...] = ("notified", "delivery_failed", "retry_scheduled", "dropped", "silenced")
LOG_KINDS += ("inhibited", "escalated", "grouped", "digest")
LogFn = Callable[[str, str, dict[str, Any]], Awaitable[None] | None]
GoneFn = Callable[[str, tuple[str, ...]], Awaitable[None] | None]
COALESCE_S = 0.02
FIRING = ("firing", "repeat", "escalation")  # kinds of item that tell a channel the alert fires
ALL = (*FIRING, "resolved")


class _Targeted(Protocol):
    async def send(self, notifications: Sequence[Notification], *, only: Collection[str]) -> Delivery: ...


def _told_severity(a: Tracked, t: Target) -> str:
    """The severity an item for ``t`` goes out with: a resolution has that of the firing the channel
    was told (a critical alert that eased to a warning before it resolved is resolved as critical,
    and as soon), anything else the alert's own."""
    return (t.notified_level or a.severity) if t.pending == "resolved" else a.severity


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if inspect.isawaitable(result):
        await result


class Pipeline:
    def __init__(
        self,
        channels: Mapping[str, Channel],
        routes: Sequence[Route],
        defaults: NotifyDefaults | None = None,
        *,
        log: LogFn | None = None,
        silences: Callable[[], Iterable[Silence]] = tuple,
        on_gone: GoneFn | None = None,
        timer: Callable[[str, float, bool], None] | None = None,
    ) -> None:
        for i, r in enumerate(routes, 1):
            if bad := [c for c in (*r.channels, *r.escalate_to) if c not in channels]:
                raise ValueError(f"route {i}: channels: no channel is named {bad[0]!r}")
        self.channels, self.routes = dict(channels), tuple(routes)
        self.defaults = defaults or NotifyDefaults()
        self._log, self._silences, self._on_gone, self._timer = log, silences, on_gone, timer
        self._alerts: dict[str, Tracked] = {}
        self._down: dict[str, set[str]] = {}  # host -> its firing inhibitor alerts
        self._outbox: list[Message] = []
        self._inflight: list[Message] = []
        self._last_flush: dict[str, int] = {}  # group -> time of its last send
        self._next_id = 1
        self._events: collections.deque[tuple[str, str, dict[str, Any]]] = collections.deque()
        self._ticking = False
        self.wake = asyncio.Event()  # set by submit: `run` ticks at once

    # --- input ------------------------------------------------------------------------------

    def submit(
        self,
        alert: AlertState,
        transition: Transition,
        annotations: Mapping[str, str],
        now_ms: int,
        *,
        severity: str | None = None,
        url: str = "",
    ) -> None:
        """Take a transition to firing or resolved (others are ignored). ``severity``:
        ``rule.severity_of(level)`` (default: the level); ``url`` opens the alert in the web UI.
        Synchronous and quick (no I/O): its log entries go out with the next tick, which ``wake``
        asks for at once."""
        if transition.to_state not in ("firing", "resolved"):
            return
        sev = severity or transition.level or alert.level or "warning"
        if sev not in SEVERITIES:
            raise ValueError(f"severity {sev!r} is not one of {', '.join(SEVERITIES)}")
        fp, now, a = alert.fingerprint, now_ms, self._alerts.get(alert.fingerprint)
        value = transition.value if transition.value is not None else alert.value
        note = {
            "summary": annotations.get("summary") or alert.rule,
            "description": annotations.get("description", ""),
            "value": json_number(value),
            "url": url,
            "at": transition.at,
        }
        if transition.to_state == "resolved":
            if a is None:
                self._emit(fp, "dropped", now, state="resolved", reason="its firing was not notified")
            else:
                self._resolve(fp, a, note, now)
            self.wake.set()
            return
        fired_at = alert.fired_at if alert.fired_at is not None else transition.at
        if a is None:
            a = self._alerts[fp] = Tracked(alert.rule, dict(alert.labels), sev, "firing", fired_at, note)
        elif a.state != "firing" or transition.from_state != "firing":  # a new firing
            a.fired_at, a.escalated = fired_at, False
        a.labels, a.severity, a.state, a.note = dict(alert.labels), sev, "firing", note
        a.acked = alert.acked_by is not None
        self._track_down(fp, a)
        mute = self._mute(a, now, list(self._silences()))
        a.muted = mute[0] if mute else None
        if mute:
            for t in a.targets.values():
                t.pending = None if t.pending in FIRING else t.pending
            self._emit(fp, mute[0], now, state="firing", **mute[1])
        elif not assign(self.routes, sev, match_labels(a.rule, sev, a.labels)):
            self._emit(fp, "dropped", now, state="firing", reason="no route matches")
        elif made := self._schedule_firing(fp, a, now):
            self._emit(fp, "grouped", now, state="firing", channels=made, group=a.targets[made[0]].group)
        self.wake.set()  # for the log entries, and for what is due now

    def acknowledge(self, fingerprint: str, acked: bool = True) -> None:
        """An ack (or its removal) made through the API: no more repeats or escalation."""
        if (a := self._alerts.get(fingerprint)) is None:
            return
        a.acked = acked
        for ch, t in a.targets.items():
            if acked:
                t.pending = None if t.pending in ("repeat", "escalation") else t.pending
                self._cancel(fingerprint, ch, ("repeat", "escalation"))

    def _resolve(self, fp: str, a: Tracked, note: dict[str, Any], now: int) -> None:
        a.state, a.note, a.escalated, a.acked = "resolved", note, False, False
        self._track_down(fp, a)
        told, in_flight = [], False
        for ch, t in list(a.targets.items()):
            self._cancel(fp, ch, FIRING)
            t.pending, t.pending_since = ("resolved" if t.told_firing else None), now
            if t.told_firing:
                told.append(ch)
            elif t.queued:
                in_flight = True  # a firing being sent: if it arrives, its resolution follows
            else:
                del a.targets[ch]
        if told:
            self._emit(fp, "grouped", now, state="resolved", channels=told)
        elif not in_flight:
            why = f"its firing was {a.muted}" if a.muted else "its firing was not notified"
            self._emit(fp, a.muted or "dropped", now, state="resolved", reason=why)
        self._forget_if_done(fp)

    # --- the stages -------------------------------------------------------------------------

    def _track_down(self, fp: str, a: Tracked) -> None:
        host = a.labels.get("host", "")
        if a.rule in self.defaults.inhibitors and host:
            hosts = self._down.setdefault(host, set())
            (hosts.add if a.state == "firing" else hosts.discard)(fp)
            if not hosts:
                del self._down[host]

    def _mute(self, a: Tracked, now: int, silences: Sequence[Silence]) -> tuple[str, dict[str, Any]] | None:
        if a.rule not in self.defaults.inhibitors and (by := self._down.get(a.labels.get("host", ""))):
            return "inhibited", {"by": min(by)}
        labels = match_labels(a.rule, a.severity, a.labels)
        silence = next((s for s in silences if s.matches(labels, now)), None)
        return ("silenced", {"silence": silence.id}) if silence else None

    def _schedule_firing(self, fp: str, a: Tracked, now: int) -> list[str]:
        """Let the firing wait in its groups, for the channels not told it fires at this level."""
        made = []
        for ch, t in a.targets.items():  # a resolution waiting to be sent is no longer true
            self._cancel(fp, ch, ("resolved",))
            t.pending = None if t.pending == "resolved" else t.pending
        channels = assign(self.routes, a.severity, match_labels(a.rule, a.severity, a.labels))
        if a.escalated:  # the channels this firing was escalated to keep hearing of it
            channels |= {ch: t.route for ch, t in a.targets.items() if t.escalation and ch not in channels}
        for ch, ri in channels.items():
            t = a.targets.setdefault(ch, Target(ri, ""))
            if not t.escalation:
                t.route, t.group = ri, self.routes[ri].group_of(ri, a.labels)
            if (t.told_firing and a.severity == t.notified_level) or t.pending in FIRING:
                continue
            t.pending, t.pending_since = "firing", now
            made.append(ch)
        return made

    def _ready_at(self, a: Tracked, t: Target) -> int:
        if t.pending in ("repeat", "escalation"):
            return t.pending_since
        r = self.routes[t.route]
        wait, last = round(r.wait_for(_told_severity(a, t)) * 1000), self._last_flush.get(t.group)
        if wait <= 0 or last is None:
            return t.pending_since + wait
        return max(t.pending_since + wait, last + round(r.group_interval * 1000))

    def _check_mutes(self, now: int, silences: Sequence[Silence]) -> None:
        for fp, a in list(self._alerts.items()):
            mute = self._mute(a, now, silences)
            if (mute[0] if mute else None) == a.muted:
                continue
            a.muted = mute[0] if mute else None
            if mute:
                for t in a.targets.values():
                    t.pending = None if t.pending in FIRING else t.pending
                self._emit(fp, mute[0], now, state=a.state, **mute[1])
            elif a.state == "firing" and (made := self._schedule_firing(fp, a, now)):
                self._emit(fp, "grouped", now, state="firing", channels=made, reason="no longer muted")

    def _escalate(self, now: int) -> None:
        for fp, a in self._alerts.items():
            if a.state != "firing" or a.acked or a.escalated or a.muted or a.severity != "critical":
                continue
            used = sorted(
                set(assign(self.routes, a.severity, match_labels(a.rule, a.severity, a.labels)).values())
            )
            ri = next((i for i in used if self.routes[i].escalate_after is not None), None)
            after = self.routes[ri].escalate_after if ri is not None else None
            if ri is None or after is None or now < a.fired_at + round(after * 1000):
                continue
            a.escalated, group = True, self.routes[ri].group_of(ri, a.labels) + "/escalation"
            new = [ch for ch in self.routes[ri].escalate_to if ch not in a.targets]
            for ch in new:
                a.targets[ch] = Target(ri, group, escalation=True, pending="escalation", pending_since=now)
            self._emit(fp, "escalated", now, channels=new, after_s=after)

    def _repeat(self, now: int) -> None:
        for a in self._alerts.values():
            if a.state != "firing" or a.acked or a.muted:
                continue
            for t in a.targets.values():
                every = round(self.routes[t.route].repeat_interval * 1000)
                due = t.notified_at is not None and now >= t.notified_at + every
                if due and t.pending is None and not t.queued:
                    t.pending, t.pending_since = "repeat", now

    def _flush(self, now: int) -> None:
        groups: dict[str, list[tuple[str, Tracked, str, Target]]] = {}
        for fp, a in self._alerts.items():
            for ch, t in a.targets.items():
                if t.pending == "firing" and t.told_firing and a.severity == t.notified_level:
                    t.pending = None  # a firing of this level arrived while this one waited
                if t.pending is not None:
                    groups.setdefault(t.group, []).append((fp, a, ch, t))
        digests = {(m.channel, m.route): m for m in self._outbox if m.digest}
        for group, members in groups.items():
            if min(self._ready_at(a, t) for _, a, _, t in members) > now:
                continue
            self._last_flush[group] = now
            messages: dict[str, Message] = {}
            for fp, a, ch, t in members:
                kind = t.pending or "firing"
                state = "resolved" if kind == "resolved" else "firing"
                fields: dict[str, Any] = {"key": fp, "rule": a.rule, "host": a.labels.get("host", "")}
                severity = _told_severity(a, t)
                fields.update(level=severity, fired_at=a.fired_at)
                note = note_of({**a.note, **fields, "state": state, "labels": a.labels, "group": group})
                self._cancel(fp, ch, ALL)  # the newest word on the alert replaces a queued one
                t.pending, t.queued = None, t.queued + 1
                item, r = Item(fp, kind, severity, note), self.routes[t.route]
                if r.digest and kind != "escalation":
                    if (m := digests.get((ch, t.route))) is None:
                        m = digests[ch, t.route] = self._message(
                            ch, t.route, now + round(r.digest_interval * 1000)
                        )
                        m.digest = True
                    m.items.append(item)
                    self._emit(fp, "digest", now, channel=ch, state=state, due=m.due)
                    continue
                if ch not in messages:
                    messages[ch] = self._message(ch, t.route, now)
                messages[ch].items.append(item)

    def _message(self, channel: str, route: int, due: int) -> Message:
        self._next_id += 1
        self._outbox.append(m := Message(self._next_id - 1, channel, route, due, []))
        return m

    def _cancel(self, fp: str, channel: str, kinds: Collection[str]) -> None:
        """Take this alert's queued items of ``kinds`` for ``channel`` out of the outbox (a message
        left empty stays until it is due, so an open digest keeps taking items)."""
        if (t := self._alerts[fp].targets.get(channel)) is None or not t.queued:
            return
        for m in self._outbox:
            if m.channel == channel and any(it.fp == fp and it.kind in kinds for it in m.items):
                keep = [it for it in m.items if it.fp != fp or it.kind not in kinds]
                t.queued -= len(m.items) - len(keep)
                m.items = keep

    # --- delivery ---------------------------------------------------------------------------

    async def _deliver(self, now: int, silences: Sequence[Silence]) -> None:
        due = [m for m in self._outbox if m.due <= now]
        self._outbox = [m for m in self._outbox if m.due > now]
        for m in due:
            m.digest, keep = False, []
            for it in m.items:
                a = self._alerts.get(it.fp)
                if (mute := self._mute(a, now, silences) if a is not None else None) is None:
                    keep.append(it)
                    continue
                self._emit(it.fp, mute[0], now, channel=m.channel, state=str(it.note.state), **mute[1])
                self._settle(it, m.channel, arrived=False, final=True, now=now, sent=False)
            m.items, m.attempt = keep, m.attempt + 1
        self._inflight = [m for m in due if m.items]
        try:
            results = await asyncio.gather(*(self._send(m) for m in self._inflight))
        except asyncio.CancelledError:  # shutting down: the sends count as not made
            for m in self._inflight:
                m.attempt -= 1
            self._outbox += self._inflight
            raise
        finally:
            sent, self._inflight = self._inflight, []
        for m, d in zip(sent, results):
            self._apply(m, d, now)
        for m, d in zip(sent, results):
            if d.gone_targets:
                log.info("channel=%s gone_targets=%d", m.channel, len(d.gone_targets))
                try:
                    await _maybe_await(self._on_gone(m.channel, d.gone_targets) if self._on_gone else None)
                except Exception:
                    log.exception("channel=%s the on_gone callback failed", m.channel)

    async def _send(self, m: Message) -> Delivery:
        notes, channel = [it.note for it in m.items], self.channels[m.channel]
        started = time.perf_counter()
        try:
            if m.only is not None and channel.kind == "webpush":
                d = await cast(_Targeted, channel).send(notes, only=m.only)
            else:
                d = await channel.send(notes)
        except Exception as e:  # a bug in one channel must not stop the others
            log.exception("channel=%s send raised", m.channel)
            d = Delivery(ok=False, detail=one_line(f"the channel failed: {e!r}"))
        if self._timer is not None:
            self._timer(m.channel, time.perf_counter() - started, d.ok)
        return d

    def _apply(self, m: Message, d: Delivery, now: int) -> None:
        arrived = d.ok or any(p.ok for p in d.parts)
        retry = not d.ok and d.retryable and m.attempt < self.defaults.max_attempts
        due = now + round(max(self.defaults.retry_delay(m.attempt), d.retry_after or 0.0) * 1000)
        base = {"channel": m.channel, "message": m.id, "attempt": m.attempt, "detail": d.detail}
        for it in m.items:
            state = str(it.note.state)
            if arrived:
                self._emit(it.fp, "notified", now, **base, state=state, item=it.kind, count=len(m.items))
            if not d.ok:
                self._emit(it.fp, "delivery_failed", now, **base, state=state, retryable=d.retryable)
            if retry:
                self._emit(it.fp, "retry_scheduled", now, **base, state=state, due=due)
            elif not arrived:
                why = f"gave up after {m.attempt} attempts" if d.retryable else "not worth a retry"
                self._emit(it.fp, "dropped", now, **base, state=state, reason=why)
            self._settle(it, m.channel, arrived=arrived, final=not retry, now=now)
        if retry:
            m.due, m.only = due, list(d.retry_targets) or None
            self._outbox.append(m)

    def _settle(
        self, it: Item, channel: str, *, arrived: bool, final: bool, now: int, sent: bool = True
    ) -> None:
        a = self._alerts.get(it.fp)
        if a is None or (t := a.targets.get(channel)) is None:
            return
        t.queued -= 1 if final else 0
        if it.kind == "resolved":
            t.told_firing = t.told_firing and not arrived
            if a.state == "firing" and arrived and t.pending is None:  # it fired again meanwhile
                t.pending, t.pending_since = "firing", now
        elif arrived or (final and sent):
            t.told_firing = t.told_firing or arrived
            t.notified_at, t.notified_level = now, it.severity  # given up: again at the repeat
            if a.state == "resolved" and arrived and t.pending is None:  # resolved while in flight
                t.pending, t.pending_since = "resolved", now
        if a.state == "resolved" and not t.queued and t.pending is None:
            del a.targets[channel]
        self._forget_if_done(it.fp)

    def _forget_if_done(self, fp: str) -> None:
        if (a := self._alerts.get(fp)) is not None and a.state == "resolved" and not a.targets:
            del self._alerts[fp]

    def _emit(self, fp: str, kind: str, now: int, **detail: Any) -> None:
        """Record a step for ``log``; the stages stay synchronous, so nothing that runs during an
        await (a send) ever sees half a change, and `_drain` hands the steps over afterwards."""
        log.debug("alert=%s step=%s %s", fp, kind, " ".join(f"{k}={v}" for k, v in detail.items()))
        self._events.append((fp, kind, {"at": now, **detail}))

    async def _drain(self) -> None:
        while self._events:
            fp, kind, detail = self._events.popleft()
            try:
                await _maybe_await(self._log(fp, kind, detail) if self._log is not None else None)
            except Exception:
                log.exception("alert=%s step=%s the log callback failed", fp, kind)

    # --- driving ----------------------------------------------------------------------------

    async def tick(self, now_ms: int) -> None:
        """Do what is due at ``now_ms``: mutes, escalations, repeats, group and digest sends, retries."""
        if self._ticking:
            log.warning("tick=skipped reason=the previous tick is still sending")
            return
        self._ticking = True
        try:
            silences = list(self._silences())
            self._check_mutes(now_ms, silences)
            self._escalate(now_ms)
            self._repeat(now_ms)
            self._flush(now_ms)
            await self._drain()
            await self._deliver(now_ms, silences)
            longest = max((round(r.group_interval * 1000) for r in self.routes), default=0)
            self._last_flush = {g: t for g, t in self._last_flush.items() if now_ms - t < longest}
        finally:
            self._ticking = False
            await self._drain()

    async def run(
        self,
        clock: Callable[[], int],
        *,
        interval_s: float = 1.0,
        after: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Tick every ``interval_s``, and at once after ``submit`` (a burst of submits within
        ``COALESCE_S`` shares one tick); ``clock()`` is the time in ms; ``after()`` is awaited after
        each tick (to save the state). Runs until cancelled."""
        while True:
            self.wake.clear()
            await self.tick(clock())
            if after is not None:
                await after()
            await asyncio.sleep(COALESCE_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), interval_s - COALESCE_S)

    # --- restart state ----------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """Everything a restart needs, as JSON-able data (save it after each tick and submit)."""
        return state_json(self._alerts, [*self._inflight, *self._outbox], self._last_flush, self._next_id)

    def import_state(self, data: Mapping[str, Any]) -> None:
        """Continue from what ``export_state`` gave; targets and messages of channels or routes that
        no longer exist are dropped. ``ValueError`` when ``data`` is not such state."""
        alerts, outbox, last_flush, next_id = read_state(data)

        def usable(channel: str, route: int) -> bool:
            return channel in self.channels and 0 <= route < len(self.routes)

        outbox = [m for m in outbox if usable(m.channel, m.route)]
        for fp, a in alerts.items():  # queued counts from the messages that are left
            a.targets = {ch: t for ch, t in a.targets.items() if usable(ch, t.route)}
            for ch, t in a.targets.items():
                t.queued = sum(it.fp == fp for m in outbox if m.channel == ch for it in m.items)
        self._alerts, self._outbox, self._last_flush = alerts, outbox, last_flush
        self._next_id = next_id
        self._down = {}
        for fp, a in alerts.items():
            self._track_down(fp, a)
