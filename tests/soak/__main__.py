"""``python -m tests.soak [--fast] [--only 1,3] [--json FILE]``: run the suite, print JSON and a table.

Exits 1 when a scenario fails. Every process a scenario starts listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tests.soak.core import Context, execute, load_all, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make soak", description=__doc__)
    parser.add_argument("--fast", action="store_true", help="the shortened forms that make test runs")
    parser.add_argument("--only", default="", help="comma-separated scenario numbers (default: all)")
    parser.add_argument("--json", type=Path, help="also write the summary to this file")
    args = parser.parse_args(argv)
    scenarios = load_all()
    try:
        wanted = {int(n) for n in args.only.split(",") if n.strip()} or set(scenarios)
    except ValueError:
        parser.error(f"--only takes scenario numbers such as 1,3, not {args.only!r}")
    unknown = wanted - set(scenarios)
    if unknown:
        parser.error(f"no soak scenario numbered {sorted(unknown)}; the suite has {sorted(scenarios)}")
    rows = []
    for number in sorted(wanted):
        with tempfile.TemporaryDirectory(prefix=f"edgewatch-soak-{number}-") as tmp:
            row = execute(scenarios[number], Context(Path(tmp), fast=args.fast))
        rows.append(row)
        print(json.dumps({"soak": row["scenario"], **row}), flush=True)
    summary = {
        "soak": "summary",
        "fast": args.fast,
        "passed": all(row["passed"] for row in rows),
        "scenarios": len(rows),
        "failed": [row["scenario"] for row in rows if not row["passed"]],
    }
    print(json.dumps(summary), flush=True)
    print(table(rows), file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "scenarios": rows}, indent=2) + "\n")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
