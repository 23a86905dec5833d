"""The values a frame carries: ``Batch``, ``Series`` and ``Event``."""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from .errors import ProtocolError
from .limits import MAX_LABELS, MAX_NAME_LEN, MAX_PRECISION, MAX_STRING_LEN

Value: TypeAlias = int | float | None
"""One sample: an int, a float, or ``None`` for a gap."""

Scalar: TypeAlias = str | int | float | bool | bytes | None
"""One attribute of an event."""

Labels: TypeAlias = tuple[tuple[str, str], ...]


class Kind(enum.IntEnum):
    """How a series behaves between samples (it picks the predictor of its delta coding)."""

    GAUGE = 0
    COUNTER = 1


def _labels(items: Mapping[str, str] | Iterable[tuple[str, str]], name: str) -> Labels:
    pairs = tuple(items.items() if isinstance(items, Mapping) else items)
    if len(pairs) > MAX_LABELS:
        raise ProtocolError(f"series {name!r} has {len(pairs)} labels, over the cap of {MAX_LABELS}")
    for k, v in pairs:
        if type(k) is not str or not 0 < len(k) <= MAX_NAME_LEN:
            raise ProtocolError(f"series {name!r} has a label name {k!r}; use a short non-empty string")
        if type(v) is not str or len(v) > MAX_STRING_LEN:
            raise ProtocolError(
                f"label {k!r} of series {name!r} must be a string of at most {MAX_STRING_LEN}"
            )
    if len({k for k, _ in pairs}) != len(pairs):
        raise ProtocolError(f"series {name!r} has the same label name twice")
    return tuple(sorted(pairs))


@dataclass(frozen=True, slots=True, eq=False)
class Series:
    """A series definition: metric name, labels, kind and optional precision.

    ``labels`` may be given as a mapping; it is kept as a tuple of ``(name, value)`` pairs sorted by
    name, so two definitions with the same labels are equal and hash alike. ``precision`` is a number
    of decimal digits (0 to 15): finite values are sent rounded to it (and decoded as floats);
    ``None`` sends ints and floats exactly. A definition that breaks a rule or a cap of the format
    raises ``ProtocolError`` when it is made, so every ``Series`` can be sent.
    """

    name: str
    labels: Labels = ()
    kind: Kind = Kind.GAUGE
    precision: int | None = None
    _hash: int = field(default=0, repr=False)

    def __init__(
        self,
        name: str,
        labels: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        kind: Kind | int = Kind.GAUGE,
        precision: int | None = None,
    ) -> None:
        if type(name) is not str or not 0 < len(name) <= MAX_NAME_LEN:
            raise ProtocolError(f"metric name {name!r} is not a non-empty string of at most {MAX_NAME_LEN}")
        if type(kind) not in (int, Kind) or kind not in (0, 1):
            raise ProtocolError(f"series {name!r} has kind {kind!r}; use Kind.GAUGE or Kind.COUNTER")
        if precision is not None and (type(precision) is not int or not 0 <= precision <= MAX_PRECISION):
            raise ProtocolError(
                f"series {name!r} has precision {precision!r}; use a whole number from 0 to {MAX_PRECISION}"
            )
        pairs = _labels(labels, name)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "labels", pairs)
        object.__setattr__(self, "kind", Kind(kind))
        object.__setattr__(self, "precision", precision)
        object.__setattr__(self, "_hash", hash((name, pairs, int(kind), precision)))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Series):
            return NotImplemented
        return (
            self._hash == other._hash
            and self.name == other.name
            and self.labels == other.labels
            and self.kind == other.kind
            and self.precision == other.precision
        )

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
