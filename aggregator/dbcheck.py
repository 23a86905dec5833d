"""``edgewatch admin check``: integrity, sizes per tier, retention status, the file and its free pages.

Reads through one read-only snapshot, so it runs beside a live aggregator without holding it up.
Sizes on disk come from SQLite's ``dbstat`` table when the library has it (Debian's does): a table's
bytes include its indexes. The three rollup tiers share one table; its bytes are divided among them
by the bytes of their rows' data. ``oldest_ms`` / ``newest_ms`` are the bounds of what a tier holds
(the start of its oldest block or bucket, the end of its newest).

A tier is ``overdue`` when it holds rows that retention should have deleted by now: older than its
``retention.*`` by more than ``storage.retention_interval`` plus ``storage.compact_interval`` (the
most that retention can lag); ``recent`` is ``behind`` when closed windows wait longer than
compaction should let them. Both happen when the aggregator is stopped, or its writer fails.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .db import DB_NAME
from .schema import BLOCK_MS, TIERS
from .store import GRACE_MS

ROLLUP_TIERS = TIERS[1:]
TIER_TABLES = ("recent", "raw_blocks", "rollups")


def _one(conn: sqlite3.Connection, sql: str, *args: Any) -> Any:
    return conn.execute(sql, args).fetchone()[0]


def _table_bytes(conn: sqlite3.Connection) -> dict[str, int] | None:
    """Bytes on disk per table, its indexes included; None when SQLite lacks dbstat."""
    try:
        by_name = dict(conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    except sqlite3.OperationalError:
        return None
    owner: dict[str, str] = dict(
        conn.execute("SELECT name, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index')").fetchall()
    )
    out: dict[str, int] = {}
    for name, size in by_name.items():
        table = owner.get(name) or str(name)
        out[table] = out.get(table, 0) + int(size)
    return out


def check(
    data_dir: Path,
    *,
    retention_s: Mapping[str, float],
    compact_interval_s: float,
    retention_interval_s: float,
    now_ms: int,
    quick: bool = False,
) -> dict[str, Any]:
    """The report that ``edgewatch admin check --json`` prints."""
    db = data_dir / DB_NAME
    if not db.is_file():
        raise FileNotFoundError(f"there is no database at {db}; check --data-dir")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("BEGIN")  # one snapshot; closing the connection ends it
        return _report(
            conn,
            db,
            retention_s=retention_s,
            late_ms=int((retention_interval_s + compact_interval_s) * 1000),
            compact_interval_s=compact_interval_s,
            now_ms=now_ms,
            quick=quick,
        )
    finally:
        conn.close()


def _report(
    conn: sqlite3.Connection,
    db: Path,
    *,
    retention_s: Mapping[str, float],
    late_ms: int,
    compact_interval_s: float,
    now_ms: int,
    quick: bool,
) -> dict[str, Any]:
    try:
        problems = [r[0] for r in conn.execute(f"PRAGMA {'quick_check' if quick else 'integrity_check'}(20)")]
    except sqlite3.DatabaseError as exc:  # so damaged that the check stops
        problems = [str(exc)]
    page_size = _one(conn, "PRAGMA page_size")
    free_pages = _one(conn, "PRAGMA freelist_count")
    wal = db.with_name(DB_NAME + "-wal")
    report: dict[str, Any] = {
        "path": str(db),
        "now_ms": now_ms,
        "integrity": "ok" if problems == ["ok"] else problems,
        "schema_version": _one(conn, "PRAGMA user_version"),
        "file": {
            "db_bytes": db.stat().st_size,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0,
            "page_size": page_size,
            "pages": _one(conn, "PRAGMA page_count"),
            "free_pages": free_pages,
            "free_bytes": free_pages * page_size,
        },
    }
    try:
        _contents(
            conn, report, retention_s=retention_s, late_ms=late_ms, compact_interval_s=compact_interval_s
        )
    except sqlite3.DatabaseError as exc:  # a damaged file: integrity_check has said where
        report.update(dbstat=False, tiers={}, tables={}, unreadable=str(exc))
    report["ok"] = report["integrity"] == "ok" and all(
        t["status"] in ("ok", "empty") for t in report["tiers"].values()
    )
    return report


def _contents(
    conn: sqlite3.Connection,
    report: dict[str, Any],
    *,
    retention_s: Mapping[str, float],
    late_ms: int,
    compact_interval_s: float,
) -> None:
    """The tiers and the other tables, into ``report``; ``late_ms``: how far retention may lag."""
    now_ms = report["now_ms"]
    sizes = _table_bytes(conn)
    report["dbstat"] = sizes is not None

    def retained(tier: dict[str, Any], name: str, overdue: int) -> dict[str, Any]:
        tier["retention_s"] = retention_s[name]
        tier["overdue_rows"] = overdue
        tier["status"] = "empty" if not tier["rows"] else "overdue" if overdue else "ok"
        return tier

    tiers: dict[str, Any] = {}
    rows, data, oldest, newest = conn.execute(
        "SELECT count(*), coalesce(sum(length(data)), 0), min(t0), max(t1) FROM recent"
    ).fetchone()
    waiting = _one(
        conn,
        "SELECT count(*) FROM recent WHERE win + ? <= ?",
        BLOCK_MS + GRACE_MS + int(2 * compact_interval_s * 1000),
        now_ms,
    )
    tiers["recent"] = {
        "rows": rows,
        "bytes": sizes.get("recent", 0) if sizes is not None else None,
        "data_bytes": data,
        "oldest_ms": oldest,
        "newest_ms": newest,
        "waiting_rows": waiting,
        "status": "empty" if not rows else "behind" if waiting else "ok",
    }
    cut = now_ms - int(retention_s["raw"] * 1000) - late_ms
    rows, samples, data, oldest, newest = conn.execute(
        "SELECT count(*), coalesce(sum(samples), 0), coalesce(sum(length(data)), 0), min(t0), max(t0) "
        "FROM raw_blocks"
    ).fetchone()
    tiers["raw"] = retained(
        {
            "rows": rows,
            "samples": samples,
            "bytes": sizes.get("raw_blocks", 0) if sizes is not None else None,
            "data_bytes": data,
            "oldest_ms": oldest,
            "newest_ms": None if newest is None else newest + BLOCK_MS,
        },
        "raw",
        _one(conn, "SELECT count(*) FROM raw_blocks WHERE t0 + ? <= ?", BLOCK_MS, cut),
    )
    rollup_data = _one(conn, "SELECT coalesce(sum(length(data)), 0) FROM rollups")
    for tier in ROLLUP_TIERS:
        cut = now_ms - int(retention_s[tier.name] * 1000) - late_ms
        rows, data, oldest, newest = conn.execute(
            "SELECT count(*), coalesce(sum(length(data)), 0), min(t0), max(t1) FROM rollups WHERE tier = ?",
            (tier.id,),
        ).fetchone()
        share = None
        if sizes is not None:
            share = round(sizes.get("rollups", 0) * data / rollup_data) if rollup_data else 0
        tiers[tier.name] = retained(
            {"rows": rows, "bytes": share, "data_bytes": data, "oldest_ms": oldest, "newest_ms": newest},
            tier.name,
            _one(conn, "SELECT count(*) FROM rollups WHERE tier = ? AND t1 <= ?", tier.id, cut),
        )
    report["tiers"] = tiers
    others = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
        if r[0] not in TIER_TABLES
    ]
    report["tables"] = {
        name: {
            "rows": _one(conn, f'SELECT count(*) FROM "{name}"'),  # noqa: S608 (names from sqlite_schema)
            "bytes": sizes.get(name, 0) if sizes is not None else None,
        }
        for name in others
    }


# --- the human-readable form ---------------------------------------------------------------------


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value, unit = float(n), "B"
    for bigger in ("KB", "MB", "GB", "TB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def _when(ms: int | None) -> str:
    return "-" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def _span(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}".replace(".0 ", " ")
    return f"{seconds:.0f} s"


def render(report: dict[str, Any]) -> str:
    """The report as a few lines and a table, for a person."""
    f = report["file"]
    integrity = report["integrity"]
    lines = [
        f"database   {report['path']} (schema {report['schema_version']})",
        "integrity  " + ("ok" if integrity == "ok" else "FAILED: " + "; ".join(integrity[:5])),
        f"file       {_size(f['db_bytes'])}, WAL {_size(f['wal_bytes'])}; {f['pages']} pages of "
        f"{f['page_size']} B, {f['free_pages']} free ({_size(f['free_bytes'])})",
        "",
    ]
    head = ("tier", "rows", "size", "oldest (UTC)", "newest (UTC)", "spans", "retention", "status")
    cells = [head]
    for name, t in report["tiers"].items():
        spans = "-"
        if t["oldest_ms"] is not None:
            spans = _span((report["now_ms"] - t["oldest_ms"]) / 1000)
        status = t["status"]
        if t.get("overdue_rows"):
            status += f" ({t['overdue_rows']} rows)"
        if t.get("waiting_rows"):
            status += f" ({t['waiting_rows']} rows)"
        cells.append(
            (
                name,
                str(t["rows"]),
                _size(t["bytes"] if t["bytes"] is not None else t["data_bytes"]),
                _when(t["oldest_ms"]),
                _when(t["newest_ms"]),
                spans,
                _span(t["retention_s"]) if "retention_s" in t else "-",
                status,
            )
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines += ["", "other tables:"]
    width = max((len(n) for n in report["tables"]), default=0)
    for name, t in report["tables"].items():
        lines.append(f"  {name.ljust(width)}  {t['rows']} rows, {_size(t['bytes'])}")
    if "unreadable" in report:
        lines.append(f"(the tiers cannot be read: {report['unreadable']}; restore a backup)")
    elif not report["dbstat"]:
        lines.append("(this SQLite has no dbstat: sizes are the bytes of the tiers' data only)")
    overdue = [n for n, t in report["tiers"].items() if t["status"] in ("overdue", "behind")]
    if overdue:
        lines += [
            "",
            f"{', '.join(overdue)}: older data waits that the aggregator should have compacted or deleted "
            "by now; is it running? (its log says when maintenance fails)",
        ]
    return "\n".join(lines)
