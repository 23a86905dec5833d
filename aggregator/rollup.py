"""Rollup algebra: per-bucket aggregates of a series and how they merge.

An ``Agg`` holds what one bucket of one series keeps: count, min, max, sum and the last value with its
timestamp. Merging is associative and commutative (``sum`` up to float rounding), so a bucket can be
built from any split of its samples, and a coarser tier from a finer one (``rebucket``). How a
tier's chunk stores them is in ``chunks``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial, reduce
from itertools import groupby, islice, repeat
from operator import add, ge, itemgetter, lt, mod, mul, sub, truediv

from edgewatch.protocol import Value


@dataclass(slots=True)
class Agg:
    """The aggregate of one bucket: ``count`` finite samples, their min, max and sum, the last one."""

    count: int
    min: float
    max: float
    sum: float
    last: float
    last_ts: int  # ms


def merge(a: Agg, b: Agg) -> Agg:
    """One bucket of both; ``last`` is the later one (on a tie, the larger value)."""
    later = b.last_ts > a.last_ts or (b.last_ts == a.last_ts and b.last > a.last)
    return Agg(
        a.count + b.count,
        a.min if a.min <= b.min else b.min,
        a.max if a.max >= b.max else b.max,
        a.sum + b.sum,
        b.last if later else a.last,
        b.last_ts if later else a.last_ts,
    )


def _copy(a: Agg) -> Agg:
    return Agg(a.count, a.min, a.max, a.sum, a.last, a.last_ts)


def rollup(timestamps: Sequence[int], values: Sequence[Value], res_ms: int) -> dict[int, Agg]:
    """Bucket start (``ts - ts % res_ms``) -> aggregate of the finite values in it.

    Gaps, NaN and infinities are left out; values become floats (-0.0 becomes 0.0).
    """
    if res_ms <= 0:
        raise ValueError(f"the bucket width must be positive, not {res_ms}")
    if len(timestamps) != len(values):
        raise ValueError(f"{len(values)} values for {len(timestamps)} timestamps")
    out: dict[int, Agg] = {}
    isfinite = math.isfinite
    for ts, v in zip(timestamps, values):
        if v is None or not isfinite(v):
            continue
        x = float(v) + 0.0
        b = ts - ts % res_ms
        agg = out.get(b)
        if agg is None:
            out[b] = Agg(1, x, x, x, x, ts)
            continue
        agg.count += 1
        if x < agg.min:
            agg.min = x
        elif x > agg.max:
            agg.max = x
        agg.sum += x
        if ts > agg.last_ts or (ts == agg.last_ts and x > agg.last):
            agg.last = x
            agg.last_ts = ts
    return out


def rates(timestamps: Sequence[int], values: Sequence[Value]) -> tuple[list[int], list[float]]:
    """A counter's per-second rate at each sample that follows a sample (not a gap) of the counter.

    A decrease is a reset: the increase is then the new value. Gaps, NaN and infinities break the
    chain, and so does a timestamp that is not later than the one before.
    """
    if len(timestamps) != len(values):
        raise ValueError(f"{len(values)} values for {len(timestamps)} timestamps")
    out_ts: list[int] = []
    out: list[float] = []
    prev_t = 0
    prev: int | float | None = None
    isfinite = math.isfinite
    for t, v in zip(timestamps, values):
        if v is None or not isfinite(v):
            prev = None
            continue
        if prev is not None and t > prev_t:
            inc = v - prev if v >= prev else v
            out_ts.append(t)
            out.append(inc * 1000 / (t - prev_t))
        prev_t, prev = t, v
    return out_ts, out


class BlockRollup:
    """``rollup`` (and ``rates`` then ``rollup``) of many series over the same increasing
    timestamps, as one block holds them: the buckets are found once, and a series without a gap or
    a value that is not finite (a counter: nor a reset) is rolled up with C loops over its buckets.
    The answers are those of ``rollup`` and ``rates``, to the bit (a test compares them)."""

    def __init__(self, timestamps: Sequence[int], res_ms: int) -> None:
        if res_ms <= 0:
            raise ValueError(f"the bucket width must be positive, not {res_ms}")
        self.timestamps = timestamps
        self.res_ms = res_ms
        self.increasing = all(map(lt, timestamps, islice(timestamps, 1, None)))
        self._plans: dict[int, tuple[list[int], list[slice], list[int], list[int]]] = {}

    def _plan(self, skip: int) -> tuple[list[int], list[slice], list[int], list[int]]:
        """Bucket starts, slices, counts and last timestamps of the timestamps after the first ``skip``."""
        plan = self._plans.get(skip)
        if plan is None:
            ts = self.timestamps[skip:]
            starts, slices, counts, lasts = [], [], [], []
            a = 0
            for start, group in groupby(map(sub, ts, map(mod, ts, repeat(self.res_ms)))):
                b = a + len(list(group))
                starts.append(start)
                slices.append(slice(a, b))
                counts.append(b - a)
                lasts.append(ts[b - 1])
                a = b
            plan = self._plans[skip] = (starts, slices, counts, lasts)
        return plan

    def gauge(self, values: Sequence[Value]) -> dict[int, Agg]:
        if not (self.increasing and _steady(values)):
            return rollup(self.timestamps, values, self.res_ms)
        return self._buckets(list(map(add, map(float, values), repeat(0.0))), 0)  # type: ignore[arg-type]

    def counter(self, values: Sequence[Value]) -> dict[int, Agg]:
        """The buckets of a counter's per-second rates."""
        later = islice(values, 1, None)
        if self.increasing and _steady(values) and all(map(ge, later, values)):  # type: ignore[arg-type]
            ts = self.timestamps
            incs = map(sub, islice(values, 1, None), values)
            per_s = list(map(truediv, map(mul, incs, repeat(1000)), map(sub, islice(ts, 1, None), ts)))
            if all(map(math.isfinite, per_s)):  # (a rate may overflow)
                return self._buckets(list(map(add, per_s, repeat(0.0))), 1)
        rt, rv = rates(self.timestamps, values)
        return rollup(rt, list(rv), self.res_ms)

    def _buckets(self, xs: list[float], skip: int) -> dict[int, Agg]:
        starts, slices, counts, lasts = self._plan(skip)
        parts = list(map(xs.__getitem__, slices))
        aggs = map(Agg, counts, map(min, parts), map(max, parts), map(_sum, parts), map(_last, parts), lasts)
        return dict(zip(starts, aggs))


