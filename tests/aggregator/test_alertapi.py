"""The alerts API through the app: an alert fires from pushed data, is listed, acked, and rules reload."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edgewatch.protocol import Series

from .conftest import T0, batch, harness

RULE = """
[[rule]]
name = "load_now"
metric = "node_load1"
reducer = "last"
op = ">"
warning = 1.0
critical = 5.0
summary = "load of {host} is {value}"
"""
LOAD = (Series("node_load1", precision=2),)


def test_an_alert_fires_from_pushed_data_is_listed_acked_and_kept_in_history(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULE)

    async def scenario() -> None:
        async with harness(tmp_path, now_ms=T0 + 10_000, alerts__rules_file=str(rules)) as h:
            await h.add_agent("web-1")
            viewer, operator, admin = [await h.api_token(r) for r in ("viewer", "operator", "admin")]
            b = batch("web-1", 1, [T0 + 10_000], series=LOAD, value=lambda k, ts: 3.5)
            assert (await h.push(b))[0] == 200
            status, body = await h.get("/api/v1/alerts", viewer)
            assert status == 200
            [alert] = [a for a in body["alerts"] if a["rule"] == "load_now"]
            assert (alert["state"], alert["level"], alert["host"]) == ("firing", "warning", "web-1")
            status, body = await h.get("/api/v1/alerts", viewer, level="critical")
            assert [a for a in body["alerts"] if a["rule"] == "load_now"] == []
            fp = alert["fingerprint"]
            headers = {"Authorization": f"Bearer {viewer}"}
            async with h.client.post(
                f"/api/v1/alerts/{fp}/ack", json={"comment": "mine"}, headers=headers
            ) as r:
                assert r.status == 403
            headers = {"Authorization": f"Bearer {operator}"}
            async with h.client.post(
                f"/api/v1/alerts/{fp}/ack", json={"comment": "mine"}, headers=headers
            ) as r:
                assert r.status == 200
                acked = (await r.json())["alert"]
            assert acked["ack_comment"] == "mine"
            assert acked["acked_by"].startswith("token:")
            async with h.client.post("/api/v1/alerts/nope/ack", json={}, headers=headers) as r:
                assert r.status == 404
            await h.ingest.store.write(lambda conn: None)  # the engine's flush has been queued before
            status, body = await h.get("/api/v1/alerts/history", viewer, fingerprint=fp)
            kinds = [e["kind"] for e in body["history"]]
            assert [k for k in kinds if k in ("ack", "transition")] == ["ack", "transition"]
            assert "grouped" in kinds  # the pipeline's step: on its way to the push channel
            # a bad rules file is refused with the rule and field named; the running rules stay
            rules.write_text(RULE.replace("warning = 1.0", 'warning = "high"'))
            headers = {"Authorization": f"Bearer {admin}"}
            async with h.client.post("/api/v1/rules/reload", headers=headers) as r:
                assert r.status == 400
                text = (await r.json())["error"]
            assert "load_now" in text
            assert "warning" in text
            status, body = await h.get("/api/v1/rules", viewer)
            [rule] = [r for r in body["rules"] if r["name"] == "load_now"]
            assert rule["alerts"] == {"pending": 0, "firing": 1}
            # removing the rule retires its alert: it resolves
            rules.write_text("")
            async with h.client.post("/api/v1/rules/reload", headers=headers) as r:
                assert r.status == 200
                assert (await r.json())["retired"] == 1
            status, body = await h.get("/api/v1/alerts", viewer, state="resolved")
            assert [a["rule"] for a in body["alerts"]] == ["load_now"]

    asyncio.run(scenario())
