"""The residual stream: which slots have a residual that is not zero, then one token per such slot.

A slot is one non-gap value of an INT or FLOAT column (``columns``); the timestamps come first.
Its residual is taken against a prediction from the two known values before it, ``b`` then ``a``
(in the batch, or at its start the reference's):

- INT gauge: ``a``; INT counter and timestamps (``CLOCK``): ``2a - b`` (``a`` when only one is
  known); nothing known: 0. Arithmetic wraps modulo 2**64 into the signed 64-bit range.
- FLOAT: the residual is ``bits XOR a`` (0 when nothing is known), sent with its 64 bits reversed so
  that differences in the low mantissa bits make short tokens.

Whether a residual is zero is guessed too: not zero when ``a`` or ``b`` is unknown or ``a != b``
(the series moved last time, so it probably moves again), zero otherwise; timestamps are guessed
zero (a steady interval) once ``a`` and ``b`` are known. The stream starts with the slots where the
guess is wrong: their count, then each position as the distance from the previous one (the first
from -1) minus one. Then come the tokens of the slots whose residual is not zero, in slot order:
unsigned LEB128 varints of at most 64 bits, in their shortest form. An INT residual ``r`` is sent
as ``zigzag(r) - 1``, unless the column looks byte-sized (``_shift``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ProtocolError
from .varint import put as _put_varint
from .varint import read as _read_varint

History = tuple[int | None, int | None]  # (last known value, the one before)

GAUGE = 0  # predictors of INT slots
COUNTER = 1
CLOCK = 2  # timestamps: a counter whose residual is guessed zero

_MASK = (1 << 64) - 1
_HALF = 1 << 63
_TWO64 = 1 << 64
_MIN_SHIFT = 9  # a value divisible by 512 (a sector) is probably a byte count
_MAX_SHIFT = 12  # shift by at most 4096 (a page)
_LOW_BITS = (1 << _MIN_SHIFT) - 1
_REVERSE = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def _shift(a: int, b: int | None) -> int:
    """Shift for the next residual of an INT column whose last values are ``b``, ``a``.

    When the last known values are all multiples of 2**9 or more, the residual is most likely one
    too: its token then is ``zigzag(r >> s)`` (never 0), and a residual that does not divide is sent
    as the token 0 followed by ``zigzag(r) - 1``.
    """
    if a == 0:
        return 0
    s = (a & -a).bit_length() - 1
    if b is not None and b != 0:
        s = min(s, (b & -b).bit_length() - 1)
    if s < _MIN_SHIFT:
        return 0
    return min(s, _MAX_SHIFT)


class Encoder:
    """Collects slots into the list of wrong guesses and the token stream."""

    def __init__(self) -> None:
        self.slots = 0
        self.wrong: list[int] = []
        self.tokens = bytearray()

    def _guess(self, nonzero: bool, guess: bool) -> None:
        if nonzero != guess:
            self.wrong.append(self.slots)
        self.slots += 1

    def int_slot(self, x: int, a: int | None, b: int | None, predictor: int) -> None:
        """One INT slot holding ``x``, after the known values ``b``, ``a`` (oldest first)."""
        if a is None:
            r = x
            guess = True
        else:
            r = (x - (2 * a - b if predictor and b is not None else a)) & _MASK
            if r & _HALF:
                r -= _TWO64
            guess = b is None or (predictor != CLOCK and a != b)
        if (r != 0) != guess:
            self.wrong.append(self.slots)
        self.slots += 1
        if r == 0:
            return
        s = 0 if a is None else _shift(a, b)
        if s and r & ((1 << s) - 1) == 0:
            q = r >> s  # not 0, since r is not
            _put_varint(self.tokens, (q << 1) ^ (q >> 63))
            return
        if s:
            self.tokens.append(0)  # escape: the residual does not divide, it follows whole
        _put_varint(self.tokens, (((r << 1) ^ (r >> 63)) & _MASK) - 1)

    def int_column(self, values: Sequence[int | None], history: History, predictor: int) -> None:
        a, b = history
        slot = self.int_slot
        for x in values:
            if x is not None:
                slot(x, a, b, predictor)
                b, a = a, x

    def float_slot(self, x: int, a: int | None, b: int | None) -> None:
        """One FLOAT slot holding the bits ``x``, after the bits ``b``, ``a`` (``None``: unknown)."""
        d = x ^ (a or 0)
        self._guess(d != 0, a is None or b is None or a != b)
        if d:
            _put_varint(self.tokens, int.from_bytes(d.to_bytes(8, "little").translate(_REVERSE), "big"))

    def float_column(self, values: Sequence[int | None], history: History) -> None:
        a, b = history
        for x in values:
            if x is not None:
                self.float_slot(x, a, b)
                b, a = a, x

    def stream(self) -> bytes:
        out = bytearray()
        _put_varint(out, len(self.wrong))
        last = -1
        for i in self.wrong:
            _put_varint(out, i - last - 1)
            last = i
        return bytes(out + self.tokens)


class Decoder:
    """Reads slots back from a stream made by ``Encoder`` for ``slot_count`` slots."""

    def __init__(self, data: bytes, slot_count: int) -> None:
        self.data = data
        self.pos = 0
        self.slot = 0
        self.slot_count = slot_count
        count = self._varint()
        if count > slot_count:
            raise ProtocolError(f"the value stream lists {count} wrong guesses for {slot_count} slots")
        # The wrong guesses are read one by one as the slots go by (a second cursor), so a hostile
        # count costs no memory; here they are only skipped to find where the tokens start.
        self.wrong_left = count
        self.wrong_pos = self.pos
        for _ in range(count):
            self._varint()
        self.next_wrong = -1
        self._next_wrong()

    def _varint(self) -> int:
        u, self.pos = _read_varint(self.data, self.pos, "a varint in the value stream")
        return u

    def _next_wrong(self) -> None:
        if not self.wrong_left:
            self.next_wrong = self.slot_count
            return
        self.wrong_left -= 1
        tokens_at = self.pos
        self.pos = self.wrong_pos
        step = self._varint()
        self.wrong_pos = self.pos
        self.pos = tokens_at
        self.next_wrong += step + 1
        if self.next_wrong >= self.slot_count:
            raise ProtocolError("the value stream names a wrong guess past its last slot")

    def _nonzero(self, guess: bool) -> bool:
        i = self.slot
        self.slot = i + 1
        if i == self.next_wrong:
            self._next_wrong()
            return not guess
        return guess

    def int_slot(self, a: int | None, b: int | None, predictor: int) -> int:
        """The value of the next INT slot, after the known values ``b``, ``a`` (oldest first)."""
        if a is None:
            p = 0
            guess = True
        else:
            p = 2 * a - b if predictor and b is not None else a
            guess = b is None or (predictor != CLOCK and a != b)
        i = self.slot
        self.slot = i + 1
        if i == self.next_wrong:
            self._next_wrong()
            guess = not guess
        if guess:
            data, pos = self.data, self.pos
            # tokens of one or two bytes, the most common, read inline (the rest, and every error, by _varint)
            if pos < len(data) and (t := data[pos]) < 0x80:
                self.pos = pos + 1
            elif pos + 1 < len(data) and 0 < (t2 := data[pos + 1]) < 0x80:
                t = (t & 0x7F) | (t2 << 7)
                self.pos = pos + 2
            else:
                t = self._varint()
            s = 0 if a is None or a & _LOW_BITS else _shift(a, b)  # no shift below 2**_MIN_SHIFT
            if s and t:
                p += ((t >> 1) ^ -(t & 1)) << s
            else:
                z = (self._varint() if s else t) + 1  # after an escape (0) the whole residual follows
                p += (z >> 1) ^ -(z & 1)
        p &= _MASK
        return p - _TWO64 if p & _HALF else p

    def int_column(self, gaps: Sequence[bool], history: History, predictor: int) -> list[int | None]:
        out: list[int | None] = []
        a, b = history
        slot = self.int_slot
        for gap in gaps:
            if gap:
                out.append(None)
            else:
                x = slot(a, b, predictor)
                out.append(x)
                b, a = a, x
        return out

    def float_slot(self, a: int | None, b: int | None) -> int:
        """The bits of the next FLOAT slot, after the bits ``b``, ``a`` (``None``: unknown)."""
        if not self._nonzero(a is None or b is None or a != b):
            return a or 0
        t = self._varint()
        return (a or 0) ^ int.from_bytes(t.to_bytes(8, "little").translate(_REVERSE), "big")

    def float_column(self, gaps: Sequence[bool], history: History) -> list[int | None]:
        out: list[int | None] = []
        a, b = history
        for gap in gaps:
            if gap:
                out.append(None)
            else:
                x = self.float_slot(a, b)
                out.append(x)
                b, a = a, x
        return out

    def finish(self) -> None:
        if self.slot != self.slot_count:
            raise ProtocolError(f"the frame has {self.slot_count} slots but {self.slot} were read")
        if self.pos != len(self.data):
            raise ProtocolError(
                f"the value stream has {len(self.data) - self.pos} bytes after its last value"
            )
