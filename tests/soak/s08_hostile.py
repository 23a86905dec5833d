"""Scenario 8: hostile input at the HTTP level against a real aggregator.

Four kinds of attack, all on ``POST /api/v1/push`` with a valid agent token unless said otherwise:

- frames built to hurt: zstd bombs (size declared, omitted, lying; several zstd frames in a row),
  hostile msgpack (containers and strings that claim gigabytes, deep nesting, wrong types, invalid
  UTF-8), the same bombs without a token or with a wrong one;
- bodies over the cap: a ``Content-Length`` that claims 100 MB (the answer must not wait for it),
  a real 9 MB body, 12 MB sent chunked without any length, a gzip / deflate bomb behind
  ``Content-Encoding`` (compressed under the cap, gigabytes inflated), an unknown encoding;
- broken HTTP: a 100 KB header, a non-numeric or conflicting ``Content-Length``, a bad chunk size;
- frames drawn by Hypothesis from the protocol test strategies: valid batches of this agent (they are
  stored), of other agents, mutated frames, mutated payload maps, random msgpack and random bytes
  behind a valid header, delta frames naming references the aggregator never saw.

Every answer must be 4xx (or 200 for a frame that is in fact valid), never 5xx; answers from the
application carry ``{"error": ...}``; a valid push must still be acknowledged between the batches of
attacks and at the end; and the aggregator's peak resident memory (``VmHWM`` in
``/proc/PID/status``, which also catches a spike between two samples) must stay under
``RSS_BOUND_MB``.
"""

from __future__ import annotations

import bisect
import http.client
import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import msgpack
import zstandard
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from edgewatch.protocol import MAJOR, MINOR, Batch, Series, encode
from edgewatch.protocol.limits import MAX_FRAME_BYTES, MAX_SAMPLES, MAX_TIMESTAMPS
from tests.aggregator.procs import AggregatorProcess, env_without_proxies
from tests.protocol.frames import join, split
from tests.protocol.strategies import batches, reference_pairs
from tests.soak.core import Context, Result, scenario
from tests.soak.pushkit import PUSH, acked, memory_kb, post

# peak resident memory of the aggregator under attack: about 65 MB at rest, and one frame at the
# protocol's caps (2 million samples, 2 KB of zstd) adds about 130 MB while it is decoded and stored
RSS_BOUND_MB = 300
STALL_BOUND_MS = 1000  # GET /healthz while attacks go on (inflating a 1 MB gzip bomb took 1.7 s)
KEY_HEADER = b"EW" + bytes([MAJOR, MINOR, 0])
ZSTD_HEADER = b"EW" + bytes([MAJOR, MINOR, 2])


# -- hand-made hostile frames ----------------------------------------------------------------------


def zstd_bomb(size: int, *, declare: bool, claim: int | None = None) -> bytes:
    """A few KB of zstd that inflate to ``size`` zero bytes; ``claim`` forges the declared size."""
    out = io.BytesIO()
    cctx = zstandard.ZstdCompressor(level=3, write_content_size=declare)
    with cctx.stream_writer(out, size=size if declare else -1, closefd=False) as w:
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            w.write(chunk)
    data = out.getvalue()
    if claim is not None and declare:  # rewrite the frame header's content size field to lie
        descriptor = data[4]
        single_segment = descriptor >> 5 & 1
        width = (single_segment, 2, 4, 8)[descriptor >> 6]
        at = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
        value = claim - 256 if width == 2 else claim
        assert int.from_bytes(data[at : at + width], "little") == (size - 256 if width == 2 else size)
        data = data[:at] + value.to_bytes(width, "little") + data[at + width :]
        assert zstandard.get_frame_parameters(data).content_size == claim
    return data


