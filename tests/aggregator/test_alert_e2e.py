"""Alerting end to end with real processes: ``edgewatch sim`` scenarios against a real aggregator
that notifies a webhook receiver in the test.

The simulator runs 3 hosts at a 1 s interval for about 25 s: sim-001 has a CPU spike for 8 s,
sim-002 a disk that fills for 8 s, sim-003 a CPU at 92 % (a warning, which waits 6 s in its group)
and goes silent after 3 s for 9 s. Each alert must fire, be notified once, resolve and have its
resolution notified once; sim-003's host down must reach the receiver and mute its CPU alert, which
is notified only once the host is back.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import tomllib
from pathlib import Path

from edgewatch.aggregator.ruledefaults import BUILTIN_TOML

from .notify_services import Hook, WebhookReceiver
from .procs import EDGEWATCH, AggregatorProcess

KEEP = ("cpu_high", "disk_high", "host_down")
SECRET = "e2e-hook-secret"


def rules_file(path: Path) -> Path:
    others = [r["name"] for r in tomllib.loads(BUILTIN_TOML)["rule"] if r["name"] not in KEEP]
    path.write_text(
        f"""
[defaults]
disabled = {json.dumps(others)}

[defaults.cpu_high]  # the simulator's CPU stays under 85 % outside a spike, at any hour
window = "2s"
warning = 90
"""
    )
    return path


def notify_tables(hook: WebhookReceiver) -> str:
    return f"""
[notify]
group_wait = {{ info = "6s", warning = "6s", error = "0s", critical = "0s" }}

[[channel]]
name = "hook"
type = "webhook"
url = "{hook.url("/e2e")}"
secret = "{SECRET}"
"""


def alerts_of(hooks: list[Hook], rule: str, host: str) -> list[tuple[str, str]]:
    """(state, level) of each notification about ``rule`` on ``host``, in arrival order."""
    return [
        (a["state"], a["level"])
        for h in hooks
        for a in h.body["alerts"]
        if a["rule"] == rule and a["host"] == host
    ]


def test_sim_scenarios_fire_notify_once_resolve_and_host_down_mutes_the_cpu_alert(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with WebhookReceiver(SECRET) as hook:
            agg = AggregatorProcess(
                tmp_path,
                alerts__rules_file=str(rules_file(tmp_path / "rules.toml")),
                alerts__interval="0.5s",
                alerts__push=False,
            )
            with agg.config.open("a") as f:
                f.write(notify_tables(hook))
            agg.start()
            sim: subprocess.Popen[bytes] | None = None
            try:
                enrollment = agg.admin("add-enrollment", "--uses", "3")
                viewer = agg.admin("add-token", "--role", "viewer")
                sim = subprocess.Popen(
                    [
                        *EDGEWATCH,
                        *("sim", "--hosts", "3", "--interval", "1", "--aggregator", agg.url, "--seed", "5"),
                        *("--enroll-token", enrollment, "--duration", "25", "--timeout", "2"),
                        *("--scenario", "cpu-spike:1@2s+8s", "--scenario", "disk-fill/4s:2@2s+8s"),
                        *("--scenario", "cpu-spike/92:3", "--scenario", "silent:3@3s+9s"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                deadline = time.monotonic() + 90
                while sim.poll() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                assert sim.returncode == 0
                # what arrived while the hosts pushed (3 s later every host is down, and says so)
                got = [h for h in hook.received if h.path == "/e2e"]
                history = agg.get("/api/v1/alerts/history?limit=10000", viewer)["history"]
            finally:
                if sim is not None and sim.poll() is None:
                    sim.kill()
                    sim.wait()
                agg.stop()
            assert got
            assert all(h.signature_ok for h in got)
            assert hook.rejected == []
            # the CPU spike: fires (critical at once), notified once, resolves, resolution notified once
            # (also when the 2 s average passed through the warning band on its way down)
            timeline = [
                (a["rule"], a["host"], a["state"], a["level"], a["value"])
                for h in got
                for a in h.body["alerts"]
            ]
            cpu1 = alerts_of(got, "cpu_high", "sim-001")
            steps = [
                (e["kind"], e["detail"]) for e in history if (e["rule"], e["host"]) == ("cpu_high", "sim-001")
            ]
            assert cpu1 == [("firing", "critical"), ("resolved", "critical")], (timeline, steps)
            # the disk fills past 80 % then 90 %: a level change is news; one resolution at the end
            disk2 = alerts_of(got, "disk_high", "sim-002")
            assert disk2[0][0] == "firing"
            assert disk2[-1][0] == "resolved"
            assert [s for s, _ in disk2].count("resolved") == 1
            assert len(disk2) == len(set(disk2)), disk2  # no message repeated
            # the silent host: host down fires and resolves once each
            down3 = alerts_of(got, "host_down", "sim-003")
            assert down3 == [("firing", "critical"), ("resolved", "critical")], down3
            # its CPU alert (a warning waiting in its group) is muted while the host is down, and
            # notified only after the host came back
            cpu3 = alerts_of(got, "cpu_high", "sim-003")
            assert cpu3[:1] == [("firing", "warning")], cpu3
            back = [
                e["at"]
                for e in history
                if (e["rule"], e["host"], e["kind"]) == ("host_down", "sim-003", "transition")
                and e["detail"]["to"] == "resolved"
            ]
            told = [
                e["at"]
                for e in history
                if (e["rule"], e["host"], e["kind"]) == ("cpu_high", "sim-003", "notified")
            ]
            assert min(told) >= min(back), (told, back)  # (two messages of one tick may arrive in any order)
            kinds = {(e["rule"], e["host"], e["kind"]) for e in history}
            assert ("cpu_high", "sim-003", "inhibited") in kinds, sorted(kinds)
            for rule, host in (("cpu_high", "sim-001"), ("disk_high", "sim-002"), ("host_down", "sim-003")):
                assert (rule, host, "notified") in kinds
                assert (rule, host, "transition") in kinds
            # nothing fired on the other hosts or from other rules
            assert {(a["rule"], a["host"]) for h in got for a in h.body["alerts"]} == {
                ("cpu_high", "sim-001"),
                ("disk_high", "sim-002"),
                ("host_down", "sim-003"),
                ("cpu_high", "sim-003"),
            }

    asyncio.run(scenario())
