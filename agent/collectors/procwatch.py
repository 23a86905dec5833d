"""Processes named in the configuration: how many run, their CPU and their resident memory.

A watch is ``(label, pattern)``: the pattern is a command name (``nginx``, compared with the kernel's
``comm``, which holds at most 15 characters) or ``re:REGEX``, searched in the full command line
(kernel threads, which have none, never match a regex). A process may count for several watches.
CPU is the share of one core used since the previous collection (100 = one core busy), summed over
the watch's processes, including those started and gone in between when /proc still shows them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from .base import Sample, SeriesCache, read_text

COMM_LEN = 15  # TASK_COMM_LEN - 1


class _Watch(NamedTuple):
    label: str
    comm: str | None
    regex: re.Pattern[str] | None


class _Proc(NamedTuple):
    comm: str
    ticks: int  # utime + stime
    start: int  # start time, in clock ticks after boot
    rss_pages: int


def parse_stat(text: str) -> _Proc:
    """``/proc/PID/stat``: the command name is in parentheses and may itself hold spaces and ')'."""
    head, _, tail = text.rpartition(")")
    comm = head.partition("(")[2]
    fields = tail.split()  # fields[0] is field 3 (state) in proc(5)
    return _Proc(comm, int(fields[11]) + int(fields[12]), int(fields[19]), int(fields[21]))


class ProcessWatchCollector:
    def __init__(
        self,
        name: str = "procwatch",
        watches: Sequence[tuple[str, str]] = (),
        proc_root: Path = Path("/proc"),
        page_size: int | None = None,
        clock_ticks: int = 100,
        *,
        interval: float = 0.0,
        cache: SeriesCache | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.proc_root = Path(proc_root)
        self.page_size = page_size or os.sysconf("SC_PAGE_SIZE")
        self.clock_ticks = clock_ticks
        self.cache = cache or SeriesCache()
        labels = [label for label, _ in watches]
        if len(set(labels)) != len(labels):
            raise ValueError(
                f"process watches named twice: {sorted({x for x in labels if labels.count(x) > 1})}"
            )
        self.watches: list[_Watch] = []
        for label, pattern in watches:
            if pattern.startswith("re:"):
                try:
                    regex = re.compile(pattern[3:])
                except re.error as exc:
                    raise ValueError(
                        f"watch {label}: {pattern!r} is not a valid regular expression ({exc})"
                    ) from None
                self.watches.append(_Watch(label, None, regex))
            else:
                self.watches.append(_Watch(label, pattern[:COMM_LEN], None))
        self._needs_cmdline = any(w.regex for w in self.watches)
        self._ticks: dict[tuple[int, int], int] = {}  # (pid, start) -> cpu ticks at the last collection
        self._last: tuple[float, float] | None = None  # (now, uptime) of the last collection

    def collect(self, now: float) -> Sequence[Sample]:
        running = dict.fromkeys((w.label for w in self.watches), 0)
        ticks = dict.fromkeys(running, 0)
        rss = dict.fromkeys(running, 0)
        seen: dict[tuple[int, int], int] = {}
        since = self._last[1] * self.clock_ticks if self._last and self._last[1] > 0 else None
        for pid, proc, cmdline in self._processes():
            labels = [w.label for w in self.watches if self._matches(w, proc, cmdline)]
            if not labels:
                continue
            key = (pid, proc.start)
            seen[key] = proc.ticks
            before = self._ticks.get(key)
            if before is not None:
                used = max(0, proc.ticks - before)
            elif since is not None and proc.start >= since:
                used = proc.ticks  # started since the last collection: all its time is new
            else:
                used = 0
            for label in labels:
                running[label] += 1
                ticks[label] += used
                rss[label] += proc.rss_pages * self.page_size
        elapsed = now - self._last[0] if self._last else 0.0
        uptime = self._uptime()
        self._ticks = seen
        self._last = (now, uptime)
        cache = self.cache
        out: list[Sample] = []
        for label in running:
            watch = {"watch": label}
            cpu = round(100.0 * ticks[label] / self.clock_ticks / elapsed, 1) if elapsed > 0 else None
            out.append((cache.gauge("edgewatch_process_watch_running", watch), running[label]))
            out.append((cache.gauge("edgewatch_process_watch_cpu_percent", watch, 1), cpu))
            out.append((cache.gauge("edgewatch_process_watch_resident_bytes", watch), rss[label]))
        return out

    def _uptime(self) -> float:
        try:
            return float(read_text(self.proc_root / "uptime").split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0

    def _processes(self) -> list[tuple[int, _Proc, str | None]]:
        out = []
        with os.scandir(self.proc_root) as entries:
            for entry in entries:
                if not entry.name.isdigit():
                    continue
                try:
                    proc = parse_stat(read_text(Path(entry.path, "stat")))
                    cmdline = None
                    if self._needs_cmdline:
                        cmdline = read_text(Path(entry.path, "cmdline")).replace("\0", " ").strip()
                except (OSError, ValueError, IndexError):
                    continue  # gone between listing and reading, or not a process directory
                out.append((int(entry.name), proc, cmdline))
        return out

    @staticmethod
    def _matches(watch: _Watch, proc: _Proc, cmdline: str | None) -> bool:
        if watch.regex is None:
            return proc.comm == watch.comm
        return bool(cmdline) and watch.regex.search(cmdline or "") is not None
