"""What soak scenarios 1, 2 and 7 share: subprocesses (``edgewatch sim`` above all) stopped on the
way out, samplers of a process' memory and of the WAL, what the simulated hosts generate (they are
pure functions of seed and time), and counts of what the aggregator's SQLite file holds in each
tier, read with the storage engine's own decoders.

Every process started here is a child of the scenario, listens on (or talks to) 127.0.0.1 only,
and is stopped by ``Processes.close`` in the scenario's ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edgewatch.aggregator.blockcodec import decode_block
from edgewatch.aggregator.chunks import decode_chunk
from edgewatch.aggregator.db import DB_NAME
from edgewatch.aggregator.schema import BLOCK_MS, TIERS
from edgewatch.aggregator.simhost import SimHost
from edgewatch.protocol import Kind
from tests.aggregator.procs import EDGEWATCH, AggregatorProcess, env_without_proxies

ROLLUP_TIERS = tuple(t.name for t in TIERS[1:])  # 1m, 5m, 1h


class Processes:
    """The subprocesses a scenario started; ``close`` stops every one still running (SIGTERM, then
    SIGKILL), aggregators included, and closes their log files."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.aggregators: list[AggregatorProcess] = []
        self.files: list[IO[bytes]] = []

    def start(self, argv: Sequence[str], log: Path, *, stdout: Path | None = None) -> subprocess.Popen[bytes]:
        err = log.open("ab")
        self.files.append(err)
        out = err
        if stdout is not None:
            out = stdout.open("wb")
            self.files.append(out)
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, env=env_without_proxies())
        self.procs.append(proc)
        return proc

    def aggregator(self, tmp: Path, **settings: Any) -> AggregatorProcess:
        agg = AggregatorProcess(tmp, **settings)
        self.aggregators.append(agg)
        return agg

    def close(self) -> None:
        for proc in self.procs:
            terminate(proc, grace=20.0)
        for agg in self.aggregators:
            with contextlib.suppress(Exception):
                agg.stop()
        for f in self.files:
            f.close()


def terminate(proc: subprocess.Popen[bytes], grace: float) -> int:
    """SIGTERM, and SIGKILL if it has not exited after ``grace`` seconds; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


# -- edgewatch sim ---------------------------------------------------------------------------------


@dataclass
class Sim:
    """``edgewatch sim`` pushing ``hosts`` simulated agents every ``interval`` seconds."""

    procs: Processes
    tmp: Path
    url: str
    enroll_token: str
    hosts: int
    interval: float
    seed: int = 1
    concurrency: int = 16
    extra: Sequence[str] = ()
    log_level: str = "warning"
    proc: subprocess.Popen[bytes] | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.tmp / "sim.log"

    @property
    def out(self) -> Path:
        return self.tmp / "sim.out"

    def start(self) -> None:
        argv = [*EDGEWATCH, "sim", "--aggregator", self.url, "--enroll-token", self.enroll_token,
                "--hosts", str(self.hosts), "--interval", f"{self.interval:g}", "--seed", str(self.seed),
                "--concurrency", str(self.concurrency), "--state", str(self.tmp / "sim-state.json"),
                "--log-level", self.log_level, *self.extra]  # fmt: skip
        self.proc = self.procs.start(argv, self.log, stdout=self.out)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """RuntimeError with its exit code and its log's end once the simulator has exited."""
        if not self.alive():
            code = None if self.proc is None else self.proc.returncode
            tail = (self.log.read_text() + self.out.read_text())[-1500:]
            raise RuntimeError(f"edgewatch sim exited with {code}: {tail}")

    def stop(self, grace: float = 60.0) -> dict[str, Any]:
        """SIGTERM (the simulator flushes its backlogs for up to 5 s), then its summary line."""
        assert self.proc is not None
        code = terminate(self.proc, grace)
        lines = [line for line in self.out.read_text().splitlines() if line.startswith("{")]
        if code != 0 or not lines:
            raise RuntimeError(f"edgewatch sim exited with {code}: {self.log.read_text()[-1500:]}")
        self.stats = json.loads(lines[-1])
        return self.stats


def enroll_token(agg: AggregatorProcess, uses: int) -> str:
    return agg.admin("add-enrollment", "--uses", str(uses))


