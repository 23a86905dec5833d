"""Notification channels against real HTTP services on 127.0.0.1: Web Push, webhooks, Apprise.

The push service checks the VAPID JWT and decrypts the RFC 8291 payload itself (see
``notify_services``), so a passing test means a real browser's push service would accept the message.
"""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.aggregator.notify import base
from edgewatch.aggregator.notify.apprise_channel import AppriseChannel
from edgewatch.aggregator.notify.base import Delivery, Level, Notification, State
from edgewatch.aggregator.notify.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    sign,
    verify,
)
from edgewatch.aggregator.notify.webpush import (
    MAX_PAYLOAD,
    VAPID_KEY_FILE,
    VAPID_PUBLIC_FILE,
    Subscription,
    Vapid,
    WebPushChannel,
    b64url_decode,
    load_or_create_vapid,
    parse_subscription,
    payload,
)

from .notify_services import PushService, Subscriber, WebhookReceiver, b64e, closed_port

T = 1_764_000_000_000
SUBJECT = "mailto:ops@example.com"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def note(i: int = 0, **kw: Any) -> Notification:
    fields: dict[str, Any] = {
        "key": f"cpu_high/web-{i}",
        "rule": "cpu_high",
        "host": f"web-{i}",
        "level": "critical",
        "state": "firing",
        "summary": "CPU at 97 %",
        "description": "CPU usage has been above 95 % for 5 minutes.",
        "labels": {"cpu": "all"},
        "value": 97.2,
        "url": f"https://edgewatch.example/alerts/cpu_high/web-{i}",
        "at": T + i,
    }
    return Notification(**{**fields, **kw})


class Subscriptions:
    """The subscription store, as the channel sees it."""

    def __init__(self, *subs: Subscriber) -> None:
        self.items = [parse_subscription(s.subscription(), allow_insecure_localhost=True) for s in subs]

    async def __call__(self) -> Sequence[Subscription]:
        return list(self.items)


def push_channel(vapid: Vapid, *subs: Subscriber, **kw: Any) -> WebPushChannel:
    kw.setdefault("allow_insecure_localhost", True)
    return WebPushChannel("phones", Subscriptions(*subs), vapid, SUBJECT, **kw)


@pytest.fixture(scope="module")
def vapid(tmp_path_factory: pytest.TempPathFactory) -> Vapid:
    return load_or_create_vapid(tmp_path_factory.mktemp("data"))


# --- VAPID keys -----------------------------------------------------------------------------


def test_vapid_keys_are_made_at_first_start_and_kept_private(tmp_path: Path) -> None:
    first = load_or_create_vapid(tmp_path / "data")
    private = tmp_path / "data" / VAPID_KEY_FILE
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    point = b64url_decode(first.public_key)
    assert len(point) == 65
    assert point[0] == 4
    assert "=" not in first.public_key
    assert (tmp_path / "data" / VAPID_PUBLIC_FILE).read_text().strip() == first.public_key
    again = load_or_create_vapid(tmp_path / "data")
    assert again.public_key == first.public_key


def test_a_damaged_vapid_key_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / VAPID_KEY_FILE).write_text("not a key")
    with pytest.raises(ValueError, match="is not a PEM private key; move it away"):
        load_or_create_vapid(tmp_path)


# --- Web Push -------------------------------------------------------------------------------


