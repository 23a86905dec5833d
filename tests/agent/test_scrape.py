"""Scraping local Prometheus endpoints served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest

from edgewatch.agent.collectors.base import Sample
from edgewatch.agent.collectors.scrape import ScrapeCollector
from edgewatch.protocol import Kind

from .localservers import HttpServer, RawServer, refused_port, stall
from .test_promtext import CLIENT_PYTHON, PROM_CLIENT

TEXT = "text/plain; version=0.0.4; charset=utf-8"
ROUTES = {
    "/metrics": (200, TEXT, CLIENT_PYTHON.encode()),
    "/node/metrics": (200, TEXT, PROM_CLIENT.encode()),
    "/relabel": (200, TEXT, b'queue_depth{job="resize",queue="images"} 7\n'),
    "/garbage": (200, "text/html", b"<html><body>Login</body></html>\n"),
    "/error": (503, TEXT, b"starting up"),
}


def _values(samples: Sequence[Sample]) -> dict[tuple[str, tuple[tuple[str, str], ...]], object]:
    return {(s.name, s.labels): v for s, v in samples}


@pytest.fixture
def app() -> Iterator[HttpServer]:
    with HttpServer(ROUTES) as server:
        yield server


def test_scrapes_get_a_job_label_and_status_series(app: HttpServer) -> None:
    targets = [
        ("api", app.url + "/metrics"),
        ("frontend", app.url + "/node/metrics"),
        ("broken", app.url + "/garbage"),
        ("booting", app.url + "/error"),
        ("gone", f"http://127.0.0.1:{refused_port()}/metrics"),
    ]
    samples = ScrapeCollector("scrape", targets).collect(time.time())
    got = _values(samples)
    assert got[("requests_total", (("job", "api"), ("path", "/api")))] == 42
    assert got[("request_latency_seconds_sum", (("job", "api"), ("method", "GET")))] == 0.42
    assert got[("nodejs_heap_space_size_total_bytes", (("job", "frontend"), ("space", "new")))] == 1048576
    kinds = {s.name: s.kind for s, _ in samples}
    assert kinds["requests_total"] == Kind.COUNTER
    assert kinds["process_cpu_user_seconds_total"] == Kind.COUNTER
    assert kinds["python_info"] == Kind.GAUGE
    up = {job: got[("edgewatch_scrape_up", (("job", job),))] for job, _ in targets}
    assert up == {"api": 1, "frontend": 1, "broken": 0, "booting": 0, "gone": 0}
    assert got[("edgewatch_scrape_truncated", (("job", "api"),))] == 0
    duration = got[("edgewatch_scrape_duration_seconds", (("job", "api"),))]
    assert isinstance(duration, float)
    assert 0 <= duration < 1
    assert not any(
        dict(s.labels).get("job") in ("broken", "booting", "gone")
        for s, _ in samples
        if "scrape" not in s.name
    )
    # asks for the 0.4.0 text format, which client_python and prom-client serve by default
    assert all(r["accept"].startswith("text/plain;version=0.0.4") for r in app.seen)


def test_an_apps_own_job_label_is_kept_as_exported_job(app: HttpServer) -> None:
    got = _values(ScrapeCollector("scrape", [("worker", app.url + "/relabel")]).collect(0.0))
    assert got[("queue_depth", (("exported_job", "resize"), ("job", "worker"), ("queue", "images")))] == 7


def test_series_are_capped_per_target_and_say_so(app: HttpServer) -> None:
    collector = ScrapeCollector("scrape", [("api", app.url + "/metrics")], max_series=5)
    got = _values(collector.collect(0.0))
    app_series = [k for k in got if not k[0].startswith("edgewatch_scrape_")]
    assert len(app_series) == 5
    assert got[("edgewatch_scrape_truncated", (("job", "api"),))] == 1
    assert got[("edgewatch_scrape_up", (("job", "api"),))] == 1


def test_a_hung_endpoint_does_not_hold_up_the_others(app: HttpServer) -> None:
    with RawServer(stall) as hung:
        collector = ScrapeCollector(
            "scrape", [("hung", hung.url + "/metrics"), ("api", app.url + "/metrics")], timeout=1.0
        )
        t0 = time.monotonic()
        got = _values(collector.collect(0.0))
        assert time.monotonic() - t0 < 1.6
    assert got[("edgewatch_scrape_up", (("job", "hung"),))] == 0
    assert got[("edgewatch_scrape_up", (("job", "api"),))] == 1


def test_duplicate_jobs_are_refused() -> None:
    with pytest.raises(ValueError, match="named twice"):
        ScrapeCollector("scrape", [("a", "http://127.0.0.1:1/"), ("a", "http://127.0.0.1:2/")])
