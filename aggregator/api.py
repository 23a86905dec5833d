"""The read API for scripts and the UI: hosts, series, range queries, summaries, patterns, export.

Every handler here needs at least the viewer role: an API token (``Authorization: Bearer
ewt_...``) or a browser session (sessions.py; its state-changing requests need its CSRF token too).
Queries run in reader threads.
Times are milliseconds since the epoch in answers; ``start`` / ``end`` accept seconds or
milliseconds since the epoch, ISO 8601, ``now`` or a relative ``-24h``.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import sqlite3
import time
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiohttp import web

from edgewatch.protocol import Kind
from edgewatch.protocol.settings import parse_duration

from . import accounts, auth, query
from .analysis import patterns, summary, trend
from .export import ExportSeries, to_csv, to_json
from .ingest import INGEST, error
from .jsonout import json_response
from .query import QueryError, SeriesRow
from .schema import TIERS
from .sessions import COOKIE, SESSIONS, Session, csrf_ok

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN_TTL_S = 30.0


@dataclass
class Api:
    retention_s: dict[str, float]
    down_after: int
    metrics_public: bool
    wall: Callable[[], float] = time.time
    origin: str = ""  # public_url's scheme and host: a browser's Origin when behind a proxy
    tokens: dict[str, tuple[accounts.TokenAuth | None, float]] = field(default_factory=dict)
    cache: query.ReadCache = field(default_factory=query.ReadCache)  # decoded bytes the queries share

    def now_ms(self) -> int:
        return int(self.wall() * 1000)


API = web.AppKey("api", Api)
_WHO = web.RequestKey("who", object)  # the caller, once known (False: nobody)


class Who(NamedTuple):
    """Who makes a request: an API token or a signed-in user."""

    actor: str  # for the audit log: token:NAME or user:NAME
    role: str
    session: Session | None = None  # a browser session (CSRF applies)
    token_id: str | None = None  # the API token's id


async def caller(request: web.Request) -> Who | None:
    """The API token presented (when valid and not revoked), else the browser session, else None.
    The answer is kept on the request."""
    if (known := request.get(_WHO)) is not None:
        return known if isinstance(known, Who) else None
    who = await _token(request)
    if who is None and (sessions := request.app.get(SESSIONS)) is not None:
        s = await sessions.lookup(request.cookies.get(COOKIE))
        who = None if s is None else Who(f"user:{s.user}", s.role, s)
    request[_WHO] = who or False
    return who


async def _token(request: web.Request) -> Who | None:
    api = request.app[API]
    token = auth.bearer(request.headers.get("Authorization"))
    parts = auth.split_token(token, auth.API_PREFIX) if token else None
    if parts is None:
        return None
    ident, secret = parts
    cached = api.tokens.get(ident)
    now = time.monotonic()
    if cached is None or now - cached[1] >= TOKEN_TTL_S:
        readers = request.app[INGEST].store.auth_readers
        record = await readers.run(lambda conn: accounts.token_auth(conn, ident))
        if record is None:
            return None  # misses are not kept: anyone can make up ids
        if len(api.tokens) >= 100_000:
            api.tokens.clear()
        cached = api.tokens[ident] = (record, now)
    record = cached[0]
    if record is None or record.revoked or not auth.matches(secret, record.token_hash):
        return None
    return Who(f"token:{record.name or record.id}", record.role, None, record.id)


async def actor_of(request: web.Request) -> str:
    """Who makes the request, for the audit log: ``token:NAME``, ``user:NAME`` or ``unknown``."""
    who = await caller(request)
    return who.actor if who else "unknown"


async def json_body(request: web.Request, example: str) -> dict[str, Any] | web.Response:
    """The request's JSON object, or the 400 that shows ``example``."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return error(400, f"send a JSON object like {example}")
    return body


