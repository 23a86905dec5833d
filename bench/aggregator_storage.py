"""Storage part of bench/aggregator.py: bytes on disk per raw sample after a simulated day.

The hosts' samples (``SimHost``, 10 s interval) go in through the Store API in-process (``FrameJob``
through the writer, one frame per host and 10-minute window, then ``maintain`` after each window as
the server's timer would), so the file grows as a live one does: ``recent`` rows written and
deleted, blocks and rollup rows added, rollup rows merged into chunks. The hosts are split over one
shard per core (separate processes and files, figures summed) to halve the time. The same samples
go to Debian's VictoriaMetrics (/api/v1/import, JSON lines) in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import sqlite3
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aggregator_common import (
    CORES,
    HOST,
    Processes,
    emit,
    free_port,
    http,
    log,
    rnd,
    wait_http,
)

from edgewatch.aggregator import accounts
from edgewatch.aggregator.db import DB_NAME
from edgewatch.aggregator.frames import FrameJob
from edgewatch.aggregator.schema import BLOCK_MS, HOUR_MS, TIERS
from edgewatch.aggregator.simhost import SimHost
from edgewatch.aggregator.store import GRACE_MS, Store

VM_BIN = "/usr/bin/victoria-metrics"
BUDGET_BYTES = 1.5
DAY_MS = 86_400_000


def host_name(i: int) -> str:
    return f"store-{i:03d}"


def make_host(i: int, n: int) -> SimHost:
    return SimHost(host_name(i), 7919 * (i + 1), interval_s=10.0, phase_s=10.0 * i / n)


class VmBatch:
    """Samples for one VictoriaMetrics import request: one JSON line per series."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.series: dict[tuple[str, int], tuple[str, list[float | int], list[int]]] = {}
        self.samples = 0
        self.posted = 0

    def add(self, host: SimHost, stamps: Sequence[int], columns: Sequence[Sequence[Any]]) -> None:
        for k, (s, column) in enumerate(zip(host.series, columns)):
            key = (host.name, k)
            entry = self.series.get(key)
            if entry is None:
                metric = {"__name__": s.name, **dict(s.labels), "host": host.name}
                entry = self.series[key] = (json.dumps(metric), [], [])
            for t, v in zip(stamps, column):
                if v is not None:
                    entry[1].append(v)
                    entry[2].append(t)
                    self.samples += 1

    def post(self) -> None:
        if not self.series:
            return
        body = "".join(
            f'{{"metric":{m},"values":{json.dumps(v)},"timestamps":{json.dumps(t)}}}\n'
            for m, v, t in self.series.values()
        ).encode()
        status, answer = http(self.url + "/api/v1/import", data=body, timeout=300)
        if status not in (200, 204):
            raise RuntimeError(f"VictoriaMetrics refused the import: HTTP {status} {answer[:200]!r}")
        self.posted += self.samples
        self.series.clear()
        self.samples = 0


async def build_shard(
    data_dir: Path, *, hosts: list[int], n: int, start_ms: int, hours: float, vm: str
) -> dict[str, Any]:
    store = Store(data_dir, synchronous="normal")
    sims = [make_host(i, n) for i in hosts]
    now = int(time.time() * 1000)

    def add(conn: sqlite3.Connection) -> None:
        for sim in sims:
            accounts.add_host(conn, sim.name, now, actor="bench")

    await store.write(add)
    ids = await store.readers.run(lambda conn: dict(conn.execute("SELECT name, id FROM hosts").fetchall()))
    end_ms = start_ms + int(hours * HOUR_MS)
    vm_batch = VmBatch(vm)
    seqs = dict.fromkeys(ids.values(), 0)
    samples = 0
    cpu = {"generate": 0.0, "ingest": 0.0, "maintain": 0.0, "vm_json": 0.0}
    last: dict[str, int | None] = {sim.name: None for sim in sims}
    for win in range(start_ms, end_ms, BLOCK_MS):
        jobs = []
        t = time.process_time()
        for sim in sims:
            stamps = sim.ticks(win, win + BLOCK_MS)
            if not stamps:
                continue
            hid = ids[sim.name]
            seqs[hid] += 1
            batch = sim.batch(stamps, 1, seqs[hid], sim.name, last[sim.name])
            last[sim.name] = stamps[-1]
            jobs.append(FrameJob(hid, batch, store.series, store.acked, 0))
            t2 = time.process_time()
            cpu["generate"] += t2 - t
            vm_batch.add(sim, stamps, batch.values)
            t = time.process_time()
            cpu["vm_json"] += t - t2
        results = await asyncio.gather(*(store.writer.submit(job) for job in jobs))
        samples += sum(r.samples for r in results)
        t2 = time.process_time()
        cpu["ingest"] += t2 - t
        await store.maintain(win + BLOCK_MS + GRACE_MS)
        t = time.process_time()
        cpu["maintain"] += t - t2
        if (win + BLOCK_MS) % HOUR_MS == 0 or win + BLOCK_MS >= end_ms:
            vm_batch.post()
            cpu["vm_json"] += time.process_time() - t
    await store.maintain(end_ms + BLOCK_MS + GRACE_MS)
    store.close()
    return {"samples": samples, "vm_samples": vm_batch.posted, "cpu": cpu}


