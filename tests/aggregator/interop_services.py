"""Services for the Prometheus interop tests: a fake remote-write receiver, and the real Debian
binaries (VictoriaMetrics, Prometheus, Alertmanager) started on free loopback ports.

`RemoteWriteReceiver` checks the three remote-write headers, decodes the snappy + protobuf body
with the project's own reader (whose bytes the real TSDBs in test_interop.py accept), records
every sample by label set, and answers the statuses it is told to, one per request, first.

`Binary` starts a real server in a temporary folder, waits until it answers, and stops it (SIGTERM,
then SIGKILL) — each test that starts one stops it in a ``finally``. `ensure_package` installs a
missing Debian package when the tests run as root (`make test` does it through `make system`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

from aiohttp import web

from edgewatch.aggregator.remotewrite.wire import HEADERS, decode_request

from .notify_services import LocalServer
from .procs import free_port

Key = tuple[tuple[str, str], ...]


class RemoteWriteReceiver(LocalServer):
    def __init__(self) -> None:
        super().__init__()
        self.samples: dict[Key, dict[int, float]] = {}
        self.requests = 0
        self.errors: list[str] = []
        self.answers: deque[tuple[int, str | None]] = deque()  # statuses to answer first, in order
        self.headers: list[dict[str, str]] = []
        self.app.router.add_post("/api/v1/write", self.handle)

    def fail(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        self.answers.extend([(status, retry_after)] * times)

    @property
    def write_url(self) -> str:
        return self.url("/api/v1/write")

    def total(self) -> int:
        return sum(len(v) for v in self.samples.values())

    def series(self, name: str, **labels: str) -> dict[int, float]:
        for key, values in self.samples.items():
            d = dict(key)
            if d.get("__name__") == name and all(d.get(k) == v for k, v in labels.items()):
                return values
        return {}

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.headers.append(dict(request.headers))
        for name, value in HEADERS.items():
            if request.headers.get(name) != value:
                self.errors.append(f"{name}: {request.headers.get(name)!r}")
                return web.Response(status=400, text=f"bad {name}")
        if self.answers:
            status, retry_after = self.answers.popleft()
            headers = {"Retry-After": retry_after} if retry_after else {}
            return web.Response(status=status, text="injected", headers=headers)
        try:
            decoded = decode_request(await request.read())
        except ValueError as exc:
            self.errors.append(str(exc))
            return web.Response(status=400, text=str(exc))
        for labels, samples in decoded:
            self.samples.setdefault(tuple(sorted(labels.items())), {}).update(samples)
        return web.Response(status=204)


# --- real binaries ------------------------------------------------------------------------------


def ensure_package(package: str, binary: str) -> str | None:
    """None when ``binary`` is there (installing ``package`` with apt-get as root if needed), else
    why it is not: the reason a test skips with."""
    if Path(binary).exists():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{binary} is missing: install Debian's {package} (make test does it as root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600, check=False, env=env)
        done = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
    if Path(binary).exists():
        return None
    return f"Debian's {package} cannot be installed: {done.stderr.strip()[-300:]}"


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    """(status, body) from a loopback URL; an HTTP error status is answered, not raised."""
    assert url.startswith("http://127.0.0.1:"), url
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


class Binary:
    """A real server process on a free loopback port, its files under ``folder``."""

    def __init__(self, name: str, folder: Path, ready_path: str) -> None:
        self.name = name
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        self.log = folder / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log, cwd=self.folder)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                if http_get(self.url + self.ready_path, timeout=2)[0] == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not answer in {timeout:g} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def instant(self, query: str, at_ms: int | None = None) -> list[dict[str, Any]]:
        """The vector of a PromQL instant query (``/api/v1/query``), both TSDBs speak it."""
        params = {"query": query}
        if at_ms is not None:
            params["time"] = f"{at_ms / 1000:.3f}"
        status, body = http_get(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}")
        assert status == 200, body[:300]
        data = json.loads(body)
        assert data["status"] == "success", data
        result: list[dict[str, Any]] = data["data"]["result"]
        return result


class VictoriaMetrics(Binary):
    BIN = "/usr/bin/victoria-metrics"
    PACKAGE = "victoria-metrics"

    def __init__(self, folder: Path) -> None:
        super().__init__("victoria-metrics", folder, "/health")

    @property
    def write_url(self) -> str:
        return self.url + "/api/v1/write"

    def argv(self) -> list[str]:
        return [
            self.BIN,
            f"-storageDataPath={self.folder / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=ERROR",
        ]

    def flush(self) -> None:
        """Make what it took searchable now (VictoriaMetrics buffers a second or so)."""
        http_get(self.url + "/internal/force_flush")


class Prometheus(Binary):
    BIN = "/usr/bin/prometheus"
    PACKAGE = "prometheus"

    def __init__(self, folder: Path, scrape: str = "") -> None:
        super().__init__("prometheus", folder, "/-/ready")
        self.config = folder / "prometheus.yml"
        self.config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n" + scrape)

    @property
    def write_url(self) -> str:
        return self.url + "/api/v1/write"

    def argv(self) -> list[str]:
        return [
            self.BIN,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
            "--log.level=warn",
        ]


class Alertmanager(Binary):
    BIN = "/usr/bin/prometheus-alertmanager"
    PACKAGE = "prometheus-alertmanager"

    def __init__(self, folder: Path) -> None:
        super().__init__("alertmanager", folder, "/-/ready")
        self.config = folder / "alertmanager.yml"
        self.config.write_text("route:\n  receiver: nobody\n  group_wait: 1h\nreceivers:\n  - name: nobody\n")

    def argv(self) -> list[str]:
        return [
            self.BIN,
            f"--config.file={self.config}",
            f"--storage.path={self.folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode(filters)
        status, body = http_get(f"{self.url}/api/v2/alerts{'?' + query if query else ''}")
        assert status == 200, body[:300]
        result: list[dict[str, Any]] = json.loads(body)
        return result
