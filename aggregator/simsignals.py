"""The building blocks of the simulated hosts' values: deterministic noise and sums of cosines.

``Trig`` is a sum of cosines with its exact integral (so a counter is the integral of its rate),
``Signal`` a ``Trig`` with windows overridden by another (the failure scenarios), ``unit_random``
a number in [0, 1) from a seed and two keys (splitmix64), ``quantize`` and ``kib`` the rounding a
series' precision and the kernel's kB figures impose.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

MASK = (1 << 64) - 1


def unit_random(seed: int, key: int, n: int) -> float:
    """A number in [0, 1) that depends only on (seed, key, n): splitmix64 of the three."""
    x = seed ^ (key << 56) ^ (n & MASK)
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return (x ^ (x >> 31)) / 18446744073709551616.0


def quantize(x: float, precision: int) -> float:
    """``x`` exactly as a series of this precision carries it (what the receiver decodes)."""
    scale = 10**precision
    return round(x * scale) / scale


def kib(x: float) -> int:
    """Bytes as /proc/meminfo counts them: whole KiB."""
    return max(0, int(x)) // 1024 * 1024


def overlap(s: float, e: float, t0: float, t1: float) -> float:
    """Seconds of ``[s, e)`` inside ``[t0, t1)``."""
    return max(0.0, min(e, t1) - max(s, t0))


class Trig:
    """``const + Σ a·cos(w·t + p)``, t in seconds: values and exact integrals in closed form."""

    __slots__ = ("const", "terms")

    def __init__(self, const: float = 0.0, terms: Iterable[tuple[float, float, float]] = ()) -> None:
        self.const = const
        self.terms = tuple(t for t in terms if t[0])

    @classmethod
    def wave(cls, amp: float, period: float, phase: float = 0.0) -> Trig:
        return cls(0.0, ((amp, 2 * math.pi / period, phase),))

    def at(self, t: float) -> float:
        v, cos = self.const, math.cos
        for a, w, p in self.terms:
            v += a * cos(w * t + p)
        return v

    def integral(self, t0: float, t1: float) -> float:
        v, sin = self.const * (t1 - t0), math.sin
        for a, w, p in self.terms:
            v += a / w * (sin(w * t1 + p) - sin(w * t0 + p))
        return v

    def bounds(self) -> tuple[float, float]:
        """Lowest and highest values it can take (or beyond: the terms' peaks may never meet)."""
        spread = sum(abs(a) for a, _, _ in self.terms)
        return self.const - spread, self.const + spread

    def __add__(self, other: Trig | float) -> Trig:
        if isinstance(other, Trig):
            return Trig(self.const + other.const, self.terms + other.terms)
        return Trig(self.const + other, self.terms)

    def __mul__(self, other: Trig | float) -> Trig:
        if not isinstance(other, Trig):
            return Trig(self.const * other, ((a * other, w, p) for a, w, p in self.terms))
        const = self.const * other.const
        terms = [(a * other.const, w, p) for a, w, p in self.terms]
        terms += [(a * self.const, w, p) for a, w, p in other.terms]
        for a1, w1, p1 in self.terms:  # cos x cos y = (cos(x - y) + cos(x + y)) / 2
            for a2, w2, p2 in other.terms:
                for w, p in ((w1 - w2, p1 - p2), (w1 + w2, p1 + p2)):
                    if abs(w) < 1e-12:
                        const += a1 * a2 / 2 * math.cos(p)
                    else:
                        terms.append((a1 * a2 / 2, abs(w), p if w > 0 else -p))
        return Trig(const, terms)


class Signal:
    """A ``Trig`` replaced by other ``Trig``s in windows ``[start, end)`` (the scenarios)."""

    __slots__ = ("base", "windows")

    def __init__(self, base: Trig, windows: tuple[tuple[float, float, Trig], ...] = ()) -> None:
        self.base = base
        self.windows = windows

    def integral(self, t0: float, t1: float) -> float:
        total, cursor = 0.0, t0
        for s, e, trig in self.windows:
            if e <= cursor or s >= t1:
                continue
            if s > cursor:
                total += self.base.integral(cursor, s)
            cursor, end = max(s, cursor), min(e, t1)
            total += trig.integral(cursor, end)
            cursor = end
        return total + (self.base.integral(cursor, t1) if cursor < t1 else 0.0)

    def override(self, start: float, end: float, trig: Trig) -> Signal:
        """This signal with ``trig`` from ``start`` to ``end`` where no earlier window is."""
        pieces = [(start, end)]
        for s, e, _ in self.windows:
            pieces = [p for a, b in pieces for p in ((a, min(b, s)), (max(a, e), b)) if p[0] < p[1]]
        windows = sorted(self.windows + tuple((a, b, trig) for a, b in pieces), key=lambda w: w[0])
        return Signal(self.base, tuple(windows))
