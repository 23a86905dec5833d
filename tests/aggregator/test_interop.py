"""Interop with real Debian packages on loopback: the real aggregator forwards with remote write to
VictoriaMetrics and to Prometheus (its remote-write receiver), Prometheus scrapes ``/federate``,
and their queries answer the values ours do; an outage of VictoriaMetrics loses nothing; an alert
of the aggregator's rule engine reaches a real Alertmanager through the notification pipeline.

The packages are installed by ``make test`` (``make system``) or here when running as root; the
tests skip, saying why, only when they cannot be installed. Every process is stopped at the end.
"""

from __future__ import annotations

import http.client
import math
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from edgewatch.protocol import Batch, Kind, Series, encode

from .interop_services import Alertmanager, Prometheus, VictoriaMetrics, ensure_package
from .procs import AggregatorProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
HOSTS = ("edge-1", "edge-2")
SERIES = (
    Series("node_load1", precision=2),
    Series("edgewatch_cpu_usage_percent", {"cpu": "all"}, precision=1),
    Series("node_network_receive_bytes_total", {"device": "eth0"}, Kind.COUNTER),
    Series("edgewatch_escape_test", {"path": 'C:\\tmp "x"', "odd.label": "v"}),
)
STEP_MS = 10_000
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def value(host: int, k: int, i: int) -> float | int:
    """The value of series ``k`` of host ``host`` at step ``i``: round at the series' precision."""
    return [
        round(0.3 + 0.07 * ((i + host) % 11), 2),
        round(10 + 3.3 * ((i * 7 + host) % 13), 1),
        1_000_000 * host + 1500 * i,
        0.125 * i - host,
    ][k]


@dataclass
class Pusher:
    aggregator: AggregatorProcess
    tokens: dict[str, str]
    start_ms: int
    seq: int = 0
    pushed: int = 0  # frames per host

    def push(self, frames: int) -> None:
        """``frames`` more frames per host, one sample per series each, 10 s apart."""
        conn = http.client.HTTPConnection("127.0.0.1", self.aggregator.port, timeout=30)
        try:
            for _ in range(frames):
                i = self.pushed
                self.seq += 1
                for h, host in enumerate(HOSTS):
                    ts = self.start_ms + i * STEP_MS
                    b = Batch(
                        host, 7, self.seq, [ts], list(SERIES), [[value(h, k, i)] for k in range(len(SERIES))]
                    )
                    conn.request(
                        "POST",
                        "/api/v1/push",
                        body=encode(b),
                        headers={"Authorization": f"Bearer {self.tokens[host]}"},
                    )
                    r = conn.getresponse()
                    body = r.read()
                    assert r.status == 200, body
                self.pushed += 1
        finally:
            conn.close()

    def expected(self, h: int, k: int) -> dict[int, float]:
        return {self.start_ms + i * STEP_MS: float(value(h, k, i)) for i in range(self.pushed)}


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of the aggregator's /metrics text."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{want}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def matrix(tsdb: VictoriaMetrics | Prometheus, selector: str, now_ms: int) -> dict[int, float]:
    """Every raw sample of the one series ``selector`` names, over the last hour."""
    if isinstance(tsdb, VictoriaMetrics):
        tsdb.flush()
    result = tsdb.instant(f"{selector}[1h]", now_ms)
    if not result:
        return {}
    assert len(result) == 1, result
    return {round(float(t) * 1000): float(v) for t, v in result[0]["values"]}


def close(a: dict[int, float], b: dict[int, float]) -> bool:
    return a.keys() == b.keys() and all(math.isclose(a[t], b[t], rel_tol=1e-12, abs_tol=1e-12) for t in a)


@pytest.fixture
def packages() -> None:
    for cls in (VictoriaMetrics, Prometheus):
        if (why := ensure_package(cls.PACKAGE, cls.BIN)) is not None:
            pytest.skip(why)


@pytest.fixture
def rig(tmp_path: Path, packages: None) -> Iterator[tuple[AggregatorProcess, VictoriaMetrics, Prometheus]]:
    vm = VictoriaMetrics(tmp_path / "vm")
    prom = Prometheus(tmp_path / "prometheus")
    aggregator = AggregatorProcess(tmp_path, metrics__public=False)
    aggregator.config.write_text(
        aggregator.config.read_text()
        + "".join(
            f'[[remote_write]]\nurl = "{url}"\nmax_backoff = "1s"\ntimeout = "5s"\n'
            for url in (vm.write_url, prom.write_url)
        )
    )
    try:
        vm.start()
        aggregator.start()
        yield aggregator, vm, prom
    finally:
        aggregator.stop()
        prom.stop()
        vm.stop()


