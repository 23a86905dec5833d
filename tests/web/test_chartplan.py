"""web/chartplan.js, run by node: the host page and early.js plan the charts' queries with it, and
the page takes early.js's answers only when both plan the same URLs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

PLAN = Path(__file__).resolve().parents[2] / "web" / "chartplan.js"
NODE = shutil.which("node") or shutil.which("nodejs")
STEPS = [10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
HOUR, DAY = 3_600_000, 86_400_000

pytestmark = pytest.mark.skipif(NODE is None, reason="needs node (make installs it with npm)")


def js(expression: str) -> Any:
    """The value of ``expression`` (JSON) with chartplan.js imported as ``plan``."""
    assert NODE is not None
    script = f"import * as plan from {json.dumps(PLAN.as_uri())};\nconsole.log(JSON.stringify({expression}));"
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_step_is_a_tier_step_and_gives_150_to_400_points() -> None:
    spans = [HOUR, 6 * HOUR, DAY, 7 * DAY, 30 * DAY]
    widths = [360, 390, 760, 1024, 1366, 1920, 3840]
    steps = js(f"{json.dumps(spans)}.map((s) => {json.dumps(widths)}.map((w) => plan.chartStep(s, w)))")
    for span, row in zip(spans, steps, strict=True):
        for width, step in zip(widths, row, strict=True):
            assert step in STEPS, (span, width, step)
            assert span / 1000 / step <= 400, (span, width, step)  # never more points than that
            smaller = STEPS[STEPS.index(step) - 1] if STEPS.index(step) else 0
            assert span / 1000 / max(smaller, 1) > 150 or smaller == 0, (span, width, step)
    # 24 h on a desktop (two 600 px charts a row) is the 5 m tier's step; on a phone twice that
    assert steps[2][4] == 300
    assert steps[2][1] == 600


def test_queries_cover_every_chart_once_in_page_order_in_at_most_four_calls() -> None:
    lines = [3, 1, 40, 0, 7, 2, 25, 30]  # per chart
    specs = [{"lines": [{"id": 100 * c + i} for i in range(n)]} for c, n in enumerate(lines)]
    view = {"key": "24h", "start": 1000.4, "end": 1000.4 + DAY, "live": True}
    calls = js(f'plan.chartQueries("web 1", {json.dumps(specs)}, {json.dumps(view)}, 1366)')
    assert 1 < len(calls) <= 4
    assert [s for c in calls for s in c["specs"]] == specs  # whole charts, in order
    ids = [i for c in calls for i in c["query"]["series"]]
    assert ids == [line["id"] for s in specs for line in s["lines"]]
    for c in calls:
        assert c["query"]["series"] == [line["id"] for s in c["specs"] for line in s["lines"]]
        assert {k: c["query"][k] for k in ("host", "start", "end", "step")} == {
            "host": "web 1",
            "start": 1000,
            "end": 1000 + DAY,
            "step": "300s",
        }


def test_urls_repeat_lists_and_leave_out_empty_values() -> None:
    got = js('plan.url("/api/v1/query", {host: "a b", series: [1, 2], step: "", tz: null, end: 5})')
    assert got == "/api/v1/query?host=a+b&series=1&series=2&end=5"
    assert js('plan.url("/api/v1/hosts", {})') == "/api/v1/hosts"


def test_views_of_a_route() -> None:
    now = 1_800_000_000_000
    got = js(
        f"[plan.viewFromQuery({{range: '6h'}}, {now}), plan.viewFromQuery({{range: 'nonsense'}}, {now}),"
        f" plan.viewFromQuery({{from: '{now - 5000}', to: '{now}', range: '6h'}}, {now})]"
    )
    assert got[0] == {"key": "6h", "start": now - 6 * HOUR, "end": now, "live": True}
    assert got[1] == {"key": "1h", "start": now - HOUR, "end": now, "live": True}
    assert got[2] == {"key": "custom", "start": now - 5000, "end": now, "live": False}
