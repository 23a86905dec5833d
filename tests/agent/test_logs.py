"""The agent's logs: key=value lines on stderr by default, JSON lines with ``log_format = "json"``."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgewatch.agent import logs

from .conftest import ReceiverProcess

EDGEWATCH = str(Path(sys.executable).with_name("edgewatch"))


def test_json_lines_carry_time_level_logger_message_and_the_traceback() -> None:
    out = io.StringIO()
    logs.setup("info", "json", stream=out)
    try:
        log = logs.get("edgewatch.agent.test")
        log.debug("not shown")
        log.info("pushed frames=%d", 3)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("push failed")
    finally:
        logs.setup()
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first.keys() == {"ts", "level", "logger", "msg"}
    assert (first["level"], first["logger"], first["msg"]) == (
        "info",
        "edgewatch.agent.test",
        "pushed frames=3",
    )
    assert first["ts"].endswith("Z")
    assert (second["level"], second["msg"]) == ("error", "push failed")
    assert "ValueError: boom" in second["exc"]


@pytest.mark.slow
def test_the_agent_process_writes_json_lines_to_stderr(tmp_path: Path, receiver: ReceiverProcess) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'aggregator = "{receiver.url}"\ntoken = "{receiver.token}"\nstate_dir = "{tmp_path / "state"}"\n'
        'interval = "1s"\nlog_format = "json"\n'
    )
    proc = subprocess.Popen(
        [EDGEWATCH, "agent", "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        receiver.wait_for(1)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert out == b""
    records = [json.loads(line) for line in err.decode().splitlines()]  # every line is one object
    messages = [r["msg"] for r in records]
    assert any(m.startswith("started agent_id=") for m in messages), messages
    assert any(m.startswith("stopped spool_frames=") for m in messages), messages
    assert all(r["logger"].startswith("edgewatch.agent") for r in records)
