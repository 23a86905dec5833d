"""Checking a command, in the order docs/commands.md gives, before anything of it is used.

1. the Ed25519 signature verifies with the pinned key over ``edgewatch-command-v1\\n`` and the
   canonical JSON of the seven signed fields (``bad signature``);
2. ``agent`` is this agent (``for another agent``);
3. the lifetime is at most 60 s and the clock agrees within ``max_skew`` (``lifetime over 60 s``,
   ``issued in the future``, ``expired``);
4. the nonce was never seen (``replayed``), and it is now on disk;
5. the action is on the allowlist (``action not allowed``) and the arguments are exactly its
   parameters with allowed values (``parameter NAME not allowed``).

A signed command whose fields have the wrong types is ``malformed command``. Time comes from
``clock`` (epoch seconds), so tests drive it. ``cryptography`` is imported only once a key is
loaded: an agent whose commands are off never pays for it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from .actions import Action, expand

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from .nonces import NonceStore

DOMAIN = b"edgewatch-command-v1\n"
SIGNED = ("id", "agent", "action", "args", "nonce", "issued", "expires")
ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # it becomes part of the result URL: nothing else may pass
SIGNATURE = re.compile(r"[A-Za-z0-9_-]{86}(?:==)?")  # base64url of 64 bytes, padded or not
MAX_LIFETIME_MS = 60_000
MAX_NONCE_LEN = 256  # characters; stored base64url-encoded, at most 4 bytes each


def signed_bytes(command: Mapping[str, Any]) -> bytes:
    """The bytes the aggregator signs: the domain line, then the signed fields as canonical JSON."""
    fields = {k: command[k] for k in SIGNED}
    return DOMAIN + json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def command_id(command: object) -> str | None:
    """The id a result can be reported under, or ``None`` (such a command is dropped and logged)."""
    if isinstance(command, Mapping):
        cid = command.get("id")
        if isinstance(cid, str) and ID.fullmatch(cid):
            return cid
    return None


def public_key(text: str) -> Ed25519PublicKey:
    """The pinned key from identity.json (base64 of the raw 32 bytes), or ``ValueError``."""
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise ValueError(
            "the pinned aggregator key is not a base64 Ed25519 key; run `edgewatch enroll` again"
        )
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


class Policy(NamedTuple):
    """What a reload may change."""

    actions: Mapping[str, Action]
    max_skew: float  # seconds
    timeout: float  # seconds, for actions that declare none


class Accepted(NamedTuple):
    id: str
    action: Action
    argv: tuple[str, ...]
    timeout: float
    expires_ms: int


class Rejected(NamedTuple):
    id: str
    action: str
    reason: str


class Checker:
    """Thread-safe: commands come from the push answers and from the long-poll."""

    def __init__(
        self,
        *,
        agent_id: str,
        key: Ed25519PublicKey,
        nonces: NonceStore,
        policy: Policy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.agent_id = agent_id
        self.key = key
        self.nonces = nonces
        self.policy = policy
        self.clock = clock
        self._lock = threading.Lock()

    def configure(self, policy: Policy) -> None:
        with self._lock:
            self.policy = policy

    def check(self, command: Mapping[str, Any]) -> Accepted | Rejected:
        cid = command_id(command) or ""
        name = command.get("action")
        name = name[:64] if isinstance(name, str) else ""
        with self._lock:
            reason, accepted = self._check(command, cid, name)
        return accepted if accepted is not None else Rejected(cid, name, reason)

    def _check(self, c: Mapping[str, Any], cid: str, name: str) -> tuple[str, Accepted | None]:
        if not cid or not self._signed(c):
            return "bad signature", None
        nonce, issued, expires = c["nonce"], c["issued"], c["expires"]
        if (
            not isinstance(c["agent"], str)
            or not isinstance(nonce, str)
            or not 0 < len(nonce) <= MAX_NONCE_LEN
            or not all(isinstance(t, int) and not isinstance(t, bool) for t in (issued, expires))
            or expires < issued
        ):
            return "malformed command", None
        if c["agent"] != self.agent_id:
            return "for another agent", None
        now_ms = int(self.clock() * 1000)
        skew_ms = int(self.policy.max_skew * 1000)
        if expires - issued > MAX_LIFETIME_MS:
            return "lifetime over 60 s", None
        if issued > now_ms + skew_ms:
            return "issued in the future", None
        if expires < now_ms - skew_ms:
            return "expired", None
        refused = self.nonces.add(nonce, expires, now_ms=now_ms, skew_ms=skew_ms)
        if refused is not None:
            return refused, None
        action = self.policy.actions.get(name)
        if action is None or c["action"] != name:
            return "action not allowed", None
        argv = expand(action, c["args"])
        if isinstance(argv, str):
            return argv, None
        timeout = action.timeout if action.timeout is not None else self.policy.timeout
        return "", Accepted(cid, action, argv, timeout, expires)

    def _signed(self, c: Mapping[str, Any]) -> bool:
        signature = c.get("signature")
        if not isinstance(signature, str) or not SIGNATURE.fullmatch(signature):
            return False
        if any(k not in c for k in SIGNED):
            return False
        try:
            raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
            message = signed_bytes(c)
        except (ValueError, TypeError):  # binascii.Error and UnicodeEncodeError (a lone surrogate) too
            return False
        from cryptography.exceptions import InvalidSignature

        try:
            self.key.verify(raw, message)
        except InvalidSignature:
            return False
        return True
