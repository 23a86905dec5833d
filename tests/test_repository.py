"""The repository's shape and the contracts around it: dependency rule, CLI, packaging, docs."""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EDGEWATCH = Path(sys.executable).with_name("edgewatch")

# side -> modules it must never import (DESIGN.md, "Dependency rule")
FORBIDDEN = {
    "protocol": ("edgewatch.agent", "edgewatch.aggregator", "aiohttp", "aiosqlite", "psutil"),
    "agent": ("edgewatch.aggregator", "aiohttp", "aiosqlite", "uvloop"),
    "aggregator": ("edgewatch.agent",),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            found.update(
                a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
            )
    return found


@pytest.mark.parametrize("side", sorted(FORBIDDEN))
def test_dependency_rule(side: str) -> None:
    broken = []
    for path in sorted((ROOT / side).rglob("*.py")):
        for name in _imports(path):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[side]):
                broken.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not broken, "; ".join(broken)


def test_cli_subcommands_name_their_side_only_as_data() -> None:
    """The dispatcher lists subcommand modules as strings and imports them only when they run."""
    from edgewatch.protocol.cli import COMMANDS

    for name, (module, text) in COMMANDS.items():
        assert module.startswith("edgewatch."), name
        assert text, name
        assert not text.endswith("."), name


def test_importing_the_protocol_loads_no_side() -> None:
    code = (
        "import sys, edgewatch.protocol, edgewatch.protocol.cli;"
        "sides = ('edgewatch.agent', 'edgewatch.aggregator', 'aiohttp');"
        "bad = [m for m in sys.modules if m.startswith(sides)];"
        "print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EDGEWATCH), *args], capture_output=True, text=True, timeout=60, check=False)


def test_version() -> None:
    from edgewatch.protocol.version import __version__

    result = _run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"edgewatch {__version__}"


def test_help_lists_the_commands() -> None:
    from edgewatch.protocol.cli import COMMANDS

    result = _run("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout


@pytest.mark.parametrize("args", [("frobnicate",), ("--frobnicate",), ("agnet", "--once")])
def test_unknown_subcommand_is_one_clear_line_and_exit_2(args: tuple[str, ...]) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert args[0] in lines[0]
    assert "edgewatch --help" in lines[0]


def test_no_arguments_prints_usage_and_exits_2() -> None:
    result = _run()
    assert result.returncode == 2
    assert "usage: edgewatch" in result.stdout


def test_setup_cfg_maps_the_folders_to_edgewatch_packages() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    mapping = dict(
        line.split(" = ") for line in cfg["options"]["package_dir"].strip().splitlines() if line.strip()
    )
    assert mapping == {f"edgewatch.{d}": d for d in ("agent", "aggregator", "protocol", "web")}
    extras = cfg["options.extras_require"]
    assert {"agent", "aggregator", "all", "dev"} <= set(extras)
    assert "aiohttp>=3.14.1" in extras["aggregator"]
    assert "aiohttp" not in extras["agent"]
    assert "edgewatch = edgewatch.protocol.cli:main" in cfg["options.entry_points"]["console_scripts"]


def test_pyproject_holds_only_the_build_system() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(data) == {"build-system"}


def test_every_dependency_is_pinned_in_the_constraints() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    wanted = cfg["options"]["install_requires"].split() + [
        line
        for name in ("agent", "aggregator", "dev")
        for line in cfg["options.extras_require"][name].split()
    ]
    names = {w.split(">=")[0].split("[")[0].lower().replace("_", "-") for w in wanted if w and w[0].isalpha()}
    assert names <= pinned, sorted(names - pinned)


def test_readme_quick_start_is_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Quick start")
    section = readme[start : readme.index("\n## ", start + 1)]
    blocks = section.split("```")[1::2]
    commands = [line.strip() for block in blocks for line in block.splitlines()[1:] if line.strip()]
    assert commands == ["make demo", "make test"]


def test_ci_runs_make_test_and_nothing_else() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[-1] == "exec make test"
    assert all(line.startswith(("set ", "cd ")) for line in lines[:-1])


def test_make_help_lists_every_target() -> None:
    makefile = (ROOT / "Makefile").read_text()
    phony = next(line for line in makefile.splitlines() if line.startswith(".PHONY:")).split()[1:]
    result = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True)
    listed = {line.split()[1] for line in result.stdout.splitlines() if line.strip().startswith("make ")}
    assert set(phony) == listed
