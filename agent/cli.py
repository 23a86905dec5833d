"""``edgewatch agent`` and ``edgewatch enroll``."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import logs
from .config import DEFAULT_PATH, SETTINGS, AgentConfig, ConfigError, load


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgewatch agent",
        description="Sample this host and push the samples to an edgewatch aggregator. Settings come from "
        f"the config file (default {DEFAULT_PATH}), then EDGEWATCH_AGENT_* environment variables, then "
        "these flags; docs/agent.md lists every setting.",
    )
    p.add_argument("--config", type=Path, help=f"TOML config file (default {DEFAULT_PATH}, if it exists)")
    p.add_argument("--aggregator", metavar="URL", help="aggregator URL, e.g. https://mon.example.com:8443")
    p.add_argument("--token", help="agent token (normally stored by `edgewatch enroll`)")
    p.add_argument("--state-dir", metavar="DIR", help="where the spool and identity live")
    p.add_argument("--interval", metavar="S", help="seconds between samples (default 10)")
    p.add_argument("--once", action="store_true", help="print one sample as JSON lines and exit")
    p.add_argument("--check-config", action="store_true", help="check the configuration, print it, and exit")
    return p


def _load(args: argparse.Namespace) -> AgentConfig:
    overrides = {
        "aggregator": args.aggregator,
        "token": args.token,
        "state_dir": args.state_dir,
        "interval": args.interval,
    }
    return load(args.config or DEFAULT_PATH, overrides=overrides)


def _show(config: AgentConfig) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for s in SETTINGS:
        value = config[s.key]
        shown[s.key] = "********" if s.key == "token" and value else value
    shown["check"] = [c._asdict() for c in config.checks]
    shown["scrape"] = [{"name": n, "url": u} for n, u in config.scrapes]
    shown["watch"] = [{"name": n, "pattern": p} for n, p in config.watches]
    shown["action"] = [
        {
            "name": a.name,
            "argv": list(a.argv),
            "params": {k: p.advertised() for k, p in a.params.items()},
            "timeout": a.timeout,
        }
        for a in config.actions
    ]
    return shown


def _json_value(v: int | float | None) -> int | float | str | None:
    return str(v) if isinstance(v, float) and not math.isfinite(v) else v


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"edgewatch agent: {exc}", file=sys.stderr)
        return 2
    logs.setup(config["log_level"], config["log_format"])
    from .registry import build  # the collectors are loaded only once the config is good

    if args.check_config:
        try:
            build(config)
        except (ConfigError, ValueError) as exc:
            print(f"edgewatch agent: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(_show(config), indent=2))
        return 0
    if args.once:
        from .sampler import Sampler, dedupe

        try:
            setup = build(config)
        except (ConfigError, ValueError) as exc:
            print(f"edgewatch agent: {exc}", file=sys.stderr)
            return 2
        sampler = Sampler(setup.collectors, timeout=config["collectors.timeout"])
        try:
            sampler.sample(time.time())  # rates and percentages need a reading to compare with
            time.sleep(1.0)
            series, values = dedupe(sampler.sample(time.time()))
        finally:
            sampler.close()
        for s, v in zip(series, values):
            print(json.dumps({"name": s.name, "labels": dict(s.labels), "value": _json_value(v)}))
        return 0
    from .daemon import Agent

    try:
        agent = Agent(config, build, reload=lambda: _load(args))
    except (ConfigError, ValueError) as exc:
        print(f"edgewatch agent: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the state dir cannot be made or read: wrong user, say
        print(f"edgewatch agent: {exc.filename or config['state_dir']}: {exc.strerror}; check state_dir and "
              "that the agent's user owns it", file=sys.stderr)  # fmt: skip
        return 2
    agent.install_signal_handlers()
    return agent.run()
