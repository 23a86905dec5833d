"""The engine's windows give what the reference reducers give, however long the kept samples are."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from edgewatch.aggregator.alertwindow import COMPACT_AT, Window
from edgewatch.aggregator.reducers import REDUCERS, reduce

T0 = 1_764_000_000_000
values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-(10**12), 10**12),
)


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@given(
    steps=st.lists(st.integers(1, 120_000), min_size=0, max_size=80),
    column=st.lists(values, min_size=80, max_size=80),
    window_s=st.sampled_from([10.0, 60.0, 300.0, 3600.0, 21600.0]),
    now_back=st.integers(0, 600_000),
    drop=st.integers(0, 2_000_000),
    baseline=st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), max_size=8),
)
def test_window_values_equal_the_reference_reducers(
    steps: list[int],
    column: list[float | int | None],
    window_s: float,
    now_back: int,
    drop: int,
    baseline: list[float | None],
) -> None:
    stamps = [T0 + sum(steps[: i + 1]) for i in range(len(steps))]
    samples = list(zip(stamps, column))
    w = Window()
    w.extend(stamps, column)
    now = (stamps[-1] if stamps else T0) - now_back
    oldest = (stamps[0] if stamps else T0) + drop
    w.drop_before(oldest)
    kept = [(t, v) for t, v in samples if t >= oldest]
    for reducer in REDUCERS:
        want = reduce(reducer, kept, now, window_s, predict_in_s=86400.0, baseline=baseline)
        got = w.value(reducer, now, window_s, predict_in_s=86400.0, baseline=baseline)
        assert close(got, want), (reducer, got, want)


def test_older_samples_are_back_log_and_the_front_is_compacted() -> None:
    w = Window()
    w.extend([T0 + 10, T0 + 20], [1.0, 2.0])
    w.extend([T0 + 15, T0 + 20, T0 + 30], [9.0, 9.0, 3.0])  # only the newer one is taken
    assert list(w.ts) == [T0 + 10, T0 + 20, T0 + 30]
    many = [T0 + 100 + i for i in range(3 * COMPACT_AT)]
    w.extend(many, [1.0] * len(many))
    w.drop_before(many[2 * COMPACT_AT])
    assert w.head == 0  # rewritten: the arrays hold only what is kept
    assert len(w) == COMPACT_AT
    assert w.newest == many[-1]


def test_values_near_the_float_limit_give_an_answer_not_an_error() -> None:
    big = 1.7e308
    w = Window()
    w.extend([T0, T0 + 10_000, T0 + 20_000], [big, big, -big])
    now = T0 + 20_000
    assert w.value("avg", now, 60) == reduce("avg", list(zip(w.ts, w.vs)), now, 60)
    assert math.isclose(w.value("avg", now, 60) or 0.0, big / 3)
    assert w.value("predict", now, 60, predict_in_s=3600) is None  # no line to speak of
    assert w.value("max", now, 60) == big


def test_a_long_lived_window_holds_at_most_twice_what_it_keeps() -> None:
    w = Window()
    keep_ms = 360_000  # a 5-minute rule and its minute, at 10 s
    for k in range(3 * 8640):  # three days of 10 s samples
        t = T0 + k * 10_000
        w.extend([t], [float(k)])
        w.drop_before(t - keep_ms)
        assert len(w.ts) <= 2 * len(w) + COMPACT_AT
    assert len(w) == 37  # from t - keep_ms on, both ends included
