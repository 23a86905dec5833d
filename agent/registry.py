"""The one place that lists the collectors and builds them from the configuration.

Adding a collector is one module and one entry in ``_SYSTEM`` or in ``build`` below. Collectors of
services (systemd units, checks, textfiles, scrapes, the plugin endpoint) are built only when the
configuration asks for them, and their modules are imported only then, so an agent pays in memory
for what it uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .collectors.base import Collector
from .config import AgentConfig, ConfigError
from .daemon import Setup

NAMES: tuple[str, ...] = ("cpu", "memory", "filesystem", "disk", "network", "processes", "sensors", "uptime")
NAMES += ("systemd", "procwatch", "checks", "textfile", "scrape", "plugin")
FACTS_REFRESH = 600.0  # seconds between re-reading host facts (they change rarely: a new kernel, a rename)


def _system(config: AgentConfig) -> list[Collector]:
    from .collectors.cpu import CpuCollector
    from .collectors.disk import DiskCollector
    from .collectors.filesystem import FilesystemCollector
    from .collectors.host import UptimeCollector
    from .collectors.memory import MemoryCollector
    from .collectors.network import NetworkCollector
    from .collectors.processes import ProcessCollector
    from .collectors.sensors import SensorsCollector

    proc, sys_root = Path(config["proc_root"]), Path(config["sys_root"])
    return [
        CpuCollector(proc_root=proc),
        MemoryCollector(proc_root=proc),
        FilesystemCollector(
            proc_root=proc,
            exclude_types=config["filesystem.exclude_types"],
            exclude_mounts=config["filesystem.exclude_mounts"],
        ),
        DiskCollector(proc_root=proc, exclude=config["disk.exclude"]),
        NetworkCollector(proc_root=proc, exclude=config["network.exclude"]),
        ProcessCollector(
            proc_root=proc, top_n=config["processes.top"], interval=config["processes.interval"]
        ),
        SensorsCollector(sys_root=sys_root, interval=config["sensors.interval"]),
        UptimeCollector(proc_root=proc),
    ]


def _services(config: AgentConfig) -> list[Any]:
    out: list[Any] = []
    if config["systemd.units"]:
        from .collectors.systemd import SystemdCollector

        out.append(SystemdCollector(units=config["systemd.units"]))
    if config.watches:
        from .collectors.procwatch import ProcessWatchCollector

        out.append(ProcessWatchCollector(watches=config.watches, proc_root=Path(config["proc_root"])))
    if config.checks:
        from .collectors.checks import CheckCollector

        out.append(CheckCollector(checks=config.checks))
    if config["textfile.directory"]:
        from .collectors.textfile import TextfileCollector

        out.append(TextfileCollector(directory=Path(config["textfile.directory"])))
    if config.scrapes:
        from .collectors.scrape import ScrapeCollector

        out.append(ScrapeCollector(targets=config.scrapes))
    if config["plugin.listen"]:
        from .collectors.plugin import PluginCollector

        out.append(PluginCollector(listen=config["plugin.listen"]))
    return out


def _cached_facts(config: AgentConfig) -> Callable[[float], dict[str, str]]:
    from .collectors.host import HostFacts

    facts = HostFacts(proc_root=Path(config["proc_root"]))
    hostname = config["hostname"]
    cache: dict[str, Any] = {"at": -FACTS_REFRESH, "facts": {}}

    def current(now: float) -> dict[str, str]:
        if now - cache["at"] >= FACTS_REFRESH:
            fresh = facts.facts(now)
            if hostname:
                fresh["hostname"] = hostname
            cache["at"], cache["facts"] = now, fresh
        return dict(cache["facts"])

    return current


def build(config: AgentConfig) -> Setup:
    """The collectors and host facts this configuration asks for (nothing started yet)."""
    disabled = set(config["collectors.disabled"])
    try:
        collectors = [c for c in _system(config) + _services(config) if c.name not in disabled]
    except (ValueError, re.error) as exc:
        raise ConfigError(f"collectors: {exc}") from None
    unknown = disabled - set(NAMES)
    if unknown:
        raise ConfigError(
            f"collectors.disabled: unknown collector {sorted(unknown)[0]!r}; use some of {', '.join(NAMES)}"
        )
    return Setup(collectors, _cached_facts(config))
