"""What the browser tests run against: a real ``edgewatch aggregator`` on a free loopback port with
three users (admin, operator, viewer) and ``edgewatch sim`` hosts pushing to it.

The five ``sim-NNN`` hosts get their past from three history-only runs (50 h at 5 min, 6 h at 30 s,
1 h at 10 s: every range from 1 h to 1 y has lines, and the rollup tiers are real), then push live
every second with the last 10 minutes back-filled at that interval. ``spike(prefix)`` starts one more
simulated host whose CPU jumps to ~97 % two seconds in: with ``cpu_high`` over a 2 s window (see
``RULES``) that fires a critical alert a few seconds later. ``close()`` stops every process started
here, whatever happened before.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

from edgewatch.aggregator.ruledefaults import BUILTIN_TOML
from tests.aggregator.procs import EDGEWATCH, AggregatorProcess, env_without_proxies

HOSTS = tuple(f"sim-{n:03d}" for n in range(1, 6))
SEED = "5"  # the simulator's CPU stays under 85 % outside a spike at any hour with this seed
PASSWORDS = {"admin": "admin-secret-1", "operator": "operator-secret-2", "viewer": "viewer-secret-3"}
KEEP = ("cpu_high", "host_down")  # the other built-in rules are off: the sim's disks and swap vary
RULES = f"""
[defaults]
disabled = {json.dumps([r["name"] for r in tomllib.loads(BUILTIN_TOML)["rule"] if r["name"] not in KEEP])}

[defaults.cpu_high]  # a spike to ~97 % is critical (95) after two seconds; nothing else gets near
window = "2s"
warning = 90
"""
# (interval s, how far back), coarse first: each range's points lie closer than its charts' gap
HISTORY = (("300", "50h"), ("30", "6h"), ("10", "1h"))


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        rules = tmp / "rules.toml"
        rules.write_text(RULES)
        self.agg = AggregatorProcess(
            tmp, alerts__rules_file=str(rules), alerts__interval="0.5s", alerts__push=False
        )
        self.url = self.agg.url
        self.token = ""  # an admin API token, for checking through the API what the UI did
        self.enrollment = ""
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.spikes: dict[str, str] = {}  # prefix -> host name

    # -- start and stop ------------------------------------------------------------------------------

    def start(self) -> None:
        admin = [*EDGEWATCH, "admin", "--data-dir", str(self.agg.data_dir)]
        for user, password in PASSWORDS.items():  # before the first start: no random admin is made
            done = subprocess.run(
                [*admin, "add-user", user, "--role", user, "--password-stdin"],
                input=password + "\n",
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
        self.agg.start()
        self.token = self.agg.admin("add-token", "--role", "admin", "--name", "web-tests")
        self.enrollment = self.agg.admin("add-enrollment", "--uses", "20")
        state = self.tmp / "sim-state.json"
        for interval, back in HISTORY:
            argv = self._sim("--hosts", str(len(HOSTS)), "--interval", interval, "--state", str(state))
            log = self.tmp / f"sim-history-{interval}s.log"
            with log.open("wb") as out:
                history = subprocess.run(
                    [*argv, "--history", back, "--history-only"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=120,
                    env=env_without_proxies(),
                    check=False,
                )
            assert history.returncode == 0, f"the history run failed: {tail(log)}"
        argv = self._sim("--hosts", str(len(HOSTS)), "--interval", "1", "--state", str(state))
        self._start("sim-live", [*argv, "--history", "10m"])
        self.wait_live(HOSTS)

    def close(self) -> None:
        for _name, proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                stop(proc)
        self.procs.clear()
        self.agg.stop()

    # -- the simulated hosts -------------------------------------------------------------------------

    def _sim(self, *args: str) -> list[str]:
        return [
            *EDGEWATCH,
            *("sim", "--aggregator", self.url, "--seed", SEED, "--timeout", "5"),
            *("--enroll-token", self.enrollment, *args),
        ]

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env_without_proxies())
        self.procs.append((name, proc))
        return proc

    def spike(self, prefix: str) -> str:
        """Start (once per prefix) one host ``PREFIX-001`` whose CPU spikes to ~97 % 2 s in; its name."""
        if prefix not in self.spikes:
            state = str(self.tmp / f"{prefix}-state.json")
            argv = self._sim("--hosts", "1", "--prefix", prefix, "--interval", "1", "--state", state)
            self._start(f"sim-{prefix}", [*argv, "--scenario", "cpu-spike:1@2s"])
            self.spikes[prefix] = f"{prefix}-001"
        return self.spikes[prefix]

    def wait_live(self, names: tuple[str, ...], timeout: float = 60.0) -> None:
        """Until every host in ``names`` pushes at about 1 s with its headline values known."""
        deadline = time.monotonic() + timeout
        hosts: dict[str, Any] = {}
        while time.monotonic() < deadline:
            self._alive()
            hosts = {h["host"]: h for h in self.get("/api/v1/hosts")["hosts"]}
            now = time.time() * 1000
            if all(
                n in hosts
                and now - (hosts[n]["last_seen"] or 0) < 5_000
                and (hosts[n]["interval_ms"] or 10_000) <= 2_000
                and "cpu" in hosts[n]["values"]
                for n in names
            ):
                return
            time.sleep(0.3)
        raise AssertionError(f"the simulated hosts are not live after {timeout:g} s: {hosts}")

    def wait_alert(self, rule: str, host: str, timeout: float = 60.0) -> dict[str, Any]:
        """The firing alert of ``rule`` on ``host`` (from the API), once there is one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._alive()
            for a in self.get(f"/api/v1/alerts?host={host}&rule={rule}")["alerts"]:
                if a["state"] == "firing":
                    return dict(a)
            time.sleep(0.3)
        raise AssertionError(f"no firing {rule} alert on {host} after {timeout:g} s")

    def _alive(self) -> None:
        if self.agg.proc is None or self.agg.proc.poll() is not None:
            raise AssertionError(f"the aggregator is gone: {tail(self.agg.log)}")
        for name, proc in self.procs:
            if proc.poll() is not None:
                log = self.tmp / f"{name}.log"
                raise AssertionError(f"{name} exited with {proc.returncode}: {tail(log)}")

    # -- the API, as the admin token -----------------------------------------------------------------

    def get(self, path: str) -> Any:
        return self.agg.get(path, self.token)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} is missing)"
