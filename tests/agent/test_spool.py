"""The spool keeps every frame until it is acknowledged, bounded by size and age."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from edgewatch.agent.spool import Spool


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_frames_survive_a_restart_in_order(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(tmp_path, max_bytes=1 << 20, max_age=3600, clock=clock)
    for seq in range(1, 6):
        clock.t += 10
        spool.put(f"frame {seq}".encode(), boot_id=7, seq=seq, samples=3)
    reopened = Spool(tmp_path, max_bytes=1 << 20, max_age=3600, clock=clock)
    entries = reopened.oldest(10)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert reopened.read(entries[0]) == b"frame 1"
    assert reopened.size == sum(len(f"frame {i}") for i in range(1, 6))


def test_remove_after_ack(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_age=3600)
    entry = spool.put(b"x", boot_id=1, seq=1, samples=1)
    spool.remove(entry)
    assert len(spool) == 0
    assert spool.read(entry) is None
    assert not list(tmp_path.glob("*.frame"))


def test_full_spool_drops_oldest_and_counts_their_samples(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(tmp_path, max_bytes=1000, max_age=3600, clock=clock)
    for seq in range(1, 21):
        clock.t += 10
        spool.put(b"x" * 100, boot_id=1, seq=seq, samples=150)
    assert spool.size <= 1000
    assert [e.seq for e in spool.oldest(100)] == list(range(11, 21))  # the newest ten stay
    assert spool.dropped_samples == 10 * 150
    # the count survives a restart, so the aggregator is told even after one
    assert Spool(tmp_path, max_bytes=1000, max_age=3600, clock=clock).dropped_samples == 1500


def test_old_frames_expire(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(tmp_path, max_bytes=1 << 20, max_age=60, clock=clock)
    spool.put(b"old", boot_id=1, seq=1, samples=5)
    clock.t += 61
    spool.put(b"new", boot_id=1, seq=2, samples=5)
    assert [e.seq for e in spool.oldest(10)] == [2]
    assert spool.dropped_samples == 5


def test_a_frame_bigger_than_the_spool_is_still_kept_until_sent(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10, max_age=3600)
    entry = spool.put(b"y" * 100, boot_id=1, seq=1, samples=1)
    assert spool.oldest(1) == [entry]


def test_the_entry_being_sent_is_never_dropped_the_next_oldest_goes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=300, max_age=3600)
    first = spool.put(b"x" * 100, boot_id=1, seq=1, samples=7)
    for seq in (2, 3):
        spool.put(b"x" * 100, boot_id=1, seq=seq, samples=5)
    with spool.sending(first):  # the aggregator may acknowledge it: it must not count as dropped
        spool.put(b"x" * 100, boot_id=1, seq=4, samples=5)
        assert [e.seq for e in spool.oldest(10)] == [1, 3, 4]
        assert spool.dropped_samples == 5
    spool.put(b"x" * 100, boot_id=1, seq=5, samples=5)  # not being sent any more: oldest first again
    assert [e.seq for e in spool.oldest(10)] == [3, 4, 5]
    assert spool.dropped_samples == 12


def test_quarantine_moves_the_frame_aside_with_its_reason(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_age=3600)
    entry = spool.put(b"bad", boot_id=1, seq=1, samples=1)
    target = spool.quarantine(entry, "HTTP 400: malformed")
    assert len(spool) == 0
    assert target.read_bytes() == b"bad"
    assert "malformed" in target.with_suffix(".reason").read_text()
    assert Spool(tmp_path, max_bytes=1 << 20, max_age=3600).oldest(10) == []


def test_kill_9_leaves_no_torn_entries(tmp_path: Path) -> None:
    """A process writing frames as fast as it can is killed; every entry left is whole."""
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from edgewatch.agent.spool import Spool
        spool = Spool(Path({str(tmp_path)!r}), max_bytes=1 << 30, max_age=1e9)
        seq = 0
        while True:
            seq += 1
            spool.put(bytes([seq % 251]) * 4096, boot_id=3, seq=seq, samples=1)
            if seq == 20:
                print("writing", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"writing\n"
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    spool = Spool(tmp_path, max_bytes=1 << 30, max_age=1e9)
    entries = spool.oldest(1_000_000)
    assert len(entries) >= 20
    for e in entries:
        assert spool.read(e) == bytes([e.seq % 251]) * 4096
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_clock_that_steps_back_does_not_reorder_the_spool(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(tmp_path, max_bytes=1 << 20, max_age=1e9, clock=clock)
    spool.put(b"before", boot_id=1, seq=1, samples=1)
    clock.t -= 3600  # NTP steps the clock back an hour
    spool.put(b"after", boot_id=1, seq=2, samples=1)
    assert [e.seq for e in spool.oldest(10)] == [1, 2]
    assert [e.seq for e in Spool(tmp_path, max_bytes=1 << 20, max_age=1e9, clock=clock).oldest(10)] == [1, 2]
