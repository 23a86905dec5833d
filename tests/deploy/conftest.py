"""The wheel and sdist, built once per test session the way ``make dist`` builds them, and fresh
venvs to install the wheel into without the network."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """``python -m build --no-isolation``, as ``make dist``: the sdist, then the wheel from the sdist
    (so the wheel has only what the sdist carries). No network: the build backend is in the venv."""
    if importlib.util.find_spec("build") is None:
        pytest.skip("needs the build package; `make setup` installs it with the dev extras")
    assert (ROOT / "web" / "vendor" / "uPlot.esm.js").is_file(), "web/vendor lacks uPlot; run make setup"
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("edgewatch-*.whl")
    (sdist,) = out.glob("edgewatch-*.tar.gz")
    return Dist(wheel, sdist)


DEPENDENCIES_PTH = "edgewatch-test-dependencies.pth"


def dependency_dirs() -> str:
    """The ``.pth`` text that lends a venv the dependencies of the venv running the tests."""
    return "".join(f"{d}\n" for d in sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}))


def lend_dependencies(venv: Path) -> None:
    """Let ``venv`` import edgewatch's dependencies from the venv running the tests (a ``.pth``
    line: like ``--system-site-packages``, but for this venv, where ``make setup`` put them), so
    the wheel installs with ``--no-deps`` and no package index. Only directories are added, no
    ``.pth`` of theirs runs: the editable edgewatch there stays invisible."""
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / DEPENDENCIES_PTH).write_text(dependency_dirs())
