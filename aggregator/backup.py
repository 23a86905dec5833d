"""``edgewatch admin backup FILE`` and ``restore FILE``: the whole aggregator in one file.

Backup copies the database with SQLite's online backup API, a batch of pages per step, inside one
read transaction on the source. That transaction pins a snapshot: every frame acknowledged before
the backup began is in the copy, and the aggregator's writer goes on committing meanwhile (in WAL
mode a reader never blocks the writer). Without it SQLite restarts a stepped backup whenever another
connection commits, which under steady ingest means never finishing. The copy is written to a temp
file beside FILE (mode 0600), made a plain single file (rollback journal), given the data dir's keys,
checked (``quick_check``), synced, and only then renamed to FILE.

The keys: the command signing key (agents pin it at enrollment) and the Web Push (VAPID) key pair
live in files beside the database. The backup carries them in its ``kv`` table (``backup.file:NAME``)
so that a restore on a new machine keeps the key the agents trust; restore writes them back as files
and drops those rows.

Restore takes the data dir's lock (``datadir.DataDirLock``), so it refuses while the aggregator
runs, copies FILE into the data dir and checks the copy (``integrity_check``, an edgewatch schema not
newer than this version knows), moves the old database, its WAL and the keys aside as
``NAME.before-restore-STAMP``, and renames the copy into place. An older schema is migrated when the
aggregator starts.
"""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .datadir import DataDirLock, own_like
from .db import DB_NAME
from .keys import KEY_FILE
from .schema import MIGRATIONS

KEY_PREFIX = "backup.file:"
PAGES_PER_STEP = 1024  # 4 MB at SQLite's default page size


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    bytes: int
    pages: int
    steps: int
    schema_version: int
    keys: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class RestoreInfo:
    path: Path
    schema_version: int
    hosts: int
    kept_aside: tuple[Path, ...]
    keys: tuple[str, ...]


def key_files() -> tuple[str, ...]:
    """The files beside the database that a backup carries."""
    from .notify.webpush import VAPID_KEY_FILE, VAPID_PUBLIC_FILE  # pywebpush: load only when needed

    return (KEY_FILE, VAPID_KEY_FILE, VAPID_PUBLIC_FILE)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_source(db: Path) -> sqlite3.Connection:
    if not db.is_file():
        raise BackupError(f"there is no database at {db}; check --data-dir")
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None, timeout=30)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    except sqlite3.Error as exc:
        raise BackupError(
            f"cannot read the database {db} ({exc}); check --data-dir and permissions"
        ) from None
    return conn


