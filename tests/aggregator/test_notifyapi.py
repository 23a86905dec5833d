"""Notifications through the app: a pushed frame fires an alert that reaches a signed webhook and a
real (local) push service, silences mute, channels are listed without secrets and tested, a gone
push subscription is deleted, and a restart sends nothing twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from edgewatch.aggregator.config import load as load_config
from edgewatch.aggregator.server import make_app
from edgewatch.protocol import Series
from edgewatch.protocol.settings import ConfigError

from .conftest import T0, Harness, batch, harness
from .notify_services import PushService, WebhookReceiver

RULE = """
[[rule]]
name = "load_now"
metric = "node_load1"
reducer = "last"
op = ">"
warning = 1.0
critical = 5.0
clear = 0.5
summary = "load of {host} is {value}"
"""
LOAD = (Series("node_load1", precision=2),)
SECRET = "s3cret-hook-key-that-must-not-leak"


def config(hook: WebhookReceiver) -> str:
    return f"""
[alerts]
push_allow_loopback_http = true

[[channel]]
name = "ops"
type = "webhook"
url = "{hook.url("/hook")}"
secret = "{SECRET}"
"""


async def until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Wait until ``check()`` is truthy (the pipeline ticks every second and at once on a firing)."""
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the notification")
        await asyncio.sleep(0.05)


async def post(h: Harness, path: str, token: str, body: Any, method: str = "POST") -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with h.client.request(method, path, json=body, headers=headers) as r:
        return r.status, await r.json()


async def load(h: Harness, host: str, seq: int, value: float, at: int) -> None:
    h.clock.ms = max(h.clock.ms, at)
    b = batch(host, seq, [at], series=LOAD, value=lambda k, ts: value)
    assert (await h.push(b))[0] == 200


