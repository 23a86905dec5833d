"""The rule engine: evaluates rules as frames arrive and on a timer, keeps and persists alert states.

``observe(host, batch)`` runs on the event loop after a frame is committed: it keeps a short window
of samples for every series some rule reads, and evaluates only the rules that read the frame's
series. ``tick(now_ms)`` evaluates absence rules (host down) and rules with a z-score baseline.
Every transition is written to the ``alerts`` row and the ``alert_log`` in one writer job, and the
firing and resolved ones go to the notification pipeline. A restart loads the alerts that were
pending or firing, so it neither forgets them nor notifies them again.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgewatch.protocol import Batch, Series

from .alertstate import AlertState, Transition, evaluate, fingerprint, render_annotations, retire
from .alertwindow import Window
from .reducers import baseline_hours, intervals_silent, ratio
from .rules import Rule, RuleSet

log = logging.getLogger("edgewatch.aggregator.alerts")
SeriesKey = tuple[str, str, tuple[tuple[str, str], ...]]  # host, metric, labels
Notify = Callable[[AlertState, Transition, dict[str, str], int], None]
# a series some rule reads: its column, window key, how long its samples are kept, and each rule with
# the series it evaluates on arrival (None: it divides by this series, so every series of its metric)
PlanItem = tuple[int, SeriesKey, int, tuple[tuple[Rule, SeriesKey | None], ...]]
Write = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]
MAX_IDENTS = 1_000_000  # cached alert identities before the cache starts over
MAX_WINDOW_S = 24 * 3600.0  # longest window kept in memory; longer ones are not evaluated on arrival
LONG_WINDOW_S = 3600.0  # rules over windows this long are evaluated on arrival at most ...
LONG_EVERY_MS = 60_000  # ... this often per series (a fit over hours moves slowly), and ...
LONG_EVERY_PART = 72  # ... at most once per this part of their window (6 h: every 5 minutes), so the
# samples they read a minute stay the same however long the window: a six-hour fit over 10 s samples
# every minute cost a quarter of a millisecond a push, more than the rest of the rules together
PRUNE_EVERY_MS = 60_000


def _row(state: AlertState) -> tuple[Any, ...]:
    return (
        state.fingerprint,
        state.rule,
        state.labels.get("host", ""),
        state.state,
        state.level,
        json.dumps(state.to_dict()),
        state.evaluated_at or 0,
    )


def log_event(
    conn: sqlite3.Connection,
    state: AlertState,
    at: int,
    kind: str,
    *,
    level: str | None,
    detail: Mapping[str, Any],
) -> None:
    """One line of an alert's history: a transition, notification, delivery, ack, ..."""
    conn.execute(
        "INSERT INTO alert_log (fingerprint, rule, host, at, kind, level, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (state.fingerprint, state.rule, state.labels.get("host", ""), at, kind, level, json.dumps(detail)),
    )


def persist(conn: sqlite3.Connection, changes: Iterable[tuple[AlertState, list[Transition]]]) -> None:
    """Write alert states and their transitions (a writer job)."""
    for state, transitions in changes:
        conn.execute(
            "INSERT OR REPLACE INTO alerts (fingerprint, rule, host, status, level, state, updated_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            _row(state),
        )
        for t in transitions:
            log_event(conn, state, t.at, "transition", level=t.level, detail=t.to_dict())


def load_states(conn: sqlite3.Connection) -> list[AlertState]:
    out = []
    for (text,) in conn.execute("SELECT state FROM alerts WHERE status IN ('pending', 'firing')"):
        try:
            out.append(AlertState.from_dict(json.loads(text)))
        except (ValueError, KeyError) as exc:
            log.warning("skipping a stored alert that cannot be read: %s", exc)
    return out


