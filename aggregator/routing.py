"""The notification pipeline's configuration and matching: channels, routes, ``[notify]``, silences.

From the aggregator's TOML (the values shown for ``[notify]`` are the defaults)::

    [notify]                    # defaults of every route, retry, inhibition
    group_wait = { info = "30s", warning = "30s", error = "0s", critical = "0s" }  # or one duration
    group_interval = "5m"
    repeat_interval = "4h"
    digest_interval = "15m"
    retry_initial = "1s"        # doubling up to retry_max, for max_attempts sends in all
    retry_max = "5m"
    max_attempts = 10
    inhibitors = ["host_down"]  # rules whose firing alert mutes the other alerts of its host

    [[channel]]                 # webhook: url, secret, headers, timeout; apprise: urls, timeout;
    name = "ops"                # webpush: subject, ttl, timeout; alertmanager: url, basic_auth,
                                # bearer_token, headers, timeout, hold
    type = "webhook"
    url = "https://hooks.example.com/edgewatch"

    [[route]]                   # the first that matches wins; continue = true tries the next too
    match = { severity = ["critical"], labels = { env = "prod", host = "~^web-" } }
    channels = ["phones", "ops"]
    escalate_after = "30m"      # with escalate_to; also group_by, group_wait, …, digest (bool)
    escalate_to = ["pager"]

A route without ``match`` matches every alert; with no ``[[route]]`` every alert of severity
warning, error or critical goes to every channel (info alerts stay in the UI). Durations are
strings (``30s``, ``5m``) or seconds. A problem is one ``ValueError`` line naming the entry and the
field: ``route 2: group_wait: must be a duration like 30s, 5m, 4h …``.

Routes (``match.labels``, matchers as in rules: ``"v"``, ``"!v"``, ``"~re"``, ``"!~re"``) and
silences (``name=value``, ``name!=value``, ``name=~regex``, ``name!~regex``; a regex is searched,
as in rules: anchor it with ``^…$``) see the alert's labels plus ``rule`` and ``severity``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgewatch.protocol.settings import parse_duration

from .notify.base import Channel
from .rules import SEVERITIES
from .rulesyntax import LABEL_RE, Matcher

DEFAULT_SEVERITIES = ("warning", "error", "critical")  # what goes out when no [[route]] is configured
GROUP_WAIT = {"info": 30.0, "warning": 30.0, "error": 0.0, "critical": 0.0}  # critical at once
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_SILENCE_RE = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]{0,63})\s*(=~|!~|!=|=)\s*(.*?)\s*")


def match_labels(rule: str, severity: str, labels: Mapping[str, str]) -> dict[str, str]:
    """What routes and silences match on: the labels plus ``rule`` and ``severity``."""
    return {"rule": rule, "severity": severity, **labels}


def _duration(raw: Any) -> float:
    if isinstance(raw, str):
        try:
            raw = parse_duration(raw)
        except ValueError:
            raw = None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < 0:
        raise ValueError("must be a duration like 30s, 5m, 4h (or seconds, not negative)")
    return float(raw)


def _names(raw: Any, known: Collection[str] | None = None) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise ValueError('must be a list of names, e.g. ["ops"]')
    if known is not None and (bad := [x for x in raw if x not in known]):
        raise ValueError(f"no channel is named {bad[0]!r}")
    return tuple(dict.fromkeys(raw))


def _group_wait(raw: Any, base: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(raw, dict):
        return dict.fromkeys(SEVERITIES, _duration(raw))
    if bad := [k for k in raw if k not in SEVERITIES]:
        raise ValueError(f"{bad[0]!r} is not a severity ({', '.join(SEVERITIES)})")
    return {**base, **{k: _duration(v) for k, v in raw.items()}}


def _check_keys(raw: Any, allowed: Collection[str], who: str = "") -> dict[str, Any]:
    where = f"{who}: " if who else ""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}must be a table")
    if bad := [k for k in raw if k not in allowed]:
        raise ValueError(f"{where}{bad[0]}: unknown field; the fields are {', '.join(sorted(allowed))}")
    return raw


@dataclass(frozen=True)
class NotifyDefaults:
    """The ``[notify]`` table: defaults of every route, retry and inhibition. Durations in seconds."""

    group_wait: Mapping[str, float] = field(default_factory=lambda: dict(GROUP_WAIT))
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0
    digest_interval: float = 900.0
    retry_initial: float = 1.0
    retry_max: float = 300.0
    max_attempts: int = 10
    inhibitors: tuple[str, ...] = ("host_down",)

    def retry_delay(self, attempt: int) -> float:
        """Seconds before send number ``attempt + 1``, after ``attempt`` failed ones."""
        return min(self.retry_max, self.retry_initial * 2 ** max(attempt - 1, 0))


_NOTIFY_KEYS = tuple(NotifyDefaults.__dataclass_fields__)
_DERIVED = ("severities", "labels", "continue_")  # route fields from match and continue


def parse_notify(raw: Mapping[str, Any] | None) -> NotifyDefaults:
    """The ``[notify]`` table (``None`` or empty: every default)."""
    table = _check_keys(dict(raw or {}), _NOTIFY_KEYS, "notify")
    base = NotifyDefaults()
    values: dict[str, Any] = {}
    for key, value in table.items():
        try:
            if key == "group_wait":
                values[key] = _group_wait(value, base.group_wait)
            elif key == "max_attempts":
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
                    raise ValueError("must be a whole number from 1 to 100")
                values[key] = value
            elif key == "inhibitors":
                values[key] = _names(value)
            elif (seconds := _duration(value)) <= 0 and key != "group_interval":
                raise ValueError("must be more than 0 s")
            else:
                values[key] = seconds
        except ValueError as e:
            raise ValueError(f"notify: {key}: {e}") from None
    return NotifyDefaults(**{**base.__dict__, **values})


# --- [[route]] ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One ``[[route]]``, its durations (seconds) filled in from ``[notify]``."""

    channels: tuple[str, ...]
    severities: frozenset[str] = frozenset()  # empty: any severity
    labels: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] = ("host",)
    group_wait: Mapping[str, float] = field(default_factory=lambda: dict(GROUP_WAIT))
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0
    digest: bool = False
    digest_interval: float = 900.0
    escalate_after: float | None = None
    escalate_to: tuple[str, ...] = ()
    continue_: bool = False

    def matches(self, severity: str, labels: Mapping[str, str]) -> bool:
        if self.severities and severity not in self.severities:
            return False
        return all(m.matches(labels) for m in self.labels)

    def wait_for(self, severity: str) -> float:
        return self.group_wait.get(severity, self.group_wait.get("warning", 30.0))

    def group_of(self, index: int, labels: Mapping[str, str]) -> str:
        """The group key of an alert: the route's index and the ``group_by`` label values."""
        return f"{index}:" + ",".join(f"{k}={labels.get(k, '')}" for k in self.group_by)


