"""The long-poll: ``GET /api/v1/agent/commands?wait=25`` with the agent token, again and again.

The aggregator answers ``{"commands": [...]}`` as soon as it has one, or empty after ``wait``.
Commands go to ``deliver`` and the next poll starts at once; an empty answer that came back early
waits out ``min_interval`` first, so an aggregator that answers at once cannot make this spin.
Network errors, ``429`` and ``5xx`` back off exponentially with jitter (``Retry-After`` honoured);
``404`` (an aggregator without the endpoint), ``401`` and ``403`` wait the longest back-off and are
logged once. ``stop`` breaks off the request in flight, so the agent still exits within 5 s.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

from edgewatch.agent import logs
from edgewatch.agent.sender import retry_after
from edgewatch.agent.transport import HttpClient, TransportError

log = logs.get("edgewatch.agent.commands")

POLL_PATH = "/api/v1/agent/commands?wait={wait}"
WAIT = 25  # seconds the aggregator may hold a poll (it caps at 60)
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 60.0
MIN_INTERVAL = 1.0


class Poller(threading.Thread):
    def __init__(
        self,
        client: HttpClient,
        token: str,
        deliver: Callable[[object, str], None],
        *,
        wait: int = WAIT,
        backoff: tuple[float, float] = (BACKOFF_FIRST, BACKOFF_CAP),
        min_interval: float = MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="edgewatch-command-poll", daemon=True)
        self.client = client
        self.token = token
        self.deliver = deliver
        self.wait = wait
        self.backoff_first, self.backoff_cap = backoff
        self.min_interval = min_interval
        self.clock = clock
        self.polls = 0
        self.errors = 0
        self._stop_event = threading.Event()
        self._failures = 0
        self._logged: set[str] = set()

    def stop(self, timeout: float) -> None:
        self._stop_event.set()
        self.client.abort()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                try:
                    self._poll_once()
                except Exception:  # a bug must not end the polling; it is logged and backed off
                    log.exception("poll_error")
                    self._back_off("internal", None)
        finally:
            self.client.close()

    def _poll_once(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        started = self.clock()
        self.polls += 1
        try:
            answer = self.client.request("GET", POLL_PATH.format(wait=self.wait), b"", headers)
        except TransportError as exc:
            if not self._stop_event.is_set():
                self._back_off("network", None, str(exc))
            return
        status = answer.status
        if status == 200:
            try:
                body = json.loads(answer.body)
            except ValueError:
                body = None
            commands = body.get("commands") if isinstance(body, dict) else None
            if not isinstance(commands, list):
                self._back_off("bad_answer", None, 'the answer is not {"commands": [...]}; is the URL right?')
                return
            self._failures = 0
            self._logged.clear()
            if commands:
                self.deliver(commands, "poll")
                return
            early = self.min_interval - (self.clock() - started)
            if early > 0:
                self._stop_event.wait(early)
            return
        if status in (408, 429) or status >= 500:
            self._back_off(f"http_{status}", retry_after(answer), f"HTTP {status}")
            return
        hint = {
            401: "check the agent's token (edgewatch enroll)",
            403: "check the agent's token (edgewatch enroll)",
            404: "the aggregator has no command long-poll; commands come with push answers only",
        }.get(status, "the aggregator URL does not point at an edgewatch aggregator")
        self._back_off(f"http_{status}", self.backoff_cap, f"HTTP {status}; {hint}")

    def _back_off(self, kind: str, delay: float | None, detail: str = "") -> None:
        self.errors += 1
        self._failures += 1
        if delay is None:
            delay = min(self.backoff_cap, self.backoff_first * 2 ** min(self._failures - 1, 10))
            delay *= 0.5 + int.from_bytes(os.urandom(2), "little") / 131070  # jitter: 0.5 to 1
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("poll_failed kind=%s retry_in=%.1fs detail=%r", kind, delay, detail)
        self._stop_event.wait(max(delay, 0.05))
