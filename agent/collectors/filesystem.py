"""Space and inodes of each mounted filesystem: ``/proc/self/mountinfo`` and ``statvfs``.

Series, labelled ``{device, mountpoint, fstype}`` as in node_exporter:

- ``node_filesystem_size_bytes``, ``_free_bytes`` (free for root), ``_avail_bytes`` (free for
  users), ``_files``, ``_files_free``, ``_readonly`` (1 when mounted read-only)
- ``edgewatch_filesystem_used_percent``: used / (used + avail), the ``Use%`` column of ``df``
- ``node_filesystem_device_error``: 1 when ``statvfs`` failed (then only this series is sent)

Which mounts count: pseudo filesystems (``EXCLUDED_FSTYPES``) and mount points under ``/dev``,
``/proc``, ``/sys`` and container storage (``EXCLUDED_MOUNTPOINTS``) are skipped, as node_exporter
does by default; ``exclude_types`` and ``exclude_mounts`` add more (exact names and paths). A
filesystem mounted more than once (bind mounts, the same device at two places) is reported once, at
its shortest mount point: mounts are the same filesystem when ``mountinfo`` gives them the same
device number, which also holds for tmpfs and other mounts whose source is not a device path. (That
is why this reads ``mountinfo`` rather than ``mounts``, which has no device number.)

``statvfs`` of a network filesystem whose server is gone can block for minutes: the sampler runs
each collector in its own thread and skips it while it is stuck, so the other collectors carry
on. Exclude such mounts (``exclude_types=["nfs", "nfs4", "cifs"]``) if that is expected to happen.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .base import Sample, SeriesCache, read_text
from .procfs import ProcFormatError

EXCLUDED_FSTYPES = (
    "autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|erofs|fusectl|hugetlbfs|iso9660"
    "|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs"
)
EXCLUDED_MOUNTPOINTS = (
    r"/(dev|proc|sys|run/credentials/.+|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
_OCTAL = re.compile(r"\\([0-7]{3})")


class Mount:
    __slots__ = ("device", "fstype", "mountpoint", "readonly")

    def __init__(self, device: str, mountpoint: str, fstype: str, readonly: bool) -> None:
        self.device = device
        self.mountpoint = mountpoint
        self.fstype = fstype
        self.readonly = readonly


def _unescape(field: str) -> str:
    """The kernel writes space, tab, newline and backslash in paths as ``\\040`` and so on."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field) if "\\" in field else field


def parse_mountinfo(text: str, path: Path | str) -> list[tuple[str, Mount]]:
    """(device number "major:minor", mount) for each line of a ``mountinfo`` file, in order."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)  # optional fields ("shared:1") come before the "-"
            devno, mountpoint, options = fields[2], fields[4], fields[5]
            fstype, source, super_options = fields[sep + 1], fields[sep + 2], fields[sep + 3]
        except (ValueError, IndexError):
            raise ProcFormatError(path, f"line {line[:120]!r} is not a mountinfo line") from None
        readonly = "ro" in options.split(",") or "ro" in super_options.split(",")
        out.append((devno, Mount(_unescape(source), _unescape(mountpoint), fstype, readonly)))
    return out


class FilesystemCollector:
    blocking = True  # may hang (a dead mount, a slow endpoint): the sampler gives it a thread
    name = "filesystem"

    def __init__(
        self,
        proc_root: Path = Path("/proc"),
        *,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
        exclude_types: Iterable[str] = (),
        exclude_mounts: Iterable[str] = (),
        interval: float = 0.0,
        cache: SeriesCache | None = None,
    ) -> None:
        self.interval = interval
        self._mountinfo = proc_root / "self" / "mountinfo"
        self._statvfs = statvfs
        self._skip_fstype = re.compile(f"^(?:{EXCLUDED_FSTYPES})$").match
        self._skip_mountpoint = re.compile(f"^(?:{EXCLUDED_MOUNTPOINTS})").match
        self._excluded_types = frozenset(exclude_types)
        self._excluded_mounts = frozenset(exclude_mounts)
        self._cache = cache or SeriesCache()

    def mounts(self) -> list[Mount]:
        """The mounts to report: not excluded, each filesystem once (at its shortest mount point)."""
        chosen: dict[str, Mount] = {}
        for devno, mount in parse_mountinfo(read_text(self._mountinfo), self._mountinfo):
            if (
                self._skip_fstype(mount.fstype)
                or self._skip_mountpoint(mount.mountpoint)
                or mount.fstype in self._excluded_types
                or mount.mountpoint in self._excluded_mounts
            ):
                continue
            seen = chosen.get(devno)
            if seen is None or len(mount.mountpoint) < len(seen.mountpoint):
                chosen[devno] = mount
        return list(chosen.values())

    def collect(self, now: float) -> Sequence[Sample]:
        c = self._cache
        out: list[Sample] = []
        for m in self.mounts():
            labels = (("device", m.device), ("fstype", m.fstype), ("mountpoint", m.mountpoint))
            try:
                st = self._statvfs(m.mountpoint)
            except OSError:  # gone since mountinfo was read, or its server is unreachable
                out.append((c.gauge("node_filesystem_device_error", labels), 1))
                continue
            size, unit = st.f_blocks * st.f_frsize, st.f_frsize
            free, avail = st.f_bfree * unit, st.f_bavail * unit
            out += [
                (c.gauge("node_filesystem_device_error", labels), 0),
                (c.gauge("node_filesystem_size_bytes", labels), size),
                (c.gauge("node_filesystem_free_bytes", labels), free),
                (c.gauge("node_filesystem_avail_bytes", labels), avail),
                (c.gauge("node_filesystem_files", labels), st.f_files),
                (c.gauge("node_filesystem_files_free", labels), st.f_ffree),
                (c.gauge("node_filesystem_readonly", labels), int(m.readonly)),
            ]
            used = size - free
            if used + avail > 0:
                percent = round(100.0 * used / (used + avail), 1)
                out.append((c.gauge("edgewatch_filesystem_used_percent", labels, 1), percent))
        return out
