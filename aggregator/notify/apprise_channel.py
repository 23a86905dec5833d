"""Apprise URLs: Slack, Discord, Telegram, e-mail, ntfy, Pushover, PagerDuty, SMS gateways, …

One channel holds one or more Apprise URLs (https://github.com/caronc/apprise/wiki) and sends each
message to all of them, in a worker thread (Apprise blocks). Title and body are the same words as
every other channel (`base.title`, `base.body`); a single alert's body ends with its URL.

Any Apprise failure is worth a retry: Apprise does not tell a refused message from an outage. A
retry goes to every URL of the channel again, so give services that must not see repeats their
own channel.

Apprise loads its plugins on first use, which takes a moment: create channels off the event loop
(``await asyncio.to_thread(AppriseChannel, …)``) when it runs in a request handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apprise

from .base import (
    MASK,
    SECRET_WORDS,
    Delivery,
    Level,
    Notification,
    State,
    body,
    common_url,
    one_line,
    title,
    worst,
)

log = logging.getLogger("edgewatch.aggregator.notify.apprise")

MAX_BODY_LINES = 50
NOTIFY_TYPE = {
    Level.INFO: apprise.NotifyType.INFO,
    Level.WARNING: apprise.NotifyType.WARNING,
    Level.ERROR: apprise.NotifyType.FAILURE,
    Level.CRITICAL: apprise.NotifyType.FAILURE,
}


def _asset() -> apprise.AppriseAsset:
    return apprise.AppriseAsset(storage_mode="memory")  # no cache files written anywhere


def _secrets_in(url: str) -> list[str]:
    """The parts of an Apprise URL that may be credentials: password, header and secret query values."""
    parts = urlsplit(url)
    found = [parts.password or ""]
    for key, value in parse_qsl(parts.query):
        if key.startswith("+") or SECRET_WORDS.search(key):
            found.append(value)
    return [s for s in found if len(s) >= 3]


def scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def mask_apprise_url(url: str) -> str:
    """Apprise's privacy form of the URL, header (``+X-Token=…``) and secret query values masked too."""
    plugin = apprise.Apprise.instantiate(url, asset=_asset())
    if plugin is None:
        return url.split("://", 1)[0] + "://" + MASK
    private_form: Callable[..., str] = plugin.url  # untyped in apprise
    shown = private_form(privacy=True)
    parts = urlsplit(shown)
    query = [
        (k, MASK if k.startswith("+") or SECRET_WORDS.search(k) else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    shown = urlunsplit(parts._replace(query=urlencode(query, safe="*")))
    return scrub(shown, _secrets_in(url))


class AppriseChannel:
    kind = "apprise"

    def __init__(self, name: str, urls: Sequence[str], *, timeout: float = 30.0) -> None:
        if not urls:
            raise ValueError("an Apprise channel needs at least one URL")
        for i, url in enumerate(urls, 1):
            if apprise.Apprise.instantiate(url, asset=_asset()) is None:
                scheme = url.split("://", 1)[0] if "://" in url else "?"
                raise ValueError(
                    f"Apprise URL {i} (scheme {scheme!r}) is not one Apprise understands; "
                    "see https://github.com/caronc/apprise/wiki for the URL forms"
                )
        self.name = name
        self.timeout = timeout
        self._urls = list(urls)
        self._secrets = [s for url in urls for s in _secrets_in(url)]

    def public_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "urls": [mask_apprise_url(u) for u in self._urls],
            "timeout": self.timeout,
        }

    async def send(self, notifications: Sequence[Notification]) -> Delivery:
        if not notifications:
            raise ValueError("send() needs at least one notification")
        level, state = worst(notifications)
        text = body(notifications, MAX_BODY_LINES)
        url = common_url(notifications)
        if url and len(notifications) == 1:
            text = f"{text}\n\n{url}"
        kind = apprise.NotifyType.SUCCESS if state == State.RESOLVED else NOTIFY_TYPE[level]
        return await asyncio.to_thread(self._notify, title(notifications), text, kind)

    def _notify(self, head: str, text: str, kind: apprise.NotifyType) -> Delivery:
        ap = apprise.Apprise(asset=_asset())
        ap.add(self._urls)
        try:
            result = ap.notify(
                body=text,
                title=head,
                notify_type=kind,
                body_format=apprise.NotifyFormat.TEXT,
                timeout=self.timeout,
            )
        except Exception as e:  # a plugin bug must not take the pipeline down
            log.exception("apprise_channel=%s error", self.name)
            return Delivery(
                ok=False, retryable=True, detail=one_line(scrub(f"Apprise failed: {e}", self._secrets))
            )
        with result:
            if result:
                return Delivery(ok=True, detail=f"{len(result)} Apprise service(s) accepted it")
            failed = [r.name for r in result if not r]
            errors = [e.message for e in result.logs() if e.level in ("ERROR", "WARNING")]
            why = f": {errors[-1]}" if errors else ""
            detail = f"{len(failed)} of {len(result)} Apprise service(s) failed ({', '.join(failed)}){why}"
            return Delivery(ok=False, retryable=True, detail=one_line(scrub(detail, self._secrets)))
