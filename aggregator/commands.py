"""Remote commands on the aggregator's side: issue (signed), hand over, take results (docs/commands.md).

A command is checked against the actions the host advertises in its facts (``facts.actions``),
signed with the aggregator's Ed25519 key, and stored ``queued``. The agent gets it in the answer
to its next push or to its long-poll (``delivered``) and reports ``running`` and then the outcome.
A command that was not running by its expiry becomes ``expired``. Hosts with waiting commands are
kept in memory, so a push of a host with none costs no query.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import accounts
from .store import Store

DOMAIN = b"edgewatch-command-v1\n"
LIFETIME_MS = 60_000
MAX_OUTPUT = 64 * 1024
MAX_PATTERN = 200  # characters of an advertised parameter pattern
MAX_VALUE = 256  # characters of a parameter value
FINAL = ("succeeded", "failed", "rejected", "expired")
STATES = ("queued", "delivered", "running", *FINAL)
# what a report may move a command from, by the state it reports
# a command marked expired never starts: its "running" gets 409 and the agent does not run it, so an
# operator who sees "expired" and issues it again never gets it twice
MOVES = {
    "running": ("delivered",),
    "succeeded": ("running",),
    "failed": ("delivered", "running"),
    "rejected": ("delivered", "running", "expired"),
}
SIGNED = ("id", "agent", "action", "args", "nonce", "issued", "expires")


class CommandError(ValueError):
    """A command that cannot be issued or a report that cannot be taken; ``status`` for the API."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def signed_bytes(fields: Mapping[str, Any]) -> bytes:
    """What the signature covers: the domain line and the JSON of the signed fields, keys sorted."""
    doc = {k: fields[k] for k in SIGNED}
    return DOMAIN + json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def check_args(facts: Mapping[str, Any], host: str, action: str, args: Any) -> dict[str, str]:
    """``args`` when ``action`` with them is on the host's advertised allowlist, else CommandError."""
    actions = facts.get("actions") if isinstance(facts, Mapping) else None
    if isinstance(actions, str):  # host facts are strings on the wire: the list as JSON
        try:
            actions = json.loads(actions)
        except json.JSONDecodeError:
            actions = None
    if not isinstance(actions, list):
        raise CommandError(f"host {host!r} does not accept commands; enable [commands] in its agent config")
    spec = next((a for a in actions if isinstance(a, dict) and a.get("name") == action), None)
    if spec is None:
        offered = ", ".join(str(a.get("name")) for a in actions if isinstance(a, dict)) or "none"
        raise CommandError(f"host {host!r} does not allow the action {action!r}; it allows: {offered}")
    if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
        raise CommandError('args must be an object of strings, e.g. {"unit": "nginx.service"}')
    params = spec.get("params") or {}
    if not isinstance(params, dict):
        raise CommandError(f"host {host!r} advertises the action {action!r} wrongly; check its agent")
    if set(args) != set(params):
        raise CommandError(
            f"the action {action!r} takes exactly the parameters: {', '.join(params) or 'none'}"
        )
    for name, value in args.items():
        allowed = params[name]
        if isinstance(allowed, list):
            ok = value in allowed
        else:  # the agent's pattern: bounded, so a pathological one cannot stall the aggregator long
            pattern = str(allowed)[3:] if str(allowed).startswith("re:") else None
            try:
                ok = (
                    pattern is not None
                    and len(pattern) <= MAX_PATTERN
                    and len(value) <= MAX_VALUE
                    and not value.startswith("-")
                    and re.fullmatch(pattern, value) is not None
                )
            except re.error:
                ok = False
        if not ok:
            raise CommandError(f"parameter {name} = {value!r} is not one the host allows for {action!r}")
    return dict(args)


