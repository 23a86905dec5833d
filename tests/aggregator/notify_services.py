"""Real HTTP services on 127.0.0.1 for the notification channels' tests.

- `PushService`: a Web Push service. For each POST it checks the VAPID ``Authorization: vapid
  t=JWT, k=KEY`` header on its own (ES256 signature against ``k``, ``aud`` = its origin, ``exp`` in
  the future and at most 24 h ahead, ``sub`` a mailto: or https: contact; ``k`` the expected
  application server key when one is given), decrypts the RFC 8291 ``aes128gcm`` body with the
  subscriber's private key and auth secret (``http_ece``), and records the decrypted JSON. It can
  be told to answer a status (404, 410, 429 with Retry-After, 500, …) for one subscriber or all.
- `AlertmanagerReceiver`: Alertmanager's ``POST /api/v2/alerts``, checking the body as it does.
- `WebhookReceiver`: records JSON POSTs and, with a secret, checks ``X-Edgewatch-Signature``
  (HMAC-SHA256 over ``timestamp + "." + body``) and the timestamp, answering 401 when either is wrong.
  Also the sink for Apprise's ``json://`` plugin.

Each is an async context manager that serves on a free port of 127.0.0.1 while it is open.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Self

import http_ece
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

DAY = 86_400


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Rejected(ValueError):
    """A request the push service refuses: ``status`` 403 for authentication, 400 for the body."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    def __init__(self) -> None:
        self.app = web.Application()
        self._server: TestServer | None = None

    async def __aenter__(self) -> Self:
        self._server = TestServer(self.app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.close()

    def url(self, path: str) -> str:
        assert self._server is not None
        return str(self._server.make_url(path))

    @property
    def port(self) -> int:
        assert self._server is not None
        assert self._server.port is not None
        return self._server.port

    @property
    def origin(self) -> str:
        return self.url("/").rstrip("/")


# --- Web Push -------------------------------------------------------------------------------


@dataclass
class Subscriber:
    """A browser's side of a push subscription: the ECDH key pair and the auth secret."""

    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives the page."""
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"endpoint": self.endpoint, "keys": {"p256dh": b64e(point), "auth": b64e(self.auth)}}


@dataclass
class Received:
    subscriber: str
    payload: dict[str, Any]
    plaintext_bytes: int
    body_bytes: int
    headers: dict[str, str]
    claims: dict[str, Any]


class PushService(LocalServer):
    def __init__(self, expect_key: str | None = None) -> None:
        super().__init__()
        self.expect_key = expect_key
        self.subscribers: dict[str, Subscriber] = {}
        self.received: list[Received] = []
        self.errors: list[str] = []
        self.faults: dict[str | None, tuple[int, str | None]] = {}  # subscriber id (None: all) -> answer
        self.app.router.add_post("/push/{id}", self.handle)

    def subscriber(self) -> Subscriber:
        sid = b64e(os.urandom(9))
        sub = Subscriber(sid, self.url(f"/push/{sid}"))
        self.subscribers[sid] = sub
        return sub

    def fail(self, status: int, retry_after: str | None = None, subscriber: Subscriber | None = None) -> None:
        self.faults[subscriber.id if subscriber else None] = (status, retry_after)

    def heal(self) -> None:
        self.faults.clear()

    def for_subscriber(self, sub: Subscriber) -> list[dict[str, Any]]:
        return [r.payload for r in self.received if r.subscriber == sub.id]

    def check_vapid(self, authorization: str) -> dict[str, Any]:
        """The JWT's claims, after checking the VAPID header as a push service must (RFC 8292)."""
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise Rejected(f"Authorization scheme {scheme!r} is not vapid")
        fields = dict(p.strip().split("=", 1) for p in params.split(","))
        token, key = fields["t"], fields["k"]
        if self.expect_key is not None and key != self.expect_key:
            raise Rejected("k is not the application server key the subscription was made with")
        head_b64, claims_b64, sig_b64 = token.split(".")
        header = json.loads(b64d(head_b64))
        if header.get("alg") != "ES256":
            raise Rejected(f"JWT alg {header.get('alg')!r} is not ES256")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64d(key))
        sig = b64d(sig_b64)
        if len(sig) != 64:
            raise Rejected("the ES256 signature is not 64 bytes (r || s)")
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            public.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise Rejected("the JWT signature does not verify with k") from None
        claims: dict[str, Any] = json.loads(b64d(claims_b64))
        now = time.time()
        if claims.get("aud") != self.origin:
            raise Rejected(f"aud {claims.get('aud')!r} is not {self.origin!r}")
        if not now < int(claims["exp"]) <= now + DAY:
            raise Rejected(f"exp {claims['exp']} is not within the next 24 h")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            raise Rejected("sub is missing")
        return claims

    async def handle(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        sub = self.subscribers.get(sid)
        if sub is None:
            return web.Response(status=404, text="no such subscription")
        fault = self.faults.get(sid) or self.faults.get(None)
        if fault is not None:
            status, retry_after = fault
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return web.Response(status=status, text="injected fault", headers=headers)
        body = await request.read()
        try:
            claims = self.check_vapid(request.headers.get("Authorization", ""))
            if request.headers.get("Content-Encoding") != "aes128gcm":
                raise Rejected(f"Content-Encoding {request.headers.get('Content-Encoding')!r}", 400)
            if not request.headers.get("TTL", "").isdigit():
                raise Rejected("TTL header missing", 400)
            plain = http_ece.decrypt(
                body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm"
            )
            payload = json.loads(plain)
        except Rejected as e:
            self.errors.append(str(e))
            return web.Response(status=e.status, text=str(e))
        except (
            ValueError,
            KeyError,
            InvalidTag,
            http_ece.ECEException,
        ) as e:  # malformed, or not for this key
            self.errors.append(f"{type(e).__name__}: {e}")
            return web.Response(status=400, text=str(e))
        headers = {h: request.headers[h] for h in ("TTL", "Urgency", "Topic") if h in request.headers}
        self.received.append(Received(sid, payload, len(plain), len(body), headers, claims))
        return web.Response(status=201, headers={"Location": self.url(f"/message/{len(self.received)}")})


# --- webhooks (and Apprise's json:// plugin) --------------------------------------------------


@dataclass
class Hook:
    path: str
    body: Any
    raw: bytes
    headers: dict[str, str]
    signature_ok: bool | None


class WebhookReceiver(LocalServer):
    def __init__(self, secret: str = "", tolerance: float = 300) -> None:
        super().__init__()
        self.secret = secret
        self.tolerance = tolerance
        self.received: list[Hook] = []
        self.rejected: list[Hook] = []
        self.status = 200
        self.retry_after: str | None = None
        self.delay = 0.0
        self.app.router.add_post("/{path:.*}", self.handle)

    def signature_ok(self, raw: bytes, headers: dict[str, str]) -> bool:
        stamp = headers.get("X-Edgewatch-Timestamp", "")
        given = headers.get("X-Edgewatch-Signature", "")
        mac = hmac.new(self.secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= self.tolerance
        return fresh and hmac.compare_digest(f"sha256={mac}", given)

    async def handle(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        raw = await request.read()
        headers = dict(request.headers)
        ok = self.signature_ok(raw, headers) if self.secret else None
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        hook = Hook(request.path, parsed, raw, headers, ok)
        if ok is False:
            self.rejected.append(hook)
            return web.Response(status=401, text="bad signature")
        self.received.append(hook)
        extra = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
        return web.Response(status=self.status, text="ok" if self.status < 300 else "failing", headers=extra)


# --- Alertmanager (API v2) ------------------------------------------------------------------------

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _rfc3339(text: Any) -> datetime.datetime:
    if not isinstance(text, str) or not text.endswith("Z"):
        raise ValueError(f"{text!r} is not an RFC 3339 UTC time")
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


class AlertmanagerReceiver(LocalServer):
    """``POST /api/v2/alerts`` checked as Alertmanager 0.25 checks a ``postableAlerts`` body (a list;
    each alert with labels of valid names and non-empty values, string annotations, RFC 3339
    ``startsAt`` not after ``endsAt``, a URL as ``generatorURL``); answers ``status`` (200)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[list[dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        self.errors: list[str] = []
        self.answers: list[int] = []  # statuses to answer first
        self.app.router.add_post("/api/v2/alerts", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if self.answers:
            return web.Response(status=self.answers.pop(0), text="injected")
        try:
            alerts = json.loads(await request.read())
            if request.content_type != "application/json" or not isinstance(alerts, list):
                raise ValueError("the body must be a JSON list of alerts")
            for a in alerts:
                if set(a) - {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}:
                    raise ValueError(f"unknown fields {sorted(set(a))}")
                labels = a["labels"]
                if not labels or not all(_LABEL_NAME.fullmatch(k) and v for k, v in labels.items()):
                    raise ValueError(f"invalid labels {labels}")
                if not all(isinstance(v, str) for v in a.get("annotations", {}).values()):
                    raise ValueError("annotations must be strings")
                if _rfc3339(a["endsAt"]) < _rfc3339(a["startsAt"]):
                    raise ValueError("endsAt is before startsAt")
                if "generatorURL" in a and not a["generatorURL"].startswith(("http://", "https://")):
                    raise ValueError("generatorURL is not a URL")
        except (ValueError, KeyError, TypeError) as e:
            self.errors.append(str(e))
            return web.json_response({"code": 400, "message": str(e)}, status=400)
        self.received.append(alerts)
        return web.Response(status=200)
