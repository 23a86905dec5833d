"""DiskCollector on golden diskstats: bytes from sectors, times in seconds, utilisation over wall time."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.agent.collectors.disk import DiskCollector
from edgewatch.agent.collectors.procfs import ProcFormatError

from .readings import PI, VM_NOW0, VM_NOW1, VM_T0, VM_T1, Reading, snapshot_copy, write


def test_disks_and_partitions_but_not_loop_ram_zram_or_optical() -> None:
    r = Reading(DiskCollector(PI / "proc").collect(0.0))
    devices = r.label_values("node_disk_read_bytes_total", "device")
    assert devices == ["mmcblk0", "mmcblk0p1", "mmcblk0p2", "sda", "sda1"]


def test_counters_in_base_units() -> None:
    r = Reading(DiskCollector(PI / "proc").collect(0.0))
    assert r("node_disk_reads_completed_total", device="mmcblk0") == 120394
    assert r("node_disk_writes_completed_total", device="mmcblk0") == 98123
    assert r("node_disk_read_bytes_total", device="mmcblk0") == 8412566 * 512
    assert r("node_disk_written_bytes_total", device="mmcblk0") == 4567890 * 512
    assert r("node_disk_read_time_seconds_total", device="mmcblk0") == 412.345
    assert r("node_disk_write_time_seconds_total", device="mmcblk0") == 987.654
    assert r("node_disk_io_time_seconds_total", device="mmcblk0") == 345.678
    assert r("node_disk_io_now", device="mmcblk0p2") == 2
    assert r.is_counter("node_disk_io_time_seconds_total")
    assert not r.is_counter("node_disk_io_now")


def test_exclude_is_a_parameter() -> None:
    r = Reading(DiskCollector(PI / "proc", exclude=r"^(loop|sr)\d+$|p\d+$|^sda\d").collect(0.0))
    assert r.label_values("node_disk_read_bytes_total", "device") == ["ram0", "mmcblk0", "sda", "zram0"]


def test_utilisation_from_two_recorded_readings() -> None:
    collector = DiskCollector(VM_T0 / "proc")
    first = Reading(collector.collect(VM_NOW0))
    assert not first.has("edgewatch_disk_utilisation_percent", device="vda")
    collector._path = VM_T1 / "proc" / "diskstats"
    r = Reading(collector.collect(VM_NOW1))
    # dd was writing: the disk was busy 3996 ms of the 5160 ms between the snapshots
    assert r("edgewatch_disk_utilisation_percent", device="vda") == 77.4
    assert r("node_disk_written_bytes_total", device="vda") == 14495808 * 512
    assert r.label_values("node_disk_io_now", "device") == ["vda"]  # loop0-7 and zram0 skipped


def test_a_counter_reset_skips_utilisation_once(tmp_path: Path) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    collector = DiskCollector(root)
    collector.collect(100.0)
    text = (root / "diskstats").read_text()
    write(root / "diskstats", text.replace(" 0 345678 1400000 ", " 0 1000 1400000 "))  # mmcblk0 re-created
    r = Reading(collector.collect(110.0))
    assert not r.has("edgewatch_disk_utilisation_percent", device="mmcblk0")
    assert r("edgewatch_disk_utilisation_percent", device="sda") == 0.0
    write(root / "diskstats", text.replace(" 0 345678 1400000 ", " 0 6000 1400000 "))
    assert Reading(collector.collect(120.0))("edgewatch_disk_utilisation_percent", device="mmcblk0") == 50.0


def test_utilisation_is_capped_at_100(tmp_path: Path) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    collector = DiskCollector(root)
    collector.collect(100.0)
    text = (root / "diskstats").read_text()
    write(root / "diskstats", text.replace(" 0 345678 1400000 ", " 0 356000 1400000 "))  # 10.3 s in 10 s
    assert Reading(collector.collect(110.0))("edgewatch_disk_utilisation_percent", device="mmcblk0") == 100.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (" 179       0 mmcblk0 120394 45021 8412566", "not at least 14"),
        (
            " 179       0 mmcblk0 120394 45021 84x2566 412345 98123 67890 4567890 987654 0 345678 1400000",
            "not a number",
        ),
    ],
    ids=["truncated", "garbage"],
)
def test_malformed_diskstats_raises(tmp_path: Path, line: str, message: str) -> None:
    write(tmp_path / "diskstats", line + "\n")
    with pytest.raises(ProcFormatError, match=message):
        DiskCollector(tmp_path).collect(0.0)
