"""Agents, enrollment tokens, API tokens, users and the audit log, as functions on a connection.

The admin CLI calls them on its own connection; the server calls them inside writer jobs (writes)
or reader threads (lookups). Secrets are returned once, at creation, and stored only as hashes.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, NamedTuple

from . import auth


class AccountError(ValueError):
    """A request about accounts that cannot be done, as one sentence; ``status`` for the API."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class HostAuth(NamedTuple):
    id: int
    name: str
    token_hash: bytes | None
    revoked: bool


class TokenAuth(NamedTuple):
    id: str
    token_hash: bytes
    role: str
    name: str
    revoked: bool


def audit(conn: sqlite3.Connection, now_ms: int, actor: str, action: str, **detail: Any) -> None:
    conn.execute(
        "INSERT INTO audit (ts, actor, action, detail) VALUES (?, ?, ?, ?)",
        (now_ms, actor, action, json.dumps(detail, default=str, sort_keys=True)),
    )


def _check_name(name: str, what: str) -> None:
    if not auth.valid_name(name):
        raise AccountError(
            f"{what} {name!r} is not a valid name; use 1-63 letters, digits, '.', '_' or '-' "
            "starting with a letter or digit"
        )


def add_host(conn: sqlite3.Connection, name: str, now_ms: int, actor: str = "admin") -> str:
    """Create (or re-key a revoked) agent ``name``; returns its token."""
    _check_name(name, "agent name")
    row = conn.execute("SELECT id, revoked_ms FROM hosts WHERE name = ?", (name,)).fetchone()
    token, digest = auth.make_token(auth.AGENT_PREFIX, name)
    if row is None:
        conn.execute(
            "INSERT INTO hosts (name, token_hash, created_ms) VALUES (?, ?, ?)", (name, digest, now_ms)
        )
    elif row[1] is not None:
        conn.execute("UPDATE hosts SET token_hash = ?, revoked_ms = NULL WHERE id = ?", (digest, row[0]))
    else:
        raise AccountError(
            f"an agent named {name!r} exists already; revoke it first or choose another name", 409
        )
    audit(conn, now_ms, actor, "add-agent", agent=name)
    return token


def revoke_host(conn: sqlite3.Connection, name: str, now_ms: int, actor: str = "admin") -> None:
    cur = conn.execute(
        "UPDATE hosts SET revoked_ms = ?, token_hash = NULL WHERE name = ? AND revoked_ms IS NULL",
        (now_ms, name),
    )
    if cur.rowcount == 0:
        raise AccountError(f"there is no active agent named {name!r}; see list-agents", 404)
    audit(conn, now_ms, actor, "revoke-agent", agent=name)


def list_hosts(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT name, created_ms, revoked_ms, last_seen_ms, interval_ms FROM hosts ORDER BY name"
    ).fetchall()
    keys = ("name", "created_ms", "revoked_ms", "last_seen_ms", "interval_ms")
    return [dict(zip(keys, row)) for row in rows]


def host_auth(conn: sqlite3.Connection, name: str) -> HostAuth | None:
    row = conn.execute(
        "SELECT id, name, token_hash, revoked_ms FROM hosts WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else HostAuth(row[0], row[1], row[2], row[3] is not None)


def add_enrollment(
    conn: sqlite3.Connection, now_ms: int, *, ttl_s: float = 86400, uses: int = 1, actor: str = "admin"
) -> str:
    if uses < 1:
        raise AccountError("uses must be at least 1")
    ident = auth.new_id()
    token, digest = auth.make_token(auth.ENROLL_PREFIX, ident)
    conn.execute(
        "INSERT INTO enrollments (id, token_hash, created_ms, expires_ms, uses_left) VALUES (?, ?, ?, ?, ?)",
        (ident, digest, now_ms, now_ms + int(ttl_s * 1000), uses),
    )
    audit(conn, now_ms, actor, "add-enrollment", id=ident, uses=uses, ttl_s=ttl_s)
    return token


def redeem_enrollment(conn: sqlite3.Connection, token: str, name: str, now_ms: int) -> str:
    """Use one use of an enrollment token to create agent ``name``; returns the agent's token."""
    parts = auth.split_token(token, auth.ENROLL_PREFIX)
    row = None
    if parts is not None:
        row = conn.execute(
            "SELECT token_hash, expires_ms, uses_left FROM enrollments WHERE id = ?", (parts[0],)
        ).fetchone()
    if parts is None or row is None or not auth.matches(parts[1], row[0]):
        raise AccountError("the enrollment token is unknown; ask an admin for a new one", 403)
    if row[2] < 1 or row[1] <= now_ms:
        raise AccountError("the enrollment token is used up or expired; ask an admin for a new one", 403)
    agent_token = add_host(conn, name, now_ms, actor=f"enrollment:{parts[0]}")
    conn.execute("UPDATE enrollments SET uses_left = uses_left - 1 WHERE id = ?", (parts[0],))
    return agent_token


def add_api_token(conn: sqlite3.Connection, role: str, name: str, now_ms: int, actor: str = "admin") -> str:
    if role not in auth.ROLES:
        raise AccountError(f"role {role!r} is unknown; use one of {', '.join(auth.ROLES)}")
    ident = auth.new_id()
    token, digest = auth.make_token(auth.API_PREFIX, ident)
    conn.execute(
        "INSERT INTO api_tokens (id, token_hash, role, name, created_ms) VALUES (?, ?, ?, ?, ?)",
        (ident, digest, role, name, now_ms),
    )
    audit(conn, now_ms, actor, "add-token", id=ident, role=role, name=name)
    return token


def token_auth(conn: sqlite3.Connection, ident: str) -> TokenAuth | None:
    row = conn.execute(
        "SELECT id, token_hash, role, name, revoked_ms FROM api_tokens WHERE id = ?", (ident,)
    ).fetchone()
    return None if row is None else TokenAuth(row[0], row[1], row[2], row[3], row[4] is not None)


def list_tokens(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    keys = ("id", "role", "name", "created_ms", "revoked_ms")
    rows = conn.execute("SELECT id, role, name, created_ms, revoked_ms FROM api_tokens ORDER BY created_ms")
    return [dict(zip(keys, row)) for row in rows]


def revoke_token(conn: sqlite3.Connection, ident: str, now_ms: int, actor: str = "admin") -> None:
    cur = conn.execute(
        "UPDATE api_tokens SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL", (now_ms, ident)
    )
    if cur.rowcount == 0:
        raise AccountError(f"there is no active API token with id {ident!r}; see list-tokens", 404)
    audit(conn, now_ms, actor, "revoke-token", id=ident)


def add_user(
    conn: sqlite3.Connection, name: str, role: str, password: str, now_ms: int, *, actor: str = "admin"
) -> None:
    _check_name(name, "user name")
    if role not in auth.ROLES:
        raise AccountError(f"role {role!r} is unknown; use one of {', '.join(auth.ROLES)}")
    try:
        digest = auth.hash_password(password)
    except ValueError as exc:
        raise AccountError(str(exc)) from None
    try:
        conn.execute(
            "INSERT INTO users (name, password_hash, role, created_ms) VALUES (?, ?, ?, ?)",
            (name, digest, role, now_ms),
        )
    except sqlite3.IntegrityError:
        raise AccountError(f"a user named {name!r} exists already; choose another name", 409) from None
    audit(conn, now_ms, actor, "add-user", user=name, role=role)


def list_users(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    keys = ("name", "role", "created_ms", "disabled")
    return [
        dict(zip(keys, row)) for row in conn.execute("SELECT name, role, created_ms, disabled FROM users")
    ]
