"""packaging/install-agent.sh, as the aggregator serves it, run unprivileged on a temp root: stand-ins
for systemctl, systemd-sysusers, useradd, getent, chown and runuser record their calls; the venv,
pip (from the aggregator's /dist/, without the network), the config and the enrollment are real."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewatch.agent.config import load as load_agent_config
from tests.aggregator.procs import AggregatorProcess, env_without_proxies

from .conftest import DEPENDENCIES_PTH, ROOT, Dist, dependency_dirs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
SCRIPT = ROOT / "packaging" / "install-agent.sh"
UNIT = "etc/systemd/system/edgewatch-agent.service"


def _stand_ins(tmp: Path, root: Path) -> tuple[Path, Path]:
    """Scripts that stand in for the system's commands; each appends its argv to ``calls``."""
    bin_dir, calls = tmp / "bin", tmp / "calls"
    bin_dir.mkdir()
    venv_python = root / "opt/edgewatch/venv/bin/python"
    record = f'printf "%s\\n" "$(basename "$0") $*" >> {shlex.quote(str(calls))}'
    passwd = shlex.quote(str(root / "etc/passwd"))
    entry = "edgewatch-agent:x:990:990::/var/lib/edgewatch-agent:/usr/sbin/nologin"
    add_user = f"mkdir -p {shlex.quote(str(root / 'etc'))}; echo {entry} >> {passwd}"
    python, venv_python = shlex.quote(sys.executable), shlex.quote(str(venv_python))
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    scripts = {
        "systemctl": record,
        "chown": record,
        "systemd-sysusers": f"{record}\n{add_user}",
        "useradd": f"{record}\n{add_user}",
        "getent": f'grep -q "^$2:" {passwd} 2>/dev/null',
        "runuser": f'{record}\nwhile [ "$1" != -- ]; do shift; done\nshift\nexec "$@"',
        # the real pip of the new venv, from the aggregator's /dist/ only; the dependencies are lent
        "pip-install": f"{record}\n{python} -m pip --python {venv_python} install --quiet --no-deps"
        ' --no-index --disable-pip-version-check "$@"\n'
        f'site=$({venv_python} -c "{purelib}")\n'
        f'printf %s {shlex.quote(dependency_dirs())} > "$site/{DEPENDENCIES_PTH}"',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\nset -e\n{body}\n")
        path.chmod(0o755)
    return bin_dir, calls


def _tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every path under ``root``: its mode and what it holds (caches of compiled Python left out)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in rel:
            continue
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            what = "-> " + os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            what = "dir"
        out[rel] = (stat.S_IMODE(st.st_mode), what)
    return out


@pytest.fixture
def aggregator(tmp_path: Path, dist: Dist) -> Iterator[AggregatorProcess]:
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(dist.wheel, served)
    agg = AggregatorProcess(tmp_path, dist_dir=str(served))
    agg.start()
    try:
        yield agg
    finally:
        agg.stop()


def test_install_twice_then_uninstall_then_install_again(
    tmp_path: Path, aggregator: AggregatorProcess
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    bin_dir, calls = _stand_ins(tmp_path, root)
    with urllib.request.urlopen(aggregator.url + "/install.sh", timeout=10) as r:
        script = tmp_path / "install.sh"
        script.write_bytes(r.read())
    wheel = next((tmp_path / "served").glob("*.whl")).name
    assert f"\nSERVED_WHEEL='{wheel}'\n" in script.read_text()
    env = {
        **env_without_proxies(),
        "EDGEWATCH_ROOT": str(root),
        "PYTHON": sys.executable,
        "PIP_INSTALL": str(bin_dir / "pip-install"),
        "SYSTEMCTL": str(bin_dir / "systemctl"),
        "SYSUSERS": str(bin_dir / "systemd-sysusers"),
        "USERADD": str(bin_dir / "useradd"),
        "GETENT": str(bin_dir / "getent"),
        "CHOWN": str(bin_dir / "chown"),
        "RUNAS": f"{bin_dir / 'runuser'} -u edgewatch-agent --",
    }
    token = aggregator.admin("add-enrollment")  # good for one host: a second enrollment would fail
    env["EDGEWATCH_ENROLL_TOKEN"] = token  # as the UI's line passes it: not in any argv
    argv = ["sh", str(script), "--aggregator", aggregator.url, "--insecure", "--name", "installed-1"]

    def run(*args: str, **extra: str) -> tuple[str, list[str]]:
        calls.write_text("")
        done = subprocess.run(
            args, env={**env, **extra}, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout, calls.read_text().splitlines()

    # first run: everything is made
    out, made = run(*argv)
    venv = root / "opt/edgewatch/venv"
    sysusers_line = next(
        line
        for line in (ROOT / "packaging/sysusers.d/edgewatch.conf").read_text().splitlines()
        if line.split()[:2] == ["u", "edgewatch-agent"]
    )
    assert made == [
        f"pip-install edgewatch[agent] @ {aggregator.url}/dist/{wheel}",
        f"systemd-sysusers --inline {sysusers_line}",
        f"chown edgewatch-agent:edgewatch-agent {root}/var/lib/edgewatch-agent",
        f"chown root:edgewatch-agent {root}/etc/edgewatch/agent.toml.tmp.{made[3].rsplit('.', 1)[1]}",
        f"runuser -u edgewatch-agent -- {venv}/bin/edgewatch enroll {aggregator.url} {token}"
        f" --state-dir {root}/var/lib/edgewatch-agent --name installed-1",
        "systemctl daemon-reload",
        "systemctl enable --now edgewatch-agent.service",
    ]
    assert "done: the agent runs" in out
    assert (root / UNIT).read_text() == (ROOT / "packaging/systemd/edgewatch-agent.service").read_text()
    assert stat.S_IMODE((root / UNIT).stat().st_mode) == 0o644
    config = root / "etc/edgewatch/agent.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    loaded = load_agent_config(config, environ={})
    assert (loaded["aggregator"], loaded["state_dir"]) == (aggregator.url, "/var/lib/edgewatch-agent")
    assert (
        config.read_text().replace(f'"{aggregator.url}"', '"https://mon.example.com:8480"')
        == (ROOT / "packaging/examples/agent.toml").read_text()
    )  # the example, with this aggregator's URL
    identity = json.loads((root / "var/lib/edgewatch-agent/identity.json").read_text())
    assert identity["agent_id"] == "installed-1"
    agents = json.loads(aggregator.admin("--json", "list-agents"))
    assert [a["name"] for a in agents] == ["installed-1"]
    assert stat.S_IMODE((root / "var/lib/edgewatch-agent").stat().st_mode) == 0o700
    version = subprocess.run(
        [str(venv / "bin/edgewatch"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("edgewatch ")

    # second run: nothing changes, and it succeeds (the used-up token is not needed again)
    before = _tree(root)
    out, made = run(*argv)
    assert _tree(root) == before
    assert made == [
        f"chown edgewatch-agent:edgewatch-agent {root}/var/lib/edgewatch-agent",
        "systemctl enable --now edgewatch-agent.service",
    ]
    assert "nothing to change" in out

    # uninstall: the unit and /opt/edgewatch go, config and state stay; a second uninstall is fine
    out, made = run("sh", str(script), "--uninstall")
    assert made == ["systemctl disable --now edgewatch-agent.service", "systemctl daemon-reload"]
    assert not (root / "opt/edgewatch").exists()
    assert not (root / UNIT).exists()
    assert config.is_file()
    assert (root / "var/lib/edgewatch-agent/identity.json").is_file()
    assert "kept /etc/edgewatch/agent.toml and /var/lib/edgewatch-agent" in out
    out, made = run("sh", str(script), "--uninstall")
    assert made == []

    # install again without systemd-sysusers on a host that lost the user: useradd; config and
    # identity are kept, so no token is needed
    (root / "etc/passwd").unlink()
    out, made = run("sh", str(script), "--aggregator", aggregator.url, "--insecure", SYSUSERS="")
    assert made[1].startswith("useradd --system --user-group --home-dir /var/lib/edgewatch-agent")
    assert "keeping /etc/edgewatch/agent.toml" in out
    assert "enrolled already" in out
    assert not [c for c in made if c.startswith("runuser")]
    assert made[-2:] == ["systemctl daemon-reload", "systemctl enable --now edgewatch-agent.service"]

    # --purge removes config and state too
    run("sh", str(script), "--uninstall", "--purge")
    assert not config.exists()
    assert not (root / "var/lib/edgewatch-agent").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give the aggregator's URL: --aggregator https://HOST:PORT"),
        (["--aggregator", "ftp://mon"], "give the aggregator's URL"),
        (["--aggregator", "http://mon"], "the aggregator's URL is plain http"),
        (["--aggregator", 'https://mon"x'], "the URL has spaces, quotes or other characters"),
        (["--aggregator", "https://mon", "--token", "ewe_a b"], "that is not an enrollment token"),
        (["--aggregator", "http://mon", "--insecure", "--name", "a/b"], "--name may hold only letters"),
        (["--aggregator"], "--aggregator needs a value"),
        (["--frobnicate"], "unknown argument '--frobnicate'"),
        (["--purge"], "--purge goes with --uninstall"),
    ],
)
def test_bad_arguments_get_one_sentence_and_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        ["sh", str(SCRIPT), *args],
        env={"PATH": os.environ["PATH"], "EDGEWATCH_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert message in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was touched


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck (Debian's shellcheck)")
def test_the_script_is_posix_sh_by_shellcheck() -> None:
    done = subprocess.run(
        ["shellcheck", "--shell=sh", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout
