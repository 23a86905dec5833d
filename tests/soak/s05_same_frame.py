"""Scenario 5: the same frame pushed three times at once, for many frames.

An agent that times out resends; a proxy may replay; two sender threads of a confused agent may race.
Each agent here opens three connections, writes the same push request on all three back to back
(so the three are in the aggregator's socket buffers together, before any of them is committed),
then reads the three answers. Frames alternate between key frames and delta frames coded against
the newest acknowledged frame. Several agents do this in parallel, so copies of different frames
share group commits. Every copy must be answered ``200`` with the frame's ``ack``; the database must
hold the frame's samples once; ``/metrics`` must count each frame once as stored and every other
copy as a duplicate.

One exception, by design (docs/api.md, 409): a copy of a delta frame that the aggregator reaches
after a twin was committed names a reference the aggregator has moved past, and is answered ``409``
(rarely: about 3 copies in 6,000). The agent then sends the batch as a key frame, which must be
answered ``200`` and store nothing.
"""

from __future__ import annotations

import http.client
import random
import re
import select
import socket
import threading
import time

from edgewatch.protocol import Batch, Kind, Series, decode, encode, next_reference
from tests.aggregator.procs import AggregatorProcess
from tests.soak.core import Context, Result, scenario
from tests.soak.pushkit import (
    DB_NAME,
    PUSH,
    acked,
    integrity_check,
    post,
    read_storage,
    same_value,
    samples_of,
)

SERIES = (
    Series("soak_load", {}, Kind.GAUGE, 2),
    Series("soak_bytes_total", {"device": "eth0"}, Kind.COUNTER),
    Series("soak_float"),
)
COPIES = 3


def request_bytes(port: int, token: str, frame: bytes) -> bytes:
    head = (
        f"POST {PUSH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/x-edgewatch-frame\r\nContent-Length: {len(frame)}\r\n\r\n"
    )
    return head.encode() + frame


def push_at_once(
    port: int, token: str, frame: bytes, copies: int = COPIES
) -> tuple[list[tuple[int, bytes]], bool]:
    """Write the same push on ``copies`` connections back to back, then read every answer; also
    whether all copies were written before any answer had come (they were in flight together)."""
    data = request_bytes(port, token, frame)
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(copies)]
    try:
        for s in socks:
            s.sendall(data)
        readable, _, _ = select.select(socks, [], [], 0)
        answers = []
        for s in socks:
            response = http.client.HTTPResponse(s)
            response.begin()
            answers.append((response.status, response.read()))
        return answers, not readable
    finally:
        for s in socks:
            s.close()


class Agent(threading.Thread):
    def __init__(self, name: str, token: str, port: int, frames: int, start_ms: int, seed: int) -> None:
        super().__init__(name=f"same-frame-{name}", daemon=True)
        self.agent, self.token, self.port, self.frames = name, token, port, frames
        self.rng = random.Random(seed)
        self.boot = self.rng.getrandbits(64)
        self.t = start_ms
        self.total = 0
        self.ref: Batch | None = None
        self.sent: list[Batch] = []
        self.statuses: dict[int, int] = {}
        self.deltas = 0
        self.conflicts = 0  # delta copies answered 409 because a twin was committed first
        self.expected_duplicates = 0
        self.together = 0  # frames whose copies were all written before the first answer came
        self.bad: list[str] = []
        self.error: str | None = None

    def batch(self, seq: int) -> Batch:
        rng = self.rng
        stamps = tuple(self.t + i * 1000 for i in range(rng.randint(1, 4)))
        self.t = stamps[-1] + 1000
        load = tuple(round(rng.uniform(0, 8), 2) for _ in stamps)
        totals = []
        for _ in stamps:
            self.total += rng.randint(0, 1 << 20)
            totals.append(self.total)
        floats = tuple(rng.random() for _ in stamps)
        return Batch(self.agent, self.boot, seq, stamps, SERIES, (load, tuple(totals), floats))

    def run(self) -> None:
        try:
            for seq in range(1, self.frames + 1):
                batch = self.batch(seq)
                ref = self.ref if seq % 2 == 0 else None  # key and delta frames in turn
                answers, together = push_at_once(self.port, self.token, encode(batch, ref))
                self.together += together
                conflicts = 0
                for status, body in answers:
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                    if status == 409 and ref is not None:
                        conflicts += 1  # a twin was committed first: the reference moved on
                    elif not acked(status, body, seq):
                        self.bad.append(f"{self.agent} seq {seq}: HTTP {status} {body[:160]!r}")
                if conflicts == COPIES:  # no twin was stored: the aggregator lost the reference
                    self.bad.append(f"{self.agent} seq {seq}: every copy of the delta frame got 409")
                if conflicts:  # as the agent does after a 409: the same batch as a key frame
                    status, body = post(f"http://127.0.0.1:{self.port}", encode(batch), self.token)
                    if not acked(status, body, seq):
                        self.bad.append(f"{self.agent} seq {seq} key frame after 409: HTTP {status}")
                self.conflicts += conflicts
                self.expected_duplicates += COPIES - conflicts if conflicts else COPIES - 1
                self.sent.append(batch)
                self.deltas += ref is not None
                self.ref = next_reference(None if conflicts else ref, batch)
        except OSError as exc:
            self.error = f"{self.agent}: {type(exc).__name__}: {exc}"


