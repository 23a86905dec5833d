"""``edgewatch admin check``: its figures on a database whose contents are known, as a function and
as the command (JSON for scripts, a table for people, exit code 1 on a problem)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from edgewatch.aggregator.db import DB_NAME, open_writer
from edgewatch.aggregator.dbcheck import check, render
from edgewatch.aggregator.schema import BLOCK_MS

from .procs import edgewatch

T = 1_764_000_000_000  # a window boundary
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
RETENTION = {"raw": 7 * 86400.0, "1m": 30 * 86400.0, "5m": 90 * 86400.0, "1h": 365 * 86400.0}


def _known(data_dir: Path, now: int, *, healthy: bool = False) -> None:
    """A database with rows of known times and sizes (``healthy``: none that retention should have
    deleted, no closed window waiting)."""
    data_dir.mkdir(parents=True)
    conn = open_writer(data_dir / DB_NAME)
    conn.execute("INSERT INTO hosts (id, name, created_ms) VALUES (1, 'web-1', ?)", (now,))
    raw = [(now - 10 * DAY, 100, 1000), (now - 7 * DAY - 30 * MIN, 100, 2000), (now - HOUR, 50, 3000)]
    recent = [
        (now, now, now, 500),
        (now - HOUR, now - HOUR, now - HOUR + 10_000, 700),
    ]
    rollups = [(1, now - 31 * DAY, now - 31 * DAY + 6 * HOUR, 400), (1, now - DAY, now - DAY + 6 * HOUR, 600)]
    rollups.append((2, now - 2 * DAY, now - DAY, 300))
    if healthy:
        raw, recent, rollups = raw[1:], recent[:1], rollups[1:]
    for t0, samples, size in raw:
        conn.execute("INSERT INTO raw_blocks VALUES (1, ?, ?, ?)", (t0, samples, b"r" * size))
    for win, t0, t1, size in recent:
        conn.execute(
            "INSERT INTO recent (host, win, t0, t1, data) VALUES (1, ?, ?, ?, ?)", (win, t0, t1, b"x" * size)
        )
    for tier, t0, t1, size in rollups:
        conn.execute("INSERT INTO rollups VALUES (?, 1, ?, ?, ?)", (tier, t0, t1, b"u" * size))
    conn.close()  # the last connection checkpoints the WAL into the file


def _check(data_dir: Path, now: int) -> dict:
    return check(
        data_dir, retention_s=RETENTION, compact_interval_s=60, retention_interval_s=3600, now_ms=now
    )


def test_the_figures_of_a_known_database(tmp_path: Path) -> None:
    _known(tmp_path / "data", T)
    report = _check(tmp_path / "data", T)
    conn = sqlite3.connect(tmp_path / "data" / DB_NAME)
    on_disk = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    page_size, pages, free = (
        conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count", "freelist_count")
    )
    conn.close()

    assert report["integrity"] == "ok"
    assert report["schema_version"] == 4
    assert report["file"] == {
        "db_bytes": (tmp_path / "data" / DB_NAME).stat().st_size,
        "wal_bytes": 0,
        "page_size": page_size,
        "pages": pages,
        "free_pages": free,
        "free_bytes": free * page_size,
    }
    assert report["file"]["db_bytes"] == pages * page_size
    tiers = report["tiers"]
    assert tiers["recent"] == {
        "rows": 2,
        "bytes": on_disk["recent"] + on_disk["recent_win"],
        "data_bytes": 1200,
        "oldest_ms": T - HOUR,
        "newest_ms": T,
        "waiting_rows": 1,  # the window of an hour ago should have been compacted
        "status": "behind",
    }
    assert tiers["raw"] == {
        "rows": 3,
        "samples": 250,
        "bytes": on_disk["raw_blocks"] + on_disk["sqlite_autoindex_raw_blocks_1"],
        "data_bytes": 6000,
        "oldest_ms": T - 10 * DAY,
        "newest_ms": T - HOUR + BLOCK_MS,
        "retention_s": 7 * 86400.0,
        "overdue_rows": 1,  # 10 days old; the one half an hour past 7 days is within retention's lag
        "status": "overdue",
    }
    rollup_bytes = on_disk["rollups"] + on_disk["sqlite_autoindex_rollups_1"]
    assert tiers["1m"] == {
        "rows": 2,
        "bytes": round(rollup_bytes * 1000 / 1300),
        "data_bytes": 1000,
        "oldest_ms": T - 31 * DAY,
        "newest_ms": T - DAY + 6 * HOUR,
        "retention_s": 30 * 86400.0,
        "overdue_rows": 1,
        "status": "overdue",
    }
    assert tiers["5m"]["status"] == "ok"
    assert (tiers["5m"]["rows"], tiers["5m"]["data_bytes"], tiers["5m"]["bytes"]) == (
        1,
        300,
        round(rollup_bytes * 300 / 1300),
    )
    assert tiers["1h"] == {
        "rows": 0,
        "bytes": 0,
        "data_bytes": 0,
        "oldest_ms": None,
        "newest_ms": None,
        "retention_s": 365 * 86400.0,
        "overdue_rows": 0,
        "status": "empty",
    }
    assert report["tables"]["hosts"] == {
        "rows": 1,
        "bytes": on_disk["hosts"] + on_disk["sqlite_autoindex_hosts_1"],
    }
    assert set(report["tables"]).isdisjoint({"recent", "raw_blocks", "rollups"})
    assert report["dbstat"] is True
    everything = (
        sum(t["bytes"] for t in tiers.values() if t is not tiers["recent"]) + tiers["recent"]["bytes"]
    )
    everything += sum(t["bytes"] for t in report["tables"].values())
    assert everything == sum(on_disk.values()) - on_disk["sqlite_schema"]  # every page counted once
    assert report["ok"] is False

    text = render(report)
    lines = {line.split()[0]: line for line in text.splitlines() if line and line.split()[0] in tiers}
    assert lines["raw"].split()[-7:] == ["10", "d", "7", "d", "overdue", "(1", "rows)"]
    assert "behind (1 rows)" in lines["recent"]
    assert lines["1h"].split()[-1] == "empty"
    assert "is it running?" in text


def test_the_command_prints_json_for_scripts_and_exits_1_on_a_problem(tmp_path: Path) -> None:
    now = int(time.time() * 1000) // BLOCK_MS * BLOCK_MS
    config = tmp_path / "aggregator.toml"
    config.write_text(
        '[retention]\nraw = "7d"\n[storage]\nretention_interval = "1h"\ncompact_interval = "60s"\n'
    )
    _known(tmp_path / "sick", now)
    _known(tmp_path / "well", now, healthy=True)

    done = edgewatch(
        "admin", "--data-dir", str(tmp_path / "sick"), "--config", str(config), "check", "--json"
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    expected = _check(tmp_path / "sick", now)
    for name, tier in report["tiers"].items():
        assert tier == expected["tiers"][name], name
    assert [n for n, t in report["tiers"].items() if t["status"] != "ok"] == ["recent", "raw", "1m", "1h"]

    done = edgewatch("admin", "--data-dir", str(tmp_path / "well"), "--config", str(config), "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[1] == "integrity  ok"
    assert "1 rows" not in done.stdout.split("other tables")[0]  # nothing overdue or waiting

    done = edgewatch("admin", "--data-dir", str(tmp_path / "none"), "--config", str(config), "check")
    assert (done.returncode, done.stderr.strip()) == (
        1,
        f"edgewatch admin: there is no database at {tmp_path / 'none' / DB_NAME}; check --data-dir",
    )


def test_a_damaged_database_fails_the_check(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _known(data, T)
    conn = sqlite3.connect(data / DB_NAME)
    root = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'recent_win'").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    raw = bytearray((data / DB_NAME).read_bytes())
    start = (root - 1) * page_size
    raw[start + 8 : start + 12] = b"\xff\xff\xff\xff"  # the index's cell count and first cell offset
    (data / DB_NAME).write_bytes(raw)
    report = _check(data, T)
    assert report["integrity"] != "ok"
    assert report["ok"] is False
    assert render(report).splitlines()[1].startswith("integrity  FAILED: ")
