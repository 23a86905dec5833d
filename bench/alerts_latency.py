"""Latency part of bench/alerts.py: from a real agent's sample to the webhook and the Web Push request.

Real processes on 127.0.0.1: an ``edgewatch aggregator`` (temporary data dir; one rule with ``for`` =
0, a critical threshold and a lower ``clear``; a signed ``[[channel]]`` webhook; the implicit Web
Push channel ``push`` with ``alerts.push_allow_loopback_http``; default ``[notify]``, so critical
alerts have no group wait) and an ``edgewatch agent`` with its default settings (10 s interval, one
sample a frame) whose textfile collector reads a ``.prom`` file this benchmark rewrites. The webhook
receiver (checks the HMAC signature) and the push service (checks VAPID, decrypts the RFC 8291 body,
with a subscription registered through ``POST /api/v1/push/subscriptions``) are the tests' own
(tests/aggregator/notify_services.py), served by an event loop in a thread of this process.

A round: the file gets a value above the critical threshold; the agent's next tick reads it; the
aggregator stores the frame, evaluates the rule, fires, and both channels send. Once both arrived,
the file gets a value below ``clear``, and the round ends when both resolutions arrived. The
latency is from the sample's timestamp (the agent's tick, carried in the frame and read back from
the aggregator's raw data by the value written) to the moment each request reached its receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aggregator_common import (
    HOST,
    ROOT,
    Aggregator,
    Processes,
    edgewatch_bin,
    emit,
    free_port,
    http,
    logger,
    pct,
    rnd,
    rss_mb,
)
from aiohttp import web

sys.path.append(str(ROOT))  # the tests' push service and webhook receiver
from tests.aggregator.notify_services import PushService, WebhookReceiver

log = logger("alerts")
AGENT = "bench-alerts-host"
METRIC = "bench_alert_value"
RULE = "bench_threshold"
CRITICAL, CLEAR = 90, 50
BUDGET_P95_MS = 2000.0
AGENT_INTERVAL_S = 10.0  # the agent's default; the config below leaves it alone
WAIT_S = 3 * AGENT_INTERVAL_S + 30  # for one notification before the round counts it as missing
Arrival = tuple[float, Any]  # (time.time() when the request reached the receiver, its JSON)


class TimedPush(PushService):
    """The tests' push service, noting when each accepted push request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[Arrival] = []

    async def handle(self, request: web.Request) -> web.Response:
        at = time.time()
        response = await super().handle(request)
        if response.status == 201:
            self.arrivals.append((at, self.received[-1].payload))
        return response


class TimedHooks(WebhookReceiver):
    """The tests' webhook receiver, noting when each correctly signed request arrived."""

    def __init__(self, secret: str) -> None:
        super().__init__(secret)
        self.arrivals: list[Arrival] = []

    async def handle(self, request: web.Request) -> web.Response:
        at = time.time()
        response = await super().handle(request)
        if response.status == 200:
            self.arrivals.append((at, self.received[-1].body))
        return response


class Services:
    """Both receivers on free 127.0.0.1 ports, served by an event loop in a thread, while open."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="receivers", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the main thread by __enter__
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with TimedPush() as push, TimedHooks(self.secret) as hooks:
            self.push, self.hooks = push, hooks
            self.ready.set()
            await self._stop.wait()

    def __enter__(self) -> Services:
        self._thread.start()
        if not self.ready.wait(30) or self.error is not None:
            self.__exit__()
            raise RuntimeError(f"the push service and webhook receiver did not start: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def admin(data_dir: Path, *args: str) -> str:
    """The last line of ``edgewatch admin`` (the secret a verb makes)."""
    done = subprocess.run(
        [edgewatch_bin(), "admin", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"edgewatch admin {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def write_value(path: Path, value: int) -> None:
    """The .prom file, replaced in one rename, as a cron job does it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"# TYPE {METRIC} gauge\n{METRIC} {value}\n")
    os.replace(tmp, path)


