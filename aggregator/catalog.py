"""What the writer keeps in memory next to the database: series ids and acknowledged sequences.

Both are changed inside a job's ``apply`` (so later jobs of the same group commit see them) and
undone by ``aborted`` when the job's savepoint or the whole transaction rolls back. Only the writer
thread touches them.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import NamedTuple

from edgewatch.protocol import Series

U64 = 1 << 64
I64 = 1 << 63


def to_i64(u: int) -> int:
    """An unsigned 64-bit boot id or seq as SQLite's signed integer."""
    return u - U64 if u >= I64 else u


def labels_key(labels: Sequence[tuple[str, str]]) -> str:
    return json.dumps(dict(sorted(labels)), separators=(",", ":"), ensure_ascii=False)


MAX_LISTS = 100_000  # hosts whose last series list is kept (past it the lists start again)


class SeriesInfo(NamedTuple):
    id: int
    kind: int
    precision: int | None


Undo = Callable[[], None]


class SeriesIds:
    """``(host, name, labels)`` → series id, kind and precision; new series are inserted."""

    def __init__(self) -> None:
        self._ids: dict[tuple[int, str, str], SeriesInfo] = {}
        self._by_id: dict[int, SeriesInfo] = {}
        self._fast: dict[tuple[int, Series], int] = {}  # (host, definition) -> id, skips labels_key
        # host -> its last frame's series and their ids: the next frame mostly has the same ones
        self._lists: dict[int, tuple[tuple[Series, ...], list[int]]] = {}
        # a window's series ids -> their precisions and kinds (``meta``): its host's next window
        # mostly has the same ones
        self._metas: dict[tuple[int, ...], tuple[dict[int, int | None], dict[int, int]]] = {}

    def load(self, conn: sqlite3.Connection) -> None:
        for sid, host, name, labels, kind, precision in conn.execute(
            "SELECT id, host, name, labels, kind, precision FROM series"
        ):
            info = SeriesInfo(sid, kind, precision)
            self._ids[(host, name, labels)] = info
            self._by_id[sid] = info

    def info(self, sid: int) -> SeriesInfo | None:
        return self._by_id.get(sid)

    def meta(self, sids: tuple[int, ...]) -> tuple[dict[int, int | None], dict[int, int]]:
        """The precision of each of ``sids`` (None for an unknown id) and the kind of each known
        one. The dicts may be shared with the next call for the same ids: do not change them."""
        held = self._metas.get(sids)
        if held is None:
            infos = [(sid, self._by_id.get(sid)) for sid in sids]
            held = (
                {sid: info.precision if info else None for sid, info in infos},
                {sid: info.kind for sid, info in infos if info},
            )
            if len(self._metas) >= MAX_LISTS:
                self._metas.clear()
            self._metas[sids] = held
        return held

    def resolve(
        self, conn: sqlite3.Connection, host: int, series: Sequence[Series], undo: list[Undo]
    ) -> list[int]:
        """The ids of ``series`` of ``host``, inserting new ones (undone by ``undo``). The list may be
        shared with the next call for the same series: do not change it."""
        held = self._lists.get(host)
        if held is not None and held[0] == series:  # a tuple of the same objects: compared in C
            return held[1]
        out: list[int] = []
        fast = self._fast
        for s in series:
            sid = fast.get((host, s))
            if sid is not None:
                out.append(sid)
                continue
            key = (host, s.name, labels_key(s.labels))
            info = self._ids.get(key)
            kind, precision = int(s.kind), s.precision
            if info is None:
                cur = conn.execute(
                    "INSERT INTO series (host, name, labels, kind, precision) VALUES (?, ?, ?, ?, ?)",
                    (host, s.name, key[2], kind, precision),
                )
                assert cur.lastrowid is not None
                info = SeriesInfo(cur.lastrowid, kind, precision)
                self._set(key, info, None, undo)
            elif (info.kind, info.precision) != (kind, precision):
                conn.execute(
                    "UPDATE series SET kind = ?, precision = ? WHERE id = ?", (kind, precision, info.id)
                )
                self._set(key, SeriesInfo(info.id, kind, precision), info, undo)
                info = self._ids[key]
            fast[(host, s)] = info.id  # the next frames take the fast path
            out.append(info.id)
        if type(series) is tuple:
            if len(self._lists) >= MAX_LISTS:
                self._lists.clear()
            self._lists[host] = (series, out)
        return out

    def _set(
        self, key: tuple[int, str, str], info: SeriesInfo, old: SeriesInfo | None, undo: list[Undo]
    ) -> None:
        """A new series, or new kind and precision of one. A new series leaves the fast path as it
        is (a host that adds series, or a new host, slows no other); a change of kind empties it, as
        its old definition must not match any more, and so does a rollback, so the fast path never
        holds an id the database does not."""
        self._ids[key] = info
        self._by_id[info.id] = info
        if old is not None:
            self._forget_fast()

        def back() -> None:
            self._forget_fast()
            if old is None:
                self._ids.pop(key, None)
                self._by_id.pop(info.id, None)
            else:
                self._ids[key] = old
                self._by_id[old.id] = old

        undo.append(back)

    def _forget_fast(self) -> None:
        self._fast.clear()
        self._lists.clear()
        self._metas.clear()