def test_remote_write_and_federate_against_victoria_metrics_and_prometheus(
    rig: tuple[AggregatorProcess, VictoriaMetrics, Prometheus],
) -> None:
    aggregator, vm, prom = rig
    token = aggregator.admin("add-token", "--role", "viewer")
    tokens = {host: aggregator.admin("add-agent", host) for host in HOSTS}
    now = int(time.time() * 1000)
    pusher = Pusher(aggregator, tokens, now - 30 * STEP_MS - (now % STEP_MS))
    pusher.push(20)  # Prometheus is not up yet: its share waits in the queue
    wait_for(
        "a failed send to Prometheus",
        lambda: metric(
            aggregator.get("/metrics", token),
            "edgewatch_remote_write_failed_requests_total",
            url=prom.write_url,
        ),
        timeout=30,
    )
    prom.config.write_text(
        prom.config.read_text()
        + "scrape_configs:\n"
        + "  - job_name: edgewatch\n"
        + "    honor_labels: true\n"
        + "    metrics_path: /federate\n"
        + f"    authorization: {{credentials: {token}}}\n"
        + f"    static_configs: [{{targets: ['127.0.0.1:{aggregator.port}']}}]\n"
    )
    prom.start()
    pusher.push(10)
    now = int(time.time() * 1000)

    # every sample reaches both, and their queries answer what ours does
    for h, host in enumerate(HOSTS):
        for k, s in enumerate(SERIES):
            selector = f'{s.name.replace(".", "_")}{{host="{host}",job=""}}'
            want = pusher.expected(h, k)
            for tsdb in (vm, prom):
                wait_for(
                    f"{selector} in {tsdb.name}",
                    lambda tsdb=tsdb, selector=selector, want=want: close(matrix(tsdb, selector, now), want),
                    timeout=30,
                )
            if s.kind == Kind.GAUGE:
                q = urllib.parse.urlencode(
                    {
                        "host": host,
                        "name": s.name,
                        "tier": "raw",
                        "start": pusher.start_ms,
                        "end": now,
                        "step": "1s",
                        **{f"label.{a}": b for a, b in s.labels},
                    }
                )
                ours = aggregator.get(f"/api/v1/query?{q}", token)
                assert ours["tier"] == "raw"
                [series] = ours["series"]
                points = {p[0]: p[2] for p in series["points"]}
                assert close(points, want), (s.name, host)
                assert close(matrix(vm, selector, now), points)
                assert close(matrix(prom, selector, now), points)
    # an instant query answers the newest value, as our /federate does
    [sample] = prom.instant('node_load1{host="edge-2",job=""}', now)
    assert float(sample["value"][1]) == value(1, 0, pusher.pushed - 1)

    # Prometheus scrapes /federate: up, and the federated series carry the newest values
    wait_for(
        "up{job='edgewatch'} == 1",
        lambda: [r for r in prom.instant('up{job="edgewatch"}') if r["value"][1] == "1"],
        timeout=30,
    )
    last = pusher.start_ms + (pusher.pushed - 1) * STEP_MS
    for h, host in enumerate(HOSTS):
        for k, s in enumerate(SERIES):
            labels = ",".join(f'{a.replace(".", "_")}="{_esc(b)}"' for a, b in s.labels)
            selector = f'{s.name}{{job="edgewatch",host="{host}"{"," + labels if labels else ""}}}'
            got = wait_for(
                f"{selector} from /federate",
                lambda selector=selector: prom.instant(f"timestamp({selector})", last + 1000),
                timeout=30,
            )
            assert float(got[0]["value"][1]) == last / 1000  # the sample's own timestamp
            [got] = prom.instant(selector, last + 1000)
            assert float(got["value"][1]) == float(value(h, k, pusher.pushed - 1)), selector
    scrape = prom.instant('scrape_samples_scraped{job="edgewatch"}')
    assert float(scrape[0]["value"][1]) == len(HOSTS) * len(SERIES)

    # the aggregator's own counts agree
    text = aggregator.get("/metrics", token)
    for tsdb in (vm, prom):
        assert metric(text, "edgewatch_remote_write_samples_total", outcome="sent", url=tsdb.write_url) == (
            pusher.pushed * len(HOSTS) * len(SERIES)
        )
        assert metric(text, "edgewatch_remote_write_queue_samples", url=tsdb.write_url) == 0
        assert (
            metric(text, "edgewatch_remote_write_samples_total", outcome="rejected", url=tsdb.write_url) == 0
        )


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')


