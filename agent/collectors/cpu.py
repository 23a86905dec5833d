"""CPU time and utilisation from ``/proc/stat``, load averages from ``/proc/loadavg``.

Series (node_exporter names where it has the metric):

- ``node_cpu_seconds_total{cpu,mode}`` counter, per core, modes user nice system idle iowait irq
  softirq steal (guest time is already inside user and nice, as in node_exporter)
- ``node_context_switches_total``, ``node_intr_total``, ``node_forks_total`` counters
- ``node_procs_running``, ``node_procs_blocked``, ``node_cpu_count`` gauges
- ``edgewatch_cpu_usage_percent{cpu}`` per core and ``{cpu="all"}``: busy share of the time since
  the previous reading (busy = everything but idle and iowait, as psutil and top count it)
- ``edgewatch_cpu_iowait_percent``, ``edgewatch_cpu_steal_percent``: the same, whole machine
- ``node_load1``, ``node_load5``, ``node_load15``

Utilisation needs two readings, so the first call reports none. A field that went backwards (the
kernel's iowait accounting can, on idle NO_HZ cores) counts as no time spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgewatch.protocol import Series

from .base import Sample, SeriesCache, read_text
from .procfs import ProcFormatError

MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_IDLE, _IOWAIT, _STEAL = 3, 4, 7
# the /proc/stat lines after the cpu lines; a file without them ended early
_TOTALS = ("intr", "ctxt", "btime", "processes", "procs_running", "procs_blocked")

Ticks = tuple[int, ...]


def parse_stat(text: str, path: Path | str) -> tuple[dict[str, Ticks], dict[str, int]]:
    """``/proc/stat`` as ({"all" | "0" | "1"...: ticks per mode}, {"ctxt" | "intr" | ...: value})."""
    cpus: dict[str, Ticks] = {}
    totals: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        try:
            if key.startswith("cpu"):
                fields = rest.split()
                if len(fields) < len(MODES):
                    raise ValueError(f"{len(fields)} columns, not at least {len(MODES)}")
                cpus["all" if key == "cpu" else str(int(key[3:]))] = tuple(map(int, fields[: len(MODES)]))
            elif key in _TOTALS:
                totals[key] = int(rest.split(None, 1)[0])  # intr: the total comes first, then per irq
        except (ValueError, IndexError) as exc:
            raise ProcFormatError(path, f"line {line[:80]!r}: {exc}") from None
    missing = [k for k in _TOTALS if k not in totals]
    if "all" not in cpus or missing:
        raise ProcFormatError(path, f"it ends early (no {'cpu' if 'all' not in cpus else missing[0]} line)")
    return cpus, totals


def utilisation(previous: Ticks, current: Ticks) -> tuple[float, float, float] | None:
    """(busy %, iowait %, steal %) of the ticks between two readings; ``None`` if none passed."""
    spent = [c - p if c > p else 0 for c, p in zip(current, previous)]
    total = sum(spent)
    if total <= 0:
        return None
    busy = total - spent[_IDLE] - spent[_IOWAIT]
    return 100.0 * busy / total, 100.0 * spent[_IOWAIT] / total, 100.0 * spent[_STEAL] / total


class CpuCollector:
    name = "cpu"

    def __init__(
        self,
        proc_root: Path = Path("/proc"),
        *,
        interval: float = 0.0,
        clock_ticks: int = 100,
        cache: SeriesCache | None = None,
    ) -> None:
        self.interval = interval
        self._stat = proc_root / "stat"
        self._loadavg = proc_root / "loadavg"
        self._hz = float(clock_ticks)  # USER_HZ: /proc/stat counts in 1/100 s on every Linux arch
        self._cache = cache or SeriesCache()
        self._previous: dict[str, Ticks] = {}
        self._mode_series: dict[str, tuple[Series, ...]] = {}  # cpu -> one series per mode

    def _modes(self, cpu: str) -> tuple[Series, ...]:
        series = self._mode_series.get(cpu)
        if series is None:
            counter = self._cache.counter
            series = tuple(counter("node_cpu_seconds_total", (("cpu", cpu), ("mode", m)), 2) for m in MODES)
            self._mode_series[cpu] = series
        return series

    def collect(self, now: float) -> Sequence[Sample]:
        cpus, totals = parse_stat(read_text(self._stat), self._stat)
        c = self._cache
        hz = self._hz
        out: list[Sample] = []
        for cpu, ticks in cpus.items():
            if cpu != "all":
                out.extend(zip(self._modes(cpu), [t / hz for t in ticks]))
        out += [
            (c.counter("node_context_switches_total"), totals["ctxt"]),
            (c.counter("node_intr_total"), totals["intr"]),
            (c.counter("node_forks_total"), totals["processes"]),
            (c.gauge("node_procs_running"), totals["procs_running"]),
            (c.gauge("node_procs_blocked"), totals["procs_blocked"]),
            (c.gauge("node_cpu_count"), len(cpus) - 1),
        ]
        previous, self._previous = self._previous, cpus
        for cpu, ticks in cpus.items():
            before = previous.get(cpu)
            shares = utilisation(before, ticks) if before is not None else None
            if shares is None:
                continue
            out.append((c.gauge("edgewatch_cpu_usage_percent", (("cpu", cpu),), 1), round(shares[0], 1)))
            if cpu == "all":
                out.append((c.gauge("edgewatch_cpu_iowait_percent", (), 1), round(shares[1], 1)))
                out.append((c.gauge("edgewatch_cpu_steal_percent", (), 1), round(shares[2], 1)))
        out += self._load()
        return out

    def _load(self) -> list[Sample]:
        fields = read_text(self._loadavg).split()
        try:
            loads = [float(v) for v in fields[:3]]
            if len(loads) < 3:
                raise ValueError
        except ValueError:
            raise ProcFormatError(
                self._loadavg, f"{' '.join(fields)!r} does not start with 3 numbers"
            ) from None
        c = self._cache
        return [(c.gauge(f"node_load{n}", (), 2), v) for n, v in zip((1, 5, 15), loads)]
