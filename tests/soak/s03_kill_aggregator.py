"""Scenario 3: kill -9 of the aggregator, again and again, while simulated agents push.

Pushers (one thread per agent, as the agent's sender does it) push continuously: delta frames
against the newest acknowledged frame, a key frame after a ``409``, the same frame again after a
push that got no answer, and now and then a frame that was acknowledged already (an answer the
agent did not see). The aggregator is killed at random moments and started again; every other
kill is aimed (freezing and thawing the aggregator with SIGSTOP / SIGCONT) at the moment between a
commit and its answer, when a frame is stored but its pusher does not know. Every frame answered
``200`` with its ``ack`` is recorded with its samples; at the end the database must hold each of
them exactly once, and ``PRAGMA integrity_check`` must pass after every kill (checked on a copy of
the files as the kill left them, so that the aggregator's own recovery still starts from those).

Compaction is off (its interval is a day) so that the check reads every pushed frame's own rows:
compaction merges samples by timestamp, which would hide a sample stored twice.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edgewatch.aggregator.catalog import to_i64
from edgewatch.protocol import Batch, Kind, Series, Value, decode, encode, next_reference
from tests.aggregator.procs import AggregatorProcess
from tests.soak.core import Context, Result, scenario
from tests.soak.pushkit import (
    DB_NAME,
    SampleKey,
    acked,
    acked_frames,
    check_copy,
    freeze,
    integrity_check,
    post,
    read_storage,
    same_value,
    samples_of,
    thaw,
)

SERIES = (
    Series("soak_gauge", {"unit": "percent"}, Kind.GAUGE, 2),
    Series("soak_float", {"kind": "bits"}),
    Series("soak_requests_total", {}, Kind.COUNTER),
    Series("soak_int"),
)
STEP_MS = 50  # between two timestamps of a pusher: a day of pushing stays well in the past
REPEAT_P = 0.03  # chance that an acknowledged frame is sent once more, as after a lost answer


class Pusher(threading.Thread):
    """One simulated agent pushing frames until ``stop``; then it settles its last frame."""

    def __init__(
        self, agent: str, token: str, url: str, start_ms: int, *, seed: int, stop: threading.Event
    ) -> None:
        super().__init__(name=f"pusher-{agent}", daemon=True)
        self.agent, self.token, self.url, self.stop = agent, token, url, stop
        self.rng = random.Random(seed)
        self.boot = self.rng.getrandbits(64)
        self.t = start_ms
        self.counter = 0
        self.seq = 0
        self.ref: Batch | None = None
        self.pending: Batch | None = None
        self.pending_misses = 0  # pushes of the pending frame that got no answer
        self.acked: list[Batch] = []
        self.deltas = 0
        self.conflicts = 0
        self.unanswered = 0
        self.retried_acked = 0  # frames acknowledged after an earlier push of them got no answer
        self.repeats = 0
        self.repeats_answered = 0
        self.unexpected: list[str] = []
        self.gave_up = False

    def next_batch(self) -> Batch:
        rng = self.rng
        self.seq += 1
        n = rng.randint(1, 5)
        stamps = tuple(self.t + i * STEP_MS for i in range(n))
        self.t += n * STEP_MS
        gauge = tuple(round(rng.uniform(0, 100), 2) for _ in stamps)
        floats = tuple(rng.uniform(-1e9, 1e9) if rng.random() > 0.05 else None for _ in stamps)
        counter = []
        for _ in stamps:
            self.counter += rng.randint(0, 1000)
            counter.append(self.counter)
        ints = tuple(rng.randint(-(1 << 40), 1 << 40) for _ in stamps)
        return Batch(self.agent, self.boot, self.seq, stamps, SERIES, (gauge, floats, tuple(counter), ints))

    def run(self) -> None:
        settle_by: float | None = None
        while True:
            if self.pending is None:
                if self.stop.is_set():
                    return
                self.pending, self.pending_misses = self.next_batch(), 0
            if self.stop.is_set() and settle_by is None:
                settle_by = time.monotonic() + 30
            if settle_by is not None and time.monotonic() > settle_by:
                self.gave_up = True
                return
            self.push(self.pending)

    def push(self, batch: Batch) -> None:
        ref = self.ref if self.ref is not None and self.ref.seq < batch.seq else None
        frame = encode(batch, ref)
        try:
            status, body = post(self.url, frame, self.token, timeout=10)
        except OSError:
            self.unanswered += 1
            self.pending_misses += 1
            time.sleep(0.02)  # the aggregator is down or dying: retry the same batch
            return
        if acked(status, body, batch.seq):
            self.acked.append(batch)
            self.deltas += ref is not None
            self.retried_acked += self.pending_misses > 0
            self.ref = next_reference(ref, batch)
            self.pending = None
            if self.rng.random() < REPEAT_P:
                self.repeat(batch)
        elif status == 409 and ref is not None:
            self.conflicts += 1
            self.ref = None  # the restarted aggregator lost the reference: a key frame next
        elif status in (429, 503):
            time.sleep(0.05)
        else:
            self.unexpected.append(f"{self.agent} seq {batch.seq}: HTTP {status} {body[:160]!r}")
            time.sleep(0.05)

    def repeat(self, batch: Batch) -> None:
        """Send an acknowledged frame again as a key frame, as an agent does when the answer got lost.

        The aggregator takes the newest frame it acknowledges as the reference, coded against what
        that frame was coded against (docs/protocol.md §1.5): none, for this key frame."""
        self.repeats += 1
        try:
            status, body = post(self.url, encode(batch), self.token, timeout=10)
        except OSError:
            self.unanswered += 1
            self.ref = None  # whichever reference the aggregator kept: a key frame next
            return
        if acked(status, body, batch.seq):
            self.repeats_answered += 1
            self.ref = next_reference(None, batch)
        elif status not in (429, 503):
            self.unexpected.append(f"{self.agent} repeat of seq {batch.seq}: HTTP {status} {body[:160]!r}")


def hunt(agg: AggregatorProcess, pushers: list[Pusher], db: Path, budget: float, rng: random.Random) -> bool:
    """Freeze and thaw the aggregator until it is caught between committing a frame and answering
    its push (the frame is in the database, its pusher still waits), or ``budget`` seconds pass.
    The aggregator is left frozen: the kill follows. True when it was caught."""
    assert agg.proc is not None
    pid = agg.proc.pid
    deadline = time.monotonic() + budget

    def waiting() -> set[tuple[str, int, int]]:
        return {(p.agent, to_i64(b.boot_id), to_i64(b.seq)) for p in pushers if (b := p.pending) is not None}

    while True:
        freeze(pid)
        if time.monotonic() >= deadline:
            return False
        try:
            caught = waiting() & acked_frames(db, timeout=0.5)
        except sqlite3.OperationalError:
            caught = set()  # frozen holding a lock: try again
        if caught:
            # An answer sent just before the freeze may still be on its way to its pusher: give the
            # pushers a moment (the aggregator, frozen, can send nothing more) and look again.
            time.sleep(0.2)
            if caught & waiting():
                return True
        thaw(pid)
        time.sleep(rng.uniform(0.0, 0.002))


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@scenario(
    3,
    "kill -9 of the aggregator under load",
    "kill -9 of the aggregator at random moments while agents push (50 times): every frame it "
    "acknowledged is stored exactly once, and PRAGMA integrity_check passes after every kill",
)
def run(ctx: Context) -> Result:
    result = Result()
    kills = ctx.scale(50, 5)
    agents = [f"soak3-{i:02d}" for i in range(ctx.scale(8, 4))]
    rng = random.Random(3)
    agg = AggregatorProcess(ctx.tmp, storage__compact_interval=86400)
    db = agg.data_dir / DB_NAME
    stop = threading.Event()
    pushers: list[Pusher] = []
    started = time.monotonic()
    cycle_acks: list[int] = []
    integrity: list[str] = []
    committed_unanswered = 0
    hunts_caught = 0
    exit_code: int | None = None
    try:
        agg.start()
        start_ms = int(time.time() * 1000) - 6 * 3_600_000
        for i, agent in enumerate(agents):
            token = agg.admin("add-agent", agent)
            pushers.append(Pusher(agent, token, agg.url, start_ms, seed=1000 + i, stop=stop))
        for p in pushers:
            p.start()

        def total() -> int:
            return sum(len(p.acked) for p in pushers)

        for n in range(kills):
            base = total()
            wait_for(lambda base=base: total() - base >= 2 * len(pushers), timeout=20)  # load flows
            time.sleep(rng.uniform(0.0, 1.5))  # then a random moment
            if n % 2:  # every other kill: the moment between a commit and its answer
                hunts_caught += hunt(agg, pushers, db, 2.0, rng)
            agg.kill9()
            cycle_acks.append(total() - base)
            cut_off = {
                (p.agent, to_i64(b.boot_id), to_i64(b.seq)) for p in pushers if (b := p.pending) is not None
            }
            verdict, stored_frames = check_copy(db)
            integrity.append(verdict)
            committed_unanswered += len(cut_off & stored_frames)
            agg.start()
        base = total()
        wait_for(lambda: total() - base >= 4 * len(pushers), timeout=20)
        stop.set()
        for p in pushers:
            p.join(60)
        api = agg.admin("add-token", "--role", "viewer")
        api_counts = {}
        for p in pushers:
            end = p.t + 1
            body = agg.get(
                f"/api/v1/query?host={p.agent}&name=soak_int&tier=raw&start={start_ms}&end={end}"
                f"&step={max(1000, (end - start_ms) // 5000)}ms",
                api,
            )
            api_counts[p.agent] = sum(point[4] for point in body["series"][0]["points"])
    finally:
        stop.set()
        for p in pushers:
            p.join(60)
        exit_code = agg.stop()
    seconds = time.monotonic() - started

    final_integrity = integrity_check(db)
    stored = read_storage(db)
    expected: dict[SampleKey, Value] = {}
    frames_missing = 0
    for p in pushers:
        for batch in p.acked:
            expected.update(samples_of(decode(encode(batch))))  # as the aggregator decodes it
            frames_missing += not stored.has_frame(p.agent, batch.boot_id, batch.seq)
    soak_samples = {k: v for k, v in stored.samples.items() if k[0].startswith("soak3-")}
    missing = [k for k in expected if k not in soak_samples]
    wrong = [k for k, v in expected.items() if k in soak_samples and not same_value(soak_samples[k][0], v)]
    duplicated = [k for k, values in soak_samples.items() if len(values) > 1]
    extra = [k for k in soak_samples if k not in expected]
    api_expected = {p.agent: sum(1 for b in p.acked for v in b.values[3] if v is not None) for p in pushers}
    unexpected = [u for p in pushers for u in p.unexpected]
    frames = sum(len(p.acked) for p in pushers)

    result.figures.update(
        kills=len(cycle_acks),
        pushers=len(pushers),
        frames_acked=frames,
        samples_acked=len(expected),
        delta_frames_acked=sum(p.deltas for p in pushers),
        conflicts_409=sum(p.conflicts for p in pushers),
        pushes_unanswered=sum(p.unanswered for p in pushers),
        frames_acked_after_no_answer=sum(p.retried_acked for p in pushers),
        frames_committed_unanswered=committed_unanswered,
        hunts_caught=hunts_caught,
        repeats_of_acked=sum(p.repeats for p in pushers),
        repeats_answered_200=sum(p.repeats_answered for p in pushers),
        min_acks_between_kills=min(cycle_acks, default=0),
        stored_samples=len(soak_samples),
        missing_samples=len(missing),
        wrong_values=len(wrong),
        duplicated_samples=len(duplicated),
        extra_samples=len(extra),
        frames_missing_from_acked=frames_missing,
        integrity_failures=sum(r != "ok" for r in integrity) + (final_integrity != "ok"),
        db_mb=round(sum(f.stat().st_size for f in Path(agg.data_dir).glob(DB_NAME + "*")) / 1e6, 1),
        acked_frames_per_s=round(frames / seconds, 1),
    )
    result.check(len(cycle_acks) == kills, f"only {len(cycle_acks)} of {kills} kills were done")
    result.check(
        min(cycle_acks, default=0) > 0,
        f"between two kills the aggregator acknowledged as few as {min(cycle_acks, default=0)} frames: "
        "it was not under load",
    )
    result.check(
        result.figures["pushes_unanswered"] > 0, "no push was cut off by a kill: the kills missed the load"
    )
    result.check(
        committed_unanswered > 0,
        "no kill came between a commit and its answer: the resend of a stored frame was not tested",
    )
    result.check(not unexpected, f"{len(unexpected)} unexpected answers, e.g. {unexpected[:3]}")
    bad = [(i + 1, r) for i, r in enumerate(integrity) if r != "ok"]
    result.check(not bad, f"PRAGMA integrity_check failed after kills {bad[:3]}")
    result.check(final_integrity == "ok", f"PRAGMA integrity_check at the end: {final_integrity[:200]}")
    result.check(
        not any(p.gave_up or p.is_alive() for p in pushers),
        "a pusher could not get its last frame acknowledged within 30 s",
    )
    result.check(frames > 0, "no frame was acknowledged at all")
    result.check(
        frames_missing == 0, f"{frames_missing} acknowledged frames are not recorded as acknowledged"
    )
    result.check(not missing, f"{len(missing)} acknowledged samples are not stored, e.g. {missing[:3]}")
    result.check(not wrong, f"{len(wrong)} stored samples differ from what was acknowledged: {wrong[:3]}")
    result.check(not duplicated, f"{len(duplicated)} samples are stored more than once: {duplicated[:3]}")
    result.check(not extra, f"{len(extra)} stored samples were never acknowledged: {extra[:3]}")
    result.check(
        result.figures["repeats_answered_200"] > 0,
        "no acknowledged frame was sent again and answered: the lost-answer resend was not tested",
    )
    result.check(
        api_counts == api_expected,
        f"the query API counts other samples than acknowledged: {api_counts} != {api_expected}",
    )
    result.check(exit_code == 0, f"the last aggregator exited with {exit_code} on SIGTERM")
    return result
