"""The notification API: silences, Web Push subscriptions, and the channels with their test action.

Reading silences needs the viewer role, making and ending them the operator role. Any signed-in
role may register the browser it uses for Web Push (the endpoint is a capability URL: whoever holds
it may also remove it). Channels are listed and tested by admins only, and never with a secret.
Every change is written to the audit log with who made it.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from edgewatch.protocol.settings import parse_duration

from . import accounts
from .alerting import NOTIFIER
from .api import API, actor_of, json_body, parse_time, requires
from .ingest import INGEST, error
from .jsonout import json_response
from .notify.webpush import parse_subscription
from .query import QueryError
from .routing import Silence

MAX_SILENCE_S = 366 * 86400.0
MAX_SUBSCRIPTIONS = 10  # push subscriptions per user or token: devices, not a mailing list


def _silence_json(s: Silence, now_ms: int) -> dict[str, Any]:
    state = "pending" if now_ms < s.starts_at else "active" if now_ms < s.ends_at else "expired"
    return {**s.to_dict(), "state": state}


@requires("viewer")
async def silences(request: web.Request) -> web.StreamResponse:
    """Silences that are pending or active; ``state=all`` adds those that ended in the last 7 days."""
    n, now = request.app[NOTIFIER], request.app[API].now_ms()
    show_all = request.query.get("state") == "all"
    items = [_silence_json(s, now) for s in n.silences.values() if show_all or s.ends_at > now]
    items.sort(key=lambda i: (i["state"] == "expired", -i["ends_at"]))
    return json_response({"silences": items})


@requires("operator")
async def add_silence(request: web.Request) -> web.StreamResponse:
    """Mute the alerts matching every matcher from ``starts_at`` (default now) for ``duration`` or
    until ``ends_at``; ``comment`` says why."""
    example = '{"matchers": ["host=web-1"], "duration": "2h", "comment": "maintenance"}'
    body = await json_body(request, example)
    if isinstance(body, web.Response):
        return body
    n, now = request.app[NOTIFIER], request.app[API].now_ms()
    matchers, comment = body.get("matchers"), body.get("comment", "")
    if not isinstance(matchers, list) or not matchers or not all(isinstance(m, str) for m in matchers):
        return error(400, f"matchers must be a non-empty list of strings like host=web-1; e.g. {example}")
    if not isinstance(comment, str):
        return error(400, "comment must be a string")
    try:
        starts = _when(body.get("starts_at"), now, now, "starts_at")
        if "duration" in body:
            ends = starts + _seconds(body["duration"]) * 1000
        elif "ends_at" in body:
            ends = _when(body["ends_at"], now, now, "ends_at")
        else:
            return error(400, f"give duration (e.g. 2h) or ends_at; e.g. {example}")
        if ends - starts > MAX_SILENCE_S * 1000:
            return error(400, "a silence may last at most 366 days; make a rule change instead")
        if ends <= now:
            return error(400, "the silence would have ended already; give a later ends_at or a duration")
        actor = await actor_of(request)
        silence = await n.add_silence(
            matchers, starts_at=starts, ends_at=int(ends), author=actor, comment=comment[:1000], now_ms=now
        )
    except (ValueError, QueryError) as exc:
        return error(400, f"{exc}")
    await request.app[INGEST].store.write(
        lambda conn: accounts.audit(conn, now, actor, "add-silence", **silence.to_dict())
    )
    return json_response({"silence": _silence_json(silence, now)}, status=201)


def _when(value: Any, now: int, default: int, what: str) -> int:
    """A time given as ms since the epoch, an RFC 3339 text or a relative ``-1h``/``now``."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a time (ms since the epoch or RFC 3339)")
    if isinstance(value, int):
        return value
    if value is None or isinstance(value, str):
        return parse_time(value, now, default, what)
    raise ValueError(f"{what} must be a time (ms since the epoch or RFC 3339)")


def _seconds(value: Any) -> float:
    try:
        seconds = parse_duration(value) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"duration {value!r} is not a duration like 30m, 2h or 1d") from None
    if not seconds > 0:
        raise ValueError("duration must be more than 0 s")
    return seconds


@requires("operator")
async def expire_silence(request: web.Request) -> web.StreamResponse:
    """End a silence now; it stays listed as expired."""
    n, now = request.app[NOTIFIER], request.app[API].now_ms()
    sid = request.match_info["silence"]
    silence = await n.expire_silence(sid, now)
    if silence is None:
        return error(404, f"no active or pending silence has the id {sid!r}; see /api/v1/silences")
    actor = await actor_of(request)
    await request.app[INGEST].store.write(
        lambda conn: accounts.audit(conn, now, actor, "expire-silence", id=sid)
    )
    return json_response({"silence": _silence_json(silence, now)})