def backup(
    data_dir: Path,
    dest: Path,
    *,
    pages: int = PAGES_PER_STEP,
    progress: Callable[[int, int], None] | None = None,
) -> BackupInfo:
    """Copy the database of ``data_dir`` (and its keys) to ``dest``, also while the aggregator runs."""
    started = time.monotonic()
    if dest.is_dir():
        raise BackupError(f"{dest} is a directory; name the backup file, e.g. {dest / 'edgewatch.db'}")
    if not dest.parent.is_dir():
        raise BackupError(f"the directory {dest.parent} does not exist; create it or pick another FILE")
    if dest.resolve() in {(data_dir / (DB_NAME + s)).resolve() for s in ("", "-wal", "-shm")}:
        raise BackupError(f"{dest} is the live database; write the backup somewhere else")
    src = _open_source(data_dir / DB_NAME)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    steps = 0

    def step(status: int, remaining: int, total: int) -> None:
        nonlocal steps
        steps += 1
        if progress is not None:
            progress(total - remaining, total)

    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # holds keys: never world-readable
        os.close(fd)
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # the snapshot starts here
            try:
                src.backup(dst, pages=max(1, pages), progress=step)
            finally:
                src.execute("COMMIT")
            dst.execute("PRAGMA journal_mode = DELETE")
            keys = _store_keys(dst, data_dir)
            problems = [row[0] for row in dst.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise BackupError(f"the copy failed its check ({problems[0]}); run edgewatch admin check")
            schema: int = dst.execute("PRAGMA user_version").fetchone()[0]
            page_count: int = dst.execute("PRAGMA page_count").fetchone()[0]
        finally:
            dst.close()
        _fsync(tmp)
        os.replace(tmp, dest)
        _fsync(dest.parent)
    except OSError as exc:
        raise BackupError(
            f"cannot write {dest} ({exc.strerror or exc}); check the path and free space"
        ) from None
    except sqlite3.Error as exc:
        raise BackupError(f"the backup failed ({exc}); is there room for {dest}?") from None
    finally:
        src.close()
        tmp.unlink(missing_ok=True)
    return BackupInfo(dest, dest.stat().st_size, page_count, steps, schema, keys, time.monotonic() - started)


def _store_keys(dst: sqlite3.Connection, data_dir: Path) -> tuple[str, ...]:
    stored = []
    dst.execute("BEGIN")
    for name in key_files():
        try:
            raw = (data_dir / name).read_bytes()
        except FileNotFoundError:
            continue
        dst.execute(
            "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
            (KEY_PREFIX + name, base64.b64encode(raw).decode()),
        )
        stored.append(name)
    dst.execute("COMMIT")
    return tuple(stored)


def inspect(path: Path, shown: Path | None = None) -> tuple[int, int]:
    """``(schema version, hosts)`` of a backup that passes ``integrity_check``, else ``BackupError``
    (naming ``shown``, the file the user gave, when ``path`` is a copy of it)."""
    shown = shown or path
    with path.open("rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise BackupError(f"{shown} is not a SQLite database; pick a file made by edgewatch admin backup")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
        if problems != ["ok"]:
            raise BackupError(
                f"{shown} is damaged (integrity_check: {'; '.join(problems[:3])}); pick another backup"
            )
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        if version < 1 or not {"hosts", "raw_blocks", "rollups", "kv"} <= tables:
            raise BackupError(
                f"{shown} is not an edgewatch database; pick a file made by edgewatch admin backup"
            )
        if version > len(MIGRATIONS):
            raise BackupError(
                f"{shown} has schema version {version}, newer than this edgewatch knows "
                f"({len(MIGRATIONS)}); upgrade edgewatch first"
            )
        hosts: int = conn.execute("SELECT count(*) FROM hosts").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{shown} is damaged (integrity_check: {exc}); pick another backup") from None
    finally:
        conn.close()
    return version, hosts


def restore(source: Path, data_dir: Path, *, now: float | None = None) -> RestoreInfo:
    """Replace the database of ``data_dir`` with the backup ``source``; refuses while the aggregator runs."""
    if not source.is_file():
        raise BackupError(f"there is no backup file at {source}")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = DataDirLock(data_dir, "edgewatch admin restore")  # DataDirBusy when the aggregator runs
    try:
        return _restore_locked(source, data_dir, time.time() if now is None else now)
    finally:
        lock.release()


def _restore_locked(source: Path, data_dir: Path, now: float) -> RestoreInfo:
    db = data_dir / DB_NAME
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    copy = data_dir / f".{DB_NAME}.restore-{os.getpid()}"
    try:
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        version, hosts = inspect(copy, source)
        keys = _take_keys(copy)
        own_like(copy, data_dir)
        aside = _set_aside(db, stamp)
        try:
            os.replace(copy, db)
        except OSError:
            if aside:  # put the old database back rather than leave none
                aside[0].rename(db)
            raise
        for name, raw in keys.items():
            path = data_dir / name
            if path.exists() and path.read_bytes() != raw:
                aside.append(path.rename(path.with_name(f"{name}.before-restore-{stamp}")))
            _write_file(path, raw, data_dir)
        _fsync(data_dir)
    except OSError as exc:
        raise BackupError(
            f"cannot restore into {data_dir} ({exc.strerror or exc}); check permissions and free space"
        ) from None
    finally:
        copy.unlink(missing_ok=True)
    return RestoreInfo(db, version, hosts, tuple(aside), tuple(keys))


def _take_keys(copy: Path) -> dict[str, bytes]:
    """The key files the backup carries, removed from it (the live database never holds them)."""
    conn = sqlite3.connect(copy, isolation_level=None)
    try:
        where = "WHERE substr(key, 1, length(?1)) = ?1"
        rows = conn.execute(f"SELECT key, value FROM kv {where}", (KEY_PREFIX,)).fetchall()  # noqa: S608
        conn.execute(f"DELETE FROM kv {where}", (KEY_PREFIX,))  # noqa: S608
    finally:
        conn.close()
    allowed = set(key_files())
    return {
        key.removeprefix(KEY_PREFIX): base64.b64decode(value)
        for key, value in rows
        if key.removeprefix(KEY_PREFIX) in allowed
    }


def _set_aside(db: Path, stamp: str) -> list[Path]:
    """Move the current database and its WAL aside, under one name so that they still open together."""
    aside: list[Path] = []
    if not db.exists():
        return aside
    try:  # fold the WAL into the file first, so the copy set aside is one file when it can be
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    except sqlite3.Error:
        pass  # a damaged database is set aside as it is, WAL and all
    target = db.with_name(f"{DB_NAME}.before-restore-{stamp}")
    aside.append(db.rename(target))
    for suffix in ("-wal", "-journal"):
        extra = db.with_name(DB_NAME + suffix)
        if extra.exists() and extra.stat().st_size > 0:
            aside.append(extra.rename(target.with_name(target.name + suffix)))
        else:
            extra.unlink(missing_ok=True)
    db.with_name(DB_NAME + "-shm").unlink(missing_ok=True)
    return aside


def _write_file(path: Path, raw: bytes, data_dir: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    own_like(tmp, data_dir)
    os.replace(tmp, path)
