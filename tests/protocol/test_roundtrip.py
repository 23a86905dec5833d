"""decode(encode(b, ref), ref) == b, for key frames, delta frames and the references agents keep."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.protocol import (
    Batch,
    Event,
    Kind,
    ProtocolError,
    Series,
    decode,
    encode,
    next_reference,
    reference_of,
    table,
)
from edgewatch.protocol.columns import FLOAT, to_domain
from edgewatch.protocol.stream import GAUGE, Decoder, Encoder

from .strategies import batches, reference_pairs

S_CPU = Series("node_cpu_seconds_total", {"cpu": "0", "mode": "idle"}, Kind.COUNTER, 2)
S_MEM = Series("node_memory_MemAvailable_bytes")
S_LOAD = Series("node_load1", precision=2)


def _batch(seq: int, ts: int, cpu: float, mem: int, load: float | None) -> Batch:
    return Batch(
        "web-1", 77, seq, (ts,), (S_CPU, S_MEM, S_LOAD), ((cpu,), (mem,), (load,)), {"hostname": "web-1"}
    )


@given(batches())
def test_key_frame_round_trip(batch: Batch) -> None:
    frame = encode(batch)
    assert reference_of(frame) is None
    assert decode(frame) == batch


@given(reference_pairs())
def test_delta_frame_round_trip(pair: tuple[Batch, Batch]) -> None:
    ref, batch = pair
    frame = encode(batch, ref)
    named = reference_of(frame)
    assert named is not None
    assert (named.boot_id, named.seq) == (ref.boot_id, ref.seq)
    assert decode(frame, ref) == batch


@given(reference_pairs(), st.booleans())
def test_delta_against_the_kept_reference(pair: tuple[Batch, Batch], two_samples: bool) -> None:
    """Agent and aggregator keep next_reference(...) of what was acknowledged; deltas decode against it."""
    first, batch = pair
    ref = next_reference(None, first)
    if two_samples and first.timestamps:
        ref = next_reference(next_reference(None, first), first)  # a second call is harmless
    decoded = decode(encode(batch, ref), ref)
    assert decoded == batch
    # the aggregator's shortcut for a batch that came out of decode keeps the same reference
    assert next_reference(ref, decoded, decoded=True) == next_reference(ref, decoded)


def test_a_chain_of_one_sample_frames_stays_exact_and_small() -> None:
    ref = None
    sizes = []
    mem = 8_000_000_000
    for i in range(1, 40):
        mem += 4096 * ((i * 7919) % 13 - 6)
        batch = _batch(
            i,
            1_700_000_000_000 + 10_000 * i,
            round(1000.0 + 9.87 * i, 2),
            mem,
            None if i % 9 == 0 else i / 100,
        )
        frame = encode(batch, ref)
        decoded = decode(frame, ref)
        assert decoded == batch
        sizes.append(len(frame))
        ref = next_reference(ref, decoded)
    assert sizes[0] > 100  # the key frame spells out the series definitions
    # after the first delta, a steady counter and timestamps cost no bytes at all
    assert max(sizes[2:]) <= 24, sizes


def test_precision_rounds_and_decodes_as_floats() -> None:
    s = Series("temp_celsius", precision=1)
    batch = Batch("a", 1, 1, (1, 2, 3), (s,), ((21.34, 22, -0.04),))
    decoded = decode(encode(batch))
    assert decoded.values == ((21.3, 22.0, -0.0 + 0.0),)
    assert all(type(v) is float for v in decoded.values[0])
    # the decoded form (of the last two samples) is what next_reference keeps: both sides agree on it
    assert next_reference(None, batch).values == ((22.0, 0.0),)
    assert next_reference(None, decoded) == next_reference(None, batch)
    assert next_reference(None, decoded, decoded=True) == next_reference(None, batch)


@given(batches())
def test_as_decoded_is_what_decode_returns(batch: Batch) -> None:
    from edgewatch.protocol import as_decoded

    unrounded = Batch(
        batch.agent_id,
        batch.boot_id,
        batch.seq,
        batch.timestamps,
        batch.series,
        [[v * 1.000001 if isinstance(v, float) else v for v in col] for col in batch.values],
        batch.host,
        batch.events,
    )
    assert decode(encode(unrounded)) == as_decoded(unrounded)


def test_the_kept_reference_is_the_same_on_both_sides_whatever_the_column_holds() -> None:
    s = Series("mixed", precision=1)
    batch = Batch("a", 1, 1, (1, 2, 3), (s,), ((math.inf, 22, 0.04),))  # ints and inf: sent raw
    assert next_reference(None, decode(encode(batch))) == next_reference(None, batch)


def test_an_events_only_batch_keeps_the_samples_of_the_reference() -> None:
    first = _batch(1, 10_000, 1.0, 4096, 0.5)
    events = Batch(
        "web-1", 77, 2, host={"hostname": "web-1"}, events=(Event(11_000, "service", {"unit": "x"}),)
    )
    kept = next_reference(next_reference(None, first), events)
    assert (kept.seq, kept.timestamps, kept.series) == (2, first.timestamps, first.series)
    later = _batch(3, 20_000, 2.0, 8192, 0.75)
    assert decode(encode(later, kept), kept) == later


def test_non_finite_values_survive_in_a_precision_series() -> None:
    s = Series("ratio", precision=3)
    batch = Batch("a", 1, 1, (1, 2, 3), (s,), ((0.5, math.nan, -math.inf),))
    decoded = decode(encode(batch))
    assert decoded == batch


def test_counters_may_reset() -> None:
    c = Series("requests_total", kind=Kind.COUNTER)
    batch = Batch("a", 1, 1, (10, 20, 30, 40), (c,), ((1000, 2000, 3, 1003),))
    assert decode(encode(batch)) == batch


def test_extreme_integers_wrap_exactly() -> None:
    c = Series("x", kind=Kind.COUNTER)
    lo, hi = -(1 << 63), (1 << 63) - 1
    batch = Batch("a", 1, 1, (lo, 0, hi), (c,), ((hi, lo, hi),))
    assert decode(encode(batch)) == batch


def test_series_added_and_removed_between_reference_and_batch() -> None:
    a, b, c, d = (Series(n) for n in "abcd")
    ref = Batch("h", 5, 10, (100,), (a, b, c), ((1,), (2,), (3,)))
    batch = Batch("h", 5, 11, (200,), (c, d, a), ((4,), (5,), (6,)))
    assert decode(encode(batch, ref), ref) == batch


def test_encode_rejects_what_the_format_cannot_carry() -> None:
    s = Series("x")
    bad = [
        Batch("a", 1, 1, (2, 1), (s,), ((1, 2),)),  # timestamps go backwards
        Batch("a", 1, 1, (1,), (s, s), ((1,), (2,))),  # a series twice
        Batch("a", 1, 1, (1,), (s,), ((1, 2),)),  # a column of the wrong length
        Batch("a", 1, 1, (1,), (s,), ((True,),)),  # a bool is not a sample
        Batch("a", 1, 1, (1,), (s,), ((1 << 64,),)),  # outside int64
        Batch("a", -1, 1, (1,), (), ()),  # boot id is unsigned
    ]
    for batch in bad:
        with pytest.raises(ProtocolError, match=r"\w+ \w+"):  # a sentence saying what is wrong
            encode(batch)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("",), "metric name"),
        (("x" * 300,), "metric name"),
        (("x", {"": "v"}), "label name"),
        (("x", {"a": 1}), "must be a string"),
        (("x", [("a", "1"), ("a", "2")]), "twice"),
        (("x", {f"l{i}": "v" for i in range(40)}), "over the cap"),
        (("x", {}, 7), "kind"),
        (("x", {}, Kind.GAUGE, 99), "precision"),
        (("x", {}, Kind.GAUGE, 1.5), "precision"),
    ],
)
def test_a_series_that_cannot_be_sent_cannot_be_made(args: tuple[object, ...], match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        Series(*args)  # type: ignore[arg-type]


def test_delta_needs_same_agent_and_older_reference() -> None:
    ref = _batch(5, 1000, 1.0, 1, 1.0)
    later = _batch(6, 2000, 2.0, 2, 2.0)
    other_boot = Batch("web-1", 78, 6, (2000,), later.series, later.values)
    for batch, reference in ((later, later), (other_boot, ref), (ref, later)):
        with pytest.raises(ProtocolError, match="reference"):
            encode(batch, reference)


@given(reference_pairs(), st.booleans())
def test_single_sample_fast_path_makes_the_same_bytes(pair: tuple[Batch, Batch], kept: bool) -> None:
    ref, batch = pair
    if len(batch.timestamps) != 1:
        batch = Batch(
            batch.agent_id,
            batch.boot_id,
            batch.seq,
            (batch.timestamps[-1] if batch.timestamps else 1,),
            batch.series,
            tuple((c[-1] if c else None,) for c in batch.values),
            batch.host,
        )
    if kept:
        ref = next_reference(None, ref)
    fast = encode(batch, ref)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(table, "SINGLE_SAMPLE_FAST_PATH", False)
        slow = encode(batch, ref)
        assert decode(fast, ref) == batch
    assert fast == slow
    assert decode(fast, ref) == batch


_HISTORY_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-(2.0**50), max_value=2.0**50).map(lambda v: v / 10 ** (abs(int(v)) % 16)),
    st.sampled_from([2.0**49, -(2.0**49), 2.0**50 - 0.4, 2.0**50 + 0.5, 0.5, -0.5, 1.5, -0.0, 1e-300]),
)


@given(
    st.sampled_from([None, *range(16)]),
    st.sampled_from([table.INT, table.FLOAT]),
    st.one_of(st.none(), st.tuples(_HISTORY_VALUES, _HISTORY_VALUES), st.lists(_HISTORY_VALUES, max_size=3)),
)
def test_the_decoders_history_shortcut_equals_history_of(
    precision: int | None, mode: int, column: tuple[object, ...] | list[object] | None
) -> None:
    """``table._history`` reads two-value reference columns without ``history_of``: the same answer
    for every value, also at the edges of ``scaled`` (NaN, infinities, near 2**50, booleans)."""
    assert table._history(mode, precision, column) == table.history_of(mode, precision, column)  # type: ignore[arg-type]


_EDGES = [
    None, True, 0, 7, 0.0, -0.0, 0.5, -2.5, 12.34, 1e-300, math.nan, math.inf, -math.inf,
    2.0**49, -(2.0**49), 2.0**49 + 0.5, 2.0**50 - 0.5, 2.0**50, 2.0**50 + 0.5, -(2.0**50) - 0.5, 2.0**63,
]  # fmt: skip


def test_the_history_shortcut_at_the_edges_of_scaled() -> None:
    for precision in (None, 0, 1, 2, 15):
        for a in _EDGES:
            for b in _EDGES:
                got = table._history(table.INT, precision, (b, a))
                assert got == table.history_of(table.INT, precision, (b, a)), (precision, a, b)


@pytest.mark.parametrize("fast", [True, False])
def test_one_sample_columns_of_every_kind_decode_in_place(fast: bool) -> None:
    """INT runs around a raw, a float and a gap column, and a column that is both a gap and a float
    (only a hostile frame says so: the gap wins), the same on both paths."""
    series = [Series(name) for name in "abcdef"]
    enc = Encoder()
    enc.int_slot(5, None, None, GAUGE)  # a
    enc.float_slot(to_domain(FLOAT, None, 2.5), None, None)  # c
    enc.int_slot(7, None, None, GAUGE)  # e
    enc.int_slot(-1, None, None, GAUGE)  # f
    dec = Decoder(enc.stream(), 4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(table, "SINGLE_SAMPLE_FAST_PATH", fast)
        values = table.decode_columns(
            dec, series, [None] * 6, 1, floats={1, 2}, raws={3: [9.5]}, gaps={1: [True], 4: [False]}
        )
    dec.finish()
    assert values == [(5,), (None,), (2.5,), (9.5,), (7,), (-1,)]