def hostile_msgpack() -> list[tuple[str, bytes]]:
    """Payloads of msgpack that lie about their sizes, nest deep or carry wrong types."""
    deep = b"\x91" * 100_000 + b"\xc0"  # 100,000 nested one-element arrays
    return [
        ("array32 claiming 4G items", b"\xdd\xff\xff\xff\xff"),
        ("map32 claiming 4G pairs", b"\xdf\xff\xff\xff\xff"),
        ("str32 claiming 4 GB", b"\xdb\xff\xff\xff\xff" + b"x" * 100),
        ("bin32 claiming 4 GB", b"\xc6\xff\xff\xff\xff" + b"x" * 100),
        ("ext32 claiming 4 GB", b"\xc9\xff\xff\xff\xff\x01" + b"x" * 100),
        ("deep nesting", deep),
        ("deep maps", b"\x81\x00" * 50_000 + b"\xc0"),
        ("payload is an int", msgpack.packb(1 << 63)),
        ("payload is a string", msgpack.packb("EW" * 1000)),
        ("invalid utf-8 key", b"\x81\xa2\xff\xfe\x01"),
        ("map of float keys", msgpack.packb({1.5: 1, 2.5: [1, 2]})),
        ("map with nil key", b"\x81\xc0\x01"),
        ("reserved byte 0xc1", b"\x81\x00\xc1"),
        ("uint64 max everywhere", msgpack.packb(dict.fromkeys(range(32), (1 << 64) - 1))),
        ("negative everything", msgpack.packb(dict.fromkeys(range(32), -(1 << 63)))),
        ("lists of nil", msgpack.packb({k: [None] * 1000 for k in range(16)})),
        ("a million small ints", msgpack.packb({k: list(range(62_500)) for k in range(16)})),
        ("nested lists in every field", msgpack.packb({k: [[[[[1]]]]] for k in range(32)})),
        ("huge series count claim", msgpack.packb({k: [{}] * 5000 for k in range(8)})),
    ]


def frame_at_the_caps(agent: str, now_ms: int) -> bytes:
    """A valid frame of ``MAX_SAMPLES`` samples (``MAX_TIMESTAMPS`` per series) in a few KB."""
    ts = [now_ms - 3_600_000 + 10 * i for i in range(MAX_TIMESTAMPS)]
    count = MAX_SAMPLES // MAX_TIMESTAMPS
    columns = [list(range(j, j + MAX_TIMESTAMPS)) for j in range(count)]
    return encode(Batch(agent, 2, 1, ts, [Series(f"soak_cap_{j}") for j in range(count)], columns))


def hostile_frames(good: bytes) -> list[tuple[str, bytes]]:
    header, payload, _ = split(good)
    out: list[tuple[str, bytes]] = [
        ("empty body", b""),
        ("magic only", b"EW"),
        ("header only", KEY_HEADER),
        ("zstd bomb 1 GB, size declared", ZSTD_HEADER + zstd_bomb(1 << 30, declare=True)),
        ("zstd bomb 256 MB, size omitted", ZSTD_HEADER + zstd_bomb(256 << 20, declare=False)),
        (
            "zstd bomb 256 MB claiming 1 KB",
            ZSTD_HEADER + zstd_bomb(256 << 20, declare=True, claim=1024),
        ),
        (
            "zstd bomb 64 MB claiming 16 MB",
            ZSTD_HEADER + zstd_bomb(64 << 20, declare=True, claim=16 << 20),
        ),
        (
            "four zstd frames of 16 MB in a row",
            ZSTD_HEADER + zstd_bomb(16 << 20, declare=True) * 4,
        ),
        ("zstd frame of zeros declared", ZSTD_HEADER + b"\x28\xb5\x2f\xfd" + bytes(40)),
        ("zstd skippable frame", ZSTD_HEADER + b"\x50\x2a\x4d\x18" + (1 << 20).to_bytes(4, "little")),
        ("good frame cut short", good[:-3]),
        ("good frame with trailing bytes", good + b"trailing"),
        ("good frame, unknown major version", good[:2] + bytes([99]) + good[3:]),
        ("good frame, every flag set", good[:4] + b"\xff" + good[5:]),
    ]
    for name, body in hostile_msgpack():
        out.append((f"msgpack: {name}", join(header, body)))
        out.append((f"msgpack zstd: {name}", join(header, body, compress=True)))
        out.append((f"msgpack after payload: {name}", join(header, payload, body)))
    return out


# -- raw HTTP ----------------------------------------------------------------------------------------


def exchange(
    port: int, head: bytes, body: Iterable[bytes] = (), *, timeout: float = 20.0
) -> tuple[int | None, bytes, str]:
    """Send ``head`` and then ``body`` (from a thread) while reading the answer: ``(status, body,
    note)``; the status is None when the server closed without answering or did not answer in time.
    The answer may come before the body is sent: the sender stops when it does.

    The head goes out with the first body chunk. (aiohttp's C parser, given a broken chunk after
    the handler began to read the body, answers nothing and the request hangs until the client
    gives up; a broken body that comes with the head is answered 400.)"""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    answered = threading.Event()
    sent = {"bytes": 0, "error": ""}

    def send() -> None:
        prefix = head  # with the first chunk: a broken body is seen before the handler starts
        try:
            for chunk in body:
                if answered.is_set():
                    return
                sock.sendall(prefix + chunk)
                prefix = b""
                sent["bytes"] += len(chunk)
            if prefix:
                sock.sendall(prefix)
        except OSError as exc:
            sent["error"] = type(exc).__name__

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        response = http.client.HTTPResponse(sock)
        response.begin()
        answered.set()
        status, data = response.status, response.read(64 << 10)
        note = f"sent {sent['bytes']} body bytes"
    except (OSError, http.client.HTTPException) as exc:
        answered.set()
        status, data, note = None, b"", f"no answer: {type(exc).__name__}: {exc}"
    finally:
        sender.join(timeout)
        sock.close()
    return status, data, note


