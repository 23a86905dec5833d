"""Custom metrics from ``*.prom`` files in a directory, as node_exporter's textfile collector reads them.

A cron job or a script writes ``name.prom.tmp`` and renames it to ``name.prom``: only names ending in
``.prom`` are read, so a file being written is never seen half-done. A malformed file is skipped
whole and counted in ``edgewatch_textfile_scrape_error``; the other files still count.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from edgewatch.agent import logs
from edgewatch.agent.promtext import PromSample, parse
from edgewatch.protocol import Kind, Series

from .base import Sample, SeriesCache, read_text

log = logs.get("edgewatch.agent.collectors.textfile")

MAX_FILE_BYTES = 4 * 1024 * 1024
_EXACT = 2**53  # floats below this magnitude hold whole numbers exactly


def number(value: float) -> int | float:
    """Whole numbers as ints (they cost less on the wire); other floats, NaN and inf unchanged."""
    if value.is_integer() and abs(value) < _EXACT:
        return int(value)
    return value


def to_samples(
    cache: SeriesCache, parsed: Iterable[PromSample], extra: dict[str, str] | None = None
) -> list[Sample]:
    """Exposition samples as agent samples, kind from the declared TYPE.

    Counters are ``TYPE counter``, the ``_bucket``, ``_count`` and ``_sum`` of histograms and
    summaries, and untyped series named ``*_total``; everything else (gauges, summary quantiles) is a
    gauge, so rollups compute rates for what only goes up.

    ``extra`` labels are added to each series; raises ``ValueError`` (``ProtocolError``) for a series
    the wire format cannot carry (too many labels, a name or value too long).
    """
    out: list[Sample] = []
    for name, labels, value, kind in parsed:
        counter = (
            kind == "counter"
            or (kind in ("histogram", "summary") and name.endswith(("_bucket", "_count", "_sum")))
            or (kind not in ("gauge", "histogram", "summary") and name.endswith("_total"))
        )
        series = cache.get(
            name, {**labels, **extra} if extra else labels, Kind.COUNTER if counter else Kind.GAUGE
        )
        out.append((series, number(value)))
    return out


class TextfileCollector:
    blocking = True  # may hang (a dead mount, a slow endpoint): the sampler gives it a thread

    def __init__(
        self,
        name: str = "textfile",
        directory: Path | str | None = None,
        *,
        interval: float = 0.0,
        max_series: int = 10_000,
        cache: SeriesCache | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        if directory is None:
            raise ValueError("textfile.directory: not set; name the directory of *.prom files")
        self.directory = Path(directory)
        self.max_series = max_series
        self.cache = cache or SeriesCache(limit=20_000)  # up to 10,000 series of their own
        self._warned: dict[str, str] = {}  # file -> the problem last logged, so it is logged once

    def collect(self, now: float) -> Sequence[Sample]:
        out: list[Sample] = []
        error = 0
        try:
            paths = sorted(p for p in self.directory.iterdir() if p.name.endswith(".prom"))
        except OSError as exc:
            paths = []
            error = 1
            self._warn(str(self.directory), f"the directory cannot be read: {exc}")
        seen: set[Series] = set()
        for path in paths:
            try:
                info = path.stat()
                if not stat.S_ISREG(info.st_mode):
                    continue
                if info.st_size > MAX_FILE_BYTES:
                    raise ValueError(f"the file is larger than {MAX_FILE_BYTES // 1024**2} MB")
                parsed = parse(read_text(path), max_series=max(0, self.max_series - len(out)))
                samples = to_samples(self.cache, parsed)
                mine: set[Series] = set()
                for series, _ in samples:
                    if series in seen or series in mine:
                        raise ValueError(f"{series.name}{dict(series.labels)} is given twice")
                    mine.add(series)
            except (OSError, ValueError) as exc:
                error = 1
                self._warn(path.name, str(exc))
                continue
            self._warned.pop(path.name, None)
            seen |= mine
            out.extend(samples)
            out.append(
                (self.cache.gauge("edgewatch_textfile_mtime_seconds", {"file": path.name}, 3), info.st_mtime)
            )
        out.append((self.cache.gauge("edgewatch_textfile_scrape_error"), error))
        return out

    def _warn(self, what: str, problem: str) -> None:
        if self._warned.get(what) != problem:
            self._warned[what] = problem
            log.warning("textfile_skipped file=%s error=%r", what, problem)
