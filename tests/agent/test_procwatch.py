"""Watched processes on a recorded /proc tree, read twice 10 s apart (fixtures/procwatch/t0 and t1)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from edgewatch.agent.collectors.base import Sample
from edgewatch.agent.collectors.procwatch import ProcessWatchCollector, parse_stat

FIXTURES = Path(__file__).parent / "fixtures" / "procwatch"
PAGE = 4096
WATCHES = [
    ("nginx", "nginx"),
    ("app", "re:gunicorn app:main"),
    ("resolved", "systemd-resolved"),  # 16 characters: the kernel's comm keeps 15
    ("sd-pam", "(sd-pam)"),  # parentheses inside the name in /proc/PID/stat
    ("firefox", "Web Content"),  # a space inside the name
    ("everything", "re:."),  # every process with a command line; kernel threads have none
    ("mysql", "mysqld"),
]


def _by_watch(samples: Sequence[Sample]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for s, v in samples:
        short = s.name.removeprefix("edgewatch_process_watch_")
        out.setdefault(dict(s.labels)["watch"], {})[short] = v
    return out


def _collector(root: Path) -> ProcessWatchCollector:
    return ProcessWatchCollector("procwatch", WATCHES, proc_root=root, page_size=PAGE, clock_ticks=100)


def test_counts_memory_and_cpu_between_two_readings(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    os.symlink(FIXTURES / "t0" / "proc", proc)
    collector = _collector(proc)
    first = _by_watch(collector.collect(1000.0))
    assert first["nginx"] == {"running": 2, "cpu_percent": None, "resident_bytes": (400 + 1500) * PAGE}
    assert all(w["cpu_percent"] is None for w in first.values())  # no earlier reading to compare with

    proc.unlink()
    os.symlink(FIXTURES / "t1" / "proc", proc)
    second = _by_watch(collector.collect(1010.0))
    # nginx: the old worker used 80 ticks, the new worker (started after the first reading) 30;
    # 110 ticks of 1/100 s over 10 s is 11 % of one core
    assert second["nginx"] == {
        "running": 3,
        "cpu_percent": 11.0,
        "resident_bytes": (400 + 1500 + 1200) * PAGE,
    }
    # gunicorn: pid 951 is a new process with a reused pid: its 40 ticks count, not 40 - 350
    assert second["app"] == {"running": 2, "cpu_percent": 9.0, "resident_bytes": (9100 + 7000) * PAGE}
    assert second["resolved"]["running"] == 1
    assert second["resolved"]["cpu_percent"] == 0.1
    assert second["sd-pam"] == {"running": 1, "cpu_percent": 0.0, "resident_bytes": 300 * PAGE}
    assert second["firefox"]["cpu_percent"] == 10.0
    assert second["everything"]["running"] == 9  # all but kthreadd
    assert second["mysql"] == {"running": 0, "cpu_percent": 0.0, "resident_bytes": 0}


def test_series_are_gauges_with_one_decimal_for_cpu() -> None:
    samples = _collector(FIXTURES / "t0" / "proc").collect(0.0)
    cpu = next(s for s, _ in samples if s.name == "edgewatch_process_watch_cpu_percent")
    assert cpu.precision == 1
    assert {s.name for s, _ in samples} == {
        "edgewatch_process_watch_running",
        "edgewatch_process_watch_cpu_percent",
        "edgewatch_process_watch_resident_bytes",
    }
    assert len(samples) == 3 * len(WATCHES)


def test_stat_with_parentheses_and_spaces_in_the_name() -> None:
    text = (FIXTURES / "t0" / "proc" / "1203" / "stat").read_text()
    proc = parse_stat(text)
    assert proc.comm == "(sd-pam)"
    assert proc.rss_pages == 300
    proc = parse_stat((FIXTURES / "t0" / "proc" / "1400" / "stat").read_text())
    assert (proc.comm, proc.ticks, proc.start) == ("Web Content", 5800, 20000)


def test_bad_regex_and_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="watch broken: 're:\\(' is not a valid regular expression"):
        ProcessWatchCollector("procwatch", [("broken", "re:(")])
    with pytest.raises(ValueError, match="named twice"):
        ProcessWatchCollector("procwatch", [("a", "x"), ("a", "y")])


def test_this_test_process_on_the_real_proc() -> None:
    """Invariants against the live kernel: this process is found by its command line and uses memory."""
    collector = ProcessWatchCollector("procwatch", [("me", "re:pytest")])
    collector.collect(time.time())
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # burn some CPU so the second reading has something to show
        pass
    got = _by_watch(collector.collect(time.time() + 1.0))["me"]
    assert isinstance(got["running"], int)
    assert got["running"] >= 1
    assert isinstance(got["resident_bytes"], int)
    assert got["resident_bytes"] > 10 * 1024 * 1024
    assert isinstance(got["cpu_percent"], float)
    assert got["cpu_percent"] > 0