# -- samplers ---------------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int | None:
    """VmRSS of a process from /proc, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class Sampler(threading.Thread):
    """Calls ``probe`` every ``period`` seconds and keeps ``(seconds since start, value)``."""

    def __init__(self, probe: Callable[[], float | None], period: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.probe, self.period = probe, period
        self.points: list[tuple[float, float]] = []
        self._halt = threading.Event()
        self.started = time.monotonic()  # the samples' clock: seconds since this

    def run(self) -> None:
        while not self._halt.is_set():
            value = self.probe()
            if value is not None:
                self.points.append((time.monotonic() - self.started, float(value)))
            self._halt.wait(self.period)

    def stop(self) -> list[tuple[float, float]]:
        self._halt.set()
        if self.is_alive():
            self.join(5)
        return self.points


def wait_until(what: str, ready: Callable[[], bool], timeout: float, poll: float = 0.5) -> float:
    """Seconds until ``ready()`` is true, asked every ``poll`` seconds; TimeoutError after ``timeout``."""
    started = time.monotonic()
    while not ready():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} not within {timeout:g} s")
        time.sleep(poll)
    return time.monotonic() - started


def percentile(values: Sequence[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


# -- what the database holds -------------------------------------------------------------------------


def ro_connect(data_dir: Path) -> sqlite3.Connection:
    """A read-only connection to the aggregator's database (it may be running: WAL readers are fine)."""
    conn = sqlite3.connect(f"file:{data_dir / DB_NAME}?mode=ro", uri=True, timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def host_ids(conn: sqlite3.Connection, prefix: str = "") -> dict[str, int]:
    return {
        name: hid
        for hid, name in conn.execute("SELECT id, name FROM hosts ORDER BY name")
        if name.startswith(prefix)
    }


def acked_ranges(conn: sqlite3.Connection) -> dict[int, list[tuple[int, int, int]]]:
    """Per host id, its acknowledged ``(boot, lo, hi)`` seq intervals."""
    out: dict[int, list[tuple[int, int, int]]] = {}
    for host, boot, lo, hi in conn.execute("SELECT host, boot, lo, hi FROM acked ORDER BY host, boot, lo"):
        out.setdefault(host, []).append((boot, lo, hi))
    return out


def newest_recent(conn: sqlite3.Connection) -> dict[int, int]:
    """Per host id, the newest sample time of its frames not compacted yet."""
    return dict(conn.execute("SELECT host, max(t1) FROM recent GROUP BY host").fetchall())


def compact_everything(data_dir: Path) -> int:
    """Compact every window still open, with the storage engine's own maintenance job, its clock set
    past every window's grace (what the aggregator does by itself 10.5 minutes later). Only when the
    aggregator is stopped (the data dir's lock says so). The windows compacted."""
    from edgewatch.aggregator.store import Store

    async def go() -> int:
        store = Store(data_dir)
        try:
            report = await store.maintain(int(time.time() * 1000) + 2 * BLOCK_MS)
            if report.failed:
                raise RuntimeError(f"{report.failed} compaction jobs failed")
            return report.compacted_windows
        finally:
            store.close()

    return asyncio.run(go())


@dataclass
class HostTally:
    """One host's samples as stored: the raw tier, and each rollup tier's bucket counts."""

    raw: int = 0  # samples (values that are not gaps)
    ticks: list[int] = field(default_factory=list)  # sample times, sorted
    per_tick: dict[int, int] = field(default_factory=dict)  # sample time -> samples at it
    expected_rollup: int = 0  # what every rollup tier must count (rules in ``expected_in_rollups``)
    tiers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLLUP_TIERS, 0))
    recent_rows: int = 0  # frames not compacted (0 after ``compact_everything``)
    series: dict[int, int] = field(default_factory=dict)  # series id -> kind


def expected_in_rollups(column: Sequence[float | int | None], kind: int) -> int:
    """How many samples of one series in one raw block every rollup tier must count: each finite gauge
    sample once; a counter is rolled up as per-second rates, one at each finite sample that directly
    follows a finite sample of the block (docs/aggregator.md: counters are rolled up as rates)."""
    finite = [v is not None and math.isfinite(v) for v in column]
    if kind == Kind.COUNTER:
        return sum(1 for a, b in itertools.pairwise(finite) if a and b)
    return sum(finite)


def tally(conn: sqlite3.Connection, hosts: dict[str, int]) -> dict[str, HostTally]:
    """Per host name, what the database holds, decoded block by block and chunk by chunk."""
    out: dict[str, HostTally] = {}
    for name, hid in hosts.items():
        t = out[name] = HostTally()
        t.series = dict(conn.execute("SELECT id, kind FROM series WHERE host = ?", (hid,)).fetchall())
        t.recent_rows = conn.execute("SELECT count(*) FROM recent WHERE host = ?", (hid,)).fetchone()[0]
        for (data,) in conn.execute("SELECT data FROM raw_blocks WHERE host = ? ORDER BY t0", (hid,)):
            times, cols = decode_block(data)
            for sid, col in cols.items():
                for ts, v in zip(times, col):
                    if v is not None:
                        t.raw += 1
                        t.per_tick[ts] = t.per_tick.get(ts, 0) + 1
                t.expected_rollup += expected_in_rollups(col, t.series.get(sid, Kind.GAUGE))
        t.ticks = sorted(t.per_tick)
        for tier in TIERS[1:]:
            for (data,) in conn.execute(
                "SELECT data FROM rollups WHERE tier = ? AND host = ?", (tier.id, hid)
            ):
                for buckets in decode_chunk(data).values():
                    t.tiers[tier.name] += sum(agg.count for agg in buckets.values())
    return out


@contextlib.contextmanager
def opened(data_dir: Path) -> Iterator[sqlite3.Connection]:
    conn = ro_connect(data_dir)
    try:
        yield conn
    finally:
        conn.close()


# -- what the simulator generated --------------------------------------------------------------------


def sim_fleet(url: str, hosts: int, interval: float, seed: int) -> dict[str, SimHost]:
    """The simulated hosts exactly as ``edgewatch sim --hosts --interval --seed`` draws them."""
    from edgewatch.aggregator.simrun import SimConfig, fleet

    return {h.name: h for h in fleet(SimConfig(url, hosts=hosts, interval=interval, seed=seed), 0)}


def generated(host: SimHost, first_ms: int, last_ms: int) -> dict[int, int]:
    """Sample time -> number of samples (values that are not gaps) the simulated host makes at each of
    its ticks from ``first_ms`` to ``last_ms`` (both included), silent ticks left out."""
    k = host.first_tick(first_ms) - 2
    while host.tick_time(k) < first_ms:
        k += 1
    out = {}
    while (ts := host.tick_time(k)) <= last_ms:
        if not host.silent(ts):
            out[ts] = sum(v is not None for v in host.sample(ts))
        k += 1
    return out
