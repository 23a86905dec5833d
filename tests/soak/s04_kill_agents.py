"""Scenario 4: kill -9 of real ``edgewatch agent`` processes while they push and back-fill.

Real agents sample this host every second and push to a real aggregator. Each round takes the
aggregator away for a few seconds (kill -9), so the agents spool, brings it back, and then kills
agents at random moments while they push live and back-fill their spool; each killed agent is
started again on the same state directory, and some are killed a second time right after the
restart, in the middle of their back-fill.

Just before each kill the agent is frozen (SIGSTOP) and its spool read: those frames are what the
agent has not seen acknowledged, so they must all arrive after the restart. At the end the database
must hold every one of them, with every sample, and no sample of any agent twice (a frame the
aggregator committed but the agent still had spooled when it died is sent again and must be
answered without being stored again). Nothing may be quarantined or dropped from a spool.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from edgewatch.agent import identity
from edgewatch.agent.spool import Entry
from edgewatch.aggregator.catalog import to_i64
from edgewatch.protocol import Batch, ProtocolError, Value, decode
from tests.aggregator.procs import EDGEWATCH, AggregatorProcess, env_without_proxies
from tests.soak.core import Context, Result, scenario
from tests.soak.pushkit import (
    DB_NAME,
    SampleKey,
    acked_frames,
    freeze,
    integrity_check,
    read_storage,
    same_value,
    samples_of,
    thaw,
)


@dataclass
class Agent:
    name: str
    state: Path
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exit_codes: list[int] = field(default_factory=list)

    @property
    def spool(self) -> Path:
        return self.state / "spool"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*EDGEWATCH, "agent", "--config", str(self.config), "--state-dir", str(self.state)],
                stdout=out,
                stderr=out,
                env=env_without_proxies(),
            )
        self.starts += 1

    def freeze(self) -> None:
        assert self.proc is not None
        freeze(self.proc.pid)

    def thaw(self) -> None:
        assert self.proc is not None
        thaw(self.proc.pid)

    def spooled_names(self) -> list[tuple[str, int, int]]:
        """``(agent, boot, seq)`` (signed) of the spool's entries, from their file names."""
        out = []
        for path in self.spool.glob("*.frame"):
            entry = Entry.parse(path.name, 0)
            if entry is not None:
                out.append((self.name, to_i64(entry.boot_id), to_i64(entry.seq)))
        return out

    def kill_frozen(self) -> tuple[list[Batch], int]:
        """Read the spool of the frozen agent (its frames and half-written ``.tmp`` files), then
        SIGKILL and reap it."""
        assert self.proc is not None
        frames, partial = read_spool(self.spool)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        return frames, partial

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGCONT)  # in case it is frozen
        self.proc.terminate()
        try:
            self.exit_codes.append(self.proc.wait(15))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.exit_codes.append(self.proc.wait())
        self.proc = None


def read_spool(spool: Path) -> tuple[list[Batch], int]:
    frames, partial = [], 0
    for path in sorted(spool.glob("*")):
        if path.name.endswith(".tmp"):
            partial += 1
        elif path.name.endswith(".frame"):
            try:
                frames.append(decode(path.read_bytes()))  # spooled frames are key frames
            except (OSError, ProtocolError) as exc:
                raise AssertionError(f"spool entry {path} is unreadable: {exc}") from None
    return frames, partial


