"""Generic webhook: one JSON POST per send, optionally signed with HMAC-SHA256.

Body (``Content-Type: application/json``, UTF-8)::

    {
      "version": "1",
      "status": "firing",            # "firing" when any alert in it fires, else "resolved"
      "channel": "ops",              # the channel's name
      "group": "<group key or ''>",
      "title": "CRITICAL web-1: CPU at 97 %",
      "level": "critical",           # the worst level among the firing alerts (all alerts if none fires)
      "count": 1,                    # alerts in the group; at most MAX_ALERTS are listed
      "truncated": 0,                # how many were left out of "alerts"
      "alerts": [{"key": "…", "rule": "cpu_high", "host": "web-1", "level": "critical",
                  "state": "firing", "summary": "…", "description": "…", "labels": {"…": "…"},
                  "value": 97.2, "url": "https://…", "at": 1764000000000, "group": "…",
                  "fired_at": 1763999940000}]
    }

``value`` is a number, null, or one of "NaN", "+Inf", "-Inf"; ``at`` (the transition) and
``fired_at`` (when the alert started firing; null when unknown) are ms since the epoch.

Headers: ``X-Edgewatch-Timestamp`` (unix seconds, always) and, when the channel has a secret,
``X-Edgewatch-Signature: sha256=<hex>`` where the hex is
``HMAC-SHA256(secret, timestamp + "." + body)`` over the exact body bytes. A receiver recomputes
it, compares in constant time and rejects timestamps too far from its clock (`verify` does all three).

Results: 2xx ok; 408, 429, 5xx, timeouts and connection errors retry (429/503 after
``Retry-After``); other statuses (redirects included: configure the final URL) do not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp

from edgewatch.protocol.version import __version__

from .base import Delivery, Notification, mask_headers, mask_url, title, worst
from .httppost import post

SCHEMA_VERSION = "1"
SIGNATURE_HEADER = "X-Edgewatch-Signature"
TIMESTAMP_HEADER = "X-Edgewatch-Timestamp"
MAX_ALERTS = 500
RESERVED = {SIGNATURE_HEADER.lower(), TIMESTAMP_HEADER.lower(), "content-type", "content-length", "host"}


def body(notifications: Sequence[Notification], channel: str) -> bytes:
    level, state = worst(notifications)
    listed = notifications[:MAX_ALERTS]
    groups = {n.group for n in notifications}
    doc = {
        "version": SCHEMA_VERSION,
        "status": str(state),
        "channel": channel,
        "group": groups.pop() if len(groups) == 1 else "",
        "title": title(notifications),
        "level": str(level),
        "count": len(notifications),
        "truncated": len(notifications) - len(listed),
        "alerts": [n.as_json() for n in listed],
    }
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def sign(secret: str, timestamp: str, data: bytes) -> str:
    """The ``X-Edgewatch-Signature`` value: ``sha256=`` + hex HMAC over ``timestamp + "." + body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + data, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str, timestamp: str, data: bytes, signature: str, *, now: float, tolerance: float = 300
) -> bool:
    """A receiver's check: the signature matches and the timestamp is within ``tolerance`` s of ``now``."""
    try:
        skew = abs(now - int(timestamp))
    except ValueError:
        return False
    return skew <= tolerance and hmac.compare_digest(sign(secret, timestamp, data), signature)


class WebhookChannel:
    kind = "webhook"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        secret: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the webhook URL must start with http:// or https://")
        extra = dict(headers or {})
        if bad := sorted(h for h in extra if h.lower() in RESERVED):
            raise ValueError(f"the webhook header {bad[0]} is set by edgewatch; remove it from the channel")
        self.name = name
        self.url = url
        self.timeout = timeout
        self._secret = secret
        self._headers = extra
        self._session = session
        self._wall = wall

    def public_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "url": mask_url(self.url),
            "signed": bool(self._secret),
            "secret": "****" if self._secret else "",
            "headers": mask_headers(self._headers),
            "timeout": self.timeout,
        }

    async def send(self, notifications: Sequence[Notification]) -> Delivery:
        if not notifications:
            raise ValueError("send() needs at least one notification")
        data = body(notifications, self.name)
        now = self._wall()
        stamp = str(int(now))
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": f"edgewatch/{__version__}",
            TIMESTAMP_HEADER: stamp,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, stamp, data)
        return await post(
            self.url, data, headers, timeout=self.timeout, now=now, what="webhook", session=self._session
        )