def toml_str(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid TOML basic string


def write_files(work: Path, port: int, hook_url: str, secret: str) -> tuple[Path, Path]:
    rules = work / "rules.toml"
    rules.write_text(
        "[[rule]]\n"
        f'name = "{RULE}"\n'
        f'metric = "{METRIC}"\n'
        f'hosts = ["{AGENT}"]\n'
        f"critical = {CRITICAL}\n"
        f"clear = {CLEAR}\n"
        "for = 0\n"
        f'summary = "{METRIC}={{value:g}};"\n'
    )
    config = work / "aggregator.toml"
    config.write_text(
        f"listen = {toml_str(f'{HOST}:{port}')}\n"
        f"data_dir = {toml_str(str(work / 'data'))}\n"
        'log_level = "info"\n'
        "[alerts]\n"
        f"rules_file = {toml_str(str(rules))}\n"
        "push_allow_loopback_http = true\n"
        "[[channel]]\n"
        'name = "hook"\n'
        'type = "webhook"\n'
        f"url = {toml_str(hook_url)}\n"
        f"secret = {toml_str(secret)}\n"
    )
    return config, rules


def write_agent_config(work: Path, port: int, token: str, textfiles: Path) -> Path:
    """The agent's settings: where to push, who it is, where its files are; everything else default."""
    config = work / "agent.toml"
    config.write_text(
        f"aggregator = {toml_str(f'http://{HOST}:{port}')}\n"
        f"token = {toml_str(token)}\n"
        f"agent_id = {toml_str(AGENT)}\n"
        f"state_dir = {toml_str(str(work / 'agent-state'))}\n"
        "[textfile]\n"
        f"directory = {toml_str(str(textfiles))}\n"
    )
    return config


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def call(self, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        status, raw = http(self.url + path, data=data, headers=headers, timeout=30)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def samples(self, since_ms: int) -> list[tuple[int, float]]:
        """(timestamp ms, value) of the raw samples of METRIC from ``since_ms`` on, as stored."""
        query = urlencode(
            {"host": AGENT, "name": METRIC, "start": since_ms, "end": "now", "tier": "raw", "step": "1s"}
        )
        status, body = self.call(f"/api/v1/query?{query}")
        if status == 404:
            return []
        if status != 200:
            raise RuntimeError(f"/api/v1/query answered {status}: {body}")
        points = body["series"][0]["points"] if body["series"] else []
        return [(int(p[0]), float(p[2])) for p in points if p[4]]


def wait_for(
    arrivals: list[Arrival], start: int, match: Callable[[Any], Any], timeout: float
) -> tuple[int, Arrival | None]:
    """The first arrival from index ``start`` on that ``match`` accepts (None after ``timeout``);
    also answers the index to look from next time."""
    deadline = time.monotonic() + timeout
    while True:
        for i in range(start, len(arrivals)):
            if match(arrivals[i][1]):
                return i + 1, arrivals[i]
        if time.monotonic() >= deadline:
            return len(arrivals), None
        time.sleep(0.005)


def hook_alert(state: str, value: int) -> Callable[[Any], Any]:
    """The webhook body's entry for our rule in ``state`` with ``value`` (the body may hold a group)."""

    def match(body: Any) -> Any:
        alerts = body.get("alerts", []) if isinstance(body, dict) else []
        return next(
            (
                a
                for a in alerts
                if a.get("rule") == RULE and a.get("state") == state and a.get("value") == value
            ),
            None,
        )

    return match


def push_message(state: str, value: int) -> Callable[[Any], Any]:
    marker = f"{METRIC}={value};"

    def match(payload: Any) -> Any:
        text = f"{payload.get('title', '')}\n{payload.get('body', '')}"
        return payload.get("state") == state and marker in text

    return match


def sample_time(api: Api, value: int, after_ms: int, timeout: float = 10.0) -> int | None:
    """The timestamp of the first stored sample with ``value`` after ``after_ms``: the agent's tick."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [t for t, v in api.samples(after_ms - 60_000) if t > after_ms and v == value]
        if found:
            return min(found)
        time.sleep(0.2)
    return None


def wait_first_frame(
    api: Api, agent: subprocess.Popen[bytes], agent_log: Path, agg: Aggregator, timeout: float
) -> int:
    """The timestamp of the agent's first sample of METRIC, once the aggregator holds it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise RuntimeError(f"the agent exited with {agent.returncode}: {tail(agent_log)}")
        if agg.proc.poll() is not None:
            raise RuntimeError(f"the aggregator exited: {agg.log_tail()}")
        found = api.samples(int(time.time() * 1000) - 600_000)
        if found:
            return found[-1][0]
        time.sleep(0.5)
    raise RuntimeError(
        f"no sample of {METRIC} arrived within {timeout:g} s; the agent's log: {tail(agent_log)}"
    )


def tail(path: Path, lines: int = 10) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


class Rounds:
    """The rounds played so far: per channel and transition, the latencies (ms) from the sample to
    the arrival (None: missing) and the part until the aggregator took the frame in."""

    def __init__(self, api: Api, svc: Services, prom: Path, last_sample_ms: int) -> None:
        self.api, self.svc, self.prom = api, svc, prom
        self.last = last_sample_ms  # the newest sample seen: the next value is looked for after it
        self.cursors = {"webhook": 0, "push": 0}
        self.total: dict[tuple[str, str], list[float | None]] = {}
        self.to_aggregator: dict[tuple[str, str], list[float]] = {}

    def play(self, k: int) -> None:
        """Fire and resolve once."""
        for transition, value in (("firing", 100 + k), ("resolved", 10 + k % 40)):
            write_value(self.prom, value)
            hook = self._wait("webhook", self.svc.hooks.arrivals, hook_alert(transition, value))
            push = self._wait("push", self.svc.push.arrivals, push_message(transition, value))
            sample_ms = sample_time(self.api, value, self.last)
            if sample_ms is None:
                log(f"round {k + 1}: no stored sample of {value} after {self.last}; counted as missing")
            at = hook_alert(transition, value)(hook[1]).get("at") if hook else None
            self._add("webhook", transition, sample_ms, hook, at)
            self._add("push", transition, sample_ms, push, push[1].get("at") if push else None)
            for channel, got in (("webhook", hook), ("push", push)):
                if got is None:
                    log(f"round {k + 1}: the {transition} {channel} request is missing after {WAIT_S:g} s")
            self.last = sample_ms or self.last

    def _wait(self, channel: str, arrivals: list[Arrival], match: Callable[[Any], Any]) -> Arrival | None:
        self.cursors[channel], got = wait_for(arrivals, self.cursors[channel], match, WAIT_S)
        return got

    def _add(
        self, channel: str, transition: str, sample_ms: int | None, got: Arrival | None, at: Any
    ) -> None:
        key = (channel, transition)
        if got is None or sample_ms is None:
            self.total.setdefault(key, []).append(None)
            return
        self.total.setdefault(key, []).append(got[0] * 1000 - sample_ms)
        if isinstance(at, int):  # the transition's time: when the aggregator took the frame in
            self.to_aggregator.setdefault(key, []).append(float(at - sample_ms))

    def latest(self) -> str:
        return ", ".join(
            f"{c} {'missing' if v[-1] is None else f'{v[-1]:.0f} ms'}"
            for (c, t), v in sorted(self.total.items())
            if t == "firing"
        )


def figures(
    played: Rounds, rounds: int, agent_rss: float | None, agg_rss: float | None
) -> list[dict[str, Any]]:
    out = []
    for (channel, transition), values in sorted(
        played.total.items(), key=lambda kv: (kv[0][1] != "firing", kv[0])
    ):
        got = [v for v in values if v is not None]
        to_agg = played.to_aggregator.get((channel, transition), [])
        p95 = pct(got, 0.95)
        line: dict[str, Any] = {
            "bench": "alerts",
            "what": "notify-latency",
            "channel": channel,
            "transition": transition,
            "rounds": rounds,
            "received": len(got),
            "missing": len(values) - len(got),
            "p50_ms": rnd(pct(got, 0.5), 1),
            "p95_ms": rnd(p95, 1),
            "max_ms": rnd(max(got), 1) if got else None,
            "min_ms": rnd(min(got), 1) if got else None,
            "to_aggregator_p50_ms": rnd(pct(to_agg, 0.5), 1),
            "to_aggregator_max_ms": rnd(max(to_agg), 1) if to_agg else None,
            "latencies_ms": [None if v is None else round(v) for v in values],
        }
        if transition == "firing":
            line["budget_p95_ms"] = BUDGET_P95_MS
            line["within_budget"] = (
                bool(got) and len(got) == len(values) and p95 is not None and p95 <= BUDGET_P95_MS
            )
        line.update(
            {
                "rule": {"for_s": 0, "critical": CRITICAL, "clear": CLEAR, "reducer": "last"},
                "agent": {
                    "interval_s": AGENT_INTERVAL_S,
                    "batch_samples": 1,
                    "collectors": "defaults + textfile",
                },
                "channel_checks": {
                    "webhook_bad_signatures": len(played.svc.hooks.rejected),
                    "push_rejected": len(played.svc.push.errors),
                },
                "agent_rss_mb": rnd(agent_rss, 1),
                "aggregator_rss_mb": rnd(agg_rss, 1),
                "note": "from the sample's timestamp (the agent's tick, carried in the frame) to the request "
                "reaching the receiver; to_aggregator is the part until the aggregator took the frame in "
                "(the transition's time: the agent's collection, its push and the commit). The wait from "
                "writing the .prom file to the agent's next tick (up to its 10 s interval) is the agent's "
                "sampling delay and is not counted. Real processes on 127.0.0.1: agent, aggregator; the "
                "receivers run in the benchmark's process",
            }
        )
        out.append(line)
    return out


def run(tmp: Path, procs: Processes, rounds: int) -> list[dict[str, Any]]:
    work = tmp / "latency"
    textfiles = work / "textfile"
    textfiles.mkdir(parents=True)
    prom = textfiles / "bench.prom"
    write_value(prom, 10)  # below the threshold from the first sample on
    secret = secrets.token_hex(16)
    port = free_port()
    with Services(secret) as svc:
        config, _ = write_files(work, port, svc.hooks.url("/edgewatch"), secret)
        log(f"latency: starting the aggregator on {HOST}:{port}")
        agg = Aggregator(procs, config, work / "aggregator.log", port)
        agent: subprocess.Popen[bytes] | None = None
        agent_log_path = work / "agent.log"
        agent_log = agent_log_path.open("ab")
        try:
            data_dir = work / "data"
            api = Api(agg.url, admin(data_dir, "add-token", "--role", "viewer"))
            status, key = api.call("/api/v1/push/key")
            if status != 200 or "push" not in key.get("channels", []):
                raise RuntimeError(f"/api/v1/push/key answered {status}: {key}")
            svc.push.expect_key = key["public_key"]
            subscriber = svc.push.subscriber()
            status, answer = api.call("/api/v1/push/subscriptions", subscriber.subscription())
            if status != 201:
                raise RuntimeError(f"registering the push subscription answered {status}: {answer}")
            agent_config = write_agent_config(work, port, admin(data_dir, "add-agent", AGENT), textfiles)
            agent = procs.start(
                [edgewatch_bin(), "agent", "--config", str(agent_config)],
                stdout=subprocess.DEVNULL,
                stderr=agent_log,
            )
            log("latency: waiting for the agent's first frame (its ticks fall on multiples of 10 s)")
            last = wait_first_frame(api, agent, agent_log_path, agg, 3 * AGENT_INTERVAL_S + 30)
            played = Rounds(api, svc, prom, last)
            for k in range(rounds):
                played.play(k)
                log(f"latency: round {k + 1}/{rounds}: firing {played.latest()}")
            agent_rss, agg_rss = _rss(agent.pid), _rss(agg.pid)
        finally:
            if agent is not None:
                procs.stop(agent)
            agent_log.close()
            agg.stop()
    lines = figures(played, rounds, agent_rss, agg_rss)
    for line in lines:
        emit(line)
    return lines


def _rss(pid: int) -> float | None:
    try:
        return rss_mb(pid)
    except OSError:
        return None
