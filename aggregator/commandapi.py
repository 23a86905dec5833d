"""The remote-command endpoints: operators issue and follow commands, agents fetch them and report.

Issuing needs the operator role and names hosts (or a host group of the rules file); every host
must advertise the action with those arguments, or nothing is issued. Agents authenticate with
their own token: ``GET /api/v1/agent/commands?wait=S`` long-polls, ``POST
/api/v1/agent/commands/{id}/result`` reports. The commands resource (`commands_context`) also
expires commands that were not running in time and tells the live WebSocket about every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from .alertapi import ALERTING
from .api import caller, requires
from .commands import STATES, CommandError, Commands, list_commands
from .ingest import INGEST, agent_auth, error
from .jsonout import json_response
from .keys import load_or_create
from .live import HUB

log = logging.getLogger("edgewatch.aggregator.commands")
COMMANDS = web.AppKey("commands", Commands)
MAX_WAIT_S = 60.0
MAX_HOSTS = 1000


def _hosts(conn: sqlite3.Connection, names: list[str]) -> list[tuple[int, str, dict[str, Any]]]:
    marks = ",".join("?" * len(names))
    rows = conn.execute(
        f"SELECT id, name, facts FROM hosts WHERE revoked_ms IS NULL AND name IN ({marks})",  # noqa: S608
        names,
    ).fetchall()
    return [(hid, name, json.loads(facts or "{}")) for hid, name, facts in rows]


def _group(request: web.Request, group: str, known: list[str]) -> list[str]:
    patterns = request.app[ALERTING].engine.rules.groups.get(group)
    if patterns is None:
        raise CommandError(f"there is no host group {group!r} in the rules file's [groups]")
    return [h for h in known if any(fnmatch.fnmatchcase(h, p) for p in patterns)]


@requires("operator")
async def issue(request: web.Request) -> web.StreamResponse:
    """Hosts (``hosts``, or a ``group`` of the rules file), ``action`` and ``args``: a command per host."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    example = '{"hosts": ["web-1"], "action": "unit-restart", "args": {"unit": "nginx.service"}}'
    if not isinstance(body, dict) or not isinstance(body.get("action"), str):
        return error(400, f"send a JSON object like {example}")
    store = request.app[INGEST].store
    try:
        names = body.get("hosts")
        if isinstance(body.get("group"), str):
            known = await store.readers.run(
                lambda conn: [r[0] for r in conn.execute("SELECT name FROM hosts WHERE revoked_ms IS NULL")]
            )
            names = _group(request, body["group"], known)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise CommandError(f"name the hosts (a non-empty list) or a group; e.g. {example}")
        if len(names) > MAX_HOSTS:
            raise CommandError(f"at most {MAX_HOSTS} hosts per command")
        hosts = await store.readers.run(lambda conn: _hosts(conn, sorted(set(names))))
        missing = sorted(set(names) - {h[1] for h in hosts})
        if missing:
            raise CommandError(f"no enrolled host is named {missing[0]!r}; see /api/v1/hosts", 404)
        who = await caller(request)
        made = await request.app[COMMANDS].issue(
            hosts, body["action"], body.get("args", {}), who.actor if who else "unknown"
        )
    except CommandError as exc:
        return error(exc.status, str(exc))
    return json_response({"commands": made}, status=201)


@requires("viewer")
async def commands(request: web.Request) -> web.StreamResponse:
    """Commands, newest first: ``host``, ``state``, ``limit``."""
    q = request.query
    if q.get("state") and q["state"] not in STATES:
        return error(400, f"state must be one of {', '.join(STATES)}")
    try:
        limit = max(1, min(int(q.get("limit", "200")), 5000))
    except ValueError:
        return error(400, "limit must be a whole number")
    rows = await request.app[INGEST].store.readers.run(
        lambda conn: list_commands(conn, host=q.get("host"), state=q.get("state"), limit=limit)
    )
    return json_response({"commands": rows})


@requires("viewer")
async def command(request: web.Request) -> web.StreamResponse:
    """One command with its state and result."""
    cid = request.match_info["id"]
    rows = await request.app[INGEST].store.readers.run(
        lambda conn: list_commands(conn, host=None, state=None, limit=1, command_id=cid)
    )
    if not rows:
        return error(404, f"there is no command {cid!r}")
    return json_response(rows[0])


async def agent_commands(request: web.Request) -> web.StreamResponse:
    """The agent's long-poll: its commands now, or as soon as one is issued within ``wait`` seconds."""
    host = await agent_auth(request)
    if isinstance(host, web.Response):
        return host
    try:
        wait = min(max(float(request.query.get("wait", "0")), 0.0), MAX_WAIT_S)
    except ValueError:
        return error(400, "wait must be seconds, e.g. wait=25")

    def alive() -> bool:
        return request.transport is not None and not request.transport.is_closing()

    got = await request.app[COMMANDS].wait_and_take(host.id, wait, alive)
    return json_response({"commands": got})


async def agent_result(request: web.Request) -> web.StreamResponse:
    """An agent reports on a command it was sent: running, succeeded, failed or rejected."""
    host = await agent_auth(request)
    if isinstance(host, web.Response):
        return host
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, 'send a JSON object like {"state": "succeeded", "exit_code": 0}')
    try:
        row = await request.app[COMMANDS].report(host.id, request.match_info["id"], body)
    except CommandError as exc:
        return error(exc.status, str(exc))
    return json_response({"command": row})


async def _expire_loop(cmds: Commands, every_s: float = 5.0) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await cmds.expire()
        except Exception:
            log.exception("expiring commands failed; retrying")


def commands_context(
    data_dir: Any, wall: Callable[[], float]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context of remote commands (after the storage's)."""

    async def resource(app: web.Application) -> AsyncIterator[None]:
        ing = app[INGEST]
        cmds = Commands(ing.store, await asyncio.to_thread(load_or_create, data_dir), wall)
        await cmds.load()
        app[COMMANDS] = cmds
        ing.pending_commands = cmds.take
        if (hub := app.get(HUB)) is not None:
            cmds.listeners.append(hub.command)
        task = asyncio.create_task(_expire_loop(cmds))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return resource


async def on_shutdown(app: web.Application) -> None:
    """Before the server waits for open requests: long-polls answer now."""
    if (cmds := app.get(COMMANDS)) is not None:
        cmds.close()
