"""Rollup algebra: every tier agrees with rolling up the raw samples; chunks keep what they hold."""

from __future__ import annotations

import math
import struct
from contextlib import suppress
from functools import reduce
from itertools import pairwise

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.aggregator import chunks as C
from edgewatch.aggregator import rollup as R
from edgewatch.aggregator.chunks import (
    ChunkCache,
    ChunkError,
    Columns,
    chunk_concat,
    chunk_replace,
    decode_chunk,
    encode_chunk,
    read_columns,
)
from edgewatch.aggregator.rollup import Agg, merge, merge_maps, rates, rebucket, rollup
from edgewatch.protocol import Value

MINUTE, FIVE, HOUR = 60_000, 300_000, 3_600_000
T0 = 1_760_000_400_000 - 1_760_000_400_000 % (6 * HOUR)
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [-0.0, math.nan, -math.nan, math.inf, -math.inf, 5e-324]
)
# Integer-valued floats and ints below 2**40: every sum of a few thousand of them is exact, so sums
# of any split of the samples agree to the bit, and the properties can ask for equality.
EXACT_VALUE = st.integers(-(1 << 40), 1 << 40) | st.integers(-(1 << 40), 1 << 40).map(float)


@st.composite
def series(
    draw: st.DrawFn, value: st.SearchStrategy[Value] = EXACT_VALUE, span: int = 3 * HOUR
) -> tuple[list[int], list[Value]]:
    """Samples of one series: increasing timestamps over a few hours, some gaps, NaN and infinities."""
    start = draw(st.integers(-(10**13), 10**13))
    ts = sorted(draw(st.sets(st.integers(start, start + span), max_size=60)))
    odd = st.none() | st.sampled_from([math.nan, math.inf, -math.inf])
    values = draw(st.lists(value | odd, min_size=len(ts), max_size=len(ts)))
    return ts, values


def split(draw: st.DrawFn, ts: list[int], values: list[Value]) -> list[tuple[list[int], list[Value]]]:
    """The samples in parts: cut at random points, or (late data) each sample in a random part."""
    if draw(st.booleans()):
        bounds = [0, *sorted(draw(st.sets(st.integers(0, len(ts)), max_size=4))), len(ts)]
        return [(ts[a:b], values[a:b]) for a, b in pairwise(bounds)]
    owner = draw(st.lists(st.integers(0, 3), min_size=len(ts), max_size=len(ts)))
    return [
        ([t for t, o in zip(ts, owner) if o == part], [v for v, o in zip(values, owner) if o == part])
        for part in range(4)
    ]


def close(a: dict[int, Agg], b: dict[int, Agg]) -> bool:
    """Equal, but for ``sum``, which float rounding lets differ in its last bits."""
    if a.keys() != b.keys():
        return False
    for k, x in a.items():
        y = b[k]
        if (x.count, x.min, x.max, x.last, x.last_ts) != (y.count, y.min, y.max, y.last, y.last_ts):
            return False
        if not math.isclose(x.sum, y.sum, rel_tol=1e-9, abs_tol=1e-6):
            return False
    return True


# --- the algebra ---------------------------------------------------------------------------------

AGGS = st.builds(
    lambda c, a, b, s, ts: Agg(c, min(a, b), max(a, b), s, a, ts),
    st.integers(1, 1000),
    EXACT_VALUE.map(float),
    EXACT_VALUE.map(float),
    EXACT_VALUE.map(float),
    st.integers(0, 10),
)


@given(AGGS, AGGS, AGGS)
def test_merge_is_associative_and_commutative(a: Agg, b: Agg, c: Agg) -> None:
    assert merge(a, b) == merge(b, a)
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


def test_merge_takes_the_later_last_and_the_larger_on_a_tie() -> None:
    a = Agg(2, 1.0, 5.0, 6.0, 5.0, 100)
    b = Agg(1, 3.0, 3.0, 3.0, 3.0, 200)
    assert merge(a, b) == merge(b, a) == Agg(3, 1.0, 5.0, 9.0, 3.0, 200)
    c = Agg(1, 4.0, 4.0, 4.0, 4.0, 200)
    assert merge(b, c).last == merge(c, b).last == 4.0


