"""The read path's columns give the points the ``Agg`` path gives, to the bit."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.aggregator.chunks import Columns
from edgewatch.aggregator.compaction import merge_into
from edgewatch.aggregator.points import Point, agg_point, clip, combine, of_aggs, points
from edgewatch.aggregator.rollup import Agg, rebucket

MINUTE = 60_000
T0 = 1_764_000_000_000
# Finite floats, often ones whose sums in another order differ (0.1, 1e16), that overflow (1.7e308) or
# that tie (-0.0 and 0.0 compare equal, but are different points in JSON).
FINITE = st.sampled_from([0.0, -0.0, 0.1, 0.2, 0.3, 1.0, 1e16, -1e16, 1.7e308, -1.7e308, 5e-324]) | st.floats(
    allow_nan=False, allow_infinity=False
)
TIES = st.sampled_from([0.0, -0.0, 0.1, 0.2, 1.0])


@st.composite
def bucket_maps(draw: st.DrawFn, res: int, values: st.SearchStrategy[float]) -> dict[int, Agg]:
    """Buckets of one part (a rollup row or the frames): some of 12 buckets of ``res`` from near T0."""
    first = T0 + draw(st.integers(-2, 8)) * res
    out = {}
    for i in draw(st.sets(st.integers(0, 11), max_size=12)):
        lo, hi, total = draw(values), draw(values), draw(values)
        out[first + i * res] = Agg(draw(st.integers(1, 1 << 20)), min(lo, hi), max(lo, hi), total, lo, first)
    return out


def agg_path(parts: list[dict[int, Agg]], start: int, end: int, step: int | None) -> list[Point]:
    """What the query answered before columns: ``merge_into`` part by part, then ``rebucket``."""
    buckets: dict[int, Agg] = {}
    for part in parts:
        merge_into(buckets, {k: Agg(*vars_of(a)) for k, a in part.items()}, start, end)
    if step is not None:
        buckets = rebucket(buckets, step)
    return [agg_point(b, buckets[b]) for b in sorted(buckets)]


def vars_of(a: Agg) -> tuple[int, float, float, float, float, int]:
    return a.count, a.min, a.max, a.sum, a.last, a.last_ts


def bits(pts: list[Point]) -> list[tuple[int, bytes | None, bytes | None, bytes | None, int]]:
    """Points with each float as its bytes: -0.0 and 0.0 differ, as they do in JSON."""

    def b(x: float | None) -> bytes | None:
        return None if x is None else struct.pack("<d", x)

    return [(t, b(lo), b(avg), b(hi), n) for t, lo, avg, hi, n in pts]


def column_path(parts: list[dict[int, Agg]], start: int, end: int, step: int | None) -> list[Point]:
    return points(combine([clip(of_aggs(p), start, end) for p in parts]), step)


@given(st.data())
def test_columns_give_the_points_of_the_agg_path(data: st.DataObject) -> None:
    res = data.draw(st.sampled_from([MINUTE, 5 * MINUTE]))
    parts = data.draw(st.lists(bucket_maps(res, data.draw(st.sampled_from([FINITE, TIES]))), max_size=5))
    if data.draw(st.booleans()):  # rows that follow each other in time, as they usually do
        parts.sort(key=lambda p: min(p, default=0))
    start = T0 + data.draw(st.integers(-3, 12)) * res
    end = start + data.draw(st.integers(0, 24)) * res
    step = data.draw(st.none() | st.sampled_from([res, 3 * res, 12 * res]))
    assert bits(column_path(parts, start, end, step)) == bits(agg_path(parts, start, end, step))


def test_a_bucket_in_two_parts_is_merged_the_earlier_first() -> None:
    a = {T0: Agg(2, 1.0, 5.0, 0.1, 5.0, T0), T0 + MINUTE: Agg(1, 2.0, 2.0, 2.0, 2.0, T0)}
    b = {T0 + MINUTE: Agg(3, -1.0, 9.0, 0.2, 9.0, T0), T0 + 2 * MINUTE: Agg(1, 0.0, 0.0, 0.0, 0.0, T0)}
    merged = combine([of_aggs(a), of_aggs(b)])
    assert merged == Columns(
        [T0, T0 + MINUTE, T0 + 2 * MINUTE], [2, 4, 1], [1.0, -1.0, 0.0], [5.0, 9.0, 0.0], [0.1, 2.2, 0.0]
    )
    assert points(merged, 3 * MINUTE) == [(T0, -1.0, (0.1 + 2.2 + 0.0) / 7, 9.0, 7)]


def test_points_that_are_not_finite_are_none() -> None:
    cols = Columns([T0, T0 + MINUTE], [1, 2], [1.0, -1e308], [1.0, 1e308], [1.0, math.inf])
    assert points(cols) == [(T0, 1.0, 1.0, 1.0, 1), (T0 + MINUTE, -1e308, None, 1e308, 2)]
    assert points(Columns([], [], [], [], []), 5 * MINUTE) == []
    with pytest.raises(ValueError, match="positive"):
        points(cols, 0)
