"""Scenario 10: forged, expired, replayed and off-allowlist commands never run.

A real aggregator and a real agent (enrolled, so it pins the aggregator's Ed25519 key; remote
commands on, ``unit-*`` for ``nginx.service`` only, a stand-in ``systemctl`` that records every
call). Valid commands go through the API and run exactly once each. The API refuses a viewer and
off-allowlist orders. Then bad commands are planted straight in the aggregator's database, as an
attacker with write access to it (or a man in the middle) would: each reaches the agent and must
be rejected with its reason, and none may run:

- forged: a flipped bit in the signature, a signature by another key, a signed command changed
  afterwards, no signature at all;
- for another agent;
- expired, issued in the future beyond ``max_skew``, a lifetime over 60 s;
- replayed: the nonce of a command that ran, before and after the agent restarted;
- off the allowlist: an unknown action, a unit not allowed, a shell string, an extra argument.

Every bad command that names an allowlisted action asks for ``unit-stop``, which no valid command
uses, so a single one that ran would show as a ``stop`` line of the stand-in ``systemctl``.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgewatch.aggregator.commands import signed_bytes
from tests.aggregator.procs import AggregatorProcess, edgewatch
from tests.aggregator.test_commands_e2e import AGENT, command, plant, stand_in_systemctl
from tests.soak.core import Context, Result, scenario
from tests.soak.faultkit import AgentProcess, admin_cli, agent_config, call, wait_for

PROMISE = (
    "Remote commands run only when signed by the pinned aggregator key, for this agent, within their"
    " lifetime and clock skew, with a nonce never seen (across restarts), and on the agent's allowlist;"
    " every forged, expired, replayed or off-allowlist command is rejected with its reason and never"
    " runs, while each valid command runs exactly once."
)
ORDER = {"hosts": [AGENT], "action": "unit-restart", "args": {"unit": "nginx.service"}}
FINAL = ("succeeded", "failed", "rejected")
BAD_ACTION = "unit-stop"  # what every planted command that names an allowed action asks for


def now_ms() -> int:
    return int(time.time() * 1000)


def bad_commands(ran_nonce: str) -> list[tuple[str, dict[str, Any], str]]:
    """``(kind, planted fields with their signature, the reason the agent must give)``."""
    out: list[tuple[str, dict[str, Any], str]] = []

    def signed(fields: dict[str, Any]) -> dict[str, Any]:
        return {**fields, "_sign": True}

    stop = {"action": BAD_ACTION}
    out.append(("forged: flipped signature bit", {**command(**stop), "_forge": True}, "bad signature"))
    other = Ed25519PrivateKey.generate()
    c = command(**stop)
    c["signature"] = base64.urlsafe_b64encode(other.sign(signed_bytes(c))).rstrip(b"=").decode()
    out.append(("forged: signed by another key", c, "bad signature"))
    out.append(
        ("forged: changed after signing", {**command(action="unit-status"), "_then": stop}, "bad signature")
    )
    out.append(("forged: no signature", command(**stop), "bad signature"))
    out.append(("for another agent", signed(command(agent="other-host", **stop)), "for another agent"))
    t = now_ms()
    out.append(("expired", signed(command(issued=t - 120_000, expires=t - 60_000, **stop)), "expired"))
    out.append(
        (
            "issued in the future",
            signed(command(issued=t + 120_000, expires=t + 150_000, **stop)),
            "issued in the future",
        )
    )
    out.append(("lifetime over 60 s", signed(command(expires=t + 3_600_000, **stop)), "lifetime over 60 s"))
    out.append(("replayed", signed(command(nonce=ran_nonce, **stop)), "replayed"))
    out.append(
        ("off-allowlist: unknown action", signed(command(action="rm-everything")), "action not allowed")
    )
    for kind, args, reason in (
        ("off-allowlist: unit", {"unit": "sshd.service"}, "parameter unit not allowed"),
        ("off-allowlist: shell string", {"unit": "nginx.service; rm -rf /"}, "parameter unit not allowed"),
        ("off-allowlist: option", {"unit": "--help"}, "parameter unit not allowed"),
        (
            "off-allowlist: extra argument",
            {"unit": "nginx.service", "force": "yes"},
            "parameter force not allowed",
        ),
    ):
        out.append((kind, signed(command(args=args, **stop)), reason))
    return out


def plant_all(
    agg: AggregatorProcess, bad: list[tuple[str, dict[str, Any], str]]
) -> dict[str, tuple[str, str]]:
    """Plant each bad command; ``{id: (kind, reason)}``."""
    planted: dict[str, tuple[str, str]] = {}
    for kind, fields, reason in bad:
        sign = bool(fields.pop("_sign", False))
        forge = bool(fields.pop("_forge", False))
        then = fields.pop("_then", None)
        if then is not None:  # sign, then change a signed field: the signature no longer covers it
            cid = plant(agg, fields, sign=True)
            tamper(agg, cid, then)
        else:
            cid = plant(agg, fields, sign=sign or forge, forge=forge)
        planted[cid] = (kind, reason)
    # the aggregator expires what is not running by its expiry: keep the planted ones deliverable,
    # so that the agent's own checks are what refuses them
    with sqlite3.connect(agg.data_dir / "edgewatch.db", timeout=30) as conn:
        conn.execute(
            "UPDATE commands SET expires_ms = ? WHERE issued_by = 'planted' AND state = 'queued'",
            (now_ms() + 60_000,),
        )
    conn.close()
    return planted


def signed_of(agg: AggregatorProcess, cid: str) -> dict[str, Any]:
    """The signed command as the aggregator stored it."""
    conn = sqlite3.connect(f"file:{agg.data_dir / 'edgewatch.db'}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("SELECT signed FROM commands WHERE id = ?", (cid,)).fetchone()
    finally:
        conn.close()
    signed: dict[str, Any] = json.loads(row[0])
    return signed


def tamper(agg: AggregatorProcess, cid: str, change: dict[str, Any]) -> None:
    with sqlite3.connect(agg.data_dir / "edgewatch.db", timeout=30) as conn:
        signed = json.loads(conn.execute("SELECT signed FROM commands WHERE id = ?", (cid,)).fetchone()[0])
        signed.update(change)
        conn.execute(
            "UPDATE commands SET signed = ?, action = ? WHERE id = ?",
            (json.dumps(signed), signed["action"], cid),
        )
    conn.close()


@scenario(10, "remote command forgery, expiry, replay, allowlist", PROMISE)
def run(ctx: Context) -> Result:
    result = Result()
    rounds, per_round = ctx.scale(3, 1), ctx.scale(3, 1)
    valid_n = rounds * per_round + 1
    agg = AggregatorProcess(ctx.tmp)
    systemctl, calls = stand_in_systemctl(ctx.tmp)
    state = ctx.tmp / "agent-state"
    config = agent_config(
        ctx.tmp / "agent.toml",
        aggregator=agg.url,
        state_dir=str(state),
        interval="1s",
        collectors__disabled=["processes", "sensors"],
        commands__enabled=True,
        commands__units=["nginx.service"],
        commands__systemctl=str(systemctl),
        commands__max_skew="5s",
    )
    agent = AgentProcess(config, ctx.tmp / "agent.log")
    refused: dict[str, int] = {}
    valid: list[str] = []
    wakes = 0
    planted: dict[str, tuple[str, str]] = {}
    after_restart: dict[str, tuple[str, str]] = {}
    states: dict[str, dict[str, Any]] = {}
    exit_code: int | None = None
    try:
        agg.start()
        viewer = admin_cli(agg, "add-token", "--role", "viewer")
        operator = admin_cli(agg, "add-token", "--role", "operator")
        done = edgewatch(
            "enroll", agg.url, admin_cli(agg, "add-enrollment"), "--state-dir", str(state), "--name", AGENT
        )
        if done.returncode != 0:
            raise RuntimeError(f"edgewatch enroll failed: {done.stderr.strip()[-300:]}")
        agent.start()

        def api(method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
            reply = call(agg.url, method, path, body, token=token)
            return reply.status, reply.json()

        def commands() -> dict[str, dict[str, Any]]:
            return {c["id"]: c for c in api("GET", "/api/v1/commands?limit=500", viewer)[1]["commands"]}

        wait_for(
            lambda: any(h["facts"].get("actions") for h in api("GET", "/api/v1/hosts", viewer)[1]["hosts"]),
            30,
            "the agent's allowlist in its facts",
        )
        # refused by the API: nothing is issued
        for kind, token, order in (
            ("viewer", viewer, ORDER),
            ("unknown action", operator, {**ORDER, "action": "rm-everything"}),
            ("unit not allowed", operator, {**ORDER, "args": {"unit": "sshd.service"}}),
            ("shell string", operator, {**ORDER, "args": {"unit": "nginx; rm -rf /"}}),
            ("extra argument", operator, {**ORDER, "args": {"unit": "nginx.service", "force": "yes"}}),
        ):
            refused[kind] = api("POST", "/api/v1/commands", token, order)[0]
        # valid commands: each runs once (nonces are kept for a lifetime plus max_skew: a replay
        # takes the nonce of one that ran just before it)

        def issue_valid() -> str:
            status, body = api("POST", "/api/v1/commands", operator, ORDER)
            if status != 201:
                return "none"
            cid = str(body["commands"][0]["id"])
            valid.append(cid)
            wait_for(lambda: commands()[cid]["state"] in FINAL, 30, "a valid command's result")
            return str(signed_of(agg, cid)["nonce"])

        def settle(ids: dict[str, tuple[str, str]]) -> None:
            nonlocal wakes
            # a push or long-poll hands them over only when the aggregator knows they wait: a new
            # command (unit-status, allowed) wakes it
            api("POST", "/api/v1/commands", operator, {**ORDER, "action": "unit-status"})
            wakes += 1
            wait_for(
                lambda: all(commands().get(i, {}).get("state") in FINAL for i in ids),
                60,
                "the planted commands' results",
                poll=0.3,
            )

        for _ in range(rounds):
            ran_nonce = [issue_valid() for _ in range(per_round)][-1]
            batch = plant_all(agg, bad_commands(ran_nonce))
            planted.update(batch)
            settle(batch)
        # the agent restarts: the nonce that ran is still refused
        ran_nonce = issue_valid()
        agent.stop()
        agent.start()
        batch = plant_all(
            agg,
            [
                (
                    "replayed after a restart",
                    {**command(nonce=ran_nonce, action=BAD_ACTION), "_sign": True},
                    "replayed",
                )
            ],
        )
        after_restart.update(batch)
        settle(batch)
        states = commands()
        exit_code = agent.stop()
    finally:
        agent.kill()
        agg.stop()
    with sqlite3.connect(agg.data_dir / "edgewatch.db") as conn:
        audit = conn.execute("SELECT action, detail FROM audit WHERE action LIKE 'command%'").fetchall()
    conn.close()

    lines = calls.read_text().splitlines() if calls.exists() else []
    restarts = lines.count("restart nginx.service")
    statuses = lines.count("status nginx.service")
    others = [line for line in lines if line not in ("restart nginx.service", "status nginx.service")]
    result.figures.update(
        api_refusals=refused,
        valid_issued=len(valid),
        valid_succeeded=sum(1 for c in valid if states.get(c, {}).get("state") == "succeeded"),
        planted=len(planted) + len(after_restart),
        planted_kinds=len({k for k, _ in planted.values()}) + len(after_restart),
        systemctl_calls={"restart": restarts, "status": statuses, "other": len(others)},
        agent_exit_code=exit_code,
    )
    result.check(
        refused.get("viewer") == 403, f"a viewer's command was answered {refused.get('viewer')}, not 403"
    )
    result.check(
        all(code == 400 for kind, code in refused.items() if kind != "viewer"),
        f"the API took off-allowlist orders: {refused}",
    )
    result.check(
        len(valid) == valid_n and result.figures["valid_succeeded"] == valid_n,
        f"{result.figures['valid_succeeded']} of {valid_n} valid commands succeeded",
    )
    result.check(restarts == valid_n, f"systemctl restart ran {restarts} times for {valid_n} valid commands")
    result.check(statuses <= wakes, f"systemctl status ran {statuses} times for {wakes} issued")
    result.check(not others, f"bad commands ran: systemctl {others[:5]}")
    wrong: list[str] = []
    for cid, (kind, reason) in {**planted, **after_restart}.items():
        row = states.get(cid, {})
        got = (row.get("result") or {}).get("reason", "")
        if row.get("state") != "rejected" or not str(got).startswith(reason):
            wrong.append(f"{kind}: {row.get('state')} {got!r}, expected rejected {reason!r}")
    result.check(not wrong, f"planted commands not rejected with their reason: {wrong[:4]}")
    reported = {json.loads(d)["id"]: json.loads(d).get("state") for a, d in audit if a == "command-result"}
    issued = {json.loads(d)["id"] for a, d in audit if a == "command"}
    result.check(
        all(reported.get(c) == "rejected" for c in {**planted, **after_restart})
        and all(c in issued and reported.get(c) == "succeeded" for c in valid),
        "the audit log misses commands or their results",
    )
    result.check(exit_code == 0, f"the agent exited {exit_code} on SIGTERM")
    return result