class Acked:
    """Per ``(host, boot)``, the acknowledged seqs as sorted ``[lo, hi]`` intervals (also in ``acked``)."""

    def __init__(self) -> None:
        self._sets: dict[tuple[int, int], list[list[int]]] = {}

    def _get(self, conn: sqlite3.Connection, key: tuple[int, int]) -> list[list[int]]:
        intervals = self._sets.get(key)
        if intervals is None:
            rows = conn.execute(
                "SELECT lo, hi FROM acked WHERE host = ? AND boot = ? ORDER BY lo", key
            ).fetchall()
            intervals = [[lo, hi] for lo, hi in rows]
            self._sets[key] = intervals
        return intervals

    def seen(self, conn: sqlite3.Connection, host: int, boot: int, seq: int) -> bool:
        intervals = self._get(conn, (host, boot))
        i = bisect.bisect_right(intervals, [seq, I64]) - 1
        return i >= 0 and intervals[i][0] <= seq <= intervals[i][1]

    def add(self, conn: sqlite3.Connection, host: int, boot: int, seq: int, undo: list[Undo]) -> None:
        """Record ``seq`` (not yet seen) as acknowledged, merging neighbouring intervals."""
        key = (host, boot)
        intervals = self._get(conn, key)
        i = bisect.bisect_right(intervals, [seq, I64])  # intervals[i-1].lo <= seq < intervals[i].lo
        left = intervals[i - 1] if i > 0 and intervals[i - 1][1] == seq - 1 else None
        right = intervals[i] if i < len(intervals) and intervals[i][0] == seq + 1 else None
        if left is not None and right is not None:
            conn.execute(
                "UPDATE acked SET hi = ? WHERE host = ? AND boot = ? AND lo = ?",
                (right[1], host, boot, left[0]),
            )
            conn.execute("DELETE FROM acked WHERE host = ? AND boot = ? AND lo = ?", (host, boot, right[0]))
            left[1] = right[1]
            del intervals[i]
        elif left is not None:
            conn.execute(
                "UPDATE acked SET hi = ? WHERE host = ? AND boot = ? AND lo = ?", (seq, host, boot, left[0])
            )
            left[1] = seq
        elif right is not None:
            conn.execute("DELETE FROM acked WHERE host = ? AND boot = ? AND lo = ?", (host, boot, right[0]))
            conn.execute(
                "INSERT INTO acked (host, boot, lo, hi) VALUES (?, ?, ?, ?)", (host, boot, seq, right[1])
            )
            right[0] = seq
        else:
            conn.execute("INSERT INTO acked (host, boot, lo, hi) VALUES (?, ?, ?, ?)", (host, boot, seq, seq))
            intervals.insert(i, [seq, seq])

        def back() -> None:  # the database rolled back: read the intervals again when next needed
            self._sets.pop(key, None)

        undo.append(back)
