"""Memory and swap from ``/proc/meminfo``, paging counters from ``/proc/vmstat``.

Series:

- ``node_memory_<Field>_bytes`` for the fields in ``FIELDS`` (bytes, as node_exporter names them)
- ``edgewatch_memory_used_bytes`` = MemTotal − MemAvailable (what ``free`` calls used plus what
  the kernel cannot reclaim), ``edgewatch_memory_used_percent`` of MemTotal
- ``edgewatch_swap_used_bytes`` = SwapTotal − SwapFree
- ``node_vmstat_pswpin``, ``node_vmstat_pswpout``, ``node_vmstat_pgmajfault`` counters (pages and
  faults; node_exporter names them without ``_total``)

Every field in ``FIELDS`` is required (they all exist since Linux 3.14): a meminfo without one ended
early or is not a meminfo, and the collector raises instead of reporting partial numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .base import Sample, SeriesCache, read_text
from .procfs import ProcFormatError, read_meminfo

FIELDS = (
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapCached",
    "Active",
    "Inactive",
    "SwapTotal",
    "SwapFree",
    "Dirty",
    "Shmem",
    "Slab",
    "SReclaimable",
)
VMSTAT = ("pswpin", "pswpout", "pgmajfault")


class MemoryCollector:
    name = "memory"

    def __init__(
        self, proc_root: Path = Path("/proc"), *, interval: float = 0.0, cache: SeriesCache | None = None
    ) -> None:
        self.interval = interval
        self._meminfo = proc_root / "meminfo"
        self._vmstat = proc_root / "vmstat"
        self._cache = cache or SeriesCache()

    def collect(self, now: float) -> Sequence[Sample]:
        info = read_meminfo(self._meminfo)
        missing = [f for f in FIELDS if f not in info]
        if missing:
            raise ProcFormatError(self._meminfo, f"it has no {missing[0]} line (ended early?)")
        c = self._cache
        out: list[Sample] = [(c.gauge(f"node_memory_{f}_bytes"), info[f]) for f in FIELDS]
        total, used = info["MemTotal"], info["MemTotal"] - info["MemAvailable"]
        out.append((c.gauge("edgewatch_memory_used_bytes"), used))
        if total > 0:
            out.append((c.gauge("edgewatch_memory_used_percent", (), 1), round(100.0 * used / total, 1)))
        out.append((c.gauge("edgewatch_swap_used_bytes"), info["SwapTotal"] - info["SwapFree"]))
        out += self._vmstat_counters()
        return out

    def _vmstat_counters(self) -> list[Sample]:
        found: dict[str, int] = {}
        for line in read_text(self._vmstat).splitlines():
            key, _, value = line.partition(" ")
            if key in VMSTAT:
                try:
                    found[key] = int(value)
                except ValueError:
                    raise ProcFormatError(self._vmstat, f"line {line!r} is not 'name number'") from None
        c = self._cache
        # a kernel without CONFIG_VM_EVENT_COUNTERS has none of them: then there is nothing to report
        return [(c.counter(f"node_vmstat_{k}"), found[k]) for k in VMSTAT if k in found]
