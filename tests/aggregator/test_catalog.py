"""The series catalog: ids of ``(host, name, labels)``, their fast path, and rollbacks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from edgewatch.aggregator.catalog import SeriesIds, Undo
from edgewatch.aggregator.db import open_writer
from edgewatch.protocol import Kind, Series

CPU = Series("edgewatch_cpu_usage_percent", {"cpu": "all"}, Kind.GAUGE, 1)
NET = Series("node_network_receive_bytes_total", {"device": "eth0"}, Kind.COUNTER)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A database with hosts 1 and 2."""
    db = open_writer(tmp_path / "c.db")
    db.executemany("INSERT INTO hosts (id, name, created_ms) VALUES (?, ?, 0)", [(1, "a"), (2, "b")])
    try:
        yield db
    finally:
        db.close()


def _resolve(
    ids: SeriesIds, conn: sqlite3.Connection, host: int, series: Sequence[Series]
) -> tuple[list[int], list[Undo]]:
    undo: list[Undo] = []
    return ids.resolve(conn, host, series, undo), undo


def _rolled_back(ids: SeriesIds, conn: sqlite3.Connection, host: int, series: Sequence[Series]) -> list[int]:
    """Resolve ``series`` in a transaction that rolls back (as the writer undoes a failed commit)."""
    conn.execute("BEGIN")
    sids, undo = _resolve(ids, conn, host, series)
    conn.execute("ROLLBACK")
    for back in reversed(undo):
        back()
    return sids


def test_new_series_take_the_fast_path_at_once_and_another_hosts_new_series_keep_it(
    conn: sqlite3.Connection,
) -> None:
    ids = SeriesIds()
    a, _ = _resolve(ids, conn, 1, [CPU, NET])
    assert ids._fast == {(1, CPU): a[0], (1, NET): a[1]}  # a key frame's series: fast from the next frame
    b, _ = _resolve(ids, conn, 2, [CPU])
    assert b[0] not in a
    assert ids._fast[(1, CPU)] == a[0]  # a new host did not empty the fast path
    assert _resolve(ids, conn, 1, [CPU, NET])[0] == a
    stored = dict(conn.execute("SELECT id, host FROM series").fetchall())
    assert stored == {a[0]: 1, a[1]: 1, b[0]: 2}


def test_a_rollback_or_a_change_of_kind_never_leaves_a_stale_fast_path(conn: sqlite3.Connection) -> None:
    ids = SeriesIds()
    (gone,) = _rolled_back(ids, conn, 1, [CPU])
    assert ids._fast == {}
    assert ids.info(gone) is None
    (sid,), _ = _resolve(ids, conn, 1, [CPU])  # inserted again, with an id the database holds
    assert conn.execute("SELECT kind, precision FROM series WHERE id = ?", (sid,)).fetchone() == (0, 1)
    plain = Series(CPU.name, CPU.labels, Kind.GAUGE, None)  # the agent dropped the precision
    assert _resolve(ids, conn, 1, [plain])[0] == [sid]
    assert (1, CPU) not in ids._fast  # the old definition must not skip the update back
    assert _resolve(ids, conn, 1, [CPU])[0] == [sid]
    assert conn.execute("SELECT precision FROM series WHERE id = ?", (sid,)).fetchone() == (1,)


def test_the_same_series_again_answer_the_held_list_until_a_rollback(conn: sqlite3.Connection) -> None:
    ids = SeriesIds()
    first, _ = _resolve(ids, conn, 1, (CPU, NET))
    assert _resolve(ids, conn, 1, (CPU, NET))[0] is first
    assert _resolve(ids, conn, 1, (NET, CPU))[0] == first[::-1]
    disk = Series("node_disk_io_now", {"device": "sda"})
    _rolled_back(ids, conn, 1, (CPU, NET, disk))
    again, _ = _resolve(ids, conn, 1, (CPU, NET, disk))
    assert again[:2] == first
    assert conn.execute("SELECT count(*) FROM series WHERE id = ?", (again[2],)).fetchone() == (1,)


def test_a_windows_precisions_and_kinds_are_kept_until_a_series_changes_or_rolls_back(
    conn: sqlite3.Connection,
) -> None:
    ids = SeriesIds()
    (cpu, net), _ = _resolve(ids, conn, 1, [CPU, NET])
    precisions, kinds = ids.meta((cpu, net, 999))
    assert (precisions, kinds) == ({cpu: 1, net: None, 999: None}, {cpu: Kind.GAUGE, net: Kind.COUNTER})
    assert ids.meta((cpu, net, 999))[0] is precisions  # the next window of the host: no lookups
    _resolve(ids, conn, 2, [CPU])  # a new series elsewhere changes nothing here
    assert ids.meta((cpu, net, 999))[0] is precisions
    _resolve(ids, conn, 1, [Series(CPU.name, CPU.labels, Kind.GAUGE, 2), NET])  # a new precision
    assert ids.meta((cpu, net, 999))[0] == {cpu: 2, net: None, 999: None}
    _rolled_back(ids, conn, 1, [Series(CPU.name, CPU.labels, Kind.GAUGE, 3), NET])
    assert ids.meta((cpu, net, 999))[0] == {cpu: 2, net: None, 999: None}  # the rollback's 3 is gone
