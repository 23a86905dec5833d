"""Reducers of alert rules: pure functions from raw samples to one number, or ``None``.

A sample is ``(timestamp ms, value)``. Values that are ``None``, NaN or ±inf are left out, and samples
need not be sorted. Every reducer returns ``None`` when there is not enough data to say anything:
no sample at all, or for ``rate`` and ``predict`` fewer than two samples at distinct times, or for
``zscore`` fewer than ``MIN_BASELINE`` baseline values or a baseline without spread.

``reduce`` is what the rule engine calls: it keeps the samples of the window ``(now - window, now]``
and applies the named reducer. Time is always an argument; nothing here reads the clock.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import mul, sub, truediv

Sample = tuple[int, float | None]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
MIN_BASELINE = 3
"""``zscore`` needs at least this many baseline values (days with data)."""

REDUCERS = ("last", "avg", "min", "max", "rate", "predict", "zscore")


def clean(samples: Iterable[Sample]) -> list[tuple[int, float]]:
    """The samples with a finite value, sorted by time."""
    return sorted((t, float(v)) for t, v in samples if v is not None and math.isfinite(v))


def in_window(samples: Iterable[Sample], now_ms: int, window_s: float) -> list[tuple[int, float]]:
    """The clean samples with ``now - window < ts <= now``, sorted by time."""
    start = now_ms - round(window_s * 1000)
    return [(t, v) for t, v in clean(samples) if start < t <= now_ms]


def last(samples: Sequence[Sample]) -> float | None:
    """The value of the newest sample."""
    points = clean(samples)
    return points[-1][1] if points else None


def mean(values: Sequence[float]) -> float | None:
    """The mean of finite values, exact as ``fsum``; also for values near the float limit."""
    if not values:
        return None
    try:
        return math.fsum(values) / len(values)
    except OverflowError:  # the sum leaves the float range: the mean does not
        n = len(values)
        return math.fsum(v / n for v in values)


def avg(samples: Sequence[Sample]) -> float | None:
    """The mean of the values (each sample weighs the same)."""
    return mean([v for _, v in clean(samples)])


def minimum(samples: Sequence[Sample]) -> float | None:
    """The smallest value."""
    values = [v for _, v in clean(samples)]
    return min(values) if values else None


def maximum(samples: Sequence[Sample]) -> float | None:
    """The largest value."""
    values = [v for _, v in clean(samples)]
    return max(values) if values else None


def rate(samples: Sequence[Sample]) -> float | None:
    """Per-second increase of a counter from its first to its last sample.

    A value below the one before is a counter reset: the counter restarted from 0, so the increase
    of that step is the new value itself. No extrapolation to the window's edges (unlike PromQL).
    """
    points = clean(samples)
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return None
    increase = 0.0
    for (_, before), (_, after) in itertools.pairwise(points):
        increase += after - before if after >= before else after
    return increase / ((points[-1][0] - points[0][0]) / 1000)


def predict(samples: Sequence[Sample], now_ms: int, ahead_s: float) -> float | None:
    """The least-squares line through the samples, evaluated at ``now + ahead_s``."""
    points = clean(samples)
    return fit_at([t for t, _ in points], [v for _, v in points], now_ms, ahead_s)


def fit_at(ts: Sequence[int], ys: Sequence[float], now_ms: int, ahead_s: float) -> float | None:
    """The least-squares line through ``(ts, ys)`` (sorted, finite) at ``now + ahead_s``; ``None``
    for fewer than two times, or when the fit leaves the float range."""
    if len(ts) < 2:
        return None
    # seconds relative to now: small, well conditioned (the element-wise steps in C: a six-hour
    # window of 10 s samples is refitted every minute on arrival)
    xs = list(map(truediv, map(sub, ts, repeat(now_ms)), repeat(1000)))
    mean_x, mean_y = math.fsum(xs) / len(xs), mean(ys)
    if mean_y is None:
        return None
    try:
        dx = list(map(sub, xs, repeat(mean_x)))
        sxx = math.fsum(map(mul, dx, dx))
        if sxx == 0:
            return None
        slope = math.fsum(map(mul, dx, map(sub, ys, repeat(mean_y)))) / sxx
    except (OverflowError, ValueError):  # values near the float limit: no line to speak of
        return None
    value = mean_y + slope * (ahead_s - mean_x)
    return value if math.isfinite(value) else None


def zscore(value: float | None, baseline: Iterable[float | None]) -> float | None:
    """``(value - mean) / stdev`` of the baseline values (sample standard deviation).

    ``None`` when ``value`` is missing, when fewer than ``MIN_BASELINE`` baseline values are finite,
    or when they are all equal (no spread to measure against).
    """
    values = [float(v) for v in baseline if v is not None and math.isfinite(v)]
    if value is None or not math.isfinite(value) or len(values) < MIN_BASELINE:
        return None
    spread = statistics.stdev(values)
    if spread == 0:
        return None
    return (value - statistics.fmean(values)) / spread


def baseline_hours(now_ms: int, days: int) -> list[tuple[int, int]]:
    """``[start, end)`` ms of the UTC hour holding ``now`` on each of the ``days`` previous days.

    The engine averages each range (the 1 h rollup tier has it at once) and passes the averages to
    ``reduce(..., baseline=...)``; a day without data is ``None``.
    """
    hour = now_ms - now_ms % HOUR_MS
    return [(hour - d * DAY_MS, hour - d * DAY_MS + HOUR_MS) for d in range(1, days + 1)]


def intervals_silent(last_seen_ms: int | None, now_ms: int, interval_s: float) -> float | None:
    """How many push intervals have passed since a host was last heard from (absence rules)."""
    if last_seen_ms is None or interval_s <= 0:
        return None
    return max(0.0, (now_ms - last_seen_ms) / (interval_s * 1000))


_SIMPLE: dict[str, Callable[[Sequence[Sample]], float | None]] = {
    "last": last,
    "avg": avg,
    "min": minimum,
    "max": maximum,
    "rate": rate,
}


def reduce(
    reducer: str,
    samples: Iterable[Sample],
    now_ms: int,
    window_s: float,
    *,
    predict_in_s: float = 0.0,
    baseline: Sequence[float | None] = (),
) -> float | None:
    """The named reducer over the samples of ``(now - window, now]``.

    ``predict`` extrapolates to ``now + predict_in_s``; ``zscore`` compares the window's average with
    ``baseline`` (one value per previous day, see ``baseline_hours``).
    """
    window = in_window(samples, now_ms, window_s)
    simple = _SIMPLE.get(reducer)
    if simple is not None:
        return simple(window)
    if reducer == "predict":
        return predict(window, now_ms, predict_in_s)
    if reducer == "zscore":
        return zscore(avg(window), baseline)
    raise ValueError(f"reducer {reducer!r} is unknown; use one of {', '.join(REDUCERS)}")


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` for rules with ``divide_by``; ``None`` when either is missing or 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator
