"""Fixtures for the agent's tests: a real receiver process speaking the push contract."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ReceiverProcess:
    """``tests/receiver.py`` as a subprocess on a free loopback port."""

    def __init__(
        self,
        tmp: Path,
        token: str = "agent-secret",
        enroll_token: str = "",
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.port = free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.token = token
        self.enroll_token = enroll_token
        self.log = tmp / "received.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, str(ROOT / "tests" / "receiver.py"), "--port", str(self.port)]
        argv += ["--token", self.token, "--log", str(self.log), "--enroll-token", self.enroll_token]
        if self.tls:
            argv += ["--tls", str(self.tls[0]), str(self.tls[1])]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line == b"ready\n", line

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            assert self.proc.stdout is not None
            self.proc.stdout.close()
            self.proc = None

    def control(self, **fault: Any) -> None:
        request = urllib.request.Request(
            self.url + "/control",
            data=json.dumps(fault).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200

    def _lines(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.endswith("}")]

    def received(self) -> list[dict[str, Any]]:
        """The frames stored, each once, in the order they were stored."""
        return [f for f in self._lines() if not f.get("duplicate")]

    def duplicates(self) -> list[dict[str, Any]]:
        """Frames that arrived again after they were stored (answered 200, not stored)."""
        return [f for f in self._lines() if f.get("duplicate")]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received()
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(
            f"the receiver stored {len(self.received())} frames, not {count}, in {timeout} s"
        )


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverProcess]:
    r = ReceiverProcess(tmp_path, enroll_token="enroll-me")
    r.start()
    try:
        yield r
    finally:
        r.stop()
