"""The sender of one remote-write endpoint: the oldest queued request, POSTed until it is taken.

One request is in flight at a time, oldest first, so each series reaches the endpoint in order.
2xx: the request is done. 429, 408, 5xx, timeouts and connection errors: the same request again
after a back-off of 0.5 s doubling up to the endpoint's ``max_backoff`` (or the ``Retry-After``
the endpoint asked for, up to the same cap). Any other status (400 for samples Prometheus calls
out of order, 401, 404, 413 …): the request is dropped and its samples counted as rejected, since
sending it again cannot help. Disk reads and cursor writes run in a thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from edgewatch.aggregator.notify.base import one_line, parse_retry_after
from edgewatch.protocol.version import __version__

from .segments import DiskQueue, Record
from .settings import Endpoint
from .wire import HEADERS

log = logging.getLogger("edgewatch.aggregator.remotewrite")
MIN_BACKOFF = 0.5
IDLE_WAIT = 1.0  # a sender with nothing to send looks again this often, or when woken


@dataclass(frozen=True)
class Outcome:
    ok: bool
    retry: bool = False
    retry_after: float | None = None
    detail: str = ""


def classify(status: int, retry_after: str | None, body: str) -> Outcome:
    text = one_line(f"HTTP {status}" + (f": {body}" if body else ""), 200)
    if 200 <= status < 300:
        return Outcome(True, detail=text)
    if status in (408, 429) or status >= 500:
        return Outcome(
            False, retry=True, retry_after=parse_retry_after(retry_after, time.time()), detail=text
        )
    return Outcome(False, detail=text)


Count = Callable[[str, int], None]  # (outcome, samples)


class Sender:
    def __init__(
        self,
        endpoint: Endpoint,
        queue: DiskQueue,
        count: Count,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.endpoint = endpoint
        self.queue = queue
        self.count = count
        self.wake = asyncio.Event()
        self.failing = 0  # sends failed in a row
        self._sleep = sleep

    async def run(self) -> None:
        headers = {
            **self.endpoint.credentials.headers,
            **HEADERS,
            "User-Agent": f"edgewatch/{__version__}",
        }
        timeout = aiohttp.ClientTimeout(total=self.endpoint.timeout)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            backoff = MIN_BACKOFF
            while True:
                self.wake.clear()
                record = await asyncio.to_thread(self.queue.peek)
                if record is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), IDLE_WAIT)
                    continue
                payload = await asyncio.to_thread(self.queue.read, record)
                if payload is None:
                    continue  # dropped meanwhile to stay within the bound (counted there)
                outcome = await self.post(session, payload)
                if outcome.ok or not outcome.retry:
                    await self._done(record, outcome)
                    backoff = MIN_BACKOFF
                    continue
                self.failing += 1
                self.count("retried", record.samples)
                wait = max(backoff, min(outcome.retry_after or 0.0, self.endpoint.max_backoff))
                if self.failing == 1 or self.failing % 20 == 0:
                    log.warning(
                        "url=%s send failed (%s); retrying in %.1f s failures=%d queued_samples=%d",
                        self.endpoint.shown,
                        outcome.detail,
                        wait,
                        self.failing,
                        self.queue.samples,
                    )
                await self._sleep(wait)
                backoff = min(backoff * 2, self.endpoint.max_backoff)

    async def _done(self, record: Record, outcome: Outcome) -> None:
        if not await asyncio.to_thread(self.queue.ack, record):
            return  # dropped meanwhile (the bound), and counted then
        if outcome.ok:
            self.count("sent", record.samples)
            if self.failing:
                log.info("url=%s sending again after %d failures", self.endpoint.shown, self.failing)
            self.failing = 0
        else:
            self.count("rejected", record.samples)
            log.warning(
                "url=%s refused a request of %d samples (%s); it is dropped",
                self.endpoint.shown,
                record.samples,
                outcome.detail,
            )

    async def post(self, session: aiohttp.ClientSession, payload: bytes) -> Outcome:
        try:
            async with session.post(self.endpoint.url, data=payload, allow_redirects=False) as r:
                body = (await r.content.read(300)).decode("utf-8", "replace")
                return classify(r.status, r.headers.get("Retry-After"), body)
        except TimeoutError:
            return Outcome(False, retry=True, detail=f"no answer within {self.endpoint.timeout:g} s")
        except aiohttp.ClientError as exc:
            return Outcome(False, retry=True, detail=one_line(f"unreachable: {exc}", 200))
