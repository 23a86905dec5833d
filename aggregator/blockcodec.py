"""Raw sample blocks: every series of one host over one time window, as one compressed blob.

A block is the format byte ``0xB1`` and one zstd frame (that declares its size) of the body:

- ``<II`` timestamp count ``n``, column count ``c``; ``c`` series ids (int64); ``c + 1`` blob lengths
  (uint32), the timestamps' first; then the blobs. A one-series read parses only its own blob.
- A column blob is a kind byte, its gap runs (a varint count, 0 for none, then alternating present /
  absent run lengths) and, if any value is present, the values of its kind:
  ``INT`` ints; ``DEC`` floats ``k / 10**p`` with ``p`` then ints ``k``; ``FLOAT`` the bits of each
  float (the first as a varint, then each XOR the one before); ``MIXED`` (ints and floats) an ``INT``
  sub-blob (its length first) and a ``FLOAT`` or ``DEC`` one, with gaps where the other has values.
- Ints are coded as their ``order``-th difference (0 to 2, whichever spreads least) minus its
  minimum, divided by the gcd: ``order`` varint, the ``order`` first values (zigzag varints), the
  minimum (zigzag), the gcd, then ``_planes`` of the result. Constant runs and steady
  intervals become runs of zero bytes that zstd all but removes.

A precision series is coded ``DEC`` when every value is ``k / 10**p`` exactly (so it decodes to
floats, as on the wire); otherwise, and for series without one, values come back exactly as given:
ints as ints, floats bit for bit (NaN, infinities and -0.0 included). Float series whose values are
all short decimals are found and coded ``DEC`` too, which changes no bit.
"""

from __future__ import annotations

import math
import struct
import threading
from array import array
from collections.abc import Collection, Iterable, Mapping, Sequence
from itertools import accumulate, compress, groupby, islice, repeat
from operator import add, floordiv, is_not, lt, mul, not_, sub, truediv, xor
from typing import cast

import zstandard

from edgewatch.protocol import Value
from edgewatch.protocol.columns import EXACT, POW10
from edgewatch.protocol.limits import MAX_PRECISION
from edgewatch.protocol.varint import put as put_varint
from edgewatch.protocol.varint import read as read_varint

from .lebytes import le_array
from .lebytes import le_bytes as _le

Block = tuple[list[int], dict[int, list[Value]]]
"""``(timestamps, {series id: values})``, as ``decode_block`` returns it."""

MAX_TIMESTAMPS = 1_000_000
MAX_DECOMPRESSED = 64 * 1024 * 1024  # body bytes
MAX_SAMPLES = 20_000_000  # timestamps x columns that one block may hold
FORMAT = 0xB1
LEVEL = 9  # zstd: blocks are written once and read many times
INT, DEC, FLOAT, MIXED = 0, 1, 2, 3

_HALF = 1 << 63
_U64 = 1 << 64
_MAX_WINDOW = 1 << 23
_HEAD = struct.Struct("<II")
_local = threading.local()  # zstd contexts are not safe to share between threads


class BlockError(ValueError):
    """A block cannot be decoded: its bytes are corrupt, truncated or not a block at all."""


# --- byte planes ------------------------------------------------------------------------------


def _items(raw: bytes | bytearray, code: str) -> list[int]:
    items: list[int] = le_array(raw, code).tolist()
    return items


def _planes(values: list[int]) -> bytes:
    """A mask byte, then byte ``k`` of every value (0 to 2**64 - 1) for each ``k`` in the mask.

    Planes of zeros are left out; the high ones that remain are nearly so, and compress to little.
    """
    raw = _le(array("Q", values))
    mask = 0
    parts = [b""]
    for k in range(8):
        plane = raw[k::8]
        if plane.count(0) != len(plane):
            mask |= 1 << k
            parts.append(plane)
    parts[0] = bytes((mask,))
    return b"".join(parts)


def _read_planes(data: bytes, pos: int, m: int) -> tuple[list[int], int]:
    """``(m values, position after them)`` of ``_planes`` at ``pos``."""
    mask = data[pos]
    pos += 1
    if not mask:
        return [0] * m, pos
    buf = bytearray(8 * m)
    for k in range(8):
        if mask >> k & 1:
            end = pos + m
            if end > len(data):
                raise BlockError("a column's values are cut short")
            buf[k::8] = data[pos:end]
            pos = end
    return _items(buf, "Q"), pos


# --- ints ---------------------------------------------------------------------------------------


def _put_signed(out: bytearray, x: int) -> None:
    put_varint(out, (x << 1) ^ (x >> 63))


