"""What the host is (facts sent with every batch) and how long it has been up.

``HostFacts.facts(now)`` answers a ``dict[str, str]``: hostname, os, kernel, arch, cpu_model,
cpu_count, memory_bytes, boot_time (epoch seconds) and agent_version. The facts are read again every
``refresh`` seconds, not for every batch; a fact that cannot be read is left out rather than failing
the batch.

``UptimeCollector`` sends ``node_boot_time_seconds`` (epoch seconds, from ``/proc/stat``) and
``edgewatch_uptime_seconds`` (whole seconds, from ``/proc/uptime``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from edgewatch.protocol.version import __version__

from .base import Sample, SeriesCache, read_text
from .cpu import parse_stat
from .procfs import ProcFormatError, read_meminfo

OS_RELEASE = (Path("/etc/os-release"), Path("/usr/lib/os-release"))
# /proc/cpuinfo keys naming the processor, best first: x86 and most others, then 32-bit ARM kernels
CPU_MODEL_KEYS = ("model name", "Hardware", "Processor")
T = TypeVar("T")


def pretty_name(path: Path) -> str | None:
    """``PRETTY_NAME`` of an os-release file (shell-style ``KEY="value"`` lines)."""
    for line in read_text(path).splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "PRETTY_NAME":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            return value.replace('\\"', '"').replace("\\\\", "\\") or None
    return None


def cpu_model(path: Path) -> str | None:
    found: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            key, sep, value = line.partition(":")
            key = key.strip()
            if sep and key in CPU_MODEL_KEYS and key not in found and value.strip():
                found[key] = value.strip()
                if key == CPU_MODEL_KEYS[0]:
                    break  # the first one is the best there is: no need to read the other cores
    return next((found[k] for k in CPU_MODEL_KEYS if k in found), None)


class HostFacts:
    def __init__(
        self,
        proc_root: Path = Path("/proc"),
        *,
        os_release: Sequence[Path] = OS_RELEASE,
        uname: Callable[[], os.uname_result] = os.uname,
        refresh: float = 300.0,
    ) -> None:
        self._proc = proc_root
        self._os_release = os_release
        self._uname = uname
        self._refresh = refresh
        self._facts: dict[str, str] = {}
        self._read_at: float | None = None

    def facts(self, now: float) -> dict[str, str]:
        if self._read_at is None or not 0 <= now - self._read_at < self._refresh:
            self._facts, self._read_at = self.read(), now
        return dict(self._facts)

    def read(self) -> dict[str, str]:
        uname = self._uname()
        proc = self._proc
        facts: dict[str, str | None] = {
            "hostname": _first_line(proc / "sys" / "kernel" / "hostname") or uname.nodename,
            "os": _attempt(lambda: next(filter(None, map(_pretty, self._os_release)), None)),
            "kernel": _first_line(proc / "sys" / "kernel" / "osrelease") or uname.release,
            "arch": uname.machine,
            "cpu_model": _attempt(lambda: cpu_model(proc / "cpuinfo")),
            "memory_bytes": _attempt(lambda: str(read_meminfo(proc / "meminfo")["MemTotal"])),
            "agent_version": __version__,
        }
        stat = _attempt(lambda: parse_stat(read_text(proc / "stat"), proc / "stat"))
        if stat is not None:
            cpus, totals = stat
            facts["cpu_count"] = str(len(cpus) - 1)
            facts["boot_time"] = str(totals["btime"])
        return {k: v for k, v in facts.items() if v}


def _pretty(path: Path) -> str | None:
    try:
        return pretty_name(path)
    except FileNotFoundError:
        return None


def _first_line(path: Path) -> str | None:
    try:
        return read_text(path).strip() or None
    except OSError:
        return None


def _attempt(read: Callable[[], T]) -> T | None:
    """A fact, or ``None`` when its file is missing or malformed: the batch goes out without it."""
    try:
        return read()
    except (OSError, KeyError, ProcFormatError):
        return None


class UptimeCollector:
    name = "uptime"

    def __init__(
        self, proc_root: Path = Path("/proc"), *, interval: float = 0.0, cache: SeriesCache | None = None
    ) -> None:
        self.interval = interval
        self._stat = proc_root / "stat"
        self._uptime = proc_root / "uptime"
        self._cache = cache or SeriesCache()

    def collect(self, now: float) -> Sequence[Sample]:
        text = read_text(self._stat)
        at = text.find("\nbtime ") + 1
        end = text.find("\n", at)
        try:
            boot = int(text[at + 6 : end if end > 0 else len(text)]) if at else None
        except ValueError:
            boot = None
        if boot is None:
            raise ProcFormatError(self._stat, "it has no 'btime number' line")
        uptime = read_text(self._uptime).split()
        try:
            up = int(float(uptime[0]))
        except (IndexError, ValueError):
            raise ProcFormatError(
                self._uptime, f"{' '.join(uptime)!r} does not start with a number"
            ) from None
        c = self._cache
        return [(c.gauge("node_boot_time_seconds"), boot), (c.gauge("edgewatch_uptime_seconds"), up)]
