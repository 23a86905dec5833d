"""Column domains: how the values of one column become 64-bit integers and back.

A column is coded in one *domain*, picked per frame from its definition and values:

- ``INT``: 64-bit integers: the ints of a series with no precision, or ``round(v * 10**p)`` for a
  series with precision ``p`` (decoded as ``k / 10**p``, a float);
- ``FLOAT``: the IEEE-754 bits of each float, for floats with no precision, or for a precision
  series whose column holds a non-finite or a very large value (finite values still rounded);
- ``RAW``: plain msgpack values, for a column that mixes ints and floats with no precision.

The values of INT and FLOAT columns go to the residual stream (``stream``); RAW columns go to the
payload map as they are.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from .errors import ProtocolError
from .limits import MAX_PRECISION
from .stream import History
from .types import Series, Value

INT = 0
FLOAT = 1
RAW = 2

_HALF = 1 << 63
EXACT = 1 << 50  # scaled ints at or above this may not survive k / 10**p and back (p up to 15)
POW10: list[int] = [10**i for i in range(MAX_PRECISION + 1)]
_DOUBLE = struct.Struct("<d")


def scaled(value: int | float, precision: int) -> int | None:
    """``round(value * 10**precision)``, or None when that is not finite or not below ``EXACT``."""
    if type(value) is int:
        k = value * POW10[precision]
    else:
        product = value * POW10[precision]
        if not math.isfinite(product):  # also for a finite value whose product overflows
            return None
        k = round(product)
    return k if abs(k) < EXACT else None


def quantize(value: float, precision: int) -> float:
    """The float a series of this precision carries for ``value`` (finite values rounded)."""
    k = scaled(value, precision)
    return value if k is None else k / POW10[precision]


def column_mode(series: Series, column: Sequence[Value]) -> int:
    """The domain this column is coded in, from its definition and values."""
    ints = floats = 0
    for v in column:
        if v is None:
            continue
        if type(v) is int:
            if not -_HALF <= v < _HALF:
                raise ProtocolError(
                    f"series {series.name!r} has the value {v}, outside the signed 64-bit range"
                )
            ints += 1
        elif type(v) is float:
            floats += 1
        else:
            raise ProtocolError(
                f"series {series.name!r} has a value of type {type(v).__name__}; "
                "values must be int, float or None"
            )
    if series.precision is not None:
        p = series.precision
        for v in column:
            if v is not None and scaled(v, p) is None:
                return FLOAT if not ints else RAW
        return INT
    if floats and ints:
        return RAW
    return FLOAT if floats else INT


def decoded_form(series: Series, column: Sequence[Value]) -> tuple[int, tuple[Value, ...]]:
    """``(mode, column)``: the column's domain and the values a receiver decodes for it.

    Only series with a precision change: their finite floats (and, coded as INT, their ints) come
    back as ``round(v * 10**p) / 10**p``.
    """
    mode = column_mode(series, column)
    p = series.precision
    if p is None:
        return mode, tuple(column)
    if mode == INT:
        return mode, tuple(None if v is None else scaled(v, p) / POW10[p] for v in column)  # type: ignore[operator]
    return mode, tuple(quantize(v, p) if type(v) is float else v for v in column)


def to_domain(mode: int, precision: int | None, value: Value) -> int | None:
    """``value`` in the column's domain, or None where it has no place there (a gap, a wrong type)."""
    if value is None:
        return None
    if mode == INT:
        if precision is None:
            return value if type(value) is int and -_HALF <= value < _HALF else None
        return None if type(value) is bool else scaled(value, precision)
    if mode == FLOAT and type(value) is float:
        return int.from_bytes(_DOUBLE.pack(value), "little")
    return None


def from_domain(mode: int, precision: int | None, x: int) -> int | float:
    if mode == FLOAT:
        return float(_DOUBLE.unpack(x.to_bytes(8, "little"))[0])
    if precision is None:
        return x
    return x / POW10[precision]


def history_of(mode: int, precision: int | None, column: Sequence[Value] | None) -> History:
    """``(a, b)``: the last known value of a reference column and the one before, in ``mode``'s domain.

    Gaps are skipped; a value with no place in the domain ends the history; ``None`` where nothing
    is known.
    """
    a = b = None
    if column and mode == INT and precision is None:  # the common case: ints are their own domain
        for v in reversed(column):
            if v is None:
                continue
            if type(v) is not int or not -_HALF <= v < _HALF:
                break
            if a is None:
                a = v
            else:
                b = v
                break
    elif column:
        for v in reversed(column):
            if v is None:
                continue
            x = to_domain(mode, precision, v)
            if x is None:
                break
            if a is None:
                a = x
            else:
                b = x
                break
    return a, b
