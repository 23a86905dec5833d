"""All the value columns of a batch to slots and back, with a fast path for one-sample batches.

The agent's default is one sample per frame, so most frames have one value per column and the cost
per series is what counts: ``_encode_single`` and ``_decode_single`` do in one pass what the general
path does column by column. Both paths make the same bytes (a test checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .columns import (
    EXACT,
    FLOAT,
    INT,
    POW10,
    RAW,
    decoded_form,
    from_domain,
    history_of,
    quantize,
    scaled,
    to_domain,
)
from .errors import ProtocolError
from .stream import Decoder, Encoder, History
from .types import Series, Value

_HALF = 1 << 63
_NEAR = float(EXACT >> 1)  # a scaled float this far from EXACT rounds to an int below it
_ONE_GAP = b"\x01"
SINGLE_SAMPLE_FAST_PATH = True  # tests turn it off to compare both paths

RefColumns = Sequence[Sequence[Value] | None]  # per series: the reference's column, or None


class Layout:
    """Where a frame's columns are not INT: FLOAT column indexes, RAW columns, gap bitmaps."""

    def __init__(self) -> None:
        self.floats: list[int] = []
        self.raws: dict[int, list[Value]] = {}
        self.gaps: dict[int, bytes] = {}


def _gap_bitmap(column: Sequence[Value]) -> bytes:
    bitmap = bytearray((len(column) + 7) >> 3)
    for i, v in enumerate(column):
        if v is None:
            bitmap[i >> 3] |= 1 << (i & 7)
    return bytes(bitmap)


def encode_columns(
    enc: Encoder, series: Sequence[Series], values: Sequence[Sequence[Value]], ref_cols: RefColumns, n: int
) -> Layout:
    layout = Layout()
    if n == 1 and SINGLE_SAMPLE_FAST_PATH:
        _encode_single(enc, series, values, ref_cols, layout)
        return layout
    for j, (s, given) in enumerate(zip(series, values)):
        mode, column = decoded_form(s, given)
        if mode == RAW:
            layout.raws[j] = list(column)
            continue
        if None in column:
            layout.gaps[j] = _gap_bitmap(column)
        p = s.precision
        history = history_of(mode, p, ref_cols[j])
        domain = [to_domain(mode, p, v) for v in column]
        if mode == FLOAT:
            layout.floats.append(j)
            enc.float_column(domain, history)
        else:
            enc.int_column(domain, history, int(s.kind))
    return layout


def _encode_single(
    enc: Encoder,
    series: Sequence[Series],
    values: Sequence[Sequence[Value]],
    ref_cols: RefColumns,
    layout: Layout,
) -> None:
    int_slot = enc.int_slot
    float_slot = enc.float_slot
    for j, s in enumerate(series):
        v = values[j][0]
        if v is None:
            layout.gaps[j] = _ONE_GAP
            continue
        p = s.precision
        x: int | None
        if type(v) is int:
            if not -_HALF <= v < _HALF:
                raise ProtocolError(f"series {s.name!r} has the value {v}, outside the signed 64-bit range")
            mode, x = INT, v
            if p is not None:
                x = scaled(v, p)
                if x is None:  # an int too large to scale: sent as it is
                    layout.raws[j] = [v]
                    continue
        elif type(v) is float:
            mode, x = INT, None
            if p is not None:
                x = scaled(v, p)
            if x is None:  # no precision, or not finite, or too large to scale
                mode, x = FLOAT, to_domain(FLOAT, None, v if p is None else quantize(v, p))
        else:
            raise ProtocolError(
                f"series {s.name!r} has a value of type {type(v).__name__}; values must be int, float or None"
            )
        assert x is not None
        a, b = _history(mode, p, ref_cols[j])
        if mode == INT:
            if x == a == b:  # unchanged and guessed so: a slot with nothing to send
                enc.slots += 1
            else:
                int_slot(x, a, b, s.kind)
        else:
            layout.floats.append(j)
            float_slot(x, a, b)


