"""MemoryCollector on golden snapshots: meminfo in bytes, used memory and swap, vmstat counters."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.agent.collectors.memory import FIELDS, MemoryCollector
from edgewatch.agent.collectors.procfs import ProcFormatError, read_meminfo

from .readings import PI, VM_T1, Reading, snapshot_copy, write


def test_meminfo_fields_are_kilobytes_times_1024() -> None:
    r = Reading(MemoryCollector(PI / "proc").collect(0.0))
    assert r("node_memory_MemTotal_bytes") == 3884564 * 1024
    assert r("node_memory_MemAvailable_bytes") == 2980112 * 1024
    assert r("node_memory_SReclaimable_bytes") == 60000 * 1024
    assert {f"node_memory_{f}_bytes" for f in FIELDS} <= r.names()
    assert all(type(r(f"node_memory_{f}_bytes")) is int for f in FIELDS)
    assert not r.has("node_memory_Active(anon)_bytes")  # only the fields listed, all valid names


def test_used_memory_and_swap() -> None:
    r = Reading(MemoryCollector(PI / "proc").collect(0.0))
    assert r("edgewatch_memory_used_bytes") == (3884564 - 2980112) * 1024
    assert r("edgewatch_memory_used_percent") == 23.3  # 904452 of 3884564 kB
    assert r("edgewatch_swap_used_bytes") == (102396 - 90000) * 1024


def test_vmstat_counters() -> None:
    r = Reading(MemoryCollector(PI / "proc").collect(0.0))
    assert (r("node_vmstat_pswpin"), r("node_vmstat_pswpout"), r("node_vmstat_pgmajfault")) == (
        3100,
        6200,
        45678,
    )
    assert r.is_counter("node_vmstat_pgmajfault")
    assert not r.is_counter("node_memory_MemFree_bytes")


def test_recorded_vm_snapshot() -> None:
    r = Reading(MemoryCollector(VM_T1 / "proc").collect(0.0))
    assert r("node_memory_MemAvailable_bytes") == 24373700 * 1024
    assert r("edgewatch_memory_used_percent") == 1.3
    assert r("edgewatch_swap_used_bytes") == 0  # no swap on this VM
    assert r("node_vmstat_pgmajfault") == 2464


def test_unitless_meminfo_fields_are_counts() -> None:
    info = read_meminfo(PI / "proc" / "meminfo")
    assert info["HugePages_Total"] == 0
    assert info["Hugepagesize"] == 2048 * 1024


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("MemTotal:        3884564 kB\nMemFree:         1650348 kB\n", "no MemAvailable line"),
        ("MemTotal:        3884564 kB\nMemFree:  lots kB\n", "'MemFree:  lots kB'"),
        ("MemTotal:        3884564 MB\n", "not 'Field: number kB'"),
        ("garbage\n", "'garbage'"),
    ],
    ids=["truncated", "garbage-number", "unknown-unit", "no-colon"],
)
def test_malformed_meminfo_raises(tmp_path: Path, text: str, message: str) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    write(root / "meminfo", text)
    with pytest.raises(ProcFormatError, match=message):
        MemoryCollector(root).collect(0.0)


def test_malformed_vmstat_raises(tmp_path: Path) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    write(root / "vmstat", "pswpin 3100\npswpout ?\n")
    with pytest.raises(ProcFormatError, match="vmstat"):
        MemoryCollector(root).collect(0.0)


def test_kernel_without_vm_event_counters_reports_no_vmstat(tmp_path: Path) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    write(root / "vmstat", "nr_free_pages 412587\n")
    r = Reading(MemoryCollector(root).collect(0.0))
    assert not {n for n in r.names() if n.startswith("node_vmstat_")}
    assert r("node_memory_MemTotal_bytes") == 3884564 * 1024
