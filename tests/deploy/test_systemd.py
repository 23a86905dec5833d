"""The systemd units: hardened (systemd-analyze's exposure 2.0 or lower), Type=notify with a
watchdog; and the aggregator speaks the notify protocol for real."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.aggregator.procs import EDGEWATCH, free_port

UNITS = Path(__file__).parents[2] / "packaging" / "systemd"
MAX_EXPOSURE = 2.0


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (Debian's systemd)"
)
@pytest.mark.parametrize("unit", ["edgewatch-agent.service", "edgewatch-aggregator.service"])
def test_the_units_are_sandboxed_to_an_exposure_of_at_most_2(unit: str) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNITS / unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found[1]) <= MAX_EXPOSURE, done.stdout


@pytest.mark.parametrize("unit", ["edgewatch-agent.service", "edgewatch-aggregator.service"])
def test_the_units_notify_with_a_watchdog_as_their_own_users(unit: str) -> None:
    text = (UNITS / unit).read_text()
    for line in ("Type=notify", "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet="):
        assert f"\n{line}\n" in text, line
    assert re.search(r"\nWatchdogSec=\d+\n", text)
    assert re.search(r"\nUser=edgewatch(-agent)?\n", text)
    assert re.search(r"\nStateDirectory=\S+\n", text)
    assert "\nConfigurationDirectory=edgewatch\n" in text


def test_the_aggregator_tells_systemd_it_is_ready_alive_and_stopping(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "900000"}
    env.pop("WATCHDOG_PID", None)
    port = free_port()
    proc = subprocess.Popen(
        [*EDGEWATCH, "aggregator", "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        messages: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and messages.count("WATCHDOG=1") < 2:
            messages.append(sock.recv(4096).decode())
        assert messages[0].startswith("READY=1\nSTATUS=serving http://127.0.0.1:")
        assert messages.count("WATCHDOG=1") >= 2
        proc.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in messages:
            messages.append(sock.recv(4096).decode())
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
