"""Shared tools of the ingest scenarios (3, 4, 5, 8): HTTP pushes, what the database stores, RSS.

Not a scenario module (its name does not start with ``s`` and two digits), so ``load_all`` skips it.
The storage reader looks below the query API on purpose: the read path merges samples by timestamp,
so a sample stored twice is only visible in the rows themselves.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import signal
import sqlite3
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edgewatch.aggregator.blockcodec import decode_block
from edgewatch.aggregator.catalog import labels_key, to_i64
from edgewatch.aggregator.frames import decode_recent
from edgewatch.protocol import Batch, Value

PUSH = "/api/v1/push"
DB_NAME = "edgewatch.db"
SampleKey = tuple[str, str, str, int]
"""``(host, metric name, labels as stored, timestamp ms)``: one sample of one series."""


def post(
    url: str,
    body: bytes,
    token: str,
    *,
    path: str = PUSH,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One POST on a fresh connection: ``(status, body)``; ``OSError`` when there is no answer."""
    host, _, port = url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(
            "POST",
            path,
            body=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/x-edgewatch-frame",
                **(headers or {}),
            },
        )
        answer = conn.getresponse()
        return answer.status, answer.read()
    except http.client.HTTPException as exc:  # a half answer from a dying server: no answer
        raise ConnectionError(f"{type(exc).__name__}: {exc}") from None
    finally:
        conn.close()


def acked(status: int, body: bytes, seq: int) -> bool:
    """A push answer that acknowledges ``seq`` (docs/api.md: a 200 without the ack is not one)."""
    if status != 200:
        return False
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("ack") == seq


def samples_of(batch: Batch) -> dict[SampleKey, Value]:
    """Every non-gap sample of a batch, keyed as the storage reader keys them."""
    out: dict[SampleKey, Value] = {}
    for s, column in zip(batch.series, batch.values):
        key = labels_key(s.labels)
        for ts, v in zip(batch.timestamps, column):
            if v is not None:
                out[(batch.agent_id, s.name, key, ts)] = v
    return out


def same_value(a: Value, b: Value) -> bool:
    """Equal and of the same type (an int stays an int); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@dataclass
class Stored:
    """Every sample the database holds, each with every value it was stored with (one per copy)."""

    samples: dict[SampleKey, list[Value]] = field(default_factory=dict)
    acked: set[tuple[str, int, int]] = field(default_factory=set)  # (host, boot, seq) as signed int64
    recent_rows: int = 0
    blocks: int = 0

    def has_frame(self, host: str, boot: int, seq: int) -> bool:
        return (host, to_i64(boot), to_i64(seq)) in self.acked


def read_storage(db: Path) -> Stored:
    """What the aggregator's database holds (read while no aggregator runs, or from a copy)."""
    out = Stored()
    conn = sqlite3.connect(db)
    try:
        hosts = dict(conn.execute("SELECT id, name FROM hosts"))
        series = {sid: (hosts[h], name, labels) for sid, h, name, labels in conn.execute(
            "SELECT id, host, name, labels FROM series"
        )}  # fmt: skip
        for host, boot, lo, hi in conn.execute("SELECT host, boot, lo, hi FROM acked"):
            if hi - lo > 1_000_000:
                raise ValueError(f"acked interval {lo}..{hi} of host {hosts[host]} is too wide to list")
            out.acked.update((hosts[host], boot, seq) for seq in range(lo, hi + 1))

        def add(timestamps: Iterable[int], sids: Iterable[int], columns: Iterable[list[Value]]) -> None:
            ts = list(timestamps)
            for sid, column in zip(sids, columns):
                host, name, labels = series[sid]
                for t, v in zip(ts, column):
                    if v is not None:
                        out.samples.setdefault((host, name, labels, t), []).append(v)

        for (data,) in conn.execute("SELECT data FROM recent"):
            out.recent_rows += 1
            add(*decode_recent(data))
        for (data,) in conn.execute("SELECT data FROM raw_blocks"):
            out.blocks += 1
            times, cols = decode_block(data)
            add(times, cols.keys(), cols.values())
    finally:
        conn.close()
    return out


def integrity_check(db: Path) -> str:
    """``PRAGMA integrity_check`` of the database: ``ok`` when sound, else what it found."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(r[0]) for r in rows)


def check_copy(db: Path) -> tuple[str, set[tuple[str, int, int]]]:
    """``PRAGMA integrity_check`` and the acknowledged ``(host, boot, seq)`` of a copy of the database
    and its WAL as a kill left them, so the aggregator's own crash recovery still finds the originals."""
    with tempfile.TemporaryDirectory(prefix="edgewatch-check-") as tmp:
        target = Path(tmp) / db.name
        for suffix in ("", "-wal"):
            source = db.with_name(db.name + suffix)
            if source.exists():
                shutil.copyfile(source, target.with_name(target.name + suffix))
        verdict = integrity_check(target)
        conn = sqlite3.connect(target)
        try:
            hosts = dict(conn.execute("SELECT id, name FROM hosts"))
            frames = {
                (hosts[host], boot, seq)
                for host, boot, lo, hi in conn.execute("SELECT host, boot, lo, hi FROM acked")
                for seq in range(lo, hi + 1)
            }
        finally:
            conn.close()
        return verdict, frames


def memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (the peak resident size) of a process, in kB, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def acked_frames(db: Path, timeout: float = 10.0) -> set[tuple[str, int, int]]:
    """The acknowledged ``(host, boot, seq)`` (as signed int64), read beside a running aggregator."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=timeout)
    try:
        hosts = dict(conn.execute("SELECT id, name FROM hosts"))
        return {
            (hosts[h], boot, seq)
            for h, boot, lo, hi in conn.execute("SELECT host, boot, lo, hi FROM acked")
            for seq in range(lo, hi + 1)
        }
    finally:
        conn.close()


def freeze(pid: int) -> None:
    """SIGSTOP, and wait until the kernel shows the process stopped (signals are asynchronous)."""
    os.kill(pid, signal.SIGSTOP)
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if stat.read_text().rpartition(")")[2].split()[0] in ("T", "t", "Z"):
            return
        time.sleep(0.0005)
    raise AssertionError(f"process {pid} did not stop on SIGSTOP")


def thaw(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)
