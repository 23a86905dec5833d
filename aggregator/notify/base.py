"""What every notification channel shares: the notification, the delivery result, the protocol.

A channel delivers; it does not decide. The pipeline (grouping, silences, routing, retry) hands a
channel a list of notifications (one alert, or a group / digest that goes out as one message) and
gets a `Delivery` back that says whether it arrived and, when not, whether trying again can help
(alertmanager's ``notify.Notifier``: ``(retry bool, err)``). A channel never raises for a failed
delivery; exceptions from `send` are bugs.

The text helpers here (`title`, `line`, `lines`, `body`) make the same words for every channel, so a
phone, a chat room and an e-mail say the same thing.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "****"
MAX_RETRY_AFTER = 86_400.0  # a Retry-After beyond a day is treated as a day
TEST_KEY = "edgewatch-test"  # the key of the "send test notification" message


class Level(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Level.INFO: 0, Level.WARNING: 1, Level.ERROR: 2, Level.CRITICAL: 3}


class State(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Notification:
    """One alert as a channel sends it. ``at`` is the transition time in ms since the epoch."""

    key: str  # the alert's key (rule + label set); phones replace a notification with the same key
    rule: str
    host: str
    level: Level
    state: State
    summary: str
    at: int
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float | None = None
    url: str = ""  # what a tap / click opens (absolute URL of the alert in the web UI)
    group: str = ""  # the pipeline's group key, when the notification is part of a group
    fired_at: int | None = None  # when the alert started firing (ms), when the pipeline knows it

    def __post_init__(self) -> None:
        # accept the plain strings the database holds; a wrong one fails here, not in a channel
        object.__setattr__(self, "level", Level(self.level))
        object.__setattr__(self, "state", State(self.state))

    def as_json(self) -> dict[str, Any]:
        """The notification as JSON-safe data (non-finite values as "NaN", "+Inf", "-Inf")."""
        return {
            "key": self.key,
            "rule": self.rule,
            "host": self.host,
            "level": str(self.level),
            "state": str(self.state),
            "summary": self.summary,
            "description": self.description,
            "labels": dict(self.labels),
            "value": json_number(self.value),
            "url": self.url,
            "at": self.at,
            "group": self.group,
            "fired_at": self.fired_at,
        }


def json_number(v: float | None) -> float | str | None:
    """``v`` as JSON can hold it: NaN and the infinities as "NaN", "+Inf" and "-Inf"."""
    if v is None or math.isfinite(v):
        return v
    if math.isnan(v):
        return "NaN"
    return "+Inf" if v > 0 else "-Inf"


@dataclass(frozen=True)
class Delivery:
    """The outcome of one send.

    ``ok``: it arrived. Otherwise ``retryable`` says whether the same send may succeed later (after
    ``retry_after`` seconds when the receiver said so), and ``gone`` that the target no longer exists
    (a push subscription answered 404/410: the caller deletes it; never retry a gone target).
    ``status`` is the HTTP status when there was one; ``detail`` one line for the delivery log.
    A channel with several targets (Web Push: one per subscription) returns one part per target in
    ``parts``, each naming its ``target``; the top-level result sums them up (see `combine`).
    """

    ok: bool
    retryable: bool = False
    gone: bool = False
    retry_after: float | None = None
    status: int | None = None
    detail: str = ""
    target: str = ""
    parts: tuple[Delivery, ...] = ()

    @property
    def gone_targets(self) -> tuple[str, ...]:
        return tuple(p.target for p in self.parts if p.gone)

    @property
    def retry_targets(self) -> tuple[str, ...]:
        return tuple(p.target for p in self.parts if not p.ok and p.retryable)


class Channel(Protocol):
    """A notification channel: one small module per kind (webpush, webhook, apprise)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    async def send(self, notifications: Sequence[Notification]) -> Delivery:
        """Deliver the notifications as one message; never raises for a failed delivery."""
        ...

    def public_config(self) -> dict[str, Any]:
        """The configuration for the API, every secret masked."""
        ...


def one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(when.timestamp() - now, 0.0), MAX_RETRY_AFTER)


def classify_http(
    status: int,
    *,
    retry_after: str | None = None,
    now: float | None = None,
    gone_on: frozenset[int] = frozenset(),
    detail: str = "",
    target: str = "",
) -> Delivery:
    """The common reading of an HTTP answer: 2xx ok; 408, 429 and 5xx worth a retry; other 4xx not.

    Statuses in ``gone_on`` (Web Push: 404 and 410) mean the target is gone for good.
    """
    text = one_line(f"HTTP {status}" + (f": {detail}" if detail else ""))
    if 200 <= status < 300:
        return Delivery(ok=True, status=status, detail=text, target=target)
    if status in gone_on:
        return Delivery(ok=False, gone=True, status=status, detail=text, target=target)
    if status in (408, 429) or status >= 500:
        wait = parse_retry_after(retry_after, time.time() if now is None else now)
        return Delivery(ok=False, retryable=True, retry_after=wait, status=status, detail=text, target=target)
    return Delivery(ok=False, status=status, detail=text, target=target)


