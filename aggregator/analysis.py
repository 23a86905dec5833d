"""Summaries, trends and usage patterns of a series of rollup points: pure functions, no I/O.

A point is what the query layer returns per bucket: ``(timestamp ms, min, avg, max, count)``, where
``count`` is the number of raw samples behind the point; ``count == 0`` means no data (and then min,
avg and max are ``None``). Points need not be sorted. A point whose avg is ``None``, NaN or ±inf, or
whose count is 0, is left out of every result; a min or max that is ``None``, NaN or ±inf beside a
finite avg is taken to be the avg. Averages are weighted by ``count``, so a bucket that
holds 60 samples weighs 60 times one that holds a single sample.

Time and timezone are parameters; nothing here reads the clock. Every function is one or two passes
over the points (a year of 1 h points, 8,760 of them, takes a few milliseconds).
"""

from __future__ import annotations

import datetime
import math
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

Point = tuple[int, float | None, float | None, float | None, int]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
STABLE_PCT = 2.0
"""A trend whose |change_pct| is below this is "stable"."""
MODERATE_PCT = 10.0
"""|change_pct| below this is a "weak" trend; from here up to STRONG_PCT it is "moderate"."""
STRONG_PCT = 20.0
"""|change_pct| above this is a "strong" trend."""
NEAR_ZERO_MEAN = 0.01
"""The mean counts as ≈ 0 when |mean| is below this fraction of the largest |avg|; change_pct is
then relative to the range of the avgs (basis "range") instead of the mean (basis "mean")."""
MIN_TREND_POINTS = 3
"""A trend needs at least this many points with data, at two or more distinct timestamps."""
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


def _data(points: Iterable[Point]) -> list[tuple[int, float, float, float, int]]:
    """The points that carry data; a min or max that is missing or not finite falls back to avg."""
    out = []
    isfinite = math.isfinite
    for ts, low, avg, high, count in points:
        if count > 0 and avg is not None and isfinite(avg):
            lo = low if low is not None and isfinite(low) else avg
            hi = high if high is not None and isfinite(high) else avg
            out.append((ts, lo, avg, hi, count))
    return out


class _Slot:
    """Running weighted average, extremes and sample count of some points."""

    __slots__ = ("amax", "amin", "hi", "lo", "samples", "wsum")

    def __init__(self) -> None:
        self.wsum = 0.0
        self.samples = 0
        self.lo = math.inf
        self.hi = -math.inf
        self.amin = math.inf
        self.amax = -math.inf

    def add(self, lo: float, avg: float, hi: float, count: int) -> None:
        self.wsum += avg * count
        self.samples += count
        self.lo = min(self.lo, lo)
        self.hi = max(self.hi, hi)
        self.amin = min(self.amin, avg)
        self.amax = max(self.amax, avg)

    def merge(self, other: _Slot) -> None:
        self.wsum += other.wsum
        self.samples += other.samples
        self.lo = min(self.lo, other.lo)
        self.hi = max(self.hi, other.hi)
        self.amin = min(self.amin, other.amin)
        self.amax = max(self.amax, other.amax)

    def avg(self) -> float | None:
        if not self.samples:
            return None
        # The weighted mean lies between the smallest and largest avg; rounding must not push it out.
        return min(max(self.wsum / self.samples, self.amin), self.amax)

    def as_dict(self) -> dict[str, Any]:
        has = self.samples > 0
        return {
            "avg": self.avg(),
            "min": self.lo if has else None,
            "max": self.hi if has else None,
            "samples": self.samples,
        }


def summary(points: Iterable[Point]) -> dict[str, Any]:
    """avg (weighted by count), min, max, current (avg of the latest point with data), first_ts and
    last_ts (of the points with data) and samples (total count); ``None`` where there is no data."""
    slot = _Slot()
    first_ts: int | None = None
    last_ts: int | None = None
    current: float | None = None
    for ts, lo, avg, hi, count in _data(points):
        slot.add(lo, avg, hi, count)
        if first_ts is None or ts < first_ts:
            first_ts = ts
        if last_ts is None or ts >= last_ts:
            last_ts, current = ts, avg
    return {**slot.as_dict(), "current": current, "first_ts": first_ts, "last_ts": last_ts}


def _unknown(n: int) -> dict[str, Any]:
    return {
        "direction": "unknown",
        "strength": None,
        "change": None,
        "change_pct": None,
        "basis": None,
        "slope_per_hour": None,
        "r2": None,
        "start": None,
        "end": None,
        "points": n,
    }


def _classify(change: float, change_pct: float) -> tuple[str, str]:
    size = abs(change_pct)
    direction = "stable" if size < STABLE_PCT else ("up" if change > 0 else "down")
    strength = "weak" if size < MODERATE_PCT else ("moderate" if size <= STRONG_PCT else "strong")
    return direction, strength


