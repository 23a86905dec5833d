"""The ``alertmanager`` channel: its API v2 payload against a checking fake, its trip through the
pipeline (retry, silences), its configuration, and Debian's real Alertmanager receiving an alert."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from pathlib import Path
from typing import Any

import pytest

from edgewatch.aggregator.alertstate import AlertState, Transition, fingerprint
from edgewatch.aggregator.httpauth import Credentials, parse_credentials
from edgewatch.aggregator.notify.alertmanager import AlertmanagerChannel, alerts_url
from edgewatch.aggregator.notify.base import Notification, send_test
from edgewatch.aggregator.pipeline import Pipeline
from edgewatch.aggregator.routing import Silence, build_channels, parse_notify, parse_routes

from .interop_services import Alertmanager, ensure_package
from .notify_services import AlertmanagerReceiver, closed_port

T = 1_764_000_000_000  # 2025-11-24T16:00:00Z


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def note(state: str = "firing", **kw: Any) -> Notification:
    fields: dict[str, Any] = {
        "key": "fp1",
        "rule": "cpu_high",
        "host": "web-1",
        "level": "critical",
        "state": state,
        "summary": "CPU at 97 %",
        "description": "CPU usage has been above 95 % for 5 minutes.",
        "labels": {"host": "web-1", "cpu": "all", "disk.io": "x", "empty": ""},
        "value": 97.2,
        "url": "https://edgewatch.example/#/alerts/fp1",
        "at": T if state == "firing" else T + 600_000,
        "fired_at": T,
    }
    return Notification(**{**fields, **kw})


def channel(url: str, **kw: Any) -> AlertmanagerChannel:
    return AlertmanagerChannel("am", url, wall=lambda: (T + 60_000) / 1000, **kw)


def test_a_firing_and_a_resolved_alert_are_postable_alerts() -> None:
    async def scenario() -> None:
        async with AlertmanagerReceiver() as am:
            d = await channel(am.origin, hold=3600).send(
                [note(), note("resolved", key="fp2", rule="disk_full")]
            )
            assert d.ok, (d.detail, am.errors)
            [[firing, resolved]] = am.received
            assert firing == {
                "labels": {
                    "alertname": "cpu_high",
                    "host": "web-1",
                    "severity": "critical",
                    "cpu": "all",
                    "disk_io": "x",
                },
                "annotations": {
                    "summary": "CPU at 97 %",
                    "description": "CPU usage has been above 95 % for 5 minutes.",
                },
                "startsAt": "2025-11-24T16:00:00.000Z",
                "endsAt": "2025-11-24T17:01:00.000Z",  # sent at 16:01, held for an hour
                "generatorURL": "https://edgewatch.example/#/alerts/fp1",
            }
            assert resolved["labels"]["alertname"] == "disk_full"
            assert resolved["startsAt"] == "2025-11-24T16:00:00.000Z"
            assert resolved["endsAt"] == "2025-11-24T16:10:00.000Z"  # when it resolved
            assert am.headers[0]["User-Agent"].startswith("edgewatch/")

    run(scenario())


def test_credentials_are_sent_and_never_shown() -> None:
    async def scenario() -> None:
        async with AlertmanagerReceiver() as am:
            creds = parse_credentials({"basic_auth": {"username": "edge", "password": "pw-s3cret"}})
            ch = channel(am.origin + "/api/v2/alerts", credentials=creds)
            assert (await ch.send([note()])).ok
            assert am.headers[0]["Authorization"] == "Basic ZWRnZTpwdy1zM2NyZXQ="
            shown = ch.public_config()
            assert shown["auth"] == "basic"
            assert shown["username"] == "edge"
            assert "pw-s3cret" not in repr(shown)
            assert "pw-s3cret" not in repr(creds)

    run(scenario())


def test_refusals_and_outages_say_whether_to_retry() -> None:
    async def scenario() -> None:
        async with AlertmanagerReceiver() as am:
            am.answers = [503, 400]
            d = await channel(am.origin).send([note()])
            assert (d.ok, d.retryable, d.status) == (False, True, 503)
            d = await channel(am.origin).send([note()])
            assert (d.ok, d.retryable, d.status) == (False, False, 400)
        d = await channel(f"http://127.0.0.1:{closed_port()}").send([note()])
        assert (d.ok, d.retryable) == (False, True)

    run(scenario())


def test_the_url_may_be_the_base_or_the_alerts_endpoint() -> None:
    assert alerts_url("http://am:9093") == "http://am:9093/api/v2/alerts"
    assert alerts_url("http://am:9093/prefix/") == "http://am:9093/prefix/api/v2/alerts"
    assert alerts_url("http://am:9093/api/v2/alerts") == "http://am:9093/api/v2/alerts"
    with pytest.raises(ValueError, match="http://"):
        AlertmanagerChannel("am", "am:9093")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"url": "am:9093"}, "channel 'am': url: the Alertmanager URL must start with http://"),
        ({"url": "http://am", "hold": "0s"}, "channel 'am': hold: must be more than 0 s"),
        ({"url": "http://am", "bearer_token": 5}, "channel 'am': bearer_token: must be a non-empty string"),
        ({"url": "http://am", "basic_auth": {"user": "x"}}, "channel 'am': basic_auth: must be {"),
        (
            {"url": "http://am", "headers": {"Content-Type": "x"}},
            "channel 'am': headers: Content-Type is set",
        ),
        ({"url": "http://am", "secret": "x"}, "channel 'am': secret: unknown field"),
    ],
)
def test_a_bad_alertmanager_channel_is_one_line_naming_the_field(table: dict[str, Any], message: str) -> None:
    async def subs() -> list[Any]:
        return []

    with pytest.raises(ValueError, match=r"^channel 'am': ") as info:
        build_channels(
            [{"name": "am", "type": "alertmanager", **table}],
            data_dir=Path("/nonexistent"),
            subscriptions_provider=subs,
        )
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_through_the_pipeline_a_failed_send_is_retried_and_a_silence_mutes() -> None:
    async def scenario() -> None:
        async with AlertmanagerReceiver() as am:

            async def subs() -> list[Any]:
                return []

            channels = build_channels(
                [{"name": "am", "type": "alertmanager", "url": am.origin, "hold": "1h"}],
                data_dir=Path("/nonexistent"),
                subscriptions_provider=subs,
            )
            defaults = parse_notify({})
            silences: list[Silence] = []
            pipeline = Pipeline(
                channels, parse_routes(None, defaults, list(channels)), defaults, silences=lambda: silences
            )
            labels = {"host": "web-1", "cpu": "all"}
            cpu = AlertState(
                "cpu_high", fingerprint("cpu_high", labels), labels, "firing", "critical", 97.0, fired_at=T
            )
            am.answers = [500]
            pipeline.submit(cpu, Transition("pending", "firing", "critical", 97.0, T), {"summary": "CPU"}, T)
            await pipeline.tick(T)
            for now in range(T, T + 10_000, 500):
                await pipeline.tick(now)
                await asyncio.sleep(0.01)
                if am.received:
                    break
            [[got]] = am.received  # after one retry
            assert got["labels"] == {
                "alertname": "cpu_high",
                "host": "web-1",
                "severity": "critical",
                "cpu": "all",
            }
            assert got["startsAt"] == "2025-11-24T16:00:00.000Z"
            resolved = dataclasses.replace(cpu, state="resolved", resolved_at=T + 60_000)
            pipeline.submit(
                resolved, Transition("firing", "resolved", "critical", 1.0, T + 60_000), {}, T + 60_000
            )
            for now in range(T + 60_000, T + 70_000, 500):
                await pipeline.tick(now)
                await asyncio.sleep(0.01)
                if len(am.received) == 2:
                    break
            assert am.received[1][0]["endsAt"] == "2025-11-24T16:01:00.000Z"
            silences.append(Silence.parse("s1", matchers=["host=web-2"], starts_at=T, ends_at=T + 3_600_000))
            other = {"host": "web-2"}
            disk = AlertState(
                "disk_full", fingerprint("disk_full", other), other, "firing", "critical", 99.0, fired_at=T
            )
            pipeline.submit(
                disk, Transition("pending", "firing", "critical", 99.0, T + 61_000), {}, T + 61_000
            )
            for now in range(T + 61_000, T + 65_000, 500):
                await pipeline.tick(now)
                await asyncio.sleep(0.01)
            assert len(am.received) == 2  # the silenced alert never went out

    run(scenario())


# --- Debian's Alertmanager ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_real_alertmanager_takes_the_alert_and_its_resolution(tmp_path: Path) -> None:
    if (why := ensure_package(Alertmanager.PACKAGE, Alertmanager.BIN)) is not None:
        pytest.skip(why)
    am = Alertmanager(tmp_path / "am")
    am.start()
    try:
        now = datetime.datetime.now(datetime.UTC)
        now_ms = int(now.timestamp() * 1000)
        n = note(at=now_ms - 60_000, fired_at=now_ms - 120_000)
        ch = AlertmanagerChannel("am", am.url)
        d = run(ch.send([n]))
        assert d.ok, d.detail
        [got] = am.alerts()
        assert got["labels"] == {
            "alertname": "cpu_high",
            "host": "web-1",
            "severity": "critical",
            "cpu": "all",
            "disk_io": "x",
        }
        assert got["annotations"]["summary"] == "CPU at 97 %"
        assert got["generatorURL"] == n.url
        assert got["status"]["state"] == "active"
        started = datetime.datetime.fromisoformat(got["startsAt"].replace("Z", "+00:00"))
        assert abs(started.timestamp() * 1000 - (now_ms - 120_000)) < 1000
        assert am.alerts(filter='host="web-1"') == [got]
        resolved = dataclasses.replace(n, state="resolved", at=now_ms - 1000)
        assert run(ch.send([resolved])).ok
        assert am.alerts() == []  # resolved: no longer active
    finally:
        am.stop()


def test_credentials_default_to_none() -> None:
    assert Credentials().masked() == {"auth": "none", "headers": {}}


def test_the_test_notification_resolves_itself_in_five_minutes() -> None:
    async def scenario() -> None:
        async with AlertmanagerReceiver() as am:
            assert (await send_test(channel(am.origin), T, "https://edgewatch.example/")).ok
            [[got]] = am.received
            assert got["labels"] == {"alertname": "test", "host": "edgewatch", "severity": "info"}
            assert got["endsAt"] == "2025-11-24T16:06:00.000Z"  # sent at 16:01

    run(scenario())
