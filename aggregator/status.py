"""What the aggregator knows of each host right now: last seen, interval, headline values, status.

Updated from every stored frame (on the event loop, after the commit). Status is ``down`` when the
host missed ``down_after`` push intervals (counted from its newest sample or its last push, whichever
is later: a host sending back-log after an outage is up), else ``critical`` / ``warning`` from the
headline values against the default thresholds (CPU 80 / 95 %, memory 85 / 95 %, disk 80 / 90 %),
else ``up``.
It also keeps the last hour of the headline values by minute (CPU, memory, the fullest disk and
network bytes per second), for the overview's sparklines; it starts empty at each start.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edgewatch.protocol import Batch, Series

THRESHOLDS = {"cpu": (80.0, 95.0), "memory": (85.0, 95.0), "disk": (80.0, 90.0)}
DEFAULT_INTERVAL_MS = 10_000
MINUTE_MS = 60_000
SPARK_MINUTES = 60
_RATE_NAMES = {
    "node_network_receive_bytes_total": "net_rx",
    "node_network_transmit_bytes_total": "net_tx",
}


def _role(s: Series) -> str | None:
    """The headline value a series feeds (``disk`` and the network counters are summed), if any."""
    name = s.name
    if name == "edgewatch_cpu_usage_percent":
        return "cpu" if dict(s.labels).get("cpu") == "all" else None
    if name == "edgewatch_memory_used_percent":
        return "memory"
    if name == "edgewatch_filesystem_used_percent":
        return "disk"
    if name == "node_load1":
        return "load1"
    return name if name in _RATE_NAMES else None


@dataclass
class HostState:
    name: str
    last_seen_ms: int | None = None  # the newest sample's time
    heard_ms: int | None = None  # when the host last pushed (a back-fill is old data from a live host)
    interval_ms: int | None = None
    values: dict[str, float] = field(default_factory=dict)
    counters: dict[str, tuple[int, float]] = field(default_factory=dict)  # name -> (ts, summed value)
    facts: dict[str, Any] = field(default_factory=dict)
    spark: dict[str, Spark] = field(default_factory=dict)  # headline value -> its last hour by minute
    _planned: tuple[tuple[Series, ...], list[tuple[int, str]]] | None = field(default=None, repr=False)

    @property
    def alive_ms(self) -> int | None:
        """The later of the newest sample and the last push: what "down" is measured from."""
        times = [t for t in (self.last_seen_ms, self.heard_ms) if t is not None]
        return max(times) if times else None

    def update(self, batch: Batch, now_ms: int | None = None) -> None:
        if now_ms is not None:
            self.heard_ms = now_ms
        if not batch.timestamps:
            return
        if batch.host:
            self.facts = dict(batch.host)
        last = batch.timestamps[-1]
        if len(batch.timestamps) >= 2:
            self.interval_ms = batch.timestamps[-1] - batch.timestamps[-2]
        elif self.last_seen_ms is not None and 0 < last - self.last_seen_ms < 3_600_000:
            self.interval_ms = last - self.last_seen_ms
        if self.last_seen_ms is not None and last < self.last_seen_ms:
            return  # back-log: the headline values stay those of the newest frame
        self.last_seen_ms = last
        disk = None
        sums: dict[str, float] = {}
        values = batch.values
        for j, role in self._plan(batch.series):
            v = values[j][-1]
            if v is None:
                continue
            if role == "disk":
                disk = max(disk or 0.0, float(v))
            elif role in _RATE_NAMES:
                sums[role] = sums.get(role, 0.0) + float(v)
            else:
                self.values[role] = float(v)
        if disk is not None:
            self.values["disk"] = disk
        for name, total in sums.items():
            prev = self.counters.get(name)
            if prev is not None and last > prev[0] and total >= prev[1]:
                self.values[_RATE_NAMES[name]] = (total - prev[1]) * 1000.0 / (last - prev[0])
            self.counters[name] = (last, total)
        net = [self.values[k] for k in ("net_rx", "net_tx") if k in self.values]
        for key, value in (*((k, self.values.get(k)) for k in ("cpu", "memory", "disk")), ("net", sum(net))):
            if value is not None and (key != "net" or net):
                spark = self.spark.get(key)
                if spark is None:  # (not setdefault: that would make a ring at every frame)
                    spark = self.spark[key] = Spark()
                spark.add(last, value)

    def _plan(self, series: Sequence[Series]) -> list[tuple[int, str]]:
        """Where the headline series are in a frame's series list, and what each is: a frame holds
        hundreds of series and a handful matter here, and an agent sends the same list every time."""
        key = series if type(series) is tuple else tuple(series)
        held = self._planned
        if held is not None and held[0] == key:  # compares the (shared) Series objects by identity first
            return held[1]
        plan = [(j, role) for j, s in enumerate(key) if (role := _role(s)) is not None]
        self._planned = (key, plan)
        return plan

    def status(self, now_ms: int, down_after: int) -> str:
        alive = self.alive_ms
        if alive is None:
            return "down"
        interval = self.interval_ms or DEFAULT_INTERVAL_MS
        if now_ms - alive > down_after * interval + 5_000:
            return "down"
        level = "up"
        for key, (warn, crit) in THRESHOLDS.items():
            v = self.values.get(key)
            if v is None:
                continue
            if v >= crit:
                return "critical"
            if v >= warn:
                level = "warning"
        return level

    def to_json(self, now_ms: int, down_after: int, *, spark: bool = False) -> dict[str, Any]:
        out = {
            "host": self.name,
            "status": self.status(now_ms, down_after),
            "last_seen": self.last_seen_ms,
            "interval_ms": self.interval_ms,
            "values": dict(self.values),
            "facts": self.facts,
        }
        if spark:
            out["spark"] = {k: v.minutes(now_ms) for k, v in self.spark.items()}
        return out


class Spark:
    """The last ``SPARK_MINUTES`` minutes of one headline value: the average of each minute.

    A ring of one slot a minute, its size fixed at the first sample: with thousands of hosts, four
    of these each, memory does not creep up through the first hour (dicts of minutes did, by about
    110 MB at 2,000 hosts). A sample older than the newest minute's hour is not kept."""

    __slots__ = ("averages", "counts", "newest", "sums")

    def __init__(self) -> None:
        self.newest: int | None = None  # the newest minute with a sample (its start, ms)
        self.sums = array("d", bytes(8 * SPARK_MINUTES))
        self.counts = array("q", bytes(8 * SPARK_MINUTES))
        self.averages: list[float | None] = [None] * SPARK_MINUTES  # rounded, by slot

    def add(self, ts: int, value: float) -> None:
        minute = ts - ts % MINUTE_MS
        newest = self.newest
        if newest is None or minute > newest:
            # the minutes after the newest one up to this one start empty (at most a whole hour)
            gap = SPARK_MINUTES if newest is None else min((minute - newest) // MINUTE_MS, SPARK_MINUTES)
            for k in range(gap):
                slot = (minute // MINUTE_MS - k) % SPARK_MINUTES
                self.sums[slot], self.counts[slot], self.averages[slot] = 0.0, 0, None
            self.newest = newest = minute
        elif minute <= newest - SPARK_MINUTES * MINUTE_MS:
            return  # older than the hour shown
        slot = (minute // MINUTE_MS) % SPARK_MINUTES
        self.sums[slot] += value
        self.counts[slot] += 1
        self.averages[slot] = round(self.sums[slot] / self.counts[slot], 2)

    def minutes(self, now_ms: int) -> list[float | None]:
        """One value per minute, oldest first, ending with the current minute (None: no sample).

        The overview asks for every host's at once, so this is slices of the ring, not a loop."""
        end = now_ms - now_ms % MINUTE_MS
        newest = self.newest
        if newest is None or end - newest >= SPARK_MINUTES * MINUTE_MS:
            return [None] * SPARK_MINUTES
        end = max(end, newest)  # a clock behind the samples: show the hour up to the newest minute
        first = (end // MINUTE_MS + 1) % SPARK_MINUTES  # the slot of the oldest minute shown
        out = self.averages[first:] + self.averages[:first]
        silent = (end - newest) // MINUTE_MS  # minutes since the newest sample: their slots are stale
        if silent:
            out[-silent:] = [None] * silent
        return out
