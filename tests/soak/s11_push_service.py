"""Scenario 11: a Web Push service that answers 404, 410 and 429.

A real aggregator with one rule (``node_load1`` over 5 is critical, sent at once) and its implicit
Web Push channel; a Web Push service on 127.0.0.1 (``notify_services.PushService``: it checks the
VAPID JWT and decrypts each RFC 8291 message) with four subscribed browsers:

- ``gone404`` and ``gone410``: the service answers 404 and 410 (the subscription expired). The
  aggregator must delete each subscription at the first answer and never send to it again.
- ``busy``: the service answers 429 with ``Retry-After`` (3 s; in the full form 6 s, then 4 s).
  The aggregator must wait at least that long, retry that subscription alone, and get it through.
- ``healthy``: gets every message exactly once; the retries for ``busy`` are not sent to it.

A frame with a load of 7.5 fires the alert; once ``busy`` got it, a load of 0.1 resolves it, and
the resolution goes to the two subscriptions left, and to none of the deleted ones.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sqlite3
import time
import tomllib
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from edgewatch.aggregator.ruledefaults import BUILTIN_TOML
from edgewatch.protocol import Batch, Series, encode
from tests.aggregator.notify_services import PushService, Subscriber
from tests.aggregator.procs import AggregatorProcess
from tests.aggregator.test_notifyapi import RULE
from tests.soak.core import Context, Result, scenario
from tests.soak.faultkit import admin_cli, call

PROMISE = (
    "A push subscription the Web Push service answers 404 or 410 for is deleted at once and never"
    " sent to again; a 429 is retried for that subscription alone, no sooner than its Retry-After,"
    " until it is delivered; the other subscriptions get each message exactly once."
)
HOST = "soak-push"
LOAD = Series("node_load1", precision=2)
TICK = 0.5  # alerts.interval: how often the notification pipeline looks at due retries
LATE = TICK + 1.5  # how late a retry may come after its due time (a tick, encryption, a thread hop)


@dataclass
class Hit:
    at: float
    subscriber: str
    status: int


class ScriptedPushService(PushService):
    """`PushService` that answers each subscriber from a script first, and logs every request."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[Hit] = []
        self.script: dict[str, list[tuple[int, str | None]]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        queued = self.script.get(sid)
        if queued:
            status, retry_after = queued.pop(0)
            await request.read()
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            response = web.Response(status=status, text="scripted answer", headers=headers)
        else:
            response = await super().handle(request)
        self.hits.append(Hit(time.monotonic(), sid, response.status))
        return response

    def of(self, sub: Subscriber) -> list[Hit]:
        return [h for h in self.hits if h.subscriber == sub.id]


def rules() -> str:
    """The built-in rules off, and the notify tests' ``load_now`` rule (fires above a load of 1)."""
    builtins = [r["name"] for r in tomllib.loads(BUILTIN_TOML)["rule"]]
    return f"[defaults]\ndisabled = {json.dumps(builtins)}\n{RULE}"


def frame(seq: int, value: float, boot: int) -> bytes:
    now = int(time.time() * 1000)
    return encode(Batch(HOST, boot, seq, [now], [LOAD], [[value]], {"hostname": HOST, "os": "Linux"}))


@scenario(11, "web push service 404, 410, 429", PROMISE)
def run(ctx: Context) -> Result:
    return asyncio.run(_run(ctx))


async def _run(ctx: Context) -> Result:
    result = Result()
    waits = ctx.scale(["6", "4"], ["3"])
    rules_file = ctx.tmp / "rules.toml"
    rules_file.write_text(rules())
    agg = AggregatorProcess(
        ctx.tmp,
        alerts__rules_file=str(rules_file),
        alerts__interval=f"{TICK}s",
        alerts__push_allow_loopback_http=True,
    )
    with agg.config.open("a") as f:
        f.write('\n[notify]\ngroup_interval = "1s"\nretry_initial = "1s"\n')
    boot = int.from_bytes(os.urandom(8), "little")
    left: list[str] = []
    history: list[dict[str, Any]] = []
    async with ScriptedPushService() as push:
        gone404, gone410, busy, healthy = (push.subscriber() for _ in range(4))
        names = {gone404.id: "gone404", gone410.id: "gone410", busy.id: "busy", healthy.id: "healthy"}
        push.script = {
            gone404.id: [(404, None)] * 50,
            gone410.id: [(410, None)] * 50,
            busy.id: [(429, w) for w in waits],
        }
        try:
            await asyncio.to_thread(agg.start)
            viewer = await asyncio.to_thread(admin_cli, agg, "add-token", "--role", "viewer")
            token = await asyncio.to_thread(admin_cli, agg, "add-agent", HOST)

            async def api(method: str, path: str, body: Any = None, bearer: str = viewer) -> Any:
                return await asyncio.to_thread(call, agg.url, method, path, body, token=bearer)

            push.expect_key = (await api("GET", "/api/v1/push/key")).json()["public_key"]
            for sub in (gone404, gone410, busy, healthy):
                reply = await api("POST", "/api/v1/push/subscriptions", sub.subscription())
                result.check(reply.status == 201, f"subscribing {names[sub.id]}: {reply.status}")

            async def load(seq: int, value: float) -> None:
                headers = {"Content-Type": "application/x-edgewatch-frame"}
                reply = await asyncio.to_thread(
                    call,
                    agg.url,
                    "POST",
                    "/api/v1/push",
                    frame(seq, value, boot),
                    headers=headers,
                    token=token,
                )
                if reply.status != 200:
                    raise RuntimeError(
                        f"the push of seq {seq} was answered {reply.status}: {reply.body[:200]!r}"
                    )

            await load(1, 7.5)
            budget = sum(float(w) for w in waits) + 20
            await until(lambda: push.for_subscriber(busy), budget, "the firing to reach the busy subscriber")
            await until(
                lambda: push.for_subscriber(healthy), 10, "the firing to reach the healthy subscriber"
            )
            await load(2, 0.1)
            await until(
                lambda: len(push.for_subscriber(busy)) >= 2 and len(push.for_subscriber(healthy)) >= 2,
                20,
                "the resolution to reach both subscriptions left",
            )
            await asyncio.sleep(2 * TICK + 1)  # anything more that would come (a repeat, a stray retry)
            left = await asyncio.to_thread(endpoints, agg)
            reply = await api("GET", "/api/v1/alerts/history?limit=1000")
            history = reply.json().get("history", []) if reply.status == 200 else []
        finally:
            await asyncio.to_thread(agg.stop)

    # gone: one answer each, then deleted and never contacted again
    for sub, code in ((gone404, 404), (gone410, 410)):
        hits = push.of(sub)
        result.check(
            [h.status for h in hits] == [code],
            f"{names[sub.id]}: the push service was asked {len(hits)} times ({[h.status for h in hits]});"
            f" after a {code} the subscription must be dropped",
        )
        result.check(
            sub.endpoint not in left, f"{names[sub.id]}: the subscription is still stored after {code}"
        )
    result.check(
        sorted(left) == sorted([busy.endpoint, healthy.endpoint]),
        f"stored subscriptions: {len(left)}, expected the busy and healthy ones",
    )
    # busy: each 429 waited out, then delivered (firing, then the resolution)
    hits = push.of(busy)
    statuses = [h.status for h in hits]
    gaps = [b.at - a.at for a, b in itertools.pairwise(hits[: len(waits) + 1])]
    result.figures["retry_after_s"] = [float(w) for w in waits]
    result.figures["retry_gaps_s"] = [round(g, 2) for g in gaps]
    result.check(
        statuses[: len(waits) + 1] == [429] * len(waits) + [201],
        f"busy: the push service answered {statuses}, expected {len(waits)} × 429 and then a delivery",
    )
    result.check(
        len(gaps) == len(waits) and all(float(w) - 0.1 <= g <= float(w) + LATE for g, w in zip(gaps, waits)),
        f"busy: retries came after {result.figures['retry_gaps_s']} s; Retry-After said {waits}",
    )
    payloads = {names[s.id]: [p.get("state") for p in push.for_subscriber(s)] for s in (busy, healthy)}
    result.figures["delivered"] = payloads
    for name, states in payloads.items():
        result.check(
            states == ["firing", "resolved"], f"{name} got {states}, expected firing then resolved once each"
        )
    result.check(not push.errors, f"the push service refused messages: {push.errors[:3]}")
    kinds: dict[str, int] = {}
    for line in history:
        kinds[line.get("kind", "")] = kinds.get(line.get("kind", ""), 0) + 1
    result.figures["history"] = kinds
    result.check(
        kinds.get("retry_scheduled", 0) >= len(waits),
        f"the history shows {kinds.get('retry_scheduled', 0)} retries scheduled, expected {len(waits)}",
    )
    result.figures["requests"] = {names[s.id]: len(push.of(s)) for s in (gone404, gone410, busy, healthy)}
    return result


async def until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if found := check():
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


def endpoints(agg: AggregatorProcess) -> list[str]:
    conn = sqlite3.connect(f"file:{agg.data_dir / 'edgewatch.db'}?mode=ro", uri=True, timeout=30)
    try:
        return [row[0] for row in conn.execute("SELECT endpoint FROM push_subscriptions")]
    finally:
        conn.close()
