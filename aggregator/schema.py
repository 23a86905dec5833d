"""The database schema as numbered migrations, and the storage layout constants.

Migration ``n`` moves ``PRAGMA user_version`` from ``n - 1`` to ``n``; each runs once, in its own
transaction, in order. A migration is never edited after it shipped: a change is a new migration.

Layout: ``recent`` holds each pushed frame's samples as they came (one row per frame and window),
``raw_blocks`` the compacted raw samples of one host and one window (``BLOCK_MS``), ``rollups`` the
1 m / 5 m / 1 h buckets of one host over a span (small rows per window, merged into chunks later).
"""

from __future__ import annotations

import sqlite3
from typing import Final, NamedTuple

BLOCK_MS: Final = 600_000  # raw block window: 10 minutes; whole 1 m and 5 m buckets fit in it
HOUR_MS: Final = 3_600_000


class Tier(NamedTuple):
    id: int
    name: str
    res_ms: int  # bucket width (raw: 0)
    chunk_ms: int  # span of a merged chunk row


RAW: Final = Tier(0, "raw", 0, BLOCK_MS)
TIERS: Final = (
    RAW,
    Tier(1, "1m", 60_000, 6 * HOUR_MS),
    Tier(2, "5m", 300_000, 24 * HOUR_MS),
    Tier(3, "1h", HOUR_MS, 30 * 24 * HOUR_MS),
)
TIER_BY_NAME: Final = {t.name: t for t in TIERS}

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: agents and credentials, series, idempotency, raw and rollup storage, events, audit
    """
    CREATE TABLE hosts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        token_hash BLOB,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER,
        facts TEXT NOT NULL DEFAULT '{}',
        last_seen_ms INTEGER,
        interval_ms INTEGER
    );
    CREATE TABLE enrollments (
        id TEXT PRIMARY KEY,
        token_hash BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        uses_left INTEGER NOT NULL
    );
    CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        token_hash BLOB NOT NULL,
        role TEXT NOT NULL,
        name TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        revoked_ms INTEGER
    );
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        host INTEGER NOT NULL REFERENCES hosts(id),
        name TEXT NOT NULL,
        labels TEXT NOT NULL,
        kind INTEGER NOT NULL,
        precision INTEGER,
        UNIQUE (host, name, labels)
    );
    CREATE TABLE acked (
        host INTEGER NOT NULL,
        boot INTEGER NOT NULL,
        lo INTEGER NOT NULL,
        hi INTEGER NOT NULL,
        PRIMARY KEY (host, boot, lo)
    ) WITHOUT ROWID;
    CREATE TABLE recent (
        id INTEGER PRIMARY KEY,
        host INTEGER NOT NULL,
        win INTEGER NOT NULL,
        t0 INTEGER NOT NULL,
        t1 INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE INDEX recent_win ON recent (host, win);
    CREATE TABLE raw_blocks (
        host INTEGER NOT NULL,
        t0 INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (host, t0)
    );
    CREATE TABLE rollups (
        tier INTEGER NOT NULL,
        host INTEGER NOT NULL,
        t0 INTEGER NOT NULL,
        t1 INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (tier, host, t0)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        host INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        type TEXT NOT NULL,
        attrs TEXT NOT NULL
    );
    CREATE INDEX events_host ON events (host, ts);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    """,
    # 2: alerts, their history and delivery log, silences, push subscriptions, small persistent state
    """
    CREATE TABLE alerts (
        fingerprint TEXT PRIMARY KEY,
        rule TEXT NOT NULL,
        host TEXT NOT NULL,
        status TEXT NOT NULL,
        level TEXT,
        state TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX alerts_status ON alerts (status);
    CREATE TABLE alert_log (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        rule TEXT NOT NULL,
        host TEXT NOT NULL,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        level TEXT,
        detail TEXT NOT NULL
    );
    CREATE INDEX alert_log_fingerprint ON alert_log (fingerprint, at);
    CREATE INDEX alert_log_at ON alert_log (at);
    CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        matchers TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL,
        author TEXT NOT NULL,
        comment TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE push_subscriptions (
        endpoint TEXT PRIMARY KEY,
        p256dh TEXT NOT NULL,
        auth TEXT NOT NULL,
        owner TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 3: browser sessions (the id only as its SHA-256)
    """
    CREATE TABLE sessions (
        id_hash BLOB PRIMARY KEY,
        user TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        seen_ms INTEGER NOT NULL
    );
    CREATE INDEX sessions_user ON sessions (user);
    """,
    # 4: remote commands (docs/commands.md): the signed command as sent, its state and result
    """
    CREATE TABLE commands (
        id TEXT PRIMARY KEY,
        host INTEGER NOT NULL,
        action TEXT NOT NULL,
        args TEXT NOT NULL,
        issued_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        state TEXT NOT NULL,
        issued_by TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        signed TEXT NOT NULL,
        result TEXT
    );
    CREATE INDEX commands_host_state ON commands (host, state);
    CREATE INDEX commands_state ON commands (state, expires_ms);
    """,
)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations this database has not seen; returns the schema version."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"the database has schema version {version}, newer than this edgewatch knows "
            f"({len(MIGRATIONS)}); upgrade edgewatch or restore a backup"
        )
    for number in range(version + 1, len(MIGRATIONS) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[number - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)
