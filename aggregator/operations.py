"""The admin verbs that operate on the database file as a whole: ``backup``, ``restore``, ``check``.

``admin.py`` parses the command line and hands these three over before it opens the database (a
backup or check must never create or migrate one, and a restore must own the data dir).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from . import backup, dbcheck
from .config import AggregatorConfig
from .datadir import LOCK_NAME, DataDirBusy


def _fail(message: str) -> int:
    print(f"edgewatch admin: {message}", file=sys.stderr)
    return 1


def _jsonable(info: Any) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(info).items()}


def operate(args: argparse.Namespace, data_dir: Path, config: AggregatorConfig | None) -> int:
    try:
        if args.verb == "backup":
            return _backup(args, data_dir)
        if args.verb == "restore":
            return _restore(args, data_dir)
        assert config is not None
        return _check(args, data_dir, config)
    except DataDirBusy as exc:
        return _fail(
            f"the aggregator is running on {data_dir} ({exc.holder} holds {LOCK_NAME}); stop it first "
            "(systemctl stop edgewatch-aggregator), restore, then start it again"
        )
    except backup.BackupError as exc:
        return _fail(str(exc))


def _backup(args: argparse.Namespace, data_dir: Path) -> int:
    if args.pages < 1:
        return _fail("--pages must be 1 or more")
    info = backup.backup(data_dir, args.file.absolute(), pages=args.pages)
    if getattr(args, "json", False):
        print(json.dumps(_jsonable(info)))
    else:
        keys = ", ".join(info.keys) or "none found"
        print(
            f"backup written to {info.path}: {info.bytes} bytes, schema {info.schema_version}, "
            f"{info.steps} steps in {info.seconds:.1f} s; keys: {keys}"
        )
        if info.keys:
            print("it holds the signing keys: keep it as safe as the data dir (it is mode 0600)")
    return 0


def _restore(args: argparse.Namespace, data_dir: Path) -> int:
    info = backup.restore(args.file.absolute(), data_dir)
    print(
        f"restored {args.file} into {info.path}: schema {info.schema_version}, {info.hosts} agents; "
        f"keys: {', '.join(info.keys) or 'none in the backup'}"
    )
    for path in info.kept_aside:
        print(f"  the one before is kept as {path}")
    print("start the aggregator again (systemctl start edgewatch-aggregator)")
    return 0


def _check(args: argparse.Namespace, data_dir: Path, config: AggregatorConfig) -> int:
    try:
        report = dbcheck.check(
            data_dir,
            retention_s=config.retention,
            compact_interval_s=float(config["storage.compact_interval"]),
            retention_interval_s=float(config["storage.retention_interval"]),
            now_ms=int(time.time() * 1000),
            quick=args.quick,
        )
    except FileNotFoundError as exc:
        return _fail(str(exc))
    except (sqlite3.Error, OSError) as exc:
        return _fail(f"cannot read the database in {data_dir} ({exc}); is it an edgewatch data dir?")
    print(json.dumps(report) if getattr(args, "json", False) else dbcheck.render(report))
    return 0 if report["ok"] else 1
