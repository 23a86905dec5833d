"""CSV and JSON export of series, streamed: neither format builds the whole document in memory.

CSV (RFC 4180 through the ``csv`` module, lines end in CRLF) has one row per point under the header
``host,name,labels,timestamp,time_iso,min,avg,max,count``. ``labels`` is ``k=v;k2=v2`` sorted by key
(a ``\\``, ``;`` or ``=`` inside a key or value is escaped with a backslash; ``parse_labels`` undoes
it), ``timestamp`` is in ms and ``time_iso`` the same instant in ISO 8601 UTC with milliseconds.
``None`` is an empty cell; floats are written as ``repr`` writes them, so ``float(cell)`` gives back
the exact value, NaN and ±inf included (``nan``, ``inf``, ``-inf``).

JSON is ``{"series": [{"host", "name", "labels", "kind", "tier", "points": [[ts, min, avg, max,
count], ...]}, ...]}``. JSON has no NaN or infinity, so those values are written as ``null`` (the
same as a missing value); every finite float is written exactly (``repr``), so ``json.loads`` gives
back the same float.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from .analysis import Point

CSV_HEADER = ("host", "name", "labels", "timestamp", "time_iso", "min", "avg", "max", "count")
JSON_CHUNK_POINTS = 1024
"""to_json yields one string per this many points (and one per series header)."""
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MS = datetime.timedelta(milliseconds=1)
_ESCAPE = str.maketrans({"\\": "\\\\", ";": "\\;", "=": "\\="})


@dataclass(frozen=True, slots=True)
class ExportSeries:
    """One series to export: its identity and its points (``analysis.Point`` tuples)."""

    host: str
    name: str
    labels: dict[str, str]
    kind: str
    tier: str
    points: Sequence[Point]


def format_labels(labels: dict[str, str]) -> str:
    """``k=v;k2=v2`` sorted by key, with ``\\``, ``;`` and ``=`` escaped by a backslash."""
    return ";".join(f"{k.translate(_ESCAPE)}={v.translate(_ESCAPE)}" for k, v in sorted(labels.items()))


def parse_labels(text: str) -> dict[str, str]:
    """The inverse of ``format_labels``."""
    labels: dict[str, str] = {}
    if not text:
        return labels
    parts: list[str] = [""]
    key: str | None = None
    escaped = False
    for char in text:
        if escaped:
            parts[-1] += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "=" and key is None:
            key, parts[-1] = parts[-1], ""
        elif char == ";":
            if key is None:
                raise ValueError(f"label {parts[-1]!r} has no '='")
            labels[key], key, parts[-1] = parts[-1], None, ""
        else:
            parts[-1] += char
    if key is None:
        raise ValueError(f"label {parts[-1]!r} has no '='")
    labels[key] = parts[-1]
    return labels


def iso_utc(ts_ms: int) -> str:
    """``2024-01-31T23:30:00.000Z`` for a timestamp in ms."""
    return (_EPOCH + ts_ms * _MS).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Line:
    """A file-like sink that collects what the csv writer wrote since the last ``take``."""

    __slots__ = ("text",)

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def take(self) -> str:
        text, self.text = self.text, ""
        return text


def to_csv(rows: Iterable[ExportSeries]) -> Iterator[str]:
    """The CSV document, one line (ending in CRLF) per item, the header first."""
    line = _Line()
    writer = csv.writer(line, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    yield line.take()
    for series in rows:
        labels = format_labels(series.labels)
        for ts, lo, avg, hi, count in series.points:
            writer.writerow((series.host, series.name, labels, ts, iso_utc(ts), lo, avg, hi, count))
            yield line.take()


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "null"
    return repr(float(value))


def _point_json(point: Point) -> str:
    ts, lo, avg, hi, count = point
    return f"[{int(ts)},{_number(lo)},{_number(avg)},{_number(hi)},{int(count)}]"


def _series_head(series: ExportSeries) -> str:
    fields = {
        "host": series.host,
        "name": series.name,
        "labels": dict(sorted(series.labels.items())),
        "kind": series.kind,
        "tier": series.tier,
    }
    return json.dumps(fields, separators=(",", ":"))[:-1] + ',"points":['


def to_json(rows: Iterable[ExportSeries]) -> Iterator[str]:
    """The JSON document in chunks: the concatenation is one valid JSON value."""
    yield '{"series":['
    for index, series in enumerate(rows):
        yield ("," if index else "") + _series_head(series)
        points = series.points
        for start in range(0, len(points), JSON_CHUNK_POINTS):
            chunk = ",".join(_point_json(p) for p in points[start : start + JSON_CHUNK_POINTS])
            yield ("," if start else "") + chunk
        yield "]}"
    yield "]}\n"