def test_push_is_signed_encrypted_and_decrypted_by_the_push_service(vapid: Vapid) -> None:
    async def scenario() -> None:
        async with PushService(expect_key=vapid.public_key) as service:
            phone, laptop = service.subscriber(), service.subscriber()
            d = await push_channel(vapid, phone, laptop).send([note()])
            assert service.errors == []
            assert d.ok, d
            assert not d.retryable
            assert not d.gone_targets
            assert [p.status for p in d.parts] == [201, 201]
            assert {p.target for p in d.parts} == {phone.endpoint, laptop.endpoint}
            for sub in (phone, laptop):
                [message] = service.for_subscriber(sub)
                assert message == {
                    "v": 1,
                    "title": "CRITICAL web-0: CPU at 97 %",
                    "body": "CPU usage has been above 95 % for 5 minutes.",
                    "url": "https://edgewatch.example/alerts/cpu_high/web-0",
                    "tag": "cpu_high/web-0",
                    "level": "critical",
                    "state": "firing",
                    "count": 1,
                    "at": T,
                }
            got = service.received[0]
            assert got.headers["Urgency"] == "high"
            assert got.headers["TTL"] == str(12 * 3600)
            assert len(got.headers["Topic"]) <= 32
            assert got.claims["aud"] == service.origin
            assert got.claims["sub"] == SUBJECT

    run(scenario())


def test_warnings_and_resolutions_are_not_urgent(vapid: Vapid) -> None:
    async def scenario() -> None:
        async with PushService() as service:
            sub = service.subscriber()
            channel = push_channel(vapid, sub)
            assert (await channel.send([note(level="warning")])).ok
            assert (await channel.send([note(state="resolved")])).ok
            assert [r.headers["Urgency"] for r in service.received] == ["normal", "normal"]
            assert service.received[1].payload["title"] == "RESOLVED web-0: CPU at 97 %"
            assert service.received[0].headers["Topic"] == service.received[1].headers["Topic"]

    run(scenario())


def test_the_payload_stays_within_3_kb_with_long_texts_and_many_alerts(vapid: Vapid) -> None:
    long = note(summary="Disk “/” fills up " * 400, description='quoted "ü" \\ 😀 \n' * 2000)
    crowd = [
        note(i, level=("critical", "warning", "info")[i % 3], state=("firing", "resolved")[i % 2], group="g")
        for i in range(800)
    ]

    async def scenario() -> None:
        async with PushService(expect_key=vapid.public_key) as service:
            sub = service.subscriber()
            channel = push_channel(vapid, sub)
            assert (await channel.send([long])).ok
            assert (await channel.send(crowd)).ok
            assert service.errors == []
            one, many = service.received
            for got in (one, many):
                assert got.plaintext_bytes <= MAX_PAYLOAD
                assert got.body_bytes <= 4096  # what push services accept, encryption overhead included
            assert one.payload["title"].startswith("CRITICAL web-0: Disk “/” fills up")
            assert one.payload["title"].endswith("…")
            assert one.payload["body"].endswith("…")
            assert one.payload["url"] == long.url
            assert many.payload["title"] == "CRITICAL 400 firing, 400 resolved on 800 hosts"
            assert many.payload["tag"] == "g"
            assert many.payload["count"] == 800
            shown = many.payload["body"].splitlines()
            assert shown[0].startswith("CRITICAL ")  # the worst first
            assert shown[-1] == f"… and {800 - len(shown) + 1} more"
            assert len(shown) > 20

    run(scenario())


texts = st.text(st.characters(codec="utf-8"), max_size=5000)


@given(
    summaries=st.lists(texts, min_size=1, max_size=40),
    description=texts,
    host=st.text(max_size=300),
    key=st.text(max_size=500),
    url=st.text(max_size=3000),
)
def test_any_payload_is_json_within_the_bound(
    summaries: list[str], description: str, host: str, key: str, url: str
) -> None:
    notes = [note(summary=s, description=description, host=host, key=key, url=url) for s in summaries]
    data = payload(notes)
    assert len(data) <= MAX_PAYLOAD
    doc = json.loads(data)
    assert doc["count"] == len(notes)
    assert doc["title"].startswith("CRITICAL")


def test_404_and_410_report_the_subscription_gone(vapid: Vapid) -> None:
    async def scenario() -> None:
        async with PushService() as service:
            a, b, alive = service.subscriber(), service.subscriber(), service.subscriber()
            service.fail(404, subscriber=a)
            service.fail(410, subscriber=b)
            d = await push_channel(vapid, a, b, alive).send([note()])
            assert d.ok
            assert not d.retryable
            assert set(d.gone_targets) == {a.endpoint, b.endpoint}
            assert {p.status for p in d.parts if p.gone} == {404, 410}
            assert "1 delivered, 2 gone" in d.detail
            service.fail(410)
            d = await push_channel(vapid, a).send([note()])
            assert not d.ok
            assert not d.retryable
            assert d.gone_targets == (a.endpoint,)

    run(scenario())


def test_429_backs_off_and_only_the_failed_subscription_is_retried(vapid: Vapid) -> None:
    async def scenario() -> None:
        async with PushService() as service:
            busy, fine = service.subscriber(), service.subscriber()
            channel = push_channel(vapid, busy, fine)
            service.fail(429, "120", subscriber=busy)
            d = await channel.send([note()])
            assert not d.ok
            assert d.retryable
            assert d.retry_after == 120
            assert d.retry_targets == (busy.endpoint,)
            [slow] = [p for p in d.parts if p.target == busy.endpoint]
            assert (slow.status, slow.retry_after, slow.gone) == (429, 120, False)
            service.heal()
            again = await channel.send([note()], only=d.retry_targets)
            assert again.ok
            assert len(again.parts) == 1
            assert len(service.for_subscriber(busy)) == 1
            assert len(service.for_subscriber(fine)) == 1  # not sent twice

    run(scenario())


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (400, False), (413, False)])
def test_push_server_errors_retry_and_client_errors_do_not(
    vapid: Vapid, status: int, retryable: bool
) -> None:
    async def scenario() -> None:
        async with PushService() as service:
            sub = service.subscriber()
            service.fail(status)
            d = await push_channel(vapid, sub).send([note()])
            assert not d.ok
            assert d.retryable is retryable
            assert not d.gone_targets
            assert d.parts[0].status == status

    run(scenario())


def test_an_unreachable_push_service_is_retryable(vapid: Vapid) -> None:
    async def scenario() -> None:
        sub = Subscriber("gone", f"http://127.0.0.1:{closed_port()}/push/x")
        d = await push_channel(vapid, sub, timeout=2).send([note()])
        assert not d.ok
        assert d.retryable
        assert d.parts[0].status is None
        assert "unreachable" in d.parts[0].detail

    run(scenario())


def test_no_subscriptions_is_a_failure_that_says_so(vapid: Vapid) -> None:
    d = run(push_channel(vapid).send([note()]))
    assert (d.ok, d.retryable, d.detail) == (False, False, "no push subscriptions to send to")


def test_the_push_service_refuses_a_jwt_from_another_key(tmp_path: Path, vapid: Vapid) -> None:
    """The service's checks are real: a message signed with a key the subscription was not made for fails."""
    other = load_or_create_vapid(tmp_path)

    async def scenario() -> None:
        async with PushService(expect_key=vapid.public_key) as service:
            d = await push_channel(other, service.subscriber()).send([note()])
            assert not d.ok
            assert not d.retryable
            assert d.parts[0].status == 403
            assert service.received == []
            assert service.errors == ["k is not the application server key the subscription was made with"]

    run(scenario())


def test_the_push_service_refuses_a_payload_for_another_subscriber(vapid: Vapid) -> None:
    """Encryption is real: a message encrypted to one subscriber's keys does not decrypt with another's."""

    async def scenario() -> None:
        async with PushService() as service:
            victim, other = service.subscriber(), service.subscriber()
            keys = other.subscription()["keys"]
            wrong = Subscription(victim.endpoint, keys["p256dh"], keys["auth"])
            channel = WebPushChannel("p", Subscriptions(), vapid, SUBJECT, allow_insecure_localhost=True)
            d = await channel.send_one(wrong, [note()])
            assert not d.ok
            assert d.status == 400
            assert service.received == []
            assert len(service.errors) == 1

    run(scenario())


def test_subscriptions_need_https_except_loopback_when_allowed() -> None:
    good = Subscriber("x", "https://fcm.googleapis.com/fcm/send/abc").subscription()
    assert parse_subscription(good).endpoint == good["endpoint"]
    local = {**good, "endpoint": "http://127.0.0.1:8080/push/1"}
    with pytest.raises(ValueError, match="must be an https:// URL"):
        parse_subscription(local)
    assert parse_subscription(local, allow_insecure_localhost=True).endpoint == local["endpoint"]
    with pytest.raises(ValueError, match="must be an https:// URL"):
        parse_subscription({**good, "endpoint": "http://push.example.com/1"}, allow_insecure_localhost=True)
    bad_keys = [
        ({"endpoint": good["endpoint"]}, "a push subscription is"),
        ({**good, "keys": {"p256dh": good["keys"]["p256dh"]}}, "needs endpoint, keys.p256dh and keys.auth"),
        ({**good, "keys": {**good["keys"], "p256dh": "AAAA"}}, "not a base64url P-256 public key"),
        ({**good, "keys": {**good["keys"], "auth": "AAAA"}}, "keys.auth 16 bytes"),
        ({**good, "keys": {**good["keys"], "p256dh": "not base64 at all!"}}, "not a base64url P-256"),
    ]
    for data, message in bad_keys:
        with pytest.raises(ValueError, match=message):
            parse_subscription(data)


def test_an_http_endpoint_is_not_sent_to_in_production(vapid: Vapid) -> None:
    async def scenario() -> None:
        async with PushService() as service:
            sub = service.subscriber()
            d = await push_channel(vapid, sub, allow_insecure_localhost=False).send([note()])
            assert not d.ok
            assert not d.retryable
            assert "https://" in d.parts[0].detail
            assert service.received == []
            assert service.errors == []

    run(scenario())


# --- webhooks -------------------------------------------------------------------------------


def test_the_webhook_body_is_signed_and_the_receiver_verifies_it() -> None:
    async def scenario() -> None:
        async with WebhookReceiver(secret="s3cret-hook") as hook:
            channel = WebhookChannel("ops", hook.url("/hooks/edgewatch"), secret="s3cret-hook")
            d = await channel.send(
                [note(0, group="g1"), note(1, level="warning", state="resolved", group="g1")]
            )
            assert d.ok
            assert d.status == 200
            assert not hook.rejected
            [got] = hook.received
            assert got.signature_ok is True
            assert got.path == "/hooks/edgewatch"
            assert got.headers["Content-Type"] == "application/json"
            stamp, signature = got.headers[TIMESTAMP_HEADER], got.headers[SIGNATURE_HEADER]
            assert signature == sign("s3cret-hook", stamp, got.raw)
            assert verify("s3cret-hook", stamp, got.raw, signature, now=int(stamp) + 10)
            assert not verify("s3cret-hook", stamp, got.raw, signature, now=int(stamp) + 3600)
            assert not verify("s3cret-hook", stamp, got.raw + b" ", signature, now=int(stamp))
            body = got.body
            assert {k: body[k] for k in ("version", "status", "channel", "group", "level", "count")} == {
                "version": "1",
                "status": "firing",
                "channel": "ops",
                "group": "g1",
                "level": "critical",
                "count": 2,
            }
            assert body["title"] == "CRITICAL 1 firing, 1 resolved on 2 hosts"
            assert body["truncated"] == 0
            assert body["alerts"][0] == {
                **note(0, group="g1").as_json(),
                "level": "critical",
                "state": "firing",
            }
            assert body["alerts"][1]["state"] == "resolved"
            assert body["alerts"][1]["value"] == 97.2

    run(scenario())


def test_a_webhook_signed_with_the_wrong_secret_fails_the_check() -> None:
    async def scenario() -> None:
        async with WebhookReceiver(secret="the-real-secret") as hook:
            d = await WebhookChannel("ops", hook.url("/h"), secret="a-wrong-secret").send([note()])
            assert not d.ok
            assert not d.retryable
            assert d.status == 401
            assert hook.received == []
            assert len(hook.rejected) == 1
            d = await WebhookChannel("ops", hook.url("/h")).send([note()])  # unsigned
            assert d.status == 401
            assert len(hook.rejected) == 2

    run(scenario())


def test_non_finite_values_stay_valid_json() -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as hook:
            notes = [note(0, value=float("nan")), note(1, value=float("inf")), note(2, value=None)]
            assert (await WebhookChannel("ops", hook.url("/h")).send(notes)).ok
            assert [a["value"] for a in hook.received[0].body["alerts"]] == ["NaN", "+Inf", None]

    run(scenario())


@pytest.mark.parametrize(
    ("status", "retry_after", "expect"),
    [
        (204, None, (True, False, None)),
        (500, None, (False, True, None)),
        (503, "30", (False, True, 30.0)),
        (429, "7", (False, True, 7.0)),
        (404, None, (False, False, None)),
        (400, None, (False, False, None)),
        (302, None, (False, False, None)),
    ],
)
def test_webhook_statuses(
    status: int, retry_after: str | None, expect: tuple[bool, bool, float | None]
) -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as hook:
            hook.status, hook.retry_after = status, retry_after
            d = await WebhookChannel("ops", hook.url("/h")).send([note()])
            assert (d.ok, d.retryable, d.retry_after) == expect
            assert d.status == status
            assert not d.gone

    run(scenario())


def test_webhook_timeouts_and_refused_connections_are_retryable() -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as hook:
            hook.delay = 2
            d = await WebhookChannel("ops", hook.url("/h"), timeout=0.3).send([note()])
            assert not d.ok
            assert d.retryable
            assert d.status is None
            assert "0.3 s" in d.detail
        d = await WebhookChannel("ops", f"http://127.0.0.1:{closed_port()}/h").send([note()])
        assert not d.ok
        assert d.retryable
        assert d.status is None

    run(scenario())


# --- Apprise --------------------------------------------------------------------------------


def test_apprise_delivers_to_a_local_json_endpoint() -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as sink:
            channel = AppriseChannel("chat", [f"json://127.0.0.1:{sink.port}/apprise"])
            d = await channel.send([note()])
            assert d.ok, d
            [got] = sink.received
            assert got.path == "/apprise"
            assert got.body["title"] == "CRITICAL web-0: CPU at 97 %"
            assert got.body["message"] == (
                "CPU usage has been above 95 % for 5 minutes.\n\nhttps://edgewatch.example/alerts/cpu_high/web-0"
            )
            assert got.body["type"] == "failure"
            d = await channel.send([note(0, state="resolved"), note(1, state="resolved")])
            assert d.ok
            assert sink.received[1].body["title"] == "RESOLVED 2 alerts on 2 hosts"
            assert sink.received[1].body["type"] == "success"

    run(scenario())


def test_an_apprise_failure_is_retryable() -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as sink:
            sink.status = 500
            d = await AppriseChannel("chat", [f"json://127.0.0.1:{sink.port}/x"]).send([note()])
            assert not d.ok
            assert d.retryable
            assert "1 of 1 Apprise service(s) failed" in d.detail
            d = await AppriseChannel("chat", [f"json://127.0.0.1:{closed_port()}/x"]).send([note()])
            assert not d.ok
            assert d.retryable

    run(scenario())


def test_an_unknown_apprise_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="Apprise URL 2 \\(scheme 'nosuch'\\)") as e:
        AppriseChannel("chat", ["json://127.0.0.1:9/x", "nosuch://user:hunter2@host"])
    assert "hunter2" not in str(e.value)


