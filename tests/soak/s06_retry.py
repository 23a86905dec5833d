"""Scenario 6: the real agent's retry semantics behind a fault-injecting HTTP proxy.

Two real ``edgewatch agent`` processes (1 s interval) push to a real aggregator, each through its
own `FaultProxy`: an asyncio HTTP/1.1 proxy on 127.0.0.1 that decodes every pushed frame (key and
delta, keeping the references as agent and aggregator do) and answers from a script of faults:

- agent A (timing): a run of 500 / 503 / 502 ... then 429 and 503 with ``Retry-After`` (seconds,
  and an HTTP date in the full form). The proxy's clock says when each attempt came: the gaps
  after consecutive failures grow as 1, 2, 4, ... s times a jitter of 0.5-1, capped at 30 s (the
  full form runs into the cap); a ``Retry-After`` is waited exactly.
- agent B (kinds): one frame answered 400 and one 413 on every attempt (quarantined: tried at most
  as a delta and once as a key frame, never again; the frames after them still flow), a connection
  reset before and one after forwarding, and a stall (held without an answer for 30 s, 6 s in the
  fast form, before and after forwarding) that the agent's request ``timeout`` (10 s; 2 s) breaks.

When the faults stop, every frame the agents made is accounted for: quarantined (and not stored),
or stored exactly once (each of its samples one copy in the database, read below the query API),
or still in the spool when the agent was stopped; the frames a fault answered after the aggregator
had committed them come again and are absorbed as duplicates.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgewatch.protocol import Batch, ProtocolError, decode, next_reference, reference_of
from tests.aggregator.procs import AggregatorProcess
from tests.soak.core import Context, Result, scenario
from tests.soak.faultkit import AgentProcess, admin_cli, agent_config, metric_values, spooled, wait_for
from tests.soak.pushkit import read_storage, samples_of

PROMISE = (
    "Behind 500/502/503/504 answers the agent retries with exponential back-off (1 s doubling, jitter,"
    " capped at 30 s), waits exactly the Retry-After of a 429 or 503, quarantines a frame answered 400"
    " or 413 after at most a delta and a key-frame attempt while later frames flow, survives resets and"
    " 30 s stalls through its request timeout, and once the faults stop every frame not quarantined is"
    " stored exactly once."
)
PUSH = "/api/v1/push"
SLACK = 0.75  # seconds an attempt may come late on a loaded two-core machine
EARLY = 0.05  # ... or early (timer resolution)
BACKOFF_FIRST, BACKOFF_CAP = 1.0, 30.0  # docs/api.md: 1 s doubling to 30 s, with jitter (0.5 to 1)
REASONS = {
    400: "Bad Request",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class Fault:
    """What the proxy does with one push: ``pass`` (forward), ``status`` (answer it without
    forwarding), ``reset`` / ``stall`` (without forwarding), ``reset_after`` / ``stall_after``
    (forward, let the aggregator commit, then reset or hold the connection)."""

    kind: str
    status: int = 0
    retry_after: str | None = None
    retry_date_in: float | None = None  # Retry-After as the HTTP date this many seconds after the answer

    @property
    def label(self) -> str:
        if self.kind != "status":
            return self.kind
        if self.retry_date_in is not None:
            return f"{self.status} Retry-After: <date +{self.retry_date_in:g} s>"
        return f"{self.status}" + (f" Retry-After: {self.retry_after}" if self.retry_after else "")

    def waits(self) -> tuple[float, float] | None:
        """The window (s) the agent must wait after this answer when it carries a Retry-After."""
        if self.retry_date_in is not None:  # an HTTP date has whole seconds: up to 1 s less
            return self.retry_date_in - 1 - EARLY, self.retry_date_in + SLACK
        if self.retry_after is not None:
            return float(self.retry_after) - EARLY, float(self.retry_after) + SLACK
        return None


PASS = Fault("pass")


def status(code: int, retry_after: str | None = None, *, date_in: float | None = None) -> Fault:
    return Fault("status", code, retry_after, date_in)


@dataclass
class Attempt:
    at: float  # time.monotonic() when the request was read whole
    boot: int | None
    seq: int | None
    delta: bool
    fault: Fault
    answered: int | None = None  # the status the agent got (None: reset or stalled)
    upstream: int | None = None  # the aggregator's status, when forwarded


@dataclass
class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in a thread of its own, in front of the aggregator."""

    upstream_port: int
    stall_s: float
    port: int = 0
    queue: deque[Fault] = field(default_factory=deque)  # for the next pushes, in order
    by_seq: dict[int, Fault] = field(default_factory=dict)  # for every attempt of these frames
    attempts: list[Attempt] = field(default_factory=list)
    frames: dict[tuple[int, int], Batch] = field(default_factory=dict)  # (boot, seq) -> as decoded
    undecoded: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._refs: dict[tuple[int, int], Batch] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="soak-fault-proxy", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- from the scenario's thread ----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault proxy did not start")

    def close(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def enqueue(self, faults: Sequence[Fault]) -> None:
        with self.lock:
            self.queue.extend(faults)

    def pending(self) -> int:
        with self.lock:
            return len(self.queue)

    def acked_seqs(self) -> set[int]:
        """Seqs the agent got a 200 for, through this proxy."""
        with self.lock:
            return {a.seq for a in self.attempts if a.answered == 200 and a.seq is not None}

    def snapshot(self) -> list[Attempt]:
        with self.lock:
            return list(self.attempts)

    # -- the proxy --------------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            return  # the proxy closes: a stalled connection ends here, not as an error
        except Exception as exc:  # a bug of the proxy: reported as a problem of the scenario
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            if not writer.is_closing():
                writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *lines = head.rstrip("\r\n").split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
        at = time.monotonic()
        if method != "POST" or target != PUSH:
            _, raw = await self._forward(method, target, headers, body)
            writer.write(raw)
            await writer.drain()
            return
        attempt = self._attempt(at, body)
        fault = attempt.fault
        if fault.kind == "status":
            attempt.answered = fault.status
            retry_after = fault.retry_after
            if fault.retry_date_in is not None:
                retry_after = email.utils.formatdate(time.time() + fault.retry_date_in, usegmt=True)
            writer.write(_answer(fault.status, retry_after))
            await writer.drain()
            return
        if fault.kind in ("reset", "stall"):
            await self._break(writer, fault.kind)
            return
        attempt.upstream, raw = await self._forward(method, target, headers, body)
        if fault.kind in ("reset_after", "stall_after"):
            await self._break(writer, fault.kind)
            return
        attempt.answered = attempt.upstream
        writer.write(raw)
        await writer.drain()

    def _attempt(self, at: float, body: bytes) -> Attempt:
        """Decode the frame (to know its seq), pick its fault and record the attempt."""
        boot = seq = None
        delta = False
        try:
            need = reference_of(body)
            delta = need is not None
            ref = None if need is None else self._refs.get((need.boot_id, need.seq))
            if need is None or ref is not None:
                batch = decode(body, ref)
                boot, seq = batch.boot_id, batch.seq
                self._refs[(boot, seq)] = next_reference(ref, batch)
                self.frames[(boot, seq)] = batch
        except ProtocolError:
            pass
        with self.lock:
            if seq is None:
                self.undecoded += 1
            fault = self.by_seq.get(seq, None) if seq is not None else None
            if fault is None:
                fault = self.queue.popleft() if self.queue else PASS
            attempt = Attempt(at, boot, seq, delta, fault)
            self.attempts.append(attempt)
        return attempt

    async def _break(self, writer: asyncio.StreamWriter, kind: str) -> None:
        if kind.startswith("reset"):
            sock = writer.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close with a RST, not a FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        await asyncio.sleep(self.stall_s)  # no answer, then a FIN (the agent gave up before)

    async def _forward(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        """Send the request on to the aggregator: its status, and the answer to relay (connection close)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            skip = ("connection", "host", "content-length", "keep-alive", "transfer-encoding")
            lines = [
                f"{method} {target} HTTP/1.1",
                f"Host: 127.0.0.1:{self.upstream_port}",
                f"Content-Length: {len(body)}",
                "Connection: close",
                *(f"{k}: {v}" for k, v in headers.items() if k not in skip),
            ]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 60)
        finally:
            writer.close()
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        code = int(status_line.split(" ", 2)[1])
        kept = [
            h for h in header_lines if h.partition(":")[0].strip().lower() not in ("connection", "keep-alive")
        ]
        relay = "\r\n".join([status_line, *kept, "Connection: close"]).encode("latin-1") + b"\r\n\r\n" + rest
        return code, relay


def _answer(code: int, retry_after: str | None) -> bytes:
    body = json.dumps({"error": f"injected by the soak fault proxy: {code}"}).encode()
    lines = [
        f"HTTP/1.1 {code} {REASONS.get(code, 'Fault')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *([f"Retry-After: {retry_after}"] if retry_after is not None else []),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- the scenario ---------------------------------------------------------------------------------

TIMING, KINDS = "soak-retry-a", "soak-retry-b"
Q400, Q413 = 3, 5  # agent B's frames answered 400 and 413 on every attempt


def timing_faults(fast: bool) -> list[Fault]:
    """Agent A: consecutive server faults (the back-off run), then Retry-After answers."""
    if fast:
        return [status(500), status(503), status(502), PASS, status(429, "2"), status(503, "1"), PASS]
    run = [status(500), status(503), status(502), status(500), status(504), status(500), status(503)]
    return [*run, PASS, status(429, "5"), status(503, "3"), status(429, date_in=4), PASS]


def kind_faults() -> list[Fault]:
    """Agent B: resets and stalls, before and after the aggregator committed the frame."""
    return [
        *(Fault("reset"), PASS, Fault("reset_after"), PASS),
        *(Fault("stall_after"), PASS, Fault("stall"), PASS),
    ]


@dataclass
class Gap:
    after: str
    failures: int  # consecutive failures up to and including this attempt
    seconds: float
    window: tuple[float, float]

    @property
    def ok(self) -> bool:
        return self.window[0] <= self.seconds <= self.window[1]

    def row(self) -> dict[str, Any]:
        return {"after": self.after, "k": self.failures, "s": round(self.seconds, 2),
                "window": [round(self.window[0], 2), round(self.window[1], 2)]}  # fmt: skip


def backoff_window(failures: int) -> tuple[float, float]:
    """Where the attempt after the ``failures``-th consecutive failure may come (docs/api.md)."""
    base = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (failures - 1))
    return 0.5 * base - EARLY, base + SLACK


def gaps(attempts: list[Attempt], timeout: float, stall_s: float) -> list[Gap]:
    """The wait after each failed attempt, with the window the contract allows for it."""
    out: list[Gap] = []
    failures = 0
    for now, after in itertools.pairwise(attempts):
        if now.answered == 200:
            failures = 0
            continue
        if now.answered in (400, 409, 413):
            continue  # refused for good (quarantine) or sent again at once as a key frame: no back-off
        failures += 1
        seconds = after.at - now.at
        window = now.fault.waits() or backoff_window(failures)
        if now.fault.kind in ("stall", "stall_after"):  # the request timeout, then the back-off
            lo, hi = backoff_window(failures)
            window = (timeout + lo, min(timeout + hi, stall_s - EARLY))
        out.append(Gap(now.fault.label, failures, seconds, window))
    return out


@scenario(6, "agent retry semantics under HTTP faults", PROMISE)
def run(ctx: Context) -> Result:
    result = Result()
    stall_s, timeout = ctx.scale(30.0, 6.0), ctx.scale(10.0, 2.0)
    started = time.monotonic()
    agg = AggregatorProcess(ctx.tmp)
    proxies: dict[str, FaultProxy] = {}
    agents: dict[str, AgentProcess] = {}
    exit_codes: dict[str, int | None] = {}
    counters: dict[str, float] = {}
    try:
        agg.start()
        viewer = admin_cli(agg, "add-token", "--role", "viewer")
        for name in (TIMING, KINDS):
            token = admin_cli(agg, "add-agent", name)
            proxy = proxies[name] = FaultProxy(agg.port, stall_s)
            proxy.start()
            config = agent_config(
                ctx.tmp / f"{name}.toml",
                aggregator=proxy.url,
                token=token,
                agent_id=name,
                state_dir=str(ctx.tmp / name),
                interval="1s",
                timeout=f"{timeout:g}s",
                collectors__disabled=["processes", "sensors"],
            )
            agents[name] = AgentProcess(config, ctx.tmp / f"{name}.log")
        proxies[KINDS].by_seq = {Q400: status(400), Q413: status(413)}
        for agent in agents.values():
            agent.start()
        a, b = proxies[TIMING], proxies[KINDS]
        wait_for(lambda: len(a.acked_seqs()) >= 2, 30, "agent A's first frames")
        a.enqueue(timing_faults(ctx.fast))
        wait_for(lambda: max(b.acked_seqs(), default=0) > Q413, 30, "agent B's frames past the 413")
        b.enqueue(kind_faults())
        budget = ctx.scale(240.0, 40.0)
        for name, proxy in proxies.items():
            spool = ctx.tmp / name / "spool"
            wait_for(
                lambda p=proxy, s=spool: p.pending() == 0 and not spooled(s),  # type: ignore[misc]
                budget,
                f"{name} to get through its faults and empty its spool",
            )
        result.figures["faults_seconds"] = round(time.monotonic() - started, 1)
        for name, agent in agents.items():
            exit_codes[name] = agent.stop()
        for metric in ("edgewatch_ingest_frames_total", "edgewatch_ingest_duplicates_total"):
            counters[metric] = metric_values(agg, viewer, metric).get("", 0.0)
    finally:
        for agent in agents.values():
            agent.kill()
        for proxy in proxies.values():
            proxy.close()
        agg.stop()
    stored = read_storage(agg.data_dir / "edgewatch.db")

    # agent A: the waits between attempts
    attempts_a = a.snapshot()
    gaps_a = gaps(attempts_a, timeout, stall_s)
    run_gaps = [g for g in gaps_a if g.after in ("500", "502", "503", "504")]
    said = [g for g in gaps_a if "Retry-After" in g.after]
    result.figures["backoff_gaps_s"] = [round(g.seconds, 2) for g in run_gaps]
    result.figures["retry_after_gaps_s"] = [round(g.seconds, 2) for g in said]
    wanted_run = sum(1 for f in timing_faults(ctx.fast) if f.kind == "status" and f.retry_after is None
                     and f.retry_date_in is None)  # fmt: skip
    result.check(
        len(run_gaps) == wanted_run and len(said) == len(timing_faults(ctx.fast)) - wanted_run - 2,
        f"agent A: expected {wanted_run} back-off waits plus Retry-After: {[g.row() for g in gaps_a]}",
    )
    result.check(
        all(g.ok for g in run_gaps),
        f"agent A: the back-off after consecutive 5xx is not 1 s doubling with 0.5-1 jitter: "
        f"{[g.row() for g in run_gaps if not g.ok]}",
    )
    result.check(
        all(later.seconds >= earlier.seconds - SLACK for earlier, later in itertools.pairwise(run_gaps))
        and (len(run_gaps) < 3 or run_gaps[-1].seconds > 2 * run_gaps[0].seconds),
        f"agent A: the back-off does not grow: {result.figures['backoff_gaps_s']}",
    )
    capped = [g for g in run_gaps if BACKOFF_FIRST * 2 ** (g.failures - 1) > BACKOFF_CAP]
    result.figures["capped_gaps_s"] = [round(g.seconds, 2) for g in capped]
    result.check(
        all(g.seconds <= BACKOFF_CAP + SLACK for g in gaps_a) and (ctx.fast or len(capped) >= 2),
        f"agent A: the back-off is not capped at {BACKOFF_CAP:g} s: {result.figures['backoff_gaps_s']}",
    )
    result.check(
        all(g.ok for g in said),
        f"agent A: Retry-After not honoured: {[g.row() for g in said if not g.ok]}",
    )

    # agent B: quarantine, resets and stalls
    attempts_b = b.snapshot()
    gaps_b = gaps(attempts_b, timeout, stall_s)
    result.figures["kind_gaps"] = {g.after: round(g.seconds, 2) for g in gaps_b}
    result.check(
        {g.after for g in gaps_b} == {"reset", "reset_after", "stall", "stall_after"}
        and all(g.ok for g in gaps_b),
        f"agent B: resets and stalls not retried after the back-off (stalls: the {timeout:g} s timeout,"
        f" before the {stall_s:g} s stall ended): {[g.row() for g in gaps_b]}",
    )
    quarantine = {s.seq: s for s in spooled(ctx.tmp / KINDS / "spool" / "quarantine")}
    result.figures["quarantined"] = sorted(quarantine)
    for seq, code in ((Q400, 400), (Q413, 413)):
        tries = [t for t in attempts_b if t.seq == seq]
        reason = quarantine[seq].path.with_suffix(".reason") if seq in quarantine else None
        result.check(
            1 <= len(tries) <= 2 and all(t.answered == code for t in tries),
            f"agent B: the frame answered {code} was tried {len(tries)} times (at most delta and key frame)",
        )
        result.check(
            reason is not None and reason.exists() and f"HTTP {code}" in reason.read_text(),
            f"agent B: the frame answered {code} is not in spool/quarantine with its reason",
        )
        result.check(
            stored.has_frame(KINDS, tries[0].boot or 0, seq + 1) if tries else False,
            f"agent B: the frame after the one answered {code} was not stored",
        )
    reported = [v for (host, name, _, _), v in sorted(stored.samples.items(), key=lambda kv: kv[0][3])
                if host == KINDS and name == "edgewatch_agent_frames_quarantined_total"]  # fmt: skip
    result.figures["quarantined_reported"] = reported[-1][-1] if reported else None
    result.check(
        bool(reported) and reported[-1][-1] == 2,
        f"agent B reports {result.figures['quarantined_reported']} quarantined frames, not 2",
    )
    for kind in ("reset_after", "stall_after"):
        hit = [t for t in attempts_b if t.fault.kind == kind]
        again = [t for t in attempts_b if hit and t.seq == hit[0].seq and t.answered == 200]
        result.check(
            len(hit) == 1 and hit[0].upstream == 200 and len(again) >= 1,
            f"agent B: the frame whose answer was lost ({kind}) was not sent again and acknowledged",
        )

    # both: every frame accounted for, each stored sample once
    for name, proxy in proxies.items():
        account(result, name, proxy, stored, ctx.tmp / name / "spool")
    frames_stored = sum(1 for host, _, _ in stored.acked if host in proxies)
    after_faults = sum(1 for p in proxies.values() for t in p.snapshot() if t.fault.kind.endswith("_after"))
    result.figures.update(
        frames_stored=frames_stored,
        ingest_frames_total=counters.get("edgewatch_ingest_frames_total"),
        duplicates_absorbed=counters.get("edgewatch_ingest_duplicates_total"),
        attempts={name: len(p.snapshot()) for name, p in proxies.items()},
        exit_codes=exit_codes,
    )
    result.check(
        counters.get("edgewatch_ingest_frames_total") == frames_stored,
        f"the aggregator counted {counters.get('edgewatch_ingest_frames_total')} frames stored, "
        f"the database holds {frames_stored}",
    )
    result.check(
        counters.get("edgewatch_ingest_duplicates_total", 0) >= after_faults,
        f"{after_faults} frames were committed before their answer was lost, but only "
        f"{counters.get('edgewatch_ingest_duplicates_total')} duplicates were absorbed",
    )
    result.check(
        all(code == 0 for code in exit_codes.values()),
        f"the agents did not exit cleanly on SIGTERM: {exit_codes}",
    )
    errors = [e for p in proxies.values() for e in p.errors] + [
        f"{p.undecoded} pushes the proxy could not decode" for p in proxies.values() if p.undecoded
    ]
    result.check(not errors, f"the fault proxy failed: {errors[:3]}")
    return result


def account(result: Result, name: str, proxy: FaultProxy, stored: Any, spool: Path) -> None:
    """Every frame the agent made is quarantined, stored once, or still in its spool."""
    frames = {seq: batch for (_, seq), batch in proxy.frames.items()}
    boots = {boot for boot, _ in proxy.frames}
    left = {s.seq: s.batch for s in spooled(spool)}
    quarantined = {s.seq for s in spooled(spool / "quarantine")}
    made = set(frames) | set(left) | quarantined
    mine = {seq for host, _, seq in stored.acked if host == name}
    lost = sorted(made - mine - quarantined - set(left))
    expected: set[Any] = set()
    for seq in mine:
        batch = frames.get(seq) or left.get(seq)
        if batch is not None:
            expected |= samples_of(batch).keys()
    held = {k: v for k, v in stored.samples.items() if k[0] == name}
    twice = [k for k, v in held.items() if len(v) > 1]
    result.figures[f"{name}_frames"] = {
        "made": len(made),
        "stored": len(mine),
        "quarantined": len(quarantined),
        "left_in_spool": len(left),
        "samples": len(held),
    }
    result.check(len(boots) == 1, f"{name}: frames of {len(boots)} boots, expected one")
    result.check(made == set(range(1, max(made, default=0) + 1)), f"{name}: seqs missing from what it made")
    result.check(not lost, f"{name}: frames neither stored, quarantined nor spooled: {lost[:10]}")
    result.check(
        not mine & quarantined, f"{name}: quarantined frames were stored: {sorted(mine & quarantined)}"
    )
    result.check(not twice, f"{name}: {len(twice)} samples stored more than once, e.g. {twice[:2]}")
    result.check(
        set(held) == expected,
        f"{name}: stored samples differ from the frames stored: {len(set(held) - expected)} extra, "
        f"{len(expected - set(held))} missing",
    )
