"""Summaries, trends and usage patterns: hand-computed examples, timezones and properties."""

from __future__ import annotations

import datetime
import math
import time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edgewatch.aggregator.analysis import (
    DAY_NAMES,
    HOUR_MS,
    STABLE_PCT,
    Point,
    patterns,
    summary,
    trend,
)

BERLIN = ZoneInfo("Europe/Berlin")
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, a Monday


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Milliseconds since the epoch of a UTC date and time."""
    return int(datetime.datetime(year, month, day, hour, minute, tzinfo=datetime.UTC).timestamp() * 1000)


def line(values: list[float], count: int = 1, start: int = T0) -> list[Point]:
    """Hourly points whose min, avg and max are the given values."""
    return [(start + i * HOUR_MS, v, v, v, count) for i, v in enumerate(values)]


# --- summary -------------------------------------------------------------------------------------


def test_summary_weights_the_average_by_sample_count() -> None:
    points: list[Point] = [(0, 1.0, 2.0, 3.0, 1), (60_000, 0.0, 5.0, 9.0, 3), (120_000, None, None, None, 0)]
    assert summary(points) == {
        "avg": 4.25,  # (2 * 1 + 5 * 3) / 4, not (2 + 5) / 2
        "min": 0.0,
        "max": 9.0,
        "current": 5.0,  # the last point has no data
        "first_ts": 0,
        "last_ts": 60_000,
        "samples": 4,
    }


def test_summary_of_nothing_is_none_everywhere() -> None:
    empty = {"avg": None, "min": None, "max": None, "current": None, "first_ts": None, "last_ts": None}
    assert summary([]) == {**empty, "samples": 0}
    assert summary([(0, None, None, None, 0), (1, None, None, None, 0)]) == {**empty, "samples": 0}


def test_summary_ignores_non_finite_points_and_takes_current_from_the_latest_timestamp() -> None:
    points: list[Point] = [
        (300, 7.0, 7.0, 7.0, 1),
        (100, 1.0, 1.0, 1.0, 1),
        (400, math.nan, math.nan, 1.0, 2),
    ]
    result = summary(points)
    assert result["current"] == 7.0  # unsorted input: ts 300 is the latest with a finite value
    assert (result["first_ts"], result["last_ts"], result["samples"], result["avg"]) == (100, 300, 2, 4.0)


def test_a_missing_or_non_finite_min_or_max_falls_back_to_the_avg() -> None:
    points: list[Point] = [(0, math.nan, 5.0, None, 1), (1, 4.0, 6.0, math.inf, 1)]
    assert (summary(points)["min"], summary(points)["max"]) == (4.0, 6.0)


# --- trend ---------------------------------------------------------------------------------------


def test_a_line_rising_30_percent_is_up_and_strong() -> None:
    result = trend(line([100, 110, 120, 130]))
    assert result["direction"] == "up"
    assert result["strength"] == "strong"
    assert result["basis"] == "mean"
    assert result["slope_per_hour"] == pytest.approx(10.0)
    assert result["change"] == pytest.approx(30.0)
    assert result["change_pct"] == pytest.approx(100 * 30 / 115)  # 26.1 % of the mean
    assert (result["start"], result["end"]) == (pytest.approx(100.0), pytest.approx(130.0))
    assert result["r2"] == pytest.approx(1.0)
    assert result["points"] == 4


def test_a_15_percent_fall_is_down_and_moderate() -> None:
    result = trend(line([100, 95, 90, 85]))
    assert (result["direction"], result["strength"]) == ("down", "moderate")
    assert result["change"] == pytest.approx(-15.0)
    assert result["change_pct"] == pytest.approx(-100 * 15 / 92.5)  # -16.2 %


def test_a_5_percent_rise_is_up_and_weak() -> None:
    result = trend(line([100, 101, 102, 103, 104, 105]))
    assert (result["direction"], result["strength"]) == ("up", "weak")


def test_flat_with_noise_is_stable() -> None:
    noise = [0.3, -0.2, 0.1, -0.4, 0.2, 0.0, -0.1, 0.4, -0.3, 0.1]
    result = trend(line([50 + n for n in noise * 3]))
    assert (result["direction"], result["strength"]) == ("stable", "weak")
    assert abs(result["change_pct"]) < STABLE_PCT
    assert result["r2"] < 0.1  # the line explains almost none of the noise


def test_trend_weights_points_by_sample_count() -> None:
    # x = 0, 1, 2 h; y = 0, 0, 3; weights 2, 1, 1: mean x 0.75, mean y 0.75,
    # Sxx = 2 * 0.5625 + 0.0625 + 1.5625 = 2.75, Sxy = 2 * 0.5625 - 0.1875 + 2.8125 = 3.75.
    points: list[Point] = [
        (T0, 0.0, 0.0, 0.0, 2),
        (T0 + HOUR_MS, 0.0, 0.0, 0.0, 1),
        (T0 + 2 * HOUR_MS, 3, 3, 3, 1),
    ]
    result = trend(points)
    assert result["slope_per_hour"] == pytest.approx(3.75 / 2.75)  # unweighted it would be 1.5
    assert result["change"] == pytest.approx(2 * 3.75 / 2.75)
    assert result["change_pct"] == pytest.approx(100 * (2 * 3.75 / 2.75) / 0.75)
    assert result["r2"] == pytest.approx(3.75**2 / (2.75 * 6.75))  # Syy = 2 * 0.5625 + 0.5625 + 5.0625


def test_a_mean_near_zero_measures_change_against_the_range() -> None:
    result = trend(line([-10, -5, 0, 5, 10]))
    assert result["basis"] == "range"
    assert result["change"] == pytest.approx(20.0)
    assert result["change_pct"] == pytest.approx(100.0)
    assert (result["direction"], result["strength"]) == ("up", "strong")


def test_all_zero_is_stable_with_no_change() -> None:
    result = trend(line([0, 0, 0, 0]))
    assert (result["direction"], result["change"], result["change_pct"], result["basis"]) == (
        "stable",
        0.0,
        0.0,
        "range",
    )


def test_too_few_points_make_the_trend_unknown() -> None:
    gaps: list[Point] = [(T0 + 5 * HOUR_MS, None, None, None, 0), (T0 + 6 * HOUR_MS, None, None, None, 0)]
    for points in ([], line([1, 2]), line([1, 2]) + gaps, [(T0, 1.0, 1.0, 1.0, 1)] * 5):
        result = trend(points)
        assert result["direction"] == "unknown"
        assert result["change"] is None
        assert result["slope_per_hour"] is None
    assert trend(line([1, 2]) + gaps)["points"] == 2


# --- patterns ------------------------------------------------------------------------------------


def test_2330_utc_is_hour_0_of_the_next_day_in_berlin_winter_time() -> None:
    ts = ms(2024, 1, 15, 23, 30)  # a Monday in UTC, 00:30 on Tuesday in Berlin (UTC+1)
    result = patterns([(ts, 1.0, 2.0, 3.0, 4)], BERLIN)
    assert [h["hour"] for h in result["hours"] if h["samples"]] == [0]
    assert [d["name"] for d in result["days"] if d["samples"]] == ["Tuesday"]
    assert result["hours"][0] == {"hour": 0, "avg": 2.0, "min": 1.0, "max": 3.0, "samples": 4}
    assert (result["peak_hour"], result["quiet_hour"], result["busiest_day"]) == (0, 0, 1)
    assert result["timezone"] == "Europe/Berlin"


def test_summer_time_and_the_switch_between_them() -> None:
    points: list[Point] = [
        (ms(2024, 7, 15, 22, 30), 1, 1, 1, 1),  # 00:30 CEST
        (ms(2024, 3, 31, 0, 30), 2, 2, 2, 1),  # 01:30 CET, half an hour before the switch
        (ms(2024, 3, 31, 1, 30), 3, 3, 3, 1),  # 03:30 CEST, half an hour after it
    ]
    hours = patterns(points, BERLIN)["hours"]
    assert {h["hour"]: h["avg"] for h in hours if h["samples"]} == {0: 1.0, 1: 2.0, 3: 3.0}


def test_a_timezone_with_a_quarter_hour_offset() -> None:
    result = patterns([(ms(2024, 1, 15, 18, 15), 1, 1, 1, 1)], ZoneInfo("Asia/Kathmandu"))  # UTC+5:45
    assert (result["peak_hour"], result["busiest_day"]) == (0, 1)
    utc = patterns([(ms(2024, 1, 15, 18, 15), 1, 1, 1, 1)], datetime.UTC)
    assert (utc["peak_hour"], utc["busiest_day"], utc["timezone"]) == (18, 0, "UTC")


def test_a_week_of_hourly_points_shows_the_daily_cycle_and_the_busy_day() -> None:
    points: list[Point] = []
    for i in range(4 * 7 * 24):  # four weeks, Monday 00:00 UTC first
        hour, day = i % 24, (i // 24) % 7
        value = 10.0 + (50.0 if 9 <= hour < 17 else 0.0) + (20.0 if day == 2 else 0.0) + hour / 100
        points.append((T0 + i * HOUR_MS, value - 1, value, value + 1, 60))
    result = patterns(points, datetime.UTC)
    assert result["peak_hour"] == 16
    assert result["quiet_hour"] == 0
    assert DAY_NAMES[result["busiest_day"]] == "Wednesday"
    assert all(h["samples"] == 4 * 7 * 60 for h in result["hours"])
    assert all(d["samples"] == 4 * 24 * 60 for d in result["days"])
    assert result["hours"][3]["avg"] == pytest.approx(10.03 + 20 / 7)
    assert (result["hours"][3]["min"], result["hours"][3]["max"]) == (
        pytest.approx(9.03),
        pytest.approx(31.03),
    )


def test_patterns_without_data() -> None:
    result = patterns([(T0, None, None, None, 0)], BERLIN)
    assert (result["peak_hour"], result["quiet_hour"], result["busiest_day"]) == (None, None, None)
    assert len(result["hours"]) == 24
    assert [d["name"] for d in result["days"]] == list(DAY_NAMES)
    assert result["days"][0] == {
        "day": 0,
        "name": "Monday",
        "avg": None,
        "min": None,
        "max": None,
        "samples": 0,
    }


ZONES = ["Europe/Berlin", "America/St_Johns", "Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Apia"]


@given(
    ts=st.integers(ms(1900, 1, 1), ms(2100, 1, 1)),
    zone=st.sampled_from(ZONES),
    nearby=st.lists(st.integers(-3 * HOUR_MS, 3 * HOUR_MS), max_size=5),
)
def test_every_point_lands_in_its_local_hour_and_weekday(ts: int, zone: str, nearby: list[int]) -> None:
    tz = ZoneInfo(zone)
    stamps = [ts, *(ts + d for d in nearby)]  # several in one call, so the offset cache is shared
    result = patterns([(t, 1.0, 1.0, 1.0, 1) for t in stamps], tz)
    for t in stamps:
        local = datetime.datetime.fromtimestamp(t / 1000, tz)
        assert result["hours"][local.hour]["samples"] >= stamps.count(t)
        assert result["days"][local.weekday()]["samples"] >= stamps.count(t)
    expected_hours = sorted({datetime.datetime.fromtimestamp(t / 1000, tz).hour for t in stamps})
    assert [h["hour"] for h in result["hours"] if h["samples"]] == expected_hours


# --- properties ----------------------------------------------------------------------------------

values = st.floats(-1e9, 1e9, allow_nan=False)


@st.composite
def series(draw: st.DrawFn, min_size: int = 0) -> list[Point]:
    """Points in time order, some of them gaps, each with min <= avg <= max."""
    points: list[Point] = []
    ts = draw(st.integers(0, 2_000_000_000_000))
    for _ in range(draw(st.integers(min_size, 40))):
        ts += draw(st.integers(1, 10 * HOUR_MS))
        count = draw(st.integers(0, 100))
        if count == 0:
            points.append((ts, None, None, None, 0))
        else:
            lo, avg, hi = sorted(draw(st.tuples(values, values, values)))
            points.append((ts, lo, avg, hi, count))
    return points


@given(series())
def test_summary_avg_lies_between_min_and_max(points: list[Point]) -> None:
    result = summary(points)
    if result["samples"]:
        assert result["min"] <= result["avg"] <= result["max"]
        assert result["min"] <= result["current"] <= result["max"]
    else:
        assert result["avg"] is result["min"] is result["max"] is None


@given(series(), values)
def test_the_trend_of_a_constant_is_stable_with_no_change(points: list[Point], value: float) -> None:
    flat = [(ts, value, value, value, count) if count else p for p in points for ts, *_, count in [p]]
    result = trend(flat)
    if result["direction"] != "unknown":
        assert (result["direction"], result["change"], result["change_pct"], result["slope_per_hour"]) == (
            "stable",
            0.0,
            0.0,
            0.0,
        )
        assert result["r2"] == 1.0


@given(series(min_size=3))
def test_mirroring_a_series_in_time_flips_its_trend(points: list[Point]) -> None:
    result = trend(points)
    end = points[-1][0]
    mirrored = trend([(end - ts, lo, avg, hi, count) for ts, lo, avg, hi, count in reversed(points)])
    assert mirrored["points"] == result["points"]
    if result["direction"] == "unknown":
        assert mirrored["direction"] == "unknown"
        return
    assert mirrored["change"] == pytest.approx(-result["change"], rel=1e-6, abs=1e-6)
    assume(abs(abs(result["change_pct"]) - STABLE_PCT) > 1e-6)  # rounding may fall either side
    flip = {"up": "down", "down": "up", "stable": "stable"}
    assert mirrored["direction"] == flip[result["direction"]]
    assert mirrored["r2"] == pytest.approx(result["r2"], abs=1e-6)


@given(series(min_size=3))
def test_a_point_of_n_samples_counts_as_n_points_of_one(points: list[Point]) -> None:
    spread = [(ts, lo, avg, hi, 1) for ts, lo, avg, hi, count in points for _ in range(count)]
    scale = max((abs(p[2]) for p in spread if p[2] is not None), default=0.0)
    a, b = trend(points), trend(spread)
    if a["direction"] != "unknown":  # (b has as many points or more, so it may know a trend a does not)
        assert a["direction"] == b["direction"] or abs(abs(a["change_pct"]) - STABLE_PCT) < 1e-6
        assert b["slope_per_hour"] == pytest.approx(a["slope_per_hour"], rel=1e-6, abs=1e-9 * scale)
    if spread:
        assert summary(spread)["avg"] == pytest.approx(summary(points)["avg"], rel=1e-9, abs=1e-12 * scale)
    else:
        assert summary(points)["avg"] is None


# --- speed ---------------------------------------------------------------------------------------


def test_a_year_of_hourly_points_takes_milliseconds() -> None:
    points: list[Point] = []
    for i in range(8760):
        value = 40 + 30 * math.sin(i * 2 * math.pi / 24) + i / 1000
        points.append((T0 + i * HOUR_MS, value - 5, value, value + 5, 360))
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        summary(points)
        trend(points)
        patterns(points, BERLIN)
        best = min(best, time.perf_counter() - started)
    assert best < 0.5, f"summary + trend + patterns of 8760 points took {best * 1000:.1f} ms"
