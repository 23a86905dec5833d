"""Remote commands through the app: issuing against the advertised allowlist, signing, handing over
by long-poll and push answer, results, expiry, roles and the audit log."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgewatch.aggregator.commandapi import COMMANDS
from edgewatch.aggregator.commands import signed_bytes
from edgewatch.aggregator.keys import load_or_create, public_b64
from edgewatch.protocol import Batch, Series

from .conftest import T0, Harness, harness

ACTIONS = [
    {"name": "unit-restart", "params": {"unit": ["nginx.service", "postgresql.service"]}},
    {"name": "flush", "params": {"pattern": "re:[a-z/^]{1,20}"}},
    {"name": "reload-agent", "params": {}},
]
LOAD = (Series("node_load1", precision=2),)


def frame(agent: str, seq: int, ts: int, actions: list[dict[str, Any]] | None) -> Batch:
    facts: dict[str, str] = {"hostname": agent}
    if actions is not None:
        facts["actions"] = json.dumps(actions)  # facts are strings on the wire
    return Batch(agent, 1, seq, [ts], list(LOAD), [[0.5]], facts)


async def send(h: Harness, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    async with h.client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_commands_are_checked_signed_handed_over_and_reported(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, now_ms=T0 + 10_000) as h:
            web1 = await h.add_agent("web-1")
            await h.add_agent("web-2")
            assert (await h.push(frame("web-1", 1, T0, ACTIONS)))[0] == 200
            assert (await h.push(frame("web-2", 1, T0, None)))[0] == 200
            viewer, operator = await h.api_token("viewer"), await h.api_token("operator")
            order = {"hosts": ["web-1"], "action": "unit-restart", "args": {"unit": "nginx.service"}}
            assert (await send(h, "POST", "/api/v1/commands", viewer, order))[0] == 403
            for body, status, words in (
                ({**order, "action": "rm"}, 400, "does not allow the action 'rm'"),
                ({**order, "args": {"unit": "sshd.service"}}, 400, "parameter unit"),
                ({**order, "args": {"unit": "nginx; rm -rf /"}}, 400, "parameter unit"),
                ({**order, "args": {}}, 400, "exactly the parameters"),
                ({**order, "args": {"unit": "nginx.service", "x": "1"}}, 400, "exactly the parameters"),
                ({**order, "hosts": ["web-1", "web-2"]}, 400, "'web-2' does not accept commands"),
                ({**order, "hosts": ["nope"]}, 404, "no enrolled host"),
                ({**order, "group": "db"}, 400, "no host group"),
                (
                    {"action": "flush", "hosts": ["web-1"], "args": {"pattern": "-rf"}},
                    400,
                    "parameter pattern",
                ),
            ):
                got, answer = await send(h, "POST", "/api/v1/commands", operator, body)
                assert (got, words in answer["error"]) == (status, True), answer
            assert h.sql("SELECT count(*) FROM commands") == [(0,)]  # nothing issued by a bad order
            status, answer = await send(h, "POST", "/api/v1/commands", operator, order)
            assert status == 201
            [made] = answer["commands"]
            assert (made["state"], made["host"], made["issued_by"]) == ("queued", "web-1", made["issued_by"])
            assert made["expires"] - made["issued"] == 60_000
            # the agent's long-poll hands it over, signed with the key agents pin
            got, answer = await send(h, "GET", "/api/v1/agent/commands?wait=0", web1)
            [cmd] = answer["commands"]
            key = load_or_create(h.data_dir)
            public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64(key)))
            public.verify(b64d(cmd["signature"]), signed_bytes(cmd))
            assert (cmd["agent"], cmd["action"], cmd["args"]) == (
                "web-1",
                "unit-restart",
                {"unit": "nginx.service"},
            )
            assert (await send(h, "GET", "/api/v1/agent/commands?wait=0", web1))[1] == {"commands": []}
            # results: running, then succeeded; a repeat is taken once; another agent's report is refused
            result = f"/api/v1/agent/commands/{cmd['id']}/result"
            assert (await send(h, "POST", result, web1, {"state": "running"}))[0] == 200
            done = {"state": "succeeded", "exit_code": 0, "duration_ms": 812, "stdout": "ok\n", "stderr": ""}
            status, answer = await send(h, "POST", result, web1, done)
            assert (status, answer["command"]["state"]) == (200, "succeeded")
            assert (await send(h, "POST", result, web1, done))[0] == 200
            assert (await send(h, "POST", result, web1, {"state": "failed", "exit_code": 1}))[0] == 409
            assert (await send(h, "POST", result, web1, {"state": "done"}))[0] == 400
            web2 = h.tokens["web-2"]
            assert (await send(h, "POST", result, web2, done))[0] == 404
            status, answer = await send(h, "GET", f"/api/v1/commands/{cmd['id']}", viewer)
            assert answer["result"]["stdout"] == "ok\n"
            assert answer["state"] == "succeeded"
            actions = [r[0] for r in h.sql("SELECT action FROM audit WHERE action LIKE 'command%'")]
            assert actions == ["command", "command-result"]

    asyncio.run(scenario())


def test_a_waiting_long_poll_and_a_push_answer_get_new_commands_and_old_ones_expire(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, now_ms=T0 + 10_000) as h:
            web1 = await h.add_agent("web-1")
            assert (await h.push(frame("web-1", 1, T0, ACTIONS)))[0] == 200
            operator = await h.api_token("operator")
            order = {"hosts": ["web-1"], "action": "reload-agent", "args": {}}
            poll = asyncio.create_task(send(h, "GET", "/api/v1/agent/commands?wait=10", web1))
            await asyncio.sleep(0.3)
            assert not poll.done()
            assert (await send(h, "POST", "/api/v1/commands", operator, order))[0] == 201
            _, answer = await asyncio.wait_for(poll, 5)
            assert [c["action"] for c in answer["commands"]] == ["reload-agent"]
            # the next one comes with the answer to a push
            assert (await send(h, "POST", "/api/v1/commands", operator, order))[0] == 201
            _, answer = await h.push(frame("web-1", 2, T0 + 10_000, ACTIONS))
            assert [c["action"] for c in answer["commands"]] == ["reload-agent"]
            # one not fetched within its minute expires and is never handed over
            assert (await send(h, "POST", "/api/v1/commands", operator, order))[0] == 201
            h.clock.ms += 61_000
            # none of the three reported running: all expire (the queued one is never handed over)
            assert await h.client.app[COMMANDS].expire() == 3
            assert (await send(h, "GET", "/api/v1/agent/commands?wait=0", web1))[1] == {"commands": []}
            assert h.sql("SELECT DISTINCT state FROM commands") == [("expired",)]
            _, answer = await send(h, "GET", "/api/v1/commands?state=expired", operator)
            assert len(answer["commands"]) == 3

    asyncio.run(scenario())


def test_the_signed_bytes_are_the_documented_canonical_json() -> None:
    cmd = {
        "id": "c1",
        "agent": "web-1",
        "action": "unit-restart",
        "args": {"unit": "nginx.service"},
        "nonce": "n",
        "issued": 1,
        "expires": 2,
        "signature": "ignored",
    }
    expected = (
        b"edgewatch-command-v1\n"
        + json.dumps(
            {k: v for k, v in cmd.items() if k != "signature"}, sort_keys=True, separators=(",", ":")
        ).encode()
    )
    assert signed_bytes(cmd) == expected
