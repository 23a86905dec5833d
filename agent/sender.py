"""The sending thread: pushes the newest frame as a delta, then drains the spool oldest first.

The push contract (DESIGN.md): ``200`` with ``{"ack": seq}`` in the body means the frame is
committed, so its spool entry is deleted; anything else, even a 200 (a proxy, a captive portal, a
wrong URL), is not an acknowledgement and is retried. ``409`` means the aggregator lacks the
delta's reference, so the same batch goes again as a key frame; network errors, ``5xx`` and ``429``
are retried with capped exponential back-off and jitter, honouring ``Retry-After``; ``401`` and
``403`` pause pushing (the token is wrong: nothing is dropped); other ``4xx`` move the frame to
quarantine and are logged once.

The reference for delta frames is ``next_reference`` of the newest frame acknowledged *live*: the
back-log is always older, so acknowledging it never moves the aggregator's reference either.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from edgewatch.protocol import Batch, encode, next_reference

from . import logs
from .spool import Entry, Spool
from .transport import HttpClient, Response, TransportError

log = logs.get("edgewatch.agent.sender")

PUSH_PATH = "/api/v1/push"
CONTENT_TYPE = "application/x-edgewatch-frame"
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0
RETRY_AFTER_CAP = 600.0


def retry_after(response: Response) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    from email.utils import parsedate_to_datetime  # rare: load the date parser only when needed

    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when - time.time()), RETRY_AFTER_CAP)


class Stats:
    """Counters the agent reports about itself (``edgewatch_agent_*``)."""

    def __init__(self) -> None:
        self.frames_sent = 0
        self.bytes_sent = 0
        self.key_frames_sent = 0
        self.push_errors: dict[str, int] = {}
        self.quarantined = 0

    def error(self, reason: str) -> None:
        self.push_errors[reason] = self.push_errors.get(reason, 0) + 1


class Sender(threading.Thread):
    def __init__(
        self,
        spool: Spool,
        client: HttpClient,
        token: str,
        *,
        backlog_chunk: int = 30,
        clock: Callable[[], float] = time.monotonic,
        on_answer: Callable[[dict[str, Any]], None] | None = None,
        jitter: Callable[[], float] | None = None,
        backoff: tuple[float, float] = (BACKOFF_FIRST, BACKOFF_CAP),
    ) -> None:
        super().__init__(name="edgewatch-sender", daemon=True)
        self.spool = spool
        self.client = client
        self.token = token
        self.backlog_chunk = backlog_chunk
        self.clock = clock
        self.on_answer = on_answer
        self.jitter = jitter or _jitter
        self.backoff_first, self.backoff_cap = backoff
        self.stats = Stats()
        self.ref: Batch | None = None
        self._live: tuple[Entry, Batch] | None = None
        self._wake = threading.Condition()
        self._stopping = False
        self._retry_at = 0.0
        self._failures = 0
        self._logged: set[str] = set()

    # -- called from the sampling thread -------------------------------------------------------

    def submit(self, entry: Entry, batch: Batch) -> None:
        """A new frame is in the spool: push it next, as a delta if there is a reference."""
        with self._wake:
            self._live = (entry, batch)
            self._wake.notify()

    def stop(self, timeout: float) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self.join(timeout)
        self.client.close()

    # -- the thread ----------------------------------------------------------------------------

    def run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping:
                    now = self.clock()
                    if now < self._retry_at:
                        self._wake.wait(self._retry_at - now)
                    elif self._live is not None or len(self.spool):
                        break
                    else:
                        self._wake.wait()
                if self._stopping:
                    return
                live, self._live = self._live, None
            try:
                self._round(live)
            except Exception:  # a bug must not stop the agent from sending; it is logged and retried
                log.exception("sender_error")
                self._back_off("internal", None)

    def _round(self, live: tuple[Entry, Batch] | None) -> None:
        if live is not None and not self._push_live(*live):
            return
        for entry in self.spool.oldest(self.backlog_chunk):
            if self._stopping or self._live is not None:
                return  # newer data first; the back-log continues after it
            frame = self.spool.read(entry)
            if frame is None:
                continue  # dropped from the spool meanwhile
            if not self._push(entry, frame):
                return

    def _push_live(self, entry: Entry, batch: Batch) -> bool:
        if self.ref is not None and self.ref.boot_id == batch.boot_id and self.ref.seq < batch.seq:
            answer = self._post(encode(batch, self.ref))
            if answer is not None and answer.status == 409:
                log.info("reference_missing seq=%d; sending a key frame", batch.seq)
                self.ref = None
            elif not self._settle(entry, answer):
                return False
            else:
                self.ref = next_reference(self.ref, batch)
                return True
        frame = self.spool.read(entry)
        if frame is None:
            return True
        if not self._push(entry, frame):
            return False
        self.ref = next_reference(None, batch)
        return True

    def _push(self, entry: Entry, frame: bytes) -> bool:
        """Send a stored key frame; True when the entry is done with (sent or quarantined)."""
        answer = self._post(frame)
        if answer is not None and answer.status == 200:
            self.stats.key_frames_sent += 1
        return self._settle(entry, answer)

    def _post(self, frame: bytes) -> Response | None:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": CONTENT_TYPE}
        try:
            answer = self.client.request("POST", PUSH_PATH, frame, headers)
        except TransportError as exc:
            self._back_off("network", None, str(exc))
            return None
        if answer.status == 200:
            self.stats.frames_sent += 1
            self.stats.bytes_sent += len(frame)
        return answer

    def _settle(self, entry: Entry, answer: Response | None) -> bool:
        if answer is None:
            return False
        status = answer.status
        if status == 200:
            try:
                body = json.loads(answer.body)
            except ValueError:
                body = None
            if not isinstance(body, dict) or body.get("ack") != entry.seq:
                # a proxy, a captive portal or a wrong URL: 200 is not an acknowledgement without the ack
                self._back_off(
                    "bad_ack",
                    None,
                    "the server answered 200 without acknowledging the frame; is the aggregator URL right?",
                )
                return False
            self.spool.remove(entry)
            self._failures = 0
            self._logged.clear()
            if self.on_answer is not None:
                self.on_answer(body)
            return True
        reason = _reason(answer)
        if status == 429 or status >= 500:
            self._back_off(f"http_{status}", retry_after(answer), reason)
            return False
        if status in (401, 403):
            self._back_off(
                f"http_{status}", self.backoff_cap, f"{reason}; check the agent's token (edgewatch enroll)"
            )
            return False
        self.spool.quarantine(entry, f"HTTP {status}: {reason}")
        self.stats.quarantined += 1
        self.stats.error(f"http_{status}")
        if f"q{status}" not in self._logged:
            self._logged.add(f"q{status}")
            log.error(
                "frame_refused status=%d seq=%d reason=%r: moved to quarantine, not retried",
                status,
                entry.seq,
                reason,
            )
        return True

    def _back_off(self, kind: str, delay: float | None, detail: str = "") -> None:
        self.stats.error(kind)
        self._failures += 1
        if delay is None:
            delay = min(self.backoff_cap, self.backoff_first * 2 ** min(self._failures - 1, 10))
            delay *= self.jitter()
        self._retry_at = self.clock() + delay
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("push_failed kind=%s retry_in=%.1fs detail=%r", kind, delay, detail)


def _jitter() -> float:
    """A factor from 0.5 to 1 (``random`` would cost the agent a quarter of a megabyte to import)."""
    return 0.5 + int.from_bytes(os.urandom(2), "little") / 131070


def _reason(answer: Response) -> str:
    try:
        body = json.loads(answer.body)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return str(body["error"])[:300]
    except ValueError:
        pass
    return answer.body[:200].decode("utf-8", "replace") or f"HTTP {answer.status}"
