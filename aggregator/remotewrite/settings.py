"""The ``[[remote_write]]`` tables of the aggregator's config (docs/aggregator.md, "Remote write")::

    [[remote_write]]
    url = "http://vm:8428/api/v1/write"     # required: http:// or https://
    bearer_token = "..."                    # or basic_auth = { username, password }; headers = {...}
    timeout = "30s"                         # one request
    max_queue_bytes = "1GB"                 # the on-disk queue; beyond it the oldest data is dropped
    batch_size = 10000                      # samples per request at most
    max_backoff = "30s"                     # retries wait 0.5 s, doubling up to this

A wrong table is one ``ValueError`` line naming the entry and the field.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from edgewatch.aggregator.httpauth import Credentials, parse_credentials
from edgewatch.aggregator.notify.base import mask_url
from edgewatch.protocol.settings import parse_duration, parse_size

from .wire import HEADERS

FIELDS = (
    "url",
    "basic_auth",
    "bearer_token",
    "headers",
    "timeout",
    "max_queue_bytes",
    "batch_size",
    "max_backoff",
)
MIN_QUEUE_BYTES = 1 << 20


@dataclass(frozen=True)
class Endpoint:
    url: str
    credentials: Credentials
    timeout: float = 30.0
    max_queue_bytes: int = 1 << 30
    batch_size: int = 10_000
    max_backoff: float = 30.0

    @property
    def shown(self) -> str:
        """The URL fit for logs and metric labels (secrets masked)."""
        return mask_url(self.url)

    @property
    def queue_name(self) -> str:
        """The queue's folder under ``<data_dir>/remote_write``: one per URL."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]


def _seconds(raw: Any, low: float) -> float:
    if isinstance(raw, str):
        raw = parse_duration(raw)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < low:
        raise ValueError(f"must be a duration like 30s or 2m, at least {low:g} s")
    return float(raw)


def parse_endpoint(raw: Any, who: str) -> Endpoint:
    if not isinstance(raw, dict):
        raise ValueError(f"{who}: must be a table ([[remote_write]] with url = ...)")
    if bad := [k for k in raw if k not in FIELDS]:
        raise ValueError(f"{who}: {bad[0]}: unknown field; the fields are {', '.join(FIELDS)}")
    key = "url"
    try:
        url = raw.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("give the endpoint's http:// or https:// URL, e.g. http://vm:8428/api/v1/write")
        assert isinstance(url, str)
        values: dict[str, Any] = {}
        key = "headers"
        credentials = parse_credentials(raw, reserved={h.lower() for h in HEADERS} | {"content-length"})
        for key in ("timeout", "max_backoff"):
            if key in raw:
                values[key] = _seconds(raw[key], 0.1 if key == "timeout" else 1.0)
        key = "max_queue_bytes"
        if key in raw:
            size = parse_size(raw[key]) if isinstance(raw[key], str) else raw[key]
            if isinstance(size, bool) or not isinstance(size, int) or size < MIN_QUEUE_BYTES:
                raise ValueError("must be a size like 512MB or 2GB, at least 1MB")
            values[key] = size
        key = "batch_size"
        if key in raw:
            n = raw[key]
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1_000_000:
                raise ValueError("must be a whole number of samples from 1 to 1000000")
            values[key] = n
    except ValueError as exc:
        text = str(exc)
        if text.split(":", 1)[0] in FIELDS:  # parse_credentials names its field itself
            raise ValueError(f"{who}: {text}") from None
        raise ValueError(f"{who}: {key}: {text}") from None
    return Endpoint(url, credentials, **values)


def parse_remote_write(items: Sequence[Any] | None) -> tuple[Endpoint, ...]:
    """The ``[[remote_write]]`` tables in order (none: no forwarding)."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ValueError("remote_write: write it as [[remote_write]] tables, one per endpoint")
    out: list[Endpoint] = []
    for i, raw in enumerate(items, 1):
        endpoint = parse_endpoint(raw, f"remote_write {i}")
        if any(e.url == endpoint.url for e in out):
            raise ValueError(f"remote_write {i}: url: another [[remote_write]] has this url")
        out.append(endpoint)
    return tuple(out)