# --- secrets and the test action ------------------------------------------------------------


def test_public_config_never_contains_a_secret(vapid: Vapid) -> None:
    secrets = [
        "hooksecret-123",
        "Bearer tok-456",
        "pw-789",
        "hdr-secret-012",
        "tk_ntfy_345",
        "AbCdEf1234567890XyZ",
    ]
    hook = WebhookChannel(
        "ops",
        "https://user:pw-789@hooks.example.com/services/AbCdEf1234567890XyZ?token=hooksecret-123&room=ops",
        secret="hooksecret-123",
        headers={"Authorization": "Bearer tok-456"},
    )
    chat = AppriseChannel(
        "chat",
        [
            "json://user:pw-789@127.0.0.1:9/x?+X-Token=hdr-secret-012",
            "ntfy://ntfy.sh/alerts?token=tk_ntfy_345",
            "tgram://123456789:AbCdEf1234567890XyZ/987654",
            "mailtos://smtp.example.com?user=me&pass=pw-789&to=ops@example.com",
            "slack://T1JJ3T3L2/A1BRTD4JD/AbCdEf1234567890XyZ",
        ],
    )
    configs = [hook.public_config(), chat.public_config(), push_channel(vapid).public_config()]
    text = json.dumps(configs)
    pem = vapid.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    raw = vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
    secrets += ["".join(pem.splitlines()[1:-1]), b64e(raw)]
    for secret in secrets:
        assert secret not in text, secret
    assert configs[0]["url"] == "https://user:****@hooks.example.com/services/****?token=****&room=ops"
    assert configs[0]["signed"] is True
    assert configs[0]["headers"] == {"Authorization": "****"}
    assert [u.split(":", 1)[0] for u in configs[1]["urls"]] == ["json", "ntfy", "tgram", "mailtos", "slack"]
    assert configs[2]["application_server_key"] == vapid.public_key


def test_send_test_goes_through_the_channel() -> None:
    async def scenario() -> None:
        async with WebhookReceiver() as hook:
            d = await base.send_test(WebhookChannel("ops", hook.url("/h")), T, url="https://e.example/")
            assert d.ok
            [alert] = hook.received[0].body["alerts"]
            assert (alert["summary"], alert["level"], alert["url"]) == (
                "Test notification",
                "info",
                "https://e.example/",
            )

    run(scenario())


# --- the shared parts -----------------------------------------------------------------------


def test_notifications_take_the_database_strings_and_refuse_others() -> None:
    n = note(level="error", state="resolved")
    assert (n.level, n.state) == (Level.ERROR, State.RESOLVED)
    with pytest.raises(ValueError, match="'fatal' is not a valid Level"):
        note(level="fatal")


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = 1_764_000_000.0
    assert base.parse_retry_after("120", now) == 120
    assert base.parse_retry_after("Mon, 24 Nov 2025 16:01:00 GMT", now) == 60
    assert base.parse_retry_after("yesterday", now) is None
    assert base.parse_retry_after("99999999", now) == base.MAX_RETRY_AFTER


def test_combine_sums_up_the_parts() -> None:
    ok, gone = Delivery(ok=True, target="a"), Delivery(ok=False, gone=True, target="b")
    retry = Delivery(ok=False, retryable=True, retry_after=9, target="c")
    refused = Delivery(ok=False, target="d", detail="HTTP 400")
    assert base.combine([ok, gone], "x").ok
    assert base.combine([ok, refused], "x").ok  # a refusal will not change; the rest got it
    mixed = base.combine([ok, gone, retry, refused], "push subscriptions")
    assert (mixed.ok, mixed.retryable, mixed.retry_after) == (False, True, 9)
    assert mixed.retry_targets == ("c",)
    assert mixed.gone_targets == ("b",)
    assert mixed.detail.startswith("4 push subscriptions: 1 delivered, 1 gone, 1 to retry, 1 failed")
