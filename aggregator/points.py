"""Chart points from the buckets of one series held as columns: the read path's merge and rebucket.

A 24 h chart reads 1,440 buckets of the 1 m tier and answers 480 points of 3 minutes. The functions
here do on ``Columns`` (parallel sequences) what ``merge_into``, ``rebucket`` and ``agg_point`` do on
``Agg`` objects, without an object per bucket: the same additions in the same order, and min and max
picked as ``merge`` picks them, so every point comes out the same to the bit (the tests hold the two
paths against each other). Compaction keeps the ``Agg`` path: it needs ``last`` and writes buckets.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from itertools import chain, islice, pairwise, repeat
from math import isfinite, nan
from operator import mod, sub

from .chunks import Columns
from .rollup import Agg

Point = tuple[int, float | None, float | None, float | None, int]
"""``(bucket start, min, avg, max, count)``; a figure that is not finite is None."""


def _point(bucket: int, count: int, lo: float, hi: float, total: float) -> Point:
    avg = total / count if count else nan
    return (
        bucket,
        lo if isfinite(lo) else None,
        avg if isfinite(avg) else None,
        hi if isfinite(hi) else None,
        count,
    )


def agg_point(bucket: int, a: Agg) -> Point:
    """The point of one bucket."""
    return _point(bucket, a.count, a.min, a.max, a.sum)


def of_aggs(buckets: Mapping[int, Agg]) -> Columns:
    """The columns of a bucket map, in time order."""
    starts = sorted(buckets)
    aggs = [buckets[k] for k in starts]
    return Columns(
        starts, [a.count for a in aggs], [a.min for a in aggs], [a.max for a in aggs], [a.sum for a in aggs]
    )


def clip(cols: Columns, start: int, end: int) -> Columns:
    """The buckets that start in ``[start, end)``."""
    a, b = bisect_left(cols.starts, start), bisect_left(cols.starts, end)
    if a == 0 and b == len(cols.starts):
        return cols
    return Columns(cols.starts[a:b], cols.counts[a:b], cols.mins[a:b], cols.maxs[a:b], cols.sums[a:b])


def combine(parts: Sequence[Columns]) -> Columns:
    """One series' buckets from parts in the order they were read (rollup rows by time, then frames).

    A bucket in several parts is merged as ``merge_into`` merges it: the earlier part's first. Parts
    that follow each other in time (the usual case) are only joined.
    """
    filled = [p for p in parts if p.starts]
    if len(filled) <= 1:
        return filled[0] if filled else Columns([], [], [], [], [])
    if all(a.starts[-1] < b.starts[0] for a, b in pairwise(filled)):
        s, c, lo, hi, total = (list(chain.from_iterable(field)) for field in zip(*filled))
        return Columns(s, c, lo, hi, total)
    return _merged(filled)


_Row = tuple[int, float, float, float]  # count, min, max, sum


def _merged(parts: Sequence[Columns]) -> Columns:
    acc: dict[int, _Row] = {}
    for part in parts:
        for k, n, lo, hi, total in zip(*part):
            have = acc.get(k)
            acc[k] = (n, lo, hi, total) if have is None else _merge(have, (n, lo, hi, total))
    starts = sorted(acc)
    rows = [acc[k] for k in starts]
    return Columns(
        starts, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]
    )


def _merge(a: _Row, b: _Row) -> _Row:
    """``merge`` of the count, min, max and sum of two buckets."""
    return a[0] + b[0], a[1] if a[1] <= b[1] else b[1], a[2] if a[2] >= b[2] else b[2], a[3] + b[3]


def points(cols: Columns, step: int | None = None) -> list[Point]:
    """A point per bucket; with ``step`` (ms, a multiple of the buckets' width), a point per bucket of
    ``step`` merged from them in time order, as ``rebucket`` merges them."""
    if step is None:
        return list(map(_point, cols.starts, cols.counts, cols.mins, cols.maxs, cols.sums))
    if step <= 0:
        raise ValueError(f"the bucket width must be positive, not {step}")
    if not cols.starts:
        return []
    out: list[Point] = []
    k = cols.starts[0]
    b, n, lo, hi, total = k - k % step, cols.counts[0], cols.mins[0], cols.maxs[0], cols.sums[0]
    keys = map(sub, cols.starts, map(mod, cols.starts, repeat(step)))  # each bucket's bucket of step
    for kb, c, mn, mx, s in islice(zip(keys, cols.counts, cols.mins, cols.maxs, cols.sums), 1, None):
        if kb == b:
            n += c
            lo = lo if lo <= mn else mn
            hi = hi if hi >= mx else mx
            total += s
        else:
            out.append(_point(b, n, lo, hi, total))
            b, n, lo, hi, total = kb, c, mn, mx, s
    out.append(_point(b, n, lo, hi, total))
    return out
