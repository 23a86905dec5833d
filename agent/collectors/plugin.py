"""A local push endpoint where plugins post their own numbers (loopback TCP or a Unix socket only).

    curl -X POST http://127.0.0.1:9101/v1/metrics \\
         -d '{"plugin": "myapp", "metrics": {"cpu_usage": 12.5, "request_count": 1000}}'

answers 204; bad input gets 400 and ``{"error": "one sentence"}``. Each posted metric is sent as
``edgewatch_plugin_<metric>{plugin=..., <labels>}`` with its latest value until it has not been posted
for ``max_age`` seconds (5 minutes). Names ending in ``_total`` or ``_count`` are counters.

The server is ``socketserver`` with a minimal HTTP/1.1 request reader of its own: ``http.server``
would import ``http.client`` and ``email``, megabytes the agent's memory budget does not have.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import socketserver
import stat
import threading
import time
from collections.abc import Callable, Sequence
from typing import cast

from edgewatch.agent import logs
from edgewatch.protocol import Kind

from .base import Sample, SeriesCache

log = logs.get("edgewatch.agent.collectors.plugin")

PATH = "/v1/metrics"
MAX_BODY = 64 * 1024
MAX_AGE = 300.0
MAX_SERIES = 10_000  # metrics kept over all plugins; a post that would pass it is refused
MAX_METRICS = 1_000  # per post
MAX_LABELS = 16
REQUEST_TIMEOUT = 2.0  # a local plugin posts at once; close() waits at most this long for one
_METRIC_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,199}")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")
_PLUGIN_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_REASONS = {
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
}
_KEYS = frozenset({"plugin", "metrics", "labels"})

Address = str | tuple[str, int]


def parse_listen(listen: str) -> tuple[socket.AddressFamily, Address]:
    """``127.0.0.1:PORT``, ``[::1]:PORT``, ``localhost:PORT`` or ``unix:/path.sock``; anything else raises."""
    if listen.startswith("unix:"):
        path = listen[5:]
        if not path.startswith("/"):
            raise ValueError(
                f"plugin.listen: {listen!r} needs an absolute path, e.g. unix:/run/edgewatch/plugin.sock"
            )
        return socket.AF_UNIX, path
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"plugin.listen: {listen!r} is not 127.0.0.1:PORT or unix:/path.sock")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host == "localhost":
        host = "127.0.0.1"
    if host == "::1":
        return socket.AF_INET6, (host, int(port))
    try:
        loopback = socket.inet_pton(socket.AF_INET, host)[0] == 127
    except OSError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"plugin.listen: {host!r} is not a loopback address; use 127.0.0.1:PORT or unix:/path.sock "
            "so that only local plugins can post"
        )
    return socket.AF_INET, (host, int(port))


class PluginCollector:
    def __init__(
        self,
        name: str = "plugin",
        listen: str = "",
        *,
        interval: float = 0.0,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.time,
        cache: SeriesCache | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.listen = listen
        self.family, self._address = parse_listen(listen)
        self.max_age = max_age
        self.clock = clock
        self.cache = cache or SeriesCache(limit=20_000)  # up to 10,000 series of their own
        self._lock = threading.Lock()
        # (metric, labels) -> (value, posted at)
        self._latest: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[int | float, float]] = {}
        self._server: _TcpServer | _UnixServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> Address:
        """Where the endpoint listens (with the real port when ``listen`` said port 0)."""
        if self._server is None:
            return self._address
        address = self._server.server_address
        return (str(address[0]), int(address[1])) if isinstance(address, tuple) else str(address)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        address = self._address
        server: _TcpServer | _UnixServer
        try:
            if isinstance(address, str):
                _remove_stale_socket(address)
                server = _UnixServer(address, _Handler)
            elif self.family == socket.AF_INET6:
                server = _Tcp6Server(address, _Handler)
            else:
                server = _TcpServer(address, _Handler)
        except OSError as exc:
            raise ValueError(
                f"plugin.listen: cannot listen on {self.listen}: {exc.strerror or exc}"
            ) from None
        server.collector = self
        self._server = server
        self._thread = threading.Thread(
            # no polling: an idle endpoint costs no wake-ups; close() wakes the loop with a connection
            target=server.serve_forever,
            kwargs={"poll_interval": None},
            name="plugin-endpoint",
            daemon=True,
        )
        self._thread.start()
        log.info("plugin_endpoint_listening address=%s", self.listen)

    def close(self) -> None:
        """Stop the server, wait for its threads and remove the Unix socket file; safe to call twice."""
        server, thread, address = self._server, self._thread, self.address
        self._server = self._thread = None
        if server is None:
            return
        stopper = threading.Thread(target=server.shutdown, name="plugin-endpoint-stop")
        stopper.start()
        while stopper.is_alive():  # the serving loop sees the shutdown flag once select() returns
            _wake(server.address_family, address)
            stopper.join(0.05)
        server.server_close()  # joins the request threads (block_on_close)
        if thread is not None:
            thread.join()
        if isinstance(self._address, str):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._address)

    # -- data ----------------------------------------------------------------------------------

    def post(self, body: bytes) -> None:
        """Store one plugin's post; bad input raises ``ValueError`` with a sentence for the plugin."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise ValueError(
                'the body is not valid JSON; send {"plugin": "name", "metrics": {"name": 1.5}}'
            ) from None
        if not isinstance(data, dict):
            raise ValueError(
                'the body must be a JSON object like {"plugin": "name", "metrics": {"name": 1.5}}'
            )
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}; use plugin, metrics and labels")
        plugin = data.get("plugin")
        if not isinstance(plugin, str) or not _PLUGIN_RE.fullmatch(plugin):
            raise ValueError("plugin must be 1-64 letters, digits, '_', '.' or '-'")
        metrics = data.get("metrics")
        if not isinstance(metrics, dict) or not metrics:
            raise ValueError("metrics must be a non-empty object of names and numbers")
        if len(metrics) > MAX_METRICS:
            raise ValueError(f"a post may carry at most {MAX_METRICS} metrics")
        labels = _labels(data.get("labels"))
        for metric, value in metrics.items():
            if not _METRIC_RE.fullmatch(metric):
                raise ValueError(f"metric name {metric!r} must match [a-zA-Z_][a-zA-Z0-9_]* (at most 200)")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"metric {metric!r} must be a number, not {json.dumps(value)[:40]}")
            if isinstance(value, int) and not -(2**63) <= value < 2**63:
                raise ValueError(f"metric {metric!r} does not fit in 64 bits")
        pairs = tuple(sorted({**labels, "plugin": plugin}.items()))
        posted = self.clock()
        with self._lock:
            new = sum(1 for m in metrics if (m, pairs) not in self._latest)
            if len(self._latest) + new > MAX_SERIES:
                raise ValueError(f"the agent already keeps {MAX_SERIES} plugin metrics; post fewer")
            for metric, value in metrics.items():
                self._latest[(metric, pairs)] = (value, posted)

    def collect(self, now: float) -> Sequence[Sample]:
        with self._lock:
            for key in [k for k, (_, posted) in self._latest.items() if now - posted > self.max_age]:
                del self._latest[key]
            latest = list(self._latest.items())
        out: list[Sample] = []
        for (metric, labels), (value, _) in latest:
            kind = Kind.COUNTER if metric.endswith(("_total", "_count")) else Kind.GAUGE
            out.append((self.cache.get("edgewatch_plugin_" + metric, labels, kind), value))
        return out


