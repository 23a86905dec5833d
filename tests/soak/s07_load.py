"""Soak scenario 7, sustained load: a big simulated fleet against one aggregator for a long time.

``edgewatch sim`` enrolls ``hosts`` agents and pushes each every ``interval`` seconds against a real
aggregator with its default storage settings: first through the warm-up, then for ``load`` seconds.
In the full form the warm-up lasts until the aggregator has compacted the first 10-minute window that
was under full load from start to end (every periodic job has then run at full size once); the fast
form closes no window, and its warm-up is the first half of the load. Meanwhile:

- a dashboard reads (``/api/v1/hosts`` and a range query of a random host, over and over), so
  reader transactions overlap the writer's commits and checkpoints;
- ``edgewatch admin add-token`` writes to the same database from another process now and then, the
  one source of a second writer (and so of ``SQLITE_BUSY``) an aggregator meets;
- the aggregator's resident memory (``VmRSS``) and the size of its WAL file are sampled.

Afterwards: the simulator's push latencies and every push it could not place, the aggregator's own
refusal counters (``/metrics``), the dashboard's and the admin command's outcomes, and the
aggregator's log (no ``database is locked``, no failed commit, no traceback).
"""

from __future__ import annotations

import random
import re
import statistics
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edgewatch.aggregator.schema import BLOCK_MS
from edgewatch.aggregator.store import GRACE_MS
from tests.aggregator.procs import AggregatorProcess, edgewatch, env_without_proxies
from tests.soak.core import Context, Result, scenario
from tests.soak.simkit import Processes, Sampler, Sim, enroll_token, file_size, rss_bytes

FULL: dict[str, Any] = {
    "hosts": 2000,
    "interval": 10.0,
    "load": 1800.0,
    "warmup": "window",
    "sample_every": 5.0,
    "read_every": 2.0,
    "admin_every": 60.0,
    "p99_ms": 2000.0,
    "rss_tolerance": 0.10,
}
FAST: dict[str, Any] = {
    "hosts": 300,
    "interval": 2.0,
    "load": 11.0,
    "warmup": 11.0,
    "sample_every": 0.5,
    "read_every": 0.5,
    "admin_every": 5.0,
    "p99_ms": 2000.0,
    "rss_tolerance": 0.25,
}
WAL_BOUND = 32 << 20  # bytes; SQLite checkpoints every 1,000 pages (4 MiB): more means starved checkpoints
RSS_SLACK = 16 << 20  # bytes on top of the tolerance: allocator noise of a Python process
# what a busy or failing database leaves in the aggregator's log (text format: ``level=error ...``)
BUSY_LOG = re.compile(r"database is locked|SQLITE_BUSY|commit failed|Traceback|^level=error|\bERROR\b", re.M)
PROMISE = (
    "Under a sustained fleet load with a dashboard reading and admin commands writing alongside, no push "
    "is refused or fails for a busy database (no 5xx, nothing in the log), the p99 push latency stays "
    "under a stated bound, the WAL stays bounded, and the aggregator's memory is flat after warm-up."
)


