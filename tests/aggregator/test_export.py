"""CSV and JSON export: what a spreadsheet or a script reads back is what was stored."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.aggregator.analysis import Point
from edgewatch.aggregator.export import (
    CSV_HEADER,
    JSON_CHUNK_POINTS,
    ExportSeries,
    format_labels,
    iso_utc,
    parse_labels,
    to_csv,
    to_json,
)

CPU = ExportSeries(
    host="web-1",
    name="node_cpu_seconds_total",
    labels={"mode": "idle", "cpu": "0"},
    kind="counter",
    tier="1m",
    points=[
        (1_705_361_400_123, 0.1, 1 / 3, 2.5e-308, 6),
        (1_705_361_460_000, None, None, None, 0),
        (1_705_361_520_000, math.nan, math.inf, -math.inf, 1),
    ],
)
ODD = ExportSeries(
    host='db "main", eu',
    name="app_info",
    labels={"path": "a,b;c=d\\e", "note": "two\nlines"},
    kind="gauge",
    tier="raw",
    points=[(0, -1.0, 1e16, 12345678.9, 1)],
)


def read_csv(lines: Iterator[str]) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(lines), newline="")))


def cell(value: float | None) -> float | None:
    return None if value is None else float(value)


def test_csv_has_the_header_and_one_row_per_point() -> None:
    rows = read_csv(to_csv([CPU]))
    assert rows[0] == list(CSV_HEADER)
    assert rows[0] == ["host", "name", "labels", "timestamp", "time_iso", "min", "avg", "max", "count"]
    assert rows[1] == [
        "web-1",
        "node_cpu_seconds_total",
        "cpu=0;mode=idle",  # sorted by key
        "1705361400123",
        "2024-01-15T23:30:00.123Z",
        "0.1",
        repr(1 / 3),
        "2.5e-308",
        "6",
    ]
    assert rows[2][5:] == ["", "", "", "0"]  # a gap: empty cells
    assert rows[3][5:] == ["nan", "inf", "-inf", "1"]
    assert len(rows) == 4


def test_csv_values_read_back_exactly() -> None:
    rows = read_csv(to_csv([CPU, ODD]))[1:]
    points = [*CPU.points, *ODD.points]
    assert len(rows) == len(points)
    for row, (ts, lo, avg, hi, count) in zip(rows, points):
        assert int(row[3]) == ts
        assert int(row[8]) == count
        for text, value in zip(row[5:8], (lo, avg, hi)):
            if value is None:
                assert text == ""
            elif math.isnan(value):
                assert math.isnan(float(text))
            else:
                assert float(text) == value


def test_csv_quotes_commas_quotes_and_newlines() -> None:
    text = "".join(to_csv([ODD]))
    assert '"db ""main"", eu"' in text
    row = read_csv(iter([text]))[1]
    assert row[0] == 'db "main", eu'
    assert parse_labels(row[2]) == ODD.labels
    assert row[2] == "note=two\nlines;path=a,b\\;c\\=d\\\\e"


def test_csv_streams_a_line_at_a_time() -> None:
    def series() -> Iterator[ExportSeries]:
        yield CPU
        raise AssertionError("read more than was asked for")

    lines = to_csv(series())
    assert next(lines) == "host,name,labels,timestamp,time_iso,min,avg,max,count\r\n"
    assert next(lines).startswith("web-1,node_cpu_seconds_total,cpu=0;mode=idle,1705361400123,")
    assert all(line.endswith("\r\n") and line.count("\r\n") == 1 for line in to_csv([CPU]))


def test_json_reads_back_with_non_finite_values_as_null() -> None:
    doc = json.loads("".join(to_json([CPU, ODD])))
    assert doc == {
        "series": [
            {
                "host": "web-1",
                "name": "node_cpu_seconds_total",
                "labels": {"cpu": "0", "mode": "idle"},
                "kind": "counter",
                "tier": "1m",
                "points": [
                    [1_705_361_400_123, 0.1, 1 / 3, 2.5e-308, 6],
                    [1_705_361_460_000, None, None, None, 0],
                    [1_705_361_520_000, None, None, None, 1],  # NaN and ±inf: JSON has none
                ],
            },
            {
                "host": 'db "main", eu',
                "name": "app_info",
                "labels": {"note": "two\nlines", "path": "a,b;c=d\\e"},
                "kind": "gauge",
                "tier": "raw",
                "points": [[0, -1.0, 1e16, 12345678.9, 1]],
            },
        ]
    }


def test_json_of_nothing_is_an_empty_list_of_series() -> None:
    assert json.loads("".join(to_json([]))) == {"series": []}
    empty = ExportSeries("h", "m", {}, "gauge", "raw", [])
    assert json.loads("".join(to_json([empty, empty])))["series"][1]["points"] == []


def test_a_year_of_points_is_streamed_in_bounded_chunks() -> None:
    year = [(i * 60_000, 1.0 + i, 2.0 + i, 3.0 + i, 6) for i in range(365 * 24 * 60 // 10)]
    many = ExportSeries("h", "node_load1", {}, "gauge", "1m", year)
    chunks = list(to_json([many]))
    assert len(chunks) >= len(year) // JSON_CHUNK_POINTS
    assert max(len(c) for c in chunks) < 100 * JSON_CHUNK_POINTS  # no giant string
    points = json.loads("".join(chunks))["series"][0]["points"]
    assert points == [list(p) for p in year]


labels = st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4)
floats = st.none() | st.floats()


@given(labels)
def test_labels_round_trip(value: dict[str, str]) -> None:
    assert parse_labels(format_labels(value)) == value


@given(
    host=st.text(max_size=10),
    labels=labels,
    points=st.lists(
        st.tuples(st.integers(-(10**12), 10**13), floats, floats, floats, st.integers(0, 10**6)), max_size=10
    ),
)
def test_csv_and_json_round_trip(host: str, labels: dict[str, str], points: list[Point]) -> None:
    series = ExportSeries(host, "x_total", labels, "counter", "5m", points)
    rows = read_csv(to_csv([series]))[1:]
    assert [(r[0], parse_labels(r[2])) for r in rows] == [(host, labels)] * len(points)
    for row, point in zip(rows, points):
        assert row[4] == iso_utc(point[0])
        back = (int(row[3]), *(float(c) if c else None for c in row[5:8]), int(row[8]))
        assert repr(back) == repr(point)  # repr, so that nan equals nan

    doc = json.loads("".join(to_json([series])))["series"][0]
    assert (doc["host"], doc["labels"]) == (host, labels)
    finite = [tuple(v if v is None or math.isfinite(v) else None for v in p) for p in points]
    assert [tuple(p) for p in doc["points"]] == finite


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (1_705_361_400_123, "2024-01-15T23:30:00.123Z"),
    ],
)
def test_iso_times_are_utc_with_milliseconds(ts: int, text: str) -> None:
    assert iso_utc(ts) == text


def test_parse_labels_rejects_a_label_without_a_value() -> None:
    assert parse_labels("") == {}
    with pytest.raises(ValueError, match="has no '='"):
        parse_labels("a=1;b")
