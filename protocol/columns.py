"""Column coding: turn value columns into one residual stream and back (docs/protocol.md, "Columns").

Every column is coded in a *domain*: ``INT`` (64-bit integers: plain ints, or floats scaled by
``10**precision``), ``FLOAT`` (the IEEE-754 bits of each float) or ``RAW`` (plain msgpack values, the
fallback for a column that mixes ints and floats). Each non-gap value of an INT or FLOAT column is a
*slot*; the timestamps are the first column, an INT counter. A slot holds the residual of its value
against a prediction from the two values before it (in the batch, or at its start in the reference):

- gauge: the previous value; counter and timestamps: previous + (previous - one before), so a
  steady counter costs nothing; nothing known: 0. Arithmetic wraps modulo 2**64.
- FLOAT: the residual is ``bits XOR previous bits``.

The stream is a bitmap of the slots whose residual is not zero, then one unsigned LEB128 varint per
such slot (``token``). Byte-sized series (page- and sector-multiples) are shifted: see ``_shift``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from .errors import ProtocolError
from .limits import MAX_PRECISION
from .types import Kind, Series, Value

INT = 0
FLOAT = 1
RAW = 2

_MASK = (1 << 64) - 1
_HALF = 1 << 63
_EXACT = 1 << 52  # scaled ints at or above this cannot be trusted to survive k / 10**p and back
_MIN_SHIFT = 9  # a value divisible by 512 (a sector) is probably a byte count
_MAX_SHIFT = 12  # shift by at most 4096 (a page)
POW10: list[int] = [10**i for i in range(MAX_PRECISION + 1)]
_DOUBLE = struct.Struct("<d")
_REVERSE = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))

History = tuple[int, ...]  # at most the two last known values of a column, in its domain, oldest first


def quantize(value: float, precision: int) -> float:
    """The float a series of this precision carries for ``value`` (finite values rounded)."""
    if not math.isfinite(value):
        return value
    scaled = round(value * POW10[precision])
    if abs(scaled) >= _EXACT:
        return value
    return scaled / POW10[precision]


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
            if v is not None and (not math.isfinite(v) or abs(v * POW10[p]) >= _EXACT):
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
        return mode, tuple(None if v is None else round(v * POW10[p]) / POW10[p] for v in column)
    return mode, tuple(quantize(v, p) if type(v) is float else v for v in column)


def to_domain(mode: int, precision: int | None, value: Value) -> int | None:
    """``value`` in the column's domain, or None where it has no place there (a gap, a wrong type)."""
    if value is None:
        return None
    if mode == INT:
        if precision is None:
            return value if type(value) is int and -_HALF <= value < _HALF else None
        if type(value) is bool or not math.isfinite(value):
            return None
        scaled = round(value * POW10[precision])
        return scaled if abs(scaled) < _EXACT else None
    if mode == FLOAT and type(value) is float:
        return int.from_bytes(_DOUBLE.pack(value), "little")
    return None


def from_domain(mode: int, precision: int | None, x: int) -> int | float:
    if mode == FLOAT:
        return float(_DOUBLE.unpack(x.to_bytes(8, "little"))[0])
    if precision is None:
        return x
    return x / POW10[precision]


def history_of(mode: int, precision: int | None, column: Sequence[Value]) -> History:
    """The last two known values of a reference column, in ``mode``'s domain."""
    found: list[int] = []
    for v in reversed(column):
        if v is None:
            continue
        x = to_domain(mode, precision, v)
        if x is None:
            break
        found.append(x)
        if len(found) == 2:
            break
    return tuple(reversed(found))


def _shift(a: int, b: int | None) -> int:
    """Shift for the next residual of an INT column whose last values are ``b``, ``a``.

    When the last known values are all multiples of 2**9 or more, the residual is most likely one
    too: its token then is ``(zigzag(r >> s) - 1) << 1`` with the flag bit clear, and any other
    residual is sent as ``(zigzag(r) - 1) << 1 | 1``.
    """
    if a == 0:
        return 0
    s = (a & -a).bit_length() - 1
    if b is not None and b != 0:
        s = min(s, (b & -b).bit_length() - 1)
    if s < _MIN_SHIFT:
        return 0
    return min(s, _MAX_SHIFT)


def _wrap(x: int) -> int:
    x &= _MASK
    return x - (1 << 64) if x & _HALF else x


def _put(out: bytearray, u: int) -> None:
    while u > 0x7F:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)


