"""Hypothesis strategies for batches, references and events."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from edgewatch.protocol import Batch, Event, Kind, Series
from edgewatch.protocol.types import Value

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
UINT64 = st.integers(0, (1 << 64) - 1)
TEXT = st.text(max_size=12)
NAME = st.text(min_size=1, max_size=20)
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [-0.0, 0.0, math.nan, -math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308]
)


def series_defs() -> st.SearchStrategy[Series]:
    return st.builds(
        Series,
        NAME,
        st.dictionaries(st.text(min_size=1, max_size=8), TEXT, max_size=3),
        st.sampled_from(Kind),
        st.none() | st.integers(0, 6),
    )


@st.composite
def column(draw: st.DrawFn, series: Series, n: int) -> tuple[Value, ...]:
    """A column the codec promises to carry exactly: precision series carry k / 10**p floats."""
    gap = st.none()
    if series.precision is not None:
        p = series.precision
        scaled = st.integers(-(1 << 50) + 1, (1 << 50) - 1).map(lambda k: k / 10**p)
        value: st.SearchStrategy[Value] = scaled | st.sampled_from([math.nan, math.inf, -math.inf])
        if draw(st.booleans()):
            value = scaled  # mostly finite, the common case
    else:
        style = draw(st.sampled_from(["int", "counter", "float", "mixed"]))
        if style == "int":
            value = INT64
        elif style == "counter":
            start = draw(st.integers(0, 1 << 40))
            step = draw(st.integers(0, 1 << 20))
            values = [start + i * step + draw(st.integers(0, 3)) for i in range(n)]
            return tuple(v if draw(st.integers(0, 9)) else None for v in values)
        elif style == "float":
            value = ANY_FLOAT
        else:
            value = INT64 | ANY_FLOAT
    return tuple(draw(st.lists(value | gap, min_size=n, max_size=n)))


@st.composite
def timestamps(draw: st.DrawFn, n: int, start: int | None = None) -> tuple[int, ...]:
    t = draw(st.integers(-(1 << 60), 1 << 60)) if start is None else start
    out = []
    for _ in range(n):
        t += draw(st.sampled_from([10_000, 1_000]) | st.integers(1, 1 << 20))
        out.append(t)
    return tuple(out)


events = st.builds(
    Event,
    INT64,
    NAME,
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.none() | st.booleans() | INT64 | ANY_FLOAT | TEXT | st.binary(max_size=16),
        max_size=4,
    ),
)


@st.composite
def batches(
    draw: st.DrawFn,
    pool: list[Series] | None = None,
    agent_id: str | None = None,
    boot_id: int | None = None,
    seq: int | None = None,
    after: int | None = None,
) -> Batch:
    if pool is None:
        pool = draw(st.lists(series_defs(), max_size=8, unique=True))
    chosen = draw(st.permutations(pool)) if pool else []
    chosen = chosen[: draw(st.integers(0, len(chosen)))]
    n = draw(st.integers(0, 5))
    return Batch(
        agent_id=draw(NAME) if agent_id is None else agent_id,
        boot_id=draw(UINT64) if boot_id is None else boot_id,
        seq=draw(st.integers(0, (1 << 64) - 1)) if seq is None else seq,
        timestamps=draw(timestamps(n, after)),
        series=tuple(chosen),
        values=tuple(draw(column(s, n)) for s in chosen),
        host=draw(st.dictionaries(st.text(min_size=1, max_size=8), TEXT, max_size=3)),
        events=tuple(draw(st.lists(events, max_size=3))),
    )


@st.composite
def reference_pairs(draw: st.DrawFn) -> tuple[Batch, Batch]:
    """A reference and a later batch of the same agent and boot, sharing some series."""
    pool = draw(st.lists(series_defs(), min_size=1, max_size=10, unique=True))
    agent_id = draw(NAME)
    boot_id = draw(UINT64)
    ref_seq = draw(st.integers(0, 1 << 40))
    ref = draw(batches(pool=pool, agent_id=agent_id, boot_id=boot_id, seq=ref_seq))
    seq = ref_seq + draw(st.sampled_from([1, 1, 1, 2]) | st.integers(1, 1 << 20))
    after = ref.timestamps[-1] if ref.timestamps else None
    batch = draw(batches(pool=pool, agent_id=agent_id, boot_id=boot_id, seq=seq, after=after))
    return ref, batch
