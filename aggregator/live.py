"""``GET /api/v1/live``: a WebSocket that tells the web UI what changes while a page is open.

A client signs in as for the API (session cookie or API token, viewer role) and subscribes to host
status (names or ``*``), to series (the charts on screen) and to alerts from a level up
(docs/web.md). The `Hub` is fed from the ingest path (every committed frame) and from the alert
engine (every firing, level change and resolution); host status goes out at most every
``STATUS_EVERY_S`` for the hosts that changed, plus the hosts that went down. A slow client is
dropped rather than let its queue grow; clients keep no state across connections and catch up
through the REST API after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from edgewatch.protocol import Batch, Kind

from .alertapi import LEVEL_RANK
from .api import API, caller, same_origin
from .ingest import INGEST
from .jsonout import json_response
from .metrics import Registry
from .sessions import COOKIE, SESSIONS, Sessions

log = logging.getLogger("edgewatch.aggregator.live")
STATUS_EVERY_S = 2.0
PING_EVERY_S = 20.0
PING_ROUNDS = round(PING_EVERY_S / STATUS_EVERY_S)  # status ticks between two JSON pings
MAX_QUEUE = 256  # messages waiting for one client before it is dropped
MAX_SERIES = 2000  # series one client may watch
SeriesKey = tuple[str, frozenset[tuple[str, str]]]  # metric, labels


@dataclass(eq=False)  # kept in a set, by identity
class Client:
    ws: web.WebSocketResponse
    who: str
    cookie: str | None  # the session's id, to keep it alive (None for an API token)
    token_id: str | None = None  # the API token it signed in with
    hosts: set[str] = field(default_factory=set)  # "*" for all
    series: dict[str, dict[SeriesKey, tuple[int, int]]] = field(
        default_factory=dict
    )  # host -> key -> id, kind
    level: int = 0
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUE))
    closing: asyncio.Future[bool] | None = None  # dropped for being slow

    def wants_host(self, host: str) -> bool:
        return "*" in self.hosts or host in self.hosts


@dataclass
class Hub:
    host_json: Callable[[str], dict[str, Any]]
    host_status: Callable[[str], str]
    clients: set[Client] = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)
    statuses: dict[str, str] = field(default_factory=dict)
    last: dict[int, tuple[int, float]] = field(default_factory=dict)  # counter series -> last sample
    dropped: int = 0

    def send(self, client: Client, message: dict[str, Any]) -> None:
        try:
            client.queue.put_nowait(json.dumps(message, separators=(",", ":"), allow_nan=False))
        except asyncio.QueueFull:
            self.dropped += 1
            self.clients.discard(client)
            client.closing = asyncio.ensure_future(client.ws.close(code=1013, message=b"too slow; reconnect"))
        except ValueError:  # a non-finite number: not JSON
            pass

    # --- fed by the aggregator ---------------------------------------------------------------------

    def frame(self, host: str, batch: Batch, now_ms: int) -> None:
        """After a frame of ``host`` is committed: samples for the charts, and mark its status."""
        if not self.clients:
            return
        self.dirty.add(host)
        for client in list(self.clients):
            wanted = client.series.get(host)
            if not wanted:
                continue
            out: dict[str, list[list[float]]] = {}
            for s, column in zip(batch.series, batch.values):
                hit = wanted.get((s.name, frozenset(s.labels)))
                if hit is None:
                    continue
                sid, kind = hit
                points = self._points(sid, kind, batch.timestamps, column)
                if points:
                    out[str(sid)] = points
            if out:
                self.send(client, {"type": "samples", "host": host, "series": out})

    def _points(self, sid: int, kind: int, stamps: Sequence[int], column: Sequence[Any]) -> list[list[float]]:
        points: list[list[float]] = []
        for ts, v in zip(stamps, column):
            if v is None:
                continue
            if kind != Kind.COUNTER:
                points.append([ts, float(v)])
                continue
            prev = self.last.get(sid)
            self.last[sid] = (ts, float(v))
            if prev is not None and ts > prev[0] and v >= prev[1]:
                points.append([ts, (float(v) - prev[1]) * 1000.0 / (ts - prev[0])])
        return points

    def alert(self, alert: dict[str, Any], transition: dict[str, Any]) -> None:
        rank = LEVEL_RANK.get(str(alert.get("severity")), 0)
        for client in list(self.clients):
            if rank >= client.level:
                self.send(client, {"type": "alert", "alert": alert, "transition": transition})

    async def close_where(self, gone: Callable[[Client], bool], reason: bytes) -> None:
        """Close the sockets of a revoked token or a deleted user at once."""
        for client in [c for c in self.clients if gone(c)]:
            self.clients.discard(client)
            await client.ws.close(code=4401, message=reason)

    async def close_actor(self, actor: str) -> None:
        await self.close_where(lambda c: c.who == actor, b"the user was deleted")

    async def close_token(self, token_id: str) -> None:
        await self.close_where(lambda c: c.token_id == token_id, b"the token was revoked")

    def broadcast(self, message: dict[str, Any]) -> None:
        for client in list(self.clients):
            self.send(client, message)

    def command(self, row: dict[str, Any]) -> None:
        """A command was issued or changed state."""
        for client in list(self.clients):
            self.send(client, {"type": "command", "command": row})

    def status_tick(self, names: list[str]) -> None:
        """Send the hosts that changed since the last tick, and those whose status changed."""
        changed = set(self.dirty)
        self.dirty.clear()
        for name in names:
            status = self.host_status(name)
            if self.statuses.get(name) != status:
                self.statuses[name] = status
                changed.add(name)
        if not changed or not self.clients:
            return
        items = {name: self.host_json(name) for name in changed}
        for client in list(self.clients):
            hosts = [items[n] for n in sorted(changed) if client.wants_host(n)]
            if hosts:
                self.send(client, {"type": "hosts", "hosts": hosts})


HUB = web.AppKey("live_hub", Hub)


def _series_of(conn: sqlite3.Connection, ids: list[int]) -> list[tuple[int, str, str, str, int]]:
    marks = ",".join("?" * len(ids))
    return conn.execute(
        "SELECT s.id, h.name, s.name, s.labels, s.kind FROM series s JOIN hosts h ON h.id = s.host"  # noqa: S608
        f" WHERE s.id IN ({marks})",
        ids,
    ).fetchall()


async def _subscribe(request: web.Request, client: Client, message: Any) -> str | None:
    """Apply a subscribe message; an error sentence when it is not one."""
    if not isinstance(message, dict) or message.get("type") != "subscribe":
        return 'send {"type": "subscribe", "hosts": [...], "series": [...], "levels": [...]}'
    hosts, series, levels = message.get("hosts", []), message.get("series", []), message.get("levels")
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        return 'hosts must be a list of host names (or ["*"])'
    if (
        not isinstance(series, list)
        or not all(isinstance(s, int) for s in series)
        or len(series) > MAX_SERIES
    ):
        return f"series must be a list of up to {MAX_SERIES} series ids"
    if levels is not None and (not isinstance(levels, list) or any(x not in LEVEL_RANK for x in levels)):
        return "levels must be a list of info, warning, error, critical"
    rows = (
        await request.app[INGEST].store.readers.run(lambda conn: _series_of(conn, series)) if series else []
    )
    watched: dict[str, dict[SeriesKey, tuple[int, int]]] = {}
    for sid, host, name, labels, kind in rows:
        watched.setdefault(host, {})[(name, frozenset(json.loads(labels).items()))] = (sid, kind)
    client.hosts, client.series = set(hosts), watched
    client.level = min((LEVEL_RANK[x] for x in levels), default=0) if levels else 0
    return None


async def live(request: web.Request) -> web.StreamResponse:
    """The live WebSocket (viewer role): subscribe, then receive hosts, samples, alerts and pings."""
    if not same_origin(request):  # another site's page must not ride on the session cookie
        return json_response({"error": "this WebSocket comes from another site (Origin)"}, status=403)
    who = await caller(request)
    if who is None:
        return json_response({"error": "sign in first, or send an API token"}, status=401)
    ws = web.WebSocketResponse(heartbeat=PING_EVERY_S, max_msg_size=64 * 1024)
    await ws.prepare(request)
    hub = request.app[HUB]
    client = Client(
        ws, who.actor, request.cookies.get(COOKIE) if who.session is not None else None, who.token_id
    )
    hub.clients.add(client)
    sender = asyncio.create_task(_drain(client))
    now = request.app[API].now_ms()
    user = who.session.user if who.session is not None else who.actor
    hub.send(client, {"type": "hello", "now": now, "user": user, "role": who.role})
    sessions = request.app.get(SESSIONS)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            if not await _session_alive(client, sessions):
                break
            try:
                problem = await _subscribe(request, client, json.loads(msg.data))
            except json.JSONDecodeError:
                problem = "messages are JSON"
            if problem:
                hub.send(client, {"type": "error", "error": problem})
    finally:
        hub.clients.discard(client)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return ws


async def _session_alive(client: Client, sessions: Sessions | None) -> bool:
    """Touch the client's session (an open page keeps it alive); close the socket when it ended."""
    if client.cookie is None or sessions is None:
        return True
    if await sessions.lookup(client.cookie) is not None:
        return True
    await client.ws.close(code=4401, message=b"the session ended; sign in again")
    return False


