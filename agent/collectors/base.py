"""The collector contract: a small object with a ``name`` and ``collect(now)``.

A collector reads one part of the host (a ``/proc`` file, systemd, a textfile directory...) and
returns samples: ``(Series, value)`` pairs. The operating system is a parameter (a proc root, a
command runner, a clock), so tests run collectors on recorded snapshots and fakes.

Series objects are interned by ``SeriesCache`` so a collector that reports the same series every
tick hands the batcher the very same objects: building and comparing them then costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from edgewatch.protocol import Kind, Series

Sample = tuple[Series, int | float | None]
Labels = Iterable[tuple[str, str]] | dict[str, str]


class Collector(Protocol):
    """One part of the host. ``collect`` may raise; the sampler counts it and carries on."""

    name: str
    interval: float  # seconds between collections; 0 means every tick

    def collect(self, now: float) -> Sequence[Sample]: ...


class SeriesCache:
    """Interned ``Series`` by (name, labels): the same definition is the same object every tick.

    Two generations bound it: when the current one holds ``limit`` series it becomes the previous
    one, and a series not asked for since then is forgotten. Series that churn (processes by pid,
    container interfaces) cost memory for a while, not for ever; the ones in use every tick stay.
    """

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._current: dict[tuple[str, tuple[tuple[str, str], ...], int, int | None], Series] = {}
        self._previous: dict[tuple[str, tuple[tuple[str, str], ...], int, int | None], Series] = {}

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def get(
        self, name: str, labels: Labels = (), kind: Kind = Kind.GAUGE, precision: int | None = None
    ) -> Series:
        pairs = tuple(sorted(labels.items() if isinstance(labels, dict) else labels))
        key = (name, pairs, int(kind), precision)
        series = self._current.get(key)
        if series is None:
            series = self._previous.pop(key, None) or Series(name, pairs, kind, precision)
            if len(self._current) >= self.limit:
                self._previous, self._current = self._current, {}
            self._current[key] = series
        return series

    def gauge(self, name: str, labels: Labels = (), precision: int | None = None) -> Series:
        return self.get(name, labels, Kind.GAUGE, precision)

    def counter(self, name: str, labels: Labels = (), precision: int | None = None) -> Series:
        return self.get(name, labels, Kind.COUNTER, precision)


def read_text(path: Path) -> str:
    """A small kernel file, read whole (``/proc`` files report no size, so no ``read_text`` tricks)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()