@given(st.data())
def test_merging_parts_equals_rolling_up_at_once(data: st.DataObject) -> None:
    ts, values = data.draw(series())
    parts = split(data.draw, ts, values)
    for res in (MINUTE, FIVE, HOUR):
        rolled = [rollup(t, v, res) for t, v in parts]
        assert reduce(merge_maps, rolled, {}) == rollup(ts, values, res)
        assert reduce(merge_maps, reversed(rolled), {}) == rollup(ts, values, res)


@given(st.data())
def test_merging_parts_of_any_floats_agrees_but_for_sum_rounding(data: st.DataObject) -> None:
    ts, values = data.draw(series(st.floats(-1e6, 1e6) | st.integers(-(10**6), 10**6)))
    parts = split(data.draw, ts, values)
    merged = reduce(merge_maps, (rollup(t, v, MINUTE) for t, v in parts), {})
    assert close(merged, rollup(ts, values, MINUTE))


@given(series())
def test_every_tier_agrees_with_the_raw_samples(sample: tuple[list[int], list[Value]]) -> None:
    ts, values = sample
    m1 = rollup(ts, values, MINUTE)
    m5 = rebucket(m1, FIVE)
    assert m5 == rollup(ts, values, FIVE)
    assert rebucket(m1, HOUR) == rebucket(m5, HOUR) == rollup(ts, values, HOUR)


@given(series(st.floats(-1e6, 1e6)))
def test_tiers_of_any_floats_agree_but_for_sum_rounding(sample: tuple[list[int], list[Value]]) -> None:
    ts, values = sample
    assert close(rebucket(rollup(ts, values, MINUTE), HOUR), rollup(ts, values, HOUR))


STEADY_VALUE = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(1 << 63), (1 << 63) - 1)
    | st.sampled_from([-0.0, 0.0, 5e-324])
)


@given(st.data())
def test_a_block_rollup_answers_what_rollup_and_rates_answer(data: st.DataObject) -> None:
    """Columns over shared timestamps: steady ones take the C loops (a counter only when it never
    falls), others fall back; every answer equals ``rollup`` (of ``rates``) to the bit."""
    start = data.draw(st.integers(-(10**13), 10**13))
    ts = sorted(data.draw(st.sets(st.integers(start, start + 3 * HOUR), max_size=80)))
    if data.draw(st.booleans()) and len(ts) > 1:  # not increasing: everything falls back
        ts[-1] = ts[0]
    columns = []
    for _ in range(data.draw(st.integers(1, 4))):
        value = STEADY_VALUE if data.draw(st.booleans()) else STEADY_VALUE | st.none() | st.just(math.nan)
        column = data.draw(st.lists(value, min_size=len(ts), max_size=len(ts)))
        if data.draw(st.booleans()):  # a counter that only grows
            column = sorted(column, key=lambda v: -math.inf if v is None or math.isnan(v) else float(v))
        columns.append(column)
    for res in (MINUTE, FIVE, HOUR):
        block = R.BlockRollup(ts, res)
        for column in columns:
            assert repr(block.gauge(column)) == repr(rollup(ts, column, res))  # repr: -0.0 is not 0.0
            rt, rv = rates(ts, column)
            assert repr(block.counter(column)) == repr(rollup(rt, list(rv), res))


def test_rollup_keeps_finite_values_only() -> None:
    ts = [0, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 61_000]
    values: list[Value] = [3, None, math.nan, -0.0, math.inf, 7.5, 2, -math.inf]
    buckets = rollup(ts, values, MINUTE)
    assert buckets == {0: Agg(3, 0.0, 7.5, 10.5, 7.5, 50_000), 60_000: Agg(1, 2.0, 2.0, 2.0, 2.0, 60_000)}
    assert math.copysign(1.0, buckets[0].min) == 1.0  # -0.0 became 0.0
    assert rollup([-1], [1], MINUTE) == {-MINUTE: Agg(1, 1.0, 1.0, 1.0, 1.0, -1)}
    with pytest.raises(ValueError, match="positive"):
        rollup([1], [1], 0)


