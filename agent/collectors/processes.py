"""Processes from ``/proc/[pid]/stat``: counts by state, threads, and the top few by CPU and memory.

Series:

- ``node_processes_state{state}``: processes per state letter, as node_exporter labels them (R
  running, S sleeping, D uninterruptible disk sleep, Z zombie, T stopped, I idle kernel thread; those
  six are always sent, rarer letters when seen)
- ``node_processes_threads``: threads of all processes; ``node_processes_pids``: processes
- ``edgewatch_process_cpu_percent{rank,pid,name,user}``: the ``top_n`` processes that used the most
  CPU since the previous scan (100 = one core; a process started since then counts all its CPU time)
  ranked "1", "2"...; none on the first scan, and processes that used no CPU are not ranked
- ``edgewatch_process_resident_bytes{rank,pid,name,user}``: the ``top_n`` largest resident sets

A process is known by (pid, start time), so a reused pid is a new process. Processes that exit
during the scan are skipped. Only the ranked processes' ``status`` files are read (for the user),
which keeps a scan at one small read per process.
"""

from __future__ import annotations

import heapq
import os
import pwd
from collections.abc import Callable, Sequence
from pathlib import Path

from .base import Sample, SeriesCache

MAX_TOP = 20
COMMON_STATES = ("R", "S", "D", "Z", "T", "I")

# (pid, name, state, cpu ticks (user + system), threads, start time in ticks, resident pages)
Proc = tuple[str, str, str, int, int, int, int]


class UserNames:
    """uid → user name from the password database, remembered: an NSS lookup (LDAP) can be slow."""

    def __init__(self, lookup: Callable[[int], str] = lambda uid: pwd.getpwuid(uid).pw_name) -> None:
        self._lookup = lookup
        self._names: dict[int, str] = {}

    def __call__(self, uid: int) -> str:
        name = self._names.get(uid)
        if name is None:
            try:
                name = self._lookup(uid)
            except KeyError:  # no such user (a container's uid): show the number
                name = str(uid)
            if len(self._names) >= 4096:
                self._names.clear()
            self._names[uid] = name
        return name


def parse_pid_stat(pid: str, data: bytes) -> Proc | None:
    """One ``/proc/[pid]/stat``, or ``None`` when it is not one (the name may hold spaces and ")")."""
    start, end = data.find(b"("), data.rfind(b")")
    rest = data[end + 2 :].split() if 0 <= start < end else []
    if len(rest) < 22:
        return None
    try:
        state = rest[0].decode("ascii")
        ticks = int(rest[11]) + int(rest[12])  # utime + stime, fields 14 and 15
        return (
            pid,
            data[start + 1 : end].decode(errors="replace"),
            state,
            ticks,
            int(rest[17]),
            int(rest[19]),
            int(rest[21]),
        )
    except (ValueError, UnicodeDecodeError):
        return None


class ProcessCollector:
    name = "processes"

    def __init__(
        self,
        proc_root: Path = Path("/proc"),
        *,
        top_n: int = 5,
        interval: float = 30.0,
        page_size: int | None = None,
        clock_ticks: int = 100,
        user_name: Callable[[int], str] | None = None,
        cache: SeriesCache | None = None,
    ) -> None:
        if not 0 <= top_n <= MAX_TOP:
            raise ValueError(f"processes: top_n is {top_n}; use a number from 0 to {MAX_TOP}")
        self.interval = interval
        self.top_n = top_n
        self._root = str(proc_root)
        self._page = page_size if page_size is not None else os.sysconf("SC_PAGE_SIZE")
        self._hz = float(clock_ticks)
        self._user_name = user_name or UserNames()
        self._cache = cache or SeriesCache()
        self._previous: tuple[float, dict[tuple[str, int], int]] | None = None  # now, (pid, start) -> ticks

    def scan(self) -> list[Proc]:
        root = self._root
        procs = []
        for pid in os.listdir(root):
            if not pid.isdigit():
                continue
            try:  # os.open and one read: a third cheaper than open(), and a stat line is < 1 kB
                fd = os.open(f"{root}/{pid}/stat", os.O_RDONLY)
                try:
                    data = os.read(fd, 4096)
                finally:
                    os.close(fd)
            except (FileNotFoundError, ProcessLookupError):  # exited since the listing
                continue
            proc = parse_pid_stat(pid, data)
            if proc is not None:
                procs.append(proc)
        return procs

    def collect(self, now: float) -> Sequence[Sample]:
        procs = self.scan()
        c = self._cache
        states = dict.fromkeys(COMMON_STATES, 0)
        threads = 0
        for p in procs:
            states[p[2]] = states.get(p[2], 0) + 1
            threads += p[4]
        out: list[Sample] = [(c.gauge("node_processes_state", (("state", s),)), n) for s, n in states.items()]
        out.append((c.gauge("node_processes_threads"), threads))
        out.append((c.gauge("node_processes_pids"), len(procs)))
        if not self.top_n:
            return out

        ticks = {(p[0], p[5]): p[3] for p in procs}
        previous, self._previous = self._previous, (now, ticks)
        if previous is not None and now > previous[0]:
            scale = 100.0 / self._hz / (now - previous[0])
            before = previous[1]
            used = [(t - before.get(key, 0), key[0]) for key, t in ticks.items()]
            busiest = heapq.nlargest(self.top_n * 2, (u for u in used if u[0] > 0))
            by_pid = {p[0]: p for p in procs}
            ranked = self._ranked([(u * scale, by_pid[pid]) for u, pid in busiest])
            out += [
                (c.gauge("edgewatch_process_cpu_percent", labels, 1), round(v, 1)) for labels, v in ranked
            ]
        largest = heapq.nlargest(self.top_n * 2, procs, key=lambda p: (p[6], p[0]))
        ranked = self._ranked([(p[6] * self._page, p) for p in largest if p[6] > 0])
        out += [(c.gauge("edgewatch_process_resident_bytes", labels), v) for labels, v in ranked]
        return out

    def _ranked(self, candidates: list[tuple[float, Proc]]) -> list[tuple[dict[str, str], float]]:
        """The first ``top_n`` candidates still running, with their labels (rank, pid, name, user)."""
        out: list[tuple[dict[str, str], float]] = []
        for value, p in candidates:
            uid = self._uid(p[0])
            if uid is None:
                continue
            labels = {"rank": str(len(out) + 1), "pid": p[0], "name": p[1], "user": self._user_name(uid)}
            out.append((labels, value))
            if len(out) == self.top_n:
                break
        return out

    def _uid(self, pid: str) -> int | None:
        """The effective uid from ``/proc/[pid]/status``; ``None`` if the process is gone."""
        try:
            with open(f"{self._root}/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"Uid:"):  # real, effective, saved, filesystem
                        return int(line.split()[2])
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            pass  # gone, or a status we cannot read: not ranked rather than ranked with a wrong user
        return None
