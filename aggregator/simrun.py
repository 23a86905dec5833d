"""The simulator's runner: enrolls the simulated hosts and pushes their frames as agents do.

``edgewatch sim`` (``sim.py``) is the command line around it. Each host (``simhost.SimHost``)
enrolls once (``POST /api/v1/enroll``; the identities are kept in ``--state``), back-fills its
history as key frames, then samples every interval and pushes as the agent does (docs/api.md): a
delta frame against ``next_reference`` of the newest acknowledged frame, a key frame after a
``409``; ``429``/``503`` wait for ``Retry-After``, other failures back off (1 s doubling to 30 s,
with jitter) while the frames wait in a bounded per-host backlog, sent oldest first as key frames
once the aggregator answers again; ``400``/``413`` drop the frame, counted. All hosts share one
aiohttp connection pool.

From Python (benchmarks, ``edgewatch demo``): ``await run_sim(SimConfig(...), stop)`` returns the
``SimStats``; clock, sleep and random numbers are fields of ``SimConfig``, so tests drive them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp

from edgewatch.protocol import Batch, encode, next_reference

from .simcatalog import Scenario
from .simhost import SimHost

log = logging.getLogger("edgewatch.aggregator.sim")

PUSH_PATH, ENROLL_PATH, CONTENT_TYPE = "/api/v1/push", "/api/v1/enroll", "application/x-edgewatch-frame"
BACKOFF_FIRST, BACKOFF_CAP, RETRY_AFTER_CAP = 1.0, 30.0, 600.0
ACK, CONFLICT, REFUSED, RETRY = range(4)


class SimError(Exception):
    """The simulation cannot go on: the message says what is wrong and what to do."""


class Identity(NamedTuple):
    agent_id: str
    token: str


class ScenarioSpec(NamedTuple):
    """``--scenario NAME[/PARAM][:HOSTS][@START[+DURATION]]``, times in seconds from the start."""

    name: str
    hosts: str = "1"  # "all", "3", "1-5,9", or host names
    start: float = 0.0  # negative: inside the history
    duration: float | None = None  # None: until the simulation stops
    param: str = ""


@dataclass
class SimConfig:
    aggregator: str
    hosts: int = 10
    interval: float = 10.0
    enroll_token: str = ""
    state: Path | None = None  # identities, reused by the next run
    identities: Mapping[str, Identity] = field(default_factory=dict)  # host name -> identity, no enrolling
    prefix: str = "sim"
    scenarios: Sequence[ScenarioSpec] = ()
    history: float = 0.0  # seconds of past data to back-fill first
    history_only: bool = False  # stop once the history is sent
    duration: float = 0.0  # seconds of live pushing after the history; 0: until ``stop``
    seed: int = 0
    batch_samples: int = 1
    history_samples: int = 60
    concurrency: int = 16
    backlog_frames: int = 10_000  # per host; the oldest go first
    timeout: float = 10.0
    ssl: ssl.SSLContext | bool = True  # False: do not verify the aggregator's certificate
    stop_grace: float = 5.0  # seconds to send what waits in the backlogs when stopping
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.perf_counter
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)


@dataclass
class SimStats:
    hosts: int = 0
    enrolled: int = 0
    frames_sent: int = 0
    key_frames: int = 0
    history_frames: int = 0
    samples_sent: int = 0
    bytes_sent: int = 0
    conflicts_409: int = 0
    retries: int = 0  # frames kept for later: a failed push, or made during a back-off
    errors: int = 0  # failed pushes (network, HTTP errors, 200 without the ack)
    error_reasons: dict[str, int] = field(default_factory=dict)
    dropped_frames: int = 0  # refused (400, 413) or pushed out of a full backlog
    dropped_samples: int = 0
    pending_frames: int = 0  # still in the backlogs when the simulation stopped
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)  # ms of acknowledged pushes (a sample)
    _seen: int = field(default=0, repr=False)

    def latency(self, ms: float, rng: random.Random) -> None:
        """Keep a uniform sample of at most 100,000 latencies (reservoir sampling)."""
        self._seen += 1
        if len(self.latencies) < 100_000:
            self.latencies.append(ms)
        elif (i := rng.randrange(self._seen)) < len(self.latencies):
            self.latencies[i] = ms

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        pick = (
            (lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)) if ordered else None
        )
        out = {k: v for k, v in vars(self).items() if k not in ("latencies", "_seen")}
        out["seconds"] = round(self.seconds, 3)
        return {**out, "p50_ms": pick and pick(0.5), "p99_ms": pick and pick(0.99)}


class _Entry(NamedTuple):
    seq: int
    ticks: tuple[int, ...]
    since: int | None  # events after this instant go with it
    key: bool  # history, catching up or from the backlog: a key frame
    history: bool


class _Run:
    """One host's state while it pushes."""

    def __init__(self, host: SimHost, identity: Identity, boot_id: int) -> None:
        self.host, self.identity, self.boot_id = host, identity, boot_id
        self.seq, self.k = 0, 0
        self.last_ts: int | None = None
        self.ref: Batch | None = None  # what the aggregator keeps: next_reference of the newest ack
        self.backlog: deque[_Entry] = deque()
        self.retry_at, self.failures = 0.0, 0


