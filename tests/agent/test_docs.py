"""docs/agent.md lists every setting with its default, and nothing the code does not have."""

from __future__ import annotations

import re
from pathlib import Path

from edgewatch.agent.config import SETTINGS, TABLES

TEXT = (Path(__file__).resolve().parents[2] / "docs" / "agent.md").read_text()
DOC = TEXT[TEXT.index("## Settings") : TEXT.index("\n## ", TEXT.index("## Settings") + 1)]


def test_every_setting_is_documented_and_no_other() -> None:
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", DOC, re.MULTILINE))
    assert documented == {s.key for s in SETTINGS}


def test_every_table_is_documented() -> None:
    assert set(re.findall(r"^\| `\[\[(\w+)\]\]` \|", DOC, re.MULTILINE)) == set(TABLES)


def test_documented_defaults_match_the_code() -> None:
    rows = dict(re.findall(r"^\| `([a-z_.]+)` \| [^|]+ \| `((?:[^`])*)` \|", DOC, re.MULTILINE))
    rows = {k: v.replace("\\|", "|") for k, v in rows.items()}  # a | in a table cell is escaped
    for s in SETTINGS:
        text = rows[s.key]
        if s.kind == "bool":
            assert text == str(s.default).lower(), s.key
        elif s.kind in ("int", "str") or s.kind.startswith("choice"):
            assert text == (str(s.default) if s.default != "" else "(empty)"), s.key
        elif s.kind == "duration":
            assert text == f"{s.default:g} s", s.key


def test_every_series_the_system_collectors_send_is_documented() -> None:
    import time

    from edgewatch.agent.collectors import cpu, disk, filesystem, host, memory, network, processes, sensors

    fixtures = Path(__file__).resolve().parent / "fixtures"
    collectors = [
        cpu.CpuCollector(),
        memory.MemoryCollector(),
        filesystem.FilesystemCollector(),
        disk.DiskCollector(),
        network.NetworkCollector(tcp_interval=0),
        processes.ProcessCollector(interval=0),
        sensors.SensorsCollector(sys_root=fixtures / "sensors_pc" / "sys"),
        host.UptimeCollector(),
    ]
    names = set()
    for reading in range(2):  # rates and percentages appear on the second reading
        for c in collectors:
            names |= {s.name for s, _ in c.collect(time.time() + reading)}
    section = TEXT[TEXT.index("## Metrics") : TEXT.index("\n## ", TEXT.index("## Metrics") + 1)]
    documented = set(re.findall(r"^\| \w+ \| `([a-zA-Z_:][a-zA-Z0-9_:]*)` \|", section, re.MULTILINE))
    assert names - documented == set()
