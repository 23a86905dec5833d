"""The values a frame carries: ``Batch``, ``Series`` and ``Event``."""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
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


class _Frozen:
    """Instances are values: their attributes are set once, in ``__init__``."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; make a new one")

    def __repr__(self) -> str:
        names: tuple[str, ...] = getattr(type(self), "__slots__", ())
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in names if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class Series(_Frozen):
    """A series definition: metric name, labels, kind and optional precision.

    ``labels`` may be given as a mapping; it is kept as a tuple of ``(name, value)`` pairs sorted by
    name, so two definitions with the same labels are equal and hash alike. ``precision`` is a number
    of decimal digits (0 to 15): finite values are sent rounded to it (and decoded as floats);
    ``None`` sends ints and floats exactly. A definition that breaks a rule or a cap of the format
    raises ``ProtocolError`` when it is made, so every ``Series`` can be sent.
    """

    __slots__ = ("_hash", "kind", "labels", "name", "precision")
    name: str
    labels: Labels
    kind: Kind
    precision: int | None
    _hash: int

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
        init = object.__setattr__
        init(self, "name", name)
        init(self, "labels", pairs)
        init(self, "kind", Kind(kind))
        init(self, "precision", precision)
        init(self, "_hash", hash((name, pairs, int(kind), precision)))

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

    def __repr__(self) -> str:
        return f"Series({self.name!r}, {dict(self.labels)!r}, {self.kind!r}, {self.precision!r})"


class Event(_Frozen):
    """Something that happened at one instant: a service changed state, a command finished."""

    __slots__ = ("attrs", "ts", "type")
    ts: int
    type: str
    attrs: Mapping[str, Scalar]

    def __init__(self, ts: int, type: str, attrs: Mapping[str, Scalar] | None = None) -> None:
        init = object.__setattr__
        init(self, "ts", ts)
        init(self, "type", type)
        init(self, "attrs", {} if attrs is None else attrs)

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


class Batch(_Frozen):
    """One agent's samples of several series over one or more instants, plus events.

    ``values[i]`` is the column of ``series[i]``: one value per timestamp, ``None`` for a gap.
    ``(agent_id, boot_id, seq)`` names the batch: the agent draws a new ``boot_id`` when it starts
    and counts ``seq`` up from there. Equality compares floats bit for bit, so NaN equals NaN and
    ``-0.0`` does not equal ``0.0``.
    """

    __slots__ = ("agent_id", "boot_id", "events", "host", "seq", "series", "timestamps", "values")
    agent_id: str
    boot_id: int
    seq: int
    timestamps: Sequence[int]
    series: Sequence[Series]
    values: Sequence[Sequence[Value]]
    host: Mapping[str, str]
    events: Sequence[Event]

    def __init__(  # noqa: PLR0917 - a value type, made positionally in tests and tools
        self,
        agent_id: str,
        boot_id: int,
        seq: int,
        timestamps: Sequence[int] = (),
        series: Sequence[Series] = (),
        values: Sequence[Sequence[Value]] = (),
        host: Mapping[str, str] | None = None,
        events: Sequence[Event] = (),
    ) -> None:
        init = object.__setattr__
        init(self, "agent_id", agent_id)
        init(self, "boot_id", boot_id)
        init(self, "seq", seq)
        init(self, "timestamps", timestamps)
        init(self, "series", series)
        init(self, "values", values)
        init(self, "host", {} if host is None else host)
        init(self, "events", events)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Batch):
            return NotImplemented
        return (
            self.agent_id == other.agent_id
            and self.boot_id == other.boot_id
            and self.seq == other.seq
            and tuple(self.timestamps) == tuple(other.timestamps)
            and tuple(self.series) == tuple(other.series)
            and dict(self.host) == dict(other.host)
            and tuple(self.events) == tuple(other.events)
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