def _steady(values: Sequence[Value]) -> bool:
    """No gap, and every value finite (as ``rollup`` keeps them)."""
    if None in values:
        return False
    try:
        return all(map(math.isfinite, values))  # type: ignore[arg-type]
    except OverflowError:  # an int too large for a float
        return False


_sum = partial(reduce, add)  # in order, as ``rollup`` adds (``sum`` may not, from Python 3.12)
_last = itemgetter(-1)


def merge_maps(a: Mapping[int, Agg], b: Mapping[int, Agg]) -> dict[int, Agg]:
    """Both bucket maps, merging the buckets they share (new ``Agg`` objects throughout)."""
    out = {k: _copy(v) for k, v in a.items()}
    for k, v in b.items():
        old = out.get(k)
        out[k] = _copy(v) if old is None else merge(old, v)
    return out


def rebucket(buckets: Mapping[int, Agg], res_ms: int) -> dict[int, Agg]:
    """Finer buckets merged into buckets of ``res_ms`` (a multiple of their width), in time order."""
    if res_ms <= 0:
        raise ValueError(f"the bucket width must be positive, not {res_ms}")
    out: dict[int, Agg] = {}
    for k in sorted(buckets):
        b = k - k % res_ms
        old = out.get(b)
        out[b] = _copy(buckets[k]) if old is None else merge(old, buckets[k])
    return out