def test_rates_per_second_with_resets_and_gaps() -> None:
    ts = [0, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 70_000, 70_000]
    values: list[Value] = [100, 150, 30, None, 50, 80.5, math.nan, 90, 95]
    assert rates(ts, values) == ([10_000, 20_000, 50_000], [5.0, 3.0, 3.05])
    assert rates([], []) == ([], [])


# --- chunks --------------------------------------------------------------------------------------


def agg_bits(a: Agg) -> tuple[int, bytes, int]:
    return a.count, struct.pack("<4d", a.min, a.max, a.sum, a.last), a.last_ts


def chunk_bits(chunk: dict[int, dict[int, Agg]]) -> dict[int, dict[int, tuple[int, bytes, int]]]:
    return {sid: {k: agg_bits(a) for k, a in b.items()} for sid, b in chunk.items()}


@st.composite
def chunks(draw: st.DrawFn, tidy: bool = False) -> tuple[int, int, int, dict[int, dict[int, Agg]]]:
    """Buckets of a few series in a chunk; ``tidy``: as compaction makes them (finite values, each
    ``last_ts`` in its bucket), otherwise any that a chunk can hold."""
    res = draw(st.sampled_from([1, 1000, MINUTE, FIVE, HOUR]))
    n = draw(st.integers(1, 400))
    t0 = draw(st.integers(-(10**15), 10**15))
    out: dict[int, dict[int, Agg]] = {}
    for sid in draw(st.sets(st.integers(-(1 << 63), (1 << 63) - 1), max_size=5)):
        idx = draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=30))
        buckets = {}
        for i in idx:
            start = t0 + i * res
            offset = st.integers(0, res - 1)
            lts = start + draw(offset if tidy else offset | st.integers(-(1 << 40), 1 << 40))
            value = st.floats(allow_nan=False, allow_infinity=False) if tidy else ANY_FLOAT
            fields = draw(st.tuples(value, value, value, value))
            buckets[start] = Agg(draw(st.integers(1, (1 << 32) - 1)), *fields, lts)
        out[sid] = buckets
    return t0, res, n, out


@given(chunks())
def test_chunk_round_trip_is_exact(chunk: tuple[int, int, int, dict[int, dict[int, Agg]]]) -> None:
    t0, res, n, series_ = chunk
    data = encode_chunk(t0, res, n, series_)
    assert chunk_bits(decode_chunk(data)) == chunk_bits(series_)
    for sid in series_:
        assert chunk_bits(decode_chunk(data, {sid, 12345})) == chunk_bits({sid: series_[sid]})


@given(chunks(), st.integers(-3, 40), st.integers(0, 40))
def test_a_span_of_a_chunk_decodes_as_the_whole_does(
    chunk: tuple[int, int, int, dict[int, dict[int, Agg]]], a: int, width: int
) -> None:
    t0, res, n, series_ = chunk
    data = encode_chunk(t0, res, n, series_)
    start, end = t0 + a * res + res // 2, t0 + (a + width) * res
    whole = decode_chunk(data)
    part = {sid: {b: agg for b, agg in buckets.items() if start <= b < end} for sid, buckets in whole.items()}
    assert chunk_bits(decode_chunk(data, None, (start, end))) == chunk_bits(part)


