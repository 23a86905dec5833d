"""The alert lifecycle as a pure state machine: inactive → pending → firing → resolved.

An alert is one rule applied to one label set; ``fingerprint(rule, labels)`` is its stable id (the
same in every process, so it can key a database row). ``evaluate(state, rule, value, now_ms)``
returns the next state and the transitions that led there; the transitions are the only changes
of ``state`` and ``level``, and the engine records them as history and hands them to notification.

- inactive or resolved, value past a threshold: pending (``for`` > 0) or straight to firing.
- pending: firing once the condition has held for ``for`` (measured from the first evaluation that
  saw it); back to inactive, without ever having fired, when the value is no longer past the lowest
  threshold. A change of level while pending is a pending → pending transition.
- firing: resolved only when the value is no longer past ``clear`` (hysteresis); otherwise the level
  follows the value (warning ↔ critical, each change a firing → firing transition), staying at the
  lowest level between ``clear`` and the lowest threshold.
- resolved: stays so until the condition returns.
- ``value`` ``None`` (no data, or NaN) changes nothing: it neither resolves a firing alert nor lets a
  pending one fire, and a pending one stays pending. Missing data is the business of absence rules
  (``host_down``), whose alert the notifier uses to inhibit the host's others.

Ack (``acked_by``, ``acked_at``, ``ack_comment``) is set by the notification pipeline; the fields
survive every transition until the alert resolves (or a pending one goes back to inactive).
``to_dict``/``from_dict`` round-trip a state exactly through JSON, so a restarted engine continues
where it stopped, without forgetting or re-notifying a firing alert. Time is an argument (ms).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .rules import Rule

STATES = ("inactive", "pending", "firing", "resolved")
_ENDED: dict[str, Any] = {"active_since": None, "acked_by": None, "acked_at": None, "ack_comment": None}


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """16 hex digits that identify ``rule`` on ``labels``, independent of label order and process."""
    key = json.dumps([rule, sorted(labels.items())], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Transition:
    """One change of state or level: ``level`` is the level after it (the last firing level for a
    resolution, ``None`` for inactive), ``value`` the value that caused it, ``at`` the time in ms."""

    from_state: str
    to_state: str
    level: str | None
    value: float | None
    at: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.from_state,
            "to": self.to_state,
            "level": self.level,
            "value": self.value,
            "at": self.at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transition:
        return cls(data["from"], data["to"], data["level"], data["value"], data["at"])


@dataclass(frozen=True)
class AlertState:
    """Where one alert stands. Times are ms since the epoch; ``None`` where it has not happened."""

    rule: str
    fingerprint: str
    labels: Mapping[str, str] = field(default_factory=dict)
    state: str = "inactive"
    level: str | None = None  # warning or critical while pending/firing; the last level once resolved
    value: float | None = None  # the last value that was not None
    active_since: int | None = None  # when this pending/firing episode's condition was first seen
    fired_at: int | None = None
    resolved_at: int | None = None
    evaluated_at: int | None = None
    acked_by: str | None = None
    acked_at: int | None = None
    ack_comment: str | None = None

    @property
    def active(self) -> bool:
        """Pending or firing: the alert must be kept (an inactive or resolved one may be dropped)."""
        return self.state in ("pending", "firing")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict with every field (labels as a plain dict)."""
        data = dataclasses.asdict(self)
        data["labels"] = dict(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertState:
        """The state ``to_dict`` wrote; ``ValueError`` when a field is missing or of the wrong type."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"alert state: {missing[0]} is missing")
        values = {n: data[n] for n in names}
        if values["state"] not in STATES:
            raise ValueError(f"alert state: state {values['state']!r} is not one of {', '.join(STATES)}")
        labels = values["labels"]
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise ValueError("alert state: labels must be an object of strings")
        for n in ("active_since", "fired_at", "resolved_at", "evaluated_at", "acked_at"):
            if values[n] is not None and (isinstance(values[n], bool) or not isinstance(values[n], int)):
                raise ValueError(f"alert state: {n} must be an integer (ms) or null")
        if values["value"] is not None:
            values["value"] = float(values["value"])
        return cls(**{**values, "labels": dict(labels)})


def new_state(rule: Rule, labels: Mapping[str, str]) -> AlertState:
    """An inactive alert of ``rule`` on ``labels`` (usually ``rule.alert_labels(host, series)``)."""
    return AlertState(rule.name, fingerprint(rule.name, labels), dict(labels))


def render_annotations(rule: Rule, state: AlertState) -> dict[str, str]:
    """The rule's ``summary`` and ``description`` rendered for this alert's level, value and labels."""
    level = state.level or ""
    context: dict[str, Any] = {
        "value": state.value,
        "threshold": rule.threshold_of(level),
        "host": state.labels.get("host", ""),
        "level": level,
        "severity": rule.severity_of(level) if level else "",
        "rule": rule.name,
        "labels": state.labels,
    }
    return {"summary": rule.summary.render(**context), "description": rule.description.render(**context)}


def evaluate(
    state: AlertState | None,
    rule: Rule,
    value: float | None,
    now_ms: int,
    *,
    labels: Mapping[str, str] | None = None,
) -> tuple[AlertState, list[Transition]]:
    """The state after seeing ``value`` at ``now_ms``, and the transitions (empty: nothing changed).

    ``state`` ``None`` starts a new inactive alert on ``labels``.
    """
    if state is None:
        state = new_state(rule, labels or {})
    if value is not None and math.isnan(value):
        value = None
    if value is None:
        return dataclasses.replace(state, evaluated_at=now_ms), []
    now = dataclasses.replace(state, value=value, evaluated_at=now_ms)
    level = rule.level_for(value)
    was = state.state

    def move(to: str, new_level: str | None, **changes: Any) -> tuple[AlertState, list[Transition]]:
        if to in ("inactive", "resolved"):
            changes.update(_ENDED)
        moved = dataclasses.replace(now, state=to, level=new_level, **changes)
        return moved, [Transition(was, to, new_level, value, now_ms)]

    if was in ("inactive", "resolved"):
        if level is None:
            return now, []
        if rule.for_s <= 0:
            return move("firing", level, active_since=now_ms, fired_at=now_ms, resolved_at=None)
        return move("pending", level, active_since=now_ms, fired_at=None, resolved_at=None)
    if was == "pending":
        if level is None:
            return move("inactive", None)
        since = state.active_since if state.active_since is not None else now_ms
        if now_ms - since >= round(rule.for_s * 1000):
            return move("firing", level, fired_at=now_ms)
        return move("pending", level) if level != state.level else (now, [])
    # firing
    if not rule.holds(value):
        return move("resolved", state.level, resolved_at=now_ms)
    new_level = level or (rule.thresholds[0][0] if rule.thresholds else state.level)
    return move("firing", new_level) if new_level != state.level else (now, [])


def retire(state: AlertState, now_ms: int) -> tuple[AlertState, list[Transition]]:
    """End an alert whose rule was removed or disabled, or whose series is gone for good: a firing
    alert resolves (with its last value), a pending one goes back to inactive."""
    if state.state == "firing":
        done = dataclasses.replace(state, state="resolved", resolved_at=now_ms, evaluated_at=now_ms, **_ENDED)
        return done, [Transition("firing", "resolved", state.level, state.value, now_ms)]
    if state.state == "pending":
        done = dataclasses.replace(state, state="inactive", level=None, evaluated_at=now_ms, **_ENDED)
        return done, [Transition("pending", "inactive", None, state.value, now_ms)]
    return state, []