def assign(routes: Sequence[Route], severity: str, labels: Mapping[str, str]) -> dict[str, int]:
    """Channel -> index of the first matching route that names it (``labels`` as `match_labels`)."""
    out: dict[str, int] = {}
    for i, r in enumerate(routes):
        if r.matches(severity, labels):
            for ch in r.channels:
                out.setdefault(ch, i)
            if not r.continue_:
                break
    return out


_ROUTE_KEYS = ("match", "continue", *(k for k in Route.__dataclass_fields__ if k not in _DERIVED))


def parse_route(raw: Any, defaults: NotifyDefaults, channels: Collection[str], who: str = "route") -> Route:
    table = _check_keys(raw, _ROUTE_KEYS, who)
    inherited = ("group_wait", "group_interval", "repeat_interval", "digest_interval")
    values: dict[str, Any] = {k: getattr(defaults, k) for k in inherited}
    for key, value in table.items():
        try:
            if key == "match":
                match = _check_keys(value, ("severity", "labels"))
                severities = _names(match.get("severity", []))
                if bad := [s for s in severities if s not in SEVERITIES]:
                    raise ValueError(f"severity: {bad[0]!r} is not one of {', '.join(SEVERITIES)}")
                labels = match.get("labels", {})
                if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                    raise ValueError('labels: must be a table of strings, e.g. { env = "prod" }')
                if bad := [k for k in labels if not LABEL_RE.fullmatch(k)]:
                    raise ValueError(f"labels: {bad[0]!r} is not a label name")
                values["severities"] = frozenset(severities)
                try:
                    values["labels"] = tuple(Matcher.parse(k, v) for k, v in labels.items())
                except ValueError as e:
                    raise ValueError(f"labels: {e}") from None
            elif key in ("channels", "escalate_to"):
                values[key] = _names(value, channels)
            elif key == "group_by":
                values[key] = _names(value)
            elif key == "group_wait":
                values[key] = _group_wait(value, defaults.group_wait)
            elif key in ("digest", "continue"):
                if not isinstance(value, bool):
                    raise ValueError("must be true or false")
                values["continue_" if key == "continue" else key] = value
            elif (seconds := _duration(value)) <= 0 and key in ("repeat_interval", "digest_interval"):
                raise ValueError("must be more than 0 s")
            else:
                values[key] = seconds
        except ValueError as e:
            raise ValueError(f"{who}: {key}: {e}") from None
    if not values.get("channels"):
        raise ValueError(f"{who}: channels: name at least one channel")
    if ("escalate_after" in values) != bool(values.get("escalate_to")):
        raise ValueError(f"{who}: escalate_to: escalate_after and escalate_to go together")
    return Route(**values)