class Dashboard(threading.Thread):
    """Reads as a browser on the overview and a host page does, every ``every`` seconds."""

    def __init__(self, agg: AggregatorProcess, token: str, hosts: int, every: float) -> None:
        super().__init__(daemon=True)
        self.agg, self.token, self.hosts, self.every = agg, token, hosts, every
        self.statuses: dict[str, int] = {}
        self.latencies: list[float] = []
        self._halt = threading.Event()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _get(self, path: str) -> None:
        request = urllib.request.Request(
            self.agg.url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        started = time.monotonic()
        try:
            with self._opener.open(request, timeout=30) as answer:
                answer.read()
                status = str(answer.status)
        except urllib.error.HTTPError as exc:
            status = str(exc.code)
            exc.close()
        except OSError as exc:
            status = type(exc).__name__
        self.latencies.append((time.monotonic() - started) * 1000)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def run(self) -> None:
        rng = random.Random(7)
        while not self._halt.is_set():
            self._get("/api/v1/hosts")
            self._get(f"/api/v1/query?host=sim-{rng.randint(1, self.hosts):0{max(3, len(str(self.hosts)))}d}")
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(60)


class AdminWriter(threading.Thread):
    """``edgewatch admin add-token`` against the live database every ``every`` seconds."""

    def __init__(self, data_dir: Path, every: float) -> None:
        super().__init__(daemon=True)
        self.data_dir, self.every = data_dir, every
        self.ok = 0
        self.failed: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self._halt.wait(self.every):
            n += 1
            done = edgewatch(
                "admin", "--data-dir", str(self.data_dir), "add-token", "--role", "viewer", "--name",
                f"soak-{n}", env=env_without_proxies(), timeout=120,
            )  # fmt: skip
            if done.returncode == 0:
                self.ok += 1
            else:
                self.failed.append(done.stderr.strip()[-300:])

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(150)


MAINTENANCE_LOG = "maintenance windows="  # the aggregator's line after a pass that compacted windows
PASS_BOUND_S = 900.0  # a compaction pass of the first full window should have ended by then


def _wait_full_window(agg: AggregatorProcess, sim: Sim) -> dict[str, float]:
    """Wait until the aggregator has compacted the first 10-minute window that was under full load
    from start to end: the first maintenance pass logged after that window closed (plus the grace
    the aggregator gives late frames). Figures: seconds waited, and the window's start."""
    started, now = time.monotonic(), time.time()
    block_s, grace_s = BLOCK_MS / 1000, GRACE_MS / 1000
    window = (now // block_s + 1) * block_s  # the first window that starts after the fleet is live
    closed = window + block_s + grace_s
    while time.time() < closed:
        sim.check_alive()
        time.sleep(min(5.0, max(0.1, closed - time.time())))
    seen = agg.log.read_text().count(MAINTENANCE_LOG)
    deadline = time.monotonic() + PASS_BOUND_S
    while agg.log.read_text().count(MAINTENANCE_LOG) <= seen:
        sim.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no pass compacted the window at {window:.0f} in {PASS_BOUND_S:g} s")
        time.sleep(1.0)
    return {"warmup_s": round(time.monotonic() - started, 1), "first_full_window": window}


def _wait_live(sim: Sim, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while "live hosts=" not in sim.log.read_text():
        sim.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the simulated fleet was not live within {timeout:g} s")
        time.sleep(0.2)


@scenario(7, "sustained load", PROMISE)
def run(ctx: Context) -> Result:
    p = ctx.scale(FULL, FAST)
    hosts, interval, load = int(p["hosts"]), float(p["interval"]), float(p["load"])
    result = Result()
    figures = result.figures
    figures.update(hosts=hosts, interval_s=interval, load_s=load, warmup=p["warmup"])
    procs = Processes()
    samplers: list[Sampler] = []
    readers: list[Dashboard | AdminWriter] = []
    try:
        agg = procs.aggregator(ctx.tmp)
        agg.start()
        api = agg.admin("add-token", "--role", "viewer")
        sim = Sim(procs, ctx.tmp, agg.url, enroll_token(agg, hosts), hosts, interval, seed=7, concurrency=32,
                  log_level="info")  # fmt: skip
        sim.start()
        _wait_live(sim, timeout=60 + hosts / 5)
        assert agg.proc is not None
        pid = agg.proc.pid
        rss = Sampler(lambda: rss_bytes(pid), p["sample_every"])
        wal = Sampler(lambda: file_size(agg.data_dir / "edgewatch.db-wal"), p["sample_every"])
        dashboard = Dashboard(agg, api, hosts, p["read_every"])
        admin = AdminWriter(agg.data_dir, p["admin_every"])
        samplers += [rss, wal]
        readers += [dashboard, admin]
        for thread in (*samplers, *readers):
            thread.start()
        if p["warmup"] == "window":
            figures.update(_wait_full_window(agg, sim))
        else:
            time.sleep(float(p["warmup"]))
        warm_end = time.monotonic() - rss.started
        deadline = time.monotonic() + load
        while time.monotonic() < deadline:
            sim.check_alive()
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        for thread in (*samplers, *readers):
            thread.stop()
        stats = sim.stop()
        metrics = agg.get("/metrics", api)
        figures["aggregator_stop_code"] = agg.stop()
        _judge(result, p, stats, metrics, dashboard, admin, agg.log.read_text())
        _memory(result, p, rss.points, wal.points, warm_end)
    finally:
        for thread in (*samplers, *readers):
            thread.stop()
        procs.close()
    return result


def _judge(
    result: Result,
    p: dict[str, Any],
    stats: dict[str, Any],
    metrics: str,
    dashboard: Dashboard,
    admin: AdminWriter,
    log: str,
) -> None:
    figures = result.figures
    figures.update(
        pushes=stats["frames_sent"],
        pushes_per_s=round(stats["frames_sent"] / max(stats["seconds"], 1e-9), 1),
        samples_per_s=round(stats["samples_sent"] / max(stats["seconds"], 1e-9)),
        p50_ms=stats["p50_ms"],
        p99_ms=stats["p99_ms"],
        push_errors=stats["error_reasons"],
    )
    p99 = stats["p99_ms"]
    result.check(
        p99 is not None and p99 <= p["p99_ms"], f"the p99 push latency is {p99} ms (bound {p['p99_ms']:g} ms)"
    )
    result.check(
        not stats["error_reasons"] and stats["dropped_frames"] == 0 and stats["pending_frames"] == 0,
        f"pushes failed or were refused: {stats['error_reasons']}, {stats['dropped_frames']} frames dropped, "
        f"{stats['pending_frames']} left unsent",
    )
    rejected = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^edgewatch_ingest_rejected_total\{reason="([^"]+)"\} (\S+)', metrics, re.M)
    }
    rejected = {k: v for k, v in rejected.items() if v}
    figures["rejected"] = rejected
    result.check(not rejected, f"the aggregator refused pushes: {rejected}")
    figures["dashboard"] = dict(sorted(dashboard.statuses.items()))
    figures["dashboard_p99_ms"] = round(sorted(dashboard.latencies)[int(0.99 * len(dashboard.latencies))], 1)
    bad_reads = {s: n for s, n in dashboard.statuses.items() if s not in ("200", "404")}
    result.check(
        bool(dashboard.statuses) and not bad_reads, f"dashboard reads failed: {bad_reads or 'none were made'}"
    )
    figures.update(admin_writes=admin.ok, admin_failures=len(admin.failed))
    result.check(
        admin.ok > 0 and not admin.failed, f"admin writes: {admin.ok} ok, failed: {admin.failed[:2]}"
    )
    busy = [line[:200] for line in log.splitlines() if BUSY_LOG.search(line)]
    figures["log_problems"] = len(busy)
    result.check(not busy, f"the aggregator logged {len(busy)} problems: {busy[:3]}")


def _memory(
    result: Result,
    p: dict[str, Any],
    rss: list[tuple[float, float]],
    wal: list[tuple[float, float]],
    warm_end: float,
) -> None:
    """The WAL under its bound all along; resident memory after the warm-up (which ends at
    ``warm_end`` seconds into the samples) no higher than its peak during the warm-up plus the
    tolerance."""
    figures = result.figures
    wal_max = max((v for _, v in wal), default=0.0)
    figures.update(
        wal_max_mb=round(wal_max / 2**20, 1), wal_last_mb=round(wal[-1][1] / 2**20, 1) if wal else None
    )
    result.check(
        bool(wal) and wal_max <= WAL_BOUND,
        f"the WAL reached {wal_max / 2**20:.1f} MiB (bound {WAL_BOUND / 2**20:.0f} MiB)",
    )
    warm = [v for t, v in rss if t <= warm_end]
    late = [(t, v) for t, v in rss if t > warm_end]
    if len(warm) < 3 or len(late) < 3:
        result.check(False, f"only {len(rss)} memory samples")
        return
    level, late_max = max(warm), max(v for _, v in late)
    bound = level * (1 + p["rss_tolerance"]) + RSS_SLACK
    slope = statistics.linear_regression([t for t, _ in late], [v for _, v in late]).slope
    step = max(1, len(rss) // 20)
    figures["rss_mb_series"] = [[round(t), round(v / 2**20, 1)] for t, v in rss[::step]]
    figures.update(
        rss_warm_peak_mb=round(level / 2**20, 1),
        rss_late_max_mb=round(late_max / 2**20, 1),
        rss_bound_mb=round(bound / 2**20, 1),
        rss_late_slope_mb_per_min=round(slope * 60 / 2**20, 2),
    )
    result.check(
        late_max <= bound,
        f"resident memory peaked at {level / 2**20:.0f} MiB in the warm-up and reached "
        f"{late_max / 2**20:.0f} MiB after it (bound {bound / 2**20:.0f} MiB: "
        f"+{p['rss_tolerance']:.0%} + {RSS_SLACK >> 20} MiB)",
    )
