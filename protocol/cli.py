"""The ``edgewatch`` command: one entry point that loads only the side a subcommand needs.

Each subcommand is a module with ``main(argv) -> int``, named here as a string and imported only
when it runs, so ``edgewatch agent`` never loads the aggregator's code (or aiohttp) and vice versa.
Adding a subcommand is one line in ``COMMANDS``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from .version import __version__

# name -> (module with main(argv) -> int, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("edgewatch.agent.cli", "sample this host and push to an aggregator (the agent daemon)"),
    "enroll": ("edgewatch.agent.enroll", "enroll this host with an aggregator, pinning its signing key"),
    "frame": ("edgewatch.protocol.frame_cli", "print wire frames (spooled or captured) as JSON"),
    "sim": (
        "edgewatch.aggregator.sim",
        "simulated hosts pushing realistic frames to an aggregator (demos, load tests)",
    ),
    "aggregator": ("edgewatch.aggregator.server", "run the aggregator: ingest, storage, query API"),
    "admin": ("edgewatch.aggregator.admin", "manage agents, enrollment and API tokens, users"),
    "demo": (
        "edgewatch.aggregator.demo",
        "run an aggregator, this host's agent and simulated hosts, and print the URL",
    ),
}

USAGE = "usage: edgewatch [--version] [--help] COMMAND [ARGS...]"


def _help() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        USAGE,
        "",
        "edgewatch: self-hosted monitoring for fleets of Linux hosts.",
        "",
        "commands:",
        *(f"  {name.ljust(width)}  {text}" for name, (_, text) in sorted(COMMANDS.items())),
        "",
        "options:",
        "  --version  print the version and exit",
        "  --help     print this help and exit",
        "",
        "Run 'edgewatch COMMAND --help' for the options of a command.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_help())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"edgewatch {__version__}")
        return 0
    name = args[0]
    if name not in COMMANDS:
        what = "option" if name.startswith("-") else "command"
        print(
            f"edgewatch: unknown {what} {name!r}; run 'edgewatch --help' to see the commands", file=sys.stderr
        )
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(args[1:]))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
