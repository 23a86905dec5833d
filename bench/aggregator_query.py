"""Query part of bench/aggregator.py: range-query latency of a real aggregator over HTTP.

The database is built in-process through the Store API (``FrameJob`` through the writer and
``maintain``, the code the server runs), then a real ``edgewatch aggregator`` process serves it and
the benchmark queries it with a viewer API token over one keep-alive connection. Data: one probe host
with 30 days (the last 24 h at the agents' 10 s interval, the days before at a coarser interval, so
the 1 m / 5 m / 1 h tiers are real and the 30-day chart reads 1 h chunks), and filler hosts up to
the host count with the last minutes at 10 s (every host has its series, facts and last-seen time; a
day of 10 s data for 1,000 hosts would take hours to compact here). The newest window stays in
``recent``, as on a live aggregator. Maintenance is off while querying (no ingest runs either).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aggregator_common import (
    HOST,
    Aggregator,
    Processes,
    edgewatch_bin,
    emit,
    free_port,
    log,
    machine_busy_s,
    own_cpu_s,
    pct,
    rnd,
    rss_mb,
    write_config,
)

from edgewatch.aggregator import accounts
from edgewatch.aggregator.db import DB_NAME
from edgewatch.aggregator.frames import FrameJob
from edgewatch.aggregator.schema import BLOCK_MS, HOUR_MS
from edgewatch.aggregator.simhost import SimHost
from edgewatch.aggregator.store import GRACE_MS, Store
from edgewatch.protocol import Batch

BUDGET_24H_P95_MS = 10.0
DAY_MS = 86_400_000
PROBE = "query-probe"
PROBE_SEED = 424242


def filler_name(i: int) -> str:
    return f"query-{i:04d}"


class Builder:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.ids: dict[str, int] = {}
        self.seqs: dict[str, int] = {}
        self.samples = 0
        self.frames = 0

    async def add_hosts(self, names: Sequence[str], now_ms: int) -> None:
        def add(conn: Any) -> None:
            for name in names:
                accounts.add_host(conn, name, now_ms, actor="bench")

        await self.store.write(add)
        rows = await self.store.readers.run(
            lambda conn: conn.execute("SELECT name, id FROM hosts").fetchall()
        )
        self.ids = dict(rows)

    async def push(self, batches: Sequence[Batch]) -> None:
        jobs = [
            FrameJob(self.ids[b.agent_id], b, self.store.series, self.store.acked, 0)
            for b in batches
            if b.timestamps
        ]
        for result in await asyncio.gather(*(self.store.writer.submit(job) for job in jobs)):
            self.samples += result.samples
        self.frames += len(jobs)

    def batch(self, host: SimHost, stamps: Sequence[int]) -> Batch:
        seq = self.seqs[host.name] = self.seqs.get(host.name, 0) + 1
        return host.batch(stamps, 1, seq, host.name)


async def build(
    data_dir: Path, *, hosts: int, days: float, history_s: float, filler_min: float
) -> dict[str, Any]:
    started = time.perf_counter()
    store = Store(data_dir, synchronous="normal")
    b = Builder(store)
    now_ms = int(time.time() * 1000)
    fillers = [filler_name(i) for i in range(1, hosts)]
    await b.add_hosts([PROBE, *fillers], now_ms)
    # the probe: days of history at history_s, then the last 24 h at 10 s
    recent_start = now_ms - DAY_MS
    recent_start -= recent_start % BLOCK_MS
    old = SimHost(PROBE, PROBE_SEED, interval_s=history_s)
    first = now_ms - int(days * DAY_MS)
    log(f"query: probe history, {days - 1:g} days at {history_s:g} s")
    for day in range(first, recent_start, DAY_MS):
        stamps = old.ticks(day, min(day + DAY_MS, recent_start))
        if stamps:
            await b.push([b.batch(old, stamps)])
        await store.maintain(min(day + DAY_MS, recent_start) + GRACE_MS)
    log("query: probe, the last 24 h at 10 s")
    live = SimHost(PROBE, PROBE_SEED, interval_s=10.0)
    for win in range(recent_start, now_ms, BLOCK_MS):
        stamps = live.ticks(win, min(win + BLOCK_MS, now_ms))
        if win + BLOCK_MS + GRACE_MS > now_ms:  # not compacted yet: frames of one sample, as live
            for t in stamps:
                await b.push([b.batch(live, [t])])
        elif stamps:
            await b.push([b.batch(live, stamps)])
        if (win + BLOCK_MS) % HOUR_MS == 0:
            await store.maintain(win + BLOCK_MS + GRACE_MS)
    log(f"query: {len(fillers)} filler hosts, the last {filler_min:g} min at 10 s")
    since = now_ms - int(filler_min * 60_000)
    for k in range(0, len(fillers), 50):
        batches = []
        for i, name in enumerate(fillers[k : k + 50], k + 1):
            host = SimHost(name, i, interval_s=10.0, phase_s=10.0 * i / hosts)
            stamps = host.ticks(since, now_ms)
            cut = [t for t in stamps if t - t % BLOCK_MS < now_ms - now_ms % BLOCK_MS]
            for part in (cut, stamps[len(cut) :]):  # a frame per window, as the history frames
                if part:
                    batches.append(b.batch(host, part))
        await b.push(batches)
    await store.maintain(int(time.time() * 1000))
    store.close()
    return {
        "probe_series": len(live.series),
        "frames": b.frames,
        "samples_ingested": b.samples,
        "build_s": round(time.perf_counter() - started, 1),
        "now_ms": now_ms,
        "probe_history_from_ms": first,
        "probe_10s_from_ms": recent_start,
    }


def db_facts(db: Path) -> dict[str, Any]:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        probe = one(f"SELECT id FROM hosts WHERE name = '{PROBE}'")
        tiers = {
            {1: "1m", 2: "5m", 3: "1h"}[t]: {"rows": n, "bytes": s}
            for t, n, s in conn.execute("SELECT tier, count(*), sum(length(data)) FROM rollups GROUP BY tier")
        }
        return {
            "hosts": one("SELECT count(*) FROM hosts"),
            "series": one("SELECT count(*) FROM series"),
            "raw_samples_in_blocks": one("SELECT coalesce(sum(samples), 0) FROM raw_blocks"),
            "raw_blocks": one("SELECT count(*) FROM raw_blocks"),
            "recent_rows": one("SELECT count(*) FROM recent"),
            "rollup_rows": tiers,
            "probe_raw_blocks": one(f"SELECT count(*) FROM raw_blocks WHERE host = {probe}"),
            "probe_raw_samples": one(f"SELECT sum(samples) FROM raw_blocks WHERE host = {probe}"),
            "probe_rollup_rows": dict(
                conn.execute(
                    f"SELECT tier, count(*) FROM rollups WHERE host = {probe} GROUP BY tier"
                ).fetchall()
            ),
            "file_bytes": db.stat().st_size,
        }
    finally:
        conn.close()


def add_token(data_dir: Path) -> str:
    import subprocess

    out = subprocess.run(
        [
            edgewatch_bin(),
            "admin",
            "--data-dir",
            str(data_dir),
            "add-token",
            "--role",
            "viewer",
            "--name",
            "bench",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


class Client:
    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> tuple[float, int, bytes]:
        started = time.perf_counter()
        self.conn.request("GET", path, headers=self.headers)
        answer = self.conn.getresponse()
        body = answer.read()
        return (time.perf_counter() - started) * 1000, answer.status, body

    def close(self) -> None:
        self.conn.close()


def selectors(probe: SimHost) -> list[dict[str, str]]:
    """A few single series of the probe host: gauges and counters, as the host page shows them."""
    out: list[dict[str, str]] = [
        {"name": "node_load1"},
        {"name": "edgewatch_cpu_usage_percent", "label.cpu": "all"},
        {"name": "edgewatch_memory_used_percent"},
        {"name": "node_filesystem_avail_bytes", "label.mountpoint": "/"},
    ]
    nic = next(dict(s.labels) for s in probe.series if s.name == "node_network_receive_bytes_total")
    out.append({"name": "node_network_receive_bytes_total", "label.device": nic["device"]})
    return out


def run_queries(client: Client, agg: Aggregator, runs: int, probe: SimHost) -> list[dict[str, Any]]:
    sels = selectors(probe)
    heavy = max(3, runs // 10)  # every series of a host: seconds per answer at the time of writing
    cases: list[tuple[str, str, list[str], int]] = []
    for span in ("1h", "24h", "30d"):
        paths = [f"/api/v1/query?{urlencode({'host': PROBE, **s, 'start': f'-{span}'})}" for s in sels]
        cases.append((f"one series, {span}", span, paths, runs))
    everything = f"/api/v1/query?{urlencode({'host': PROBE, 'start': '-24h'})}"
    cases.append(("host page: every series of the host, 24h", "24h", [everything], heavy))
    cases.append(("host page: the host's series list", "", [f"/api/v1/hosts/{PROBE}/series"], runs))
    cases.append(("overview: /api/v1/hosts (every host)", "", ["/api/v1/hosts"], runs))
    out = []
    for what, span, paths, count in cases:
        log(f"query: {what} x {count}")
        for path in paths[: 3 if count == runs else 1]:  # warm-up
            client.get(path)
        busy0, own0, agg0 = machine_busy_s(), own_cpu_s(), agg.cpu()
        times: list[float] = []
        tiers: set[str] = set()
        points: list[float] = []
        series: list[int] = []
        sizes: list[int] = []
        for i in range(count):
            ms, status, body = client.get(paths[i % len(paths)])
            if status != 200:
                raise RuntimeError(f"{paths[i % len(paths)]} answered {status}: {body[:200]!r}")
            times.append(ms)
            sizes.append(len(body))
            data = json.loads(body)
            if "tier" in data:
                tiers.add(data["tier"])
                series.append(len(data["series"]))
                points.append(sum(len(s["points"]) for s in data["series"]) / max(len(data["series"]), 1))
            elif "hosts" in data:
                series.append(len(data["hosts"]))
            else:
                series.append(len(data.get("series", [])))
        other = machine_busy_s() - busy0 - (own_cpu_s() - own0) - (agg.cpu() - agg0)
        line: dict[str, Any] = {
            "bench": "aggregator",
            "what": "query",
            "query": what,
            "span": span or None,
            "runs": count,
            "p50_ms": rnd(pct(times, 0.5)),
            "p95_ms": rnd(pct(times, 0.95)),
            "p99_ms": rnd(pct(times, 0.99)),
            "max_ms": rnd(max(times)),
            "tier": sorted(tiers)[0] if len(tiers) == 1 else sorted(tiers) or None,
            "series_per_answer": rnd(sum(series) / len(series), 1),
            "points_per_series": rnd(sum(points) / len(points), 1) if points else None,
            "answer_bytes": round(sum(sizes) / len(sizes)),
            "selectors": [dict(s) for s in sels] if len(paths) > 1 else None,
            "other_processes_cpu_s": rnd(max(0.0, other), 2),
        }
        if span == "24h" and len(paths) > 1:
            line["budget_p95_ms"] = BUDGET_24H_P95_MS
            line["within_budget"] = line["p95_ms"] <= BUDGET_24H_P95_MS
        out.append(line)
    return out


def wait_federate_filled(agg: Aggregator, timeout_s: float = 600.0) -> float:
    """Seconds from the aggregator answering until its start fill of /federate has logged its end."""
    started = time.monotonic()
    while "federate filled" not in agg.log_path.read_text(errors="replace"):
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"the aggregator did not finish its /federate fill in {timeout_s:g} s")
        time.sleep(0.1)
    return time.monotonic() - started


def run(
    tmp: Path, procs: Processes, *, hosts: int, days: float, history_s: float, filler_min: float, runs: int
) -> None:
    work = tmp / "query"
    data_dir = work / "data"
    work.mkdir()
    log(f"query: building {hosts} hosts in-process (Store: FrameJob + maintain)")
    built = asyncio.run(build(data_dir, hosts=hosts, days=days, history_s=history_s, filler_min=filler_min))
    facts = db_facts(data_dir / DB_NAME)
    token = add_token(data_dir)
    port = free_port()
    config = work / "aggregator.toml"
    write_config(
        config, data_dir, port, storage={"compact_interval": "86400s", "retention_interval": "86400s"}
    )
    agg = Aggregator(procs, config, work / "aggregator.log", port)
    client = Client(port, token)
    try:
        fill_s = wait_federate_filled(agg)
        log(f"query: {runs} runs of each query against the aggregator")
        lines = run_queries(client, agg, runs, SimHost(PROBE, PROBE_SEED))
        rss = rss_mb(agg.pid)
    finally:
        client.close()
        agg.stop()
    data = {
        "bench": "aggregator",
        "what": "query-data",
        **facts,
        "probe_host": PROBE,
        "probe_series": built["probe_series"],
        "probe_data": f"{days:g} days: the last 24 h at 10 s, "
        f"the {days - 1:g} days before at {history_s:g} s",
        "filler_hosts": hosts - 1,
        "filler_data": f"the last {filler_min:g} min at 10 s (one frame per host and window)",
        "samples_ingested": built["samples_ingested"],
        "frames_ingested": built["frames"],
        "build_s": built["build_s"],
        "built_through": "the Store API in-process: FrameJob via the writer, then maintain "
        "(compaction, rollups, merges)",
        "served_by": "a real `edgewatch aggregator` process, maintenance off, no ingest while querying",
        "federate_fill_s": rnd(fill_s, 1),
        "measured_after": "the start fill of /federate's newest values (it reads every host's last "
        "window in the reader threads; queries made meanwhile take several times longer)",
        "client": "one keep-alive HTTP connection, viewer API token, sequential requests",
        "aggregator_rss_mb": rnd(rss, 1),
    }
    emit(data)
    for line in lines:
        emit(line)