def metric(text: str, name: str) -> float:
    """The sum of a counter's samples in the Prometheus text format."""
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


@scenario(
    5,
    "the same frame three times at once",
    "the same frame pushed three times at once (key and delta frames, many frames, several agents in "
    "parallel): all three copies answered 200 with the ack (a delta copy that comes after its twin "
    "was committed: 409, then its key frame 200), the frame stored once",
)
def run(ctx: Context) -> Result:
    result = Result()
    names = [f"soak5-{i:02d}" for i in range(ctx.scale(8, 4))]
    per_agent = ctx.scale(250, 40)
    agg = AggregatorProcess(ctx.tmp, storage__compact_interval=86400)
    db = agg.data_dir / DB_NAME
    started = time.monotonic()
    agents: list[Agent] = []
    try:
        agg.start()
        start_ms = int(time.time() * 1000) - 3 * 3_600_000
        for i, name in enumerate(names):
            agents.append(Agent(name, agg.admin("add-agent", name), agg.port, per_agent, start_ms, 500 + i))
        for a in agents:
            a.start()
        for a in agents:
            a.join(300)
        api = agg.admin("add-token", "--role", "viewer")
        metrics = agg.get("/metrics", api)
    finally:
        code = agg.stop()
    seconds = time.monotonic() - started
    verdict = integrity_check(db)
    stored = read_storage(db)
    expected = {}
    frames_missing = 0
    for a in agents:
        for batch in a.sent:
            expected.update(samples_of(decode(encode(batch))))
            frames_missing += not stored.has_frame(a.agent, batch.boot_id, batch.seq)
    mine = {k: v for k, v in stored.samples.items() if k[0].startswith("soak5-")}
    missing = [k for k in expected if k not in mine]
    wrong = [k for k, v in expected.items() if k in mine and not same_value(mine[k][0], v)]
    duplicated = [k for k, values in mine.items() if len(values) > 1]
    extra = [k for k in mine if k not in expected]
    frames = sum(len(a.sent) for a in agents)
    statuses: dict[str, int] = {}
    for a in agents:
        for status, n in a.statuses.items():
            statuses[str(status)] = statuses.get(str(status), 0) + n
    bad = [b for a in agents for b in a.bad]
    stored_frames = metric(metrics, "edgewatch_ingest_frames_total")
    duplicates = metric(metrics, "edgewatch_ingest_duplicates_total")
    result.figures.update(
        agents=len(agents),
        frames=frames,
        delta_frames=sum(a.deltas for a in agents),
        delta_copies_409=sum(a.conflicts for a in agents),
        frames_all_copies_in_flight=sum(a.together for a in agents),
        pushes=frames * COPIES,
        statuses=statuses,
        answered_200=statuses.get("200", 0),
        frames_stored_metric=int(stored_frames),
        duplicates_metric=int(duplicates),
        samples_expected=len(expected),
        samples_stored=len(mine),
        duplicated_samples=len(duplicated),
        missing_samples=len(missing),
        frames_per_s=round(frames / seconds, 1),
    )
    errors = [a.error for a in agents if a.error]
    result.check(not errors, f"pushes failed: {errors[:3]}")
    result.check(frames == len(names) * per_agent, f"{frames} of {len(names) * per_agent} frames were pushed")
    together = result.figures["frames_all_copies_in_flight"]
    result.check(
        together * 2 >= frames,
        f"only {together} of {frames} frames had all copies in flight together: not a concurrency test",
    )
    result.check(not bad, f"{len(bad)} copies were not answered 200 with the ack, e.g. {bad[:3]}")
    result.check(
        stored_frames == frames,
        f"/metrics counts {stored_frames:g} frames stored for {frames} distinct frames",
    )
    repeated = sum(a.expected_duplicates for a in agents)
    result.check(
        duplicates == repeated,
        f"/metrics counts {duplicates:g} duplicates for {repeated} repeated copies",
    )
    result.check(not duplicated, f"{len(duplicated)} samples are stored more than once: {duplicated[:3]}")
    result.check(not missing, f"{len(missing)} samples of acknowledged frames are missing: {missing[:3]}")
    result.check(not wrong, f"{len(wrong)} stored samples differ from the pushed ones: {wrong[:3]}")
    result.check(not extra, f"{len(extra)} stored samples were never pushed: {extra[:3]}")
    result.check(frames_missing == 0, f"{frames_missing} frames are not recorded as acknowledged")
    result.check(verdict == "ok", f"PRAGMA integrity_check: {verdict[:200]}")
    result.check(code == 0, f"the aggregator exited with {code} on SIGTERM")
    return result
