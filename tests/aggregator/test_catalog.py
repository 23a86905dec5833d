"""The series catalog: ids of ``(host, name, labels)``, their fast path, and rollbacks."""

from __future__ import annotations

from pathlib import Path

from edgewatch.aggregator.catalog import SeriesIds, Undo
from edgewatch.aggregator.db import open_writer
from edgewatch.protocol import Kind, Series

CPU = Series("edgewatch_cpu_usage_percent", {"cpu": "all"}, Kind.GAUGE, 1)
NET = Series("node_network_receive_bytes_total", {"device": "eth0"}, Kind.COUNTER)


def _resolve(ids: SeriesIds, conn: object, host: int, series: list[Series]) -> tuple[list[int], list[Undo]]:
    undo: list[Undo] = []
    return ids.resolve(conn, host, series, undo), undo  # type: ignore[arg-type]


def test_new_series_take_the_fast_path_at_once_and_another_hosts_new_series_keep_it(tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "c.db")
    try:
        conn.executemany("INSERT INTO hosts (id, name, created_ms) VALUES (?, ?, 0)", [(1, "a"), (2, "b")])
        ids = SeriesIds()
        a, _ = _resolve(ids, conn, 1, [CPU, NET])
        assert ids._fast == {(1, CPU): a[0], (1, NET): a[1]}  # a key frame's series: fast from the next frame
        b, _ = _resolve(ids, conn, 2, [CPU])
        assert b[0] not in a
        assert ids._fast[(1, CPU)] == a[0]  # a new host did not empty the fast path
        assert _resolve(ids, conn, 1, [CPU, NET])[0] == a
        stored = dict(conn.execute("SELECT id, host FROM series").fetchall())
        assert stored == {a[0]: 1, a[1]: 1, b[0]: 2}
    finally:
        conn.close()


def test_a_rollback_or_a_change_of_kind_never_leaves_a_stale_fast_path(tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "c.db")
    try:
        conn.execute("INSERT INTO hosts (id, name, created_ms) VALUES (1, 'a', 0)")
        ids = SeriesIds()
        conn.execute("BEGIN")
        (gone,), undo = _resolve(ids, conn, 1, [CPU])
        conn.execute("ROLLBACK")
        for back in reversed(undo):
            back()
        assert ids._fast == {}
        assert ids.info(gone) is None
        (sid,), _ = _resolve(ids, conn, 1, [CPU])  # inserted again, with an id the database holds
        assert conn.execute("SELECT kind, precision FROM series WHERE id = ?", (sid,)).fetchone() == (0, 1)
        plain = Series(CPU.name, CPU.labels, Kind.GAUGE, None)  # the agent dropped the precision
        assert _resolve(ids, conn, 1, [plain])[0] == [sid]
        assert (1, CPU) not in ids._fast  # the old definition must not skip the update back
        assert _resolve(ids, conn, 1, [CPU])[0] == [sid]
        assert conn.execute("SELECT precision FROM series WHERE id = ?", (sid,)).fetchone() == (1,)
    finally:
        conn.close()


def test_the_same_series_again_answer_the_held_list_until_a_rollback(tmp_path: Path) -> None:
    conn = open_writer(tmp_path / "c.db")
    try:
        conn.execute("INSERT INTO hosts (id, name, created_ms) VALUES (1, 'a', 0)")
        ids = SeriesIds()
        first, _ = _resolve(ids, conn, 1, (CPU, NET))  # type: ignore[arg-type]
        assert _resolve(ids, conn, 1, (CPU, NET))[0] is first  # type: ignore[arg-type]
        assert _resolve(ids, conn, 1, (NET, CPU))[0] == first[::-1]  # type: ignore[arg-type]
        conn.execute("BEGIN")
        disk = Series("node_disk_io_now", {"device": "sda"})
        _, undo = _resolve(ids, conn, 1, (CPU, NET, disk))  # type: ignore[arg-type]
        conn.execute("ROLLBACK")
        for back in reversed(undo):
            back()
        again, _ = _resolve(ids, conn, 1, (CPU, NET, disk))  # type: ignore[arg-type]
        assert again[:2] == first
        assert conn.execute("SELECT count(*) FROM series WHERE id = ?", (again[2],)).fetchone() == (1,)
    finally:
        conn.close()
