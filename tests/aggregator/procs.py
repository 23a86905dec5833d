"""The real ``edgewatch aggregator`` as a subprocess on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


EDGEWATCH = [sys.executable, "-c", "from edgewatch.protocol.cli import main; raise SystemExit(main())"]


def edgewatch(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EDGEWATCH, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


class AggregatorProcess:
    def __init__(self, tmp: Path, *, ca_file: Path | None = None, **settings: Any) -> None:
        self.data_dir = tmp / "aggregator"
        self.port = free_port()
        self.url = f"{'https' if ca_file else 'http'}://127.0.0.1:{self.port}"
        self.context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self.config = tmp / "aggregator.toml"
        self.log = tmp / "aggregator.log"
        lines = [f'listen = "127.0.0.1:{self.port}"', f'data_dir = "{self.data_dir}"']
        tables: dict[str, list[str]] = {}
        for key, value in settings.items():
            table, _, name = key.rpartition("__")
            text = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
            (tables.setdefault(table, []) if table else lines).append(f"{name} = {text}")
        for table, items in tables.items():
            lines += [f"[{table}]", *items]
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*EDGEWATCH, "aggregator", "--config", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the aggregator exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2, context=self.context) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise AssertionError("the aggregator did not start in time")

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def admin(self, *args: str) -> str:
        done = edgewatch("admin", "--data-dir", str(self.data_dir), *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def get(self, path: str, token: str) -> Any:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30, context=self.context) as r:
            body = r.read()
            return json.loads(body) if r.headers.get_content_type() == "application/json" else body.decode()


def env_without_proxies() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