def enroll(url: str, token: str, name: str) -> dict[str, str]:
    request = urllib.request.Request(
        url + "/api/v1/enroll",
        data=json.dumps({"token": token, "hostname": name, "name": name}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        answer: dict[str, str] = json.loads(r.read())
    return answer


def key(batch: Batch) -> tuple[str, int, int]:
    return (batch.agent_id, to_i64(batch.boot_id), to_i64(batch.seq))


@scenario(
    4,
    "kill -9 of agents while they push",
    "kill -9 of real agents while they push live and back-fill their spool after an outage: what "
    "each agent had spooled when it died arrives after its restart, no sample is stored twice, "
    "nothing is quarantined or dropped",
)
def run(ctx: Context) -> Result:
    result = Result()
    rng = random.Random(4)
    rounds = ctx.scale(6, 2)
    count = ctx.scale(6, 3)
    agg = AggregatorProcess(ctx.tmp, storage__compact_interval=86400)
    db = agg.data_dir / DB_NAME
    agents: list[Agent] = []
    spooled: dict[tuple[str, int, int], Batch] = {}  # every frame seen in a spool at a kill
    per_kill: list[int] = []
    partial_writes = 0
    committed_but_spooled = 0
    hunts_caught = 0
    crashed: list[str] = []
    outages: list[float] = []
    drained = False
    started = time.monotonic()
    try:
        agg.start()
        enrollment = agg.admin("add-enrollment", "--uses", str(count))
        for i in range(count):
            name = f"soak4-{i:02d}"
            state = ctx.tmp / name
            answer = enroll(agg.url, enrollment, name)
            identity.save(
                state, identity.Identity(answer["agent_id"], agg.url, answer["token"], answer["public_key"])
            )
            config = ctx.tmp / f"{name}.toml"
            config.write_text("interval = 1\ntimeout = 3\n")
            agents.append(Agent(name, state, config, ctx.tmp / f"{name}.log"))
        for a in agents:
            a.start()
        time.sleep(2.5)  # every agent is up and pushing

        def kill(a: Agent, hunt: float = 0.0) -> None:
            """Freeze, read the spool, kill -9, start again. With ``hunt``, for up to that many
            seconds, freeze and thaw the agent until it is caught holding a spooled frame that the
            aggregator has committed already (its answer not yet seen): the moment a resend
            must not store twice."""
            nonlocal partial_writes, committed_but_spooled, hunts_caught
            assert a.proc is not None
            if a.proc.poll() is not None:
                crashed.append(f"{a.name} exited with {a.proc.returncode} before its kill")
            deadline = time.monotonic() + hunt
            while True:
                a.freeze()
                if time.monotonic() >= deadline:
                    break
                if set(a.spooled_names()) & acked_frames(db):
                    hunts_caught += 1
                    break
                a.thaw()
                time.sleep(rng.uniform(0.0, 0.002))
            stored = acked_frames(db)
            frames, partial = a.kill_frozen()
            committed_but_spooled += sum(key(b) in stored for b in frames)
            partial_writes += partial
            per_kill.append(len(frames))
            for b in frames:
                spooled[key(b)] = b
            a.start()

        for _ in range(rounds):
            outage = rng.uniform(2.0, 5.0)
            outages.append(round(outage, 1))
            agg.kill9()
            time.sleep(outage)  # the agents spool
            agg.start()
            for a in rng.sample(agents, k=max(1, len(agents) * 2 // 3)):
                time.sleep(rng.uniform(0.0, 0.5))
                kill(a)  # it had spooled frames; restarted, it back-fills at once
                kill(a, hunt=3.0)  # in the middle of that back-fill
            time.sleep(rng.uniform(1.0, 3.0))
            for a in rng.sample(agents, k=1):
                kill(a)  # while pushing live

        # wait until everything that was spooled at a kill is acknowledged, and every spool has
        # drained: an agent that was not killed last may still be backing off after the outage
        # (up to 8 s after one of 4 s), its outage's frames in the spool
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if set(spooled) <= acked_frames(db):
                drained = True
                break
            time.sleep(0.5)
        while time.monotonic() < deadline and any(len(list(a.spool.glob("*.frame"))) > 2 for a in agents):
            time.sleep(0.5)
        time.sleep(2.0)  # the last agents started are up (a SIGTERM during start-up is not a stop)
        for a in agents:
            a.stop()
        pending_after = {a.name: len(list(a.spool.glob("*.frame"))) for a in agents}
    finally:
        for a in agents:
            a.stop()
        code = agg.stop()
    seconds = time.monotonic() - started

    verdict = integrity_check(db)
    stored = read_storage(db)
    mine = {k: v for k, v in stored.samples.items() if k[0].startswith("soak4-")}
    expected: dict[SampleKey, Value] = {}
    for batch in spooled.values():
        expected.update(samples_of(batch))
    missing_frames = [k for k in spooled if k not in stored.acked]
    missing = [k for k in expected if k not in mine]
    wrong = [k for k, v in expected.items() if k in mine and not same_value(mine[k][0], v)]
    duplicated = [k for k, values in mine.items() if len(values) > 1]
    quarantined = {a.name: len(list((a.spool / "quarantine").glob("*.frame"))) for a in agents}
    dropped = {}
    for a in agents:
        path = a.spool / "dropped_samples"
        dropped[a.name] = int(path.read_text().strip() or 0) if path.exists() else 0
    refused = sum(a.log.read_text(errors="replace").count("frame_refused") for a in agents)
    frames_per_host: dict[str, int] = {}
    for host, _, _ in stored.acked:
        frames_per_host[host] = frames_per_host.get(host, 0) + 1

    result.figures.update(
        agents=len(agents),
        rounds=rounds,
        outages_s=outages,
        agent_kills=len(per_kill),
        agent_starts=sum(a.starts for a in agents),
        spooled_at_kill=len(spooled),
        most_spooled_at_one_kill=max(per_kill, default=0),
        kills_with_backlog=sum(n >= 2 for n in per_kill),
        committed_but_still_spooled=committed_but_spooled,
        hunts_caught=hunts_caught,
        half_written_spool_entries=partial_writes,
        spooled_samples=len(expected),
        frames_stored=sum(frames_per_host.get(a.name, 0) for a in agents),
        samples_stored=len(mine),
        missing_frames=len(missing_frames),
        missing_samples=len(missing),
        duplicated_samples=len(duplicated),
        quarantined=sum(quarantined.values()),
        dropped_samples=sum(dropped.values()),
        aggregator_handler_failures=agg.log.read_text(errors="replace").count("handler failed"),
        seconds=round(seconds, 1),
    )
    planned = rounds * (2 * max(1, count * 2 // 3) + 1)
    result.check(len(per_kill) >= planned, f"{len(per_kill)} agent kills, fewer than the {planned} planned")
    result.check(
        sum(n >= 2 for n in per_kill) > 0,
        f"no agent had a back-log in its spool when it was killed ({per_kill}): the outages did not bite",
    )
    result.check(
        committed_but_spooled > 0,
        "no agent was killed holding a frame the aggregator had committed: the resend was not tested",
    )
    result.check(not crashed, f"agents died on their own: {crashed[:3]}")
    result.check(drained, "frames spooled at a kill were still not acknowledged 90 s after the last one")
    result.check(
        not missing_frames,
        f"{len(missing_frames)} frames an agent had spooled never arrived, e.g. {missing_frames[:3]}",
    )
    result.check(not missing, f"{len(missing)} spooled samples are not stored, e.g. {missing[:3]}")
    result.check(not wrong, f"{len(wrong)} stored samples differ from the spooled ones: {wrong[:3]}")
    result.check(not duplicated, f"{len(duplicated)} samples are stored more than once: {duplicated[:3]}")
    result.check(
        not any(quarantined.values()) and refused == 0,
        f"frames were refused and quarantined: {quarantined}, {refused} refusals logged",
    )
    result.check(not any(dropped.values()), f"spools dropped samples: {dropped}")
    result.check(
        all(n <= 2 for n in pending_after.values()),
        f"frames left in the spools 90 s after the last kill: {pending_after}",
    )
    result.check(
        all(c == 0 for a in agents for c in a.exit_codes),
        f"agents exited with {[a.exit_codes for a in agents]} on SIGTERM",
    )
    result.check(verdict == "ok", f"PRAGMA integrity_check: {verdict[:200]}")
    result.check(code == 0, f"the aggregator exited with {code} on SIGTERM")
    return result
