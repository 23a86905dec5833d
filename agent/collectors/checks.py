"""Checks from the host: HTTP(S) GET and TCP connect, each with its own timeout, all at once.

Every check runs in its own thread, so one slow target does not delay the others: ``collect`` returns
when all have finished or the longest timeout has passed. A check that fails (refused, timed out, TLS
failure, wrong status, body mismatch) is reported down with a short reason in ``failures()``.

For https targets the days left on the server's certificate are read from a separate TLS handshake
that does not verify it (so an expired or self-signed certificate still shows its date), at most
every ``cert_ttl`` seconds. ``ssl`` is imported only when an https check runs.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

from edgewatch.agent.config import CheckSpec
from edgewatch.agent.transport import HttpClient, TransportError, Url

from .base import Sample, SeriesCache
from .parallel import Jobs

__all__ = ["CheckCollector", "CheckSpec", "certificate_not_after"]

GRACE = 0.25  # seconds past the longest timeout before a check that has not finished counts as down
CERT_TTL = 600.0
MAX_REASON = 200


class _Result(NamedTuple):
    up: bool
    duration: float | None
    reason: str
    status: int = 0  # HTTP status; 0 when there was no answer
    not_after: float | None = None  # the certificate's notAfter, seconds since the epoch


class HttpTarget(NamedTuple):
    base: str  # scheme://host:port
    path: str  # path and query, at least "/"
    url: Url


def split_url(url: str) -> HttpTarget:
    """``https://host:8443/health?x=1`` as the client's base URL and the request's path and query."""
    scheme, sep, rest = url.partition("://")
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    path = rest[cut:].partition("#")[0]
    if not path.startswith("/"):
        path = "/" + path
    base = f"{scheme}{sep}{rest[:cut]}"
    return HttpTarget(base, path, Url.parse(base))


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port")
    return host, int(port)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


