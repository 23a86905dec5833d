"""The values a frame carries: ``Batch``, ``Series`` and ``Event``."""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

Value: TypeAlias = int | float | None
"""One sample: an int, a float, or ``None`` for a gap."""

Scalar: TypeAlias = str | int | float | bool | bytes | None
"""One attribute of an event."""

Labels: TypeAlias = tuple[tuple[str, str], ...]


class Kind(enum.IntEnum):
    """How a series behaves between samples (it picks the predictor of its delta coding)."""

    GAUGE = 0
    COUNTER = 1


def _sorted_pairs(items: Mapping[str, str] | Iterable[tuple[str, str]]) -> Labels:
    pairs = items.items() if isinstance(items, Mapping) else items
    return tuple(sorted((str(k), str(v)) for k, v in pairs))


@dataclass(frozen=True, slots=True)
class Series:
    """A series definition: metric name, labels, kind and optional precision.

    ``labels`` may be given as a mapping; it is kept as a tuple of ``(name, value)`` pairs sorted by
    name, so two definitions with the same labels are equal and hash alike. ``precision`` is a number
    of decimal digits: finite values are sent rounded to it (and decoded as floats); ``None`` sends
    ints and floats exactly.
    """

    name: str
    labels: Labels = ()
    kind: Kind = Kind.GAUGE
    precision: int | None = None

    def __init__(
        self,
        name: str,
        labels: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        kind: Kind | int = Kind.GAUGE,
        precision: int | None = None,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "labels", _sorted_pairs(labels))
        object.__setattr__(self, "kind", Kind(kind))
        object.__setattr__(self, "precision", precision)

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True, slots=True, eq=False)
class Event:
    """Something that happened at one instant: a service changed state, a command finished."""

    ts: int
    type: str
    attrs: Mapping[str, Scalar] = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (
            self.ts == other.ts
            and self.type == other.type
            and self.attrs.keys() == other.attrs.keys()
            and all(same_value(v, other.attrs[k]) for k, v in self.attrs.items())
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True, eq=False)
class Batch:
    """One agent's samples of several series over one or more instants, plus events.

    ``values[i]`` is the column of ``series[i]``: one value per timestamp, ``None`` for a gap.
    ``(agent_id, boot_id, seq)`` names the batch: the agent draws a new ``boot_id`` when it starts
    and counts ``seq`` up from there. Equality compares floats bit for bit, so NaN equals NaN and
    ``-0.0`` does not equal ``0.0``.
    """

    agent_id: str
    boot_id: int
    seq: int
    timestamps: tuple[int, ...] = ()
    series: tuple[Series, ...] = ()
    values: tuple[tuple[Value, ...], ...] = ()
    host: Mapping[str, str] = field(default_factory=dict)
    events: tuple[Event, ...] = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Batch):
            return NotImplemented
        return (
            self.agent_id == other.agent_id
            and self.boot_id == other.boot_id
            and self.seq == other.seq
            and self.timestamps == other.timestamps
            and self.series == other.series
            and dict(self.host) == dict(other.host)
            and self.events == other.events
            and len(self.values) == len(other.values)
            and all(
                len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
                for a, b in zip(self.values, other.values)
            )
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def sample_count(self) -> int:
        """Number of non-gap values in the batch."""
        return sum(1 for column in self.values for v in column if v is not None)

    def column(self, series: Series) -> tuple[Value, ...]:
        return self.values[self.series.index(series)]


_DOUBLE = struct.Struct("<d")


def same_value(a: object, b: object) -> bool:
    """Equality as the codec promises it: same type, floats bit for bit."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        assert isinstance(b, float)
        if math.isnan(a) or a == 0.0:
            return _DOUBLE.pack(a) == _DOUBLE.pack(b)
    return a == b
