"""The example configs load with the real loaders; the sysusers.d and tmpfiles.d snippets, applied by
the real systemd tools to a temp root, make the users and directories the units expect."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgewatch.agent.config import SETTINGS as AGENT_SETTINGS
from edgewatch.agent.config import load as load_agent
from edgewatch.aggregator.config import SETTINGS as AGGREGATOR_SETTINGS
from edgewatch.aggregator.config import load as load_aggregator
from tests.aggregator.procs import edgewatch

from .conftest import ROOT

PACKAGING = ROOT / "packaging"
UNITS = {
    "edgewatch-aggregator.service": PACKAGING / "systemd" / "edgewatch-aggregator.service",
    "edgewatch-agent.service": PACKAGING / "systemd" / "edgewatch-agent.service",
}


def _defaults(settings: tuple) -> dict:
    return {s.key: s.default for s in settings}


def test_the_example_configs_load_and_say_the_defaults_they_claim() -> None:
    aggregator = load_aggregator(PACKAGING / "examples" / "aggregator.toml", environ={})
    agent = load_agent(PACKAGING / "examples" / "agent.toml", environ={})
    # "the values below are the defaults unless noted": only the agent's aggregator URL is not
    assert aggregator.values == _defaults(AGGREGATOR_SETTINGS)
    assert {k: v for k, v in agent.values.items() if v != _defaults(AGENT_SETTINGS)[k]} == {
        "aggregator": "https://mon.example.com:8480"
    }
    for side in ("aggregator", "agent"):
        done = edgewatch(side, "--config", str(PACKAGING / "examples" / f"{side}.toml"), "--check-config")
        assert done.returncode == 0, done.stderr


def _passwd(root: Path) -> dict[str, list[str]]:
    return {line.split(":")[0]: line.split(":") for line in (root / "etc/passwd").read_text().splitlines()}


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None, reason="needs systemd-sysusers (Debian's systemd)"
)
@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-tmpfiles sets owners only as root")
def test_the_snippets_make_the_users_and_directories_of_the_units(tmp_path: Path) -> None:
    (tmp_path / "etc/edgewatch").mkdir(parents=True)
    for name in ("aggregator.toml", "agent.toml"):
        (tmp_path / "etc/edgewatch" / name).write_text("")
    for _ in range(2):  # a second run changes nothing
        done = subprocess.run(
            ["systemd-sysusers", f"--root={tmp_path}", str(PACKAGING / "sysusers.d" / "edgewatch.conf")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    users = _passwd(tmp_path)
    assert users["edgewatch"][5:] == ["/var/lib/edgewatch", "/usr/sbin/nologin"]
    assert users["edgewatch-agent"][5:] == ["/var/lib/edgewatch-agent", "/usr/sbin/nologin"]
    done = subprocess.run(
        [
            "systemd-tmpfiles",
            f"--root={tmp_path}",
            "--create",
            str(PACKAGING / "tmpfiles.d" / "edgewatch.conf"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    def owner_mode(path: str) -> tuple[str, int, int]:
        st = (tmp_path / path).stat()
        user = next(name for name, row in users.items() if int(row[2]) == st.st_uid) if st.st_uid else "root"
        return user, st.st_gid, st.st_mode & 0o777

    gid = {name: int(row[3]) for name, row in users.items()}
    assert owner_mode("etc/edgewatch") == ("root", 0, 0o755)
    assert owner_mode("etc/edgewatch/aggregator.toml") == ("root", gid["edgewatch"], 0o640)
    assert owner_mode("etc/edgewatch/agent.toml") == ("root", gid["edgewatch-agent"], 0o640)
    for unit, path in UNITS.items():  # what each unit runs as, and where its state lives
        text = path.read_text()
        user = re.search(r"^User=(\S+)$", text, re.M)[1]  # type: ignore[index]
        state = re.search(r"^StateDirectory=(\S+)$", text, re.M)[1]  # type: ignore[index]
        mode = int(re.search(r"^StateDirectoryMode=(\d+)$", text, re.M)[1], 8)  # type: ignore[index]
        assert owner_mode(f"var/lib/{state}") == (user, gid[user], mode), unit
        assert users[user][5] == f"/var/lib/{state}", unit
        config_mode = re.search(r"^ConfigurationDirectoryMode=(\d+)$", text, re.M)
        assert (int(config_mode[1], 8) if config_mode else 0o755) == 0o755, unit  # both read /etc/edgewatch
