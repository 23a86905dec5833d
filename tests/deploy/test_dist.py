"""``make dist``: the wheel and the sdist hold the web UI and the packaging files, and the wheel,
installed into a fresh venv, runs ``edgewatch --version`` and a demo that serves the UI."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import pytest

from edgewatch.aggregator.static import EARLY_TAG, HIDDEN, TYPES, inline_script
from edgewatch.protocol.version import __version__
from tests.aggregator.procs import env_without_proxies, free_port

from .conftest import ROOT, Dist, lend_dependencies

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _ui_files() -> list[str]:
    """Every file of web/ that the aggregator serves (static.py's kinds, without npm's files)."""
    web = ROOT / "web"
    return sorted(
        p.relative_to(web).as_posix()
        for p in web.rglob("*")
        if p.is_file() and p.suffix in TYPES and not set(p.relative_to(web).parts) & set(HIDDEN)
    )


PACKAGING = [
    "install-agent.sh",
    "systemd/edgewatch-agent.service",
    "systemd/edgewatch-aggregator.service",
    "sysusers.d/edgewatch.conf",
    "tmpfiles.d/edgewatch.conf",
    "polkit/50-edgewatch-agent.rules",
    "examples/aggregator.toml",
    "examples/agent.toml",
]


def test_the_wheel_and_the_sdist_hold_the_web_ui_and_the_packaging_files(dist: Dist) -> None:
    ui = _ui_files()
    assert {
        "index.html",
        "app.js",
        "style.css",
        "sw.js",
        "vendor/uPlot.esm.js",
        "vendor/uPlot.min.css",
    } <= set(ui)
    assert {f.split("/")[0] for f in ui} >= {"pages", "icons", "vendor"}
    with zipfile.ZipFile(dist.wheel) as z:
        names = set(z.namelist())
        for f in ui:
            assert z.read(f"edgewatch/web/{f}") == (ROOT / "web" / f).read_bytes(), f
        data = f"edgewatch-{__version__}.data/data/share/edgewatch"
        for f in PACKAGING:
            assert z.read(f"{data}/{f}") == (ROOT / "packaging" / f).read_bytes(), f
    assert not [n for n in names if "node_modules" in n or n.endswith("package.json")]
    with tarfile.open(dist.sdist) as tar:
        members = set(tar.getnames())
    top = f"edgewatch-{__version__}"
    missing = [
        f
        for f in [*(f"web/{f}" for f in ui), *(f"packaging/{f}" for f in PACKAGING)]
        if f"{top}/{f}" not in members
    ]
    assert missing == []
    assert {f"{top}/MANIFEST.in", f"{top}/web/package-lock.json", f"{top}/docs/aggregator.md"} <= members
    assert not [m for m in members if "node_modules" in m]


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get_content_type(), r.read()


def _run(*argv: str | Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=120, env=env, cwd=cwd, check=False
    )


def test_the_wheel_in_a_fresh_venv_runs_and_its_demo_serves_the_ui(dist: Dist, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {k: v for k, v in env_without_proxies().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = _run(sys.executable, "-m", "venv", "--without-pip", venv, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    pip = ("install", "--quiet", "--no-deps", "--no-index", "--disable-pip-version-check", dist.wheel)
    done = _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", *pip, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lend_dependencies(venv)
    done = _run(venv / "bin" / "edgewatch", "--version", env=env, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"edgewatch {__version__}\n"), done.stderr
    code = "import edgewatch.web, edgewatch.aggregator as a; print(edgewatch.web.__file__, a.__file__)"
    where = _run(venv / "bin" / "python", "-c", code, env=env, cwd=tmp_path)
    assert where.stdout.split(), where.stderr
    assert all(Path(p).is_relative_to(venv) for p in where.stdout.split()), where.stdout

    port = free_port()
    demo = subprocess.Popen(
        [
            *(str(venv / "bin" / "edgewatch"), "demo", "--dir", str(tmp_path / "demo"), "--port", str(port)),
            *("--hosts", "2", "--history", "10m", "--duration", "120"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert demo.stdout is not None
        url = ""
        while not url:  # the demo prints its URL once all of it runs (the test's timeout bounds this)
            line = demo.stdout.readline().decode()
            assert line, "the demo ended before it printed its URL"
            if found := re.match(r"\s+URL:\s+(\S+)/$", line):
                url = found[1]
        assert url == f"http://127.0.0.1:{port}"
        status, kind, body = _get(url + "/")
        assert (status, kind) == (200, "text/html")
        (installed,) = venv.glob("lib/python3*/site-packages/edgewatch/web/index.html")
        # the installed page, with the installed early.js inline (aggregator/static.py)
        page = inline_script(installed.read_bytes(), EARLY_TAG, installed.with_name("early.js").read_bytes())
        assert page is not None
        assert body == page[0]
        module = re.search(rb'<script type="module" src="/?([^"]+\.js)"', body)
        assert module, body[:500]
        status, kind, js = _get(f"{url}/{module[1].decode()}")
        assert (status, kind) == (200, "text/javascript")
        assert js == (ROOT / "web" / module[1].decode()).read_bytes()
        status, _, vendor = _get(url + "/vendor/uPlot.esm.js")
        assert (status, vendor) == (200, (ROOT / "web" / "vendor" / "uPlot.esm.js").read_bytes())
        status, _, script = _get(url + "/install.sh")  # from the venv's share/edgewatch (data files)
        assert status == 200
        assert f"SERVED_VERSION='{__version__}'".encode() in script
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            out, err = demo.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()
            out, err = demo.communicate()
    assert demo.returncode == 0, err.decode()
    assert out.decode().rstrip().endswith("edgewatch demo stopped")
    assert "Traceback" not in (tmp_path / "demo" / "aggregator.log").read_text()
