"""Remote commands end to end: a real aggregator and a real agent with a stand-in systemctl that
records every invocation.

A valid command runs exactly once. Commands the API refuses (a viewer, an action or parameter off
the allowlist, ``nginx; rm -rf /``) never reach the agent. Commands planted straight in the
aggregator's database (as an attacker with write access to it would) — a forged signature, another
agent's command, an expired one, a replay of a nonce that ran (also after the agent restarted), an
action the agent does not allow — reach the agent and are rejected with their reason. Nothing but
the valid command ever runs, and every issue and result is in the audit log.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgewatch.aggregator.commands import signed_bytes
from edgewatch.aggregator.keys import load_or_create

from .procs import EDGEWATCH, AggregatorProcess, edgewatch

AGENT = "cmd-host"


def stand_in_systemctl(tmp: Path) -> tuple[Path, Path]:
    """A systemctl that appends its arguments to a file and succeeds."""
    calls = tmp / "systemctl-calls"
    script = tmp / "systemctl"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "done: $@"\n')
    script.chmod(0o755)
    return script, calls


def api(agg: AggregatorProcess, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        agg.url + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


class Agent:
    def __init__(self, agg: AggregatorProcess, tmp: Path, systemctl: Path) -> None:
        self.state = tmp / "agent-state"
        self.config = tmp / "agent.toml"
        self.config.write_text(
            f'aggregator = "{agg.url}"\n[commands]\nenabled = true\nunits = ["nginx.service"]\n'
            f'systemctl = "{systemctl}"\nmax_skew = "5s"\n'
        )
        self.log = tmp / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *EDGEWATCH,
                    "agent",
                    "--config",
                    str(self.config),
                    "--state-dir",
                    str(self.state),
                    "--interval",
                    "2",
                ],
                stdout=log,
                stderr=log,
            )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            assert self.proc.wait(15) == 0
            self.proc = None


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[AggregatorProcess, Agent, Path]]:
    agg = AggregatorProcess(tmp_path)
    agg.start()
    systemctl, calls = stand_in_systemctl(tmp_path)
    agent = Agent(agg, tmp_path, systemctl)
    try:
        enrollment = agg.admin("add-enrollment")
        done = edgewatch("enroll", agg.url, enrollment, "--state-dir", str(agent.state), "--name", AGENT)
        assert done.returncode == 0, done.stderr
        agent.start()
        yield agg, agent, calls
    finally:
        try:
            agent.stop()
        finally:
            agg.stop()


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError("timed out")


def plant(agg: AggregatorProcess, fields: dict[str, Any], *, sign: bool = True, forge: bool = False) -> str:
    """Put a command straight into the aggregator's database, as it would store an issued one."""
    if sign:
        key = load_or_create(agg.data_dir)
        raw = key.sign(signed_bytes(fields))
        if forge:
            raw = bytes([raw[0] ^ 1]) + raw[1:]
        fields["signature"] = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    conn = sqlite3.connect(agg.data_dir / "edgewatch.db", timeout=30)
    try:
        host = conn.execute("SELECT id FROM hosts WHERE name = ?", (AGENT,)).fetchone()[0]
        with conn:
            conn.execute(
                "INSERT INTO commands (id, host, action, args, issued_ms, expires_ms, state, issued_by,"
                " updated_ms, signed) VALUES (?, ?, ?, ?, ?, ?, 'queued', 'planted', ?, ?)",
                (
                    fields["id"],
                    host,
                    fields["action"],
                    json.dumps(fields["args"]),
                    fields["issued"],
                    fields["expires"],
                    fields["issued"],
                    json.dumps(fields),
                ),
            )
    finally:
        conn.close()
    return str(fields["id"])


def command(
    agent: str = AGENT, action: str = "unit-restart", nonce: str | None = None, **change: Any
) -> dict[str, Any]:
    now = int(time.time() * 1000)
    fields = {
        "id": secrets.token_hex(8),
        "agent": agent,
        "action": action,
        "args": {"unit": "nginx.service"} if action.startswith("unit-") else {},
        "nonce": nonce or secrets.token_urlsafe(16),
        "issued": now,
        "expires": now + 60_000,
    }
    fields.update(change)
    return fields