def request_head(port: int, token: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {PUSH} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Authorization: Bearer {token}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(parts: Iterable[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
    yield b"0\r\n\r\n"


def zeros(total: int, size: int = 1 << 16) -> Iterator[bytes]:
    block = bytes(size)
    for _ in range(total // size):
        yield block


def deflate_bomb(size: int, wrap: str) -> bytes:
    """About ``size / 1000`` bytes of gzip (``wrap="gzip"``) or zlib (``"deflate"``) that inflate to
    ``size`` zero bytes. Built from one fully flushed deflate block of 16 MB repeated (a full flush
    leaves no back-reference to earlier data, so copies of it make a valid stream): compressing a
    gigabyte would take the 10 s this saves."""
    piece = 16 << 20
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(piece)) + c.flush(zlib.Z_FULL_FLUSH)
    raw = block * (size // piece) + c.flush()
    crc, adler, zero = 0, 1, bytes(1 << 20)
    for _ in range(size >> 20):
        crc, adler = zlib.crc32(zero, crc), zlib.adler32(zero, adler)
    if wrap == "gzip":
        return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + raw + struct.pack("<II", crc, size & 0xFFFFFFFF)
    return b"\x78\xda" + raw + struct.pack(">I", adler)


def http_attacks(port: int, token: str) -> list[tuple[str, set[int], bytes, Iterable[bytes]]]:
    """``(name, the answers it may get, head, body chunks)`` of the request-level attacks."""
    over = MAX_FRAME_BYTES + (1 << 20)
    gz = deflate_bomb(1 << 30, "gzip")  # about 1 MB that inflates to 1 GB
    deflated = deflate_bomb(1 << 30, "deflate")
    frame_type = {"Content-Type": "application/x-edgewatch-frame"}
    parser = {400, 431}  # refused by the HTTP parser

    def head(**headers: str) -> bytes:
        return request_head(
            port, token, {**frame_type, **{k.replace("_", "-"): v for k, v in headers.items()}}
        )

    return [
        ("Content-Length of 100 MB, body never sent", {413}, head(Content_Length=str(100 << 20)), [b"EW"]),
        (f"a real body of {over >> 20} MB", {413}, head(Content_Length=str(over)), zeros(over)),
        ("12 MB chunked, no length", {413}, head(Transfer_Encoding="chunked"), chunked(zeros(12 << 20))),
        (  # read as sent, it is no frame (400); inflated, it is over the cap (413)
            "gzip bomb (1 GB inflated)",
            {400, 413},
            head(Content_Encoding="gzip", Content_Length=str(len(gz))),
            [gz],
        ),
        (
            "deflate bomb (1 GB inflated), chunked",
            {400, 413},
            head(Content_Encoding="deflate", Transfer_Encoding="chunked"),
            chunked(deflated[i : i + 65536] for i in range(0, len(deflated), 65536)),
        ),
        (
            "gzip bomb without a token",
            {401},
            request_head(port, "nope", {"Content-Encoding": "gzip", "Content-Length": str(len(gz))}),
            [gz],
        ),
        (
            "gzip header on garbage",
            {400},
            head(Content_Encoding="gzip", Content_Length="4096"),
            [bytes(range(256)) * 16],
        ),
        (
            "unknown Content-Encoding",
            {400},
            head(Content_Encoding="x-hostile", Content_Length="64"),
            [bytes(64)],
        ),
        ("Content-Length not a number", parser, head(Content_Length="12abc"), [bytes(12)]),
        ("negative Content-Length", parser, head(Content_Length="-1"), [bytes(12)]),
        (
            "Content-Length and chunked together",
            parser,
            head(Content_Length="5", Transfer_Encoding="chunked"),
            chunked([bytes(5)]),
        ),
        (
            "two Content-Lengths",
            parser,
            head(Content_Length="5")[:-2] + b"Content-Length: 7\r\n\r\n",
            [bytes(7)],
        ),
        (
            "chunk size overflowing",
            parser,
            head(Transfer_Encoding="chunked"),
            [b"ffffffffffffffffffff\r\nxx\r\n"],
        ),
        ("100 KB header", parser, head(X_Hostile="a" * 100_000, Content_Length="2"), [b"EW"]),
        ("10,000 headers", parser, request_head(port, token, {f"X-H{i}": "v" for i in range(10_000)}), []),
    ]


# -- frames from Hypothesis ------------------------------------------------------------------------


def as_agent(batch: Batch, agent: str) -> Batch:
    return Batch(
        agent,
        batch.boot_id,
        batch.seq,
        batch.timestamps,
        batch.series,
        batch.values,
        batch.host,
        batch.events,
    )


def fuzz_frames(agent: str, now_ms: int) -> st.SearchStrategy[tuple[str, bytes]]:
    recent = now_ms - 2 * 3_600_000  # timestamps drawn after this stay in the past
    msgpack_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(1 << 63), (1 << 64) - 1)
        | st.floats()
        | st.text(max_size=8)
        | st.binary(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.integers(-2, 40), inner, max_size=6),
        max_leaves=30,
    )

    @st.composite
    def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
        ref, batch = draw(reference_pairs())
        delta = draw(st.booleans())
        ref, batch = as_agent(ref, agent), as_agent(batch, agent)
        frame = bytearray(encode(batch, ref if delta else None))
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
            at = draw(st.integers(0, max(0, len(frame) - 1)))
            if op == "flip" and frame:
                frame[at] ^= 1 << draw(st.integers(0, 7))
            elif op == "cut":
                del frame[at:]
            elif op == "insert":
                frame[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif frame:
                del frame[at]
        return "mutated delta" if delta else "mutated key", bytes(frame)

    @st.composite
    def payload_map(draw: st.DrawFn) -> tuple[str, bytes]:
        batch = draw(batches(agent_id=agent, after=recent))
        header, payload, stream = split(encode(batch))
        if payload:
            key = draw(st.sampled_from(sorted(payload)))
            payload[key] = draw(msgpack_values)
        return "mutated payload map", join(header, payload, stream, compress=draw(st.booleans()))

    @st.composite
    def delta_unknown(draw: st.DrawFn) -> tuple[str, bytes]:
        ref, batch = draw(reference_pairs())
        return "delta, unknown reference", encode(as_agent(batch, agent), as_agent(ref, agent))

    return st.one_of(
        batches(agent_id=agent, after=recent).map(lambda b: ("valid, this agent", encode(b))),
        batches().map(lambda b: ("valid, another agent", encode(b))),
        mutated(),
        payload_map(),
        delta_unknown(),
        st.tuples(
            st.just("random msgpack"), msgpack_values.map(lambda v: join(KEY_HEADER, msgpack.packb(v)))
        ),
        st.tuples(
            st.just("random bytes behind a header"), st.binary(max_size=300).map(lambda b: KEY_HEADER + b)
        ),
        st.tuples(
            st.just("random zstd behind a header"),
            st.binary(max_size=300).map(lambda b: ZSTD_HEADER + zstandard.ZstdCompressor().compress(b)),
        ),
        st.tuples(st.just("random bytes"), st.binary(max_size=300)),
    )


# -- the scenario ----------------------------------------------------------------------------------


PROBE = r"""
import json, sys, threading, time, urllib.request
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
answers, failures = [], 0
while not stop.wait(0.05):
    wall, started = time.time(), time.perf_counter()
    try:
        with urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=30) as r:
            r.read()
    except OSError:
        failures += 1
        continue
    answers.append(((time.perf_counter() - started) * 1000, wall))
answers.sort(reverse=True)
print(json.dumps({"count": len(answers), "failures": failures, "slowest": answers[:5]}))
"""


class Watch(threading.Thread):
    """The aggregator's VmRSS every 20 ms (the kernel's VmHWM keeps the true peak), and a separate
    process that times ``GET /healthz`` every 50 ms, which shows whether an attack stalls the event
    loop for everyone (in its own process, so that this one's work does not slow the timing)."""

    def __init__(self, pid: int, url: str) -> None:
        super().__init__(name="soak8-watch", daemon=True)
        self.pid = pid
        self.peak_rss_kb = 0
        self.timeline: list[tuple[float, str]] = [(time.time(), "start")]  # what is sent from when
        self.stop = threading.Event()
        self.probe = subprocess.Popen(
            [sys.executable, "-c", PROBE, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env_without_proxies(),
        )

    def attack(self, what: str) -> None:
        self.timeline.append((time.time(), what))

    def run(self) -> None:
        while not self.stop.wait(0.02):
            try:
                self.peak_rss_kb = max(self.peak_rss_kb, memory_kb(self.pid)["VmRSS"])
            except (OSError, KeyError):
                return

    def finish(self) -> dict[str, Any]:
        """Stop both; the probe's answer count, failures and slowest answers (with the attack)."""
        self.stop.set()
        self.join(5)
        try:
            out, _ = self.probe.communicate(b"", timeout=40)
            report: dict[str, Any] = json.loads(out)
        except (subprocess.TimeoutExpired, ValueError):
            self.probe.kill()
            self.probe.wait()
            return {"count": 0, "failures": -1, "slowest": []}
        times = [t for t, _ in self.timeline]
        report["slowest"] = [
            [round(ms, 1), self.timeline[max(0, bisect.bisect_right(times, wall) - 1)][1][:100]]
            for ms, wall in report["slowest"]
        ]
        return report


@scenario(
    8,
    "hostile input over HTTP",
    "zstd bombs, hostile msgpack, bodies over the cap (plain, chunked, gzip), broken HTTP and "
    f"10,000 Hypothesis frames: only 4xx (200 for valid frames), never 5xx; the aggregator keeps "
    f"serving; its peak RSS stays under {RSS_BOUND_MB} MB",
)
def run(ctx: Context) -> Result:
    result = Result()
    examples = ctx.scale(10_000, 500)
    agg = AggregatorProcess(ctx.tmp, storage__compact_interval=86400)
    statuses: dict[str, dict[str, int]] = {}
    bad: list[str] = []
    probes: list[bool] = []
    off_target: list[str] = []
    started = time.monotonic()
    watch: Watch | None = None
    alive = False
    log_500 = 0
    timings: dict[str, float] = {}
    try:
        agg.start()
        assert agg.proc is not None
        pid = agg.proc.pid
        idle = memory_kb(pid)
        token = agg.admin("add-agent", "victim")
        api = agg.admin("add-token", "--role", "viewer")
        now_ms = int(time.time() * 1000)
        seq = iter(range(1, 1 << 30))

        def probe() -> None:
            """A valid push of a fresh frame must still be acknowledged."""
            n = next(seq)
            frame = encode(Batch("victim", 1, n, [int(time.time() * 1000)], [Series("probe")], [[float(n)]]))
            try:
                status, body = post(agg.url, frame, token)
            except OSError:
                probes.append(False)
                return
            probes.append(acked(status, body, n))

        def record(kind: str, status: int | None, body: bytes, app_level: bool, what: str) -> None:
            key = "none" if status is None else str(status)
            counts = statuses.setdefault(kind, {})
            counts[key] = counts.get(key, 0) + 1
            if status is None or status >= 500 or (status < 400 and status != 200):
                bad.append(f"{what}: HTTP {key} {body[:120]!r}")
            elif status >= 400 and app_level:
                try:
                    message = json.loads(body).get("error")
                except (ValueError, AttributeError):
                    message = None
                if not isinstance(message, str) or not message:
                    bad.append(f"{what}: HTTP {status} without an error message: {body[:120]!r}")

        watch = Watch(pid, agg.url)
        watch.start()
        probe()
        phase = time.monotonic()
        # 1. frames built to hurt, with the agent's token, without one, with a wrong one
        good = encode(Batch("victim", 1, 0, [now_ms], [Series("x")], [[1.0]]))
        capped = [("valid frame at the caps (2M samples)", frame_at_the_caps("victim", now_ms))]
        for what, body in [*hostile_frames(good), *capped]:
            for kind, credential in (
                ("frames", token),
                ("frames, no token", ""),
                ("frames, bad token", "ewa_x.y"),
            ):
                if kind != "frames" and ("bomb" not in what and "caps" not in what):
                    continue
                watch.attack(f"{kind}: {what}")
                try:
                    status, answer = post(agg.url, body, credential, timeout=30)
                except OSError as exc:
                    status, answer = None, repr(exc).encode()
                record(kind, status, answer, True, f"{kind}: {what}")
        probe()
        timings["frames_s"] = round(time.monotonic() - phase, 1)
        phase = time.monotonic()
        # 2. request-level attacks on raw sockets
        for what, expect, head, chunks in http_attacks(agg.port, token):
            watch.attack(f"http: {what}")
            status, answer, note = exchange(agg.port, head, chunks)
            record("http", status, answer, False, f"{what} ({note})")
            if status not in expect:
                off_target.append(f"{what}: HTTP {status}, expected {sorted(expect)} ({note})")
        probe()
        timings["http_s"] = round(time.monotonic() - phase, 1)
        phase = time.monotonic()
        # 3. Hypothesis frames
        fuzzed = {"count": 0}

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(fuzz_frames("victim", now_ms))
        def fuzz(case: tuple[str, bytes]) -> None:
            kind, body = case
            watch.attack(f"hypothesis {kind}: {len(body)} bytes {body[:24]!r}")
            try:
                status, answer = post(agg.url, body, token, timeout=30)
            except OSError as exc:
                status, answer = None, repr(exc).encode()
            record(f"hypothesis: {kind}", status, answer, True, f"hypothesis {kind} {body[:40]!r}")
            fuzzed["count"] += 1
            if fuzzed["count"] % 1000 == 0:
                probe()

        fuzz()
        probe()
        timings["hypothesis_s"] = round(time.monotonic() - phase, 1)
        health = agg.get("/healthz", api)
        metrics = agg.get("/metrics", api)
        peak = memory_kb(pid)
        alive = agg.proc is not None and agg.proc.poll() is None
    finally:
        report = watch.finish() if watch is not None else {"count": 0, "failures": -1, "slowest": []}
        code = agg.stop()
    log_500 = agg.log.read_text(errors="replace").count("handler failed")
    total = sum(sum(c.values()) for c in statuses.values())
    by_status: dict[str, int] = {}
    for counts in statuses.values():
        for status, n in counts.items():
            by_status[status] = by_status.get(status, 0) + n
    rejected = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("edgewatch_ingest_rejected_total")
    )
    result.figures.update(
        requests=total,
        hypothesis_frames=fuzzed["count"],
        by_status=by_status,
        answered_5xx=sum(n for s, n in by_status.items() if s.startswith("5")),
        unanswered=by_status.get("none", 0),
        stored_200=by_status.get("200", 0),
        rejected_metric=int(rejected),
        probes_ok=f"{sum(probes)}/{len(probes)}",
        rss_idle_mb=round(idle["VmRSS"] / 1024, 1),
        rss_peak_sampled_mb=round(watch.peak_rss_kb / 1024, 1) if watch else None,
        rss_hwm_mb=round(peak["VmHWM"] / 1024, 1),
        rss_end_mb=round(peak["VmRSS"] / 1024, 1),
        rss_bound_mb=RSS_BOUND_MB,
        healthz_checks=report["count"],
        healthz_failures=report["failures"],
        healthz_max_ms=report["slowest"][0][0] if report["slowest"] else None,
        healthz_slowest=report["slowest"],
        seconds_attacking=round(time.monotonic() - started, 1),
        **timings,
        statuses=statuses,
    )
    result.check(not bad, f"{len(bad)} answers were not 4xx with an error (or 200), e.g. {bad[:4]}")
    result.check(not off_target, f"request-level attacks got other answers than planned: {off_target}")
    result.check(fuzzed["count"] >= examples * 0.9, f"Hypothesis drew {fuzzed['count']} of {examples} frames")
    result.check(all(probes) and len(probes) >= 4, f"valid pushes between attacks: {probes}")
    result.check(health.get("ok") is True, f"/healthz after the attacks: {health}")
    result.check(alive, "the aggregator process died")
    slowest = report["slowest"][0][0] if report["slowest"] else 0.0
    result.check(
        report["count"] >= 20 and report["failures"] == 0 and slowest < STALL_BOUND_MS,
        f"GET /healthz during the attacks: {report['count']} answers, {report['failures']} failures, "
        f"the slowest {report['slowest'][:2]} ms (bound {STALL_BOUND_MS} ms): an attack stalls everyone",
    )
    result.check(log_500 == 0, f"the aggregator logged {log_500} handler failures (500s)")
    result.check(
        peak["VmHWM"] < RSS_BOUND_MB * 1024,
        f"the aggregator's peak RSS was {peak['VmHWM'] / 1024:.0f} MB, over {RSS_BOUND_MB} MB",
    )
    result.check(
        by_status.get("200", 0) > 0 and by_status.get("400", 0) > 0 and by_status.get("413", 0) > 0,
        f"the attacks did not reach every answer they aim at: {by_status}",
    )
    result.check(code == 0, f"the aggregator exited with {code} on SIGTERM")
    return result