@dataclass
class Commands:
    store: Store
    key: Ed25519PrivateKey
    wall: Callable[[], float]
    waiting: set[int] = field(default_factory=set)  # hosts with queued commands
    wakers: dict[int, asyncio.Event] = field(default_factory=dict)
    listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    closing: bool = False  # the aggregator stops: long-polls answer at once, empty

    def close(self) -> None:
        self.closing = True
        for waker in self.wakers.values():
            waker.set()

    def now_ms(self) -> int:
        return int(self.wall() * 1000)

    async def load(self) -> None:
        now = self.now_ms()
        rows = await self.store.readers.run(
            lambda conn: conn.execute(
                "SELECT DISTINCT host FROM commands WHERE state = 'queued' AND expires_ms > ?", (now,)
            ).fetchall()
        )
        self.waiting = {r[0] for r in rows}

    def _tell(self, row: dict[str, Any]) -> None:
        for listen in self.listeners:
            listen(row)

    async def issue(
        self, hosts: Sequence[tuple[int, str, Mapping[str, Any]]], action: str, args: Any, actor: str
    ) -> list[dict[str, Any]]:
        """One signed command per host (every host must allow it, or none is issued)."""
        checked = [(hid, name, check_args(facts, name, action, args)) for hid, name, facts in hosts]
        now = self.now_ms()
        made = []
        for hid, name, a in checked:
            fields = {
                "id": secrets.token_hex(8),
                "agent": name,
                "action": action,
                "args": a,
                "nonce": b64url(secrets.token_bytes(16)),
                "issued": now,
                "expires": now + LIFETIME_MS,
            }
            fields["signature"] = b64url(self.key.sign(signed_bytes(fields)))
            made.append((hid, fields))

        def write(conn: sqlite3.Connection) -> None:
            for hid, f in made:
                conn.execute(
                    "INSERT INTO commands (id, host, action, args, issued_ms, expires_ms, state, issued_by,"
                    " updated_ms, signed) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                    (
                        f["id"],
                        hid,
                        action,
                        json.dumps(f["args"]),
                        now,
                        f["expires"],
                        actor,
                        now,
                        json.dumps(f),
                    ),
                )
                accounts.audit(
                    conn, now, actor, "command", id=f["id"], host=f["agent"], command=action, args=f["args"]
                )

        await self.store.write(write)
        out = []
        for hid, f in made:
            self.waiting.add(hid)
            if (waker := self.wakers.get(hid)) is not None:
                waker.set()
            row = _public(f, "queued", actor, now, None)
            self._tell(row)
            out.append(row)
        return out

    async def take(self, host: int) -> list[dict[str, Any]]:
        """The host's queued, unexpired commands as sent to the agent; they become ``delivered``."""
        if host not in self.waiting:
            return []
        self.waiting.discard(host)
        now = self.now_ms()

        def write(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
            rows = conn.execute(
                "SELECT id, signed, issued_by FROM commands"
                " WHERE host = ? AND state = 'queued' AND expires_ms > ? ORDER BY issued_ms",
                (host, now),
            ).fetchall()
            conn.executemany(
                "UPDATE commands SET state = 'delivered', updated_ms = ? WHERE id = ?",
                [(now, r[0]) for r in rows],
            )
            return rows

        rows = await self.store.write(write)
        out = []
        for _, signed, actor in rows:
            f = json.loads(signed)
            out.append(f)
            self._tell(_public(f, "delivered", actor, now, None))
        return out

    async def wait_and_take(
        self, host: int, wait_s: float, alive: Callable[[], bool] = lambda: True
    ) -> list[dict[str, Any]]:
        """Commands for the host now, or as soon as one is issued within ``wait_s``; nothing when
        ``alive()`` says the asking connection went away meanwhile (its agent would never get them)."""
        got = await self.take(host) if not self.closing else []
        if got or wait_s <= 0 or self.closing:
            return got
        waker = self.wakers.setdefault(host, asyncio.Event())
        waker.clear()
        try:
            await asyncio.wait_for(waker.wait(), wait_s)
        except TimeoutError:
            return []
        finally:
            if self.wakers.get(host) is waker:
                del self.wakers[host]
        return [] if self.closing or not alive() else await self.take(host)

    async def report(self, host: int, command_id: str, body: Any) -> dict[str, Any]:
        """Take an agent's report on a command it was sent; CommandError for anything else."""
        if not isinstance(body, dict) or body.get("state") not in MOVES:
            raise CommandError(f"state must be one of {', '.join(MOVES)}")
        state = body["state"]
        result = _result(body)
        now = self.now_ms()

        def write(conn: sqlite3.Connection) -> tuple[dict[str, Any], str, str]:
            row = conn.execute(
                "SELECT state, signed, issued_by, result FROM commands WHERE id = ? AND host = ?",
                (command_id, host),
            ).fetchone()
            if row is None:
                raise CommandError(f"no command {command_id!r} was sent to this agent", 404)
            old, signed, actor, _ = row
            if old == state or (state == "running" and old in FINAL):
                return json.loads(signed), old, actor  # a repeated or late report: taken once
            if old not in MOVES[state]:
                raise CommandError(f"the command is {old}; it cannot become {state}", 409)
            conn.execute(
                "UPDATE commands SET state = ?, updated_ms = ?, result = ? WHERE id = ?",
                (state, now, json.dumps(result) if state != "running" else None, command_id),
            )
            if state != "running":
                accounts.audit(
                    conn,
                    now,
                    f"agent:{json.loads(signed)['agent']}",
                    "command-result",
                    id=command_id,
                    issued_by=actor,
                    state=state,
                    exit_code=result.get("exit_code"),
                    reason=result.get("reason"),
                )
            return json.loads(signed), state, actor

        signed, new_state, actor = await self.store.write(write)
        row = _public(signed, new_state, actor, now, result if new_state != "running" else None)
        self._tell(row)
        return row

    async def expire(self) -> int:
        """Commands not running by their expiry become ``expired``; how many."""
        now = self.now_ms()

        def write(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = conn.execute(
                "SELECT signed, issued_by FROM commands"
                " WHERE state IN ('queued', 'delivered') AND expires_ms <= ?",
                (now,),
            ).fetchall()
            conn.execute(
                "UPDATE commands SET state = 'expired', updated_ms = ? WHERE state IN ('queued', 'delivered')"
                " AND expires_ms <= ?",
                (now, now),
            )
            return rows

        rows = await self.store.write(write)
        for signed, actor in rows:
            self._tell(_public(json.loads(signed), "expired", actor, now, None))
        return len(rows)


def _result(body: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("exit_code", "duration_ms"):
        if isinstance(body.get(key), int) and not isinstance(body.get(key), bool):
            out[key] = body[key]
    for key in ("stdout", "stderr", "reason"):
        if isinstance(body.get(key), str):
            out[key] = body[key][:MAX_OUTPUT]
    out["truncated"] = bool(body.get("truncated")) or any(
        isinstance(body.get(k), str) and len(body[k]) > MAX_OUTPUT for k in ("stdout", "stderr")
    )
    return out


def _public(
    f: Mapping[str, Any], state: str, actor: str, at: int, result: dict[str, Any] | None
) -> dict[str, Any]:
    """A command as the API shows it (no nonce or signature)."""
    return {
        "id": f["id"],
        "host": f["agent"],
        "action": f["action"],
        "args": f["args"],
        "state": state,
        "issued": f["issued"],
        "expires": f["expires"],
        "issued_by": actor,
        "updated": at,
        "result": result,
    }


def list_commands(
    conn: sqlite3.Connection,
    *,
    host: str | None,
    state: str | None,
    limit: int,
    command_id: str | None = None,
) -> list[dict[str, Any]]:
    where, params = [], []
    for sql, value in (("h.name = ?", host), ("c.state = ?", state), ("c.id = ?", command_id)):
        if value:
            where.append(sql)
            params.append(value)
    # the WHERE terms are the fixed strings above; the values are parameters
    clause = " WHERE " + " AND ".join(where) if where else ""
    query = (
        "SELECT c.signed, c.state, c.issued_by, c.updated_ms, c.result FROM commands c"  # noqa: S608
        f" JOIN hosts h ON h.id = c.host{clause} ORDER BY c.issued_ms DESC LIMIT ?"
    )
    return [
        _public(json.loads(signed), state_, actor, at, json.loads(result) if result else None)
        for signed, state_, actor, at, result in conn.execute(query, (*params, limit))
    ]