def same_origin(request: web.Request) -> bool:
    """No ``Origin`` header, or the aggregator's own origin (as the browser reached it, or public_url)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin in (f"{request.scheme}://{request.host}", request.app[API].origin)


def csrf_refusal(request: web.Request, who: Who) -> web.Response | None:
    """The 403 for a state-changing request of a browser session without its CSRF token or from
    another origin; None when the request may go on."""
    if who.session is None or request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    if not same_origin(request):
        return error(403, "this request comes from another site (Origin); it is refused")
    if not csrf_ok(who.session, request.headers.get("X-CSRF-Token")):
        return error(403, "the request lacks the session's CSRF token (X-CSRF-Token); reload the page")
    return None


def requires(role: str) -> Callable[[Handler], Handler]:
    def wrap(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            who = await caller(request)
            if who is None:
                return error(
                    401,
                    "sign in, or send an API token (Authorization: Bearer ewt_...); see admin add-token",
                )
            if auth.RANK[who.role] < auth.RANK[role]:
                return error(403, f"this needs the {role} role; you have {who.role}")
            if (refused := csrf_refusal(request, who)) is not None:
                return refused
            return await handler(request)

        checked.__name__ = handler.__name__
        checked.__doc__ = handler.__doc__
        return checked

    return wrap


_REL = re.compile(r"(?:now)?\s*-\s*(.+)")


def parse_time(text: str | None, now_ms: int, default: int, what: str) -> int:
    if text is None or text == "":
        return default
    text = text.strip()
    if text == "now":
        return now_ms
    rel = _REL.fullmatch(text)
    try:
        if rel:
            back = parse_duration(rel[1]) * 1000
            if not math.isfinite(back) or back > 1e14:
                raise QueryError(f"{what}={text!r} reaches too far back; use at most a few years")
            return now_ms - int(back)
        number = float(text)
    except ValueError:
        try:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise QueryError(
                f"{what}={text!r} is not a time; use seconds or ms since the epoch, ISO 8601, now or -24h"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return int(moment.timestamp() * 1000)
    if not math.isfinite(number) or abs(number) > 1e15:
        raise QueryError(f"{what}={text!r} is out of range; use seconds or ms since the epoch")
    return int(number * 1000) if abs(number) < 1e11 else int(number)


def parse_step(text: str | None) -> int | None:
    if not text:
        return None
    try:
        step = int(parse_duration(text) * 1000)
        if step > 10 * 365 * 86_400_000:
            raise ValueError(text)
    except (ValueError, OverflowError):
        raise QueryError(f"step={text!r} is not a duration; use e.g. 60s, 5m or 1h") from None
    if step < 1000:
        raise QueryError("step must be at least 1s")
    return step


@dataclass
class Selection:
    host: int
    host_name: str
    series: list[SeriesRow]
    start: int
    end: int
    step: int | None
    tier: str | None


def _select(conn: sqlite3.Connection, request: web.Request, now: int, default_span_ms: int) -> Selection:
    q = request.query
    name = request.match_info.get("host") or q.get("host")
    if not name:
        raise QueryError("give host=NAME; see /api/v1/hosts for the names")
    hid = query.host_id(conn, name)
    match = {k[6:]: v for k, v in q.items() if k.startswith("label.")}
    try:
        ids = [int(x) for x in q.getall("series", [])]
    except ValueError:
        raise QueryError("series must be series ids (integers); see /api/v1/hosts/NAME/series") from None
    series = query.select_series(conn, hid, q.get("name"), match, ids)
    if not series:
        raise QueryError(f"no series of host {name!r} matches; see /api/v1/hosts/{name}/series", 404)
    end = parse_time(q.get("end"), now, now, "end")
    start = parse_time(q.get("start"), now, end - default_span_ms, "start")
    tier = q.get("tier")
    if tier is not None and tier not in {t.name for t in TIERS}:
        raise QueryError(f"tier {tier!r} is unknown; use one of {', '.join(t.name for t in TIERS)}")
    return Selection(hid, name, series, start, end, parse_step(q.get("step")), tier)


async def _run(request: web.Request, fn: Callable[[sqlite3.Connection], Any]) -> Any:
    return await request.app[INGEST].store.readers.run(fn)


def _query_error(exc: QueryError) -> web.Response:
    return error(exc.status, str(exc))


def _points(
    request: web.Request, default_span_ms: int, default_step: int | None = None
) -> Callable[[sqlite3.Connection], Any]:
    api = request.app[API]
    now = api.now_ms()

    def work(conn: sqlite3.Connection) -> tuple[Selection, Any, int, dict[int, list[query.Point]]]:
        sel = _select(conn, request, now, default_span_ms)
        if sel.step is None:
            sel.step = default_step
        tier, step, points = query.range_query(
            conn,
            sel.host,
            sel.series,
            sel.start,
            sel.end,
            step=sel.step,
            now=now,
            retention_s=api.retention_s,
            tier_name=sel.tier,
            cache=api.cache,
        )
        return sel, tier, step, points

    return work


@requires("viewer")
async def hosts(request: web.Request) -> web.StreamResponse:
    """All hosts with status, last seen, headline values and facts."""
    api, ing = request.app[API], request.app[INGEST]
    now = api.now_ms()
    rows = await _run(request, accounts.list_hosts)
    spark = request.query.get("spark") in ("1", "true")
    out = []
    for row in rows:
        state = ing.state(row["name"])
        if state.last_seen_ms is None and row["last_seen_ms"] is not None:
            state.last_seen_ms, state.interval_ms = row["last_seen_ms"], row["interval_ms"]
        item = state.to_json(now, api.down_after, spark=spark)
        item["revoked"] = row["revoked_ms"] is not None
        out.append(item)
    status = request.query.get("status")
    if status:
        out = [h for h in out if h["status"] == status]
    return json_response({"hosts": out})


@requires("viewer")
async def host(request: web.Request) -> web.StreamResponse:
    """One host: status, last seen, facts."""
    api, ing = request.app[API], request.app[INGEST]
    name = request.match_info["host"]

    def read(conn: sqlite3.Connection) -> tuple[str | None, int | None]:  # one trip to a reader
        hid = query.host_id(conn, name)
        row: tuple[str | None, int | None] = conn.execute(
            "SELECT facts, last_seen_ms FROM hosts WHERE id = ?", (hid,)
        ).fetchone()
        return row

    try:
        facts = await _run(request, read)
    except QueryError as exc:
        return _query_error(exc)
    state = ing.state(name)
    if state.last_seen_ms is None and facts[1] is not None:  # not seen since our start: the stored time
        state.last_seen_ms = facts[1]
    item = state.to_json(api.now_ms(), api.down_after)
    if not item["facts"]:
        item["facts"] = json.loads(facts[0] or "{}")
    return json_response(item)


@requires("viewer")
async def host_series(request: web.Request) -> web.StreamResponse:
    """The series of a host."""
    name = request.match_info["host"]
    try:
        rows = await _run(request, lambda conn: query.host_series(conn, query.host_id(conn, name)))
    except QueryError as exc:
        return _query_error(exc)
    return json_response({"host": name, "series": [r.to_json() for r in rows]})


@requires("viewer")
async def range_(request: web.Request) -> web.StreamResponse:
    """Points (ts, min, avg, max, count) per series over a range; says which tier answered."""
    try:
        sel, tier, step, points = await _run(request, _points(request, 3_600_000))
    except QueryError as exc:
        return _query_error(exc)
    return json_response(
        {
            "host": sel.host_name,
            "start": sel.start,
            "end": sel.end,
            "tier": tier.name,
            "step_ms": step,
            "series": [{**s.to_json(), "points": points[s.id]} for s in sel.series],
        }
    )


@requires("viewer")
async def summary_(request: web.Request) -> web.StreamResponse:
    """Avg, min, max and current over a window, and the trend, per series."""
    try:
        sel, tier, step, points = await _run(request, _points(request, 86_400_000))
    except QueryError as exc:
        return _query_error(exc)
    out = [
        {**s.to_json(), "summary": summary(points[s.id]), "trend": trend(points[s.id])} for s in sel.series
    ]
    return json_response({"host": sel.host_name, "tier": tier.name, "step_ms": step, "series": out})


@requires("viewer")
async def patterns_(request: web.Request) -> web.StreamResponse:
    """Usage by hour of day and day of week, per series (default: the last 28 days)."""
    tz_name = request.query.get("tz", "UTC")
    try:
        tz = zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return error(400, f"tz={tz_name!r} is not a known time zone; use e.g. UTC or Europe/Berlin")
    try:
        sel, tier, _, points = await _run(request, _points(request, 28 * 86_400_000, default_step=3_600_000))
    except QueryError as exc:
        return _query_error(exc)
    out = [{**s.to_json(), "patterns": patterns(points[s.id], tz)} for s in sel.series]
    return json_response({"host": sel.host_name, "tier": tier.name, "tz": tz_name, "series": out})


@requires("viewer")
async def export(request: web.Request) -> web.StreamResponse:
    """The points of the selected series as CSV or JSON, streamed."""
    fmt = request.query.get("format", "json")
    if fmt not in ("csv", "json"):
        return error(400, f"format={fmt!r} is unknown; use csv or json")
    try:
        sel, tier, _, points = await _run(request, _points(request, 86_400_000))
    except QueryError as exc:
        return _query_error(exc)
    rows = [
        ExportSeries(
            sel.host_name,
            s.name,
            s.labels,
            "counter" if s.kind == Kind.COUNTER else "gauge",
            tier.name,
            points[s.id],
        )
        for s in sel.series
    ]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/json",
            "Content-Disposition": f'attachment; filename="{sel.host_name}.{fmt}"',
        }
    )
    await response.prepare(request)
    for piece in to_csv(rows) if fmt == "csv" else to_json(rows):
        await response.write(piece.encode())
    await response.write_eof()
    return response


@requires("viewer")
async def events(request: web.Request) -> web.StreamResponse:
    """Events (service state changes, command results) of a host over a range."""
    api = request.app[API]
    now = api.now_ms()
    name = request.match_info["host"]
    try:
        end = parse_time(request.query.get("end"), now, now, "end")
        start = parse_time(request.query.get("start"), now, end - 86_400_000, "start")

        def work(conn: sqlite3.Connection) -> list[Any]:
            hid = query.host_id(conn, name)
            return conn.execute(
                "SELECT ts, type, attrs FROM events WHERE host = ? AND ts >= ? AND ts < ?"
                " ORDER BY ts LIMIT 10000",
                (hid, start, end),
            ).fetchall()

        rows = await _run(request, work)
    except QueryError as exc:
        return _query_error(exc)
    return json_response(
        {"host": name, "events": [{"ts": ts, "type": t, "attrs": json.loads(a)} for ts, t, a in rows]}
    )


async def metrics(request: web.Request) -> web.StreamResponse:
    if not request.app[API].metrics_public and await caller(request) is None:
        return error(401, "/metrics needs an API token (or metrics.public = true in the config)")
    body = request.app[INGEST].registry.render()
    return web.Response(text=body, content_type="text/plain", charset="utf-8", headers={"X-Format": "0.0.4"})


async def healthz(request: web.Request) -> web.StreamResponse:
    writer = request.app[INGEST].store.writer
    ok = writer.failed is None
    return json_response(
        {"ok": ok, "queue": writer.backlog}, status=200 if ok else 503, headers={"Cache-Control": "no-store"}
    )
