"""The data dir's lock and the ownership of files made in it.

The aggregator holds an exclusive ``flock`` on ``DATA_DIR/edgewatch.lock`` while it runs, and
``edgewatch admin restore`` takes the same lock before it replaces the database, so a restore never
runs under a live aggregator and an aggregator never starts in the middle of a restore (nor do two
aggregators share a data dir). A kernel lock rather than a PID file or a probe of the database:

- the kernel drops it when its process ends, ``kill -9`` included, so it never goes stale;
- ``BEGIN EXCLUSIVE`` would succeed whenever the aggregator is idle between two commits (WAL readers
  never block it either), and asking who listens on the port says nothing about the data dir.

Files that root makes in a data dir owned by another user (``edgewatch admin`` run with sudo) are
given to that user, or the service could no longer open them.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "edgewatch.lock"


class DataDirBusy(Exception):
    """Another process holds the data dir's lock; ``holder`` is what it wrote into the lock file."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        super().__init__(f"{data_dir} is in use by {holder}")
        self.data_dir = data_dir
        self.holder = holder


class DataDirLock:
    """Take the data dir's lock now (never waits); ``release()`` is safe twice."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        path = data_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DataDirBusy(data_dir, other) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} (pid {os.getpid()})\n".encode(), 0)
        own_like(path, data_dir)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def own_like(path: Path, data_dir: Path) -> None:
    """When root makes ``path`` in a data dir owned by someone else, give it to the dir's owner."""
    if os.geteuid() != 0:
        return
    st = data_dir.stat()
    if st.st_uid != 0 or st.st_gid != 0:
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
