"""``edgewatch sim``: simulated hosts pushing realistic frames to an aggregator (demos, load tests).

This module is the command line; ``simrun`` holds the runner (enrollment, pushing, back-off) and
``simhost`` the hosts. From Python: ``await run_sim(SimConfig(...), stop)``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import re
import signal
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .simcatalog import SCENARIOS
from .simrun import (
    Identity,
    ScenarioSpec,
    SimConfig,
    SimError,
    SimStats,
    fleet,
    run_sim,
)

__all__ = [
    "OPTIONS",
    "Identity",
    "ScenarioSpec",
    "SimConfig",
    "SimError",
    "SimStats",
    "fleet",
    "main",
    "parse_duration",
    "parse_scenario",
    "run_sim",
]

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``1.5``, ``30s``, ``10m``, ``2h`` or ``1d`` (a leading ``-`` allowed)."""
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; write 90, 30s, 10m, 2h or 1d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_scenario(text: str) -> ScenarioSpec:
    """``NAME[/PARAM][:HOSTS][@START[+DURATION]]``, e.g. ``disk-fill/30m:2-4@-1h+2h``."""
    head, _, when = text.partition("@")
    what, _, hosts = head.partition(":")
    name, _, param = what.partition("/")
    if name not in SCENARIOS:
        raise argparse.ArgumentTypeError(f"unknown scenario {name!r}; use one of {', '.join(SCENARIOS)}")
    start, duration = 0.0, None
    if when:
        cut = when.find("+", 1)
        start = parse_duration(when if cut < 0 else when[:cut])
        duration = None if cut < 0 else parse_duration(when[cut + 1 :])
        if duration is not None and duration <= 0:
            raise argparse.ArgumentTypeError(f"scenario {text!r} lasts no time; give a positive DURATION")
    if param and name in ("memory-leak", "disk-fill"):
        param = f"{parse_duration(param):g}"
    return ScenarioSpec(name, hosts or "1", start, duration, param.rstrip("%"))


# flag (a SimConfig field, whose default it shows), type, bounds, metavar, help
OPTIONS: tuple[tuple[str, Callable[[str], Any], tuple[float, float] | None, str, str], ...] = (
    ("--hosts", int, (1, 100_000), "N", "number of hosts"),
    ("--interval", parse_duration, (0.1, 3600), "S", "seconds between two samples of a host"),
    ("--aggregator", str, None, "URL", "the aggregator, e.g. https://mon.example.com:8443 (required)"),
    ("--enroll-token", str, None, "TOKEN", "enrollment token with a use for each host not in --state"),
    ("--state", Path, None, "FILE", "keep the hosts' identities in FILE; the next run reuses them"),
    ("--prefix", str, None, "NAME", "host names are NAME-001, NAME-002..."),
    (
        "--history",
        parse_duration,
        (0, 400 * 86400),
        "DURATION",
        "first back-fill this much past data, e.g. 24h",
    ),
    ("--history-samples", int, (1, 4096), "K", "samples per history frame"),
    (
        "--duration",
        parse_duration,
        (0, 1e9),
        "SECONDS",
        "stop after this long live; default: at SIGINT or SIGTERM",
    ),
    ("--seed", int, (0, 2**63), "N", "the same seed gives the same hosts and the same data"),
    ("--batch-samples", int, (1, 360), "K", "samples per live frame (the agent's batch_samples)"),
    ("--concurrency", int, (1, 10_000), "C", "requests in flight at most (one connection pool)"),
    ("--timeout", parse_duration, (0.5, 300), "S", "seconds one request may take"),
)
EPILOG = """\
scenarios: NAME[/PARAM][:HOSTS][@START[+DURATION]]
  cpu-spike     busy CPU at ~97 % (PARAM: percent)
  memory-leak   MemAvailable falls to 2.5 % (PARAM: time to run out; default DURATION, else 1h)
  disk-fill     / fills up to 100 % (PARAM: time to fill; default DURATION, else 1h)
  service-down  the main unit (or unit PARAM) failed, its HTTP check down
  silent        the host stops pushing
  flapping      CPU oscillating across 80 % (PARAM: samples per period, default 4)
HOSTS: numbers (3, 1-5, 2,7), names (sim-003) or all; default 1. START: after the start of the
simulation, negative for the history; default 0. DURATION: default until the end. Durations: 90, 30s,
10m, 2h, 1d. E.g. --scenario disk-fill/30m:2@-1h+2h --scenario service-down:all@5m+10m

On stop it prints one JSON line: hosts, frames_sent, samples_sent, key_frames, conflicts_409,
retries, errors, dropped_frames, p50_ms, p99_ms, ...
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"edgewatch sim: {message}; run 'edgewatch sim --help'\n")


def _parser() -> _Parser:
    p = _Parser(
        prog="edgewatch sim",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Simulated hosts with daily patterns and failure scenarios, pushing real frames to an\n"
        "aggregator as enrolled agents do (demos, load tests).",
        epilog=EPILOG,
    )
    defaults = {f.name: f.default for f in dataclasses.fields(SimConfig)}
    for flag, kind, bounds, metavar, text in OPTIONS:
        default = defaults[flag[2:].replace("-", "_")]
        required = default is dataclasses.MISSING
        shown = f" (default {default:g})" if isinstance(default, (int, float)) and default else ""
        shown = f" (default {default})" if isinstance(default, str) and default else shown
        convert = kind if bounds is None else _bounded(kind, *bounds)
        p.add_argument(flag, type=convert, metavar=metavar, required=required,
                       default=None if required else default, help=text + shown)  # fmt: skip
    p.add_argument("--scenario", type=parse_scenario, action="append", default=[], metavar="SPEC",
                   help="a failure scenario, see below (repeatable)")  # fmt: skip
    p.add_argument("--history-only", action="store_true", help="stop once the history is sent (benchmarks)")
    p.add_argument("--ca-file", metavar="FILE", help="CA bundle that verifies the aggregator's certificate")
    p.add_argument("--insecure", action="store_true", help="do not verify the aggregator's certificate")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    return p


def _bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range; use {low:g} to {high:g}")
        return value

    return convert


def main(argv: Sequence[str]) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", args.aggregator):
        p.error(f"--aggregator {args.aggregator!r} is not an http(s) URL")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,60}", args.prefix):
        p.error(f"--prefix {args.prefix!r} must be letters, digits, dots and dashes")
    tls: ssl.SSLContext | bool = not args.insecure
    if args.ca_file:
        try:
            tls = ssl.create_default_context(cafile=args.ca_file)
        except (OSError, ssl.SSLError) as exc:
            p.error(f"--ca-file {args.ca_file}: {exc}")
    given = {flag[2:].replace("-", "_") for flag, *_ in OPTIONS}
    config = SimConfig(**{k: getattr(args, k) for k in given}, scenarios=args.scenario,
                       history_only=args.history_only, ssl=tls)  # fmt: skip
    try:
        fleet(config, 0)  # a scenario that does not fit the hosts is an argument error
    except ValueError as exc:
        p.error(f"--scenario: {exc}")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        stats = _run(config)
    except SimError as exc:
        print(f"edgewatch sim: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(stats.summary()), flush=True)
    return 0


def _run(config: SimConfig) -> SimStats:
    async def go() -> SimStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_sim(config, stop)

    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with edgewatch[aggregator]
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(go())
