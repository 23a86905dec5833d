"""``edgewatch admin --data-dir DIR VERB``: agents, enrollment tokens, API tokens, users; backup,
restore and check of the database.

Works on the database directly (also while the aggregator runs: SQLite serializes the writes; only
``restore`` needs the aggregator stopped). A verb that creates a secret prints it once, as the last
line, so scripts can take ``tail -n 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import accounts, auth
from .config import DEFAULT_PATH, AggregatorConfig
from .db import DB_NAME, open_writer


def _now_ms() -> int:
    return int(time.time() * 1000)


def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _table(rows: list[dict[str, Any]], keys: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[("" if r[k] is None else str(r[k])) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password from --password-stdin, EDGEWATCH_ADMIN_PASSWORD, or a new random one (printed)."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    env = os.environ.get("EDGEWATCH_ADMIN_PASSWORD")
    if env:
        return env, False
    return secrets.token_urlsafe(12), True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgewatch admin",
        description="Manage agents, enrollment tokens, API tokens and users of an aggregator's database; "
        "back it up, restore it, check it.",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="the aggregator's data dir (default: data_dir of its config)"
    )
    parser.add_argument(
        "--config", type=Path, help=f"the aggregator's config file (default {DEFAULT_PATH} if present)"
    )
    parser.add_argument("--json", action="store_true", help="print lists and reports as JSON")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    v = verbs.add_parser("add-agent", help="create an agent and print its token (last line)")
    v.add_argument("name")
    verbs.add_parser("list-agents", help="list agents with last seen and state")
    v = verbs.add_parser("revoke-agent", help="revoke an agent's token (its data stays)")
    v.add_argument("name")
    v = verbs.add_parser(
        "add-enrollment", help="create an enrollment token for `edgewatch enroll` (last line)"
    )
    v.add_argument("--uses", type=int, default=1, help="how many agents may enroll with it (default 1)")
    v.add_argument("--ttl", type=float, default=86400.0, help="seconds until it expires (default 1 day)")
    v = verbs.add_parser("add-token", help="create an API token with a role and print it (last line)")
    v.add_argument("--role", choices=auth.ROLES, required=True)
    v.add_argument("--name", default="", help="what the token is for")
    verbs.add_parser("list-tokens", help="list API tokens (never their secrets)")
    v = verbs.add_parser("revoke-token", help="revoke an API token by id")
    v.add_argument("id")
    v = verbs.add_parser(
        "add-user", help="create a user (password from stdin, EDGEWATCH_ADMIN_PASSWORD, or random)"
    )
    v.add_argument("name")
    v.add_argument("--role", choices=auth.ROLES, default="viewer")
    v.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin"
    )
    verbs.add_parser("list-users", help="list users and roles")
    v = verbs.add_parser(
        "backup", help="copy the database and its keys to FILE (online: the aggregator may run)"
    )
    v.add_argument("file", type=Path, metavar="FILE")
    v.add_argument("--pages", type=int, default=1024, help="pages copied per step (default 1024)")
    v.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the result as JSON")
    v = verbs.add_parser(
        "restore", help="replace the database with a backup (stop the aggregator first; the old one is kept)"
    )
    v.add_argument("file", type=Path, metavar="FILE")
    v = verbs.add_parser(
        "check", help="integrity, sizes per tier, retention status, file and free pages; exit 1 on a problem"
    )
    v.add_argument("--quick", action="store_true", help="quick_check instead of the full integrity_check")
    v.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the report as JSON")
    return parser


def _config(args: argparse.Namespace) -> AggregatorConfig:
    from .config import load

    return load(args.config if args.config is not None else DEFAULT_PATH)


def _data_dir(args: argparse.Namespace) -> Path:
    if args.data_dir is not None:
        return Path(args.data_dir)
    return _config(args).data_dir


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        data_dir = _data_dir(args)
    except ValueError as exc:
        print(f"edgewatch admin: {exc}", file=sys.stderr)
        return 2
    if args.verb in ("backup", "restore", "check"):
        from .operations import operate

        try:
            config = _config(args) if args.verb == "check" else None
        except ValueError as exc:
            print(f"edgewatch admin: {exc}", file=sys.stderr)
            return 2
        return operate(args, data_dir, config)
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        conn = open_writer(data_dir / DB_NAME)
    except (OSError, sqlite3.Error) as exc:
        print(
            f"edgewatch admin: cannot open the database in {data_dir} ({exc}); check --data-dir",
            file=sys.stderr,
        )
        return 2
    now = _now_ms()
    try:
        verb = args.verb
        if verb == "add-agent":
            token = _transaction(conn, lambda c: accounts.add_host(c, args.name, now))
            print(f"agent {args.name} created; its token (shown once):")
            print(token)
        elif verb == "list-agents":
            rows = accounts.list_hosts(conn)
            print(
                json.dumps(rows)
                if args.json
                else _table(rows, ("name", "last_seen_ms", "interval_ms", "revoked_ms"))
            )
        elif verb == "revoke-agent":
            _transaction(conn, lambda c: accounts.revoke_host(c, args.name, now))
            print(f"agent {args.name} revoked; its pushes now get 401 (within 30 s on a running aggregator)")
        elif verb == "add-enrollment":
            token = _transaction(
                conn, lambda c: accounts.add_enrollment(c, now, ttl_s=args.ttl, uses=args.uses)
            )
            print(f"enrollment token for {args.uses} agent(s), valid {args.ttl:g} s; on each host run:")
            print(f"  edgewatch enroll URL {token}")
            print(token)
        elif verb == "add-token":
            token = _transaction(conn, lambda c: accounts.add_api_token(c, args.role, args.name, now))
            print(f"API token with role {args.role} (shown once):")
            print(token)
        elif verb == "list-tokens":
            rows = accounts.list_tokens(conn)
            print(
                json.dumps(rows)
                if args.json
                else _table(rows, ("id", "role", "name", "created_ms", "revoked_ms"))
            )
        elif verb == "revoke-token":
            _transaction(conn, lambda c: accounts.revoke_token(c, args.id, now))
            print(f"API token {args.id} revoked")
        elif verb == "add-user":
            password, generated = _password(args)
            _transaction(conn, lambda c: accounts.add_user(c, args.name, args.role, password, now))
            print(f"user {args.name} created with role {args.role}")
            if generated:
                print("password (shown once):")
                print(password)
        elif verb == "list-users":
            rows = accounts.list_users(conn)
            print(json.dumps(rows) if args.json else _table(rows, ("name", "role", "created_ms", "disabled")))
    except accounts.AccountError as exc:
        print(f"edgewatch admin: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(
            f"edgewatch admin: the database could not be changed ({exc}); is the disk full or read-only?",
            file=sys.stderr,
        )
        return 1
    finally:
        conn.close()
    return 0
