"""Posting command results: ``POST /api/v1/agent/commands/{id}/result`` with the agent token.

One thread, first in first out, so a command's ``running`` always goes before its result. Network
errors, ``408``, ``429`` and ``5xx`` are retried a few times with growing pauses (``Retry-After``
honoured up to a cap); ``413`` is sent once more with the output cut short; any other answer is
final: ``404`` and ``409`` mean the aggregator does not take that result for that command (unknown,
expired, or already in a final state) and are logged, not retried. ``submit`` answers a ``Ticket``
whose ``wait`` gives the final status (``None``: no answer came).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any

from edgewatch.agent import logs
from edgewatch.agent.sender import retry_after
from edgewatch.agent.transport import HttpClient, TransportError

log = logs.get("edgewatch.agent.commands")

RESULT_PATH = "/api/v1/agent/commands/{id}/result"
BACKOFF = (0.5, 1.0, 2.0, 4.0)  # pauses between the attempts: five tries over about 8 s
RETRY_AFTER_CAP = 10.0
MAX_QUEUE = 256
CUT_OUTPUT = 4096  # bytes of each stream kept when the aggregator refused a result as too large (413)


class Ticket:
    def __init__(self) -> None:
        self._done = threading.Event()
        self.status: int | None = None

    def settle(self, status: int | None) -> None:
        self.status = status
        self._done.set()

    def wait(self, timeout: float) -> int | None:
        """The HTTP status of the report, or ``None`` when no answer came (in time)."""
        self._done.wait(timeout)
        return self.status


class Reporter(threading.Thread):
    def __init__(
        self,
        client: HttpClient,
        token: str,
        *,
        backoff: tuple[float, ...] = BACKOFF,
    ) -> None:
        super().__init__(name="edgewatch-command-reports", daemon=True)
        self.client = client
        self.token = token
        self.backoff = backoff
        self.lost = 0
        self._queue: deque[tuple[str, dict[str, Any], Ticket]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._launched = False

    def submit(self, command_id: str, result: dict[str, Any]) -> Ticket:
        ticket = Ticket()
        with self._cond:
            if not self._launched:
                self._launched = True
                self.start()
            if len(self._queue) >= MAX_QUEUE:
                old_id, old, old_ticket = self._queue.popleft()
                self.lost += 1
                log.error("result_dropped id=%s state=%s; too many results waiting", old_id, old.get("state"))
                old_ticket.settle(None)
            self._queue.append((command_id, result, ticket))
            self._cond.notify()
        return ticket

    def stop(self, timeout: float) -> None:
        """Send what waits, one attempt each, for at most ``timeout`` seconds; then give up."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self.is_alive():
            self.join(timeout)
        if self.is_alive():
            self.client.abort()
        with self._cond:
            for cid, result, ticket in self._queue:
                log.warning("result_lost id=%s state=%s; the agent is stopping", cid, result.get("state"))
                ticket.settle(None)
            self._queue.clear()

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    break
                cid, result, ticket = self._queue.popleft()
            status: int | None = None
            try:
                status = self.post(cid, result)
            except Exception:  # a bug must not stop the reports that follow
                log.exception("report_error id=%s", cid)
            ticket.settle(status)
        self.client.close()

    def post(self, command_id: str, result: dict[str, Any]) -> int | None:
        """Send one result, retrying what is worth it: the final HTTP status, or ``None``."""
        path = RESULT_PATH.format(id=command_id)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        body = json.dumps(result, ensure_ascii=False).encode()
        cut = False
        detail = ""
        pause = 0.0
        for attempt in range(len(self.backoff) + 1):
            if attempt and not self._pause(pause):
                break  # stopping: no more retries
            pause = self.backoff[min(attempt, len(self.backoff) - 1)]
            try:
                answer = self.client.request("POST", path, body, headers)
            except TransportError as exc:
                detail = str(exc)
                continue
            status = answer.status
            if 200 <= status < 300:
                return status
            if status == 413 and not cut:
                cut = True
                body = json.dumps(_cut(result), ensure_ascii=False).encode()
                pause = 0.0
                continue
            if status in (408, 429) or status >= 500:
                detail = f"HTTP {status}"
                pause = min(retry_after(answer) or pause, RETRY_AFTER_CAP)
                continue
            hint = {
                401: "; check the agent's token (edgewatch enroll)",
                403: "; check the agent's token (edgewatch enroll)",
                404: "; the aggregator does not know this command for this agent",
                409: "; the aggregator holds another state for this command (expired, or final already)",
            }.get(status, "")
            log.warning(
                "result_refused id=%s state=%s status=%d%s", command_id, result.get("state"), status, hint
            )
            return status
        self.lost += 1
        log.error("result_lost id=%s state=%s error=%r", command_id, result.get("state"), detail)
        return None

    def _pause(self, seconds: float) -> bool:
        """Wait before a retry; False when the agent is stopping (then no retry is made)."""
        with self._cond:
            if not self._stopping and seconds > 0:
                self._cond.wait_for(lambda: self._stopping, seconds)
            return not self._stopping


def _cut(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    for stream in ("stdout", "stderr"):
        text = out.get(stream)
        if isinstance(text, str) and len(text.encode()) > CUT_OUTPUT:
            out[stream] = text.encode()[:CUT_OUTPUT].decode("utf-8", "ignore")
            out["truncated"] = True
    return out
