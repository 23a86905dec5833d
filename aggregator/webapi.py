"""Sign-in and administration for the web UI: login, logout, me; users, API tokens, agents,
enrollments, switching rules on and off (docs/web.md).

Login answers the session cookie and the session's CSRF token; failed logins are limited per user
name and per client address. Administration needs the admin role; every change goes to the audit
log with who made it.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
from typing import Any

from aiohttp import web

from . import accounts, auth
from .alertapi import ALERTING, RULE_SWITCHES
from .api import API, Who, actor_of, caller, csrf_refusal, json_body, requires, same_origin
from .ingest import INGEST, error
from .jsonout import json_response
from .live import HUB
from .sessions import COOKIE, SESSIONS

MAX_LOGIN_BYTES = 4096
MAX_CHECKING = 4  # password checks (Argon2id, 19 MiB each) at once; more wait outside with a 429


def _me(user: str, role: str, csrf: str) -> dict[str, Any]:
    return {"user": user, "role": role, "csrf": csrf}


async def login(request: web.Request) -> web.StreamResponse:
    """Sign in with a user name and password: the session cookie and the CSRF token."""
    if not same_origin(request):
        return error(403, "this sign-in comes from another site (Origin); it is refused")
    raw = await request.content.read(MAX_LOGIN_BYTES + 1)
    try:
        body = json.loads(raw) if len(raw) <= MAX_LOGIN_BYTES else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return error(400, 'send a JSON object like {"username": "admin", "password": "..."}')
    user, password = body.get("username"), body.get("password")
    if not isinstance(user, str) or not isinstance(password, str) or not auth.valid_name(user):
        return error(400, "give username (a user name) and password as strings")
    sessions = request.app[SESSIONS]
    # the hard limit is per user and address, so nobody can lock a user out from elsewhere; the
    # attempt counts before the password is checked, so parallel guesses cannot slip through
    keys = (f"user:{user.lower()}@{request.remote}", f"addr:{request.remote}")
    if (wait := sessions.limiter.wait(*keys)) > 0:
        return error(
            429,
            f"too many failed sign-ins; try again in {wait / 60:.0f} min",
            {"Retry-After": str(max(1, round(wait)))},
        )
    if sessions.checking >= MAX_CHECKING:
        return error(429, "too many sign-ins at once; try again in a few seconds", {"Retry-After": "5"})
    sessions.limiter.failed(*keys)
    sessions.checking += 1
    try:
        made = await sessions.sign_in(user, password)
    finally:
        sessions.checking -= 1
    if made is None:
        now = sessions.now_ms()
        await request.app[INGEST].store.write(
            lambda conn: accounts.audit(conn, now, f"addr:{request.remote}", "login-failed", user=user)
        )
        return error(401, "the user name or password is wrong")
    sessions.limiter.succeeded(*keys)
    session_id, s = made
    response = json_response(_me(s.user, s.role, s.csrf))
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="Lax",
        secure=request.secure,
        path="/",
        max_age=int(sessions.max_s),
    )
    return response


async def _session_who(request: web.Request) -> Who | web.Response:
    who = await caller(request)
    if who is None:
        return error(401, "sign in first")
    if (refused := csrf_refusal(request, who)) is not None:
        return refused
    return who


async def logout(request: web.Request) -> web.StreamResponse:
    """End this browser's session."""
    who = await _session_who(request)
    if isinstance(who, web.Response):
        return who
    if who.session is not None:
        await request.app[SESSIONS].end(who.session)
    response = json_response({"signed_out": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.StreamResponse:
    """Who is signed in: user, role and the CSRF token for state-changing requests."""
    who = await caller(request)
    if who is None:
        return error(401, "sign in first")
    if who.session is not None:
        return json_response(_me(who.session.user, who.role, who.session.csrf))
    return json_response(_me(who.actor, who.role, ""))


async def change_password(request: web.Request) -> web.StreamResponse:
    """``{"old", "new"}``: a new password for the signed-in user; every other session of theirs ends."""
    who = await _session_who(request)
    if isinstance(who, web.Response):
        return who
    if who.session is None:
        return error(400, "an API token has no password; sign in as the user")
    body = await json_body(request, '{"old": "...", "new": "..."}')
    if isinstance(body, web.Response):
        return body
    old, new = body.get("old"), body.get("new")
    if not isinstance(old, str) or not isinstance(new, str):
        return error(400, "give old and new as strings")
    sessions, user = request.app[SESSIONS], who.session.user
    if await sessions.verify(user, old) is None:
        return error(403, "the old password is wrong")
    try:
        digest = auth.hash_password(new)
    except ValueError as exc:
        return error(400, str(exc))
    now = sessions.now_ms()

    def write(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE users SET password_hash = ? WHERE name = ?", (digest, user))
        accounts.audit(conn, now, who.actor, "change-password", user=user)

    await request.app[INGEST].store.write(write)
    await sessions.end_user(user)
    made = await sessions.sign_in(user, new)
    response = json_response({"changed": True, **(_me(user, who.role, made[1].csrf) if made else {})})
    if made is not None:
        response.set_cookie(
            COOKIE,
            made[0],
            httponly=True,
            samesite="Lax",
            secure=request.secure,
            path="/",
            max_age=int(sessions.max_s),
        )
    return response


# --- administration ---------------------------------------------------------------------------


async def _write(request: web.Request, fn: Any) -> Any:
    try:
        return await request.app[INGEST].store.write(fn)
    except accounts.AccountError as exc:
        return error(exc.status, str(exc))


@requires("admin")
async def users(request: web.Request) -> web.StreamResponse:
    """Users: name, role, created, disabled."""
    rows = await request.app[INGEST].store.readers.run(accounts.list_users)
    return json_response({"users": rows})


@requires("admin")
async def add_user(request: web.Request) -> web.StreamResponse:
    """``{"name", "role", "password"?}``; without a password one is made up and answered once."""
    body = await json_body(request, '{"name": "alice", "role": "operator"}')
    if isinstance(body, web.Response):
        return body
    name, role, password = body.get("name"), body.get("role", "viewer"), body.get("password")
    if not isinstance(name, str) or not isinstance(role, str) or not isinstance(password, str | None):
        return error(400, "give name and role (viewer, operator or admin) as strings, password optional")
    made = password or auth.new_secret()[:16]
    now, actor = request.app[API].now_ms(), await actor_of(request)
    done = await _write(request, lambda conn: accounts.add_user(conn, name, role, made, now, actor=actor))
    if isinstance(done, web.Response):
        return done
    answer: dict[str, Any] = {"name": name, "role": role}
    if not password:
        answer["password"] = made
    return json_response(answer, status=201)


@requires("admin")
async def delete_user(request: web.Request) -> web.StreamResponse:
    """Delete a user (never the last admin) and end their sessions."""
    name = request.match_info["name"]
    now, actor = request.app[API].now_ms(), await actor_of(request)

    def write(conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT role FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise accounts.AccountError(f"there is no user named {name!r}", 404)
        admins = conn.execute("SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0").fetchone()[
            0
        ]
        if row[0] == "admin" and admins <= 1:
            raise accounts.AccountError("this is the last admin; make another admin first", 409)
        conn.execute("DELETE FROM users WHERE name = ?", (name,))
        gone = conn.execute("DELETE FROM push_subscriptions WHERE owner = ?", (f"user:{name}",)).rowcount
        accounts.audit(conn, now, actor, "delete-user", user=name, push_subscriptions=gone)

    done = await _write(request, write)
    if isinstance(done, web.Response):
        return done
    await request.app[SESSIONS].end_user(name)
    await request.app[HUB].close_actor(f"user:{name}")
    return json_response({"deleted": name})


@requires("admin")
async def tokens(request: web.Request) -> web.StreamResponse:
    """API tokens, never their secrets."""
    rows = await request.app[INGEST].store.readers.run(accounts.list_tokens)
    return json_response({"tokens": rows})


@requires("admin")
async def add_token(request: web.Request) -> web.StreamResponse:
    """``{"role", "name"}`` → the token, shown this once."""
    body = await json_body(request, '{"role": "viewer", "name": "grafana"}')
    if isinstance(body, web.Response):
        return body
    role, name = body.get("role"), body.get("name", "")
    if not isinstance(role, str) or role not in auth.ROLES or not isinstance(name, str) or len(name) > 100:
        return error(400, f"role must be one of {', '.join(auth.ROLES)}; name a string up to 100 characters")
    now, actor = request.app[API].now_ms(), await actor_of(request)
    token = await _write(request, lambda conn: accounts.add_api_token(conn, role, name, now, actor=actor))
    if isinstance(token, web.Response):
        return token
    return json_response({"token": token, "role": role, "name": name}, status=201)


@requires("admin")
async def revoke_token(request: web.Request) -> web.StreamResponse:
    """Revoke an API token (it stops working within 30 s)."""
    ident = request.match_info["id"]
    now, actor = request.app[API].now_ms(), await actor_of(request)
    done = await _write(request, lambda conn: accounts.revoke_token(conn, ident, now, actor=actor))
    if isinstance(done, web.Response):
        return done
    request.app[API].tokens.pop(ident, None)
    await request.app[HUB].close_token(ident)
    return json_response({"revoked": ident})


@requires("admin")
async def agents(request: web.Request) -> web.StreamResponse:
    """Agents: name, created, last seen, interval, revoked."""
    rows = await request.app[INGEST].store.readers.run(accounts.list_hosts)
    return json_response({"agents": rows})


@requires("admin")
async def revoke_agent(request: web.Request) -> web.StreamResponse:
    """Revoke an agent's token: its pushes get 401; its data stays."""
    name = request.match_info["name"]
    now, actor = request.app[API].now_ms(), await actor_of(request)
    done = await _write(request, lambda conn: accounts.revoke_host(conn, name, now, actor=actor))
    if isinstance(done, web.Response):
        return done
    request.app[INGEST].forget_host(name)
    return json_response({"revoked": name})


@requires("admin")
async def add_enrollment(request: web.Request) -> web.StreamResponse:
    """``{"uses", "ttl"}`` (ttl in seconds) → an enrollment token and the line to paste on a host."""
    body = await json_body(request, '{"uses": 1, "ttl": 86400}')
    if isinstance(body, web.Response):
        return body
    uses, ttl = body.get("uses", 1), body.get("ttl", 86400)
    if not isinstance(uses, int) or not 1 <= uses <= 100_000:
        return error(400, "uses must be a whole number from 1 to 100000")
    if not isinstance(ttl, int | float) or not 60 <= ttl <= 365 * 86400:
        return error(400, "ttl must be seconds from 60 to 31536000")
    now, actor = request.app[API].now_ms(), await actor_of(request)
    token = await _write(
        request, lambda conn: accounts.add_enrollment(conn, now, ttl_s=float(ttl), uses=uses, actor=actor)
    )
    if isinstance(token, web.Response):
        return token
    url = request.app[API].origin or f"{request.scheme}://{request.host}"
    # packaging/install-agent.sh, served at /install.sh (downloads.py); the token goes in the
    # environment, not in an argument every user on the host could read in the process list
    insecure = " --insecure" if url.startswith("http://") else ""
    command = (
        f"curl -fsSL {shlex.quote(url + '/install.sh')} | EDGEWATCH_ENROLL_TOKEN={shlex.quote(token)}"
        f" sudo --preserve-env=EDGEWATCH_ENROLL_TOKEN sh -s -- --aggregator {shlex.quote(url)}{insecure}"
    )
    return json_response(
        {"token": token, "uses": uses, "expires": now + int(ttl * 1000), "url": url, "command": command},
        status=201,
    )


@requires("admin")
async def switch_rule(request: web.Request) -> web.StreamResponse:
    """Switch a rule on or off; kept in the database over the rules file, across reloads."""
    al = request.app[ALERTING]
    name, on = request.match_info["name"], request.path.endswith("/enable")
    if al.engine.rules.get(name) is None and name not in al.switches:
        return error(404, f"no rule is named {name!r}; see /api/v1/rules")
    now, actor = request.app[API].now_ms(), await actor_of(request)
    switches = {**al.switches, name: on}
    retired = al.apply_switches(switches, now)

    def write(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (RULE_SWITCHES, json.dumps(switches))
        )
        accounts.audit(conn, now, actor, "enable-rule" if on else "disable-rule", rule=name)

    await request.app[INGEST].store.write(write)
    await al.engine.flush()
    return json_response({"rule": name, "enabled": on, "retired": retired})