def trend(points: Iterable[Point]) -> dict[str, Any]:
    """Least-squares line through the avgs over time, each point weighted by its count.

    Returns direction ("up", "down", "stable" or "unknown"), strength ("weak", "moderate", "strong"),
    change (fitted value at the last point minus fitted value at the first), change_pct (change as
    a percentage of |mean|, or of the range of the avgs when the mean is ≈ 0: see ``basis``),
    basis ("mean" or "range"), slope_per_hour, r2 (1.0 for a constant series, which the line fits
    exactly), start and end (the fitted values) and points (how many points with data were used).
    With fewer than MIN_TREND_POINTS points with data, or all at one timestamp, direction is
    "unknown" and every other value but ``points`` is ``None``.
    """
    ts: list[int] = []
    ys: list[float] = []
    ws: list[int] = []
    for t, _, avg, _, count in points:
        if count > 0 and avg is not None and math.isfinite(avg):
            ts.append(t)
            ys.append(avg)
            ws.append(count)
    n = len(ts)
    if n < MIN_TREND_POINTS:
        return _unknown(n)
    t0, t1 = min(ts), max(ts)
    if t0 == t1:
        return _unknown(n)
    # Hours since the first point keep the numbers small; two passes keep the sums well conditioned.
    xs = [(t - t0) / HOUR_MS for t in ts]
    total = sum(ws)
    ylo, yhi = min(ys), max(ys)
    mx = sum(map(operator.mul, xs, ws)) / total
    my = ylo if ylo == yhi else min(max(sum(map(operator.mul, ys, ws)) / total, ylo), yhi)
    sxx = sxy = syy = 0.0
    for x, y, w in zip(xs, ys, ws):
        dx = x - mx
        dy = y - my
        wdx = w * dx
        sxx += wdx * dx
        sxy += wdx * dy
        syy += w * dy * dy
    slope = sxy / sxx
    span = (t1 - t0) / HOUR_MS
    start = my + slope * (0.0 - mx)
    end = my + slope * (span - mx)
    change = slope * span
    r2 = 1.0 if syy == 0 else min(1.0, sxy * sxy / (sxx * syy))
    if abs(my) >= NEAR_ZERO_MEAN * max(abs(ylo), abs(yhi)) and my != 0:
        basis, base = "mean", abs(my)
    else:
        basis, base = "range", yhi - ylo
    change_pct = 100.0 * change / base if base else 0.0
    direction, strength = _classify(change, change_pct)
    return {
        "direction": direction,
        "strength": strength,
        "change": change,
        "change_pct": change_pct,
        "basis": basis,
        "slope_per_hour": slope,
        "r2": r2,
        "start": start,
        "end": end,
        "points": n,
    }


class _Offsets:
    """UTC offset (ms) of a timezone at a timestamp, computed once per UTC day.

    A day whose first and last millisecond have the same offset has it throughout (zones change
    their offset at most once a day), so most points cost one dictionary lookup instead of a
    datetime conversion.
    """

    def __init__(self, tz: datetime.tzinfo) -> None:
        self.tz = tz
        self.cache: dict[int, int | None] = {}

    def _at(self, ts_ms: int) -> int:
        when = datetime.datetime.fromtimestamp(ts_ms / 1000, self.tz)
        offset = when.utcoffset()
        return 0 if offset is None else offset // datetime.timedelta(milliseconds=1)

    def __call__(self, ts_ms: int) -> int:
        """The offset at ``ts_ms``; callers may look in ``cache`` (by UTC day) first."""
        day = ts_ms // DAY_MS
        if day not in self.cache:
            first = self._at(day * DAY_MS)
            self.cache[day] = first if first == self._at(day * DAY_MS + DAY_MS - 1) else None
        offset = self.cache[day]
        return self._at(ts_ms) if offset is None else offset


def _extreme(slots: Sequence[_Slot], pick: Callable[[Iterable[float]], float]) -> int | None:
    """Index of the slot whose avg ``pick`` (max or min) chooses; the first one on a tie."""
    found = [(avg, i) for i, slot in enumerate(slots) if (avg := slot.avg()) is not None]
    if not found:
        return None
    best = pick(avg for avg, _ in found)
    return next(i for avg, i in found if avg == best)


def patterns(points: Iterable[Point], tz: datetime.tzinfo) -> dict[str, Any]:
    """Usage by hour of day and day of week, in local time of ``tz``.

    A point belongs to the local hour and weekday of its timestamp (the start of its bucket).
    Returns ``hours`` (24 entries, hour 0 first) and ``days`` (7 entries, Monday first), each entry
    ``{"hour"/"day", "avg" (weighted), "min", "max", "samples"}`` (days also carry ``name``), plus
    ``peak_hour`` and ``quiet_hour`` (the hours with the highest and lowest avg), ``busiest_day``
    (the weekday with the highest avg, 0 = Monday) — ``None`` without data; the earliest on a tie —
    and ``timezone`` (``str(tz)``).
    """
    week = [_Slot() for _ in range(7 * 24)]  # one slot per (weekday, hour), merged below
    offset_of = _Offsets(tz)
    cached = offset_of.cache.get
    for ts, lo, avg, hi, count in _data(points):
        offset = cached(ts // DAY_MS)
        local = ts + (offset_of(ts) if offset is None else offset)
        week[(local // DAY_MS + _EPOCH_WEEKDAY) % 7 * 24 + local // HOUR_MS % 24].add(lo, avg, hi, count)
    hours = [_Slot() for _ in range(24)]
    days = [_Slot() for _ in range(7)]
    for index, slot in enumerate(week):
        days[index // 24].merge(slot)
        hours[index % 24].merge(slot)
    return {
        "timezone": str(tz),
        "hours": [{"hour": h, **slot.as_dict()} for h, slot in enumerate(hours)],
        "days": [{"day": d, "name": DAY_NAMES[d], **slot.as_dict()} for d, slot in enumerate(days)],
        "peak_hour": _extreme(hours, max),
        "quiet_hour": _extreme(hours, min),
        "busiest_day": _extreme(days, max),
    }
