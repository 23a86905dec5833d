"""Ingest part of bench/aggregator.py: a real aggregator process fed by simulated agents over HTTP.

Frames are made before the measurement (``SimHost`` samples, encoded as a real agent does: the
first frame of an agent a key frame, every later one a delta frame against ``next_reference`` of the
one before), in a process pool, and written to a file that a separate load process
(aggregator_load.py) reads. The timestamps start two days back at a 10-minute window boundary, so
every window has closed: with ``storage.compact_interval`` 2 s the aggregator compacts them (raw
blocks and the 1 m / 5 m / 1 h rollups) while the frames come in. Each agent's key frame lies in
the window before and is pushed as a warm-up (series created, reference held), which ends when it is
compacted; then the measurement: the delta frames, and the wait until ``recent`` is empty and the
maintenance pass that emptied it has logged (its rollup merges done).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import pickle
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aggregator_common import (
    CLK_TCK,
    CORES,
    Aggregator,
    Processes,
    cpu_seconds,
    emit,
    free_port,
    http,
    log,
    log_lines,
    machine_busy_s,
    maintenance_totals,
    own_cpu_s,
    rnd,
    ro_connect,
    rss_mb,
    wait_http,
    write_config,
)

from edgewatch.aggregator import accounts
from edgewatch.aggregator.db import DB_NAME, open_writer
from edgewatch.aggregator.schema import BLOCK_MS
from edgewatch.aggregator.simhost import SimHost
from edgewatch.protocol import Batch, encode, next_reference

BUDGET_SAMPLES_PER_CORE_S = 300_000
INTERVAL_S = 10.0
COMPACT_INTERVAL_S = 2.0
STEPS_METRIC = "edgewatch_ingest_observer_seconds_total"  # the event loop's time after each commit
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Case:
    agents: int
    frames: int  # delta frames per agent, after the key frame
    per_frame: int  # samples per series in a frame
    concurrency: int
    order: str = "agent"

    @property
    def label(self) -> str:
        return f"{self.agents} agents, {self.per_frame} sample(s) per frame"


def agent_name(i: int) -> str:
    return f"bench-{i:05d}"


def make_host(i: int, n: int, seed: int = 0) -> SimHost:
    """Host ``i`` of ``n``, drawn as ``edgewatch sim`` draws its fleet (phases spread over the interval)."""
    name = agent_name(i)
    digest = hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=8).digest()
    return SimHost(name, int.from_bytes(digest, "big"), interval_s=INTERVAL_S, phase_s=INTERVAL_S * i / n)


def agent_frames(job: tuple[int, int, int, int, int]) -> tuple[list[tuple[int, bytes]], list[int], set[int]]:
    """Frames of one agent: ``[(seq, frame)]`` (a key frame, then deltas), samples per frame, windows."""
    i, n, start_ms, frames, per_frame = job
    host = make_host(i, n)
    key_ticks = host.ticks(start_ms - 3 * BLOCK_MS, start_ms)[-1:]  # a window before (or while rebooting)
    ticks = host.ticks(start_ms, start_ms + int((frames * per_frame + 30) * INTERVAL_S * 1000))
    ticks = ticks[: frames * per_frame]
    chunks = [key_ticks] + [ticks[k : k + per_frame] for k in range(0, len(ticks), per_frame)]
    out: list[tuple[int, bytes]] = []
    samples: list[int] = []
    windows: set[int] = set()
    ref: Batch | None = None
    since = None
    boot_id = int.from_bytes(hashlib.blake2b(host.name.encode(), digest_size=8).digest(), "big")
    for seq, stamps in enumerate(chunks, 1):
        batch = host.batch(stamps, boot_id, seq, host.name, since)
        since = stamps[-1]
        out.append((seq, encode(batch, ref)))
        samples.append(batch.sample_count)
        if seq > 1:
            windows.update(t - t % BLOCK_MS for t in stamps)
        ref = next_reference(ref, batch)
    return out, samples, windows


def prepare(case: Case, start_ms: int, pool: Any) -> tuple[list[list[tuple[int, bytes]]], int, int, int]:
    """Every agent's frames; measured samples, key-frame samples, (agent, window) pairs measured."""
    jobs = [(i, case.agents, start_ms, case.frames, case.per_frame) for i in range(case.agents)]
    frames, measured, warm, pairs = [], 0, 0, 0
    for f, samples, windows in pool.imap(agent_frames, jobs, chunksize=max(1, case.agents // 64)):
        frames.append(f)
        warm += samples[0]
        measured += sum(samples[1:])
        pairs += len(windows)
    return frames, measured, warm, pairs


def add_agents(data_dir: Path, n: int) -> list[str]:
    """Create the agents in the database before the server starts; their tokens."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    conn = open_writer(data_dir / DB_NAME)
    now = int(time.time() * 1000)
    try:
        conn.execute("BEGIN IMMEDIATE")
        tokens = [accounts.add_host(conn, agent_name(i), now, actor="bench") for i in range(n)]
        conn.execute("COMMIT")
    finally:
        conn.close()
    return tokens


Threads = dict[int, tuple[str, float]]


def thread_cpu(pid: int) -> Threads:
    """Name and CPU seconds of each thread of ``pid``."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name, fields = (task / "stat").read_text().split(" (", 1)[1].rsplit(")", 1)
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        cpu = fields.split()
        out[int(task.name)] = (name, (int(cpu[11]) + int(cpu[12])) / CLK_TCK)
    return out


def cpu_by_thread_kind(before: Threads, after: Threads, main: int) -> dict[str, float]:
    """CPU seconds between two ``thread_cpu`` readings, by kind of thread (its name without a number;
    the aggregator names its threads, see aggregator/osthread.py), ``main`` as the event loop."""
    out: dict[str, float] = {}
    for tid, (name, cpu) in after.items():
        kind = "event-loop" if tid == main else name.rstrip("0123456789").rstrip("_-") or name
        out[kind] = out.get(kind, 0.0) + cpu - before.get(tid, (name, 0.0))[1]
    return {k: rnd(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0}


def wait_compacted(db: Path, timeout: float) -> float:
    """Wait until ``recent`` is empty (every frame compacted); answers the time it was seen empty."""
    deadline = time.monotonic() + timeout
    conn = ro_connect(db)
    try:
        while time.monotonic() < deadline:
            try:
                left = conn.execute("SELECT count(*) FROM recent").fetchone()[0]
            except sqlite3.OperationalError:  # busy: the writer is checkpointing
                left = -1
            if left == 0:
                return time.perf_counter()
            time.sleep(0.1)
    finally:
        conn.close()
    raise RuntimeError(f"the aggregator did not compact every frame within {timeout:g} s")


def wait_pass_logged(log_path: Path, since_line: int, interval_s: float, emptied: float) -> float:
    """Wait for the log line of the maintenance pass that emptied ``recent`` at ``emptied`` (it logs
    once its rollup merges are done too, so their CPU is counted); answers when it was seen. When no
    line comes within two intervals, that pass had logged already: ``emptied``."""
    deadline = time.monotonic() + 2 * interval_s + 1
    while time.monotonic() < deadline:
        if maintenance_totals(log_path, since_line)["passes"]:
            return time.perf_counter()
        time.sleep(0.05)
    return emptied


def _scrape(url: str) -> str:
    status, body = http(url + "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return body.decode()


def metric(url: str, name: str) -> float:
    total = 0.0
    for line in _scrape(url).splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric_by_label(url: str, name: str, label: str) -> dict[str, float]:
    """The samples of metric ``name`` by the value of its label ``label``."""
    pattern = rf'^{re.escape(name)}\{{{re.escape(label)}="([^"]*)"\}} (\S+)$'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, _scrape(url), re.M)}


def per_push_us(
    pushes: int,
    samples: int,
    cpu: float,
    *,
    by_thread: dict[str, float],
    steps: dict[str, float],
    floor: float,
) -> dict[str, Any]:
    """Where a push's CPU goes, in microseconds a push, beside what the budget allows a push."""

    def us(seconds: float) -> float:
        return rnd(seconds / max(pushes, 1) * 1e6, 1)

    return {
        "budget": rnd(samples / max(pushes, 1) / BUDGET_SAMPLES_PER_CORE_S * 1e6, 1),
        "aggregator": us(cpu),
        "by_thread": {name: us(seconds) for name, seconds in by_thread.items()},
        "event_loop_after_commit": {name: us(seconds) for name, seconds in sorted(steps.items())},
        "http_floor": floor,
    }


def run_case(case: Case, tmp: Path, procs: Processes, pool: Any) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - 2 * DAY_MS
    start_ms -= start_ms % BLOCK_MS
    log(f"ingest [{case.label}]: encoding {case.agents} x {case.frames + 1} frames")
    t = time.perf_counter()
    frames, samples, warm_samples, pairs = prepare(case, start_ms, pool)
    prep_s = time.perf_counter() - t
    work = tmp / f"ingest-{case.agents}-{case.per_frame}"
    data_dir = work / "data"
    tokens = add_agents(data_dir, case.agents)
    port = free_port()
    config = work / "aggregator.toml"
    write_config(
        config,
        data_dir,
        port,
        storage={"compact_interval": f"{COMPACT_INTERVAL_S:g}s"},
        metrics={"public": True},
    )
    frame_count = sum(len(f) - 1 for f in frames)
    frame_bytes = sum(len(b) for f in frames for _, b in f[1:])
    spec = {
        "url": "",
        "concurrency": case.concurrency,
        "order": case.order,
        "agents": list(zip(tokens, frames)),
    }
    agg = Aggregator(procs, config, work / "aggregator.log", port)
    spec["url"] = agg.url
    load_file = work / "frames.pickle"
    with load_file.open("wb") as f:
        pickle.dump(spec, f, protocol=pickle.HIGHEST_PROTOCOL)
    del spec, frames
    loader = procs.start(
        [sys.executable, str(Path(__file__).with_name("aggregator_load.py")), str(load_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        _expect(loader, "ready")
        log(f"ingest [{case.label}]: warm-up (key frames) and its compaction")
        warm = _command(loader, "warmup")
        if warm["errors"]:
            raise RuntimeError(f"warm-up pushes failed: {warm}")
        wait_compacted(data_dir / DB_NAME, 600)
        time.sleep(2.5)  # let the maintenance pass that emptied ``recent`` finish its merges
        before_samples = metric(agg.url, "edgewatch_ingest_samples_total")
        steps0 = metric_by_label(agg.url, STEPS_METRIC, "step")
        log_mark = log_lines(agg.log_path)
        threads0 = thread_cpu(agg.pid)
        cpu0, load_cpu0 = agg.cpu(), cpu_seconds(loader.pid)
        busy0, own0 = machine_busy_s(), own_cpu_s()
        log(f"ingest [{case.label}]: pushing {frame_count} frames, {samples} samples")
        t0 = time.perf_counter()
        result = _command(loader, "go")
        sent = time.perf_counter()
        emptied = wait_compacted(data_dir / DB_NAME, 1800)
        t1 = wait_pass_logged(agg.log_path, log_lines(agg.log_path), COMPACT_INTERVAL_S, emptied)
        cpu1, load_cpu1 = agg.cpu(), cpu_seconds(loader.pid)
        busy1, own1 = machine_busy_s(), own_cpu_s()
        threads1 = thread_cpu(agg.pid)
        stored = metric(agg.url, "edgewatch_ingest_samples_total") - before_samples
        steps = {k: v - steps0.get(k, 0.0) for k, v in metric_by_label(agg.url, STEPS_METRIC, "step").items()}
        rss = rss_mb(agg.pid)
        loader.stdin.close()  # type: ignore[union-attr]
        loader.wait(30)
        maint = maintenance_totals(agg.log_path, log_mark)
    finally:
        procs.stop(loader, grace=5)
        agg.stop()
    conn = ro_connect(data_dir / DB_NAME)
    try:
        in_blocks = conn.execute("SELECT coalesce(sum(samples), 0) FROM raw_blocks").fetchone()[0]
        host_windows = conn.execute("SELECT count(*) FROM raw_blocks").fetchone()[0]
        series = conn.execute("SELECT count(*) FROM series").fetchone()[0]
    finally:
        conn.close()
    cpu = cpu1 - cpu0
    wall = t1 - t0
    log(f"ingest [{case.label}]: the same frames to the HTTP floor (bench/http_floor.py)")
    floor = http_floor(load_file, procs, frame_count, samples, cpu)
    loop_thread = threads1.get(agg.pid, ("", 0.0))[1] - threads0.get(agg.pid, ("", 0.0))[1]
    by_thread = cpu_by_thread_kind(threads0, threads1, agg.pid)
    samples_per_cpu = samples / cpu if cpu > 0 else None
    ok = result["errors"] == 0 and result["status"].get("409", 0) == 0 and stored == samples
    line: dict[str, Any] = {
        "bench": "aggregator",
        "what": "ingest",
        "case": case.label,
        "agents": case.agents,
        "samples_per_frame": case.per_frame,
        "default_agent_settings": case.per_frame == 1,
        "frames": frame_count,
        "samples": samples,
        "samples_stored": int(stored),
        "frame_bytes_per_sample": rnd(frame_bytes / max(samples, 1), 3),
        "series": int(series),
        "wall_s": rnd(wall, 2),
        "push_s": rnd(sent - t0, 2),
        "drain_s": rnd(t1 - sent, 2),
        "samples_per_s": round(samples / wall),
        "frames_per_s": round(frame_count / wall, 1),
        "aggregator_cpu_s": rnd(cpu, 2),
        "aggregator_cpu_s_per_million_samples": rnd(cpu / samples * 1e6, 2),
        "aggregator_event_loop_thread_cpu_s": rnd(loop_thread, 2),
        "aggregator_other_threads_cpu_s": rnd(cpu - loop_thread, 2),
        "aggregator_cpu_s_by_thread": by_thread,
        "per_push_us": per_push_us(
            frame_count, samples, cpu, by_thread=by_thread, steps=steps, floor=floor["cpu_us_per_push"]
        ),
        "samples_per_aggregator_cpu_s": None if samples_per_cpu is None else round(samples_per_cpu),
        "aggregator_cpu_utilisation": rnd(cpu / wall, 3),
        "aggregator_rss_mb": rnd(rss, 1),
        "load_process_cpu_s": rnd(load_cpu1 - load_cpu0, 2),
        "other_processes_cpu_s": rnd(
            max(0.0, busy1 - busy0 - cpu - (load_cpu1 - load_cpu0) - (own1 - own0)), 2
        ),
        "push_p50_ms": result["p50_ms"],
        "push_p90_ms": result["p90_ms"],
        "push_p99_ms": result["p99_ms"],
        "push_max_ms": result["max_ms"],
        "http_status": result["status"],
        "conflicts_409": result["status"].get("409", 0),
        "errors": result["errors"],
        "concurrency": case.concurrency,
        "order": case.order,
        "compaction": {
            "passes": maint["passes"],
            "window_compactions": maint["windows"],
            "recent_rows_compacted": maint["rows"],
            "rollup_rows_merged": maint["merged"],
            "host_windows": pairs,
            "compactions_per_host_window": rnd(maint["windows"] / max(pairs, 1), 2),
            "samples_per_host_window": round(samples / max(pairs, 1)),
            "live_samples_per_host_window": round(60 * series / case.agents),
        },
        "http_floor": floor,
        "raw_block_samples_total": int(in_blocks),
        "raw_blocks": int(host_windows),
        "warmup_key_frames": case.agents,
        "warmup_samples": warm_samples,
        "prepare_s": rnd(prep_s, 1),
        "synchronous": "full",
        "compact_interval_s": COMPACT_INTERVAL_S,
        "cores": CORES,
        "note": f"the aggregator and the load process share the machine's {CORES} cores "
        "(other_processes_cpu_s: what else ran meanwhile); samples_per_aggregator_cpu_s is the one-core "
        "throughput. Rollup rows are merged into chunks 10 minutes after the last compaction into "
        "their span, after this run's clock stops: "
        "see maintain_cpu_us_per_sample of the storage line for maintenance over a whole day",
        "budget_samples_per_core_s": BUDGET_SAMPLES_PER_CORE_S,
        "within_budget": bool(ok and samples_per_cpu is not None)
        and samples_per_cpu >= BUDGET_SAMPLES_PER_CORE_S,  # type: ignore[operator]
        "clean": ok,
    }
    if result.get("samples"):
        line["error_samples"] = result["samples"]
    return line


def http_floor(
    load_file: Path, procs: Processes, frame_count: int, samples: int, aggregator_cpu_s: float
) -> dict[str, Any]:
    """The same pushes to bench/http_floor.py (aiohttp on uvloop answering at once): its CPU is the
    HTTP stack's share of the aggregator's, the floor under any ingest path on this stack."""
    port = free_port()
    server = procs.start(
        [sys.executable, str(Path(__file__).with_name("http_floor.py")), str(port)],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    loader = None
    try:
        wait_http(url + "/healthz", server, what="the HTTP floor server")
        loader = procs.start(
            [sys.executable, str(Path(__file__).with_name("aggregator_load.py")), str(load_file), url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        _expect(loader, "ready")
        _command(loader, "warmup")
        cpu0 = cpu_seconds(server.pid)
        result = _command(loader, "go")
        cpu = cpu_seconds(server.pid) - cpu0
    finally:
        if loader is not None:
            procs.stop(loader, grace=5)
        procs.stop(server, grace=5)
    if result["errors"] or result["frames"] != frame_count:
        raise RuntimeError(f"pushes to the HTTP floor failed: {result}")
    return {
        "server_cpu_s": rnd(cpu, 2),
        "cpu_us_per_push": rnd(cpu / frame_count * 1e6, 1),
        "samples_per_cpu_s": round(samples / cpu) if cpu > 0 else None,
        "share_of_aggregator_cpu": rnd(cpu / aggregator_cpu_s, 3) if aggregator_cpu_s > 0 else None,
        "push_p50_ms": result["p50_ms"],
    }


def _expect(proc: subprocess.Popen[bytes], word: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if line != word:
        raise RuntimeError(f"the load process said {line!r} instead of {word!r}")


def _command(proc: subprocess.Popen[bytes], command: str) -> dict[str, Any]:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(command.encode() + b"\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"the load process exited ({proc.wait()}) during {command!r}")
    result: dict[str, Any] = json.loads(line)
    return result


def run(
    cases: Sequence[Case],
    tmp: Path,
    procs: Processes,
    live_rules: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Each case's line; ``live_rules`` adds what the line reads with the rules' live cost."""
    out = []
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(CORES) as pool:
        for case in cases:
            line = run_case(case, tmp, procs, pool)
            if live_rules is not None:
                line["with_live_rules"] = live_rules(line)
            out.append(line)
            emit(line)
    return out
