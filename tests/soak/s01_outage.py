"""Soak scenario 1, outage: the aggregator is down for a while under a fleet of simulated agents.

``edgewatch sim`` pushes ``hosts`` agents every ``interval`` seconds to a real aggregator; once all
of them push, the aggregator is stopped (SIGTERM) for ``outage`` seconds and started again on the
same data dir and port. The agents keep sampling meanwhile and keep their frames in their backlogs.

Drain time: from the aggregator answering ``/healthz`` again to the moment every host's
acknowledged seqs are one run from 1 (no frame missing) that reaches a sample taken after the
restart, polled in the aggregator's database every half second.

Then the simulator and the aggregator stop, the windows still open are compacted by the storage
engine's own maintenance job (as the aggregator does 10.5 minutes later), and the database is
counted tier by tier against what the simulator generated: the simulated hosts are pure functions
of their seed and time, so each host's samples at each of its ticks are computed again here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.soak.core import Context, Result, scenario
from tests.soak.simkit import (
    ROLLUP_TIERS,
    Processes,
    Sim,
    acked_ranges,
    compact_everything,
    enroll_token,
    generated,
    host_ids,
    newest_recent,
    opened,
    sim_fleet,
    tally,
    wait_until,
)

FULL: dict[str, Any] = {
    "hosts": 200,
    "interval": 10.0,
    "before": 60.0,
    "outage": 600.0,
    "after": 20.0,
    # 30 s (the agents' longest retry back-off) + 12,000 back-log frames at 80 frames/s (half the
    # back-fill rate measured on 2 cores: single-sample key frames cost the aggregator ~6 ms each)
    "drain_bound": 180.0,
    "drain_wait": 400.0,  # how long to wait for it at most, to report how long it took
}
FAST: dict[str, Any] = {
    "hosts": 100,
    "interval": 2.0,
    "before": 3.0,
    "outage": 8.0,
    "after": 1.0,
    "drain_bound": 25.0,  # up to ~16 s of retry back-off after a 10 s gap, and a small back-log
    "drain_wait": 30.0,
}
SEED = 101
PROMISE = (
    "After an aggregator outage under a fleet of agents, every sample the agents took is stored exactly "
    "once in the raw tier and counted exactly once in the 1m, 5m and 1h tiers, and the agents' back-log "
    "is drained within a stated time."
)


@scenario(1, "outage", PROMISE)
def run(ctx: Context) -> Result:
    p = ctx.scale(FULL, FAST)
    hosts, interval = int(p["hosts"]), float(p["interval"])
    result = Result()
    figures = result.figures
    figures.update(hosts=hosts, interval_s=interval, outage_s=p["outage"], drain_bound_s=p["drain_bound"])
    procs = Processes()
    try:
        agg = procs.aggregator(ctx.tmp, storage__compact_interval="1s")
        agg.start()
        token = enroll_token(agg, hosts)
        sim = Sim(procs, ctx.tmp, agg.url, token, hosts, interval, seed=SEED, concurrency=32)
        sim.start()

        def pushing() -> bool:
            sim.check_alive()
            with opened(agg.data_dir) as conn:
                return len(acked_ranges(conn)) >= hosts

        wait_until("every simulated host pushing", pushing, timeout=120 + 2 * interval)
        time.sleep(p["before"])
        figures["aggregator_stop_code"] = agg.stop()
        time.sleep(p["outage"])
        agg.start()
        up_ms = int(time.time() * 1000)

        def drained() -> bool:
            sim.check_alive()
            with opened(agg.data_dir) as conn:
                ranges, newest = acked_ranges(conn), newest_recent(conn)
            done = [
                h for h, r in ranges.items() if len(r) == 1 and r[0][1] == 1 and newest.get(h, 0) >= up_ms
            ]
            figures["hosts_drained"] = len(done)
            return len(done) >= hosts

        try:
            drain = wait_until("the back-log drained", drained, timeout=p["drain_wait"])
        except TimeoutError:
            drain = float("inf")
        figures["drain_s"] = round(drain, 1)
        result.check(
            drain <= p["drain_bound"],
            f"the back-log took {drain:.1f} s to drain (bound {p['drain_bound']:g} s); "
            f"{figures['hosts_drained']} of {hosts} hosts drained",
        )
        time.sleep(p["after"])
        stats = sim.stop()
        figures.update(
            frames_acked=stats["frames_sent"],
            samples_acked=stats["samples_sent"],
            conflicts_409=stats["conflicts_409"],
            push_errors=stats["error_reasons"],
            dropped_samples_sim=stats["dropped_samples"],
            pending_frames=stats["pending_frames"],
        )
        result.check(
            stats["dropped_samples"] == 0 and stats["pending_frames"] == 0,
            f"the simulator dropped {stats['dropped_samples']} samples and kept {stats['pending_frames']} "
            "frames unsent",
        )
        agg.stop()
        figures["windows_compacted_after"] = compact_everything(agg.data_dir)
        _count(result, agg.data_dir, stats, hosts, interval, agg.url)
    finally:
        procs.close()
    return result


def _count(
    result: Result, data_dir: Path, stats: dict[str, Any], hosts: int, interval: float, url: str
) -> None:
    """Compare every tier of the database with what the simulator generated and acknowledged."""
    figures = result.figures
    fleet = sim_fleet(url, hosts, interval, SEED)
    with opened(data_dir) as conn:
        ids = host_ids(conn, "sim-")
        ranges = acked_ranges(conn)
        tallies = tally(conn, ids)
    result.check(len(ids) == hosts, f"{len(ids)} simulated hosts in the database, not {hosts}")
    holes = [name for name, hid in ids.items() if [r[1] for r in ranges.get(hid, [])] != [1]]
    result.check(not holes, f"{len(holes)} hosts have acknowledged seqs with a hole or none: {holes[:5]}")
    raw = sum(t.raw for t in tallies.values())
    want: dict[str, int] = {}
    bad_ticks: list[str] = []
    for name, t in tallies.items():
        if not t.ticks:
            bad_ticks.append(f"{name}: no samples")
            continue
        made = generated(fleet[name], t.ticks[0], t.ticks[-1])
        want[name] = sum(made.values())
        if made != t.per_tick:
            lost = sorted(set(made) - set(t.per_tick))
            short = sorted(ts for ts, n in made.items() if t.per_tick.get(ts, n) != n)
            bad_ticks.append(f"{name}: {len(lost)} ticks missing {lost[:3]}, {len(short)} short {short[:3]}")
    figures.update(samples_generated=sum(want.values()), samples_raw=raw)
    result.check(
        raw == stats["samples_sent"],
        f"the raw tier holds {raw} samples, the simulator had {stats['samples_sent']} acknowledged",
    )
    result.check(
        not bad_ticks,
        f"{len(bad_ticks)} hosts' raw samples differ from what the simulator generated: {bad_ticks[:3]}",
    )
    expected = sum(t.expected_rollup for t in tallies.values())
    figures["rollup_expected"] = expected
    for tier in ROLLUP_TIERS:
        got = sum(t.tiers[tier] for t in tallies.values())
        figures[f"samples_{tier}"] = got
        off = [n for n, t in tallies.items() if t.tiers[tier] != t.expected_rollup]
        result.check(
            got == expected and not off,
            f"the {tier} tier counts {got} samples, the raw tier makes {expected}; {len(off)} hosts differ "
            f"{off[:5]}",
        )
    left = sum(t.recent_rows for t in tallies.values())
    result.check(left == 0, f"{left} frames were still not compacted after the final maintenance")
