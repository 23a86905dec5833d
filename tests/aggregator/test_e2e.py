"""End to end with real processes on loopback: the aggregator, the agent, kill -9, hostile frames."""

from __future__ import annotations

import http.client
import io
import json
import random
import socket
import sqlite3
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from edgewatch.aggregator.frames import decode_recent
from edgewatch.protocol import MAJOR, MINOR, Batch, Series, encode

from .procs import EDGEWATCH, AggregatorProcess, edgewatch

pytestmark = pytest.mark.timeout(240)


def _zstd_bomb(size: int, declare: bool) -> bytes:
    """A few KB of zstd that inflate to ``size`` bytes of zeros."""
    out = io.BytesIO()
    cctx = zstandard.ZstdCompressor(level=3, write_content_size=declare)
    with cctx.stream_writer(out, size=size if declare else -1, closefd=False) as w:
        for _ in range(size >> 20):
            w.write(bytes(1 << 20))
    return out.getvalue()


@pytest.fixture
def aggregator(tmp_path: Path) -> Iterator[AggregatorProcess]:
    proc = AggregatorProcess(tmp_path, storage__compact_interval="1s")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _post(url: str, path: str, body: bytes, token: str, timeout: float = 30) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Authorization": f"Bearer {token}"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_the_real_agent_enrolls_pushes_and_its_data_is_queryable(
    aggregator: AggregatorProcess, tmp_path: Path
) -> None:
    enrollment = aggregator.admin("add-enrollment")
    api = aggregator.admin("add-token", "--role", "viewer")
    state = tmp_path / "agent-state"
    done = edgewatch("enroll", aggregator.url, enrollment, "--state-dir", str(state), "--name", "e2e-host")
    assert done.returncode == 0, done.stderr
    agent = subprocess.Popen(
        [*EDGEWATCH, "agent", "--state-dir", str(state), "--aggregator", aggregator.url, "--interval", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        points: list[list[float]] = []
        while time.monotonic() < deadline:
            try:
                body = aggregator.get("/api/v1/query?host=e2e-host&name=node_load1&start=-5m", api)
            except urllib.error.HTTPError as exc:  # 404 until the first frame is stored
                code = exc.code
                exc.close()
                body = {}
                assert code == 404
            points = body["series"][0]["points"] if body.get("series") else []
            if len(points) >= 3:
                break
            time.sleep(0.5)
        assert len(points) >= 3
        hosts = aggregator.get("/api/v1/hosts", api)["hosts"]
        assert [h["host"] for h in hosts] == ["e2e-host"]
        assert hosts[0]["status"] in (
            "up",
            "warning",
            "critical",
        )
        assert hosts[0]["facts"]
        series = aggregator.get("/api/v1/hosts/e2e-host/series", api)["series"]
        assert len(series) > 50  # the agent's whole reading of this host
        metrics = aggregator.get("/metrics", api)
        assert "edgewatch_ingest_frames_total" in metrics
    finally:
        agent.terminate()
        agent.wait(15)
        assert agent.stderr is not None
        agent.stderr.close()


def _frames(agent: str, count: int, start: int) -> list[Batch]:
    series = [Series("load", precision=2), Series("seq")]
    return [
        Batch(agent, 7, seq, [start + seq * 1000], series, [[round(random.random(), 2)], [seq]])
        for seq in range(1, count + 1)
    ]


def test_kill_9_under_load_loses_nothing_acknowledged_and_stores_nothing_twice(tmp_path: Path) -> None:
    agg = AggregatorProcess(tmp_path)
    agg.start()
    agents = [f"load-{i}" for i in range(8)]
    tokens = {a: agg.admin("add-agent", a) for a in agents}
    start = int(time.time() * 1000) - 3_600_000
    frames = {a: _frames(a, 150, start) for a in agents}
    acked: dict[str, set[int]] = {a: set() for a in agents}
    stop = threading.Event()

    def pusher(agent: str) -> None:
        for b in frames[agent]:
            if stop.is_set():
                return
            try:
                status, body = _post(agg.url, "/api/v1/push", encode(b), tokens[agent], timeout=5)
            except OSError:
                continue  # the aggregator died under us: this frame is not acknowledged
            if status == 200:
                assert json.loads(body)["ack"] == b.seq
                acked[agent].add(b.seq)

    threads = [threading.Thread(target=pusher, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    while sum(len(s) for s in acked.values()) < 300:
        time.sleep(0.01)
    agg.kill9()
    stop.set()
    for t in threads:
        t.join()
    before = {a: set(s) for a, s in acked.items()}
    assert sum(len(s) for s in before.values()) >= 300
    conn = sqlite3.connect(agg.data_dir / "edgewatch.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    agg.start()
    try:
        # the agents send everything again, acknowledged or not: all 200, nothing stored twice
        for a in agents:
            for b in frames[a]:
                status, _ = _post(agg.url, "/api/v1/push", encode(b), tokens[a])
                assert status == 200
        api = agg.admin("add-token", "--role", "viewer")
        for a in agents:
            body = agg.get(
                f"/api/v1/query?host={a}&name=seq&start={start}&end={start + 200_000}&tier=raw", api
            )
            values = [p[2] for p in body["series"][0]["points"]]
            assert values == [float(s) for s in range(1, 151)], a  # each once, in order
            assert before[a] <= {int(v) for v in values}
    finally:
        agg.stop()
    conn = sqlite3.connect(agg.data_dir / "edgewatch.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_hostile_frames_get_4xx_never_500_and_the_server_keeps_serving(aggregator: AggregatorProcess) -> None:
    token = aggregator.admin("add-agent", "victim")
    good = encode(Batch("victim", 1, 1, [int(time.time() * 1000)], [Series("x")], [[1.0]]))
    header = b"EW" + bytes([MAJOR, MINOR, 0])
    rng = random.Random(4)
    hostile = [
        b"",
        b"EW",
        header,
        header + _zstd_bomb(64 << 20, declare=True),
        header + _zstd_bomb(64 << 20, declare=False),
        header + b"\x28\xb5\x2f\xfd" + bytes(40),
        good[:-3],
        good + b"trailing",
        bytes([good[0], good[1], 99]) + good[3:],
        *(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 400))) for _ in range(40)),
        *(good[:i] + bytes([good[i] ^ 0xFF]) + good[i + 1 :] for i in range(len(good))),
    ]
    statuses = []
    for body in hostile:
        status, answer = _post(aggregator.url, "/api/v1/push", body, token)
        statuses.append(status)
        assert 400 <= status < 500 or status == 200, (status, body[:40])
        if status != 200:
            assert json.loads(answer)["error"]
    assert statuses.count(200) < len(hostile) // 4
    status, answer = _post(aggregator.url, "/api/v1/push", good, token)
    assert status == 200
    assert json.loads(answer)["ack"] == 1


def _gzip_bomb(size: int) -> bytes:
    """About ``size / 1000`` bytes of gzip that inflate to ``size`` zeros (one fully flushed deflate
    block repeated: no block refers back to another, so the copies make a valid stream)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(16 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    crc, zero = 0, bytes(1 << 20)
    for _ in range(size >> 20):
        crc = zlib.crc32(zero, crc)
    raw = block * (size // (16 << 20)) + c.flush()
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + raw + struct.pack("<II", crc, size & 0xFFFFFFFF)


def test_a_gzip_body_is_not_inflated_so_a_bomb_cannot_stall_the_aggregator(
    aggregator: AggregatorProcess,
) -> None:
    token = aggregator.admin("add-agent", "victim")
    bomb = _gzip_bomb(512 << 20)
    assert len(bomb) < 1 << 20
    for credential in ("", token):
        started = time.monotonic()
        host, port = aggregator.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            headers = {"Authorization": f"Bearer {credential}", "Content-Encoding": "gzip"}
            conn.request("POST", "/api/v1/push", body=bomb, headers=headers)
            answer = conn.getresponse()
            status, body = answer.status, answer.read()
        finally:
            conn.close()
        with urllib.request.urlopen(aggregator.url + "/healthz", timeout=10) as r:
            assert r.status == 200
        # inflating 512 MB on the event loop took about a second, and a push with a token got 413
        assert time.monotonic() - started < 0.5
        assert status == (400 if credential else 401), body
        assert json.loads(body)["error"]


def test_an_outage_during_the_simulators_back_fill_lands_in_every_tier_exactly_once(tmp_path: Path) -> None:
    agg = AggregatorProcess(tmp_path, storage__compact_interval="1s")
    agg.start()
    try:
        enrollment = agg.admin("add-enrollment", "--uses", "3")
        api = agg.admin("add-token", "--role", "viewer")
        sim = subprocess.Popen(
            [
                *EDGEWATCH,
                *("sim", "--hosts", "3", "--interval", "10", "--aggregator", agg.url, "--seed", "3"),
                *(
                    "--enroll-token",
                    enrollment,
                    "--history",
                    "2h",
                    "--history-only",
                    "--history-samples",
                    "10",
                ),
                *("--timeout", "2", "--state", str(tmp_path / "sim.json")),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.5)
        agg.kill9()  # the outage: the simulator keeps its frames and retries
        time.sleep(3)
        agg.start()
        out, _ = sim.communicate(timeout=180)
        assert sim.returncode == 0
        stats = json.loads(out.decode().strip().splitlines()[-1])
        assert stats["errors"] > 0  # the outage was seen
        assert stats["dropped_frames"] == 0
        assert stats["pending_frames"] == 0
        time.sleep(3)  # closed windows get compacted; the open one stays in recent rows
        conn = sqlite3.connect(agg.data_dir / "edgewatch.db")
        stored = conn.execute("SELECT sum(samples) FROM raw_blocks").fetchone()[0]
        for (data,) in conn.execute("SELECT data FROM recent"):
            _, _, columns = decode_recent(data)
            stored += sum(1 for column in columns for v in column if v is not None)
        conn.close()
        assert stored == stats["samples_sent"]  # every sample once, none twice
        for host in ("sim-001", "sim-002", "sim-003"):
            for name in ("node_load1", "node_memory_MemAvailable_bytes"):
                counts, mins, maxs = set(), set(), set()
                for tier in ("raw", "1m", "5m", "1h"):
                    body = agg.get(
                        f"/api/v1/query?host={host}&name={name}&start=-3h&tier={tier}&step=1h", api
                    )
                    assert body["tier"] == tier
                    points = body["series"][0]["points"]
                    counts.add(sum(p[4] for p in points))
                    mins.add(min(p[1] for p in points))
                    maxs.add(max(p[3] for p in points))
                assert len(counts) == 1, (host, name, counts)
                assert counts.pop() >= 700  # two hours at 10 s
                assert len(mins) == 1
                assert len(maxs) == 1
    finally:
        agg.stop()


def test_tls_serves_https_and_the_agent_enrolls_with_a_private_ca(tmp_path: Path) -> None:
    import datetime

    from tests.agent.localservers import self_signed

    self_signed(tmp_path, datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30))
    cert = tmp_path / "cert.pem"
    agg = AggregatorProcess(tmp_path, ca_file=cert, tls_cert=str(cert), tls_key=str(tmp_path / "key.pem"))
    agg.start()
    enrollment = agg.admin("add-enrollment")
    try:
        state = tmp_path / "agent"
        done = edgewatch(
            *("enroll", agg.url, enrollment, "--state-dir", str(state)),
            *("--ca-file", str(cert), "--name", "tls-host"),
        )
        assert done.returncode == 0, done.stderr
        assert json.loads((state / "identity.json").read_text())["agent_id"] == "tls-host"
    finally:
        agg.stop()


def test_a_client_that_hangs_up_mid_body_is_logged_as_such_not_as_a_failure(
    aggregator: AggregatorProcess,
) -> None:
    token = aggregator.admin("add-agent", "quitter")
    host, port = aggregator.url.removeprefix("http://").split(":")
    head = (
        f"POST /api/v1/push HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head.encode() + b"x" * 1000)  # a tenth of the body, then gone
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while "mid-request" not in aggregator.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = aggregator.log.read_text()
    assert "client closed the connection mid-request path=/api/v1/push" in log
    assert "handler failed" not in log
    assert "Traceback" not in log
    status, body = _post(aggregator.url, "/api/v1/push", b"", token)
    assert status == 400, body  # and it goes on serving