def rows_of(
    t0: int, res: int, n: int, series_: dict[int, dict[int, Agg]], cuts: list[int], *, empty: bool = False
) -> list[bytes]:
    """The chunk's buckets as rows of consecutive spans (cut at ``cuts``/61 of it), as compaction
    writes them; a span with no bucket makes a row only if ``empty``."""
    edges = sorted({0, n, *(c * n // 61 for c in cuts)})
    rows = []
    for a, b in pairwise(edges):
        part = {
            s: {k: v for k, v in bs.items() if t0 + a * res <= k < t0 + b * res} for s, bs in series_.items()
        }
        if any(part.values()) or empty:
            rows.append(encode_chunk(t0 + a * res, res, b - a, part))
    return rows


@given(chunks(), st.lists(st.integers(1, 60), min_size=1, max_size=6), st.booleans())
def test_rows_concatenated_are_the_chunk_of_their_buckets(
    chunk: tuple[int, int, int, dict[int, dict[int, Agg]]], cuts: list[int], tail: bool
) -> None:
    """A merge of rows (each a span of the chunk, as compaction writes them) without decoding
    buckets makes the bytes that encoding all their buckets at once makes."""
    t0, res, n, series_ = chunk
    rows = rows_of(t0, res, n, series_, cuts, empty=tail)  # a row may hold no bucket of a series, or none
    assert chunk_concat(t0, res, n, rows) == encode_chunk(t0, res, n, series_)


@given(
    st.booleans().flatmap(lambda tidy: st.tuples(st.just(tidy), chunks(tidy))),
    st.lists(st.integers(1, 60), max_size=6),
    st.integers(-3, 400),
    st.integers(0, 400),
)
def test_a_span_totalled_from_fields_is_its_buckets_merged_in_time_order(
    drawn: tuple[bool, tuple[int, int, int, dict[int, dict[int, Agg]]]], cuts: list[int], a: int, width: int
) -> None:
    """``span_totals`` (the 1 h bucket from the 5 m rows) is what merging the buckets in time order
    makes, to the bit; it declines (None) only for buckets that compaction never writes."""
    tidy, (t0, res, n, series_) = drawn
    rows = rows_of(t0, res, n, series_, cuts)
    start, end = t0 + a * res, t0 + (a + width) * res
    totals = C.span_totals(rows, start, end)
    if tidy:
        assert totals is not None
    if totals is not None:
        expected = {
            sid: reduce(merge, [bs[k] for k in sorted(bs) if start <= k < end])
            for sid, bs in series_.items()
            if any(start <= k < end for k in bs)
        }
        assert {sid: agg_bits(x) for sid, x in totals.items()} == {
            sid: agg_bits(x) for sid, x in expected.items()
        }


def test_a_span_in_two_rows_or_out_of_order_is_not_totalled_from_fields() -> None:
    a = {1: {T0: Agg(1, 1.0, 1.0, 1.0, 1.0, T0)}}
    b = {1: {T0 + MINUTE: Agg(2, 2.0, 3.0, 5.0, 3.0, T0 + MINUTE + 5)}}
    first, second = encode_chunk(T0, MINUTE, 1, a), encode_chunk(T0 + MINUTE, MINUTE, 1, b)
    assert C.span_totals([first, second], T0, T0 + HOUR) == {1: Agg(3, 1.0, 3.0, 6.0, 3.0, T0 + MINUTE + 5)}
    assert C.span_totals([second], T0, T0 + MINUTE) == {}
    assert C.span_totals([second, first], T0, T0 + HOUR) is None
    assert C.span_totals([first, first], T0, T0 + HOUR) is None
    # the same bucket in two rows, each later than the one before: merged first, the sums add
    # differently (1e16 + (1 + 1), not (1e16 + 1) + 1), so the fields are not totalled
    one = Agg(1, 1.0, 1.0, 1.0, 1.0, T0 + MINUTE + 5)
    big = encode_chunk(T0, MINUTE, 2, {1: {T0: Agg(1, 0.0, 0.0, 1e16, 0.0, T0), T0 + MINUTE: one}})
    again = Agg(1, 1.0, 1.0, 1.0, 1.0, T0 + MINUTE + 9)
    late = encode_chunk(T0 + MINUTE, MINUTE, 1, {1: {T0 + MINUTE: again}})
    assert (1e16 + 1.0) + 1.0 != 1e16 + (1.0 + 1.0)
    assert C.span_totals([big, late], T0, T0 + HOUR) is None
    with pytest.raises(ChunkError):
        C.span_totals([first, second[:-3]], T0, T0 + HOUR)


def test_rows_that_share_a_bucket_or_come_out_of_order_are_not_concatenated() -> None:
    a = {1: {T0: Agg(1, 1.0, 1.0, 1.0, 1.0, T0)}}
    b = {1: {T0 + MINUTE: Agg(1, 2.0, 2.0, 2.0, 2.0, T0 + MINUTE)}}
    first, second = encode_chunk(T0, MINUTE, 1, a), encode_chunk(T0 + MINUTE, MINUTE, 1, b)
    assert chunk_concat(T0, MINUTE, 2, [first, second]) == encode_chunk(T0, MINUTE, 2, {1: {**a[1], **b[1]}})
    assert chunk_concat(T0, MINUTE, 2, [second, first]) is None
    assert chunk_concat(T0, MINUTE, 2, [first, first]) is None
    assert chunk_concat(T0, MINUTE, 1, [first, second]) is None  # a row past the chunk's end
    with pytest.raises(ChunkError):
        chunk_concat(T0, MINUTE, 2, [first, second[:-3]])


SHARED = ChunkCache.new(1 << 20)
SHARED = ChunkCache.new(1 << 20)


def reader(data: bytes, reads: list[tuple[int, int]] | None = None) -> C.ReadAt:
    """``read_columns``' view of ``data`` (each read is noted in ``reads``)."""

    def read(offset: int, length: int) -> bytes:
        if reads is not None:
            reads.append((offset, length))
        return data[offset : offset + length]

    return read


def columns_of(buckets: dict[int, Agg]) -> Columns:
    aggs = [buckets[k] for k in sorted(buckets)]
    return Columns(
        sorted(buckets),
        [a.count for a in aggs],
        [a.min for a in aggs],
        [a.max for a in aggs],
        [a.sum for a in aggs],
    )


def column_bits(read: dict[int, Columns]) -> dict[int, tuple[list[int], list[int], bytes]]:
    return {
        sid: (
            list(c.starts),
            list(c.counts),
            struct.pack(f"<{3 * len(c.starts)}d", *c.mins, *c.maxs, *c.sums),
        )
        for sid, c in read.items()
    }


@given(chunks(), st.data())
def test_reading_some_series_gives_the_buckets_that_decoding_gives(
    chunk: tuple[int, int, int, dict[int, dict[int, Agg]]], data: st.DataObject
) -> None:
    t0, res, n, series_ = chunk
    raw = encode_chunk(t0, res, n, series_)
    only = data.draw(st.sets(st.sampled_from([*series_, 7, -(1 << 63)])))
    expected = {sid: columns_of(b) for sid, b in decode_chunk(raw, only).items()}
    assert column_bits(read_columns(reader(raw), len(raw), only)) == column_bits(expected)
    for _ in range(2):  # a cache that every example shares (it holds values by their bytes)
        assert column_bits(read_columns(reader(raw), len(raw), only, SHARED)) == column_bits(expected)


def test_reading_one_series_reads_its_bytes_and_the_table_only() -> None:
    a = {T0 + i * MINUTE: Agg(i + 1, 1.0, 2.0, 3.0, 2.0, T0 + i * MINUTE) for i in range(100)}
    data = bytearray(encode_chunk(T0, MINUTE, 360, dict.fromkeys(range(1, 51), a)))
    data[-3] ^= 0xFF  # inside the zstd frame of series 50 (the last)
    reads: list[tuple[int, int]] = []
    read = read_columns(reader(bytes(data), reads), len(data), {7, 99})
    assert column_bits(read) == column_bits({7: columns_of(a)})
    assert sum(length for _, length in reads) < 25 + 24 * 50 + len(data) // 20
    with pytest.raises(ChunkError):
        read_columns(reader(bytes(data)), len(data), {50})


@given(chunks(), st.data())
def test_chunk_replace_replaces_the_range_and_keeps_the_rest(
    chunk: tuple[int, int, int, dict[int, dict[int, Agg]]], data: st.DataObject
) -> None:
    t0, res, n, old = chunk
    start = data.draw(st.integers(t0 - 3 * res, t0 + (n + 2) * res))
    end = data.draw(st.integers(start, t0 + (n + 3) * res))
    inside = [t0 + i * res for i in range(n) if start <= t0 + i * res < end]
    new: dict[int, dict[int, Agg]] = {}
    for sid in data.draw(st.sets(st.sampled_from([*old, 1, 2]), max_size=4)):
        picked = data.draw(st.sets(st.sampled_from(inside), max_size=10)) if inside else set()
        new[sid] = {k: Agg(sid % 7 + 1, 1.0, 2.0, float(k), 2.0, k) for k in picked}
    expected: dict[int, dict[int, Agg]] = {}
    for sid in old.keys() | new.keys():
        kept = {k: a for k, a in old.get(sid, {}).items() if not start <= k < end}
        if merged := {**kept, **new.get(sid, {})}:
            expected[sid] = merged
    after = decode_chunk(chunk_replace(encode_chunk(t0, res, n, old), t0, res, n, start, end, new))
    assert chunk_bits(after) == chunk_bits(expected)
    fresh = decode_chunk(chunk_replace(None, t0, res, n, start, end, new))
    assert chunk_bits(fresh) == chunk_bits({sid: b for sid, b in new.items() if b})


def test_chunk_replace_example() -> None:
    a = {T0: Agg(6, 1.0, 3.0, 12.0, 2.0, T0 + 50_000), T0 + MINUTE: Agg(6, 2.0, 2.0, 12.0, 2.0, T0 + 110_000)}
    b = {T0 + 5 * MINUTE: Agg(1, 9.0, 9.0, 9.0, 9.0, T0 + 5 * MINUTE)}
    data = encode_chunk(T0, MINUTE, 360, {1: a, 2: b})
    replaced = chunk_replace(
        data, T0, MINUTE, 360, T0 + MINUTE, T0 + 6 * MINUTE, {1: {T0 + 2 * MINUTE: a[T0]}}
    )
    assert decode_chunk(replaced) == {1: {T0: a[T0], T0 + 2 * MINUTE: a[T0]}}
    emptied = chunk_replace(replaced, T0, MINUTE, 360, T0, T0 + HOUR, {})
    assert decode_chunk(emptied) == {}
    with pytest.raises(ValueError, match="buckets"):  # a bucket outside the replaced range
        chunk_replace(data, T0, MINUTE, 360, T0, T0 + MINUTE, {1: {T0 + MINUTE: a[T0]}})
    with pytest.raises(ChunkError, match="holds"):  # a row whose chunk is of another geometry
        chunk_replace(data, T0, MINUTE, 720, T0, T0 + MINUTE, {})


@pytest.mark.parametrize(
    ("buckets", "match"),
    [
        ({T0 + 1: Agg(1, 1.0, 1.0, 1.0, 1.0, T0 + 1)}, "not all buckets"),  # not on a bucket start
        ({T0 + 360 * MINUTE: Agg(1, 1.0, 1.0, 1.0, 1.0, T0)}, "not all buckets"),  # past the chunk
        ({T0 - MINUTE: Agg(1, 1.0, 1.0, 1.0, 1.0, T0)}, "not all buckets"),  # before it
        ({T0: Agg(0, 1.0, 1.0, 1.0, 1.0, T0)}, "count 0"),  # empty buckets are not stored
        ({T0: Agg(1 << 32, 1.0, 1.0, 1.0, 1.0, T0)}, "range"),
        ({T0: Agg(1, "1", 1.0, 1.0, 1.0, T0)}, "type"),  # type: ignore[arg-type]
    ],
)
def test_encode_chunk_refuses_buckets_it_cannot_hold(buckets: dict[int, Agg], match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        encode_chunk(T0, MINUTE, 360, {1: buckets})
    assert not isinstance(info.value, ChunkError)


# --- hostile bytes -------------------------------------------------------------------------------


def decodes_or_refuses(data: bytes) -> None:
    try:
        decoded = decode_chunk(data)
    except ChunkError:
        pass
    else:
        assert all(a.count >= 1 for b in decoded.values() for a in b.values())
    reads_as_it_decodes(data)
    with suppress(ChunkError):
        chunk_replace(data, T0, MINUTE, 360, T0, T0 + HOUR, {})


def reads_as_it_decodes(data: bytes) -> None:
    """``read_columns`` refuses what ``decode_chunk`` refuses of the same series, else reads the same."""
    only = {0, 1, struct.unpack_from("<q", data, 25)[0] if len(data) >= 33 else 2}
    try:
        expected = {sid: columns_of(b) for sid, b in decode_chunk(data, only).items()}
    except ChunkError:
        for cache in (None, SHARED):
            with pytest.raises(ChunkError):
                read_columns(reader(data), len(data), only, cache)
    else:
        for cache in (None, SHARED):
            assert column_bits(read_columns(reader(data), len(data), only, cache)) == column_bits(expected)


@given(st.binary(max_size=300))
def test_random_bytes_raise_chunk_error_only(data: bytes) -> None:
    decodes_or_refuses(data)
    decodes_or_refuses(bytes((C.FORMAT,)) + data)


@given(chunks(), st.data())
def test_mutated_chunks_raise_chunk_error_only(
    chunk: tuple[int, int, int, dict[int, dict[int, Agg]]], data: st.DataObject
) -> None:
    mutated = bytearray(encode_chunk(*chunk))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(mutated) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            mutated[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del mutated[max(1, at) :]
        else:
            mutated[at:at] = data.draw(st.binary(min_size=1, max_size=9))
    decodes_or_refuses(bytes(mutated))


@given(chunks(), st.data())
def test_mutated_series_bodies_raise_chunk_error_only(
    chunk: tuple[int, int, int, dict[int, dict[int, Agg]]], data: st.DataObject
) -> None:
    """Past the zstd checksum: a well-framed series body with wrong bucket indices or counts."""
    raw = encode_chunk(*chunk)
    c = struct.unpack_from("<I", raw, 21)[0]
    if not c:
        return
    lens = struct.unpack_from(f"<{c}I", raw, 25 + 8 * c)
    start = 25 + 24 * c + sum(lens[:-1])
    body = bytearray(zstandard.ZstdDecompressor().decompress(raw[start:]))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body) - 1))
        body[at] = data.draw(st.sampled_from([0, 1, 255, body[at] ^ 1]))
    decodes_or_refuses(raw[:start] + zstandard.ZstdCompressor(write_content_size=True).compress(bytes(body)))


def test_a_one_series_read_decompresses_only_that_series() -> None:
    a = {T0: Agg(1, 1.0, 1.0, 1.0, 1.0, T0)}
    data = bytearray(encode_chunk(T0, MINUTE, 360, {1: a, 2: a}))
    data[-3] ^= 0xFF  # inside the zstd frame of series 2 (the last)
    assert decode_chunk(bytes(data), {1}) == {1: a}
    with pytest.raises(ChunkError):
        decode_chunk(bytes(data))


def test_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    a = {T0 + i * MINUTE: Agg(1, 1.0, 1.0, 1.0, 1.0, T0) for i in range(10)}
    data = encode_chunk(T0, MINUTE, 360, {1: a, 2: a})
    monkeypatch.setattr(C, "MAX_DECODED", 15 * C.BUCKET_BYTES)
    with pytest.raises(ChunkError, match="size"):
        decode_chunk(data)
    with pytest.raises(ValueError, match="smaller chunks"):
        encode_chunk(T0, MINUTE, 360, {1: a, 2: a})
    with pytest.raises(ValueError, match="out of range"):
        encode_chunk(T0, MINUTE, C.MAX_BUCKETS + 1, {})