async def _drain(client: Client) -> None:
    while True:
        text = await client.queue.get()
        try:
            await client.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            return


async def status_loop(app: web.Application) -> None:
    """Status every ``STATUS_EVERY_S``; every minute, the sessions of open pages are kept alive."""
    hub, ing, rounds = app[HUB], app[INGEST], 0
    while True:
        await asyncio.sleep(STATUS_EVERY_S)
        rounds += 1
        try:
            hub.status_tick(list(ing.states))
            if rounds % PING_ROUNDS == 0:
                hub.broadcast({"type": "ping", "now": app[API].now_ms()})
            if rounds % 30 == 0:
                for client in list(hub.clients):
                    await _session_alive(client, app.get(SESSIONS))
        except Exception:
            log.exception("live status tick failed")


def start_hub(app: web.Application, registry: Registry) -> Hub:
    ing, api = app[INGEST], app[API]

    def host_json(name: str) -> dict[str, Any]:
        return ing.state(name).to_json(api.now_ms(), api.down_after, spark=True)

    def host_status(name: str) -> str:
        return ing.state(name).status(api.now_ms(), api.down_after)

    hub = Hub(host_json, host_status)
    app[HUB] = hub
    ing.observers["live"] = hub.frame
    registry.gauge("edgewatch_live_clients", "Open live WebSockets.", lambda: {(): float(len(hub.clients))})
    return hub