def _labels(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_LABELS:
        raise ValueError(f"labels must be an object of at most {MAX_LABELS} names and strings")
    for k, v in raw.items():
        if not _LABEL_RE.fullmatch(k) or k == "plugin":
            raise ValueError(f"label name {k!r} must match [a-zA-Z_][a-zA-Z0-9_]* and not be plugin")
        if not isinstance(v, str) or len(v) > 256:
            raise ValueError(f"label {k!r} must be a string of at most 256 characters")
    return raw


def _wake(family: int, address: Address) -> None:
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        s.connect(address)


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ValueError(f"plugin.listen: {path} exists and is not a socket; remove it or pick another path")
    os.unlink(path)  # left over from an agent that was killed


class _Handler(socketserver.StreamRequestHandler):
    """One request per connection: ``POST /v1/metrics`` with a Content-Length body."""

    timeout = REQUEST_TIMEOUT

    def handle(self) -> None:
        try:
            answer = self._request()
            if answer is not None:
                self._reply(*answer)
        except OSError:  # the plugin went away or was too slow
            return

    def _request(self) -> tuple[int, str] | None:
        line = self.rfile.readline(8192)
        if not line:
            return None
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, "the request is not HTTP/1.x"
        method, target, _ = parts
        headers: dict[str, str] = {}
        for _ in range(100):
            header = self.rfile.readline(8192)
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            return 431, "the request has too many header lines"
        path = target.partition("?")[0]
        if path != PATH:
            return 404, f"there is nothing at {path[:100]}; post to {PATH}"
        if method != "POST":
            return 405, f"use POST on {PATH}"
        length = headers.get("content-length", "")
        if not length.isdigit() or "transfer-encoding" in headers:
            return 411, "send the body with a Content-Length header"
        if int(length) > MAX_BODY:
            if int(length) <= 16 * MAX_BODY:  # read it, so the answer is not lost to a connection reset
                self.rfile.read(int(length))
            return 413, f"the body is larger than {MAX_BODY // 1024} KB; post fewer metrics at a time"
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            return None
        collector = cast("_TcpServer | _UnixServer", self.server).collector
        if collector is None:
            return None
        try:
            collector.post(body)
        except ValueError as exc:
            return 400, str(exc)
        return 204, ""

    def _reply(self, status: int, error: str) -> None:
        head = f"HTTP/1.1 {status} {_REASONS[status]}\r\nConnection: close\r\n"
        body = b""
        if error:
            body = json.dumps({"error": error}).encode()
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.wfile.write(head.encode("latin-1") + b"\r\n" + body)


# Request threads are not daemons and are tracked, so server_close() joins them (each ends within
# REQUEST_TIMEOUT); close() then leaves nothing running.
class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True
    collector: PluginCollector | None = None


class _Tcp6Server(_TcpServer):
    address_family = socket.AF_INET6


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = False
    block_on_close = True
    collector: PluginCollector | None = None
