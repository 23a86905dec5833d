"""Rules on arrival, part of bench/aggregator.py's ingest: what the built-in rules cost per push when
the samples are live.

The ingest part pushes frames stamped two days back (so that their windows have closed and are
compacted during the run); the rule engine drops such samples at once, so in that run the rules cost
next to nothing. Here the aggregator's own ``Engine`` with the built-in rules takes the frames of
simulated hosts (the same ``SimHost`` as the ingest part, one sample a frame, in their decoded form)
as live data: ``warm_h`` hours to fill the windows (the longest built-in one, ``disk_full_soon``, is
six hours), then ``hours`` measured, in time order across the hosts as a fleet sends them. The same
measured frames also go to a second engine two days late, as in the ingest run. The difference per
push is the CPU the ingest line's process did not spend on rules; each ingest line adds it.
"""

from __future__ import annotations

import time
from typing import Any

from aggregator_ingest import INTERVAL_S, make_host

from edgewatch.aggregator.alertengine import Engine
from edgewatch.aggregator.rules import load_rules
from edgewatch.protocol import Batch, as_decoded

HOUR_MS = 3_600_000
LATE_MS = 2 * 24 * HOUR_MS  # how far back the ingest part's frames are
START_MS = 1_796_000_400_000  # a fixed start: the same frames every run


async def _no_write(fn: Any) -> Any:
    return None


def _no_notify(*args: Any) -> None:
    pass


def _frames(hosts: int, hours: float) -> list[tuple[str, Batch]]:
    """One-sample frames of ``hosts`` hosts over ``hours``, in time order across the hosts."""
    out: list[tuple[int, str, Batch]] = []
    end = START_MS + int(hours * HOUR_MS)
    for i in range(hosts):
        host = make_host(i, hosts)
        for seq, ts in enumerate(host.ticks(START_MS, end), 1):
            out.append((ts, host.name, as_decoded(host.batch([ts], 1, seq, host.name, None))))
    out.sort(key=lambda item: (item[0], item[1]))
    return [(name, batch) for _, name, batch in out]


def _engine() -> Engine:
    return Engine(load_rules(""), _no_write, _no_notify)


def _observe(engine: Engine, frames: list[tuple[str, Batch]], late_ms: int) -> tuple[float, int]:
    """CPU seconds of observing ``frames`` with the clock ``late_ms`` after their time, transitions."""
    transitions = 0
    cpu0 = time.process_time()
    for name, batch in frames:
        transitions += len(engine.observe(name, batch, batch.timestamps[-1] + late_ms))
    return time.process_time() - cpu0, transitions


def measure(hosts: int = 10, warm_h: float = 6.0, hours: float = 1.0) -> dict[str, Any]:
    frames = _frames(hosts, warm_h + hours)
    warm_end = START_MS + int(warm_h * HOUR_MS)
    split = next((k for k, (_, b) in enumerate(frames) if b.timestamps[-1] >= warm_end), len(frames))
    live = _engine()
    _observe(live, frames[:split], 0)
    evaluations0 = live.evaluations
    live_cpu, transitions = _observe(live, frames[split:], 0)
    late_cpu, _ = _observe(_engine(), frames[split:], LATE_MS)
    pushes = len(frames) - split
    return {
        "bench": "aggregator",
        "what": "rules_on_arrival",
        "hosts": hosts,
        "interval_s": INTERVAL_S,
        "warm_h": warm_h,
        "measured_h": hours,
        "pushes": pushes,
        "rules": len(live.rules.rules),
        "evaluations_per_push": round((live.evaluations - evaluations0) / max(pushes, 1), 2),
        "transitions": transitions,
        "live_cpu_us_per_push": round(live_cpu / max(pushes, 1) * 1e6, 1),
        "late_cpu_us_per_push": round(late_cpu / max(pushes, 1) * 1e6, 1),
        "note": "the aggregator's rule engine with the built-in rules, in this process: live frames "
        "after a warm-up that fills the longest window, and the same frames two days late as the "
        "ingest part sends them; each ingest line adds the difference per push to its CPU",
    }


def with_live_rules(line: dict[str, Any], rules: dict[str, Any]) -> dict[str, Any]:
    """What the ingest ``line`` reads with the rules' live cost per push added to its CPU."""
    extra = line["frames"] * max(0.0, rules["live_cpu_us_per_push"] - rules["late_cpu_us_per_push"]) / 1e6
    cpu = line["aggregator_cpu_s"] + extra
    return {
        "added_cpu_s": round(extra, 2),
        "samples_per_aggregator_cpu_s": round(line["samples"] / cpu) if cpu > 0 else None,
    }
