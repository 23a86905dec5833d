"""Logs: key=value lines on stderr by default (journald keeps them), JSON lines with
``log_format = "json"``; stdout stays empty."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .procs import EDGEWATCH, free_port


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_aggregator_logs_lines_of_its_format_on_stderr(tmp_path: Path, fmt: str) -> None:
    port = free_port()
    config = tmp_path / "aggregator.toml"
    config.write_text(
        f'listen = "127.0.0.1:{port}"\ndata_dir = "{tmp_path / "data"}"\nlog_format = "{fmt}"\n'
    )
    proc = subprocess.Popen(
        [*EDGEWATCH, "aggregator", "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out == b""
    lines = err.decode().splitlines()
    assert len(lines) >= 4  # the first admin, storage open, serving, stopping, storage closed
    if fmt == "json":
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        assert all(set(r) == {"ts", "level", "logger", "msg"} for r in records)
        assert all(r["ts"].endswith("Z") and r["ts"][10] == "T" for r in records)
        serving = next(r for r in records if r["msg"].startswith("serving"))
        assert (serving["level"], serving["logger"], serving["msg"]) == (
            "info",
            "edgewatch.aggregator",
            f"serving url=http://127.0.0.1:{port}",
        )
    else:
        assert all(line.startswith("level=") and " logger=edgewatch." in line for line in lines)
        assert f"level=info logger=edgewatch.aggregator serving url=http://127.0.0.1:{port}" in lines