def host_name(prefix: str, n: int, hosts: int) -> str:
    return f"{prefix}-{n:0{max(3, len(str(hosts)))}d}"


def fleet(config: SimConfig, start_ms: int) -> list[SimHost]:
    """The hosts the simulation runs, scenarios placed relative to ``start_ms`` (ValueError if bad)."""
    names = [host_name(config.prefix, n, config.hosts) for n in range(1, config.hosts + 1)]
    chosen = [(spec, _select(spec.hosts, names)) for spec in config.scenarios]
    hosts = []
    for i, name in enumerate(names):
        scenarios = [
            Scenario(spec.name, start_ms + round(spec.start * 1000),
                     None if spec.duration is None else start_ms + round((spec.start + spec.duration) * 1000),
                     spec.param)
            for spec, picked in chosen if i in picked
        ]  # fmt: skip
        seed = int.from_bytes(
            hashlib.blake2b(f"{config.seed}/{name}".encode(), digest_size=8).digest(), "big"
        )
        phase = config.interval * i / config.hosts  # spread over the interval
        hosts.append(SimHost(name, seed, interval_s=config.interval, phase_s=phase, scenarios=scenarios))
    return hosts


def _select(spec: str, names: list[str]) -> set[int]:
    if spec == "all":
        return set(range(len(names)))
    picked: set[int] = set()
    for part in spec.split(","):
        if part in names:
            picked.add(names.index(part))
            continue
        low, _, high = part.partition("-")
        if not (low.isdigit() and (high.isdigit() or not high)) or not 1 <= int(low) <= int(
            high or low
        ) <= len(names):
            raise ValueError(
                f"scenario hosts {part!r}: give host numbers 1 to {len(names)} (3, 1-5), names or all"
            )
        picked.update(range(int(low) - 1, int(high or low)))
    return picked


async def run_sim(config: SimConfig, stop: asyncio.Event | None = None) -> SimStats:
    """Run the simulation until ``stop`` is set, ``config.duration`` has passed, or (history only) the
    history is sent; raises ``SimError`` when enrollment fails, ``ValueError`` for a bad scenario."""
    return await _Simulation(config, stop or asyncio.Event()).run()


