"""Agent benchmark: resident memory and CPU of `edgewatch agent`, beside Debian's node_exporter.

Runs the real agent at a 1 s interval against the test receiver (tests/receiver.py) for --duration
seconds, and in the same run Debian's `prometheus-node-exporter`, scraped at the same interval by
this script. Both are measured from /proc: RSS every second (steady = median of the second half,
peak = VmHWM) and CPU time (utime + stime) over the run. CPU at a 10 s interval is the CPU per tick
measured here spread over 10 s. Frame bytes per sample come from what the receiver stored.

stdout: one JSON object per measurement (agent, node_exporter, comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
BUDGET_RSS_MB = 18.0
BUDGET_CPU_PERCENT_10S = 0.05


def log(msg: str) -> None:
    print(f"bench/agent: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) in MB."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"bench/agent: nothing listens on port {port} after {timeout} s")


class Watched:
    def __init__(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.proc = proc
        self.rss: list[float] = []
        self.cpu0 = 0.0
        self.cpu1 = 0.0

    def sample(self) -> None:
        self.rss.append(memory(self.proc.pid)[0])

    def result(self, duration: float, ticks: int) -> dict[str, Any]:
        steady = statistics.median(self.rss[len(self.rss) // 2 :])
        cpu = self.cpu1 - self.cpu0
        per_tick = cpu / max(ticks, 1)
        return {
            "rss_mb_steady": round(steady, 2),
            "rss_mb_peak": round(memory(self.proc.pid)[1], 2),
            "cpu_seconds": round(cpu, 3),
            "cpu_seconds_per_tick": round(per_tick, 6),
            "cpu_percent_at_1s": round(100 * cpu / duration, 3),
            "cpu_percent_at_10s": round(100 * per_tick / 10, 4),
        }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    args = p.parse_args()
    exporter = shutil.which("prometheus-node-exporter")
    if exporter is None:
        sys.exit(
            "bench/agent: prometheus-node-exporter is missing; run `make bench-agent` (installs it as root)"
        )
    edgewatch = str(Path(sys.executable).with_name("edgewatch"))
    tmp = Path(tempfile.mkdtemp(prefix="edgewatch-bench-agent-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        rport, eport = free_port(), free_port()
        received = tmp / "received.jsonl"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "tests" / "receiver.py"),
                    "--port",
                    str(rport),
                    "--token",
                    "t",
                    "--log",
                    str(received),
                ],
                stdout=subprocess.DEVNULL,
            )
        )
        wait_port(rport)
        config = tmp / "agent.toml"
        config.write_text(
            f'aggregator = "http://127.0.0.1:{rport}"\ntoken = "t"\n'
            f'state_dir = "{tmp / "state"}"\ninterval = "1s"\n'
        )
        agent = Watched("agent", subprocess.Popen([edgewatch, "agent", "--config", str(config)]))
        procs.append(agent.proc)
        node = Watched(
            "node_exporter",
            subprocess.Popen(
                [exporter, f"--web.listen-address=127.0.0.1:{eport}", "--log.level=warn"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        )
        procs.append(node.proc)
        wait_port(eport)
        time.sleep(3)  # both warm up: imports, first readings
        agent.cpu0, node.cpu0 = cpu_seconds(agent.proc.pid), cpu_seconds(node.proc.pid)
        first = len(received.read_text().splitlines()) if received.exists() else 0
        started = time.monotonic()
        scrapes = 0
        scraped_series = 0
        log(f"running both for {args.duration:g} s at a 1 s interval")
        next_at = started
        while time.monotonic() - started < args.duration:
            next_at += 1.0
            with urllib.request.urlopen(f"http://127.0.0.1:{eport}/metrics", timeout=5) as answer:
                body = answer.read().decode()
            scrapes += 1
            scraped_series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
            agent.sample()
            node.sample()
            time.sleep(max(0.0, next_at - time.monotonic()))
        duration = time.monotonic() - started
        agent.cpu1, node.cpu1 = cpu_seconds(agent.proc.pid), cpu_seconds(node.proc.pid)
        frames = [json.loads(line) for line in received.read_text().splitlines()][first:]
        ticks = len(frames)
        deltas = [f for f in frames if f["kind"] == "delta"]
        samples = sum(f["samples"] for f in deltas)
        a = agent.result(duration, ticks)
        a.update(
            bench="agent",
            who="edgewatch-agent",
            duration_s=round(duration, 1),
            ticks=ticks,
            series=frames[-1]["series"] if frames else 0,
            cpu_us_per_sample=round(1e6 * a["cpu_seconds_per_tick"] / max(frames[-1]["samples"], 1), 2)
            if frames
            else None,
            frame_bytes_per_sample=round(sum(f["bytes"] for f in deltas) / max(samples, 1), 3),
            budget_rss_mb=BUDGET_RSS_MB,
            budget_cpu_percent_at_10s=BUDGET_CPU_PERCENT_10S,
        )
        n = node.result(duration, scrapes)
        n.update(bench="agent", who="prometheus-node-exporter", duration_s=round(duration, 1))
        n.update(scrapes=scrapes, series=scraped_series)
        print(json.dumps(a))
        print(json.dumps(n))
        ratio_rss = a["rss_mb_steady"] / n["rss_mb_steady"]
        ratio_cpu = a["cpu_seconds"] / n["cpu_seconds"] if n["cpu_seconds"] else None
        print(
            json.dumps(
                {
                    "bench": "agent",
                    "comparison": "edgewatch-agent / node_exporter",
                    "rss_ratio": round(ratio_rss, 3),
                    "cpu_ratio": None if ratio_cpu is None else round(ratio_cpu, 3),
                    "within_budget": a["rss_mb_steady"] <= BUDGET_RSS_MB
                    and a["rss_mb_peak"] <= BUDGET_RSS_MB
                    and a["cpu_percent_at_10s"] <= BUDGET_CPU_PERCENT_10S
                    and ratio_rss <= 1
                    and (ratio_cpu is None or ratio_cpu <= 1),
                }
            )
        )
        return 0
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
