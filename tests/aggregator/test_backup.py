"""``edgewatch admin backup`` and ``restore`` with the real aggregator ingesting: the backup holds
every acknowledged frame, a restore refuses a running aggregator, and a restored aggregator serves
the same data with the same signing key."""

from __future__ import annotations

import http.client
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from edgewatch.aggregator.backup import BackupError, inspect, restore
from edgewatch.aggregator.db import DB_NAME, open_writer
from edgewatch.aggregator.schema import MIGRATIONS
from edgewatch.protocol import Batch, Series, encode

from .procs import AggregatorProcess, edgewatch, free_port

pytestmark = pytest.mark.timeout(240)
AGENTS = [f"bk-{i}" for i in range(6)]
FRAMES = 3000


def _post(url: str, path: str, body: bytes, token: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Authorization": f"Bearer {token}"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _frames(agent: str, start: int) -> list[Batch]:
    series = [Series("seq", precision=0), Series("node_load1", precision=2)]
    return [
        Batch(agent, 7, seq, [start + seq * 1000], series, [[seq], [round(seq % 97 / 10, 2)]])
        for seq in range(1, FRAMES + 1)
    ]


def _seq_values(agg: AggregatorProcess, token: str, agent: str, start: int) -> list[int]:
    body = agg.get(
        f"/api/v1/query?host={agent}&name=seq&start={start}&end={start + (FRAMES + 1) * 1000}&tier=raw", token
    )
    return [int(p[2]) for p in body["series"][0]["points"]]


def test_a_backup_taken_while_agents_push_holds_every_acknowledged_frame_and_restores(tmp_path: Path) -> None:
    agg = AggregatorProcess(tmp_path, storage__compact_interval="1s")
    agg.start()
    tokens = {a: agg.admin("add-agent", a) for a in AGENTS}
    start = int(time.time() * 1000) - 3_600_000  # closed windows: compaction runs during the backup too
    acked: dict[str, list[int]] = {a: [] for a in AGENTS}
    stop = threading.Event()

    def pusher(agent: str) -> None:
        for b in _frames(agent, start):
            if stop.is_set():
                return
            status, body = _post(agg.url, "/api/v1/push", encode(b), tokens[agent])
            assert status == 200, body
            acked[agent].append(b.seq)

    threads = [threading.Thread(target=pusher, args=(a,)) for a in AGENTS]
    backup = tmp_path / "backups" / "edgewatch.db"
    backup.parent.mkdir()
    try:
        for t in threads:
            t.start()
        while sum(len(s) for s in acked.values()) < 1500:
            time.sleep(0.01)
        before = {a: set(s) for a, s in acked.items()}  # acknowledged before the backup began
        count_before = sum(len(s) for s in before.values())
        done = edgewatch(
            "admin", "--data-dir", str(agg.data_dir), "backup", str(backup), "--pages", "4", "--json"
        )
        count_after = sum(len(s) for s in acked.values())
        stop.set()
        for t in threads:
            t.join()
        assert done.returncode == 0, done.stderr
        info = json.loads(done.stdout)
        assert info["steps"] > 10  # a few pages at a time, not one big lock
        assert count_after > count_before  # ingest went on while the backup ran
        viewer = agg.admin("add-token", "--role", "viewer")
        live = {a: _seq_values(agg, viewer, a, start) for a in AGENTS}
    finally:
        stop.set()
        agg.stop()

    assert info["keys"] == ["signing.key", "vapid_private.pem", "vapid_public.txt"]
    assert backup.stat().st_mode & 0o777 == 0o600
    assert not list(backup.parent.glob(".*tmp*"))  # the temp file became the backup
    conn = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one file, no WAL beside it
    conn.close()
    assert not backup.with_name(backup.name + "-wal").exists()

    # the backup restored into a new data dir serves every frame acknowledged before it began
    second = tmp_path / "second"
    second.mkdir()
    restored = AggregatorProcess(second)
    done = edgewatch("admin", "--data-dir", str(restored.data_dir), "restore", str(backup))
    assert done.returncode == 0, done.stderr
    assert (restored.data_dir / "signing.key").read_bytes() == (agg.data_dir / "signing.key").read_bytes()
    restored.start()
    try:
        viewer = restored.admin("add-token", "--role", "viewer")
        for a in AGENTS:
            values = _seq_values(restored, viewer, a, start)
            assert values == sorted(set(values)), a  # each frame once
            assert before[a] <= set(values), (a, sorted(before[a] - set(values))[:5])
            assert set(values) <= set(live[a])  # nothing that the live aggregator lacks
    finally:
        restored.stop()


def test_restore_refuses_while_the_aggregator_runs_and_keeps_the_old_database_aside(tmp_path: Path) -> None:
    agg = AggregatorProcess(tmp_path)
    agg.start()
    try:
        agg.admin("add-agent", "kept")
        backup = tmp_path / "b.db"
        agg.admin("backup", str(backup))
        agg.admin("add-agent", "after-the-backup")
        done = edgewatch("admin", "--data-dir", str(agg.data_dir), "restore", str(backup))
        assert done.returncode == 1
        assert "the aggregator is running on" in done.stderr
        assert "stop it first" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert "after-the-backup" in agg.admin("--json", "list-agents")  # nothing was replaced
        # and a second aggregator on the same data dir does not start either
        twin = edgewatch(
            "aggregator", "--data-dir", str(agg.data_dir), "--listen", f"127.0.0.1:{free_port()}"
        )
        assert twin.returncode == 1
        assert f"{agg.data_dir} is in use by an edgewatch aggregator (pid {agg.proc.pid})" in twin.stderr
    finally:
        agg.stop()
    done = edgewatch("admin", "--data-dir", str(agg.data_dir), "restore", str(backup))
    assert done.returncode == 0, done.stderr
    aside = sorted(agg.data_dir.glob(f"{DB_NAME}.before-restore-*"))
    assert len(aside) == 1
    assert str(aside[0]) in done.stdout
    agg.start()
    try:
        names = [a["name"] for a in json.loads(agg.admin("--json", "list-agents"))]
        assert names == ["kept"]
    finally:
        agg.stop()
    conn = sqlite3.connect(aside[0])  # the old database opens as it was: both agents
    assert {r[0] for r in conn.execute("SELECT name FROM hosts")} == {"kept", "after-the-backup"}
    conn.close()


def test_restore_checks_the_file_before_it_touches_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    conn = open_writer((tmp_path / "good").with_suffix(".db"))
    conn.close()
    restore(tmp_path / "good.db", data)
    original = (data / DB_NAME).read_bytes()

    newer = tmp_path / "newer.db"
    conn = open_writer(newer)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    damaged = tmp_path / "damaged.db"
    raw = bytearray((tmp_path / "good.db").read_bytes())
    raw[4096 * 3 : 4096 * 3 + 64] = os.urandom(64)  # garbage over a b-tree page
    damaged.write_bytes(raw)
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)").connection.close()
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)

    cases = {
        newer: "newer than this edgewatch knows",
        damaged: "is damaged (integrity_check",
        foreign: "is not an edgewatch database",
        text: "is not a SQLite database",
        tmp_path / "missing.db": "there is no backup file",
    }
    for path, message in cases.items():
        with pytest.raises(BackupError, match=message.replace("(", r"\(")):
            restore(path, data)
        assert (data / DB_NAME).read_bytes() == original, path
        assert not list(data.glob("*.before-restore-*")), path
    assert inspect(tmp_path / "good.db") == (len(MIGRATIONS), 0)
    done = edgewatch("admin", "--data-dir", str(data), "restore", str(newer))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "upgrade edgewatch first" in done.stderr


def test_backup_says_what_is_wrong_in_one_sentence(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    done = edgewatch("admin", "--data-dir", str(empty), "backup", str(tmp_path / "b.db"))
    assert (done.returncode, done.stderr.strip()) == (
        1,
        f"edgewatch admin: there is no database at {empty / DB_NAME}; check --data-dir",
    )
    assert not empty.exists()  # a backup never creates a data dir or a database
    conn = open_writer(tmp_path / DB_NAME)
    conn.close()
    done = edgewatch("admin", "--data-dir", str(tmp_path), "backup", str(tmp_path / "no" / "b.db"))
    assert done.returncode == 1
    assert "does not exist; create it or pick another FILE" in done.stderr
    done = edgewatch("admin", "--data-dir", str(tmp_path), "backup", str(tmp_path / DB_NAME))
    assert (done.returncode, done.stderr.strip()) == (
        1,
        f"edgewatch admin: {tmp_path / DB_NAME} is the live database; write the backup somewhere else",
    )