def test_an_outage_of_victoria_metrics_loses_nothing(
    rig: tuple[AggregatorProcess, VictoriaMetrics, Prometheus],
) -> None:
    aggregator, vm, _ = rig
    token = aggregator.admin("add-token", "--role", "viewer")
    tokens = {host: aggregator.admin("add-agent", host) for host in HOSTS}
    now = int(time.time() * 1000)
    pusher = Pusher(aggregator, tokens, now - 40 * STEP_MS - (now % STEP_MS))
    pusher.push(5)
    url = vm.write_url

    def sent() -> float:
        return metric(
            aggregator.get("/metrics", token), "edgewatch_remote_write_samples_total", outcome="sent", url=url
        )

    total = len(HOSTS) * len(SERIES)
    wait_for("the first frames sent", lambda: sent() == 5 * total, timeout=30)
    vm.stop()
    pusher.push(20)  # ingest goes on while VictoriaMetrics is down
    text = wait_for(
        "the queue to hold the outage's samples",
        lambda: (
            (t := aggregator.get("/metrics", token))
            and metric(t, "edgewatch_remote_write_queue_samples", url=url) == 20 * total
            and t
        ),
        timeout=30,
    )
    assert metric(text, "edgewatch_remote_write_failed_requests_total", url=url) >= 1
    assert metric(text, "edgewatch_remote_write_lag_seconds", url=url) > 0
    aggregator.stop()  # a restart during the outage, too
    aggregator.start()
    pusher.push(5)
    vm.start()
    wait_for("the queue to drain", lambda: sent() == 25 * total, timeout=60)
    text = aggregator.get("/metrics", token)
    assert metric(text, "edgewatch_remote_write_queue_samples", url=url) == 0
    assert metric(text, "edgewatch_remote_write_samples_total", outcome="dropped", url=url) == 0
    now = int(time.time() * 1000)
    vm.flush()
    for h, host in enumerate(HOSTS):
        for k, s in enumerate(SERIES):
            selector = f'{s.name.replace(".", "_")}{{host="{host}"}}'
            assert close(matrix(vm, selector, now), pusher.expected(h, k)), selector
    [count] = vm.instant('count({host=~"edge-.*"})', now)
    assert count["value"][1] == str(len(HOSTS) * len(SERIES))  # no series twice, none missing


def test_an_alert_of_the_real_aggregator_reaches_a_real_alertmanager(tmp_path: Path) -> None:
    if (why := ensure_package(Alertmanager.PACKAGE, Alertmanager.BIN)) is not None:
        pytest.skip(why)
    am = Alertmanager(tmp_path / "am")
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nname = "load_high"\nmetric = "node_load1"\nwarning = 2\ncritical = 4\nfor = 0\n'
        'summary = "load {value} on {host}"\n'
    )
    aggregator = AggregatorProcess(tmp_path, alerts__rules_file=str(rules), alerts__interval="1s")
    aggregator.config.write_text(
        aggregator.config.read_text()
        + f'[[channel]]\nname = "am"\ntype = "alertmanager"\nurl = "{am.url}"\nhold = "1h"\n'
    )
    try:
        am.start()
        aggregator.start()
        token = aggregator.admin("add-agent", "edge-1")
        now = int(time.time() * 1000)

        def push(seq: int, ts: int, load: float) -> None:
            b = Batch("edge-1", 9, seq, [ts], [Series("node_load1", precision=2)], [[load]])
            conn = http.client.HTTPConnection("127.0.0.1", aggregator.port, timeout=30)
            try:
                conn.request(
                    "POST", "/api/v1/push", body=encode(b), headers={"Authorization": f"Bearer {token}"}
                )
                assert conn.getresponse().status == 200
            finally:
                conn.close()

        push(1, now - 1000, 5.0)
        [alert] = wait_for("the alert in Alertmanager", am.alerts, timeout=30)
        assert alert["labels"] == {"alertname": "load_high", "host": "edge-1", "severity": "critical"}
        assert alert["annotations"]["summary"] == "load 5.0 on edge-1"
        assert alert["generatorURL"].startswith(f"{aggregator.url}/#/alerts/")
        assert alert["status"]["state"] == "active"
        push(2, now, 0.5)
        wait_for("the resolution in Alertmanager", lambda: am.alerts() == [], timeout=30)
    finally:
        aggregator.stop()
        am.stop()