def test_only_the_valid_command_runs_once_and_every_bad_one_is_rejected_with_its_reason(
    setup: tuple[AggregatorProcess, Agent, Path],
) -> None:
    agg, agent, calls = setup
    viewer, operator = (
        agg.admin("add-token", "--role", "viewer"),
        agg.admin("add-token", "--role", "operator"),
    )
    # the agent advertises its allowlist in its facts
    facts = wait_for(
        lambda: next(
            (h["facts"] for h in agg.get("/api/v1/hosts", viewer)["hosts"] if h["facts"].get("actions")), None
        )
    )
    assert "unit-restart" in facts["actions"]
    order = {"hosts": [AGENT], "action": "unit-restart", "args": {"unit": "nginx.service"}}
    # refused by the API: nothing issued, nothing runs
    assert api(agg, "POST", "/api/v1/commands", viewer, order)[0] == 403
    for bad in (
        {**order, "action": "rm-everything"},
        {**order, "args": {"unit": "sshd.service"}},
        {**order, "args": {"unit": "nginx; rm -rf /"}},
    ):
        status, body = api(agg, "POST", "/api/v1/commands", operator, bad)
        assert status == 400, body
    # the valid command: runs once, its output comes back
    status, body = api(agg, "POST", "/api/v1/commands", operator, order)
    assert status == 201
    cid = body["commands"][0]["id"]
    done = wait_for(
        lambda: (c := api(agg, "GET", f"/api/v1/commands/{cid}", viewer)[1])["state"] == "succeeded" and c
    )
    assert done["result"]["exit_code"] == 0
    assert "done: restart nginx.service" in done["result"]["stdout"]
    assert calls.read_text().splitlines() == ["restart nginx.service"]
    ran_nonce = json.loads(
        sqlite3.connect(agg.data_dir / "edgewatch.db")
        .execute("SELECT signed FROM commands WHERE id = ?", (cid,))
        .fetchone()[0]
    )["nonce"]
    # planted in the database: each reaches the agent and is rejected with its reason
    planted = {
        plant(agg, command(), forge=True): "bad signature",
        plant(agg, command(agent="other-host")): "for another agent",
        plant(
            agg, command(issued=int(time.time() * 1000) - 120_000, expires=int(time.time() * 1000) - 60_000)
        ): "expired",
        plant(agg, command(nonce=ran_nonce)): "replayed",
        plant(agg, command(action="rm-everything")): "action not allowed",
        plant(agg, command(args={"unit": "nginx; rm -rf /"})): "parameter unit not allowed",
    }
    # the aggregator would expire the one planted expired before handing it over: make it fresh in
    # the table so the agent's own check is what refuses it
    with sqlite3.connect(agg.data_dir / "edgewatch.db") as conn:
        conn.execute(
            "UPDATE commands SET expires_ms = ? WHERE issued_by = 'planted'",
            (int(time.time() * 1000) + 60_000,),
        )
    # a push or long-poll hands them over only when the aggregator knows they wait: a new command wakes it
    api(agg, "POST", "/api/v1/commands", operator, {**order, "action": "unit-status"})
    results = wait_for(
        lambda: (
            (
                rows := {
                    c["id"]: c for c in api(agg, "GET", "/api/v1/commands?limit=50", viewer)[1]["commands"]
                }
            )
            and all(rows.get(i, {}).get("state") == "rejected" for i in planted)
            and rows
        )
    )
    for cid_, reason in planted.items():
        assert results[cid_]["result"]["reason"].startswith(reason), (reason, results[cid_])
    # after a restart of the agent, the nonce that ran is still refused
    agent.stop()
    agent.start()
    again = plant(agg, command(nonce=ran_nonce))
    api(agg, "POST", "/api/v1/commands", operator, {**order, "action": "unit-status"})
    row = wait_for(
        lambda: (c := api(agg, "GET", f"/api/v1/commands/{again}", viewer)[1])["state"] == "rejected" and c
    )
    assert row["result"]["reason"].startswith("replayed")
    # nothing but the valid command and the two unit-status ones ran
    assert [c for c in calls.read_text().splitlines() if not c.startswith("status")] == [
        "restart nginx.service"
    ]
    audit = (
        sqlite3.connect(agg.data_dir / "edgewatch.db")
        .execute("SELECT action, detail FROM audit WHERE action LIKE 'command%'")
        .fetchall()
    )
    issued = [json.loads(d)["id"] for a, d in audit if a == "command"]
    reported = {json.loads(d)["id"]: json.loads(d)["state"] for a, d in audit if a == "command-result"}
    assert cid in issued
    assert reported[cid] == "succeeded"
    for cid_ in [*planted, again]:
        assert reported[cid_] == "rejected"