def shard_main(args: tuple[Path, list[int], int, int, float, str]) -> dict[str, Any]:
    data_dir, hosts, n, start_ms, hours, vm = args
    return asyncio.run(build_shard(data_dir, hosts=hosts, n=n, start_ms=start_ms, hours=hours, vm=vm))


def sqlite_figures(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    try:
        pages = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0] * page_size
        raw = conn.execute("SELECT count(*), sum(samples), sum(length(data)) FROM raw_blocks").fetchone()
        tiers = {
            tier: (rows, length)
            for tier, rows, length in conn.execute(
                "SELECT tier, count(*), sum(length(data)) FROM rollups GROUP BY tier"
            )
        }
        series = conn.execute("SELECT count(*) FROM series").fetchone()[0]
        recent = conn.execute("SELECT count(*) FROM recent").fetchone()[0]
    finally:
        conn.close()
    return {
        "pages": pages,
        "page_size": page_size,
        "free": free,
        "raw": raw,
        "tiers": tiers,
        "series": series,
        "recent": recent,
        "file": db.stat().st_size,
        "wal": db.with_name(db.name + "-wal").stat().st_size
        if db.with_name(db.name + "-wal").exists()
        else 0,
    }


def merge_figures(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"pages": {}, "tiers": {}, "free": 0, "file": 0, "wal": 0, "series": 0, "recent": 0}
    raw = [0, 0, 0]
    for p in parts:
        for k, v in p["pages"].items():
            out["pages"][k] = out["pages"].get(k, 0) + v
        for k, (rows, length) in p["tiers"].items():
            r, n = out["tiers"].get(k, (0, 0))
            out["tiers"][k] = (r + rows, n + length)
        for k in ("free", "file", "wal", "series", "recent"):
            out[k] += p[k]
        raw = [a + (b or 0) for a, b in zip(raw, p["raw"])]
    out["raw"] = raw
    out["page_size"] = parts[0]["page_size"]
    return out


def files_bytes(root: Path) -> int:
    """Sum of the sizes of the files under ``root`` (files that vanish meanwhile count nothing)."""
    total = 0
    for path in root.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file():
                total += path.stat().st_size
    return total