class CheckCollector:
    blocking = True  # may hang (a dead mount, a slow endpoint): the sampler gives it a thread

    def __init__(
        self,
        name: str = "checks",
        checks: Sequence[CheckSpec] = (),
        *,
        interval: float = 0.0,
        cert_ttl: float = CERT_TTL,
        monotonic: Callable[[], float] = time.monotonic,
        cache: SeriesCache | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.checks = tuple(checks)
        self.cert_ttl = cert_ttl
        self.monotonic = monotonic
        self.cache = cache or SeriesCache()
        names = [c.name for c in self.checks]
        if len(set(names)) != len(names):
            raise ValueError(f"checks named twice: {sorted({n for n in names if names.count(n) > 1})}")
        self._http: dict[str, HttpTarget] = {}
        self._tcp: dict[str, tuple[str, int]] = {}
        self._patterns: dict[str, re.Pattern[str]] = {}
        for c in self.checks:
            if c.kind == "http":
                self._http[c.name] = split_url(c.target)
            elif c.kind == "tcp":
                self._tcp[c.name] = _split_address(c.target)
            else:
                raise ValueError(f"check {c.name}: kind {c.kind!r} is unknown; use http or tcp")
            if c.body_match.startswith("re:"):
                try:
                    self._patterns[c.name] = re.compile(c.body_match[3:])
                except re.error as exc:
                    raise ValueError(
                        f"check {c.name}: body_match is not a valid regular expression ({exc})"
                    ) from None
        self._jobs: Jobs[_Result] = Jobs("check", monotonic=monotonic)
        self._certs: dict[str, tuple[float, float]] = {}  # check -> (read at, notAfter)
        self._failures: dict[str, str] = {}

    def failures(self) -> dict[str, str]:
        """Why each check that was down at the last collection failed, by check name."""
        return dict(self._failures)

    @property
    def max_duration(self) -> float:
        """How long a collection may take: the longest check's timeout (the sampler waits that long)."""
        return max((c.timeout for c in self.checks), default=0.0) + GRACE + 0.5

    def collect(self, now: float) -> Sequence[Sample]:
        if not self.checks:
            return []
        jobs = {c.name: partial(self._run, c, now) for c in self.checks}
        busy = {c.name for c in self.checks if self._jobs.busy(c.name)}
        results = self._jobs.run(jobs, max(c.timeout for c in self.checks) + GRACE)
        out: list[Sample] = []
        failures: dict[str, str] = {}
        cache = self.cache
        for c in self.checks:
            result = results.get(c.name)
            if result is None:
                why = "still running from the previous collection" if c.name in busy else "no result"
                result = _Result(False, None, f"{why}: over the timeout of {c.timeout:g} s")
            if not result.up:
                failures[c.name] = result.reason
            labels = {"check": c.name, "kind": c.kind}
            out.append((cache.gauge("edgewatch_check_up", labels), int(result.up)))
            duration = None if result.duration is None else round(result.duration, 3)
            out.append((cache.gauge("edgewatch_check_duration_seconds", labels, 3), duration))
            if c.kind == "http":
                out.append((cache.gauge("edgewatch_check_http_status", {"check": c.name}), result.status))
                if self._http[c.name].url.scheme == "https":
                    days = None if result.not_after is None else round((result.not_after - now) / 86400, 1)
                    series = cache.gauge("edgewatch_check_certificate_expiry_days", {"check": c.name}, 1)
                    out.append((series, days))
        self._failures = failures
        return out

    # -- one check, in its own thread ----------------------------------------------------------

    def _run(self, check: CheckSpec, now: float) -> _Result:
        t0 = self.monotonic()
        result = self._connect(check) if check.kind == "tcp" else self._get(check)
        duration = self.monotonic() - t0
        if result.up and duration > check.timeout:
            result = result._replace(
                up=False, reason=f"took {duration:.1f} s, over the timeout of {check.timeout:g} s"
            )
        result = result._replace(duration=duration)
        target = self._http.get(check.name)
        if target is not None and target.url.scheme == "https":
            result = result._replace(
                not_after=self._certificate(check, target.url, now, check.timeout - duration)
            )
        return result

    def _connect(self, check: CheckSpec) -> _Result:
        host, port = self._tcp[check.name]
        try:
            with socket.create_connection((host, port), timeout=check.timeout):
                pass
        except TimeoutError:
            return _Result(False, None, f"no connection to {host}:{port} within {check.timeout:g} s")
        except OSError as exc:
            return _Result(False, None, f"cannot connect to {host}:{port}: {_short(exc)}")
        return _Result(True, None, "")

    def _get(self, check: CheckSpec) -> _Result:
        target = self._http[check.name]
        client = HttpClient(target.base, timeout=check.timeout, verify=check.verify_tls)
        try:
            response = client.request("GET", target.path, headers={"Accept": "*/*", "Connection": "close"})
        except TransportError as exc:
            return _Result(False, None, _short(exc))
        finally:
            client.close()
        status = response.status
        if check.expect_status is None and not 200 <= status < 400:
            return _Result(False, None, f"HTTP status {status}; expected 2xx or 3xx", status)
        if check.expect_status is not None and status != check.expect_status:
            return _Result(False, None, f"HTTP status {status}; expected {check.expect_status}", status)
        if check.body_match:
            body = response.body.decode("utf-8", "replace")
            pattern = self._patterns.get(check.name)
            if pattern is not None and not pattern.search(body):
                return _Result(False, None, f"the body does not match {pattern.pattern!r}", status)
            if pattern is None and check.body_match not in body:
                return _Result(False, None, f"the body does not contain {check.body_match!r}", status)
        return _Result(True, None, "", status)

    def _certificate(self, check: CheckSpec, url: Url, now: float, remaining: float) -> float | None:
        cached = self._certs.get(check.name)
        if cached is not None and now - cached[0] < self.cert_ttl:
            return cached[1]
        if remaining <= 0.05:
            return cached[1] if cached else None
        try:
            not_after = certificate_not_after(peer_certificate(url.host, url.port, remaining))
        except (OSError, ValueError):
            return cached[1] if cached else None
        self._certs[check.name] = (now, not_after)
        return not_after


def peer_certificate(host: str, port: int, timeout: float) -> bytes:
    """The server's certificate (DER), from a handshake that does not verify it."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ValueError(f"{host}:{port} sent no certificate")
    return der


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of the content, end of the content) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("the certificate is truncated")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if not 0 < n <= 4 or pos + n > len(data):
            raise ValueError("the certificate has a bad length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("the certificate is truncated")
    return tag, pos, pos + length


def certificate_not_after(der: bytes) -> float:
    """The end of a DER X.509 certificate's validity, in seconds since the epoch.

    Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
    signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... }, ... }
    """
    _, start, _ = _tlv(der, 0)
    _, pos, _ = _tlv(der, start)  # tbsCertificate
    tag, _, end = _tlv(der, pos)
    if tag == 0xA0:  # explicit version
        pos = end
    for _ in range(3):  # serialNumber, signature, issuer
        _, _, pos = _tlv(der, pos)
    _, validity, _ = _tlv(der, pos)
    _, _, after_before = _tlv(der, validity)
    tag, start, end = _tlv(der, after_before)
    text = der[start:end].decode("ascii", "replace")
    if tag == 0x17 and re.fullmatch(r"\d{12}Z", text):  # UTCTime YYMMDDHHMMSSZ
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18 or not re.fullmatch(r"\d{14}Z", text):  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError(f"the certificate's notAfter {text!r} is not a time")
    from datetime import UTC, datetime

    moment = datetime(
        int(text[:4]),
        int(text[4:6]),
        int(text[6:8]),
        int(text[8:10]),
        int(text[10:12]),
        int(text[12:14]),
        tzinfo=UTC,
    )
    return moment.timestamp()
