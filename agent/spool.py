"""The disk spool: every frame is written here before it is sent, and deleted only after a 200.

One file per frame, named so that a directory listing sorts oldest first and says what each holds:
``<order>-<created ms>-<boot id hex>-<seq>-<samples>.frame``, where ``order`` is the spool's own
counter, so a clock that steps back does not reorder it (age still uses the wall clock). A frame is
written to a ``.tmp`` file, synced, renamed and the directory synced, so a crash or kill -9 leaves
either the whole entry or none (stray ``.tmp`` files are removed at start). The spool is bounded by
size and age; when over, the oldest entries go first and their samples are added to
``dropped_samples``, which is kept on disk and reported to the aggregator in every frame. The entry
the sender is pushing (``sending``) is never dropped meanwhile, the next oldest goes instead: once
the aggregator has acknowledged a frame, its samples must not count as dropped. Frames
the aggregator refused as malformed go to ``quarantine/`` (bounded too) instead of being retried.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from . import logs

log = logs.get("edgewatch.agent.spool")

QUARANTINE_KEEP = 100  # frames kept in quarantine/ for a human to look at


class Entry(NamedTuple):
    order: int  # the spool's own counter: the order frames were written in, whatever the clock did
    created_ms: int
    boot_id: int
    seq: int
    samples: int
    size: int

    @property
    def name(self) -> str:
        return f"{self.order:016d}-{self.created_ms:013d}-{self.boot_id:016x}-{self.seq}-{self.samples}.frame"

    @classmethod
    def parse(cls, name: str, size: int) -> Entry | None:
        parts = name.removesuffix(".frame").split("-")
        if not name.endswith(".frame") or len(parts) != 5:
            return None
        try:
            return cls(int(parts[0]), int(parts[1]), int(parts[2], 16), int(parts[3]), int(parts[4]), size)
        except ValueError:
            return None


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:  # a short write on a nearly full disk must not pass for a whole entry
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Spool:
    """Frames on disk, oldest first. Safe to use from the sampling and the sending thread."""

    def __init__(
        self, directory: Path, *, max_bytes: int, max_age: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.directory = directory
        self.quarantine_dir = directory / "quarantine"
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.quarantine_dir.mkdir(exist_ok=True, mode=0o700)
        self._entries: list[Entry] = []
        self._sending: Entry | None = None  # the entry being pushed: the bounds drop others
        for path in directory.iterdir():
            if path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)  # a write that a crash cut short: never acknowledged
                continue
            entry = Entry.parse(path.name, path.stat().st_size) if path.is_file() else None
            if entry is not None:
                self._entries.append(entry)
        self._entries.sort()
        self._bytes = sum(e.size for e in self._entries)
        self.next_order = self._entries[-1].order + 1 if self._entries else 1
        self._dropped_path = directory / "dropped_samples"
        try:
            self.dropped_samples = int(self._dropped_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            self.dropped_samples = 0

    @property
    def size(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, frame: bytes, *, boot_id: int, seq: int, samples: int) -> Entry:
        """Write a frame durably; then drop the oldest entries while over the size or age bound."""
        with self._lock:
            entry = Entry(self.next_order, int(self.clock() * 1000), boot_id, seq, samples, len(frame))
            self.next_order += 1
        write_atomically(self.directory / entry.name, frame)
        with self._lock:
            self._entries.append(entry)  # the newest: the list stays sorted
            self._bytes += entry.size
            self._enforce_bounds(keep=entry)
        return entry

    def _enforce_bounds(self, keep: Entry) -> None:
        oldest_allowed = (self.clock() - self.max_age) * 1000
        dropped = []
        i = 0
        while (
            i < len(self._entries)
            and self._entries[i] != keep
            and (self._bytes > self.max_bytes or self._entries[i].created_ms < oldest_allowed)
        ):
            if self._entries[i] == self._sending:
                i += 1  # on its way to the aggregator: the next oldest goes instead
                continue
            entry = self._entries.pop(i)
            self._bytes -= entry.size
            (self.directory / entry.name).unlink(missing_ok=True)
            dropped.append(entry)
        if dropped:
            self.dropped_samples += sum(e.samples for e in dropped)
            write_atomically(self._dropped_path, str(self.dropped_samples).encode())
            log.warning(
                "spool_full dropped_frames=%d dropped_samples=%d total_dropped_samples=%d",
                len(dropped),
                sum(e.samples for e in dropped),
                self.dropped_samples,
            )

    @contextmanager
    def sending(self, entry: Entry) -> Iterator[None]:
        """While the sender pushes ``entry``, the bounds never drop it (they drop the next oldest)."""
        with self._lock:
            self._sending = entry
        try:
            yield
        finally:
            with self._lock:
                self._sending = None

    def oldest(self, count: int, *, exclude: Entry | None = None) -> list[Entry]:
        with self._lock:
            return [e for e in self._entries if e != exclude][:count]

    def read(self, entry: Entry) -> bytes | None:
        """The frame of an entry, or None if it is gone (dropped meanwhile, or deleted by hand)."""
        try:
            return (self.directory / entry.name).read_bytes()
        except FileNotFoundError:
            with self._lock:  # forget it, or the sender would look for it for ever
                if entry in self._entries:
                    self._entries.remove(entry)
                    self._bytes -= entry.size
            return None

    def remove(self, entry: Entry) -> None:
        with self._lock:
            if entry in self._entries:
                self._entries.remove(entry)
                self._bytes -= entry.size
        (self.directory / entry.name).unlink(missing_ok=True)

    def quarantine(self, entry: Entry, reason: str) -> Path:
        """Move a refused frame aside (with the reason beside it) so it is not sent again."""
        with self._lock:
            if entry in self._entries:
                self._entries.remove(entry)
                self._bytes -= entry.size
        target = self.quarantine_dir / entry.name
        try:
            os.replace(self.directory / entry.name, target)
            target.with_suffix(".reason").write_text(reason + "\n")
        except FileNotFoundError:
            pass
        kept = sorted(p for p in self.quarantine_dir.iterdir() if p.suffix == ".frame")
        for old in kept[:-QUARANTINE_KEEP]:
            old.unlink(missing_ok=True)
            old.with_suffix(".reason").unlink(missing_ok=True)
        return target