def combine(parts: Sequence[Delivery], what: str) -> Delivery:
    """One result for a send to several targets (``what`` names them: "push subscriptions").

    ok: at least one target got it and none is waiting for a retry (a gone target is not retried,
    and a target that refused for good will not change its mind). retryable: some target may
    still get it; retry_after is the longest wait any of them asked for.
    """
    if not parts:
        return Delivery(ok=False, detail=f"no {what} to send to")
    delivered = sum(p.ok for p in parts)
    gone = sum(p.gone for p in parts)
    retry = [p for p in parts if not p.ok and p.retryable]
    failed = len(parts) - delivered - gone - len(retry)
    waits = [p.retry_after for p in retry if p.retry_after is not None]
    tally = ((delivered, "delivered"), (gone, "gone"), (len(retry), "to retry"), (failed, "failed"))
    detail = f"{len(parts)} {what}: " + ", ".join(
        f"{n} {word}" for n, word in tally if n or word == "delivered"
    )
    if problem := next((p.detail for p in parts if not p.ok), ""):
        detail += f" (first: {problem})"
    return Delivery(
        ok=delivered > 0 and not retry,
        retryable=bool(retry),
        retry_after=max(waits) if waits else None,
        detail=one_line(detail),
        parts=tuple(parts),
    )


# --- the words every channel uses ------------------------------------------------------------


def _ordered(notifications: Sequence[Notification]) -> list[Notification]:
    """Firing before resolved, worst level first, otherwise as given (so truncation keeps the worst)."""
    return sorted(notifications, key=lambda n: (n.state != State.FIRING, -n.level.rank))


def worst(notifications: Sequence[Notification]) -> tuple[Level, State]:
    """The level and state a message about these notifications carries."""
    firing = [n for n in notifications if n.state == State.FIRING]
    pool = firing or list(notifications)
    return max((n.level for n in pool), key=lambda lv: lv.rank), State.FIRING if firing else State.RESOLVED


def line(n: Notification) -> str:
    """``CRITICAL web-1: CPU at 97 %`` or ``RESOLVED web-1: CPU at 97 %``."""
    head = "RESOLVED" if n.state == State.RESOLVED else n.level.upper()
    return f"{head} {n.host}: {n.summary}" if n.host else f"{head}: {n.summary}"


def title(notifications: Sequence[Notification]) -> str:
    if len(notifications) == 1:
        return line(notifications[0])
    level, state = worst(notifications)
    hosts = list(dict.fromkeys(n.host for n in notifications if n.host))
    where = f" on {hosts[0]}" if len(hosts) == 1 else f" on {len(hosts)} hosts" if hosts else ""
    firing = sum(n.state == State.FIRING for n in notifications)
    resolved = len(notifications) - firing
    if state == State.RESOLVED:
        return f"RESOLVED {resolved} alerts{where}"
    if resolved:
        return f"{level.upper()} {firing} firing, {resolved} resolved{where}"
    return f"{level.upper()} {firing} alerts{where}"


def lines(notifications: Sequence[Notification]) -> list[str]:
    """One line per notification, worst first."""
    return [line(n) for n in _ordered(notifications)]


def body(notifications: Sequence[Notification], max_lines: int = 50) -> str:
    """The message text: the description of a single alert, or one line per alert of a group."""
    if len(notifications) == 1:
        n = notifications[0]
        return n.description or n.summary
    shown = lines(notifications)
    more = len(shown) - max_lines
    if more > 0:
        return "\n".join([*shown[:max_lines], f"… and {more} more"])
    return "\n".join(shown)


def common_url(notifications: Sequence[Notification]) -> str:
    """The URL to open: the alert's own, or the one a whole group shares, else the first one set."""
    urls = [n.url for n in notifications if n.url]
    return urls[0] if urls else ""


def tag(notifications: Sequence[Notification]) -> str:
    """A stable name for the message: the alert key, or the group key of a group."""
    if len(notifications) == 1:
        return notifications[0].key
    groups = {n.group for n in notifications}
    return groups.pop() if len(groups) == 1 and "" not in groups else "edgewatch-digest"


# --- test notifications ----------------------------------------------------------------------


def test_message(now_ms: int, url: str = "") -> list[Notification]:  # noqa: PT028 (not a test)
    """What the "send test notification" action sends through a channel."""
    return [
        Notification(
            key=TEST_KEY,
            rule="test",
            host="edgewatch",
            level=Level.INFO,
            state=State.FIRING,
            summary="Test notification",
            description="This is a test notification from edgewatch: the channel works.",
            at=now_ms,
            url=url,
        )
    ]


test_message.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


async def send_test(channel: Channel, now_ms: int, url: str = "") -> Delivery:
    return await channel.send(test_message(now_ms, url))


# --- secrets ---------------------------------------------------------------------------------

SECRET_WORDS = re.compile(r"(pass|secret|token|key|auth|sig|signature|credential|session|code)", re.I)
_TOKENISH = re.compile(r"^(?:(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_\-.~=+]{16,}|[A-Za-z0-9_\-.~=+]{24,})$")


def mask_url(url: str) -> str:
    """A URL fit to show: password, secret-looking query values and token-like path parts masked.

    ``https://u:pw@hooks.example.com/T0/B1/abcdEFGH12345678xyz?token=t&room=ops`` shows as
    ``https://u:****@hooks.example.com/T0/B1/****?token=****&room=ops``.
    """
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    if parts.username is not None:
        netloc = f"{parts.username}{':' + MASK if parts.password is not None else ''}@{netloc}"
    path = "/".join(MASK if _TOKENISH.match(seg) else seg for seg in parts.path.split("/"))
    query = urlencode(
        [(k, MASK if SECRET_WORDS.search(k) or _TOKENISH.match(v) else v) for k, v in parse_qsl(parts.query)],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Custom HTTP headers fit to show: every value masked (they are mostly credentials)."""
    return dict.fromkeys(headers, MASK)