def test_alerts_reach_webhook_and_push_silences_mute_and_restarts_send_nothing_twice(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULE)

    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as hook, PushService() as push:
            phone = push.subscriber()
            settings: dict[str, Any] = {"alerts__rules_file": str(rules), "toml": config(hook)}
            async with harness(tmp_path, now_ms=T0 + 10_000, **settings) as h:
                for name in ("web-1", "web-2"):
                    await h.add_agent(name)
                viewer, operator, admin = [await h.api_token(r) for r in ("viewer", "operator", "admin")]
                # this browser subscribes with the aggregator's VAPID key
                status, key = await h.get("/api/v1/push/key", viewer)
                assert status == 200
                assert key["channels"] == ["push"]
                push.expect_key = key["public_key"]
                assert (await post(h, "/api/v1/push/subscriptions", viewer, phone.subscription()))[0] == 201
                assert (await post(h, "/api/v1/push/subscriptions", viewer, phone.subscription()))[0] == 200
                status, body = await post(h, "/api/v1/push/subscriptions", viewer, {"endpoint": "x"})
                assert status == 400
                assert "endpoint" in body["error"] or "keys" in body["error"]

                # a critical value: both channels get it at once (group_wait 0 for critical)
                await load(h, "web-1", 1, 7.5, T0 + 10_000)
                await until(lambda: hook.received and push.received)
                [message] = hook.received
                assert message.signature_ok is True
                assert message.body["alerts"][0]["host"] == "web-1"
                assert "load of web-1" in json.dumps(message.body)
                [payload] = push.for_subscriber(phone)
                assert "web-1" in json.dumps(payload)
                assert push.errors == []
                fp = message.body["alerts"][0]["key"]
                assert fp in message.body["alerts"][0]["url"]  # it opens the alert in the web UI
                await until(lambda: len(h.sql("SELECT 1 FROM alert_log WHERE kind = 'notified'")) >= 2)
                status, body = await h.get("/api/v1/alerts/history", viewer, fingerprint=fp, kind="notified")
                assert sorted(e["detail"]["channel"] for e in body["history"]) == ["ops", "push"]

                # silences: the operator mutes web-2; the viewer may not; a bad matcher is a 400
                status, body = await post(h, "/api/v1/silences", viewer, {"matchers": ["host=web-2"]})
                assert status == 403
                status, body = await post(
                    h, "/api/v1/silences", operator, {"matchers": ["just words"], "duration": "1h"}
                )
                assert status == 400
                assert "matcher" in body["error"]
                status, body = await post(h, "/api/v1/silences", operator, {"matchers": ["host=web-2"]})
                assert status == 400
                assert "duration" in body["error"]
                status, body = await post(
                    h,
                    "/api/v1/silences",
                    operator,
                    {"matchers": ["host=web-2"], "duration": "1h", "comment": "maintenance"},
                )
                assert status == 201
                silence = body["silence"]
                assert (silence["state"], silence["comment"]) == ("active", "maintenance")
                assert silence["created_by"].startswith("token:")
                await load(h, "web-2", 1, 9.0, T0 + 10_000)
                await until(
                    lambda: h.sql("SELECT 1 FROM alert_log WHERE kind = 'silenced' AND host = 'web-2'")
                )
                await asyncio.sleep(1.5)  # a tick or two: nothing goes out for web-2
                assert len(hook.received) == 1
                status, body = await h.get("/api/v1/silences", viewer)
                assert [s["id"] for s in body["silences"]] == [silence["id"]]
                # ending the silence lets the still-firing alert through
                status, body = await post(h, f"/api/v1/silences/{silence['id']}", operator, None, "DELETE")
                assert status == 200
                assert body["silence"]["state"] == "expired"
                status, body = await post(h, "/api/v1/silences/nope", operator, None, "DELETE")
                assert status == 404
                await until(lambda: len(hook.received) == 2)
                assert hook.received[1].body["alerts"][0]["host"] == "web-2"

                # channels: admins only, no secret anywhere; the test action reaches the receiver
                assert (await h.get("/api/v1/channels", operator))[0] == 403
                status, body = await h.get("/api/v1/channels", admin)
                assert status == 200
                assert [c["name"] for c in body["channels"]] == ["ops", "push"]
                assert SECRET not in json.dumps(body)
                status, body = await post(h, "/api/v1/channels/ops/test", admin, None)
                assert (status, body["ok"]) == (200, True)
                assert hook.received[-1].body["alerts"][0]["rule"] == "test"
                assert (await post(h, "/api/v1/channels/nope/test", admin, None))[0] == 404
                assert (await post(h, "/api/v1/channels/ops/test", operator, None))[0] == 403

                # the push service says the subscription is gone: it is deleted
                push.fail(410, subscriber=phone)
                status, body = await post(h, "/api/v1/channels/push/test", admin, None)
                assert body["ok"] is False
                await load(h, "web-1", 2, 0.1, T0 + 20_000)  # resolves: sent to both channels
                await until(lambda: not h.sql("SELECT 1 FROM push_subscriptions"))
                await until(lambda: len(hook.received) == 4)
                assert hook.received[-1].body["alerts"][0]["state"] == "resolved"
                status, text = await h.get("/metrics", viewer)
                assert 'edgewatch_notification_sends_total{channel="ops",outcome="ok"}' in text
                assert 'edgewatch_notification_steps_total{channel="",kind="silenced"} 1' in text
                evaluations = next(
                    x for x in text.splitlines() if x.startswith("edgewatch_rule_evaluations_total")
                )
                assert float(evaluations.split()[1]) >= 3
                assert 'edgewatch_alerts{state="firing"} 1' in text  # web-2
                audit = [r[0] for r in h.sql("SELECT action FROM audit")]
                for action in ("push-subscribe", "add-silence", "expire-silence", "test-channel"):
                    assert action in audit
                tokens = dict(h.tokens)
            sent = len(hook.received)
            # a restart: web-2 still fires; the same value again notifies nobody
            async with harness(tmp_path, now_ms=T0 + 30_000, **settings) as h:
                h.tokens.update(tokens)
                await load(h, "web-2", 2, 9.0, T0 + 30_000)
                await asyncio.sleep(2.5)
                assert len(hook.received) == sent
                _, body = await h.get("/api/v1/alerts", await h.api_token("viewer"))
                assert [a["host"] for a in body["alerts"] if a["rule"] == "load_now"] == ["web-2"]

    asyncio.run(scenario())


def test_a_bad_channel_table_stops_the_start_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "aggregator.toml"
    path.write_text('[[channel]]\nname = "ops"\ntype = "webhook"\nurl = 5\n')
    config = load_config(path, overrides={"data_dir": str(tmp_path / "data")}, environ={})

    async def scenario() -> None:
        runner = web.AppRunner(make_app(config, maintenance=False))
        with pytest.raises(ConfigError, match=r"channel 'ops': url: must be a string"):
            await runner.setup()
        await runner.app.cleanup()  # what the process does on the way out: the database closes

    asyncio.run(scenario())
