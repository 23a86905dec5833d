"""Alerting benchmark: how fast a crossed threshold reaches a webhook and a phone, and what rules cost.

Two parts, each printing one JSON object per measurement on stdout (progress goes to stderr):

- ``latency`` (alerts_latency.py): a real ``edgewatch agent`` with its default settings (10 s
  interval, one sample a frame) reads a ``.prom`` file through its textfile collector and pushes to a
  real ``edgewatch aggregator`` with one rule (``for`` = 0, a critical threshold, a lower ``clear``),
  a signed webhook channel and the implicit Web Push channel. Each round writes a value above the
  threshold, waits for the webhook and the push request, then writes one below ``clear`` and waits
  for both resolutions. Figures per channel: p50 / p95 / max in ms from the sample's timestamp to the
  request reaching the local receiver (budget: p95 at most 2 s with ``for`` = 0).
- ``rules`` (alerts_rules.py): the rule engine in this process, fed one frame per host of 1,000
  simulated hosts (``SimHost``, ~165 series each) per round: µs per sample received and per rule
  evaluation, the share of the event loop at the agents' 10 s interval, and ``Engine.tick`` for
  1,000 hosts; for a mix of 100 rules, the same less its two ratio rules whose divisor arrives
  without the rule's labels (``mix-98``: the engine then re-evaluates by scanning every window it
  holds, of every host), and the built-in rules alone (what a default install evaluates).

Everything runs on 127.0.0.1 (proxy settings are removed from the environment of the processes it
starts); every process started is stopped on the way out (errors and Ctrl-C included) and the
temporary directory removed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import alerts_latency
import alerts_rules
from aggregator_common import Processes, run_in_scratch

PARTS = ("latency", "rules")
RULE_SETS = ("mix-100", "mix-98", "builtin")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="3 latency rounds and 1 timed rule round (~4 min)")
    ap.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated parts to run (default {','.join(PARTS)})"
    )
    ap.add_argument("--rounds", type=int, help="latency: fire-and-resolve rounds (default 20; quick 3)")
    ap.add_argument("--hosts", type=int, default=1000, help="rules: simulated hosts (default 1000)")
    ap.add_argument("--rule-rounds", type=int, help="rules: timed rounds of every host (default 4; quick 1)")
    ap.add_argument("--ticks", type=int, default=10, help="rules: timed Engine.tick calls (default 10)")
    ap.add_argument(
        "--rule-sets",
        default=",".join(RULE_SETS),
        help="rules: comma-separated rule sets (default mix-100,mix-98,builtin): mix-98 is the mix without "
        "its two ratio rules whose label matchers the divisor series does not carry",
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (its path goes to stderr)"
    )
    args = ap.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not args.parts or set(args.parts) - set(PARTS):
        ap.error(f"--parts takes {', '.join(PARTS)}")
    args.rule_sets = [s.strip() for s in args.rule_sets.split(",") if s.strip()]
    if not args.rule_sets or set(args.rule_sets) - set(RULE_SETS):
        ap.error(f"--rule-sets takes {', '.join(RULE_SETS)}")
    args.rounds = args.rounds if args.rounds is not None else 3 if args.quick else 20
    args.rule_rounds = args.rule_rounds if args.rule_rounds is not None else 1 if args.quick else 4
    if args.rounds < 1 or args.rule_rounds < 1 or args.hosts < 1 or args.ticks < 0:
        ap.error("--rounds, --rule-rounds and --hosts must be at least 1, --ticks at least 0")
    return args


def loopback_only_environment() -> None:
    """The processes started here inherit no proxy (the aggregator's Web Push client would use one)
    and no EDGEWATCH_* settings (the agent and aggregator run with their defaults)."""
    for name in list(os.environ):
        if "proxy" in name.lower() or name.startswith(("EDGEWATCH_AGENT_", "EDGEWATCH_AGGREGATOR_")):
            del os.environ[name]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    loopback_only_environment()

    def body(tmp: Path, procs: Processes) -> None:
        if "latency" in args.parts:
            alerts_latency.run(tmp, procs, args.rounds)
        if "rules" in args.parts:
            alerts_rules.run(args.hosts, args.rule_rounds, args.ticks, args.rule_sets)

    mode = "quick" if args.quick else "full"
    return run_in_scratch("alerts", f"{mode} run of {', '.join(args.parts)}", body, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
