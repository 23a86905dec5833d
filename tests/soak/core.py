"""The soak suite's frame: a registry of numbered scenarios, their results, the JSON and table summary.

A scenario is a function ``run(ctx) -> Result`` registered with :func:`scenario`. It starts real
``edgewatch`` processes on loopback under ``ctx.tmp``, stops every one of them before it returns
(also when it fails), and reports its figures. ``ctx.fast`` asks for the shortened form that runs
inside ``make test``; ``ctx.scale`` picks sizes and durations for each form.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Context:
    tmp: Path
    fast: bool

    def scale(self, full: T, fast: T) -> T:
        """The full-suite value, or the fast subset's one."""
        return fast if self.fast else full


@dataclass
class Result:
    """What a scenario found: pass or fail, its figures, and why it failed (one line per problem)."""

    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def check(self, ok: bool, problem: str) -> bool:
        """Record ``problem`` when ``ok`` is false; returns ``ok``."""
        if not ok:
            self.problems.append(problem)
        return ok

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Scenario:
    number: int
    name: str
    promise: str
    run: Callable[[Context], Result]


SCENARIOS: dict[int, Scenario] = {}


def scenario(
    number: int, name: str, promise: str
) -> Callable[[Callable[[Context], Result]], Callable[[Context], Result]]:
    """Register ``run`` as scenario ``number``; ``promise`` is the sentence docs/reliability.md explains."""

    def register(run: Callable[[Context], Result]) -> Callable[[Context], Result]:
        if number in SCENARIOS:
            raise ValueError(f"soak scenario {number} is registered twice")
        SCENARIOS[number] = Scenario(number, name, promise, run)
        return run

    return register


def load_all() -> dict[int, Scenario]:
    """Import every ``s*.py`` module of this package, which registers its scenarios."""
    package = importlib.import_module(__package__ or "tests.soak")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("s") and info.name[1:3].isdigit():
            importlib.import_module(f"{package.__name__}.{info.name}")
    return dict(sorted(SCENARIOS.items()))


def execute(item: Scenario, ctx: Context) -> dict[str, Any]:
    """Run one scenario and turn its result (or its exception) into a summary row."""
    started = time.monotonic()
    try:
        result = item.run(ctx)
    except Exception as error:  # a crash is a failed scenario with its traceback, not a crashed suite
        result = Result(problems=[f"{type(error).__name__}: {error}"])
        result.figures["traceback"] = traceback.format_exc(limit=8)
    return {
        "scenario": item.number,
        "name": item.name,
        "passed": result.passed,
        "seconds": round(time.monotonic() - started, 1),
        "fast": ctx.fast,
        "figures": result.figures,
        "problems": result.problems,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The summary as a fixed-width table, one line per scenario plus its problems."""
    lines = [f"{'#':>2}  {'scenario':<34} {'result':<6} {'seconds':>8}  figures"]
    for row in rows:
        figures = ", ".join(
            f"{k}={v}"
            for k, v in row["figures"].items()
            if k != "traceback" and not isinstance(v, (dict, list))
        )
        lines.append(
            f"{row['scenario']:>2}  {row['name'][:34]:<34} {'pass' if row['passed'] else 'FAIL':<6}"
            f" {row['seconds']:>8.1f}  {figures[:160]}"
        )
        lines += [f"{'':>4}- {problem}" for problem in row["problems"]]
    return "\n".join(lines)
