"""The samples the rule engine keeps for one series, and the reducers over them without re-sorting.

A `Window` holds finite samples in time order in two compact arrays (16 bytes a sample), appends
only samples newer than its last, and drops the oldest from the front. ``value`` finds the rule's
window ``(now - window, now]`` by bisection and reduces that slice; the results equal
``reducers.reduce`` over the same samples (tests check it), at a cost that does not grow with the
samples kept for longer rules on the same metric.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence

from .reducers import fit_at, mean, zscore

# dropped samples at the front before the arrays are rewritten (and only once they are at least half
# of them): a window holds at most twice what its rules read plus this, however long it lives. (At 512
# a five-minute window of 10 s samples grew for 85 minutes, to 15 times what it keeps.)
COMPACT_AT = 64


class Window:
    __slots__ = ("head", "ts", "vs")

    def __init__(self) -> None:
        self.ts: array[int] = array("q")
        self.vs: array[float] = array("d")
        self.head = 0  # samples before this index are dropped

    def __len__(self) -> int:
        return len(self.ts) - self.head

    @property
    def newest(self) -> int | None:
        return self.ts[-1] if len(self.ts) > self.head else None

    def extend(self, stamps: Iterable[int], values: Iterable[float | int | None]) -> None:
        """Append the finite samples newer than the newest kept (older ones are back-log: ignored)."""
        last = self.newest
        for t, v in zip(stamps, values):
            if v is None or (last is not None and t <= last):
                continue
            f = float(v)
            if math.isfinite(f):
                self.ts.append(t)
                self.vs.append(f)
                last = t

    def drop_before(self, oldest_ms: int) -> None:
        self.head = max(self.head, bisect_left(self.ts, oldest_ms, self.head))
        if self.head >= COMPACT_AT and self.head * 2 >= len(self.ts):
            del self.ts[: self.head]
            del self.vs[: self.head]
            self.head = 0

    def span(self, now_ms: int, window_s: float) -> tuple[int, int]:
        """Index range of the samples with ``now - window < ts <= now``."""
        start = now_ms - round(window_s * 1000)
        return bisect_right(self.ts, start, self.head), bisect_right(self.ts, now_ms, self.head)

    def value(
        self,
        reducer: str,
        now_ms: int,
        window_s: float,
        *,
        predict_in_s: float = 0.0,
        baseline: Sequence[float | None] = (),
    ) -> float | None:
        """The named reducer over the rule's window (as ``reducers.reduce``)."""
        lo, hi = self.span(now_ms, window_s)
        if lo >= hi:
            return zscore(None, baseline) if reducer == "zscore" else None
        vs = self.vs
        if reducer == "last":
            return vs[hi - 1]
        if reducer == "avg":
            return mean(vs[lo:hi])
        if reducer == "min":
            return min(vs[lo:hi])
        if reducer == "max":
            return max(vs[lo:hi])
        if reducer == "rate":
            return _rate(self.ts[lo:hi], vs[lo:hi])
        if reducer == "predict":
            return fit_at(self.ts[lo:hi], vs[lo:hi], now_ms, predict_in_s)
        if reducer == "zscore":
            return zscore(mean(vs[lo:hi]), baseline)
        raise ValueError(f"reducer {reducer!r} is unknown")


def _rate(ts: Sequence[int], vs: Sequence[float]) -> float | None:
    if len(ts) < 2 or ts[-1] == ts[0]:
        return None
    increase = 0.0
    before = vs[0]
    for after in vs[1:]:
        increase += after - before if after >= before else after
        before = after
    return increase / ((ts[-1] - ts[0]) / 1000)
