"""The soak suite's fast subset, one test per scenario (``make soak`` runs the full forms)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.soak.core import Context, execute, load_all

SCENARIOS = load_all()


@pytest.mark.slow
@pytest.mark.parametrize("number", sorted(SCENARIOS), ids=lambda n: f"{n:02d}-{SCENARIOS[n].name}")
def test_scenario_fast(number: int, tmp_path: Path) -> None:
    row = execute(SCENARIOS[number], Context(tmp_path, fast=True))
    print(json.dumps(row))
    assert row["passed"], "\n".join(row["problems"]) + "\n" + row["figures"].get("traceback", "")


def test_every_scenario_of_the_issue_is_in_the_suite_and_documented() -> None:
    assert sorted(SCENARIOS) == list(range(1, 13))
    text = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    for number, item in SCENARIOS.items():
        assert f"## {number}. " in text, f"docs/reliability.md has no section for soak scenario {number}"
        assert item.promise, f"soak scenario {number} states no promise"
