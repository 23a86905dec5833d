"""Alertmanager: firing and resolved alerts POSTed to an existing Alertmanager's API v2.

One send is one ``POST <url>/api/v2/alerts`` with a JSON list, one element per notification::

    [{"labels": {"alertname": "cpu_high", "host": "web-1", "severity": "critical", "cpu": "all"},
      "annotations": {"summary": "CPU at 97 %", "description": "…"},
      "startsAt": "2025-11-24T16:00:00.000Z",
      "endsAt": "2025-11-25T16:00:00.000Z",
      "generatorURL": "https://edgewatch.example.com/#/alerts/<fingerprint>"}]

Labels: the alert's labels (names fixed as Prometheus wants them, empty values left out), then
``alertname`` (the rule), ``host`` and ``severity``. ``startsAt`` is when the alert started
firing. A firing alert's ``endsAt`` is the send time plus ``hold`` (default 24 h): Alertmanager
resolves an alert it has not heard of by then, so edgewatch going away does not leave alerts
firing forever; the pipeline's repeats (``repeat_interval``, 4 h by default) renew it, so keep
``hold`` above that (the channel's test notification holds five minutes). A resolved alert's
``endsAt`` is its resolution time. Alertmanager groups,
deduplicates and routes them by these labels itself.

Results: 2xx ok; 408, 429, 5xx, timeouts and connection errors retry; other statuses (400 for an
alert Alertmanager refuses) do not.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from edgewatch.aggregator.httpauth import Credentials
from edgewatch.aggregator.promlabels import label_name
from edgewatch.protocol.version import __version__

from .base import TEST_KEY, Delivery, Notification, State, mask_url
from .httppost import post

API_PATH = "/api/v2/alerts"
DEFAULT_HOLD = 86_400.0
TEST_HOLD = 300.0  # a test notification resolves itself after five minutes


def rfc3339(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert(n: Notification, now_ms: int, hold_s: float) -> dict[str, Any]:
    """One notification as an Alertmanager ``postableAlert``."""
    labels = {label_name(k): v for k, v in n.labels.items() if v and k != "host"}
    labels["alertname"] = n.rule
    if n.host:
        labels["host"] = n.host
    labels["severity"] = str(n.level)
    starts = n.fired_at if n.fired_at is not None else n.at
    if n.key == TEST_KEY:  # "send test notification": nothing will resolve it
        hold_s = min(hold_s, TEST_HOLD)
    held = max(now_ms + int(hold_s * 1000), starts + 1)
    ends = max(n.at, starts) if n.state == State.RESOLVED else held
    out: dict[str, Any] = {
        "labels": labels,
        "annotations": {k: v for k, v in (("summary", n.summary), ("description", n.description)) if v},
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends),
    }
    if n.url:
        out["generatorURL"] = n.url
    return out


def body(notifications: Sequence[Notification], now_ms: int, hold_s: float = DEFAULT_HOLD) -> bytes:
    doc = [alert(n, now_ms, hold_s) for n in notifications]
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def alerts_url(url: str) -> str:
    """``url`` is Alertmanager's base URL (``http://am:9093``, behind a path prefix too) or the full
    ``…/api/v2/alerts``."""
    url = url.rstrip("/")
    return url if url.endswith(API_PATH) else url + API_PATH


class AlertmanagerChannel:
    kind = "alertmanager"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        credentials: Credentials | None = None,
        timeout: float = 10.0,
        hold: float = DEFAULT_HOLD,
        session: aiohttp.ClientSession | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the Alertmanager URL must start with http:// or https://, e.g. http://am:9093")
        self.name = name
        self.url = alerts_url(url)
        self.timeout = timeout
        self.hold = hold
        self._credentials = credentials or Credentials()
        self._session = session
        self._wall = wall

    def public_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "url": mask_url(self.url),
            **self._credentials.masked(),
            "timeout": self.timeout,
            "hold": self.hold,
        }

    async def send(self, notifications: Sequence[Notification]) -> Delivery:
        if not notifications:
            raise ValueError("send() needs at least one notification")
        now = self._wall()
        data = body(notifications, int(now * 1000), self.hold)
        headers = {
            **self._credentials.headers,
            "Content-Type": "application/json",
            "User-Agent": f"edgewatch/{__version__}",
        }
        return await post(
            self.url, data, headers, timeout=self.timeout, now=now, what="Alertmanager", session=self._session
        )
