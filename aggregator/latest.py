"""The newest sample of every series of every host, in memory, for ``/federate``.

An ingest observer updates it after each committed frame; a back-filled frame (older than what the
host sent last) changes a series only where it is newer than the value held. At the start it is
filled from the database (`newest_in_db`, in a reader thread, a few hosts per job) with each host's
last ten minutes, newer values from pushes meanwhile winning. It holds one entry per series
(about 100 bytes each), so it is bounded by the series count.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from edgewatch.protocol import Batch, ProtocolError, Series

from .frames import Value
from .query import raw_samples
from .schema import BLOCK_MS

Entry = tuple[int, int | float]  # (timestamp ms, value)
_last = itemgetter(-1)


@dataclass
class _Host:
    newest: int = -(1 << 62)  # the newest timestamp seen
    values: dict[Series, Entry] = field(default_factory=dict)
    pending: Batch | None = None  # the newest frame, not yet in ``values``


class Latest:
    def __init__(self) -> None:
        self.hosts: dict[str, _Host] = {}

    def observe(self, host: str, batch: Batch, now_ms: int) -> None:
        """The ingest observer (on the event loop, after the commit).

        The newest frame is only held (``pending``); it goes into ``values`` when a frame comes
        that does not replace every value of it, or a back-fill, or when a copy is asked for. An
        agent sends the same series every time, so most frames replace the one before outright and
        cost no loop over their series here (this ran on the event loop for every push)."""
        stamps = batch.timestamps
        if not stamps:
            return
        h = self.hosts.get(host)
        if h is None:
            h = self.hosts[host] = _Host()
        if stamps[-1] >= h.newest:  # the usual case: a newer frame
            h.newest = stamps[-1]
            if h.pending is not None and not _replaces(batch, h.pending):
                _fold(h.values, h.pending)
            h.pending = batch
            return
        self.merge(
            host,
            ((s, found) for s, col in zip(batch.series, batch.values) if (found := _last_of(stamps, col))),
        )

    def merge(self, host: str, items: Iterable[tuple[Series, Entry]]) -> None:
        """Keep each of ``items`` that is newer than the value held."""
        h = self.hosts.get(host)
        if h is None:
            h = self.hosts[host] = _Host()
        if h.pending is not None:
            _fold(h.values, h.pending)
            h.pending = None
        values = h.values
        for s, entry in items:
            held = values.get(s)
            if held is None or held[0] < entry[0]:
                values[s] = entry
                h.newest = max(h.newest, entry[0])

    def forget(self, host: str) -> None:
        self.hosts.pop(host, None)

    def snapshot(self) -> list[tuple[str, list[tuple[Series, Entry]]]]:
        """A copy, made in another thread: each ``list(...)`` runs under the GIL in one C call, and
        a held frame is added to the copy (frames are never changed), never to ``values``."""
        out = []
        for name, h in list(self.hosts.items()):
            pending = h.pending  # before the copy: a frame folded meanwhile is then in both
            items = list(h.values.items())
            if pending is not None:
                values = dict(items)
                _fold(values, pending)
                items = list(values.items())
            out.append((name, items))
        return out

    @property
    def series_count(self) -> int:
        return sum(
            max(len(h.values), len(h.pending.series) if h.pending else 0) for h in list(self.hosts.values())
        )


def _replaces(batch: Batch, older: Batch) -> bool:
    """Whether ``batch`` has a newest value for every series of ``older`` (in C: the same series
    objects, and no gap in the last sample)."""
    return tuple(batch.series) == tuple(older.series) and None not in map(_last, batch.values)


def _fold(values: dict[Series, Entry], batch: Batch) -> None:
    """Put the newest sample of each series of ``batch``, a frame at least as new as any in
    ``values``, into ``values`` (a gap keeps the value before unless the frame has a newer one)."""
    stamps = batch.timestamps
    last = stamps[-1]
    for s, column in zip(batch.series, batch.values):
        v = column[-1]
        if v is not None:
            values[s] = (last, v)
        elif (found := _last_of(stamps, column)) is not None and found[0] >= values.get(s, (-1, 0))[0]:
            values[s] = found


def _last_of(stamps: Sequence[int], column: Sequence[Value]) -> Entry | None:
    for i in range(len(column) - 1, -1, -1):
        v = column[i]
        if v is not None:
            return stamps[i], v
    return None


def hosts_to_fill(conn: sqlite3.Connection, since_ms: int) -> list[tuple[int, str, int]]:
    """(id, name, last seen) of the hosts seen since ``since_ms``, not revoked."""
    return conn.execute(
        "SELECT id, name, last_seen_ms FROM hosts"
        " WHERE revoked_ms IS NULL AND last_seen_ms IS NOT NULL AND last_seen_ms >= ?",
        (since_ms,),
    ).fetchall()


def newest_in_db(
    conn: sqlite3.Connection, hosts: Sequence[tuple[int, str, int]]
) -> list[tuple[str, list[tuple[Series, Entry]]]]:
    """The newest sample of each series of these hosts within ten minutes of the host's last push."""
    out = []
    for hid, name, last_seen in hosts:
        defs: dict[int, Series] = {}
        for sid, metric, labels, kind, precision in conn.execute(
            "SELECT id, name, labels, kind, precision FROM series WHERE host = ?", (hid,)
        ):
            try:
                defs[sid] = Series(metric, json.loads(labels), kind, precision)
            except (ProtocolError, ValueError):
                continue
        if not defs:
            continue
        samples = raw_samples(conn, hid, set(defs), last_seen - BLOCK_MS, last_seen + 1)
        items = [
            (defs[sid], (ts[-1], vs[-1])) for sid, (ts, vs) in samples.items() if ts and vs[-1] is not None
        ]
        out.append((name, items))
    return out