class VictoriaMetrics:
    def __init__(self, procs: Processes, data: Path, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.data = data
        self.procs = procs
        self._log = log_path.open("ab")
        self.proc = procs.start(
            [
                VM_BIN,
                f"-storageDataPath={data}",
                f"-httpListenAddr={HOST}:{self.port}",
                "-retentionPeriod=100y",
                "-search.latencyOffset=0s",
                "-loggerLevel=ERROR",
            ],
            stdout=self._log,
            stderr=self._log,
        )
        wait_http(self.url + "/health", self.proc, what="victoria-metrics")

    def metrics(self) -> dict[str, float]:
        status, body = http(self.url + "/metrics")
        if status != 200:
            raise RuntimeError(f"victoria-metrics /metrics answered {status}")
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                try:
                    out[key] = float(value)
                except ValueError:
                    continue
        return out

    def total(self, prefix: str) -> float:
        return sum(v for k, v in self.metrics().items() if k.startswith(prefix + "{") or k == prefix)

    def settle(self, rows: int, timeout: float = 600) -> None:
        """Flush, then wait until every row is in parts and no merge runs (twice in a row)."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            http(self.url + "/internal/force_flush")
            m = self.metrics()
            stored = sum(v for k, v in m.items() if k.startswith('vm_rows{type="storage/'))
            merging = sum(v for k, v in m.items() if k.startswith("vm_active_merges"))
            pending = sum(v for k, v in m.items() if k.startswith("vm_pending_rows"))
            quiet = quiet + 1 if stored >= rows and not merging and not pending else 0
            if quiet >= 3:
                return
            time.sleep(1.0)
        raise RuntimeError("victoria-metrics did not settle in time")

    def sizes(self) -> dict[str, Any]:
        m = self.metrics()
        by_type = {k.split('"')[1]: v for k, v in m.items() if k.startswith("vm_data_size_bytes{")}
        os.sync()  # du counts allocated blocks: let the filesystem allocate what VictoriaMetrics wrote
        apparent = files_bytes(self.data)
        du = subprocess.run(
            ["du", "-s", "--block-size=1", str(self.data)], capture_output=True, text=True, check=True
        )
        parts = {k.split('"')[1]: v for k, v in m.items() if k.startswith("vm_parts{")}
        return {
            "by_type": by_type,
            "total": sum(by_type.values()),
            "du": int(du.stdout.split()[0]),
            "apparent": apparent,
            "parts": parts,
        }

    def count(self, end_ms: int, span_h: float) -> int:
        query = f'sum(count_over_time({{__name__=~".+"}}[{int(span_h * 3600) + 3600}s]))'
        from urllib.parse import urlencode

        status, body = http(
            self.url + "/api/v1/query?" + urlencode({"query": query, "time": f"{end_ms / 1000:.3f}"}),
            timeout=300,
        )
        if status != 200:
            raise RuntimeError(f"victoria-metrics query answered {status}: {body[:200]!r}")
        result = json.loads(body)["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0

    def series_count(self) -> int:
        status, body = http(self.url + "/api/v1/series/count")
        return int(json.loads(body)["data"][0]) if status == 200 else -1

    def force_merge(self, start_ms: int, end_ms: int) -> None:
        months = sorted(
            {time.strftime("%Y_%m", time.gmtime(t / 1000)) for t in range(start_ms, end_ms, HOUR_MS)}
        )
        for month in months:
            http(self.url + f"/internal/force_merge?partition_prefix={month}", timeout=600)

    def stop(self) -> None:
        self.procs.stop(self.proc)
        self._log.close()


def run(hosts: int, hours: float, tmp: Path, procs: Processes) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - 2 * DAY_MS
    start_ms -= start_ms % HOUR_MS
    end_ms = start_ms + int(hours * HOUR_MS)
    work = tmp / "storage"
    work.mkdir()
    vm = VictoriaMetrics(procs, work / "vm", work / "vm.log")
    try:
        shards = min(CORES, hosts)
        jobs = [
            (work / f"shard-{k}", list(range(k, hosts, shards)), hosts, start_ms, hours, vm.url)
            for k in range(shards)
        ]
        log(f"storage: {hosts} hosts x {hours:g} h at 10 s in {shards} shard(s); the same samples to VM")
        t = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(shards) as pool:
            results = pool.map(shard_main, jobs)
        build_s = time.perf_counter() - t
        samples = sum(r["samples"] for r in results)
        vm_sent = sum(r["vm_samples"] for r in results)
        log(f"storage: built in {build_s:.0f} s ({samples} samples); VictoriaMetrics: flush and merges")
        ours = merge_figures([sqlite_figures(job[0] / DB_NAME) for job in jobs])
        vm.settle(vm_sent)
        flushed = vm.sizes()
        vm_count = vm.count(end_ms, hours)
        vm_series = vm.series_count()
        vm.force_merge(start_ms, end_ms)
        time.sleep(1.0)
        vm.settle(vm_sent)
        merged = vm.sizes()
        vm_rows = int(vm.total('vm_rows{type="storage/big"}') + vm.total('vm_rows{type="storage/small"}'))
    finally:
        vm.stop()
    return report(
        hosts,
        hours,
        samples,
        vm_sent,
        vm_count,
        vm_rows,
        vm_series,
        ours,
        flushed,
        merged,
        results,
        build_s,
        shards,
    )


def report(  # noqa: PLR0917 - one call site, every figure by name there
    hosts: int,
    hours: float,
    samples: int,
    vm_sent: int,
    vm_count: int,
    vm_rows: int,
    vm_series: int,
    ours: dict[str, Any],
    flushed: dict[str, Any],
    merged: dict[str, Any],
    results: list[dict[str, Any]],
    build_s: float,
    shards: int,
) -> dict[str, Any]:
    pages = ours["pages"]
    raw_pages = pages.get("raw_blocks", 0) + pages.get("sqlite_autoindex_raw_blocks_1", 0)
    rollup_pages = pages.get("rollups", 0) + pages.get("sqlite_autoindex_rollups_1", 0)
    raw_blocks, raw_samples, raw_len = ours["raw"]
    rollup_len = sum(length for _, length in ours["tiers"].values()) or 1
    tiers = {}
    for tier in TIERS[1:]:
        rows, length = ours["tiers"].get(tier.id, (0, 0))
        tiers[tier.name] = {
            "rows": rows,
            "data_bytes": length,
            "page_bytes_estimate": round(rollup_pages * length / rollup_len),
            "data_bytes_per_raw_sample": rnd(length / max(raw_samples, 1), 4),
        }
    per = lambda b: rnd(b / max(raw_samples, 1), 4)  # noqa: E731
    day = 24 / hours / hosts  # page bytes of the run -> per host and day
    per_day = {"raw": raw_pages * day} | {k: v["page_bytes_estimate"] * day for k, v in tiers.items()}
    keep_days = {"raw": 7, "1m": 30, "5m": 90, "1h": 365}  # the default retention
    ours_raw = raw_pages / max(raw_samples, 1)
    vm_best = min(flushed["total"], merged["total"])
    vm_data_only = merged["by_type"].get("storage/big", 0) + merged["by_type"].get("storage/small", 0)
    cpu = {k: round(sum(r["cpu"][k] for r in results), 1) for k in results[0]["cpu"]}
    counts_match = samples == raw_samples == vm_sent == vm_count == vm_rows
    return {
        "bench": "aggregator",
        "what": "storage",
        "hosts": hosts,
        "hours": hours,
        "interval_s": 10,
        "series": ours["series"],
        "series_per_host": rnd(ours["series"] / hosts, 1),
        "raw_samples": raw_samples,
        "raw_blocks": raw_blocks,
        "raw_bytes_per_sample_dbstat": rnd(ours_raw, 4),
        "raw_bytes_per_sample_data": per(raw_len),
        "raw_pages_bytes": raw_pages,
        "raw_data_bytes": raw_len,
        "rollups": tiers,
        "rollups_pages_bytes": rollup_pages,
        "page_bytes_per_host_day": {k: round(v) for k, v in per_day.items()},
        "projection_bytes_per_host_at_default_retention": {
            k: round(v * keep_days[k]) for k, v in per_day.items()
        },
        "file_bytes": ours["file"] + ours["wal"],
        "file_bytes_per_raw_sample": per(ours["file"] + ours["wal"]),
        "free_page_bytes": ours["free"],
        "other_pages": {
            k: v for k, v in sorted(pages.items()) if "raw_blocks" not in k and "rollups" not in k
        },
        "recent_rows_left": ours["recent"],
        "shards": shards,
        "shards_note": f"the hosts were split over {shards} database files built in parallel; "
        "figures are their sums",
        "victoriametrics": {
            "version": vm_version(),
            "samples_imported": vm_sent,
            "samples_counted": vm_count,
            "rows_stored": vm_rows,
            "series": vm_series,
            "after_flush": {
                "data_size_bytes": flushed["by_type"],
                "bytes_per_sample": rnd(flushed["total"] / max(vm_rows, 1), 4),
                "du_bytes": flushed["du"],
                "files_bytes": flushed["apparent"],
                "du_bytes_per_sample": rnd(flushed["du"] / max(vm_rows, 1), 4),
                "parts": flushed["parts"],
            },
            "after_force_merge": {
                "data_size_bytes": merged["by_type"],
                "bytes_per_sample": rnd(merged["total"] / max(vm_rows, 1), 4),
                "data_only_bytes_per_sample": rnd(vm_data_only / max(vm_rows, 1), 4),
                "du_bytes": merged["du"],
                "files_bytes": merged["apparent"],
                "du_bytes_per_sample": rnd(merged["du"] / max(vm_rows, 1), 4),
                "parts": merged["parts"],
            },
        },
        "counts_match": counts_match,
        "build_s": rnd(build_s, 1),
        "build_cpu_s": cpu,
        "build_cpu_us_per_sample": {k: rnd(v / max(raw_samples, 1) * 1e6, 2) for k, v in cpu.items()},
        "maintain_cpu_us_per_sample": rnd(cpu["maintain"] / max(raw_samples, 1) * 1e6, 2),
        "maintain_note": "maintain: compaction into raw blocks and 1m/5m/1h rollups, and merging "
        "rollup rows into chunks, over a whole day, after every window as the server's timer does "
        "(in-process, one shard per core)",
        "budget_bytes_per_sample": BUDGET_BYTES,
        "compared_with": "raw_bytes_per_sample_dbstat vs VictoriaMetrics' smallest "
        "sum(vm_data_size_bytes) per sample",
        "within_budget": counts_match and ours_raw <= BUDGET_BYTES and raw_pages <= vm_best,
    }


def vm_version() -> str:
    """The Debian package's version (this build's ``-version`` prints nothing)."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "victoria-metrics"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown"


def main(hosts: int, hours: float, tmp: Path, procs: Processes) -> None:
    emit(run(hosts, hours, tmp, procs))
