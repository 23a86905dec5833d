"""The bounded on-disk queue of one remote-write endpoint: append-only segment files and a cursor.

The folder holds ``<n>.seg`` files (n counting up) and ``cursor``. A segment is a run of records,
each a 20-byte header — payload length, samples, the time it was queued (ms), CRC-32 of the payload
— and the payload (one snappy-compressed WriteRequest, ready to send). Records are appended and
fsynced in batches (`append`); the sender reads the oldest unsent one (`peek`) and, once the
endpoint took it or refused it for good, moves the cursor past it (`ack`), written to ``cursor``
by rename. A segment whose records are all sent is deleted.

The queue holds at most ``max_bytes`` of unsent records: when an append goes beyond, the oldest
segments are deleted, unsent or not, and `append` answers how many samples went with them (the
caller counts them). At the start the folder is read again: the cursor says where sending resumes,
and a record cut short by a crash (a torn tail) is cut off. Every method is thread-safe: the
encoder thread appends while the sender reads and acks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import threading
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger("edgewatch.aggregator.remotewrite")
HEADER = struct.Struct("<IIqI")  # payload bytes, samples, queued at (ms), crc32(payload)
MAX_RECORD = 64 << 20
CURSOR = "cursor"
SUFFIX = ".seg"


class Record(NamedTuple):
    """One queued request: where it lives and what it holds (the payload is read by `read`)."""

    segment: int
    offset: int
    length: int  # payload bytes
    samples: int
    queued_ms: int

    @property
    def size(self) -> int:
        return HEADER.size + self.length


class Pending(NamedTuple):
    """A record to append: the payload and its samples (queued_ms: when its data was ingested)."""

    payload: bytes
    samples: int
    queued_ms: int


@dataclass
class _Segment:
    number: int
    path: Path
    size: int = 0  # bytes in the file
    records: deque[Record] = field(default_factory=deque)  # the unsent ones, oldest first

    @property
    def unsent_bytes(self) -> int:
        return sum(r.size for r in self.records)


def _segment_path(folder: Path, number: int) -> Path:
    return folder / f"{number:016d}{SUFFIX}"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _scan(path: Path, number: int) -> tuple[list[Record], int]:
    """The records of a segment file, and the length of its valid part (a torn tail is left out)."""
    records: list[Record] = []
    with path.open("rb") as f:
        data = f.read()
    offset = 0
    while offset + HEADER.size <= len(data):
        length, samples, queued, crc = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if length > MAX_RECORD or end > len(data):
            break
        if zlib.crc32(data[offset + HEADER.size : end]) != crc:
            break
        records.append(Record(number, offset, length, samples, queued))
        offset = end
    return records, offset


class DiskQueue:
    def __init__(self, folder: Path, max_bytes: int, *, segment_bytes: int | None = None) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or min(max(max_bytes // 16, 64 << 10), 64 << 20)
        self._lock = threading.Lock()
        self._segments: deque[_Segment] = deque()
        self._bytes = 0  # unsent record bytes
        self._samples = 0  # unsent samples
        self._fd: int | None = None  # the tail segment, open for appending
        self._oldest: int | None = None  # queued_ms of the oldest unsent record (read without the lock)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._open()

    # --- start -----------------------------------------------------------------------------------

    def _read_cursor(self) -> tuple[int, int]:
        try:
            data = json.loads((self.folder / CURSOR).read_text())
            return int(data["segment"]), int(data["offset"])
        except FileNotFoundError:
            return 0, 0
        except (ValueError, KeyError, TypeError):
            log.warning("folder=%s the cursor is unreadable; sending everything queued again", self.folder)
            return 0, 0

    def _open(self) -> None:
        cursor = self._read_cursor()
        numbers = sorted(
            int(p.name.removesuffix(SUFFIX))
            for p in self.folder.glob(f"*{SUFFIX}")
            if p.name.removesuffix(SUFFIX).isdigit()
        )
        for number in numbers:
            path = _segment_path(self.folder, number)
            records, valid = _scan(path, number)
            if valid != path.stat().st_size:
                log.warning(
                    "folder=%s segment=%d cut off %d bytes of a torn or damaged tail",
                    self.folder,
                    number,
                    path.stat().st_size - valid,
                )
                os.truncate(path, valid)
            unsent = deque(r for r in records if (r.segment, r.offset) >= cursor)
            if not unsent and number != numbers[-1]:
                path.unlink()
                continue
            self._segments.append(_Segment(number, path, valid, unsent))
            self._bytes += sum(r.size for r in unsent)
            self._samples += sum(r.samples for r in unsent)
        if not self._segments:
            self._segments.append(_Segment(numbers[-1] + 1 if numbers else 1, Path()))
            self._segments[-1].path = _segment_path(self.folder, self._segments[-1].number)
        tail = self._segments[-1]
        self._fd = os.open(tail.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _fsync_dir(self.folder)
        self._note_oldest()

    def _note_oldest(self) -> None:
        head = next((s for s in self._segments if s.records), None)
        self._oldest = None if head is None else head.records[0].queued_ms

    # --- the writer's side -----------------------------------------------------------------------

    def append(self, items: Sequence[Pending]) -> int:
        """Write the records and fsync once; answers the samples dropped to stay within the bound."""
        if not items:
            return 0
        with self._lock:
            if self._fd is None:
                raise ValueError("the remote-write queue is closed")
            for item in items:
                tail = self._segments[-1]
                if tail.size >= self.segment_bytes:
                    tail = self._rotate()
                header = HEADER.pack(
                    len(item.payload), item.samples, item.queued_ms, zlib.crc32(item.payload)
                )
                os.write(self._fd, header + item.payload)
                record = Record(tail.number, tail.size, len(item.payload), item.samples, item.queued_ms)
                tail.records.append(record)
                tail.size += record.size
                self._bytes += record.size
                self._samples += record.samples
            os.fsync(self._fd)
            dropped = self._enforce_bound()
            self._note_oldest()
            return dropped

    def _rotate(self) -> _Segment:
        assert self._fd is not None
        os.fsync(self._fd)
        os.close(self._fd)
        old = self._segments[-1]
        new = _Segment(old.number + 1, _segment_path(self.folder, old.number + 1))
        self._fd = os.open(new.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _fsync_dir(self.folder)
        self._segments.append(new)
        if not old.records:
            self._delete(old)
        return new

    def _delete(self, segment: _Segment) -> None:
        self._segments.remove(segment)
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()

    def _enforce_bound(self) -> int:
        dropped = 0
        while self._bytes > self.max_bytes and len(self._segments) > 1:
            head = self._segments[0]
            dropped += sum(r.samples for r in head.records)
            self._bytes -= head.unsent_bytes
            self._samples -= sum(r.samples for r in head.records)
            self._delete(head)
        if dropped:
            self._write_cursor(self._segments[0].number, 0)
        return dropped

    # --- the sender's side -----------------------------------------------------------------------

    def peek(self) -> Record | None:
        """The oldest unsent record, or None when everything was sent."""
        with self._lock:
            for segment in self._segments:
                if segment.records:
                    return segment.records[0]
            return None

    def read(self, record: Record) -> bytes | None:
        """The payload of ``record`` (the oldest unsent); None when it was dropped meanwhile (the bound)."""
        with self._lock:
            head = next((s for s in self._segments if s.records), None)
            if head is None or head.records[0] != record:
                return None
            path = _segment_path(self.folder, record.segment)
            try:
                with path.open("rb") as f:
                    f.seek(record.offset + HEADER.size)
                    data = f.read(record.length)
            except FileNotFoundError:
                return None
            return data if len(data) == record.length else None

    def ack(self, record: Record) -> bool:
        """``record`` is done (sent, or refused for good): move the cursor past it. False when it had
        been dropped already."""
        with self._lock:
            head = next((s for s in self._segments if s.records), None)
            if head is None or head.records[0] != record:
                return False
            head.records.popleft()
            self._bytes -= record.size
            self._samples -= record.samples
            self._write_cursor(record.segment, record.offset + record.size)
            if not head.records and head is not self._segments[-1]:
                self._delete(head)
            self._note_oldest()
            return True

    def _write_cursor(self, segment: int, offset: int) -> None:
        tmp = self.folder / f".{CURSOR}.tmp"
        tmp.write_text(json.dumps({"segment": segment, "offset": offset}))
        os.replace(tmp, self.folder / CURSOR)

    # --- state -------------------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        """Unsent bytes on disk (records with their headers)."""
        return self._bytes

    @property
    def samples(self) -> int:
        return self._samples

    @property
    def oldest_ms(self) -> int | None:
        """When the data of the oldest unsent record was queued, or None when none waits."""
        return self._oldest

    def close(self) -> None:
        """Safe twice."""
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