class _Simulation:
    def __init__(self, config: SimConfig, stop: asyncio.Event) -> None:
        self.cfg, self.stop = config, stop
        self.stats = SimStats(hosts=config.hosts)
        self.url = config.aggregator.rstrip("/")
        self.slots = asyncio.Semaphore(config.concurrency)
        self.caught_up = asyncio.Event()
        self.behind = config.hosts
        self.logged: set[str] = set()

    async def run(self) -> SimStats:
        cfg = self.cfg
        started, t0 = cfg.monotonic(), cfg.clock()
        self.t0_ms = int(t0 * 1000)
        hosts = fleet(cfg, self.t0_ms)
        connector = aiohttp.TCPConnector(limit=cfg.concurrency, ssl=cfg.ssl)
        timeout = aiohttp.ClientTimeout(total=cfg.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as self.session:
            identities = await self._identities(hosts)
            runs = [_Run(h, identities[h.name], cfg.rng.getrandbits(64)) for h in hosts]
            timer = asyncio.create_task(self._timer())
            try:
                await asyncio.gather(*(self._host(r) for r in runs))
            finally:
                timer.cancel()
        self.stats.pending_frames = sum(len(r.backlog) for r in runs)
        self.stats.seconds = cfg.monotonic() - started
        return self.stats

    # -- enrollment --------------------------------------------------------------------------------

    async def _identities(self, hosts: list[SimHost]) -> dict[str, Identity]:
        cfg = self.cfg
        known = {**_load_state(cfg.state, self.url), **cfg.identities}
        missing = [h.name for h in hosts if h.name not in known]
        if missing and not cfg.enroll_token:
            raise SimError(
                f"{len(missing)} hosts have no identity; give --enroll-token (and --state to keep them)"
            )
        answers = await asyncio.gather(*(self._enroll(n) for n in missing), return_exceptions=True)
        for name, answer in zip(missing, answers):
            if isinstance(answer, Identity):
                known[name] = answer
                self.stats.enrolled += 1
        if cfg.state is not None and self.stats.enrolled:  # even when some failed: they have enrolled
            _save_state(cfg.state, self.url, known)
        failed = [a for a in answers if isinstance(a, BaseException)]
        if failed:
            raise failed[0]
        return known

    async def _enroll(self, name: str) -> Identity:
        body = {"token": self.cfg.enroll_token, "hostname": name, "name": name}
        for attempt in range(6):  # the aggregator may still be starting: retry for about half a minute
            try:
                async with self.slots, self.session.post(self.url + ENROLL_PATH, json=body) as answer:
                    status, data = answer.status, _json(await answer.read())
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, data = 0, {"error": str(exc) or type(exc).__name__}
            if status == 200 and isinstance(data.get("agent_id"), str) and isinstance(data.get("token"), str):
                log.info("enrolled host=%s agent_id=%s", name, data["agent_id"])
                return Identity(data["agent_id"], data["token"])
            if status and status < 500 and status != 429:
                why = f"HTTP {status}: {data.get('error', 'no reason given')}"
                hint = "; the enrollment token is unknown or used up: make one with a use per host"
                raise SimError(
                    f"the aggregator refused to enroll {name} ({why})" + (hint if status == 403 else "")
                )
            if attempt < 5:
                await self._pause(min(BACKOFF_CAP, 2.0**attempt))
        raise SimError(f"cannot enroll {name} at {self.url}: {data.get('error', f'HTTP {status}')}")

    # -- one host ------------------------------------------------------------------------------------

    async def _timer(self) -> None:
        await self.caught_up.wait()
        log.info("live hosts=%d history_frames=%d", self.cfg.hosts, self.stats.history_frames)
        if self.cfg.duration > 0 and not self.cfg.history_only:
            await self._pause(self.cfg.duration)
            self.stop.set()

    async def _host(self, run: _Run) -> None:
        cfg, host = self.cfg, run.host
        live = host.first_tick(self.t0_ms)
        run.k = host.first_tick(self.t0_ms - round(cfg.history * 1000))
        behind = True
        while not self.stop.is_set():
            if behind and run.k >= live:
                behind = False
                self.behind -= 1
                if self.behind == 0:
                    self.caught_up.set()
            if cfg.history_only and run.k >= live:
                await self._drain(run, None)
                if not run.backlog:
                    break
                await self._pause(max(0.0, run.retry_at - cfg.clock()))
                continue
            now = int(cfg.clock() * 1000)
            due = host.tick_time(run.k if run.k < live else run.k + cfg.batch_samples - 1)
            if due > now:  # nothing to sample yet: drain the backlog, or sleep
                if run.backlog and run.retry_at * 1000 <= now:
                    await self._drain(run, due)
                else:
                    wake = min(due, int(run.retry_at * 1000)) if run.backlog else due
                    await self._pause(max(0.001, (wake - now) / 1000))
                continue
            first, last = run.k, run.k
            limit = min(live, first + cfg.history_samples) if first < live else first + cfg.history_samples
            while last < limit and host.tick_time(last) <= now:
                last += 1
            catch_up = first < live or last - first > cfg.batch_samples
            run.k = last if catch_up else first + cfg.batch_samples
            stamps = tuple(t for t in map(host.tick_time, range(first, run.k)) if not host.silent(t))
            if not stamps:
                continue
            run.seq += 1
            entry = _Entry(run.seq, stamps, run.last_ts, catch_up, first < live)
            run.last_ts = stamps[-1]
            if cfg.clock() < run.retry_at or not await self._send(run, entry):
                self._keep(run, entry)
            elif run.backlog:
                await self._drain(run, host.tick_time(run.k + cfg.batch_samples - 1))
        if run.backlog and cfg.stop_grace > 0 and not cfg.history_only:
            with contextlib.suppress(TimeoutError):  # a last try for what waits, as an agent flushes
                await asyncio.wait_for(self._drain(run, None, final=True), cfg.stop_grace)

    def _keep(self, run: _Run, entry: _Entry) -> None:
        run.backlog.append(entry._replace(key=True))
        self.stats.retries += 1
        if len(run.backlog) > self.cfg.backlog_frames:
            lost = run.backlog.popleft()
            self._dropped(
                len(lost.ticks) * len(run.host.series), "backlog_full", "the oldest frames go first"
            )

    def _dropped(self, samples: int, reason: str, detail: str) -> None:
        self.stats.dropped_frames += 1
        self.stats.dropped_samples += samples
        if reason not in self.logged:
            self.logged.add(reason)
            log.error("frames_dropped reason=%s: %s", reason, detail)

    async def _drain(self, run: _Run, until_ms: int | None, *, final: bool = False) -> None:
        """Send the backlog oldest first until it is empty, a push fails, or ``until_ms`` has come."""
        while run.backlog and (final or not self.stop.is_set()):
            if not await self._send(run, run.backlog[0]):
                return
            run.backlog.popleft()
            if until_ms is not None and self.cfg.clock() * 1000 >= until_ms:
                return

    async def _send(self, run: _Run, entry: _Entry) -> bool:
        """Push one frame: True once it is settled (acknowledged or refused), False to retry it later."""
        batch = await self._offload(len(entry.ticks), run.host.batch, entry.ticks, run.boot_id, entry.seq,
                                    run.identity.agent_id, entry.since)  # fmt: skip
        ref = run.ref
        if not entry.key and ref is not None and ref.seq < entry.seq:
            frame = await self._offload(len(entry.ticks), encode, batch, ref)
            outcome = await self._post(run, frame, entry.seq)
            if outcome == ACK:
                self._acked(run, entry, batch, frame, ref)
                return True
            if outcome == RETRY:
                return False
            self.stats.conflicts_409 += outcome == CONFLICT
            run.ref = None  # the aggregator lacks the reference, or refused the delta: a key frame now
        frame = await self._offload(len(entry.ticks), encode, batch, None)
        outcome = await self._post(run, frame, entry.seq)
        if outcome == ACK:
            self._acked(run, entry, batch, frame, None)
        elif outcome == REFUSED:
            self._dropped(
                batch.sample_count, "refused", "the aggregator refused a frame (400 or 413); not sent again"
            )
        elif outcome == CONFLICT:  # a key frame needs no reference: the answer is wrong, try again later
            self._back_off(run, "http_409_key_frame", None, "a key frame was answered 409")
        return outcome in (ACK, REFUSED)

    async def _offload(self, samples: int, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` in a thread when it is big (history frames), so the loop keeps serving pushes."""
        return await asyncio.to_thread(fn, *args) if samples > 4 else fn(*args)

    def _acked(self, run: _Run, entry: _Entry, batch: Batch, frame: bytes, ref: Batch | None) -> None:
        if run.ref is None or run.ref.seq < batch.seq:  # as the aggregator: it keeps the newest acknowledged
            run.ref = next_reference(ref, batch)
        s = self.stats
        s.frames_sent += 1
        s.samples_sent += batch.sample_count
        s.bytes_sent += len(frame)
        s.key_frames += ref is None
        s.history_frames += entry.history

    async def _post(self, run: _Run, frame: bytes, seq: int) -> int:
        headers = {"Authorization": f"Bearer {run.identity.token}", "Content-Type": CONTENT_TYPE}
        try:
            async with self.slots:
                started = self.cfg.monotonic()
                async with self.session.post(self.url + PUSH_PATH, data=frame, headers=headers) as answer:
                    status, body = answer.status, await answer.read()
                    wait = _retry_after(answer.headers.get("Retry-After", ""), self.cfg.clock())
                took = (self.cfg.monotonic() - started) * 1000
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._back_off(run, "network", None, str(exc) or type(exc).__name__)
            return RETRY
        data = _json(body)
        if status == 200 and data.get("ack") == seq:
            run.failures = 0
            self.stats.latency(took, self.cfg.rng)
            return ACK
        if status == 409:
            return CONFLICT
        reason = f"http_{status}" if status != 200 else "bad_ack"
        detail = str(data.get("error", "")) or body[:200].decode("utf-8", "replace")
        if status in (400, 413, 422):
            self.stats.errors += 1
            self.stats.error_reasons[reason] = self.stats.error_reasons.get(reason, 0) + 1
            return REFUSED
        delay = wait if status in (429, 503) else None  # None: doubling
        if status == 200:
            detail = "the server answered 200 without acknowledging the frame; is the aggregator URL right?"
        elif status < 500 and status not in (408, 429):  # 401, 403, 404, a redirect: the setup is wrong
            delay = BACKOFF_CAP  # keep the frames and try again slowly, as the agent does
        self._back_off(run, reason, delay, detail)
        return RETRY

    def _back_off(self, run: _Run, reason: str, delay: float | None, detail: str) -> None:
        self.stats.errors += 1
        self.stats.error_reasons[reason] = self.stats.error_reasons.get(reason, 0) + 1
        run.failures += 1
        if delay is None:  # 1 s doubling to 30 s, times 0.5 to 1
            delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** min(run.failures - 1, 10))
            delay *= 0.5 + self.cfg.rng.random() / 2
        run.retry_at = self.cfg.clock() + max(delay, 0.05)
        if reason not in self.logged:
            self.logged.add(reason)
            log.warning("push_failed reason=%s retry_in=%.1fs detail=%r", reason, delay, detail)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when ``stop`` is set."""
        if self.stop.is_set():
            return
        sleeper = asyncio.ensure_future(self.cfg.sleep(seconds))
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _retry_after(value: str, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), at most ten minutes."""
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    from email.utils import parsedate_to_datetime

    try:
        return (
            min(max(0.0, parsedate_to_datetime(value).timestamp() - now), RETRY_AFTER_CAP) if value else None
        )
    except (TypeError, ValueError):
        return None


def _load_state(path: Path | None, url: str) -> dict[str, Identity]:
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("aggregator") != url:
            raise SimError(
                f"{path} holds identities for {data.get('aggregator')}; use another --state file for {url}"
            )
        return {name: Identity(i["agent_id"], i["token"]) for name, i in data["hosts"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SimError(f"cannot read the state file {path} ({exc}); fix or remove it") from None


def _save_state(path: Path, url: str, identities: Mapping[str, Identity]) -> None:
    hosts = {name: i._asdict() for name, i in sorted(identities.items())}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds tokens
    with os.fdopen(fd, "w") as f:
        json.dump({"aggregator": url, "hosts": hosts}, f, indent=1)
    os.replace(tmp, path)


# -- the command line ------------------------------------------------------------------------------