def parse_routes(
    items: Sequence[Any] | None, defaults: NotifyDefaults, channels: Collection[str]
) -> tuple[Route, ...]:
    """The ``[[route]]`` tables in order; none: one route sending warnings and worse to every
    channel (info alerts are for the UI only: a quiet default)."""
    if not items:
        default = {"channels": list(channels), "match": {"severity": list(DEFAULT_SEVERITIES)}}
        return (parse_route(default, defaults, channels),) if channels else ()
    return tuple(parse_route(r, defaults, channels, f"route {i}") for i, r in enumerate(items, 1))


# --- [[channel]] ----------------------------------------------------------------------------

_CHANNEL_KEYS = {
    "webhook": ("url", "secret", "headers", "timeout"),
    "apprise": ("urls", "timeout"),
    "webpush": ("subject", "ttl", "timeout"),
    "alertmanager": ("url", "basic_auth", "bearer_token", "headers", "timeout", "hold"),
}


_RESERVED_HEADERS = ("content-type", "content-length", "host", "user-agent")


def build_channels(
    items: Sequence[Any] | None,
    *,
    data_dir: Path,
    subscriptions_provider: Callable[[], Awaitable[Sequence[Any]]],
    allow_insecure_localhost: bool = False,
) -> dict[str, Channel]:
    """The ``[[channel]]`` tables as channels by name. Apprise loads its plugins here (slow the first
    time: call it in a thread from the event loop); Web Push makes or reads the VAPID key in
    ``data_dir``; ``subscriptions_provider`` returns the stored push subscriptions."""
    out: dict[str, Channel] = {}
    for i, raw in enumerate(items or (), 1):
        name = raw.get("name") if isinstance(raw, dict) else None
        who = f"channel {name!r}" if isinstance(name, str) and name else f"channel {i}"
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind not in _CHANNEL_KEYS:
            raise ValueError(f"{who}: type: must be one of {', '.join(_CHANNEL_KEYS)}")
        table = _check_keys(raw, ("name", "type", *_CHANNEL_KEYS[kind]), who)
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(f"{who}: name: use 1 to 64 letters, digits or _ . : -")
        if name in out:
            raise ValueError(f"{who}: name: another channel has this name")
        out[name] = _channel(
            kind, name, table, who, data_dir, subscriptions_provider, allow_insecure_localhost
        )
    return out