@requires("viewer")
async def push_key(request: web.Request) -> web.StreamResponse:
    """The VAPID public key a browser subscribes with (``applicationServerKey``)."""
    n = request.app[NOTIFIER]
    channels = [c.name for c in n.channels.values() if c.kind == "webpush"]
    return json_response({"public_key": n.vapid.public_key, "channels": channels})


@requires("viewer")
async def subscribe(request: web.Request) -> web.StreamResponse:
    """Register this browser for Web Push: the body is ``PushSubscription.toJSON()``."""
    body = await json_body(request, '{"endpoint": "https://...", "keys": {"p256dh": "...", "auth": "..."}}')
    if isinstance(body, web.Response):
        return body
    n, now = request.app[NOTIFIER], request.app[API].now_ms()
    try:
        sub = parse_subscription(body, allow_insecure_localhost=n.allow_loopback_http)
    except ValueError as exc:
        return error(400, f"{exc}")
    actor = await actor_of(request)

    def write(conn: Any) -> bool:
        new = (
            conn.execute("SELECT 1 FROM push_subscriptions WHERE endpoint = ?", (sub.endpoint,)).fetchone()
            is None
        )
        owned = conn.execute("SELECT count(*) FROM push_subscriptions WHERE owner = ?", (actor,)).fetchone()[
            0
        ]
        if new and owned >= MAX_SUBSCRIPTIONS:
            raise ValueError(
                f"{actor} has {MAX_SUBSCRIPTIONS} push subscriptions already; unsubscribe an old device first"
            )
        conn.execute(
            "INSERT OR REPLACE INTO push_subscriptions (endpoint, p256dh, auth, owner, created_ms)"
            " VALUES (?, ?, ?, ?, ?)",
            (sub.endpoint, sub.p256dh, sub.auth, actor, now),
        )
        if new:
            accounts.audit(conn, now, actor, "push-subscribe", endpoint=_origin(sub.endpoint))
        return new

    try:
        created = await request.app[INGEST].store.write(write)
    except ValueError as exc:
        return error(409, str(exc))
    return json_response({"subscribed": True, "endpoint": sub.endpoint}, status=201 if created else 200)


def _origin(endpoint: str) -> str:
    """The push service of an endpoint, for the audit log (the path is a secret of the browser)."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


@requires("viewer")
async def unsubscribe(request: web.Request) -> web.StreamResponse:
    """Stop pushing to a browser: ``{"endpoint": ...}``."""
    body = await json_body(request, '{"endpoint": "https://..."}')
    if isinstance(body, web.Response):
        return body
    endpoint = body.get("endpoint")
    if not isinstance(endpoint, str):
        return error(400, 'send {"endpoint": "https://..."}: the endpoint of the subscription')
    now, actor = request.app[API].now_ms(), await actor_of(request)

    def write(conn: Any) -> int:
        gone = int(conn.execute("DELETE FROM push_subscriptions WHERE endpoint = ?", (endpoint,)).rowcount)
        if gone:
            accounts.audit(conn, now, actor, "push-unsubscribe", endpoint=_origin(endpoint))
        return gone

    if not await request.app[INGEST].store.write(write):
        return error(404, "no subscription has this endpoint")
    return json_response({"subscribed": False, "endpoint": endpoint})


@requires("admin")
async def channels(request: web.Request) -> web.StreamResponse:
    """The notification channels and routes, every secret masked."""
    n = request.app[NOTIFIER]
    routes = [
        {
            "severities": sorted(r.severities),
            "labels": [f"{m.name}{m.op}{m.value}" for m in r.labels],
            "channels": list(r.channels),
            "group_by": list(r.group_by),
            "repeat_interval_s": r.repeat_interval,
            "digest": r.digest,
            "escalate_after_s": r.escalate_after,
            "escalate_to": list(r.escalate_to),
        }
        for r in n.pipeline.routes
    ]
    return json_response({"channels": [c.public_config() for c in n.channels.values()], "routes": routes})


@requires("admin")
async def test_channel(request: web.Request) -> web.StreamResponse:
    """Send a test notification through one channel now; answers how the delivery went."""
    n, name = request.app[NOTIFIER], request.match_info["channel"]
    if name not in n.channels:
        return error(404, f"no channel is named {name!r}; see /api/v1/channels")
    now = request.app[API].now_ms()
    started = time.perf_counter()
    d = await n.test(name, now)
    actor = await actor_of(request)
    await request.app[INGEST].store.write(
        lambda conn: accounts.audit(conn, now, actor, "test-channel", channel=name, ok=d.ok)
    )
    parts = [
        {"target": _origin(p.target) if p.target else "", "ok": p.ok, "detail": p.detail} for p in d.parts
    ]
    return json_response(
        {
            "channel": name,
            "ok": d.ok,
            "status": d.status,
            "detail": d.detail,
            "parts": parts,
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