def _history(mode: int, p: int | None, rc: Sequence[Value] | None) -> History:
    """``history_of``, with its most common cases first: the two values of a ``next_reference``,
    ints of a series with no precision or floats of one with a precision (``scaled`` inline). Any
    other column, and any value near a limit of ``scaled``, takes ``history_of``."""
    if rc is not None and len(rc) == 2 and mode == INT:
        b, a = rc
        if p is None:
            if type(a) is int and type(b) is int:
                return a, b
        elif type(a) is float and type(b) is float:
            scale = POW10[p]
            fa, fb = a * scale, b * scale
            if -_NEAR < fa < _NEAR and -_NEAR < fb < _NEAR:  # finite and well below EXACT (NaN fails)
                return round(fa), round(fb)
    return history_of(mode, p, rc)


def decode_columns(
    dec: Decoder,
    series: Sequence[Series],
    ref_cols: RefColumns,
    n: int,
    *,
    floats: set[int],
    raws: dict[int, Any],
    gaps: dict[int, list[bool]],
) -> list[tuple[Value, ...]]:
    if n == 1 and SINGLE_SAMPLE_FAST_PATH:
        return _decode_single(dec, series, ref_cols, floats=floats, raws=raws, gaps=gaps)
    values: list[tuple[Value, ...]] = []
    no_gaps = [False] * n
    for j, s in enumerate(series):
        if j in raws:
            values.append(_raw_column(raws[j], j, n))
            continue
        p = s.precision
        mode = FLOAT if j in floats else INT
        history = history_of(mode, p, ref_cols[j])
        col_gaps = gaps.get(j, no_gaps)
        if mode == FLOAT:
            domain = dec.float_column(col_gaps, history)
        else:
            domain = dec.int_column(col_gaps, history, int(s.kind))
        values.append(tuple(None if x is None else from_domain(mode, p, x) for x in domain))
    return values


def _decode_single(
    dec: Decoder,
    series: Sequence[Series],
    ref_cols: RefColumns,
    *,
    floats: set[int],
    raws: dict[int, Any],
    gaps: dict[int, list[bool]],
) -> list[tuple[Value, ...]]:
    """The columns of a one-sample frame: the runs of INT slots between the raw, float and gap
    columns (in most frames, all of it) by ``_decode_ints``, those columns one by one."""
    others = sorted({*raws, *floats, *(j for j, bits in gaps.items() if bits[0])})
    values: list[tuple[Value, ...]] = []
    start = 0
    for j in others:
        if start < j:
            values += _decode_ints(dec, series[start:j], ref_cols[start:j])
        if j in raws:
            values.append(_raw_column(raws[j], j, 1))
        elif j in gaps and gaps[j][0]:
            values.append((None,))
        else:  # a float column
            a, b = history_of(FLOAT, series[j].precision, ref_cols[j])
            values.append((from_domain(FLOAT, None, dec.float_slot(a, b)),))
        start = j + 1
    if start < len(series):
        values += _decode_ints(dec, series[start:], ref_cols[start:])
    return values


def _decode_ints(dec: Decoder, series: Sequence[Series], ref_cols: RefColumns) -> list[tuple[Value, ...]]:
    """One-sample INT columns of ``series`` (no raw or float column, no gap among them), in a loop
    with nothing else to ask of each series."""
    values: list[tuple[Value, ...]] = []
    append = values.append
    int_slot = dec.int_slot
    for s, rc in zip(series, ref_cols):
        p = s.precision
        a, b = _history(INT, p, rc)
        if a is not None and a == b and dec.slot != dec.next_wrong:  # unchanged and guessed so
            dec.slot += 1
            x = a
        else:
            x = int_slot(a, b, s.kind)
        append((x if p is None else x / POW10[p],))
    return values


def _raw_column(column: object, j: int, n: int) -> tuple[Value, ...]:
    if not isinstance(column, list) or len(column) != n:
        raise ProtocolError(f"raw column {j} must be an array of {n} values")
    for v in column:
        if v is not None and type(v) is not float and (type(v) is not int or not -_HALF <= v < _HALF):
            raise ProtocolError(f"raw column {j} holds a value that is not an int, float or nil")
    return tuple(column)