def _channel(  # noqa: PLR0917 (one call site, above)
    kind: str,
    name: str,
    table: dict[str, Any],
    who: str,
    data_dir: Path,
    subscriptions: Callable[[], Awaitable[Sequence[Any]]],
    allow_insecure_localhost: bool,
) -> Channel:
    key, options = "", dict[str, Any]()
    try:
        for key in ("timeout", "ttl", "hold"):
            if key in table:
                if (seconds := _duration(table[key])) <= 0:
                    raise ValueError("must be more than 0 s")
                options[key] = int(seconds) if key == "ttl" else seconds
        for key in ("url", "secret", "subject"):
            if not isinstance(table.get(key, ""), str):
                raise ValueError("must be a string in quotes")
        key, headers = "headers", table.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ValueError('must be a table of strings, e.g. { Authorization = "Bearer …" }')
        if kind == "webhook":
            from .notify.webhook import WebhookChannel

            key = "url"
            return WebhookChannel(
                name, table.get("url", ""), secret=table.get("secret", ""), headers=headers, **options
            )
        if kind == "alertmanager":
            from .httpauth import parse_credentials
            from .notify.alertmanager import AlertmanagerChannel

            key = ""  # parse_credentials names the field itself
            credentials = parse_credentials(table, reserved=_RESERVED_HEADERS)
            key = "url"
            return AlertmanagerChannel(name, table.get("url", ""), credentials=credentials, **options)
        if kind == "apprise":
            from .notify.apprise_channel import AppriseChannel

            key = "urls"
            return AppriseChannel(name, _names(table.get("urls")), **options)
        from .notify.webpush import WebPushChannel, load_or_create_vapid

        key = "vapid key"
        vapid = load_or_create_vapid(data_dir)
        key = "subject"
        return WebPushChannel(
            name,
            subscriptions,
            vapid,
            table.get("subject", ""),
            allow_insecure_localhost=allow_insecure_localhost,
            **options,
        )
    except ValueError as e:
        key = "headers" if key == "url" and "header" in str(e) else key
        raise ValueError(f"{who}: {key}: {e}" if key else f"{who}: {e}") from None


# --- silences -------------------------------------------------------------------------------


def parse_matcher(text: str) -> Matcher:
    """``name=value``, ``name!=value``, ``name=~regex`` or ``name!~regex`` (value may be "quoted")."""
    m = _SILENCE_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{text!r} is not a matcher like host=web-1, rule!=cpu_high or host=~^web-")
    name, op, value = m[1], m[2], m[3]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    try:
        pattern = re.compile(value) if op in ("=~", "!~") else None
    except re.error as e:
        raise ValueError(f"{value!r} is not a valid regular expression: {e}") from None
    return Matcher(name, op, value, pattern)


@dataclass(frozen=True)
class Silence:
    """Mutes the alerts whose labels match every matcher, from ``starts_at`` until ``ends_at`` (ms)."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: int
    ends_at: int
    created_by: str = ""
    comment: str = ""

    def __post_init__(self) -> None:
        if not self.matchers:
            raise ValueError("a silence needs at least one matcher (it would mute every alert)")
        if self.ends_at <= self.starts_at:
            raise ValueError("a silence must end after it starts")

    def matches(self, labels: Mapping[str, str], now_ms: int) -> bool:
        return self.starts_at <= now_ms < self.ends_at and all(m.matches(labels) for m in self.matchers)

    @classmethod
    def parse(
        cls,
        id: str,
        *,
        matchers: Iterable[str],
        starts_at: int,
        ends_at: int,
        created_by: str = "",
        comment: str = "",
    ) -> Silence:
        return cls(id, tuple(parse_matcher(m) for m in matchers), starts_at, ends_at, created_by, comment)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, matchers as text (``host=web-1``): what `from_dict` reads."""
        return {**vars(self), "matchers": [f"{m.name}{m.op}{m.value}" for m in self.matchers]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Silence:
        return cls.parse(
            str(data["id"]),
            matchers=data["matchers"],
            starts_at=int(data["starts_at"]),
            ends_at=int(data["ends_at"]),
            created_by=str(data.get("created_by", "")),
            comment=str(data.get("comment", "")),
        )
