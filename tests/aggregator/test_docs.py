"""docs/aggregator.md lists every setting, docs/api.md every endpoint, and nothing the code lacks."""

from __future__ import annotations

import re
from pathlib import Path

from edgewatch.aggregator.config import SETTINGS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_every_setting_is_documented_with_its_default() -> None:
    doc = _section((DOCS / "aggregator.md").read_text(), "## Settings")
    rows = dict(re.findall(r"^\| `([a-z0-9_.]+)` \| [^|]+ \| `([^`]*)` \|", doc, re.MULTILINE))
    assert set(rows) == {s.key for s in SETTINGS}
    for s in SETTINGS:
        text = rows[s.key]
        if s.kind == "bool":
            assert text == str(s.default).lower(), s.key
        elif s.kind == "duration":
            assert text == f"{s.default:g} s", s.key
        elif s.kind in ("int", "str") or s.kind.startswith("choice"):
            assert text == (str(s.default) if s.default != "" else "(empty)"), s.key


def test_every_route_is_documented_and_no_other() -> None:
    from edgewatch.aggregator.server import ROUTES

    doc = _section((DOCS / "api.md").read_text(), "## Endpoints")
    documented = set(re.findall(r"^\| (GET|POST|PUT|DELETE|PATCH) \| `([^`]+)` \|", doc, re.MULTILINE))
    assert documented == {(method, path) for method, path, _ in ROUTES}


def test_every_admin_verb_is_documented() -> None:
    from edgewatch.aggregator.admin import build_parser

    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "verb").choices
    doc = _section((DOCS / "aggregator.md").read_text(), "## Admin")
    cells = re.findall(r"^\| (.+?) \|", doc, re.MULTILINE)  # the verb column of the table
    documented = {verb for cell in cells for verb in re.findall(r"`([a-z]+(?:-[a-z]+)*)[ `]", cell)}
    assert set(verbs) <= documented, set(verbs) - documented


def test_every_config_table_is_documented() -> None:
    from edgewatch.aggregator.config import TABLES

    doc = _section((DOCS / "aggregator.md").read_text(), "## Settings")
    assert set(re.findall(r"^\| `\[\[?(\w+)\]\]?` \|", doc, re.MULTILINE)) == set(TABLES)