@dataclass
class Engine:
    rules: RuleSet
    write: Write
    notify: Notify
    states: dict[str, AlertState] = field(default_factory=dict)
    windows: dict[SeriesKey, Window] = field(default_factory=dict)
    evaluations: int = 0
    seconds: float = 0.0
    _pending: list[tuple[AlertState, list[Transition]]] = field(default_factory=list)
    # (rule, series) -> the alert's labels and fingerprint; rules change only by reload
    _idents: dict[tuple[str, SeriesKey], tuple[dict[str, str], str]] = field(default_factory=dict)
    _keys: dict[tuple[str, str], set[SeriesKey]] = field(default_factory=dict)  # (host, metric) -> windows
    _keeps: dict[str, int] = field(default_factory=dict)  # metric -> ms its samples are kept
    _long: dict[tuple[str, SeriesKey], int] = field(default_factory=dict)  # last arrival evaluation
    _pruned: int = 0  # when windows were last pruned
    # host -> (the rule set and series list it was made for, the plan): see ``_plan``
    _plans: dict[str, tuple[RuleSet, tuple[Series, ...], list[PlanItem]]] = field(default_factory=dict)

    def load(self, states: Iterable[AlertState]) -> None:
        for s in states:
            self.states[s.fingerprint] = s

    # arrival

    def observe(self, host: str, batch: Batch, now_ms: int) -> list[Transition]:
        """Keep the samples rules read and evaluate the rules they touch; returns the transitions."""
        started = time.perf_counter()
        touched: dict[tuple[str, SeriesKey], Rule] = {}
        timestamps, values = batch.timestamps, batch.values
        for j, key, keep_ms, uses in self._plan(host, batch.series):
            window = self.windows.get(key)
            if window is None:
                window = self.windows[key] = Window()
                self._keys.setdefault((host, key[1]), set()).add(key)
            window.extend(timestamps, values[j])
            window.drop_before(now_ms - keep_ms)
            for rule, target in uses:
                if target is not None:  # the rule reads this series (or its divisor with these labels)
                    if self._due(rule, key, now_ms):
                        touched[(rule.name, target)] = rule
                else:  # the divisor arrived: re-evaluate every series of the metric on this host
                    for other in self._keys.get((host, rule.metric), ()):
                        if self._due(rule, other, now_ms):
                            touched[(rule.name, other)] = rule
        out: list[Transition] = []
        for (_, key), rule in touched.items():
            out += self._evaluate(rule, key, now_ms)
        self.seconds += time.perf_counter() - started
        return out

    def _plan(self, host: str, series: Sequence[Series]) -> list[PlanItem]:
        """The series of a frame that rules read, with what each rule does on its arrival.

        An agent sends the same series list frame after frame, and most of its series no rule
        reads: the plan is made once per host, rule set and list, not for every frame. A series of a
        metric some rule reads, but whose labels or host no rule selects (a single core, a unit
        that is not watched), gets no window: at 2,000 hosts those were two thirds of them."""
        key_list = series if type(series) is tuple else tuple(series)
        held = self._plans.get(host)
        if held is not None and held[0] is self.rules and held[1] == key_list:  # identity first
            return held[2]
        plan: list[PlanItem] = []
        for j, s in enumerate(key_list):
            rules = self.rules.for_metric(s.name)
            if not rules:
                continue
            labels = dict(s.labels)
            uses: list[tuple[Rule, SeriesKey | None]] = []
            kept = False  # whether a rule reads the series at all: only then is a window kept
            for rule in rules:
                if rule.selects_host(host) and all(m.matches(labels) for m in rule.labels):
                    kept = True
                    if rule.reducer != "zscore":  # needs a baseline from the database: the timer evaluates it
                        uses.append((rule, (host, rule.metric, s.labels)))
                elif rule.divide_by == s.name and rule.selects_host(host):
                    kept = True
                    uses.append((rule, None))
            if kept:
                plan.append((j, (host, s.name, s.labels), self._keep_ms(s.name, rules), tuple(uses)))
        if len(self._plans) >= MAX_IDENTS:
            self._plans.clear()
        self._plans[host] = (self.rules, key_list, plan)
        return plan

    def _keep_ms(self, metric: str, rules: Sequence[Rule]) -> int:
        """How long the samples of ``metric`` are kept: its longest rule window plus a minute."""
        keep = self._keeps.get(metric)
        if keep is None:
            keep = self._keeps[metric] = (
                int(max(min(r.window_s, MAX_WINDOW_S) for r in rules) * 1000) + 60_000
            )
        return keep

    def _due(self, rule: Rule, key: SeriesKey, now_ms: int) -> bool:
        """Rules over long windows (an hour or more) are evaluated on arrival at most once a minute,
        and at most once per ``LONG_EVERY_PART`` of their window."""
        if rule.window_s < LONG_WINDOW_S:
            return True
        last = self._long.get((rule.name, key))
        every = max(LONG_EVERY_MS, rule.window_s * 1000 / LONG_EVERY_PART)
        if last is not None and 0 <= now_ms - last < every:
            return False
        self._long[(rule.name, key)] = now_ms
        return True

    def _value(
        self, rule: Rule, key: SeriesKey, now_ms: int, baseline: list[float | None] | None = None
    ) -> float | None:
        window = self.windows.get(key)
        if window is None:
            return None
        value = window.value(
            rule.reducer, now_ms, rule.window_s, predict_in_s=rule.predict_in_s, baseline=baseline or ()
        )
        if rule.divide_by:
            host, _, labels = key
            divisor = self.windows.get((host, rule.divide_by, labels)) or self.windows.get(
                (host, rule.divide_by, ())
            )
            below = divisor.value(rule.reducer, now_ms, rule.window_s) if divisor is not None else None
            value = ratio(value, below)
        return value

    def prune(self, now_ms: int) -> int:
        """Forget the windows of series that sent nothing for longer than they are kept."""
        gone = []
        for key, window in self.windows.items():
            newest = window.newest
            keep = self._keeps.get(key[1], int(MAX_WINDOW_S * 1000))
            if newest is None or newest < now_ms - keep:
                gone.append(key)
        for key in gone:
            del self.windows[key]
            keys = self._keys.get((key[0], key[1]))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys[(key[0], key[1])]
        self._long = {k: t for k, t in self._long.items() if k[1] in self.windows}
        return len(gone)

    def _evaluate(
        self, rule: Rule, key: SeriesKey, now_ms: int, value: float | None = None, *, given: bool = False
    ) -> list[Transition]:
        ident = self._idents.get((rule.name, key))
        if ident is None:
            if len(self._idents) >= MAX_IDENTS:
                self._idents.clear()
            host, _, labels = key
            alert_labels = rule.alert_labels(host, dict(labels))
            ident = self._idents[(rule.name, key)] = (alert_labels, fingerprint(rule.name, alert_labels))
        alert_labels, fp = ident
        if not given:
            value = self._value(rule, key, now_ms)
        state = self.states.get(fp)
        if state is None:
            if value is None:
                return []
            if math.isnan(value) or rule.level_for(value) is None:
                self.evaluations += 1  # inactive and staying so: nothing to make, keep or tell
                return []
        new, transitions = evaluate(state, rule, value, now_ms, labels=alert_labels)
        self.evaluations += 1
        if new.active or transitions:
            self.states[fp] = new
        if not new.active and not transitions:
            self.states.pop(fp, None)
        if transitions:
            self._changed(rule, new, transitions, now_ms)
        return transitions

    def _changed(
        self, rule: Rule | None, state: AlertState, transitions: list[Transition], now_ms: int
    ) -> None:
        self._pending.append((state, transitions))
        if not state.active:
            self.states.pop(state.fingerprint, None)
        for t in transitions:
            if t.to_state in ("firing", "resolved") and rule is not None:
                self.notify(state, t, render_annotations(rule, state), now_ms)

    async def flush(self) -> None:
        """Persist the transitions made since the last flush (one writer job)."""
        if not self._pending:
            return
        changes, self._pending = self._pending, []
        await self.write(lambda conn: persist(conn, changes))

    # timer

    async def tick(
        self,
        now_ms: int,
        hosts: Mapping[str, tuple[int | None, int | None]],
        baseline: Callable[[str, SeriesKey, list[tuple[int, int]]], Awaitable[list[float | None]]]
        | None = None,
    ) -> list[Transition]:
        """Absence rules for ``hosts`` (name -> (last seen ms, interval ms)) and z-score rules."""
        started = time.perf_counter()
        out: list[Transition] = []
        for rule in self.rules.absence:
            for host, (last_seen, interval) in hosts.items():
                if not rule.selects_host(host):
                    continue
                value = intervals_silent(last_seen, now_ms, (interval or 10_000) / 1000)
                out += self._evaluate(rule, (host, "", ()), now_ms, value, given=True)
        if baseline is not None:
            for rule in self.rules:
                if not (rule.enabled and rule.reducer == "zscore"):
                    continue
                for key in [k for k in self.windows if k[1] == rule.metric]:
                    values = await baseline(rule.metric, key, baseline_hours(now_ms, rule.baseline_days))
                    value = self._value(rule, key, now_ms, values)
                    out += self._evaluate(rule, key, now_ms, value, given=True)
        if now_ms - self._pruned >= PRUNE_EVERY_MS:
            self._pruned = now_ms
            self.prune(now_ms)
        self.seconds += time.perf_counter() - started  # baseline reads included
        await self.flush()
        return out

    def reload(self, rules: RuleSet, now_ms: int) -> int:
        """Use ``rules`` from now on; alerts of removed or disabled rules are retired. Returns how many."""
        retired = 0
        for fp, state in list(self.states.items()):
            rule = rules.get(state.rule)
            if rule is None or not rule.enabled:
                new, transitions = retire(state, now_ms)
                old_rule = self.rules.get(state.rule)
                self._changed(old_rule, new, transitions, now_ms)
                self.states.pop(fp, None)
                retired += 1
        self.rules = rules
        self._plans.clear()
        self._idents.clear()
        self._keeps.clear()
        self._long.clear()
        return retired

    def active(self) -> list[AlertState]:
        return [s for s in self.states.values() if s.active]
