"""Validation of batches, series and events against the format's rules and caps (``limits``)."""

from __future__ import annotations

from collections.abc import Mapping

from . import limits as L
from .errors import ProtocolError
from .types import Batch, Event, Series

_U64 = 1 << 64


def check_name(what: str, s: object, cap: int, *, empty_ok: bool = False) -> str:
    if not isinstance(s, str):
        raise ProtocolError(f"{what} must be a string, not {type(s).__name__}")
    if not s and not empty_ok:
        raise ProtocolError(f"{what} is empty; give it a name")
    if len(s) > cap:
        raise ProtocolError(f"{what} is {len(s)} characters, over the cap of {cap}")
    return s


def check_uint64(what: str, n: object) -> int:
    if type(n) is not int or not 0 <= n < _U64:
        raise ProtocolError(f"{what} must be an unsigned 64-bit integer, not {n!r}")
    return n


def check_int64(what: str, n: object) -> int:
    if type(n) is not int or not -(1 << 63) <= n < (1 << 63):
        raise ProtocolError(f"{what} must be a signed 64-bit integer, not {n!r}")
    return n


def check_strmap(what: str, m: object, count_cap: int, value_cap: int) -> dict[str, str]:
    if not isinstance(m, Mapping):
        raise ProtocolError(f"{what} must be a map of strings, not {type(m).__name__}")
    if len(m) > count_cap:
        raise ProtocolError(f"{what} has {len(m)} entries, over the cap of {count_cap}")
    for k, v in m.items():
        check_name(f"a key of {what}", k, L.MAX_NAME_LEN)
        check_name(f"the value of {what}[{k!r}]", v, value_cap, empty_ok=True)
    return dict(m)


def check_batch(batch: Batch) -> None:
    if not isinstance(batch, Batch):
        raise ProtocolError(f"encode takes a Batch, not {type(batch).__name__}")
    check_name("the agent id", batch.agent_id, L.MAX_NAME_LEN)
    check_uint64("the boot id", batch.boot_id)
    check_uint64("seq", batch.seq)
    check_strmap("the host metadata", batch.host, L.MAX_HOST_FIELDS, L.MAX_STRING_LEN)
    n = len(batch.timestamps)
    if n > L.MAX_TIMESTAMPS:
        raise ProtocolError(f"the batch has {n} timestamps, over the cap of {L.MAX_TIMESTAMPS}")
    if len(batch.series) > L.MAX_SERIES:
        raise ProtocolError(f"the batch has {len(batch.series)} series, over the cap of {L.MAX_SERIES}")
    if len(batch.series) * n > L.MAX_SAMPLES:
        raise ProtocolError(f"the batch has {len(batch.series) * n} samples, over the cap of {L.MAX_SAMPLES}")
    if len(batch.events) > L.MAX_EVENTS:
        raise ProtocolError(f"the batch has {len(batch.events)} events, over the cap of {L.MAX_EVENTS}")
    previous: int | None = None
    for ts in batch.timestamps:
        check_int64("a timestamp", ts)
        if previous is not None and ts <= previous:
            raise ProtocolError("timestamps must increase strictly within a batch")
        previous = ts
    if len(batch.values) != len(batch.series):
        raise ProtocolError(f"the batch has {len(batch.series)} series but {len(batch.values)} value columns")
    for s in batch.series:
        if type(s) is not Series:
            raise ProtocolError(f"a series definition must be a Series, not {type(s).__name__}")
    if len(set(batch.series)) != len(batch.series):
        twice = next(s for i, s in enumerate(batch.series) if s in batch.series[:i])
        raise ProtocolError(f"series {twice.name}{dict(twice.labels)} appears twice in the batch")
    for s, column in zip(batch.series, batch.values):
        if len(column) != n:
            raise ProtocolError(
                f"series {s.name!r} has {len(column)} values for {n} timestamps; use None for a gap"
            )
    for e in batch.events:
        check_event(e)


def check_event(e: object) -> Event:
    if not isinstance(e, Event):
        raise ProtocolError(f"an event must be an Event, not {type(e).__name__}")
    check_int64("an event timestamp", e.ts)
    check_name("an event type", e.type, L.MAX_NAME_LEN)
    if not isinstance(e.attrs, Mapping) or len(e.attrs) > L.MAX_EVENT_ATTRS:
        raise ProtocolError(
            f"the attributes of a {e.type!r} event must be a map of at most {L.MAX_EVENT_ATTRS}"
        )
    for k, v in e.attrs.items():
        check_name(f"an attribute name of a {e.type!r} event", k, L.MAX_NAME_LEN)
        if isinstance(v, (str, bytes)):
            if len(v) > L.MAX_EVENT_STRING_LEN:
                raise ProtocolError(f"event attribute {k!r} is over the cap of {L.MAX_EVENT_STRING_LEN}")
        elif type(v) is int:
            check_int64(f"event attribute {k!r}", v)
        elif v is not None and type(v) not in (bool, float):
            raise ProtocolError(
                f"event attribute {k!r} is a {type(v).__name__}; use str, int, float, bool, bytes or None"
            )
    return e
