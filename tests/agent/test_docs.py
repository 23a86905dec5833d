"""docs/agent.md lists every setting with its default, and nothing the code does not have."""

from __future__ import annotations

import re
from pathlib import Path

from edgewatch.agent.config import SETTINGS, TABLES

TEXT = (Path(__file__).resolve().parents[2] / "docs" / "agent.md").read_text()
DOC = TEXT[TEXT.index("## Settings") : TEXT.index("\n## ", TEXT.index("## Settings") + 1)]


def test_every_setting_is_documented_and_no_other() -> None:
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", DOC, re.MULTILINE))
    assert documented == {s.key for s in SETTINGS}


def test_every_table_is_documented() -> None:
    assert set(re.findall(r"^\| `\[\[(\w+)\]\]` \|", DOC, re.MULTILINE)) == set(TABLES)


def test_documented_defaults_match_the_code() -> None:
    rows = dict(re.findall(r"^\| `([a-z_.]+)` \| [^|]+ \| `((?:[^`])*)` \|", DOC, re.MULTILINE))
    rows = {k: v.replace("\\|", "|") for k, v in rows.items()}  # a | in a table cell is escaped
    for s in SETTINGS:
        text = rows[s.key]
        if s.kind == "bool":
            assert text == str(s.default).lower(), s.key
        elif s.kind in ("int", "str") or s.kind.startswith("choice"):
            assert text == (str(s.default) if s.default != "" else "(empty)"), s.key
        elif s.kind == "duration":
            assert text == f"{s.default:g} s", s.key
