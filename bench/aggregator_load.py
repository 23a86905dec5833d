"""The load process of bench/aggregator.py: pushes pre-encoded frames to an aggregator over HTTP.

``aggregator_load.py FRAMES_FILE [URL]`` reads a pickle ``{"url", "concurrency", "order", "agents":
[(token, [(seq, frame), ...]), ...]}``, prints ``ready`` and then obeys stdin, one command a line:

- ``warmup``: push each agent's first frame (its key frame);
- ``go``: push the rest, each agent's frames one after another (a delta frame needs the one before
  it acknowledged, as for a real agent), at most ``concurrency`` requests in flight;

answering each with one JSON line: frames, statuses, errors, push latency percentiles, seconds,
and this process's CPU seconds. ``order`` ``agent``: a worker takes an agent and sends all its
frames (each 10-minute window of an agent fills quickly, so compaction rarely sees half of one);
``time``: every worker cycles through its share of the agents frame by frame, as a live fleet does.

``URL``, when given, replaces the file's: the pushes go to bench/http_floor.py, whose answers carry no
ack (``null``), so any 200 counts as a pushed frame.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

Frames = list[tuple[int, bytes]]


def cpu() -> float:
    t = os.times()
    return t.user + t.system


class Load:
    def __init__(self, url: str, concurrency: int, order: str, agents: list[tuple[str, Frames]]) -> None:
        self.url = url.rstrip("/") + "/api/v1/push"
        self.floor = False  # pushing to bench/http_floor.py: its answers carry no ack
        self.concurrency = concurrency
        self.order = order
        self.agents = agents
        self.session: aiohttp.ClientSession | None = None

    async def push(self, token: str, seq: int, frame: bytes, out: dict[str, Any]) -> bool:
        assert self.session is not None
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-edgewatch-frame"}
        started = time.perf_counter()
        try:
            async with self.session.post(self.url, data=frame, headers=headers) as answer:
                status, body = answer.status, await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            out["status"][type(exc).__name__] += 1
            out["errors"] += 1
            return False
        out["latencies"].append((time.perf_counter() - started) * 1000)
        out["status"][str(status)] += 1
        if status != 200:
            out["errors"] += 1
            if len(out["samples"]) < 3:
                out["samples"].append(f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
            return False
        try:
            ack = json.loads(body).get("ack")
        except ValueError:
            ack = None
        if ack != seq and not (self.floor and ack is None):
            out["errors"] += 1
            out["status"]["bad_ack"] += 1
            return False
        out["frames"] += 1
        return True

    async def run(self, first: int, last: int | None) -> dict[str, Any]:
        """Push frames ``first:last`` of every agent."""
        out: dict[str, Any] = {"frames": 0, "errors": 0, "status": Counter(), "latencies": [], "samples": []}
        cpu0, started = cpu(), time.perf_counter()
        jobs = [(token, frames[first:last]) for token, frames in self.agents]
        width = min(self.concurrency, len(jobs))
        if self.order == "agent":
            queue = iter(jobs)

            async def worker() -> None:
                for token, frames in queue:  # one iterator shared by all workers
                    for seq, frame in frames:
                        if not await self.push(token, seq, frame, out):
                            break  # the agent's next delta frame has no reference now

            await asyncio.gather(*(worker() for _ in range(width)))
        else:

            async def cycle(share: list[tuple[str, Frames]]) -> None:
                broken: set[int] = set()
                for k in range(max((len(f) for _, f in share), default=0)):
                    for i, (token, frames) in enumerate(share):
                        if k < len(frames) and i not in broken:
                            seq, frame = frames[k]
                            if not await self.push(token, seq, frame, out):
                                broken.add(i)

            await asyncio.gather(*(cycle(jobs[w::width]) for w in range(width)))
        seconds = time.perf_counter() - started
        lat = sorted(out.pop("latencies"))

        def q(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else None

        out.update(
            seconds=round(seconds, 3),
            cpu_s=round(cpu() - cpu0, 3),
            p50_ms=q(0.5),
            p90_ms=q(0.9),
            p99_ms=q(0.99),
            max_ms=round(lat[-1], 3) if lat else None,
            status=dict(out["status"]),
        )
        return out


async def main(path: Path, url: str | None) -> int:
    with path.open("rb") as f:
        spec = pickle.load(f)
    load = Load(url or spec["url"], spec["concurrency"], spec["order"], spec["agents"])
    load.floor = url is not None
    connector = aiohttp.TCPConnector(limit=spec["concurrency"], limit_per_host=spec["concurrency"])
    timeout = aiohttp.ClientTimeout(total=120)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        load.session = session
        print("ready", flush=True)
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line == "warmup":
                result = await load.run(0, 1)
            elif line == "go":
                result = await load.run(1, None)
            else:
                return 0
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with edgewatch[aggregator]
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        sys.exit(runner.run(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)))