class Encoder:
    """Collects slots into a bitmap and a token stream."""

    def __init__(self) -> None:
        self.flags: list[bool] = []
        self.tokens = bytearray()

    def int_column(self, values: Sequence[int | None], history: History, counter: bool) -> None:
        flags = self.flags
        tokens = self.tokens
        b: int | None = history[-2] if len(history) == 2 else None
        a: int | None = history[-1] if history else None
        for x in values:
            if x is None:
                continue
            if a is None:
                p = 0
                s = 0
            elif counter and b is not None:
                p = 2 * a - b
                s = _shift(a, b)
            else:
                p = a
                s = _shift(a, b)
            r = _wrap(x - p)
            if r == 0:
                flags.append(False)
            else:
                flags.append(True)
                if s:
                    if r & ((1 << s) - 1) == 0:
                        q = r >> s
                        _put(tokens, (((q << 1) ^ (q >> 63)) - 1) << 1)
                    else:
                        _put(tokens, ((((r << 1) ^ (r >> 63)) & _MASK) - 1) << 1 | 1)
                else:
                    _put(tokens, (((r << 1) ^ (r >> 63)) & _MASK) - 1)
            b, a = a, x

    def float_column(self, values: Sequence[int | None], history: History) -> None:
        flags = self.flags
        tokens = self.tokens
        a = history[-1] if history else 0
        for x in values:
            if x is None:
                continue
            d = x ^ a
            if d == 0:
                flags.append(False)
            else:
                flags.append(True)
                _put(tokens, int.from_bytes(d.to_bytes(8, "little").translate(_REVERSE), "little"))
            a = x

    def stream(self) -> bytes:
        flags = self.flags
        bitmap = bytearray((len(flags) + 7) >> 3)
        for i, f in enumerate(flags):
            if f:
                bitmap[i >> 3] |= 1 << (i & 7)
        return bytes(bitmap) + bytes(self.tokens)


class Decoder:
    """Reads slots back from a stream made by ``Encoder`` for ``slot_count`` slots."""

    def __init__(self, data: bytes, slot_count: int) -> None:
        size = (slot_count + 7) >> 3
        if len(data) < size:
            raise ProtocolError("the value stream is shorter than its bitmap; the frame is truncated")
        self.bitmap = data[:size]
        self.data = data
        self.pos = size
        self.slot = 0

    def _token(self) -> int:
        data = self.data
        pos = self.pos
        u = 0
        shift = 0
        while True:
            if pos >= len(data):
                raise ProtocolError("the value stream ends inside a varint; the frame is truncated")
            byte = data[pos]
            pos += 1
            u |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift > 63:
                raise ProtocolError("a varint in the value stream is longer than ten bytes")
        self.pos = pos
        return u

    def _nonzero(self) -> bool:
        i = self.slot
        self.slot = i + 1
        return bool(self.bitmap[i >> 3] >> (i & 7) & 1)

    def int_column(self, gaps: Sequence[bool], history: History, counter: bool) -> list[int | None]:
        out: list[int | None] = []
        b: int | None = history[-2] if len(history) == 2 else None
        a: int | None = history[-1] if history else None
        for gap in gaps:
            if gap:
                out.append(None)
                continue
            if a is None:
                p = 0
                s = 0
            elif counter and b is not None:
                p = 2 * a - b
                s = _shift(a, b)
            else:
                p = a
                s = _shift(a, b)
            if self._nonzero():
                t = self._token()
                if s:
                    if t & 1:
                        z = (t >> 1) + 1
                        r = (z >> 1) ^ -(z & 1)
                    else:
                        z = (t >> 1) + 1
                        r = ((z >> 1) ^ -(z & 1)) << s
                else:
                    z = t + 1
                    r = (z >> 1) ^ -(z & 1)
                x = _wrap(p + r)
            else:
                x = _wrap(p)
            out.append(x)
            b, a = a, x
        return out

    def float_column(self, gaps: Sequence[bool], history: History) -> list[int | None]:
        out: list[int | None] = []
        a = history[-1] if history else 0
        for gap in gaps:
            if gap:
                out.append(None)
                continue
            if self._nonzero():
                t = self._token()
                if t > _MASK:
                    raise ProtocolError("a float residual in the value stream is wider than 64 bits")
                a ^= int.from_bytes(t.to_bytes(8, "little").translate(_REVERSE), "little")
            out.append(a)
        return out

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise ProtocolError(
                f"the value stream has {len(self.data) - self.pos} bytes after its last value"
            )


def counter_like(series: Series) -> bool:
    return series.kind == Kind.COUNTER


def check_precision(precision: int | None) -> None:
    if precision is not None and (type(precision) is not int or not 0 <= precision <= MAX_PRECISION):
        raise ProtocolError(f"precision {precision!r} is not a whole number from 0 to {MAX_PRECISION}")
