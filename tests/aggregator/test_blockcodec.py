"""Raw sample blocks: exact round trips, merging, hostile bytes, and the size of a realistic hour."""

from __future__ import annotations

import math
import random
import struct

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.aggregator import blockcodec
from edgewatch.aggregator.blockcodec import BlockError, Value, decode_block, encode_block, merge_blocks

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [-0.0, 0.0, math.nan, -math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308]
)
T0 = 1_760_000_400_000


def bits(v: Value) -> object:
    """What must survive a round trip: the type, and for floats every bit (NaN payloads, -0.0)."""
    return (type(v), struct.pack("<d", v)) if type(v) is float else (type(v), v)


def assert_exact(original: list[Value], decoded: list[Value], precision: int | None) -> None:
    """Values come back as given; a precision column may turn all its ints into equal floats."""
    assert len(decoded) == len(original)
    ints_as_floats = {type(d) for o, d in zip(original, decoded) if type(o) is int}
    if precision is not None and ints_as_floats == {float}:
        original = [float(v) if type(v) is int else v for v in original]
    assert [bits(v) for v in decoded] == [bits(v) for v in original]


# --- strategies ----------------------------------------------------------------------------------


@st.composite
def timestamps(draw: st.DrawFn, max_size: int = 40) -> list[int]:
    n = draw(st.integers(0, max_size))
    if draw(st.booleans()):  # a steady interval with jitter, as agents send
        step = draw(st.integers(1, 60_000))
        start = draw(st.integers(-(10**15), 10**15))
        jitter = draw(st.lists(st.integers(0, max(0, step // 2 - 1)), min_size=n, max_size=n))
        return [start + i * step + j for i, j in enumerate(jitter)]
    return sorted(draw(st.sets(INT64, min_size=n, max_size=n)))


def with_gaps(draw: st.DrawFn, values: list[Value]) -> list[Value]:
    if draw(st.booleans()):
        return values
    holes = draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values)))
    return [None if h else v for v, h in zip(values, holes)]


@st.composite
def columns(draw: st.DrawFn, n: int) -> tuple[list[Value], int | None]:
    """``(values, precision)`` of one column, of one of the shapes real and hostile series take."""
    shape = draw(st.sampled_from(["ints", "counter", "floats", "decimals", "precision", "mixed", "const"]))
    p = draw(st.integers(0, 15))
    if shape == "ints":
        values: list[Value] = draw(st.lists(INT64 | st.integers(-300, 300), min_size=n, max_size=n))
    elif shape == "counter":
        start = draw(INT64)
        steps = draw(st.lists(st.integers(0, 1 << 40), min_size=n, max_size=n))
        values = [max(-(1 << 63), min((1 << 63) - 1, start + s * i)) for i, s in enumerate(steps)]
    elif shape == "floats":
        values = draw(st.lists(ANY_FLOAT, min_size=n, max_size=n))
    elif shape == "decimals":
        ks = draw(st.lists(st.integers(-(10**12), 10**12), min_size=n, max_size=n))
        q = draw(st.integers(0, 6))
        values = [k / 10**q for k in ks]
    elif shape == "precision":
        k = st.integers(-(1 << 50) + 1, (1 << 50) - 1)
        odd = ANY_FLOAT | st.integers(-(1 << 63), (1 << 63) - 1)  # not quantized: kept exactly
        value = k.map(lambda x: x / 10**p) | k.map(lambda x: x // 10**p)
        values = draw(st.lists(value | odd if draw(st.booleans()) else value, min_size=n, max_size=n))
        return with_gaps(draw, values), p
    elif shape == "mixed":
        values = draw(st.lists(INT64 | ANY_FLOAT, min_size=n, max_size=n))
    else:
        values = [draw(INT64 | ANY_FLOAT)] * n
    return with_gaps(draw, values), (p if draw(st.booleans()) and shape != "mixed" else None)


@st.composite
def blocks(draw: st.DrawFn) -> tuple[list[int], dict[int, list[Value]], dict[int, int | None]]:
    ts = draw(timestamps())
    ids = draw(st.sets(INT64, max_size=6))
    cols, precisions = {}, {}
    for sid in ids:
        cols[sid], precisions[sid] = draw(columns(len(ts)))
    return ts, cols, precisions


# --- round trips ---------------------------------------------------------------------------------


@given(blocks())
def test_round_trip_is_exact(block: tuple[list[int], dict[int, list[Value]], dict[int, int | None]]) -> None:
    ts, cols, precisions = block
    times, decoded = decode_block(encode_block(ts, cols, precisions))
    assert times == ts
    assert all(type(t) is int for t in times)
    assert list(decoded) == sorted(cols)
    for sid, col in cols.items():
        assert_exact(col, decoded[sid], precisions[sid])


@given(blocks(), st.data())
def test_only_decodes_the_asked_series(
    block: tuple[list[int], dict[int, list[Value]], dict[int, int | None]], data: st.DataObject
) -> None:
    ts, cols, precisions = block
    raw = encode_block(ts, cols, precisions)
    only = data.draw(st.sets(st.sampled_from(sorted(cols)) if cols else st.nothing()) | st.just({123456789}))
    times, decoded = decode_block(raw, only)
    assert times == ts
    assert decoded.keys() == only & cols.keys()
    full = decode_block(raw)[1]
    assert all([bits(v) for v in decoded[s]] == [bits(v) for v in full[s]] for s in decoded)


def test_precision_series_decode_to_floats_like_the_wire() -> None:
    ts = [T0, T0 + 10_000, T0 + 20_000]
    cols: dict[int, list[Value]] = {1: [1, 2, None], 2: [12.34, None, 0.5], 3: [1, 2, 3]}
    _, decoded = decode_block(encode_block(ts, cols, {1: 1, 2: 2}))
    assert decoded == {1: [1.0, 2.0, None], 2: [12.34, None, 0.5], 3: [1, 2, 3]}
    assert [type(v) for v in decoded[1]] == [float, float, type(None)]
    assert [type(v) for v in decoded[3]] == [int, int, int]


@pytest.mark.parametrize(
    "column",
    [
        [0.1, 0.2, 0.1 + 0.2],  # not short decimals: kept bit for bit
        [-0.0, 0.0, -0.0],
        [1.5, math.nan, -math.inf],
        [12.3456, 12.3, 12.31],  # more decimals than the precision says
        [2**53 + 1, 2**62, -(2**63)],
        [1, 2.345, None, 3],  # mixed, and not all quantized: ints stay ints
    ],
)
def test_values_a_precision_cannot_carry_are_kept_exactly(column: list[Value]) -> None:
    ts = [T0 + i for i in range(len(column))]
    _, decoded = decode_block(encode_block(ts, {7: column}, {7: 2}))
    assert [bits(v) for v in decoded[7]] == [bits(v) for v in column]


def test_empty_block_and_all_gaps() -> None:
    assert decode_block(encode_block([], {}, {})) == ([], {})
    assert decode_block(encode_block([], {5: []}, {5: 1})) == ([], {5: []})
    assert decode_block(encode_block([1, 2], {5: [None, None]}, {})) == ([1, 2], {5: [None, None]})


@pytest.mark.parametrize(
    ("ts", "cols", "precisions", "match"),
    [
        ([2, 1], {}, {}, "increasing"),
        ([1, 1], {}, {}, "increasing"),
        ([1.5], {}, {}, "ints"),
        ([True], {}, {}, "ints"),
        ([1 << 63], {}, {}, "64-bit"),
        ([1, 2], {1: [1]}, {}, "1 values for 2 timestamps"),
        ([1], {1: [True]}, {}, "bool"),
        ([1], {1: ["x"]}, {}, "str"),
        ([1], {1: [1 << 63]}, {}, "64-bit"),
        ([1], {1: [1]}, {1: 16}, "precision"),
        ([1], {"a": [1], 2: [2]}, {}, "series ids"),
    ],
)
def test_bad_input_is_a_value_error(ts: list, cols: dict, precisions: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match) as info:
        encode_block(ts, cols, precisions)
    assert not isinstance(info.value, BlockError)


# --- merging -------------------------------------------------------------------------------------


@st.composite
def block_values(draw: st.DrawFn) -> tuple[list[int], dict[int, list[Value]]]:
    ts = sorted(draw(st.sets(st.integers(0, 30), max_size=12)))
    ids = draw(st.sets(st.integers(1, 4), max_size=3))
    value = st.none() | st.integers(-5, 5) | st.floats(allow_nan=False)
    return ts, {sid: draw(st.lists(value, min_size=len(ts), max_size=len(ts))) for sid in ids}


@given(block_values(), block_values())
def test_merge_blocks_takes_the_union_and_b_wins(
    a: tuple[list[int], dict[int, list[Value]]], b: tuple[list[int], dict[int, list[Value]]]
) -> None:
    ts, cols = merge_blocks(a, b)
    assert ts == sorted(set(a[0]) | set(b[0]))
    assert cols.keys() == a[1].keys() | b[1].keys()
    for sid, col in cols.items():
        assert len(col) == len(ts)
        for t, v in zip(ts, col):
            va = dict(zip(a[0], a[1][sid])).get(t) if sid in a[1] else None
            vb = dict(zip(b[0], b[1][sid])).get(t) if sid in b[1] else None
            assert v == (vb if vb is not None else va)


def test_merge_blocks_example() -> None:
    a = ([10, 20, 30], {1: [1, None, 3], 2: [7, 7, 7]})
    b = ([20, 30, 40], {1: [None, 33, 44], 3: [0.5, None, 1.5]})
    assert merge_blocks(a, b) == (
        [10, 20, 30, 40],
        {1: [1, None, 33, 44], 2: [7, 7, 7, None], 3: [None, 0.5, None, 1.5]},
    )


# --- hostile bytes -------------------------------------------------------------------------------


def body_of(block: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(block[1:])


def block_of(body: bytes) -> bytes:
    return bytes((blockcodec.FORMAT,)) + zstandard.ZstdCompressor(write_content_size=True).compress(body)


def decodes_or_refuses(data: bytes) -> None:
    try:
        ts, cols = decode_block(data)
    except BlockError:
        return
    assert all(type(t) is int for t in ts)
    assert all(len(c) == len(ts) for c in cols.values())


@given(st.binary(max_size=300))
def test_random_bytes_raise_block_error_only(data: bytes) -> None:
    decodes_or_refuses(data)
    decodes_or_refuses(bytes((blockcodec.FORMAT,)) + data)
    decodes_or_refuses(block_of(data))


@given(blocks(), st.data())
def test_mutated_blocks_raise_block_error_only(
    block: tuple[list[int], dict[int, list[Value]], dict[int, int | None]], data: st.DataObject
) -> None:
    raw = encode_block(*block)
    for target, wrap in ((raw, bytes), (body_of(raw), block_of)):
        mutated = bytearray(target)
        for _ in range(data.draw(st.integers(1, 4))):
            op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
            at = data.draw(st.integers(0, max(0, len(mutated) - 1)))
            if op == "flip" and mutated:
                mutated[at] ^= 1 << data.draw(st.integers(0, 7))
            elif op == "cut":
                del mutated[at:]
            else:
                mutated[at:at] = data.draw(st.binary(min_size=1, max_size=9))
        decodes_or_refuses(wrap(bytes(mutated)))


def test_one_series_read_does_not_touch_the_others() -> None:
    ts = [T0 + 10_000 * i for i in range(20)]
    raw = encode_block(ts, {1: list(range(20)), 2: [0.5] * 20}, {})
    body = bytearray(body_of(raw))
    _, c = struct.unpack_from("<II", body)
    lens = struct.unpack_from(f"<{c + 1}I", body, 8 + 8 * c)
    body[8 + 12 * c + 4 + lens[0] + lens[1]] = 9  # the kind byte of series 2: an unknown kind
    spoiled = block_of(bytes(body))
    assert decode_block(spoiled, {1}) == (ts, {1: list(range(20))})
    with pytest.raises(BlockError, match="kind"):
        decode_block(spoiled)


def test_caps_are_checked_before_memory_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = (blockcodec.MAX_DECOMPRESSED + 1).to_bytes(8, "little")
    with pytest.raises(BlockError, match="cap"):  # a zstd frame header that declares 64 MB + 1
        decode_block(bytes((blockcodec.FORMAT,)) + b"\x28\xb5\x2f\xfd\xe0" + huge + b"\x01\x00\x00")
    with pytest.raises(BlockError):
        decode_block(block_of(struct.pack("<II", 2_000_000, 0) + struct.pack("<I", 0)))
    ts = list(range(10))
    raw = encode_block(ts, {1: ts, 2: ts}, {})
    monkeypatch.setattr(blockcodec, "MAX_SAMPLES", 15)
    assert decode_block(raw, {1}) == (ts, {1: ts})
    with pytest.raises(BlockError, match="samples"):
        decode_block(raw)
    with pytest.raises(ValueError, match="samples"):
        encode_block(ts, {1: ts, 2: ts}, {})


# --- size ----------------------------------------------------------------------------------------


def realistic_host(seed: int = 1, n: int = 360, t0: int = T0) -> tuple[list[int], dict, dict]:  # type: ignore[type-arg]
    """An hour of one Linux host at a 10 s interval as the agent reports it: 181 series.

    CPU percentages on a daily cycle with noise (p=1), CPU-seconds counters (p=2), memory and
    filesystem bytes that move by pages now and then, counters of packets, bytes and interrupts
    with noisy rates, small gauges, temperatures, and many constant series; 10-30 ms of jitter.
    """
    rng = random.Random(seed)
    ts = [t0 + i * 10_000 + rng.randint(10, 30) for i in range(n)]
    cols: dict[int, list[Value]] = {}
    precisions: dict[int, int | None] = {}

    def add(values: list[Value], p: int | None = None) -> None:
        sid = len(cols) + 1
        cols[sid], precisions[sid] = values, p

    def walk(start: float, sd: float, lo: float, hi: float, p: int) -> list[Value]:
        out: list[Value] = []
        for _ in range(n):
            start = min(hi, max(lo, start + rng.gauss(0, sd)))
            out.append(round(start, p))
        return out

    def counter(start: int, mean: float, sd: float, scale: int = 1) -> list[Value]:
        out: list[Value] = []
        for _ in range(n):
            start += max(0, round(rng.gauss(mean, sd)))
            out.append(start if scale == 1 else start / scale)
        return out

    def pages(start: int, sd: float, prob: float) -> list[Value]:
        out: list[Value] = []
        for _ in range(n):
            if rng.random() < prob:
                start += 4096 * round(rng.gauss(0, sd))
            out.append(start)
        return out

    day = [2 * math.pi * (t % 86_400_000) / 86_400_000 for t in ts]
    for _ in range(5):  # edgewatch_cpu_usage_percent
        add([round(min(100.0, max(0.0, 30 + 20 * math.sin(d) + rng.gauss(0, 3))), 1) for d in day], 1)
    modes = ((200, 30), (2, 2), (50, 10), (740, 30), (3, 2), (0, 0.3), (3, 2), (0, 0), (0, 0), (0, 0))
    for _ in range(4):  # node_cpu_seconds_total per mode, in ticks of 0.01 s
        for mean, sd in modes:
            add(counter(rng.randint(10**6, 10**8), mean, sd, 100), 2)
    add(walk(0.5, 0.3, 0, 20, 1), 1)
    add([0.0] * n, 1)
    add(counter(10**9, 20000, 4000))
    add(counter(10**9, 15000, 3000))
    add(counter(10**6, 5, 3))
    add([rng.choice((1, 1, 2, 3)) for _ in range(n)])
    add([int(rng.random() < 0.05) for _ in range(n)])
    add([4] * n)
    for _ in range(3):  # node_load1/5/15
        add(walk(0.8, 0.05, 0, 8, 2), 2)
    total = 8 * 2**30
    used = pages(4 * 2**30, 200, 1.0)
    add([total] * n)
    for start, sd, prob in ((3 << 30, 200, 1), (4 << 30, 200, 1), (1 << 28, 2, 0.3), (1 << 31, 50, 0.5)):
        add(pages(start, sd, prob))
    for start, sd, prob in ((1 << 31, 100, 0.9), (1 << 30, 100, 0.9), (1 << 26, 5, 0.05), (1 << 27, 10, 0.5)):
        add(pages(start, sd, prob))
    add(used)
    add([round(100 * u / total, 1) for u in used], 1)  # type: ignore[operator]
    add([2**20] * n)
    add([0] * n)
    add([0] * n)
    for mean, sd in ((5000, 2000), (0.02, 0.2), (200, 100), (800, 300), (0, 0), (0, 0), (100, 50), (3, 3)):
        add(counter(10**7, mean, sd))  # node_vmstat_*
    for _ in range(2):  # node_disk_*
        reads, writes = counter(10**5, 5, 5), counter(10**6, 30, 15)
        add(reads)
        add(writes)
        add([r * 8 * 512 for r in reads])  # type: ignore[operator]
        add([w * 12 * 512 for w in writes])  # type: ignore[operator]
        for mean, sd in ((15, 10), (60, 30), (70, 30)):
            add(counter(10**6, mean, sd, 1000), 3)
        add([0 if rng.random() < 0.9 else rng.randint(1, 3) for _ in range(n)])
        add(walk(1.0, 0.8, 0, 100, 1), 1)
    for _ in range(3):  # node_filesystem_*
        size = rng.randint(10**9, 10**11) // 4096 * 4096
        free = pages(size // 2, 30, 0.2)
        add([0] * n)
        add([size] * n)
        add(free)
        add([f - 5 * 2**20 for f in free])  # type: ignore[operator]
        add([6_000_000] * n)
        add([round(v) for v in walk(3_000_000, 3, 0, 10**7, 1)])  # type: ignore[arg-type]
        add([0] * n)
        add([round(100 * (1 - f / size), 1) for f in free], 1)  # type: ignore[operator]
    for mean, sd in ((20000, 15000), (12000, 9000), (300, 100)):  # node_network_* of eth0 and lo
        add(counter(10**8, mean, sd))
        add(counter(10**8, mean // 100, sd // 100))
    for _ in range(2):
        add(counter(10**5, 30, 30))
        add(counter(10**5, 30, 30))
        add([0] * n)
        add([0] * n)
    for state in range(11):  # node_tcp_connection_states
        add([round(v) for v in walk(rng.randint(0, 20), 1.0 if state < 4 else 0, 0, 100, 1)])  # type: ignore[arg-type]
    for start, sd in ((2, 0.5), (200, 1), (40, 0), (0, 0), (1, 0), (500, 2), (250, 1)):  # processes
        add([round(v) for v in walk(start, sd, 0, 10**4, 1)])  # type: ignore[arg-type]
    for _ in range(5):  # the top processes
        add([round(max(0.0, rng.gauss(5, 4)), 1) for _ in range(n)], 1)
        add(pages(rng.randint(2**20, 2**30) // 4096 * 4096, 20, 0.3))
    add([(t - t0) // 1000 + 3600 for t in ts])
    add([t0 // 1000 - 3600] * n)
    for _ in range(3):
        add(walk(45.0, 0.3, 20, 90, 1), 1)
    for _ in range(12):  # systemd units, checks up
        add([1] * n)
    for _ in range(2):
        add([round(max(0.001, rng.gauss(0.05, 0.02)), 3) for _ in range(n)], 3)
    return ts, cols, precisions


def test_a_realistic_hour_costs_at_most_a_byte_per_sample() -> None:
    for seed in range(3):
        ts, cols, precisions = realistic_host(seed)
        assert 150 <= len(cols) <= 200
        samples = sum(v is not None for col in cols.values() for v in col)
        data = encode_block(ts, cols, precisions)
        assert len(data) / samples <= 1.0, f"{len(data) / samples:.3f} bytes per sample"
        assert decode_block(data) == (ts, cols)


def test_steady_and_constant_series_cost_almost_nothing() -> None:
    ts = [T0 + 10_000 * i for i in range(360)]
    cols: dict[int, list[Value]] = {sid: [sid * 4096] * 360 for sid in range(150)}
    data = encode_block(ts, cols, {})
    assert len(data) < 0.05 * 150 * 360
    gappy: dict[int, list[Value]] = {1: [None if i % 60 < 6 else 1.5 for i in range(360)]}
    assert len(encode_block(ts, gappy, {1: 1})) < 80  # 300 samples, 6 gap runs
