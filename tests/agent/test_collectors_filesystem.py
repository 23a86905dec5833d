"""FilesystemCollector on golden mountinfo files with a fake statvfs."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from edgewatch.agent.collectors.filesystem import FilesystemCollector
from edgewatch.agent.collectors.procfs import ProcFormatError

from .readings import PI, VM_T0, Reading, statvfs_of, vfs, write

ROOT = vfs(4096, 7654321, 3000000, 2600000, 1900000, 1500000)
USB = vfs(1024, 1000000, 400000, 350000, 65536, 60000)  # fragment size 1024, block size 4096
STALE: dict[str, os.statvfs_result | OSError] = {"/mnt/nas": OSError(errno.ESTALE, "Stale file handle")}
PI_TABLE: dict[str, os.statvfs_result | OSError] = {
    "/": ROOT,
    "/run": vfs(4096, 97000, 96000, 96000, 485000, 484000),
    "/run/lock": vfs(4096, 1280, 1280, 1280, 485000, 484998),
    "/boot/firmware": vfs(512, 1048576, 900000, 900000, 0, 0),
    "/mnt/usb backup": USB,
    "/run/user/1000": vfs(4096, 97000, 97000, 97000, 97000, 96990),
    **STALE,
}
PI_MOUNTS = {"/", "/run", "/run/lock", "/boot/firmware", "/mnt/usb backup", "/run/user/1000", "/mnt/nas"}


def pi_reading(
    calls: list[str] | None = None,
    exclude_types: list[str] | None = None,
    exclude_mounts: list[str] | None = None,
) -> Reading:
    collector = FilesystemCollector(
        PI / "proc",
        statvfs=statvfs_of(PI_TABLE, calls),
        exclude_types=exclude_types or [],
        exclude_mounts=exclude_mounts or [],
    )
    return Reading(collector.collect(0.0))


def test_pseudo_duplicate_and_container_mounts_are_skipped() -> None:
    calls: list[str] = []
    r = pi_reading(calls)
    assert set(r.label_values("node_filesystem_device_error", "mountpoint")) == PI_MOUNTS
    # /proc, /sys, /dev/*, cgroup2, squashfs snap, docker overlay, iso9660, fusectl, credentials: never
    # asked; /srv/data and /srv/backup/photos-mirror are bind mounts of / and of the USB disk
    assert sorted(calls) == sorted(PI_MOUNTS)


def test_sizes_use_the_fragment_size() -> None:
    r = pi_reading()
    root = {"device": "/dev/mmcblk0p2", "fstype": "ext4", "mountpoint": "/"}
    assert r("node_filesystem_size_bytes", **root) == 7654321 * 4096
    assert r("node_filesystem_free_bytes", **root) == 3000000 * 4096
    assert r("node_filesystem_avail_bytes", **root) == 2600000 * 4096
    assert r("node_filesystem_files", **root) == 1900000
    assert r("node_filesystem_files_free", **root) == 1500000
    assert r("node_filesystem_readonly", **root) == 0
    assert r("node_filesystem_device_error", **root) == 0
    usb = {"device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/mnt/usb backup"}  # \040 in mountinfo
    assert r("node_filesystem_size_bytes", **usb) == 1000000 * 1024


def test_used_percent_is_df_use() -> None:
    r = pi_reading()
    # df: used / (used + avail), the blocks reserved for root left out
    root = {"device": "/dev/mmcblk0p2", "fstype": "ext4", "mountpoint": "/"}
    assert r("edgewatch_filesystem_used_percent", **root) == 64.2  # 4654321 / (4654321 + 2600000)
    usb = {"device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/mnt/usb backup"}
    assert r("edgewatch_filesystem_used_percent", **usb) == 63.2  # 600000 / 950000


def test_read_only_mount_and_statvfs_error() -> None:
    r = pi_reading()
    assert (
        r("node_filesystem_readonly", device="/dev/mmcblk0p1", fstype="vfat", mountpoint="/boot/firmware")
        == 1
    )
    nas = {"device": "nas.lan:/export/media", "fstype": "nfs4", "mountpoint": "/mnt/nas"}
    assert r("node_filesystem_device_error", **nas) == 1
    assert not r.has("node_filesystem_size_bytes", **nas)


def test_extra_excludes() -> None:
    calls: list[str] = []
    r = pi_reading(calls, exclude_types=["tmpfs"], exclude_mounts=["/mnt/nas"])
    assert set(r.label_values("node_filesystem_size_bytes", "mountpoint")) == {
        "/",
        "/boot/firmware",
        "/mnt/usb backup",
    }
    assert "/mnt/nas" not in calls


def test_a_filesystem_mounted_twice_is_reported_at_its_shortest_mount_point(tmp_path: Path) -> None:
    write(
        tmp_path / "self" / "mountinfo",
        "30 1 8:1 / /srv/backup rw - ext4 /dev/sda1 rw\n"
        "31 1 8:1 / /b rw - ext4 /dev/sda1 rw\n"
        "32 1 0:40 / /tmp rw - tmpfs tmpfs rw\n"
        "33 1 0:41 / /var/tmp rw - tmpfs tmpfs rw\n",  # another tmpfs: another filesystem
    )
    table: dict[str, os.statvfs_result | OSError] = {"/b": USB, "/tmp": USB, "/var/tmp": USB}
    r = Reading(FilesystemCollector(tmp_path, statvfs=statvfs_of(table)).collect(0.0))
    assert set(r.label_values("node_filesystem_size_bytes", "mountpoint")) == {"/b", "/tmp", "/var/tmp"}


def test_recorded_vm_mounts() -> None:
    calls: list[str] = []
    FilesystemCollector(VM_T0 / "proc", statvfs=statvfs_of({"/": ROOT}, calls)).collect(0.0)
    assert calls == ["/"]  # proc, sysfs, devtmpfs, /dev/shm, devpts, cgroup tmpfs and cgroups skipped


def test_malformed_mountinfo_raises(tmp_path: Path) -> None:
    write(tmp_path / "self" / "mountinfo", "26 1 179:2 / / rw,noatime shared:1 ext4 /dev/mmcblk0p2 rw\n")
    with pytest.raises(ProcFormatError, match="not a mountinfo line"):
        FilesystemCollector(tmp_path, statvfs=statvfs_of({})).collect(0.0)


def test_an_empty_filesystem_has_no_used_percent(tmp_path: Path) -> None:
    write(tmp_path / "self" / "mountinfo", "30 1 0:50 / /mnt/empty rw - fuse.sshfs host:/ rw\n")
    table: dict[str, os.statvfs_result | OSError] = {"/mnt/empty": vfs(4096, 0, 0, 0, 0, 0)}
    r = Reading(FilesystemCollector(tmp_path, statvfs=statvfs_of(table)).collect(0.0))
    labels = {"device": "host:/", "fstype": "fuse.sshfs", "mountpoint": "/mnt/empty"}
    assert r("node_filesystem_size_bytes", **labels) == 0
    assert not r.has("edgewatch_filesystem_used_percent", **labels)
