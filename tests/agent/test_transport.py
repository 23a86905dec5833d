"""The agent's small HTTP client against real local servers, well-behaved and not."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from edgewatch.agent.transport import HttpClient, TransportError, Url

from .conftest import ReceiverProcess


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080", Url("http", "127.0.0.1", 8080, "")),
        ("https://mon.example.com", Url("https", "mon.example.com", 443, "")),
        ("https://mon.example.com:8443/edgewatch/", Url("https", "mon.example.com", 8443, "/edgewatch")),
        ("http://[::1]:9000", Url("http", "::1", 9000, "")),
    ],
)
def test_urls(url: str, expected: Url) -> None:
    assert Url.parse(url) == expected


@pytest.mark.parametrize("url", ["mon.example.com", "ftp://x", "http://", "http://host:99999", "http://h:x"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"URL|host|port"):
        Url.parse(url)


def test_keep_alive_against_a_real_server(receiver: ReceiverProcess) -> None:
    with HttpClient(receiver.url) as client:
        first = client.request(
            "POST", "/api/v1/push", b"not a frame", {"Authorization": "Bearer agent-secret"}
        )
        sock = client._sock
        second = client.request("GET", "/received")
        assert client._sock is sock  # the same connection carried both
    assert first.status == 400
    assert b"error" in first.body
    assert second.status == 200


def _serve(handler: Callable[[socket.socket], None]) -> Iterator[str]:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    done = threading.Event()

    def loop() -> None:
        server.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                handler(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        done.set()
        thread.join()
        server.close()


@pytest.fixture
def chunked_server() -> Iterator[str]:
    yield from _serve(
        lambda c: c.sendall(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
    )


@pytest.fixture
def garbage_server() -> Iterator[str]:
    yield from _serve(lambda c: c.sendall(b"\x00\x01 this is no HTTP at all\r\n\r\n"))


@pytest.fixture
def closing_server() -> Iterator[str]:
    yield from _serve(lambda c: None)


@pytest.fixture
def huge_server() -> Iterator[str]:
    yield from _serve(lambda c: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n"))


def test_chunked_answers(chunked_server: str) -> None:
    with HttpClient(chunked_server) as client:
        assert client.request("GET", "/").body == b"hello world"


@pytest.mark.parametrize("fixture", ["garbage_server", "closing_server", "huge_server"])
def test_broken_servers_raise_transport_error(fixture: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(fixture)
    with HttpClient(url, timeout=2) as client, pytest.raises(TransportError):
        client.request("POST", "/api/v1/push", b"x")


def test_refused_and_timeouts() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with (
            HttpClient(f"http://127.0.0.1:{port}", timeout=1) as client,
            pytest.raises(TransportError, match="connect"),
        ):
            client.request("GET", "/")
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with HttpClient(url, timeout=0.5) as client, pytest.raises(TransportError, match="no answer"):
            client.request("GET", "/")
    finally:
        silent.close()
