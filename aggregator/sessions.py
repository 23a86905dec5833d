"""Browser sessions: sign-in with a password, the session cookie, CSRF tokens, failed-login limits.

A session id is 256 random bits, sent as the ``edgewatch_session`` cookie (HttpOnly, SameSite=Lax,
Secure under TLS) and stored only as its SHA-256 in ``sessions``, with the user, a CSRF token and
its times. A session ends ``idle_s`` after its last request and ``max_s`` after the sign-in. Known
sessions are cached in memory; the last-seen time is written back at most once a minute.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import accounts, auth
from .auth import Limiter

COOKIE = "edgewatch_session"
TOUCH_EVERY_MS = 60_000
MAX_TRACKED = 100_000
_DUMMY_HASH: list[str] = []  # a real Argon2id hash, verified for unknown users (same time)

Write = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]
Read = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]


@dataclass
class Session:
    id_hash: bytes
    user: str
    role: str
    csrf: str
    created_ms: int
    seen_ms: int
    written_ms: int = 0  # seen_ms as stored


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


@dataclass
class Sessions:
    write: Write
    read: Read
    idle_s: float
    max_s: float
    wall: Callable[[], float] = time.time
    limiter: Limiter = field(default_factory=Limiter)
    cache: dict[bytes, Session] = field(default_factory=dict)
    checking: int = 0  # password checks running now

    def now_ms(self) -> int:
        return int(self.wall() * 1000)

    async def verify(self, user: str, password: str) -> str | None:
        """The role of an enabled user whose password this is, else None (in the same time either way)."""
        row = await self.read(
            lambda conn: conn.execute(
                "SELECT password_hash, role, disabled FROM users WHERE name = ?", (user,)
            ).fetchone()
        )
        if row is None or row[2]:
            await asyncio.to_thread(_dummy_check, password)
            return None
        if not await asyncio.to_thread(auth.check_password, password, row[0]):
            return None
        return str(row[1])

    async def sign_in(self, user: str, password: str) -> tuple[str, Session] | None:
        """A new session for a valid user and password (``None`` otherwise; the caller counts failures)."""
        role = await self.verify(user, password)
        if role is None:
            return None
        session_id = secrets.token_urlsafe(32)
        now = self.now_ms()
        s = Session(_digest(session_id), user, role, secrets.token_urlsafe(24), now, now, now)

        def store(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sessions (id_hash, user, csrf, created_ms, seen_ms) VALUES (?, ?, ?, ?, ?)",
                (s.id_hash, s.user, s.csrf, s.created_ms, s.seen_ms),
            )
            conn.execute("DELETE FROM sessions WHERE seen_ms < ?", (now - int(self.idle_s * 1000),))
            accounts.audit(conn, now, f"user:{user}", "login")

        await self.write(store)
        self.cache[s.id_hash] = s
        return session_id, s

    async def lookup(self, session_id: str | None) -> Session | None:
        """The live session of a cookie value, touched; ``None`` when unknown or expired."""
        if not session_id or len(session_id) > 100:
            return None
        key = _digest(session_id)
        s = self.cache.get(key)
        if s is None:
            s = await self.read(lambda conn: _load(conn, key))
            if s is None:
                return None
            if len(self.cache) >= MAX_TRACKED:
                self.cache.clear()
            self.cache[key] = s
        now = self.now_ms()
        if now - s.seen_ms > self.idle_s * 1000 or now - s.created_ms > self.max_s * 1000:
            await self.end(s)
            return None
        s.seen_ms = now
        if now - s.written_ms >= TOUCH_EVERY_MS:
            s.written_ms = now
            await self.write(
                lambda conn: conn.execute(
                    "UPDATE sessions SET seen_ms = ? WHERE id_hash = ?", (now, s.id_hash)
                )
            )
        return s

    async def end(self, s: Session) -> None:
        self.cache.pop(s.id_hash, None)
        await self.write(lambda conn: conn.execute("DELETE FROM sessions WHERE id_hash = ?", (s.id_hash,)))

    async def end_user(self, user: str) -> None:
        """End every session of ``user`` (deleted, or a new password)."""
        for key in [k for k, s in self.cache.items() if s.user == user]:
            del self.cache[key]
        await self.write(lambda conn: conn.execute("DELETE FROM sessions WHERE user = ?", (user,)))


SESSIONS = web.AppKey("sessions", Sessions)


def _load(conn: sqlite3.Connection, key: bytes) -> Session | None:
    row = conn.execute(
        "SELECT s.user, u.role, s.csrf, s.created_ms, s.seen_ms FROM sessions s"
        " JOIN users u ON u.name = s.user WHERE s.id_hash = ? AND u.disabled = 0",
        (key,),
    ).fetchone()
    return None if row is None else Session(key, row[0], row[1], row[2], row[3], row[4], row[4])


def _dummy_check(password: str) -> None:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(auth.hash_password(secrets.token_urlsafe(16)))
    auth.check_password(password, _DUMMY_HASH[0])


def csrf_ok(s: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(s.csrf.encode(), given.encode())


def ensure_admin(conn: sqlite3.Connection, password: str | None, now_ms: int) -> str | None:
    """At the first start (no user at all): the user ``admin`` with ``password`` or a random one,
    which is answered (to be printed once); ``None`` when users exist."""
    if conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None:
        return None
    made = password or secrets.token_urlsafe(12)
    accounts.add_user(conn, "admin", "admin", made, now_ms, actor="first-start")
    return made
