"""The plugin push endpoint, over loopback TCP and a Unix socket, with well-formed and bad posts."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from edgewatch.agent.collectors.base import Sample
from edgewatch.agent.collectors.plugin import PluginCollector
from edgewatch.protocol import Kind

POST = {
    "plugin": "myapp",
    "metrics": {
        "cpu_usage": 12.5,
        "memory_usage": 1234,
        "response_time": 0.2,
        "error_count": 3,
        "request_count": 1000,
    },
}


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _request(
    address: str | tuple[str, int],
    body: bytes,
    *,
    method: str = "POST",
    path: str = "/v1/metrics",
    extra: str = "",
) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP/1.1 request over a raw socket (works for TCP and Unix sockets alike)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(address)
        head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        s.sendall(head.encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head_text, _, payload = data.partition(b"\r\n\r\n")
    status_line, *lines = head_text.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, payload


def _values(samples: Sequence[Sample]) -> dict[tuple[str, tuple[tuple[str, str], ...]], object]:
    return {(s.name, s.labels): v for s, v in samples}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def endpoint(clock: Clock) -> Iterator[PluginCollector]:
    collector = PluginCollector("plugin", "127.0.0.1:0", clock=clock)
    collector.start()
    try:
        yield collector
    finally:
        collector.close()


def test_post_over_tcp_with_a_standard_client(endpoint: PluginCollector) -> None:
    host, port = endpoint.address
    conn = http.client.HTTPConnection(str(host), int(port), timeout=5)
    conn.request("POST", "/v1/metrics", json.dumps(POST), {"Content-Type": "application/json"})
    answer = conn.getresponse()
    assert answer.status == 204
    assert answer.read() == b""
    conn.close()
    samples = endpoint.collect(1001.0)
    got = _values(samples)
    assert got[("edgewatch_plugin_cpu_usage", (("plugin", "myapp"),))] == 12.5
    assert got[("edgewatch_plugin_memory_usage", (("plugin", "myapp"),))] == 1234
    assert got[("edgewatch_plugin_response_time", (("plugin", "myapp"),))] == 0.2
    kinds = {s.name: s.kind for s, _ in samples}
    assert kinds["edgewatch_plugin_error_count"] == Kind.COUNTER
    assert kinds["edgewatch_plugin_request_count"] == Kind.COUNTER
    assert kinds["edgewatch_plugin_cpu_usage"] == Kind.GAUGE
    assert len(samples) == 5


def test_labels_latest_value_and_expiry(endpoint: PluginCollector, clock: Clock) -> None:
    post = {
        "plugin": "backup",
        "metrics": {"last_run_seconds": 41, "runs_total": 7},
        "labels": {"target": "nas"},
    }
    assert _request(endpoint.address, json.dumps(post).encode())[0] == 204
    clock.now = 1100.0
    post["metrics"] = {"last_run_seconds": 39}
    assert _request(endpoint.address, json.dumps(post).encode())[0] == 204
    labels = (("plugin", "backup"), ("target", "nas"))
    got = _values(endpoint.collect(1250.0))
    assert got[("edgewatch_plugin_last_run_seconds", labels)] == 39  # the latest post wins
    assert got[("edgewatch_plugin_runs_total", labels)] == 7
    got = _values(endpoint.collect(1301.0))  # runs_total not posted for over 5 minutes: dropped
    assert got == {("edgewatch_plugin_last_run_seconds", labels): 39}
    assert endpoint.collect(1401.0) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"metrics": {"a": 1}}', "plugin must be"),
        (b'{"plugin": "my app", "metrics": {"a": 1}}', "plugin must be"),
        (b'{"plugin": "x", "metrics": {}}', "non-empty object"),
        (b'{"plugin": "x", "metrics": {"9lives": 1}}', "'9lives' must match"),
        (b'{"plugin": "x", "metrics": {"cpu-usage": 1}}', "'cpu-usage' must match"),
        (b'{"plugin": "x", "metrics": {"up": true}}', "must be a number"),
        (b'{"plugin": "x", "metrics": {"up": "1"}}', "must be a number"),
        (b'{"plugin": "x", "metrics": {"a": 1}, "labels": {"plugin": "y"}}', "not be plugin"),
        (b'{"plugin": "x", "metrics": {"a": 1}, "labels": {"a": 1}}', "must be a string"),
        (b'{"plugin": "x", "metric": {"a": 1}}', "unknown key 'metric'"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_posts_get_400_with_a_json_error(endpoint: PluginCollector, body: bytes, problem: str) -> None:
    status, headers, payload = _request(endpoint.address, body)
    assert status == 400
    assert headers["content-type"] == "application/json"
    error = json.loads(payload)["error"]
    assert problem in error
    assert error.count(". ") == 0  # one sentence
    assert endpoint.collect(1000.0) == []  # nothing of a bad post is kept


def test_wrong_path_method_and_size(endpoint: PluginCollector) -> None:
    assert _request(endpoint.address, b"{}", path="/metrics")[0] == 404
    assert _request(endpoint.address, b"", method="GET")[0] == 405
    status, _, payload = _request(endpoint.address, b"x" * (64 * 1024 + 1))
    assert status == 413
    assert "64 KB" in json.loads(payload)["error"]
    with socket.create_connection(endpoint.address, timeout=5) as s:  # type: ignore[arg-type]
        s.sendall(b"this is not http\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")


def test_expect_100_continue_as_curl_sends_it(endpoint: PluginCollector) -> None:
    body = json.dumps({"plugin": "big", "metrics": {f"m{i}": i for i in range(200)}}).encode()
    status, _, _ = _request(endpoint.address, body, extra="Expect: 100-continue\r\n")
    assert status == 100  # the interim answer comes first...
    assert len(endpoint.collect(1000.0)) == 200  # ...and the post was taken


def test_post_over_a_unix_socket_and_cleanup(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "plugin.sock"
    path_str = str(path)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path_str)  # left over by a killed agent: replaced
    stale.close()
    collector = PluginCollector("plugin", f"unix:{path}", clock=clock)
    collector.start()
    try:
        status, _, _ = _request(path_str, json.dumps(POST).encode())
        assert status == 204
        assert len(collector.collect(1000.0)) == 5
        status, _, payload = _request(path_str, b"oops")
        assert status == 400
        assert "JSON" in json.loads(payload)["error"]
    finally:
        collector.close()
    assert not path.exists()  # the socket file is removed
    assert not any(t.name == "plugin-endpoint" for t in threading.enumerate())
    collector.close()  # safe twice


def test_close_joins_every_thread(clock: Clock) -> None:
    before = set(threading.enumerate())
    collector = PluginCollector("plugin", "127.0.0.1:0", clock=clock)
    collector.start()
    for _ in range(3):
        assert _request(collector.address, json.dumps(POST).encode())[0] == 204
    collector.close()
    assert set(threading.enumerate()) <= before
    with pytest.raises(ConnectionRefusedError):
        _request(collector.address, b"{}")


@pytest.mark.parametrize(
    "listen",
    [
        "0.0.0.0:9101",
        "192.168.1.10:9101",
        "example.com:9101",
        "[::]:9101",
        ":9101",
        "9101",
        "unix:relative.sock",
    ],
)
def test_only_loopback_or_unix_sockets_are_accepted(listen: str) -> None:
    with pytest.raises(ValueError, match=r"plugin\.listen: .*(loopback|127\.0\.0\.1:PORT|absolute path)"):
        PluginCollector("plugin", listen)


@pytest.mark.parametrize("listen", ["127.0.0.1:9101", "127.0.0.53:9101", "localhost:9101", "[::1]:9101"])
def test_loopback_addresses_are_accepted(listen: str) -> None:
    PluginCollector("plugin", listen)  # nothing is bound until start()


def test_a_busy_port_or_a_file_in_the_way_is_a_clear_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port}"):
            PluginCollector("plugin", f"127.0.0.1:{port}").start()
    (tmp_path / "data.sock").write_text("important")
    with pytest.raises(ValueError, match="is not a socket"):
        PluginCollector("plugin", f"unix:{tmp_path / 'data.sock'}").start()
    assert (tmp_path / "data.sock").read_text() == "important"
