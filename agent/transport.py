"""A small HTTP/1.1 client for the agent: one keep-alive connection, TLS when the URL says https.

The standard library's ``http.client`` pulls in the ``email`` package and costs the agent about
5 MB of resident memory, a quarter of its budget; the agent needs only requests with a body and a
length-delimited or chunked answer, which this module does in a few dozen lines. ``ssl`` is imported
only for https URLs.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import ssl

MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # an answer larger than this is not from an edgewatch aggregator
MAX_HEADER_BYTES = 64 * 1024
USER_AGENT = "edgewatch-agent"


class TransportError(OSError):
    """The request did not get an HTTP answer: refused, reset, timed out, TLS failed, garbage back."""

    timed_out = False


class Response(NamedTuple):
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


class Url(NamedTuple):
    scheme: str
    host: str
    port: int
    path: str  # the base path, without a trailing slash

    @classmethod
    def parse(cls, url: str) -> Url:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https"):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        hostport, _, path = rest.partition("/")
        host, port = hostport, 443 if scheme == "https" else 80
        if hostport.startswith("["):  # [::1]:8080
            host, _, tail = hostport[1:].partition("]")
            if tail.startswith(":"):
                port = _port(tail[1:], url)
        elif ":" in hostport:
            host, _, p = hostport.rpartition(":")
            port = _port(p, url)
        if not host:
            raise ValueError(f"{url!r} has no host name")
        return cls(scheme, host, port, "/" + path.strip("/") if path.strip("/") else "")


def _port(text: str, url: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{url!r} has an invalid port")
    return int(text)


class HttpClient:
    """Requests to one server over one kept-alive connection (not thread-safe: one owner)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        ca_file: str | None = None,
        verify: bool = True,
    ) -> None:
        self.url = Url.parse(base_url)
        self.timeout = timeout
        self.ca_file = ca_file
        self.verify = verify
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._ssl_context: ssl.SSLContext | None = None
        self._aborted = False

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._buffer = b""

    def abort(self) -> None:
        """From another thread: break off the request the owner waits in, and refuse any further one.

        The waiting request raises ``TransportError``; shutting the socket down wakes a blocked
        ``recv``, which closing it from another thread would not.
        """
        self._aborted = True
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> Response:
        """Send one request; a connection the server closed while idle is reopened once."""
        reused = self._sock is not None
        try:
            return self._exchange(method, path, body, headers)
        except TransportError as exc:
            self.close()
            if not reused or exc.timed_out:  # a timeout is an answer that did not come: no second try
                raise
        return self._exchange(method, path, body, headers)

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.url.host, self.url.port), timeout=self.timeout)
        except OSError as exc:
            raise TransportError(f"cannot connect to {self.url.host}:{self.url.port}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.url.scheme == "https":
            try:
                sock = self._tls().wrap_socket(sock, server_hostname=self.url.host)
            except OSError as exc:  # ssl.SSLError is an OSError
                sock.close()
                raise TransportError(f"TLS with {self.url.host} failed: {exc}") from None
        return sock

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            import ssl  # only agents that talk https pay for it

            context = ssl.create_default_context(cafile=self.ca_file)
            if not self.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl_context = context
        return self._ssl_context

    def _exchange(self, method: str, path: str, body: bytes, headers: Mapping[str, str] | None) -> Response:
        if self._aborted:
            raise TransportError("the request was aborted: the agent is stopping")
        if self._sock is None:
            self._sock = self._connect()
        sock = self._sock
        host = self.url.host if ":" not in self.url.host else f"[{self.url.host}]"
        lines = [
            f"{method} {self.url.path}{path} HTTP/1.1",
            f"Host: {host}:{self.url.port}",
            f"User-Agent: {USER_AGENT}",
            f"Content-Length: {len(body)}",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            response = self._read_response(method)
        except TimeoutError:
            self.close()
            error = TransportError(
                f"no answer from {self.url.host}:{self.url.port} within {self.timeout:g} s"
            )
            error.timed_out = True
            raise error from None
        except OSError as exc:
            self.close()
            raise TransportError(f"the connection to {self.url.host}:{self.url.port} failed: {exc}") from None
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def _recv(self) -> bytes:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise TransportError("the server closed the connection")
        return chunk

    def _read_until(self, marker: bytes, limit: int) -> bytes:
        while marker not in self._buffer:
            if len(self._buffer) > limit:
                raise TransportError("the answer's header is too long")
            self._buffer += self._recv()
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._buffer += self._recv()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _read_response(self, method: str) -> Response:
        head = self._read_until(b"\r\n\r\n", MAX_HEADER_BYTES).decode("latin-1")
        status_line, *header_lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise TransportError(f"the answer is not HTTP/1.x: {status_line[:80]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return Response(status, headers, b"")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit() or int(length) > MAX_RESPONSE_BYTES:
                raise TransportError(f"the answer's length {length!r} is invalid or too large")
            body = self._read_exactly(int(length))
        else:  # delimited by the end of the connection
            chunks = [self._buffer]
            self._buffer = b""
            size = len(chunks[0])
            while True:
                assert self._sock is not None
                chunk = self._sock.recv(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise TransportError("the answer is too large")
                chunks.append(chunk)
            body = b"".join(chunks)
            self.close()
        return Response(status, headers, body)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self._read_until(b"\r\n", 1024).split(b";")[0].strip()
            try:
                n = int(line, 16)
            except ValueError:
                raise TransportError("the answer's chunked encoding is broken") from None
            if n == 0:
                while self._read_until(b"\r\n", MAX_HEADER_BYTES):  # trailers, then an empty line
                    pass
                return b"".join(chunks)
            size += n
            if size > MAX_RESPONSE_BYTES:
                raise TransportError("the answer is too large")
            chunks.append(self._read_exactly(n))
            self._read_exactly(2)
