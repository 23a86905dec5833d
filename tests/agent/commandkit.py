"""What the remote-command tests share: a signer that follows docs/commands.md to the letter (not the
agent's own code), a stand-in systemctl that records each call, and a small aggregator in a thread
that speaks the push, long-poll and result endpoints."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgewatch.protocol import Batch, ProtocolError, decode, next_reference, reference_of

NOW = 1_764_547_200.0  # the agent's clock in most tests
NOW_MS = int(NOW * 1000)
AGENT = "web-1"


class Signer:
    """The aggregator's half: Ed25519 over ``edgewatch-command-v1\\n`` + canonical JSON of seven fields."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self._n = 0

    @property
    def public_b64(self) -> str:
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def command(
        self,
        action: str = "unit-restart",
        args: dict[str, Any] | None = None,
        *,
        agent: str = AGENT,
        issued: int = NOW_MS,
        lifetime: int = 30_000,
        nonce: str | None = None,
        cid: str | None = None,
    ) -> dict[str, Any]:
        self._n += 1
        fields: dict[str, Any] = {
            "id": cid or f"c{self._n:04d}{os.urandom(6).hex()}",
            "agent": agent,
            "action": action,
            "args": {"unit": "nginx.service"} if args is None else args,
            "nonce": nonce or base64.urlsafe_b64encode(os.urandom(18)).decode(),
            "issued": issued,
            "expires": issued + lifetime,
        }
        return self.sign(fields)

    def sign(self, fields: dict[str, Any]) -> dict[str, Any]:
        signed = {k: fields[k] for k in ("id", "agent", "action", "args", "nonce", "issued", "expires")}
        text = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        signature = self.key.sign(b"edgewatch-command-v1\n" + text.encode())
        return {**fields, "signature": base64.urlsafe_b64encode(signature).rstrip(b"=").decode()}


def stand_in_systemctl(tmp: Path, *, sleep: float = 0.0) -> tuple[Path, Path]:
    """A script in place of systemctl that appends one line per call to a file, each argument in
    brackets (``[restart][nginx.service]``), so an argument that became two would show."""
    calls = tmp / "systemctl-calls.txt"
    script = tmp / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f"{{ for a in \"$@\"; do printf '[%s]' \"$a\"; done; echo; }} >> '{calls}'\n"
        f"sleep {sleep}\n"
        'echo "stand-in systemctl $1 $2"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, calls


def calls_of(calls: Path) -> list[str]:
    return calls.read_text().splitlines() if calls.exists() else []


class FakeAggregator:
    """``/api/v1/push`` (answers with the pending commands when ``via_push``), the long-poll and the
    result endpoint, on 127.0.0.1 in a thread. ``results`` holds ``(id, body)`` in arrival order."""

    def __init__(self, token: str = "agent-secret", *, via_push: bool = False) -> None:
        self.token = token
        self.via_push = via_push
        self.pending: list[dict[str, Any]] = []
        self.results: list[tuple[str, dict[str, Any]]] = []
        self.result_status: dict[str, int] = {}  # state -> status to answer instead of 200
        self.next_statuses: list[int] = []  # answers to the next results, before result_status
        self.polls = 0
        self.batches: list[Batch] = []
        self.refs: dict[int, Batch] = {}
        self.cond = threading.Condition()
        self.closed = False
        handler = type("Handler", (_Handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    def __enter__(self) -> FakeAggregator:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def issue(self, *commands: dict[str, Any]) -> None:
        with self.cond:
            self.pending.extend(commands)
            self.cond.notify_all()

    def take(self, wait: float) -> list[dict[str, Any]]:
        with self.cond:
            self.cond.wait_for(lambda: self.pending or self.closed, wait)
            out, self.pending = self.pending, []
            return out

    def wait_results(self, count: int, timeout: float = 10.0) -> list[tuple[str, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.results) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.results)} results, not {count}: {self.results}")
                self.cond.wait(left)
            return list(self.results)

    def states(self, cid: str) -> list[str]:
        return [body["state"] for i, body in self.results if i == cid]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeAggregator

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the agent broke the long-poll off: it is stopping
            self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.fake.token}":
            self._answer(401, {"error": "bad token"})
            return False
        return True

    def do_GET(self) -> None:
        match = re.fullmatch(r"/api/v1/agent/commands\?wait=(\d+)", self.path)
        if not match:
            self._answer(404, {"error": "not found"})
            return
        if not self._authorised():
            return
        self.fake.polls += 1
        commands = [] if self.fake.via_push else self.fake.take(min(float(match[1]), 60))
        self._answer(200, {"commands": commands})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not self._authorised():
            return
        fake = self.fake
        if self.path == "/api/v1/push":
            try:
                named = reference_of(body)
                ref = fake.refs.get(named.seq) if named is not None else None
                batch = decode(body, ref)
            except ProtocolError as exc:
                self._answer(409 if exc.needs_reference else 400, {"error": str(exc)})
                return
            fake.refs[batch.seq] = next_reference(ref, batch)
            with fake.cond:
                fake.batches.append(batch)
            commands = fake.take(0) if fake.via_push else []
            self._answer(200, {"ack": batch.seq, "commands": commands})
            return
        match = re.fullmatch(r"/api/v1/agent/commands/([A-Za-z0-9_-]+)/result", self.path)
        if not match:
            self._answer(404, {"error": "not found"})
            return
        result = json.loads(body)
        with fake.cond:
            if fake.next_statuses:
                status = fake.next_statuses.pop(0)
            else:
                status = fake.result_status.get(result.get("state"), 200)
            fake.results.append((match[1], result))
            fake.cond.notify_all()
        self._answer(status, {} if status == 200 else {"error": "refused"})
