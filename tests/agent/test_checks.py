"""HTTP(S) and TCP checks against real servers on 127.0.0.1: up/down, reasons, concurrency, certificates."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from edgewatch.agent.collectors.base import Sample
from edgewatch.agent.collectors.checks import CheckCollector, CheckSpec, certificate_not_after

from .localservers import HttpServer, RawServer, refused_port, self_signed, stall, trickle

ROUTES = {
    "/health": (200, "application/json", b'{"status": "ok", "db": "up"}'),
    "/broken": (500, "text/plain", b"database is down"),
    "/moved": (302, "text/plain", b""),
    "/health?verbose=1": (200, "text/plain", b"verbose ok"),
}


def spec(
    name: str,
    target: str,
    kind: str = "http",
    timeout: float = 2.0,
    expect_status: int | None = None,
    body_match: str = "",
    verify_tls: bool = True,
) -> CheckSpec:
    return CheckSpec(name, kind, target, timeout, expect_status, body_match, verify_tls)


def _by_check(samples: Sequence[Sample]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for s, v in samples:
        out.setdefault(dict(s.labels)["check"], {})[s.name.removeprefix("edgewatch_check_")] = v
    return out


@pytest.fixture
def web() -> Iterator[HttpServer]:
    with HttpServer(ROUTES) as server:
        yield server


def test_http_checks_status_and_body(web: HttpServer) -> None:
    checks = [
        spec("health", web.url + "/health", body_match='"status": "ok"'),
        spec("health_re", web.url + "/health", body_match=r're:"db":\s*"up"'),
        spec("body_mismatch", web.url + "/health", body_match="re:maintenance|degraded"),
        spec("broken", web.url + "/broken"),
        spec("broken_expected", web.url + "/broken", expect_status=500),
        spec("moved", web.url + "/moved"),
        spec("moved_not_200", web.url + "/moved", expect_status=200),
        spec("query", web.url + "/health?verbose=1", body_match="verbose"),
    ]
    collector = CheckCollector("checks", checks)
    got = _by_check(collector.collect(time.time()))
    assert {name: r["up"] for name, r in got.items()} == {
        "health": 1,
        "health_re": 1,
        "body_mismatch": 0,
        "broken": 0,
        "broken_expected": 1,
        "moved": 1,  # redirects are not followed: a 3xx is an answer
        "moved_not_200": 0,
        "query": 1,
    }
    assert got["broken"]["http_status"] == 500
    assert got["moved"]["http_status"] == 302
    duration = got["health"]["duration_seconds"]
    assert isinstance(duration, float)
    assert 0 < duration < 1
    assert "certificate_expiry_days" not in got["health"]  # plain http has no certificate
    assert collector.failures() == {
        "body_mismatch": "the body does not match 'maintenance|degraded'",
        "broken": "HTTP status 500; expected 2xx or 3xx",
        "moved_not_200": "HTTP status 302; expected 200",
    }
    assert web.seen[0]["user-agent"] == "edgewatch-agent"
    assert {r["path"] for r in web.seen} >= {"/health", "/health?verbose=1"}


def test_series_names_labels_and_precision(web: HttpServer) -> None:
    samples = CheckCollector("checks", [spec("health", web.url + "/health")]).collect(time.time())
    assert {(s.name, s.labels, s.precision) for s, _ in samples} == {
        ("edgewatch_check_up", (("check", "health"), ("kind", "http")), None),
        ("edgewatch_check_duration_seconds", (("check", "health"), ("kind", "http")), 3),
        ("edgewatch_check_http_status", (("check", "health"),), None),
    }


def test_tcp_checks_and_a_refused_port(web: HttpServer) -> None:
    port = refused_port()
    checks = [
        spec("tcp_ok", f"127.0.0.1:{web.port}", kind="tcp"),
        spec("tcp_refused", f"127.0.0.1:{port}", kind="tcp"),
        spec("http_refused", f"http://127.0.0.1:{port}/"),
    ]
    collector = CheckCollector("checks", checks)
    got = _by_check(collector.collect(time.time()))
    assert got["tcp_ok"]["up"] == 1
    assert got["tcp_refused"]["up"] == 0
    assert (got["http_refused"]["up"], got["http_refused"]["http_status"]) == (0, 0)  # 0: no answer at all
    failures = collector.failures()
    assert set(failures) == {"tcp_refused", "http_refused"}
    assert "refused" in failures["tcp_refused"].lower()
    assert "refused" in failures["http_refused"].lower()


def test_slow_checks_run_side_by_side() -> None:
    """Two checks with a 1 s timeout against a server that never answers take about 1 s, not 2."""
    with RawServer(stall) as silent, HttpServer(ROUTES) as web:
        checks = [
            spec("slow_a", silent.url + "/", timeout=1.0),
            spec("slow_b", silent.url + "/", timeout=1.0),
            spec("fast", web.url + "/health", timeout=1.0),
        ]
        collector = CheckCollector("checks", checks)
        t0 = time.monotonic()
        got = _by_check(collector.collect(time.time()))
        elapsed = time.monotonic() - t0
    assert 0.9 < elapsed < 1.6, elapsed
    assert (got["slow_a"]["up"], got["slow_b"]["up"], got["fast"]["up"]) == (0, 0, 1)
    assert "within 1 s" in collector.failures()["slow_a"]


def test_a_check_still_running_is_not_started_again() -> None:
    with RawServer(trickle) as dripping:
        collector = CheckCollector("checks", [spec("drip", dripping.url + "/", timeout=0.5)])
        t0 = time.monotonic()
        first = _by_check(collector.collect(time.time()))
        assert time.monotonic() - t0 < 1.2  # the collection gives up at the timeout...
        assert first["drip"]["up"] == 0
        assert "over the timeout of 0.5 s" in collector.failures()["drip"]
        second = _by_check(collector.collect(time.time()))
        assert second["drip"]["up"] == 0
        assert collector.failures()["drip"].startswith("still running from the previous collection")
        threads = [t for t in collector._jobs._threads.values() if t.is_alive()]
        assert len(threads) == 1  # ...and the straggler is never doubled
    collector._jobs.join(5.0)  # the server has gone: the straggler ends
    assert not any(t.is_alive() for t in collector._jobs._threads.values())


def test_https_certificate_days_and_verification(tmp_path: Path) -> None:
    now = float(int(time.time()))
    not_after = datetime.datetime.fromtimestamp(now + 30 * 86400 + 3 * 3600, tz=datetime.UTC)
    context, _ = self_signed(tmp_path, not_after)
    with HttpServer(ROUTES, tls=context) as secure:
        collector = CheckCollector(
            "checks",
            [
                spec("tls_unverified", secure.url + "/health", verify_tls=False),
                spec("tls_verified", secure.url + "/health"),
            ],
        )
        got = _by_check(collector.collect(now))
    assert got["tls_unverified"]["up"] == 1
    assert got["tls_unverified"]["http_status"] == 200
    assert got["tls_unverified"]["certificate_expiry_days"] == 30.1  # 30 days and 3 hours
    # verification on: a self-signed certificate fails, but its days left are still shown
    assert got["tls_verified"]["up"] == 0
    assert "certificate verify failed" in collector.failures()["tls_verified"]
    assert got["tls_verified"]["certificate_expiry_days"] == 30.1


def test_certificate_days_count_down_without_a_new_handshake(tmp_path: Path) -> None:
    now = float(int(time.time()))
    not_after = datetime.datetime.fromtimestamp(now + 10 * 86400, tz=datetime.UTC)
    context, _ = self_signed(tmp_path, not_after)
    with HttpServer(ROUTES, tls=context) as secure:
        collector = CheckCollector("checks", [spec("tls", secure.url + "/health", verify_tls=False)])
        assert _by_check(collector.collect(now))["tls"]["certificate_expiry_days"] == 10.0
        assert _by_check(collector.collect(now + 43200))["tls"]["certificate_expiry_days"] == 9.5


def test_certificate_dates_from_der(tmp_path: Path) -> None:
    # X.509 writes dates up to 2049 as UTCTime (two-digit year) and later ones as GeneralizedTime
    for when in (datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=datetime.UTC),
                 datetime.datetime(2061, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)):  # fmt: skip
        _, der = self_signed(tmp_path, when)
        assert certificate_not_after(der) == when.timestamp()
    with pytest.raises(ValueError, match="truncated"):
        certificate_not_after(der[:100])


@pytest.mark.parametrize(
    ("checks", "problem"),
    [
        ([spec("a", "http://x/"), spec("a", "http://y/")], "named twice"),
        ([spec("a", "x:1", kind="icmp")], "unknown; use http or tcp"),
        ([spec("a", "http://x/", body_match="re:(")], "not a valid regular expression"),
        ([spec("a", "ftp://x/")], "not an http"),
        ([spec("a", "no-port", kind="tcp")], "not host:port"),
    ],
)
def test_bad_checks_are_refused(checks: list[CheckSpec], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        CheckCollector("checks", checks)
