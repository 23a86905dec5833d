"""Aggregator benchmark: ingest throughput and CPU, bytes on disk per sample, range-query latency.

Three parts, each printing one JSON object per measurement on stdout (progress goes to stderr):

- ``ingest``: a real ``edgewatch aggregator`` process (temporary data dir, a free 127.0.0.1 port,
  ``storage.compact_interval`` 2 s) fed over HTTP by a separate load process with pre-encoded frames
  of simulated agents (``SimHost``; key frame, then delta frames, as the agent sends them), at 100 and
  at 2,000 agents with one sample per series a frame (the agent's default), and a labelled variant
  with 6 samples a frame. The samples are two days old, so every 10-minute window has closed and is
  compacted (raw blocks and 1 m / 5 m / 1 h rollups) during the run; every agent sends a whole
  window (60 frames), as in steady use; the clock stops when ``recent`` is empty and the
  maintenance pass that emptied it (its rollup merges too) has finished. Figures: stored samples
  per wall second, aggregator CPU (utime + stime from /proc, children excluded) per million
  samples and by thread, samples per aggregator CPU second (the one-core throughput; budget
  300,000), push latency p50 / p99, 409s and errors. Two yardsticks go with it: the same frames
  pushed to bench/http_floor.py (aiohttp answering at once: what the HTTP stack alone costs), and
  the built-in rules on live frames (aggregator_rules.py: two-day-old samples leave the rule engine
  idle), whose extra CPU per push each line adds in ``with_live_rules``.
- ``storage``: a simulated day of 50 hosts at 10 s through the Store API, then bytes per raw sample
  from SQLite's dbstat (raw blocks and their index) and from the blob lengths, each rollup tier and
  the file; the same samples imported into Debian's VictoriaMetrics in the same run, its own size
  figures per sample (budget: at most 1.5 and not above VictoriaMetrics).
- ``query``: p50 / p95 of range queries over HTTP against a real aggregator holding 1,000 hosts (one
  probe host with 30 days; see aggregator_query.py for exactly what the others hold): one series over
  1 h, 24 h (budget p95 10 ms) and 30 d, the host page (every series of the host over 24 h, its
  series list) and the host overview; each answer says the tier that served it.

Everything runs on 127.0.0.1; every process started is stopped on the way out (errors and Ctrl-C
included) and the temporary directory removed.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path

import aggregator_ingest
import aggregator_query
import aggregator_rules
import aggregator_storage
from aggregator_common import Processes, emit, log, run_in_scratch

PARTS = ("ingest", "storage", "query")


@dataclass(frozen=True)
class Sizes:
    agents: str  # comma-separated agent counts of the one-sample cases
    frames: int  # delta frames per agent at 100 agents or fewer (60: one 10-minute window of 10 s samples)
    frames_many: int  # delta frames per agent above 100 agents (60: a whole window, as in steady use)
    batch_frames: int  # frames of 6 samples per agent in the batch variant (at the fewest agents); 0: none
    storage_hosts: int
    storage_hours: float
    query_hosts: int
    query_days: float
    query_history_interval: float  # seconds between the probe host's samples before its last day
    query_filler_minutes: float  # minutes of 10 s samples of the other hosts
    query_runs: int


FULL = Sizes("100,2000", 60, 60, 20, 50, 24.0, 1000, 30.0, 1800.0, 10.0, 50)
QUICK = Sizes("100,400", 30, 6, 10, 6, 3.0, 1000, 30.0, 3600.0, 1.0, 20)


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str], Sizes, list[int]]:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="a smaller run of every part (under 4 minutes)")
    ap.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated parts to run (default {','.join(PARTS)})"
    )
    ap.add_argument("--agents", help=f"ingest: agent counts, comma-separated (default {FULL.agents})")
    ap.add_argument(
        "--frames", type=int, help=f"ingest: delta frames per agent up to 100 agents ({FULL.frames})"
    )
    ap.add_argument("--frames-many", type=int, help=f"ingest: the same above 100 agents ({FULL.frames_many})")
    ap.add_argument(
        "--batch-frames",
        type=int,
        help=f"ingest: frames of the 6-sample variant, 0: skip ({FULL.batch_frames})",
    )
    ap.add_argument("--concurrency", type=int, default=32, help="ingest: pushes in flight (default 32)")
    ap.add_argument(
        "--order",
        choices=("agent", "time"),
        default="agent",
        help="ingest: a load worker sends one agent's frames after another (agent, default) or cycles "
        "through its agents frame by frame (time)",
    )
    ap.add_argument("--storage-hosts", type=int, help=f"storage: hosts ({FULL.storage_hosts})")
    ap.add_argument(
        "--storage-hours", type=float, help=f"storage: hours of 10 s samples ({FULL.storage_hours:g})"
    )
    ap.add_argument("--query-hosts", type=int, help=f"query: hosts in the database ({FULL.query_hosts})")
    ap.add_argument("--query-days", type=float, help=f"query: days of the probe host ({FULL.query_days:g})")
    ap.add_argument(
        "--query-history-interval",
        type=float,
        help=f"query: seconds between the probe host's older samples ({FULL.query_history_interval:g})",
    )
    ap.add_argument(
        "--query-filler-minutes",
        type=float,
        help=f"query: minutes of 10 s samples of the other hosts ({FULL.query_filler_minutes:g})",
    )
    ap.add_argument("--query-runs", type=int, help=f"query: timed runs of each query ({FULL.query_runs})")
    ap.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (its path goes to stderr)"
    )
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        ap.error(f"--parts takes {', '.join(PARTS)}; not {', '.join(sorted(unknown)) or 'nothing'}")
    base = QUICK if args.quick else FULL
    given = {f.name: getattr(args, f.name) for f in fields(Sizes) if getattr(args, f.name) is not None}
    sizes = replace(base, **given)
    try:
        agents = [int(a) for a in sizes.agents.split(",") if a.strip()]
    except ValueError:
        ap.error(f"--agents takes numbers, e.g. 100,2000; not {sizes.agents!r}")
    if not agents or min(agents) < 1:
        ap.error("--agents needs at least one positive count")
    return args, parts, sizes, agents


def main(argv: list[str] | None = None) -> int:
    args, parts, sizes, agents = parse(argv)
    if "storage" in parts and not Path(aggregator_storage.VM_BIN).exists():
        sys.exit(
            f"bench/aggregator: {aggregator_storage.VM_BIN} is missing; run `make bench-aggregator` "
            "(installs Debian's victoria-metrics as root)"
        )

    def body(tmp: Path, procs: Processes) -> None:
        if "ingest" in parts:
            cases = [
                aggregator_ingest.Case(
                    n, sizes.frames if n <= 100 else sizes.frames_many, 1, args.concurrency, args.order
                )
                for n in agents
            ]
            if sizes.batch_frames > 0:
                cases.append(
                    aggregator_ingest.Case(min(agents), sizes.batch_frames, 6, args.concurrency, args.order)
                )
            log("rules on arrival: the built-in rules on live frames, in this process")
            rules = aggregator_rules.measure()
            emit(rules)
            aggregator_ingest.run(cases, tmp, procs, partial(aggregator_rules.with_live_rules, rules=rules))
        if "storage" in parts:
            aggregator_storage.main(sizes.storage_hosts, sizes.storage_hours, tmp, procs)
        if "query" in parts:
            aggregator_query.run(
                tmp,
                procs,
                hosts=sizes.query_hosts,
                days=sizes.query_days,
                history_s=sizes.query_history_interval,
                filler_min=sizes.query_filler_minutes,
                runs=sizes.query_runs,
            )

    mode = "quick" if args.quick else "full"
    return run_in_scratch("aggregator", f"{mode} run of {', '.join(parts)}", body, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
