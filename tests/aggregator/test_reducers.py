"""Reducers of alert rules: hand-computed examples, edges of the window, and a few properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.aggregator.reducers import (
    DAY_MS,
    HOUR_MS,
    avg,
    baseline_hours,
    intervals_silent,
    last,
    maximum,
    minimum,
    predict,
    rate,
    ratio,
    reduce,
    zscore,
)

T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z


def every_10s(values: list[float | None], start: int = T0) -> list[tuple[int, float | None]]:
    return [(start + i * 10_000, v) for i, v in enumerate(values)]


def test_last_is_the_newest_sample_even_unsorted() -> None:
    assert last([(T0 + 1000, 1.0), (T0 + 3000, 3.0), (T0 + 2000, 2.0)]) == 3.0


def test_gaps_nan_and_inf_are_left_out() -> None:
    samples = every_10s([1.0, None, 2.0, math.nan, 3.0, math.inf, -math.inf])
    assert avg(samples) == 2.0
    assert minimum(samples) == 1.0
    assert maximum(samples) == 3.0
    assert last(samples) == 3.0


@pytest.mark.parametrize("reducer", [last, avg, minimum, maximum, rate])
def test_no_sample_is_no_value(reducer: object) -> None:
    assert callable(reducer)
    assert reducer([]) is None
    assert reducer([(T0, None), (T0 + 1, math.nan)]) is None


def test_rate_of_a_steady_counter() -> None:
    assert rate(every_10s([0, 10, 20, 30])) == 1.0


def test_rate_counts_a_reset_as_a_restart_from_zero() -> None:
    # 100 -> 110 (+10), reset to 5 (+5), 5 -> 15 (+10): 25 over 30 s
    assert rate(every_10s([100, 110, 5, 15])) == pytest.approx(25 / 30)


def test_rate_needs_two_samples_at_different_times() -> None:
    assert rate(every_10s([5])) is None
    assert rate([(T0, 1.0), (T0, 2.0)]) is None


def test_predict_follows_an_exact_line() -> None:
    # 100, 90, 80 at now-20 s, now-10 s, now: -1 per second; 60 s ahead: 20
    samples = [(T0 - 20_000, 100.0), (T0 - 10_000, 90.0), (T0, 80.0)]
    assert predict(samples, T0, 60) == pytest.approx(20.0)


def test_predict_is_the_least_squares_fit() -> None:
    # x = -2, -1, 0 s; y = 1, 3, 2: mean x -1, mean y 2, sxx 2, sxy 1, slope 0.5; at +2 s: 2 + 0.5 * 3
    samples = [(T0 - 2000, 1.0), (T0 - 1000, 3.0), (T0, 2.0)]
    assert predict(samples, T0, 2) == pytest.approx(3.5)


def test_predict_needs_two_distinct_times() -> None:
    assert predict([(T0, 1.0)], T0, 60) is None
    assert predict([(T0, 1.0), (T0, 5.0)], T0, 60) is None


def test_zscore_against_the_sample_standard_deviation() -> None:
    baseline = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]  # mean 5, sample stdev sqrt(32 / 7)
    assert zscore(10.0, baseline) == pytest.approx(5 / math.sqrt(32 / 7))
    assert zscore(5.0, baseline) == 0.0


def test_zscore_needs_enough_spread_and_days() -> None:
    assert zscore(10.0, [1.0, 2.0]) is None  # too few days
    assert zscore(10.0, [1.0, None, 2.0, math.nan]) is None  # still too few
    assert zscore(10.0, [3.0, 3.0, 3.0]) is None  # no spread
    assert zscore(None, [1.0, 2.0, 3.0]) is None


def test_reduce_keeps_the_half_open_window() -> None:
    samples = [(T0 - 300_000, 1000.0), (T0 - 299_999, 1.0), (T0, 3.0), (T0 + 1, 1000.0)]
    assert reduce("max", samples, T0, 300) == 3.0
    assert reduce("avg", samples, T0, 300) == 2.0
    assert reduce("last", [], T0, 300) is None


def test_reduce_predict_and_zscore() -> None:
    samples = [(T0 - 20_000, 100.0), (T0 - 10_000, 90.0), (T0, 80.0)]
    assert reduce("predict", samples, T0, 60, predict_in_s=80) == pytest.approx(0.0, abs=1e-9)
    # window average 90 against days of 80, 85, 90, 95, 100: mean 90, z 0
    assert reduce("zscore", samples, T0, 60, baseline=[80, 85, 90, 95, 100]) == pytest.approx(0.0)


def test_reduce_refuses_an_unknown_reducer() -> None:
    with pytest.raises(ValueError, match="median"):
        reduce("median", [], T0, 60)


def test_baseline_hours_are_the_same_utc_hour_on_previous_days() -> None:
    now = T0 + 90 * 60_000  # 17:30 UTC
    hour = T0 + HOUR_MS  # 17:00 UTC
    assert baseline_hours(now, 2) == [
        (hour - DAY_MS, hour - DAY_MS + HOUR_MS),
        (hour - 2 * DAY_MS, hour - DAY_MS - DAY_MS + HOUR_MS),
    ]


def test_intervals_silent_and_ratio() -> None:
    assert intervals_silent(T0, T0 + 35_000, 10) == 3.5
    assert intervals_silent(T0 + 5_000, T0, 10) == 0.0  # a clock ahead of ours is not negative silence
    assert intervals_silent(None, T0, 10) is None
    assert ratio(6.0, 3.0) == 2.0
    assert ratio(6.0, 0.0) is None
    assert ratio(None, 3.0) is None


finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@given(st.lists(st.tuples(st.integers(T0 - 600_000, T0), finite), min_size=1))
def test_avg_lies_between_min_and_max(samples: list[tuple[int, float]]) -> None:
    low, mean, high = minimum(samples), avg(samples), maximum(samples)
    assert low is not None
    assert mean is not None
    assert high is not None
    assert low - 1e-6 * abs(low) <= mean <= high + 1e-6 * abs(high)


@given(st.lists(st.floats(min_value=0, max_value=1e12), min_size=2))
def test_rate_of_a_counter_is_never_negative(values: list[float]) -> None:
    value = rate(every_10s(list(values)))
    assert value is not None
    assert value >= 0


@given(
    st.floats(min_value=-1e3, max_value=1e3),
    st.floats(min_value=-1e6, max_value=1e6),
    st.lists(st.integers(0, 3600), min_size=2, unique=True),
)
def test_predict_reproduces_any_line(slope: float, intercept: float, ages: list[int]) -> None:
    samples = [(T0 - age * 1000, intercept - slope * age) for age in ages]
    got = predict(samples, T0, 600)
    assert got == pytest.approx(intercept + slope * 600, rel=1e-6, abs=1e-3)
