"""The agent endpoints: ``POST /api/v1/push`` and ``POST /api/v1/enroll`` (contract in docs/api.md).

A push is checked in order — token, size, reference, decode, identity, clock — and then handed to
the writer; the answer ``{"ack": seq, "commands": [...]}`` goes out only after the commit. Each
refusal is a 4xx with one sentence that says what is wrong and what to do. The reference of each
agent (its newest acknowledged frame, ``next_reference``) lives in memory: after a restart the first
delta of each agent gets ``409`` and the agent sends a key frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from edgewatch.protocol import Batch, ProtocolError, decode, next_reference, reference_of

from . import accounts, auth
from .accounts import HostAuth
from .auth import Limiter
from .frames import FrameJob, FrameResult
from .jsonout import json_response
from .metrics import Registry
from .osthread import name_os_thread
from .status import HostState
from .store import CallJob, Store
from .writer import Overloaded, WriterClosed

log = logging.getLogger("edgewatch.aggregator.ingest")
AUTH_TTL_S = 30.0  # a revocation made by the admin CLI takes effect within this time
MAX_CACHED = 100_000  # entries of the token cache before it starts over
AGENT_MAX_FAILURES = 20  # wrong agent tokens from one address within AGENT_FAILURE_WINDOW_S before 429
AGENT_FAILURE_WINDOW_S = 60.0
MAX_QUEUED_SAMPLES = 4_000_000  # decoded samples waiting for the writer before pushes get 503
MAX_DECODING = 256  # frames waiting for or in decoding before pushes get 503


def decode_frame(body: bytes, ref: Batch | None) -> tuple[Batch, Batch]:
    """The batch, and the reference it makes for the next delta (in a thread: both can be costly)."""
    batch = decode(body, ref)
    return batch, next_reference(ref, batch, decoded=True)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": message}, status=status, headers=headers)


@dataclass
class Ingest:
    store: Store
    registry: Registry
    max_frame_bytes: int
    max_inflight: int
    max_future_ms: int
    retention_raw_ms: int
    public_key: str
    wall: Callable[[], float] = time.time
    refs: dict[int, Batch] = field(default_factory=dict)  # host id -> newest acknowledged reference
    hosts: dict[str, tuple[HostAuth | None, float]] = field(default_factory=dict)
    states: dict[str, HostState] = field(default_factory=dict)
    inflight: dict[int, int] = field(default_factory=dict)
    queued_samples: int = 0
    # after each commit, by name: rules, live updates, /federate, remote write
    observers: dict[str, Callable[[str, Batch, int], None]] = field(default_factory=dict)
    # seconds the event loop spent in each step after the commit: "status" and each observer
    observer_seconds: dict[str, float] = field(default_factory=lambda: {"status": 0.0})
    # host id -> the commands to hand over with a push answer (set when remote commands are on)
    pending_commands: Callable[[int], Awaitable[list[dict[str, Any]]]] | None = None
    decoding: int = 0
    # wrong agent tokens per client address: past the limit only agents already known pass
    token_failures: Limiter = field(
        default_factory=lambda: Limiter(AGENT_MAX_FAILURES, AGENT_FAILURE_WINDOW_S)
    )
    decoder: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="edgewatch-decode", initializer=name_os_thread
        )
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.frames = r.counter("edgewatch_ingest_frames_total", "Frames stored (duplicates not counted).")
        self.bytes = r.counter("edgewatch_ingest_bytes_total", "Bytes of the frames stored.")
        self.samples = r.counter("edgewatch_ingest_samples_total", "Samples stored.")
        self.duplicates = r.counter("edgewatch_ingest_duplicates_total", "Frames that were stored before.")
        self.rejected = r.counter("edgewatch_ingest_rejected_total", "Pushes refused, by reason.")
        self.dropped = r.counter(
            "edgewatch_ingest_dropped_samples_total",
            "Samples not stored because they are older than raw retention.",
        )
        self.latency = r.histogram("edgewatch_ingest_push_seconds", "Time from request to answer of a push.")
        r.gauge(
            "edgewatch_ingest_observer_seconds_total",
            "Time the event loop spent after each push's commit, by step (host status, each observer).",
            lambda: {(("step", name),): spent for name, spent in self.observer_seconds.items()},
        )

    def now_ms(self) -> int:
        return int(self.wall() * 1000)

    async def host_auth(self, name: str) -> HostAuth | None:
        cached = self.hosts.get(name)
        now = time.monotonic()
        if cached is not None and now - cached[1] < AUTH_TTL_S:
            return cached[0]
        record = await self.store.auth_readers.run(lambda conn: accounts.host_auth(conn, name))
        if record is not None:  # misses are not kept: anyone can make up names
            if len(self.hosts) >= MAX_CACHED:
                self.hosts.clear()
            self.hosts[name] = (record, now)
        return record

    def forget_host(self, name: str) -> None:
        self.hosts.pop(name, None)

    def reject(
        self, reason: str, status: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.rejected.inc(reason=reason)
        return error(status, message, headers)

    def remember(self, host: HostAuth, batch: Batch, next_ref: Batch) -> None:
        """Keep the newest acknowledged frame of the host (``next_ref``: the reference it makes) for
        its next delta. A frame stored before counts too: the agent takes the reference from the
        frame it sent last, key or delta."""
        current = self.refs.get(host.id)
        newest = batch.timestamps[-1] if batch.timestamps else None
        if current is not None:
            if current.boot_id == batch.boot_id and batch.seq < current.seq:
                return  # back-log of this boot
            if current.boot_id != batch.boot_id and (
                newest is None or (current.timestamps and newest < current.timestamps[-1])
            ):
                return  # back-log of an earlier boot
        self.refs[host.id] = next_ref

    def state(self, name: str) -> HostState:
        state = self.states.get(name)
        if state is None:
            state = self.states[name] = HostState(name)
        return state


INGEST = web.AppKey("ingest", Ingest)


async def _read_body(request: web.Request, cap: int) -> bytes | None:
    """The body, or None when it is larger than ``cap`` (plain or chunked)."""
    if request.content_length is not None and request.content_length > cap:
        return None
    out = bytearray()
    async for chunk in request.content.iter_chunked(65536):
        out += chunk
        if len(out) > cap:
            return None
    return bytes(out)


async def agent_auth(request: web.Request) -> HostAuth | web.Response:
    """The agent whose token the request carries, or the 401 (429 past the failure limit) to answer.

    An address that sent ``AGENT_MAX_FAILURES`` wrong tokens within ``AGENT_FAILURE_WINDOW_S`` gets
    429 for any token not already in the cache of known agents, without a database read: a
    misconfigured or hostile client slows down, agents that share its address keep pushing."""
    ing = request.app[INGEST]
    address = request.remote or ""
    token = auth.bearer(request.headers.get("Authorization"))
    parts = auth.split_token(token, auth.AGENT_PREFIX) if token else None
    wait = ing.token_failures.wait(address)
    host = None
    if parts is not None:
        cached = ing.hosts.get(parts[0])
        if wait == 0 or cached is not None:
            host = await ing.host_auth(parts[0])
    if (
        host is not None
        and not host.revoked
        and parts is not None
        and auth.matches(parts[1], host.token_hash)
    ):
        return host
    if wait > 0:
        return ing.reject(
            "rate_limited",
            429,
            f"too many wrong agent tokens from this address; fix the agent's token (enroll it again)"
            f" and retry in {math.ceil(wait)} s",
            {"Retry-After": str(math.ceil(wait))},
        )
    ing.token_failures.failed(address)
    if parts is None:
        return ing.reject(
            "unauthorized",
            401,
            "this needs an agent token (Authorization: Bearer ewa_...); enroll the agent",
        )
    return ing.reject("unauthorized", 401, "the agent token is wrong or revoked; enroll the agent again")


async def push(request: web.Request) -> web.StreamResponse:
    ing = request.app[INGEST]
    started = time.perf_counter()
    host = await agent_auth(request)
    if isinstance(host, web.Response):
        return host
    body = await _read_body(request, ing.max_frame_bytes)
    if body is None:
        return ing.reject(
            "too_large",
            413,
            f"the frame is larger than {ing.max_frame_bytes} bytes; send fewer samples per frame",
        )
    if ing.inflight.get(host.id, 0) >= ing.max_inflight:
        return ing.reject(
            "overload", 429, "this agent has too many pushes in flight; wait and retry", {"Retry-After": "1"}
        )
    ing.inflight[host.id] = ing.inflight.get(host.id, 0) + 1
    try:
        return await _store(request, ing, host, body, started)
    finally:
        ing.inflight[host.id] -= 1


async def _store(
    request: web.Request, ing: Ingest, host: HostAuth, body: bytes, started: float
) -> web.StreamResponse:
    ref: Batch | None = None
    try:
        need = reference_of(body)
        if need is not None:
            ref = ing.refs.get(host.id)
            if ref is None or (ref.boot_id, ref.seq) != (need.boot_id, need.seq):
                return ing.reject(
                    "no_reference",
                    409,
                    "the frame's reference is not held here; send the batch as a key frame",
                )
        if ing.decoding >= MAX_DECODING:
            return ing.reject("overload", 503, "the aggregator is busy; retry later", {"Retry-After": "2"})
        ing.decoding += 1
        try:
            loop = asyncio.get_running_loop()
            batch, next_ref = await loop.run_in_executor(ing.decoder, decode_frame, body, ref)
        finally:
            ing.decoding -= 1
    except ProtocolError as exc:
        if exc.needs_reference:
            return ing.reject("no_reference", 409, f"{exc}; send the batch as a key frame")
        if exc.too_large:
            return ing.reject("too_large", 413, f"{exc}; send fewer samples per frame")
        return ing.reject("malformed", 400, f"the frame is malformed: {exc}")
    if batch.agent_id != host.name:
        return ing.reject(
            "wrong_agent",
            403,
            f"the frame is from agent {batch.agent_id!r} but the token is agent {host.name!r}; "
            "fix agent_id in the agent's config or enroll it again",
        )
    now = ing.now_ms()
    newest = max(
        batch.timestamps[-1] if batch.timestamps else 0, max((e.ts for e in batch.events), default=0)
    )
    if newest > now + ing.max_future_ms:
        ahead = (newest - now) / 1000
        return ing.reject(
            "future",
            400,
            f"the frame's samples are {ahead:.0f} s ahead of our clock; fix the host's clock (NTP)",
        )
    job = FrameJob(host.id, batch, ing.store.series, ing.store.acked, now - ing.retention_raw_ms)
    size = len(batch.timestamps) * len(batch.series)
    if ing.queued_samples + size > MAX_QUEUED_SAMPLES and ing.queued_samples:
        return ing.reject("overload", 503, "the aggregator is busy; retry later", {"Retry-After": "2"})
    ing.queued_samples += size
    try:
        result: FrameResult = await ing.store.writer.submit(job)
    except Overloaded:
        return ing.reject("overload", 503, "the aggregator is busy; retry later", {"Retry-After": "2"})
    except WriterClosed as exc:
        return ing.reject("unavailable", 503, f"{exc}", {"Retry-After": "5"})
    finally:
        ing.queued_samples -= size
    ing.remember(host, batch, next_ref)
    if result.duplicate:
        ing.duplicates.inc()
    else:
        ing.frames.inc()
        ing.bytes.inc(len(body))
        ing.samples.inc(result.samples)
        ing.store.arrived(host.id, result.windows, now)
        if result.dropped_old:
            ing.dropped.inc(result.dropped_old)
        spent = ing.observer_seconds
        t0 = time.perf_counter()
        ing.state(host.name).update(batch, now)
        t1 = time.perf_counter()
        spent["status"] += t1 - t0
        for name, observe in ing.observers.items():
            try:
                observe(host.name, batch, now)
            except Exception:  # the frame is stored: a bug in an observer must not fail the push
                log.exception("observer=%s failed host=%s", name, host.name)
            t0, t1 = t1, time.perf_counter()
            spent[name] = spent.get(name, 0.0) + t1 - t0
    commands = await ing.pending_commands(host.id) if ing.pending_commands is not None else []
    ing.latency.observe(time.perf_counter() - started)
    return json_response({"ack": batch.seq, "commands": commands})


async def enroll(request: web.Request) -> web.StreamResponse:
    ing = request.app[INGEST]
    try:
        body: Any = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, 'the body is not JSON; send {"token": ..., "hostname": ..., "name": ...}')
    if not isinstance(body, dict) or not isinstance(body.get("token"), str):
        return error(400, "the body needs a string field token (the enrollment token)")
    name = body.get("name") or body.get("hostname")
    if not isinstance(name, str) or not auth.valid_name(name):
        return error(400, "give a valid name or hostname: 1-63 letters, digits, '.', '_' or '-'")
    token: str = body["token"]
    now = ing.now_ms()
    try:
        agent_token = await ing.store.writer.submit(
            CallJob(lambda conn: accounts.redeem_enrollment(conn, token, name, now))
        )
    except accounts.AccountError as exc:
        return error(exc.status, str(exc))
    except (Overloaded, WriterClosed):
        return error(503, "the aggregator is busy; retry later", {"Retry-After": "2"})
    ing.forget_host(name)
    log.info("enrolled agent=%s", name)
    return json_response({"agent_id": name, "token": agent_token, "public_key": ing.public_key})
