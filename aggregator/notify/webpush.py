"""Web Push to phones and browsers: VAPID (RFC 8292), RFC 8291 encryption, through pywebpush.

The aggregator's VAPID key pair is made at first start and kept in the data dir: the private key
as PEM (mode 0600) in ``vapid_private.pem``, the public key as the base64url uncompressed point in
``vapid_public.txt`` (the browser's ``applicationServerKey``). Losing the private key means every
phone must subscribe again.

A subscription is what the browser's ``PushSubscription.toJSON()`` gives:
``{"endpoint": "https://…", "keys": {"p256dh": "…", "auth": "…"}}``. Each send goes to every
subscription the provider returns, one encrypted POST each; the result has one part per
subscription (``target`` = endpoint): 200/201/202 ok; 404/410 gone (delete the subscription);
429 retry after ``Retry-After``; 408, 5xx and connection errors retry; other 4xx do not.

The decrypted payload is JSON of at most `MAX_PAYLOAD` bytes (see `payload`)::

    {"v": 1, "title": "CRITICAL web-1: CPU at 97 %", "body": "…", "url": "https://…/alerts/…",
     "tag": "<alert key or group key>", "level": "critical", "state": "firing", "count": 1,
     "at": 1764000000000}
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException
from pywebpush import WebPushException, webpush

from .base import (
    Delivery,
    Level,
    Notification,
    State,
    classify_http,
    combine,
    common_url,
    lines,
    one_line,
    tag,
    title,
    worst,
)
from .base import body as message_body

log = logging.getLogger("edgewatch.aggregator.notify.webpush")

VAPID_KEY_FILE = "vapid_private.pem"
VAPID_PUBLIC_FILE = "vapid_public.txt"
MAX_PAYLOAD = 3072  # bytes of JSON before encryption; push services take 4096 after it
MAX_TITLE = 160
MAX_LINE = 200
MAX_URL = 1024
MAX_TAG = 128
JWT_LIFETIME = 12 * 3600  # RFC 8292: at most 24 h
GONE = frozenset({404, 410})
LOOPBACK = ("127.0.0.1", "localhost")


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- VAPID keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vapid:
    private_key: ec.EllipticCurvePrivateKey
    public_key: str  # base64url of the 65-byte uncompressed point: the applicationServerKey


def _vapid(key: ec.EllipticCurvePrivateKey) -> Vapid:
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return Vapid(key, b64url(point))


def _write_new(path: Path, data: bytes, mode: int) -> bool:
    """Create ``path`` with ``data`` unless it exists (atomic: a second process loses the race)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def load_or_create_vapid(data_dir: Path) -> Vapid:
    """The aggregator's VAPID key pair: read from ``data_dir``, made there at first start."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / VAPID_KEY_FILE
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        if _write_new(path, pem, 0o600):
            log.info("vapid_key=created path=%s", path)
    if path.stat().st_mode & 0o077:
        log.warning("vapid_key=too_open path=%s action=chmod_600", path)
        path.chmod(0o600)
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{path} is not a PEM private key; move it away to make a new one (phones then subscribe again)"
        ) from e
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(loaded.curve, ec.SECP256R1):
        raise ValueError(f"{path} is not a P-256 key; move it away to make a new one")
    vapid = _vapid(loaded)
    public = data_dir / VAPID_PUBLIC_FILE
    text = vapid.public_key + "\n"
    if not public.exists() or public.read_text() != text:
        tmp = public.with_name(f".{public.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, public)
    return vapid


# --- subscriptions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscription:
    endpoint: str
    p256dh: str  # base64url, the browser's P-256 public key (65 bytes uncompressed)
    auth: str  # base64url, the 16-byte auth secret

    def as_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


SubscriptionProvider = Callable[[], Awaitable[Sequence[Subscription]]]


def check_endpoint(endpoint: str, *, allow_insecure_localhost: bool = False) -> None:
    """Raise ValueError unless ``endpoint`` is an https URL (http://127.0.0.1 when allowed, for tests)."""
    parts = urlsplit(endpoint)
    if len(endpoint) > 2048 or not parts.hostname:
        raise ValueError("the push endpoint is not a URL")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and allow_insecure_localhost and parts.hostname in LOOPBACK:
        return
    raise ValueError("the push endpoint must be an https:// URL")


def parse_subscription(data: Any, *, allow_insecure_localhost: bool = False) -> Subscription:
    """A subscription from ``PushSubscription.toJSON()``; ValueError (one line) when it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
        raise ValueError('a push subscription is {"endpoint": …, "keys": {"p256dh": …, "auth": …}}')
    endpoint, p256dh, auth = data.get("endpoint"), data["keys"].get("p256dh"), data["keys"].get("auth")
    if not (isinstance(endpoint, str) and isinstance(p256dh, str) and isinstance(auth, str)):
        raise ValueError("the push subscription needs endpoint, keys.p256dh and keys.auth as strings")
    check_endpoint(endpoint, allow_insecure_localhost=allow_insecure_localhost)
    try:
        point = b64url_decode(p256dh)
        secret = b64url_decode(auth)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError as e:
        raise ValueError("keys.p256dh is not a base64url P-256 public key") from e
    if len(point) != 65 or len(secret) != 16:
        raise ValueError("keys.p256dh must be 65 bytes and keys.auth 16 bytes (base64url)")
    return Subscription(endpoint, p256dh, auth)


# --- payload ---------------------------------------------------------------------------------


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fit(text: str, encode: Callable[[str], bytes], limit: int) -> str:
    """``text``, cut with "…" as little as needed for ``encode(text)`` to stay within ``limit`` bytes."""
    if len(encode(text)) <= limit:
        return text
    lo, hi = 0, len(text)  # the longest prefix that fits is in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if len(encode(text[:mid] + "…")) <= limit:
            lo = mid
        else:
            hi = mid
    return text[:lo] + "…"


def _group_body(notifications: Sequence[Notification], encode: Callable[[str], bytes], limit: int) -> str:
    """As many whole alert lines as fit, then "… and N more"."""
    shown = [_cut(x, MAX_LINE) for x in lines(notifications)]

    def text(m: int) -> str:
        rest = len(shown) - m
        return "\n".join(shown[:m] + ([f"… and {rest} more"] if rest else []))

    lo, hi = 0, len(shown)
    if len(encode(text(hi))) <= limit:
        return text(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if len(encode(text(mid))) <= limit:
            lo = mid
        else:
            hi = mid
    return _fit(text(lo), encode, limit)


def payload(notifications: Sequence[Notification], limit: int = MAX_PAYLOAD) -> bytes:
    """The push message as UTF-8 JSON of at most ``limit`` bytes, texts cut to fit."""
    level, state = worst(notifications)
    url = common_url(notifications)
    name = tag(notifications)
    fixed: dict[str, Any] = {
        "url": url if len(url.encode()) <= MAX_URL else "",
        "tag": name if len(name) <= MAX_TAG else "h:" + hashlib.sha256(name.encode()).hexdigest(),
        "level": str(level),
        "state": str(state),
        "count": len(notifications),
        "at": max(n.at for n in notifications),
    }

    def encode(head: str, text: str) -> bytes:
        doc = {"v": 1, "title": head, "body": text, **fixed}
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()

    head = _fit(_cut(title(notifications), MAX_TITLE), lambda t: encode(t, ""), limit)
    if len(notifications) == 1:
        text = _fit(message_body(notifications), lambda b: encode(head, b), limit)
    else:
        text = _group_body(notifications, lambda b: encode(head, b), limit)
    return encode(head, text)


def urgency(notifications: Sequence[Notification]) -> str:
    """RFC 8030 Urgency: high for a critical alert firing, low for info, normal otherwise."""
    level, state = worst(notifications)
    if state == State.FIRING and level == Level.CRITICAL:
        return "high"
    if state == State.FIRING and level == Level.INFO:
        return "low"
    return "normal"


def topic(notifications: Sequence[Notification]) -> str:
    """RFC 8030 Topic (≤ 32 base64url chars): a newer message about the alert replaces an undelivered one."""
    return b64url(hashlib.sha256(tag(notifications).encode()).digest())[:32]


# --- the channel -----------------------------------------------------------------------------


class WebPushChannel:
    kind = "webpush"

    def __init__(
        self,
        name: str,
        subscriptions: SubscriptionProvider,
        vapid: Vapid,
        subject: str,
        *,
        ttl: int = 12 * 3600,
        timeout: float = 10.0,
        concurrency: int = 8,
        allow_insecure_localhost: bool = False,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not subject.startswith(("mailto:", "https://")):
            raise ValueError("the Web Push subject must be a mailto: address or an https:// URL of the admin")
        self.name = name
        self.subject = subject
        self.ttl = ttl
        self.timeout = timeout
        self.concurrency = concurrency
        self.allow_insecure_localhost = allow_insecure_localhost
        self._subscriptions = subscriptions
        self._vapid = vapid
        self._signer = Vapid02(private_key=vapid.private_key)
        self._wall = wall

    def public_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "subject": self.subject,
            "ttl": self.ttl,
            "timeout": self.timeout,
            "application_server_key": self._vapid.public_key,
        }

    async def send(
        self, notifications: Sequence[Notification], *, only: Collection[str] | None = None
    ) -> Delivery:
        """Send to every subscription (or to those whose endpoint is in ``only``: a targeted retry)."""
        if not notifications:
            raise ValueError("send() needs at least one notification")
        subs = [s for s in await self._subscriptions() if only is None or s.endpoint in only]
        gate = asyncio.Semaphore(self.concurrency)

        async def one(sub: Subscription) -> Delivery:
            async with gate:
                return await self.send_one(sub, notifications)

        return combine(await asyncio.gather(*(one(s) for s in subs)), "push subscriptions")

    async def send_one(self, sub: Subscription, notifications: Sequence[Notification]) -> Delivery:
        """Send to one subscription; the result's ``target`` is its endpoint."""
        target = sub.endpoint
        try:
            check_endpoint(sub.endpoint, allow_insecure_localhost=self.allow_insecure_localhost)
        except ValueError as e:
            return Delivery(ok=False, detail=str(e), target=target)
        parts = urlsplit(sub.endpoint)
        default_port = {"https": 443, "http": 80}[parts.scheme]
        origin = f"{parts.scheme}://{parts.hostname}"  # RFC 8292 aud: the endpoint's origin
        if parts.port not in (None, default_port):
            origin += f":{parts.port}"
        now = self._wall()
        claims: dict[str, str | int] = {"sub": self.subject, "aud": origin, "exp": int(now) + JWT_LIFETIME}
        data = payload(notifications).decode()
        headers = {"Urgency": urgency(notifications), "Topic": topic(notifications)}
        try:
            response = await asyncio.to_thread(
                webpush,
                subscription_info=sub.as_json(),
                data=data,
                vapid_private_key=self._signer,
                vapid_claims=claims,
                ttl=self.ttl,
                timeout=self.timeout,
                headers=headers,
            )
        except WebPushException as e:
            if e.response is None:
                return Delivery(ok=False, detail=one_line(str(e.message)), target=target)
            return classify_http(
                int(e.status_code),
                retry_after=e.retry_after,
                now=now,
                gone_on=GONE,
                detail=one_line(str(e.response.text), 200),
                target=target,
            )
        except OSError as e:  # requests' connection errors and timeouts
            return Delivery(
                ok=False, retryable=True, detail=one_line(f"push service unreachable: {e}"), target=target
            )
        except (ValueError, VapidException) as e:  # keys that are no P-256 point, an origin VAPID rejects
            return Delivery(ok=False, detail=one_line(f"the subscription is unusable: {e}"), target=target)
        return classify_http(int(response.status_code), now=now, gone_on=GONE, target=target)
