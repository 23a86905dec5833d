"""Remote write inside the aggregator: every committed frame, to every ``[[remote_write]]`` endpoint.

The ingest observer only appends the frame to an in-memory inbox (no I/O, no encoding: a slow or
down endpoint never slows a push). Once a second the encoder thread takes the inbox, encodes each
frame once as ``timeseries`` fields (`wire`), cuts them into requests of at most ``batch_size``
samples per endpoint, compresses them and appends them to each endpoint's on-disk queue with one
fsync (`segments`). Each endpoint's sender task (`sender`) sends its queue in order. At shutdown the
senders stop and the encoder writes what the inbox still holds, so a restart loses nothing; a crash
(kill -9) loses at most the last second's frames. The inbox holds at most ``MAX_INBOX_SAMPLES``:
when the encoder falls that far behind (a stalled disk), the oldest frames are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from pathlib import Path

from aiohttp import web

from edgewatch.aggregator import ingest
from edgewatch.aggregator.metrics import LabelKey, Registry
from edgewatch.protocol import Batch

from .segments import DiskQueue, Pending
from .sender import Sender
from .settings import Endpoint
from .wire import LabelBytes, compress, series_fields

log = logging.getLogger("edgewatch.aggregator.remotewrite")
FLUSH_S = 1.0
MAX_INBOX_SAMPLES = 4_000_000
FOLDER = "remote_write"


def requests_of(fields: Sequence[tuple[bytes, int]], batch_size: int, queued_ms: int) -> list[Pending]:
    """The fields as compressed WriteRequests of at most ``batch_size`` samples (a single series with
    more samples goes alone)."""
    out: list[Pending] = []
    parts: list[bytes] = []
    samples = 0
    for data, n in fields:
        if parts and samples + n > batch_size:
            out.append(Pending(compress(b"".join(parts)), samples, queued_ms))
            parts, samples = [], 0
        parts.append(data)
        samples += n
    if parts:
        out.append(Pending(compress(b"".join(parts)), samples, queued_ms))
    return out


class Forwarder:
    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        data_dir: Path,
        registry: Registry,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.endpoints = tuple(endpoints)
        self.queues = [DiskQueue(data_dir / FOLDER / e.queue_name, e.max_queue_bytes) for e in self.endpoints]
        self.wall = wall
        self.labels = LabelBytes()
        self._inbox: deque[tuple[str, Batch, int, int]] = deque()  # host, batch, ingested at, samples
        self._inbox_samples = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgewatch-remote-write", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.senders: list[Sender] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._register(registry)

    def _register(self, registry: Registry) -> None:
        self.samples = registry.counter(
            "edgewatch_remote_write_samples_total",
            "Samples forwarded with remote write, by endpoint and outcome (sent, rejected, dropped).",
        )
        self.failures = registry.counter(
            "edgewatch_remote_write_failed_requests_total",
            "Remote-write requests that failed and are retried (5xx, 429, timeouts, no connection).",
        )
        shown = [e.shown for e in self.endpoints]

        def per_queue(read: Callable[[DiskQueue], float]) -> Callable[[], dict[LabelKey, float]]:
            return lambda: {(("url", url),): read(q) for url, q in zip(shown, self.queues)}

        registry.gauge(
            "edgewatch_remote_write_queue_bytes",
            "Bytes of the on-disk remote-write queue not sent yet.",
            per_queue(lambda q: float(q.bytes)),
        )
        registry.gauge(
            "edgewatch_remote_write_queue_samples",
            "Samples in the on-disk remote-write queue not sent yet.",
            per_queue(lambda q: float(q.samples)),
        )
        registry.gauge(
            "edgewatch_remote_write_lag_seconds",
            "How long ago the oldest sample not sent yet was ingested (0 when all is sent).",
            per_queue(self._lag),
        )

    def _lag(self, queue: DiskQueue) -> float:
        oldest = queue.oldest_ms
        return 0.0 if oldest is None else max(0.0, self.wall() - oldest / 1000)

    def count(self, url: str) -> Callable[[str, int], None]:
        def count(outcome: str, samples: int) -> None:
            if outcome == "retried":
                self.failures.inc(url=url)
            else:
                self.samples.inc(samples, url=url, outcome=outcome)

        return count

    # --- on the event loop --------------------------------------------------------------------

    def observe(self, host: str, batch: Batch, now_ms: int) -> None:
        """The ingest observer: the frame joins the inbox (O(1); the encoder thread does the rest)."""
        size = len(batch.timestamps) * len(batch.series)
        if not size:
            return
        with self._lock:
            self._inbox.append((host, batch, now_ms, size))
            self._inbox_samples += size
            while self._inbox_samples > MAX_INBOX_SAMPLES and len(self._inbox) > 1:
                _, old, _, n = self._inbox.popleft()
                self._inbox_samples -= n
                for e in self.endpoints:
                    self.samples.inc(old.sample_count, url=e.shown, outcome="dropped")

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()
        for endpoint, queue in zip(self.endpoints, self.queues):
            sender = Sender(endpoint, queue, self.count(endpoint.shown))
            self.senders.append(sender)
            self._tasks.append(asyncio.create_task(sender.run(), name=f"remote-write {endpoint.shown}"))
            log.info(
                "remote write url=%s queued_samples=%d queue_bytes=%d",
                endpoint.shown,
                queue.samples,
                queue.bytes,
            )

    async def close(self) -> None:
        """Stop the senders, write what the inbox holds to the queues, close them."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._stop.set()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)
        for queue in self.queues:
            queue.close()

    # --- the encoder thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self._flush_logged()
        self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # a full disk, a bug: the frames taken are lost, later ones go on
            log.exception("remote write: queuing failed; the frames of this second are dropped")

    def flush(self) -> None:
        """Encode the inbox and append it to every queue (the encoder thread; tests call it)."""
        with self._lock:
            items, self._inbox = self._inbox, deque()
            self._inbox_samples = 0
        if not items:
            return
        fields: list[tuple[bytes, int]] = []
        for host, batch, _, _ in items:
            fields += series_fields(host, batch, self.labels)
        queued_ms = items[0][2]
        for endpoint, queue in zip(self.endpoints, self.queues):
            dropped = queue.append(requests_of(fields, endpoint.batch_size, queued_ms))
            if dropped:
                self._on_loop(partial(self.samples.inc, dropped, url=endpoint.shown, outcome="dropped"))
                log.warning(
                    "url=%s the queue is full (%d bytes): dropped its oldest %d samples",
                    endpoint.shown,
                    endpoint.max_queue_bytes,
                    dropped,
                )
        for sender in self.senders:
            self._on_loop(sender.wake.set)

    def _on_loop(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the event loop (the metrics and the senders belong to it)."""
        if self._loop is None or self._loop.is_closed():
            fn()
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(fn)


FORWARDER = web.AppKey("remote_write", Forwarder)


def remote_write_context(
    endpoints: Sequence[Endpoint], data_dir: Path, registry: Registry, wall: Callable[[], float]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context of remote write (after the storage's): nothing when no endpoint is set."""

    async def remote_write(app: web.Application) -> AsyncIterator[None]:
        if not endpoints:
            yield
            return
        forwarder = await asyncio.to_thread(Forwarder, endpoints, data_dir, registry, wall)
        app[FORWARDER] = forwarder
        forwarder.start()
        app[ingest.INGEST].observers["remote_write"] = forwarder.observe
        yield
        app[ingest.INGEST].observers.pop("remote_write", None)
        await forwarder.close()
        log.info("remote write stopped; unsent samples stay queued for the next start")

    return remote_write
