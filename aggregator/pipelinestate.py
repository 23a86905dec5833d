"""What the notification pipeline (``pipeline``) keeps about alerts and messages, and that state as
JSON for a restart (``state_json`` and ``read_state``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .notify.base import Notification

STATE_VERSION = 1


@dataclass
class Target:
    """One alert on one channel: what the channel was told and what waits to be sent to it."""

    route: int
    group: str
    escalation: bool = False
    notified_at: int | None = None  # the last firing message that arrived (or was given up on)
    notified_level: str | None = None  # its severity
    told_firing: bool = False  # a firing message arrived and no resolution since
    pending: str | None = None  # the kind of item waiting for its group
    pending_since: int = 0
    queued: int = 0  # its items in the outbox (open digests, retries) or in flight


@dataclass
class Tracked:
    """An alert the pipeline has been told about, and its channels."""

    rule: str
    labels: dict[str, str]
    severity: str
    state: str  # firing or resolved
    fired_at: int
    note: dict[str, Any]  # summary, description, value (JSON-safe), url, at
    acked: bool = False
    escalated: bool = False
    muted: str | None = None  # silenced or inhibited, as last seen
    targets: dict[str, Target] = field(default_factory=dict)


@dataclass
class Item:
    """One alert's news in a message."""

    fp: str
    kind: str
    severity: str
    note: Notification


@dataclass
class Message:
    """What goes to one channel in one send: the items of a group or a digest."""

    id: int
    channel: str
    route: int
    due: int
    items: list[Item]
    attempt: int = 0  # sends made
    only: list[str] | None = None  # Web Push endpoints still to reach
    digest: bool = False  # open: items join it until it is due


def note_of(data: Mapping[str, Any]) -> Notification:
    """The notification of ``Notification.as_json``-like data (a non-finite value as its string)."""
    value = data["value"]
    return Notification(**{**data, "value": float(value) if isinstance(value, str) else value})


def state_json(
    alerts: Mapping[str, Tracked], messages: Sequence[Message], last_flush: Mapping[str, int], next_id: int
) -> dict[str, Any]:
    """The pipeline's state as JSON-able data."""
    return {
        "version": STATE_VERSION,
        "alerts": {fp: dataclasses.asdict(a) for fp, a in alerts.items()},
        "outbox": [
            {**dataclasses.asdict(m), "items": [{**vars(it), "note": it.note.as_json()} for it in m.items]}
            for m in messages
        ],
        "last_flush": dict(last_flush),
        "next_id": next_id,
    }


def read_state(data: Mapping[str, Any]) -> tuple[dict[str, Tracked], list[Message], dict[str, int], int]:
    """``(alerts, messages, last flush of each group, next message id)`` of what ``state_json``
    made; ``ValueError`` when ``data`` is not such state."""
    if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
        raise ValueError(f"notification state: version must be {STATE_VERSION}")
    try:
        alerts = {
            fp: Tracked(**{**a, "targets": {ch: Target(**t) for ch, t in a["targets"].items()}})
            for fp, a in data["alerts"].items()
        }
        outbox = [
            Message(**{**m, "items": [Item(**{**it, "note": note_of(it["note"])}) for it in m["items"]]})
            for m in data["outbox"]
        ]
        last_flush = {str(g): int(t) for g, t in data["last_flush"].items()}
        next_id = int(data["next_id"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"notification state: not what export_state wrote ({e})") from None
    return alerts, outbox, last_flush, next_id
