"""Block device I/O from ``/proc/diskstats``: whole disks and partitions.

Series, labelled ``{device}`` (node_exporter names):

- ``node_disk_reads_completed_total``, ``node_disk_writes_completed_total``
- ``node_disk_read_bytes_total``, ``node_disk_written_bytes_total`` (diskstats counts 512-byte
  sectors whatever the device's own sector size)
- ``node_disk_read_time_seconds_total``, ``node_disk_write_time_seconds_total``,
  ``node_disk_io_time_seconds_total`` (milliseconds in the file)
- ``node_disk_io_now``: requests in flight
- ``edgewatch_disk_utilisation_percent``: share of the wall time since the previous reading the
  device was busy (``%util`` of ``iostat``); none on the first reading or after a counter reset

Devices matching ``exclude`` (default: loop, ram, zram, floppy and optical drives) are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from .base import Sample, SeriesCache, read_text
from .procfs import ProcFormatError, counter_delta

DEFAULT_EXCLUDE = r"^(z?ram|loop|fd|sr)\d+$"
SECTOR = 512


class DiskCollector:
    name = "disk"

    def __init__(
        self,
        proc_root: Path = Path("/proc"),
        *,
        exclude: str = DEFAULT_EXCLUDE,
        interval: float = 0.0,
        cache: SeriesCache | None = None,
    ) -> None:
        self.interval = interval
        self._path = proc_root / "diskstats"
        self._exclude = re.compile(exclude).search
        self._cache = cache or SeriesCache()
        self._previous: tuple[float, dict[str, int]] | None = None  # (now, device -> io ms)

    def collect(self, now: float) -> Sequence[Sample]:
        c = self._cache
        out: list[Sample] = []
        io_ms: dict[str, int] = {}
        for line in read_text(self._path).splitlines():
            fields = line.split()
            if len(fields) < 14:
                raise ProcFormatError(self._path, f"line {line!r} has {len(fields)} fields, not at least 14")
            device = fields[2]
            if self._exclude(device):
                continue
            try:
                reads, _, rsect, rms, writes, _, wsect, wms, now_io, io = map(int, fields[3:13])
            except ValueError:
                raise ProcFormatError(self._path, f"line {line!r} has a field that is not a number") from None
            labels = (("device", device),)
            out += [
                (c.counter("node_disk_reads_completed_total", labels), reads),
                (c.counter("node_disk_writes_completed_total", labels), writes),
                (c.counter("node_disk_read_bytes_total", labels), rsect * SECTOR),
                (c.counter("node_disk_written_bytes_total", labels), wsect * SECTOR),
                (c.counter("node_disk_read_time_seconds_total", labels, 3), rms / 1000),
                (c.counter("node_disk_write_time_seconds_total", labels, 3), wms / 1000),
                (c.counter("node_disk_io_time_seconds_total", labels, 3), io / 1000),
                (c.gauge("node_disk_io_now", labels), now_io),
            ]
            io_ms[device] = io
        previous, self._previous = self._previous, (now, io_ms)
        if previous is not None and now > previous[0]:
            wall_ms = (now - previous[0]) * 1000.0
            for device, io in io_ms.items():
                before = previous[1].get(device)
                busy = counter_delta(before, io) if before is not None else None
                if busy is not None:
                    percent = round(min(100.0, 100.0 * busy / wall_ms), 1)
                    labels = (("device", device),)
                    out.append((c.gauge("edgewatch_disk_utilisation_percent", labels, 1), percent))
        return out
