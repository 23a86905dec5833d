"""The service collectors keep the agent small: importing them loads none of the heavy modules."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = (
    "psutil",
    "dataclasses",
    "http.client",
    "urllib.request",
    "email",
    "asyncio",
    "concurrent.futures",
    "ssl",
)
MODULES = ("systemd", "procwatch", "checks", "textfile", "scrape", "plugin")


@pytest.mark.parametrize("module", MODULES)
def test_importing_loads_nothing_heavy(module: str) -> None:
    code = (
        f"import sys, edgewatch.agent.collectors.{module};"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules];"
        "print(heavy); sys.exit(bool(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
