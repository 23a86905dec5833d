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

from dataclasses import dataclass, field
from typing import Any

from edgewatch.protocol import Batch

THRESHOLDS = {"cpu": (80.0, 95.0), "memory": (85.0, 95.0), "disk": (80.0, 90.0)}
DEFAULT_INTERVAL_MS = 10_000
MINUTE_MS = 60_000
SPARK_MINUTES = 60
_RATE_NAMES = {
    "node_network_receive_bytes_total": "net_rx",
    "node_network_transmit_bytes_total": "net_tx",
}


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
        for s, col in zip(batch.series, batch.values):
            v = col[-1]
            if v is None:
                continue
            name = s.name
            if name == "edgewatch_cpu_usage_percent" and dict(s.labels).get("cpu") == "all":
                self.values["cpu"] = float(v)
            elif name == "edgewatch_memory_used_percent":
                self.values["memory"] = float(v)
            elif name == "edgewatch_filesystem_used_percent":
                disk = max(disk or 0.0, float(v))
            elif name == "node_load1":
                self.values["load1"] = float(v)
            elif name in _RATE_NAMES:
                sums[name] = sums.get(name, 0.0) + float(v)
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
                self.spark.setdefault(key, Spark()).add(last, value)

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


@dataclass
class Spark:
    """The last ``SPARK_MINUTES`` minutes of one headline value: the average of each minute."""

    sums: dict[int, tuple[float, int]] = field(default_factory=dict)  # minute start -> (sum, count)

    def add(self, ts: int, value: float) -> None:
        minute = ts - ts % MINUTE_MS
        total, count = self.sums.get(minute, (0.0, 0))
        self.sums[minute] = (total + value, count + 1)
        if len(self.sums) > SPARK_MINUTES + 5:
            for old in sorted(self.sums)[: len(self.sums) - SPARK_MINUTES]:
                del self.sums[old]

    def minutes(self, now_ms: int) -> list[float | None]:
        """One value per minute, oldest first, ending with the current minute (None: no sample)."""
        end = now_ms - now_ms % MINUTE_MS
        out: list[float | None] = []
        for k in range(SPARK_MINUTES - 1, -1, -1):
            got = self.sums.get(end - k * MINUTE_MS)
            out.append(None if got is None else round(got[0] / got[1], 2))
        return out
