"""Credentials: agent, API and enrollment tokens (stored hashed), passwords (Argon2id), roles.

A token is ``<prefix><id>.<secret>``: the id finds the row, and the SHA-256 of the secret is compared
with ``hmac.compare_digest``, so a wrong token costs the same time however much of it is right. The
secrets are 256 random bits, which makes a fast hash the right one; passwords are slow-hashed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

ROLES: Final = ("viewer", "operator", "admin")
RANK: Final = {role: i for i, role in enumerate(ROLES)}
NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

AGENT_PREFIX: Final = "ewa_"
API_PREFIX: Final = "ewt_"
ENROLL_PREFIX: Final = "ewe_"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def matches(secret: str, stored: bytes | None) -> bool:
    """Constant-time comparison of a presented secret with a stored hash (None never matches)."""
    presented = hash_secret(secret)
    return stored is not None and hmac.compare_digest(presented, stored)


def make_token(prefix: str, ident: str) -> tuple[str, bytes]:
    """A new token for ``ident`` and the hash to store."""
    secret = new_secret()
    return f"{prefix}{ident}.{secret}", hash_secret(secret)


def split_token(token: str, prefix: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a token with this prefix, or None when it is not one."""
    if not token.startswith(prefix) or len(token) > 400 or not token.isascii():
        return None
    ident, dot, secret = token[len(prefix) :].rpartition(".")
    if not dot or not ident or not secret:
        return None
    return ident, secret


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def valid_name(name: str) -> bool:
    return NAME_RE.fullmatch(name) is not None


def new_id() -> str:
    return secrets.token_hex(6)


def _hasher():  # type: ignore[no-untyped-def]
    from argon2 import PasswordHasher

    # OWASP: Argon2id, at least 19 MiB of memory and 2 iterations
    return PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("the password is too short; use at least 8 characters")
    return str(_hasher().hash(password))


def check_password(password: str, stored: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False


@dataclass
class Limiter:
    """Failures per key (a user name, a client address) in a sliding window: after ``max_failures``
    within ``window_s`` the key waits until the oldest of them leaves the window. Sign-in uses 5 in
    15 minutes; agent tokens 20 a minute per address."""

    max_failures: int = 5
    window_s: float = 900.0
    clock: Callable[[], float] = time.monotonic
    failures: dict[str, deque[float]] = field(default_factory=dict)
    max_tracked: int = 100_000

    def wait(self, *keys: str) -> float:
        """Seconds until another attempt is allowed (0: now)."""
        now, longest = self.clock(), 0.0
        for key in keys:
            times = self.failures.get(key)
            while times and now - times[0] > self.window_s:
                times.popleft()
            if times is not None and len(times) >= self.max_failures:
                longest = max(longest, self.window_s - (now - times[0]))
        return longest

    def failed(self, *keys: str) -> None:
        if len(self.failures) >= self.max_tracked:
            self.failures.clear()
        for key in keys:
            self.failures.setdefault(key, deque(maxlen=self.max_failures)).append(self.clock())

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self.failures.pop(key, None)