def _read_signed(data: bytes, pos: int) -> tuple[int, int]:
    u, pos = read_varint(data, pos, "a column header field")
    return (u >> 1) ^ -(u & 1), pos


def _put_ints(out: bytearray, xs: list[int]) -> None:
    """Ints in the signed 64-bit range, as ``order``, first values, minimum, gcd and byte planes."""
    best: tuple[int, int, list[int], list[int], int] | None = None  # (cost, order, firsts, diffs, min)
    firsts: list[int] = []
    d = xs
    for order in range(3):
        if order:
            if len(d) < 2 or not -_HALF <= d[0] < _HALF:
                break
            firsts = [*firsts, d[0]]
            d = list(map(sub, islice(d, 1, None), d))
        low = min(d) if d else 0
        if d and (max(d) - low >= _U64 or not -_HALF <= low < _HALF):
            continue  # order 0 always fits: the values are int64
        s = sorted(d[:: len(d) // 64 + 1])  # a sample is enough to see how widely it spreads
        mid = s[len(s) // 2] if s else 0
        cost = sum(map(int.bit_length, map(sub, s, repeat(mid))))
        if best is None or cost < best[0]:
            best = (cost, order, firsts, d, low)
        if not cost:
            break  # constant: no order does better
    assert best is not None
    _, order, firsts, d, low = best
    r = list(map(sub, d, repeat(low))) if low else d
    g = math.gcd(*r) or 1
    if g > 1:
        r = list(map(floordiv, r, repeat(g)))
    put_varint(out, order)
    for f in firsts:
        _put_signed(out, f)
    _put_signed(out, low)
    put_varint(out, g)
    out += _planes(r)


def _read_ints(data: bytes, pos: int, count: int, bound: int) -> tuple[list[int], int]:
    order, pos = read_varint(data, pos, "a column's order")
    if order > 2 or order > count:
        raise BlockError(f"a column has the order {order} for {count} values")
    firsts = [0] * order
    for i in range(order):
        firsts[i], pos = _read_signed(data, pos)
    low, pos = _read_signed(data, pos)
    g, pos = read_varint(data, pos, "a column's gcd")
    if not g:
        raise BlockError("a column has the gcd 0")
    r, pos = _read_planes(data, pos, count - order)
    it: Iterable[int] = r
    if g != 1:
        it = map(mul, it, repeat(g))
    if low:
        it = map(add, it, repeat(low))
    for f in reversed(firsts):
        it = accumulate(it, initial=f)
    xs = list(it)
    if bound and xs and (min(xs) < -bound or max(xs) >= bound):
        raise BlockError("a column decodes to values out of range")
    return xs, pos


# --- columns ------------------------------------------------------------------------------------


def _scaled(values: list[int | float], p: int) -> list[int] | None:
    """``round(v * 10**p)`` for every value when each is exactly ``k / 10**p`` (and not -0.0), else None."""
    scale = float(POW10[p])  # exact, and k / scale is k / 10**p: both are correctly rounded
    try:
        ks: list[int] = list(map(round, map(mul, values, repeat(scale))))
    except (OverflowError, ValueError):  # infinities, NaN
        return None
    if ks and (max(ks) >= EXACT or min(ks) <= -EXACT):
        return None
    if list(map(truediv, ks, repeat(scale))) != values:
        return None
    if 0 in ks and min(map(math.copysign, repeat(1.0), compress(values, map(not_, ks)))) < 0:
        return None  # -0.0 would come back as 0.0
    return ks


def _guess_precision(values: list[float]) -> int | None:
    """The fewest decimals that a sample of ``values`` needs, or None when it is not short decimals."""
    best = 0
    for v in values[:: max(1, len(values) // 8)]:
        if not abs(v) < EXACT:  # also NaN
            return None
        for p in range(best, MAX_PRECISION + 1):
            scale = POW10[p]
            if round(v * scale) / scale == v:
                best = p
                break
        else:
            return None
    return best


def _runs(column: Sequence[Value]) -> tuple[list[int | float], list[int]]:
    """``(present values, gap runs)``: runs alternate present / absent, from a present one; [] for no gap."""
    if None not in column:
        return list(column), []  # type: ignore[arg-type]
    flags = list(map(is_not, column, repeat(None)))
    runs = [sum(1 for _ in group) for _, group in groupby(flags)]
    if not flags[0]:
        runs.insert(0, 0)
    return list(compress(column, flags)), runs  # type: ignore[arg-type]


def _column(column: Sequence[Value], precision: int | None) -> bytes:
    present, runs = _runs(column)
    types = set(map(type, present))
    if not types <= {int, float}:
        bad = next(t for t in types if t not in (int, float))
        raise ValueError(f"a column holds a {bad.__name__}; values must be int, float or None")
    ks = _scaled(present, precision) if present and precision is not None else None
    if ks is None and types == {int, float}:
        ints = _column([v if type(v) is int else None for v in column], None)
        out = bytearray((MIXED,))
        put_varint(out, len(ints))
        return bytes(out + ints + _column([v if type(v) is float else None for v in column], None))
    if ks is None and types == {float}:
        precision = _guess_precision(present)
        ks = None if precision is None else _scaled(present, precision)
    kind = DEC if ks is not None else FLOAT if types == {float} else INT
    out = bytearray((kind,))
    put_varint(out, len(runs))
    for r in runs:
        put_varint(out, r)
    if not present:
        return bytes(out)
    if ks is not None:
        put_varint(out, precision)  # type: ignore[arg-type]
        _put_ints(out, ks)
    elif kind == INT:
        if min(present) < -_HALF or max(present) >= _HALF:
            raise ValueError("a column holds an int outside the signed 64-bit range")
        _put_ints(out, present)  # type: ignore[arg-type]
    else:
        bits = memoryview(array("d", present)).cast("B").cast("Q").tolist()
        put_varint(out, bits[0])
        out += _planes(list(map(xor, islice(bits, 1, None), bits)))
    return bytes(out)


def _read_column(data: bytes, n: int) -> list[Value]:
    """The values of the column blob ``data``, for ``n`` timestamps."""
    kind = data[0]
    if kind == MIXED:
        size, pos = read_varint(data, 1, "a mixed column's length")
        if pos + size > len(data) or not size or data[pos] != INT:
            raise BlockError("a mixed column is malformed")
        ints = _read_column(data[pos : pos + size], n)
        rest = data[pos + size :]
        if not rest or rest[0] not in (DEC, FLOAT):
            raise BlockError("a mixed column is malformed")
        floats = _read_column(rest, n)
        return [a if a is not None else b for a, b in zip(ints, floats)]
    if kind > FLOAT:
        raise BlockError(f"a column has the unknown kind {kind}")
    nruns, pos = read_varint(data, 1, "a column's run count")
    if nruns > n + 1:
        raise BlockError("a column has more gap runs than values")
    runs = [0] * nruns
    for i in range(nruns):
        runs[i], pos = read_varint(data, pos, "a gap run")
    if runs and sum(runs) != n:
        raise BlockError("a column's gap runs do not add up to its length")
    count = sum(runs[::2]) if runs else n
    values: list[int] | list[float] = []
    if count and kind == FLOAT:
        first, pos = read_varint(data, pos, "a float column's first value")
        r, pos = _read_planes(data, pos, count - 1)
        a = array("Q", accumulate(r, xor, initial=first))
        values = array("d", a.tobytes()).tolist()
    elif count and kind == DEC:
        p, pos = read_varint(data, pos, "a column's precision")
        if p > MAX_PRECISION:
            raise BlockError(f"a column has the precision {p}")
        ks, pos = _read_ints(data, pos, count, 0)  # any int makes a float
        values = list(map(truediv, ks, repeat(POW10[p])))
    elif count:
        values, pos = _read_ints(data, pos, count, _HALF)
    if pos != len(data):
        raise BlockError("a column has bytes after its values")
    if not runs:
        return values  # type: ignore[return-value]
    out: list[Value] = []
    at = 0
    for i, run in enumerate(runs):
        if i % 2:
            out += [None] * run
        else:
            out += values[at : at + run]
            at += run
    return out


# --- blocks -------------------------------------------------------------------------------------


def _compressor() -> zstandard.ZstdCompressor:
    cctx: zstandard.ZstdCompressor | None = getattr(_local, "cctx", None)
    if cctx is None:
        cctx = _local.cctx = zstandard.ZstdCompressor(
            level=LEVEL, write_content_size=True, write_checksum=True
        )
    return cctx


def _decompress(data: bytes) -> bytes:
    if len(data) < 2 or data[0] != FORMAT:
        raise BlockError("these bytes are not a sample block (wrong format byte)")
    frame = memoryview(data)[1:]
    try:
        params = zstandard.get_frame_parameters(frame)
        size = params.content_size
        if size == zstandard.CONTENTSIZE_UNKNOWN or size > MAX_DECOMPRESSED:
            raise BlockError(f"a block declares {size} bytes, over the cap of {MAX_DECOMPRESSED}")
        if params.window_size > _MAX_WINDOW:
            raise BlockError(f"a block asks for a {params.window_size}-byte zstd window")
        dctx = getattr(_local, "dctx", None)
        if dctx is None:
            dctx = _local.dctx = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW)
        body: bytes = dctx.decompress(frame, max_output_size=size, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise BlockError(f"a block's zstd frame is corrupt ({exc})") from None
    if len(body) != size:
        raise BlockError("a block is truncated")
    return body


def encode_block(
    timestamps: Sequence[int], columns: Mapping[int, Sequence[Value]], precisions: Mapping[int, int | None]
) -> bytes:
    """One block of ``columns`` (series id -> a value per timestamp); ``ValueError`` for bad input."""
    n = len(timestamps)
    ts = list(timestamps)
    ids = list(columns)
    if n > MAX_TIMESTAMPS or n * len(ids) > MAX_SAMPLES:
        raise ValueError(f"a block holds at most {MAX_TIMESTAMPS} timestamps and {MAX_SAMPLES} samples")
    if set(map(type, ts)) - {int}:
        raise ValueError("timestamps must be ints (ms since the epoch)")
    if not all(map(lt, ts, islice(ts, 1, None))):
        raise ValueError("timestamps must be strictly increasing")
    if ts and not -_HALF <= ts[0] <= ts[-1] < _HALF:
        raise ValueError("timestamps must be in the signed 64-bit range")
    if set(map(type, ids)) - {int} or (ids and not -_HALF <= min(ids) <= max(ids) < _HALF):
        raise ValueError("series ids must be ints in the signed 64-bit range")
    ids.sort()
    blobs = [_column(ts, None)]
    for sid in ids:
        column, p = columns[sid], precisions.get(sid)
        if len(column) != n:
            raise ValueError(f"series {sid} has {len(column)} values for {n} timestamps")
        if p is not None and (type(p) is not int or not 0 <= p <= MAX_PRECISION):
            raise ValueError(f"series {sid} has the precision {p!r}; use 0 to {MAX_PRECISION} or None")
        blobs.append(_column(column, p))
    body = b"".join([_HEAD.pack(n, len(ids)), _le(array("q", ids)), _le(array("I", map(len, blobs))), *blobs])
    if len(body) > MAX_DECOMPRESSED:
        raise ValueError(f"a block would take {len(body)} bytes, over the cap of {MAX_DECOMPRESSED}")
    return bytes((FORMAT,)) + _compressor().compress(body)


def decode_block(data: bytes, only: Collection[int] | None = None) -> Block:
    """``(timestamps, {series id: values})`` of a block, only the series in ``only`` if given.

    Raises ``BlockError`` and nothing else for any bytes; a one-series read decodes one column.
    """
    body = _decompress(data)
    try:
        n, c = _HEAD.unpack_from(body)
        pos = _HEAD.size
        if n > MAX_TIMESTAMPS or 12 * c + 4 > len(body) - pos:
            raise BlockError(f"a block claims {n} timestamps and {c} columns")
        ids = _items(body[pos : pos + 8 * c], "q")
        ends = list(accumulate(_items(body[pos + 8 * c : pos + 12 * c + 4], "I"), initial=pos + 12 * c + 4))
        if ends[-1] != len(body) or len(set(ids)) != c:
            raise BlockError("a block's column table does not match its size")
        pick = range(c) if only is None else [i for i, sid in enumerate(ids) if sid in only]
        if n * len(pick) > MAX_SAMPLES:
            raise BlockError(f"a block claims more than {MAX_SAMPLES} samples")
        if body[ends[0]] != INT:
            raise BlockError("a block's timestamps are not ints")
        ts = cast("list[int]", _read_column(body[ends[0] : ends[1]], n))
        if None in ts or not all(map(lt, ts, islice(ts, 1, None))):
            raise BlockError("a block's timestamps are not strictly increasing")
        cols = {ids[i]: _read_column(body[ends[i + 1] : ends[i + 2]], n) for i in pick}
    except BlockError:
        raise
    except (IndexError, ValueError, OverflowError, struct.error) as exc:  # ProtocolError is a ValueError
        raise BlockError(f"a block is corrupt ({exc})") from None
    return ts, cols


def merge_blocks(a: Block, b: Block) -> Block:
    """The union of two blocks' timestamps and series; ``b``'s values win where both have one."""
    for times, cols in (a, b):
        for sid, col in cols.items():
            if len(col) != len(times):
                raise ValueError(f"series {sid} has {len(col)} values for {len(times)} timestamps")
    ts = sorted(set(a[0]).union(b[0]))
    where = {t: i for i, t in enumerate(ts)}
    out: dict[int, list[Value]] = {}
    for times, cols in (a, b):
        at = [where[t] for t in times]
        for sid, col in cols.items():
            target = out.get(sid)
            if target is None:
                target = out[sid] = [None] * len(ts)
            for i, v in zip(at, col):
                if v is not None:
                    target[i] = v
    return ts, out
