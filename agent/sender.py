"""The sending thread: pushes the newest frame as a delta, then drains the spool oldest first.

The push contract (docs/api.md): ``200`` with ``{"ack": seq}`` in the body means the frame is
committed, so its spool entry is deleted; anything else, even a 200 (a proxy, a captive portal, a
wrong URL), is not an acknowledgement and is retried. ``409``, or a delta frame refused as
malformed, sends the same batch again as a key frame. Network errors, ``408``, ``429`` and ``5xx``
are retried with capped exponential back-off and jitter, honouring ``Retry-After``. ``400``,
``413`` and ``422`` move the frame to quarantine (logged once). Every other status (a redirect, a
wrong token, a wrong URL) pauses pushing at the longest back-off and drops nothing.

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
        self._live: tuple[Entry, Batch, bytes] | None = None
        self._horizon = spool.next_order  # spooled before this (or before the newest live frame): back-log
        self._wake = threading.Condition()
        self._stopping = False
        self._retry_at = 0.0
        self._failures = 0
        self._posted = 0
        self._logged: set[str] = set()

    # -- called from the sampling thread -------------------------------------------------------

    def submit(self, entry: Entry, batch: Batch, key_frame: bytes) -> None:
        """A new frame (in the spool, unless the disk failed): push it next, as a delta if possible."""
        with self._wake:
            self._live = (entry, batch, key_frame)
            if entry.order:  # 0: a frame the spool could not take
                self._horizon = entry.order
            self._wake.notify()

    def stop(self, timeout: float) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self.is_alive():
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

    def _round(self, live: tuple[Entry, Batch, bytes] | None) -> None:
        if live is not None:
            with self.spool.sending(live[0]):  # not dropped from the spool while it is on its way
                outcome = self._push_live(*live)
            if outcome == RETRY:
                with self._wake:
                    if self._live is None:  # nothing newer came: try this one again when the back-off ends
                        self._live = live
                return
        # the back-log is what was spooled before the newest live frame (or before this sender
        # started): a frame still on its way to submit() is not taken for back-log
        backlog = [e for e in self.spool.oldest(self.backlog_chunk) if e.order < self._horizon]
        for n, entry in enumerate(backlog):
            if self._stopping or (n and self._live is not None):
                return  # newer data first, after at least one spooled frame: the back-log never starves
            with self.spool.sending(entry):  # dropped before this: read() answers None
                frame = self.spool.read(entry)
                if frame is not None and self._settle(entry, self._post(frame)) == RETRY:
                    return

    def _push_live(self, entry: Entry, batch: Batch, key_frame: bytes) -> int:
        ref = self.ref
        refused_delta = False
        if ref is not None and ref.boot_id == batch.boot_id and ref.seq < batch.seq:
            answer = self._post(encode(batch, ref))
            if answer is None or _kind(answer.status) == RETRY:
                return self._settle(entry, answer)
            if answer.status == 200:
                outcome = self._settle(entry, answer)
                if outcome == ACKED:
                    self.ref = next_reference(ref, batch)
                return outcome
            # 409, or a delta refused as malformed: the key frame of the same batch may still go
            log.info("delta_refused status=%d seq=%d; sending a key frame", answer.status, batch.seq)
            self.ref = None
            refused_delta = answer.status != 409
        frame = self.spool.read(entry) or key_frame  # the spool may have failed to take it
        outcome = self._settle(entry, self._post(frame))
        if outcome == ACKED:
            self.ref = next_reference(None, batch)
            self.stats.key_frames_sent += 1
        elif outcome == REFUSED and refused_delta:
            self.ref = ref  # both refused: the aggregator still holds the old reference
        return outcome

    def _post(self, frame: bytes) -> Response | None:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": CONTENT_TYPE}
        self._posted = len(frame)
        try:
            return self.client.request("POST", PUSH_PATH, frame, headers)
        except TransportError as exc:
            self._back_off("network", None, str(exc))
            return None

    def _settle(self, entry: Entry, answer: Response | None) -> int:
        """What an answer means for a frame: ACKED (deleted), REFUSED (quarantined) or RETRY."""
        if answer is None:
            return RETRY  # the back-off is already set
        status = answer.status
        kind = _kind(status)
        if kind == ACKED:
            try:
                body = json.loads(answer.body)
            except ValueError:
                body = None
            if not isinstance(body, dict) or body.get("ack") != entry.seq:
                # a proxy, a captive portal or a wrong URL: 200 is not an acknowledgement without the ack
                detail = (
                    "the server answered 200 without acknowledging the frame; is the aggregator URL right?"
                )
                self._back_off("bad_ack", None, detail)
                return RETRY
            self.spool.remove(entry)
            self.stats.frames_sent += 1
            self.stats.bytes_sent += self._posted  # the frame sent, a delta or a key frame
            self._failures = 0
            self._logged.clear()
            if self.on_answer is not None:
                self.on_answer(body)
            return ACKED
        reason = _reason(answer)
        if kind == RETRY:
            self._back_off(f"http_{status}", retry_after(answer), reason)
            return RETRY
        if kind == PAUSE:
            where = answer.headers.get("location", "")
            hint = {
                401: "check the agent's token (edgewatch enroll)",
                403: "check the agent's token (edgewatch enroll)",
            }.get(status, f"the server redirects to {where}; fix the aggregator URL" if where else
                  "the aggregator URL does not point at an edgewatch aggregator; fix it")  # fmt: skip
            self._back_off(f"http_{status}", self.backoff_cap, f"{reason}; {hint}")
            return RETRY
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
        return REFUSED

    def _back_off(self, kind: str, delay: float | None, detail: str = "") -> None:
        self.stats.error(kind)
        self._failures += 1
        if delay is None:
            delay = min(self.backoff_cap, self.backoff_first * 2 ** min(self._failures - 1, 10))
            delay *= self.jitter()
        self._retry_at = self.clock() + max(delay, 0.05)
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("push_failed kind=%s retry_in=%.1fs detail=%r", kind, delay, detail)


ACKED, REFUSED, RETRY, PAUSE = range(4)


def _kind(status: int) -> int:
    """200 acknowledges; 400, 413 and 422 refuse this frame; 408, 429 and 5xx are worth a retry soon;
    anything else (1xx, 3xx, 401, 403, 404, ...) means the setup is wrong: pause, drop nothing."""
    if status == 200:
        return ACKED
    if status in (400, 413, 422):
        return REFUSED
    if status in (408, 429) or status >= 500:
        return RETRY
    return PAUSE


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
