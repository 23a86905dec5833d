"""Running remote commands: the runner's limits, and the agent's command service against a small
aggregator in a thread (push answers, long-poll, results), with a stand-in systemctl that records
every call."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edgewatch.agent.commands.report import Reporter
from edgewatch.agent.commands.runner import run
from edgewatch.agent.commands.service import Commands
from edgewatch.agent.config import AgentConfig, load
from edgewatch.agent.transport import HttpClient

from .commandkit import AGENT, FakeAggregator, Signer, calls_of, stand_in_systemctl


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie waiting for init
    except FileNotFoundError:
        return True


# -- the runner -----------------------------------------------------------------------------------


def test_exit_code_and_both_streams() -> None:
    outcome = run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10, max_output=1024)
    assert (outcome.exit_code, outcome.stdout, outcome.stderr) == (3, "out\n", "err\n")
    assert not outcome.truncated
    assert outcome.reason == ""


def test_no_shell_reads_the_arguments() -> None:
    outcome = run(["/bin/echo", "nginx; rm -rf /", "$(id)", "a b"], timeout=10, max_output=1024)
    assert outcome.stdout == "nginx; rm -rf / $(id) a b\n"


def test_a_timeout_kills_the_sleeping_child_and_its_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    outcome = run(
        ["/bin/sh", "-c", f"sleep 30 & echo $! > {pidfile}; sleep 30"], timeout=0.5, max_output=1024
    )
    assert time.monotonic() - started < 3
    assert outcome.reason == "timeout"
    assert outcome.exit_code is None
    assert 400 <= outcome.duration_ms < 3000
    background = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while not _dead(background) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _dead(background), "the child's own child outlived the timeout"


def test_output_is_bounded_and_the_rest_drained() -> None:
    started = time.monotonic()
    outcome = run(
        ["/bin/sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' x; echo done >&2"],
        timeout=20,
        max_output=1024,
    )
    assert outcome.exit_code == 0
    assert outcome.stdout == "x" * 1024
    assert outcome.stderr == "done\n"
    assert outcome.truncated
    assert time.monotonic() - started < 10


def test_invalid_utf8_is_replaced() -> None:
    assert run(["/usr/bin/printf", "a\\377b"], timeout=10, max_output=100).stdout == "a\ufffdb"


def test_a_missing_program_is_a_failure_with_a_reason() -> None:
    outcome = run(["/nonexistent/program"], timeout=10, max_output=100)
    assert outcome.exit_code is None
    assert outcome.reason.startswith("cannot start: ")
    assert "/nonexistent/program" in outcome.reason


def test_the_environment_is_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEWATCH_AGENT_TOKEN", "secret")
    names = {
        line.partition("=")[0] for line in run(["/usr/bin/env"], timeout=10, max_output=4096).stdout.split()
    }
    assert names == {"PATH", "LANG"}


def test_cancel_kills_at_once() -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    outcome = run(["/bin/sleep", "30"], timeout=60, max_output=100, cancel=cancel)
    assert outcome.reason == "agent stopped"
    assert time.monotonic() - started < 2


# -- the service ----------------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def _config(
    tmp: Path, fake: FakeAggregator, systemctl: Path, toml: str = "", **overrides: Any
) -> AgentConfig:
    path = tmp / "agent.toml"
    path.write_text(toml)
    values: dict[str, Any] = {
        "aggregator": fake.url,
        "token": fake.token,
        "state_dir": str(tmp / "state"),
        "commands.enabled": True,
        "commands.units": ["nginx.service", "postgresql.service"],
        "commands.systemctl": str(systemctl),
        "commands.poll": False,
    }
    values.update(overrides)
    return load(path, environ={}, overrides=values)


def _commands(config: AgentConfig, fake: FakeAggregator, signer: Signer, **kwargs: Any) -> Commands:
    return Commands(
        config,
        agent_id=AGENT,
        key=signer.public_b64,
        token=fake.token,
        client=lambda timeout: HttpClient(fake.url, timeout=timeout),
        **kwargs,
    )


@pytest.fixture
def fake() -> Any:
    with FakeAggregator() as f:
        yield f


@pytest.fixture
def signer() -> Signer:
    return Signer()


def test_a_valid_command_runs_exactly_once_even_replayed_and_after_a_restart(
    tmp_path: Path, fake: FakeAggregator, signer: Signer
) -> None:
    systemctl, calls = stand_in_systemctl(tmp_path)
    config = _config(tmp_path, fake, systemctl, **{"commands.poll": True})
    command = signer.command(issued=now_ms())
    commands = _commands(config, fake, signer)
    commands.start()
    try:
        fake.issue(command)
        results = fake.wait_results(2)
        assert [b["state"] for _, b in results] == ["running", "succeeded"]
        done = results[1][1]
        assert done["exit_code"] == 0
        assert done["stdout"] == "stand-in systemctl restart nginx.service\n"
        assert done["truncated"] is False
        assert done["duration_ms"] >= 0
        fake.issue(command)  # the same command again
        assert fake.wait_results(3)[2] == (command["id"], {"state": "rejected", "reason": "replayed"})
    finally:
        commands.stop(2)
    restarted = _commands(config, fake, signer)
    restarted.on_answer({"ack": 1, "commands": [command]})
    assert fake.wait_results(4)[3] == (command["id"], {"state": "rejected", "reason": "replayed"})
    restarted.stop(2)
    assert calls_of(calls) == ["[restart][nginx.service]"]


def test_every_refusal_is_reported_with_its_reason_and_nothing_runs(
    tmp_path: Path, fake: FakeAggregator, signer: Signer
) -> None:
    systemctl, calls = stand_in_systemctl(tmp_path)
    commands = _commands(_config(tmp_path, fake, systemctl), fake, signer)
    sent = {
        "bad signature": Signer().command(issued=now_ms()),
        "for another agent": signer.command(issued=now_ms(), agent="db-1"),
        "expired": signer.command(issued=now_ms() - 200_000),
        "issued in the future": signer.command(issued=now_ms() + 200_000),
        "lifetime over 60 s": signer.command(issued=now_ms(), lifetime=120_000),
        "action not allowed": signer.command("reboot", {}, issued=now_ms()),
        "parameter unit not allowed": signer.command(args={"unit": "nginx; rm -rf /"}, issued=now_ms()),
    }
    commands.on_answer({"ack": 1, "commands": list(sent.values())})
    results = dict(fake.wait_results(len(sent)))
    commands.stop(2)
    assert {reason: results[c["id"]] for reason, c in sent.items()} == {
        reason: {"state": "rejected", "reason": reason} for reason in sent
    }
    assert calls_of(calls) == []


def test_with_commands_off_every_command_is_rejected_and_nothing_runs(
    tmp_path: Path, fake: FakeAggregator, signer: Signer
) -> None:
    systemctl, calls = stand_in_systemctl(tmp_path)
    commands = _commands(_config(tmp_path, fake, systemctl, **{"commands.enabled": False}), fake, signer)
    commands.start()
    command = signer.command(issued=now_ms())
    commands.on_answer({"ack": 1, "commands": [command]})
    assert fake.wait_results(1) == [(command["id"], {"state": "rejected", "reason": "commands disabled"})]
    commands.stop(2)
    assert calls_of(calls) == []
    assert commands.facts() == {}
    assert fake.polls == 0
    assert not (tmp_path / "state" / "commands").exists()


@pytest.mark.parametrize(
    ("imports", "heavy"),
    [
        # an agent with commands off loads nothing of them (the memory budget holds)
        (
            "edgewatch.agent.daemon, edgewatch.agent.registry",
            ("cryptography", "hashlib", "edgewatch.agent.commands"),
        ),
        # once a command came anyway, it is rejected without loading the checking or the running
        ("edgewatch.agent.commands.service", ("cryptography", "hashlib", "subprocess")),
    ],
)
def test_commands_off_load_nothing_heavy(imports: str, heavy: tuple[str, ...]) -> None:
    code = (
        f"import sys, {imports}; from edgewatch.agent.config import load; load(None, environ={{}});"
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_copy_delivered_twice_runs_once_without_a_replay_report(
    tmp_path: Path, fake: FakeAggregator, signer: Signer
) -> None:
    systemctl, calls = stand_in_systemctl(tmp_path, sleep=0.5)
    commands = _commands(_config(tmp_path, fake, systemctl), fake, signer)
    commands.start()
    command = signer.command(issued=now_ms())
    commands.on_answer({"ack": 1, "commands": [command]})
    commands.receive([command], "poll")  # the long-poll brought the same one while it runs
    results = fake.wait_results(2)
    time.sleep(0.3)
    commands.stop(2)
    assert [b["state"] for _, b in fake.results] == ["running", "succeeded"]
    assert results[1][1]["exit_code"] == 0
    assert calls_of(calls) == ["[restart][nginx.service]"]


def test_nothing_runs_when_the_aggregator_refuses_running(
    tmp_path: Path, fake: FakeAggregator, signer: Signer
) -> None:
    systemctl, calls = stand_in_systemctl(tmp_path)
    fake.result_status["running"] = 409
    commands = _commands(_config(tmp_path, fake, systemctl), fake, signer)
    commands.start()
    commands.on_answer({"ack": 1, "commands": [signer.command(issued=now_ms())]})
    fake.wait_results(1)
    time.sleep(0.5)
    commands.stop(2)
    assert [b["state"] for _, b in fake.results] == ["running"]
    assert calls_of(calls) == []


def test_an_action_of_ones_own_with_a_timeout_and_bounded_output(
    tmp_path: Path, fake: FakeAggregator, signer: Signer
) -> None:
    systemctl, _ = stand_in_systemctl(tmp_path)
    toml = (
        '[[action]]\nname = "nap"\nargv = ["/bin/sleep", "{seconds}"]\nparams = { seconds = ["30"] }\n'
        'timeout = "0.5s"\n'
        '[[action]]\nname = "zeros"\nargv = ["/usr/bin/head", "-c", "100000", "/dev/zero"]\n'
    )
    config = _config(tmp_path, fake, systemctl, toml, **{"commands.max_output": "1KB"})
    commands = _commands(config, fake, signer)
    commands.start()
    nap = signer.command("nap", {"seconds": "30"}, issued=now_ms())
    zeros = signer.command("zeros", {}, issued=now_ms())
    commands.on_answer({"ack": 1, "commands": [nap, zeros]})
    results = fake.wait_results(4)
    commands.stop(2)
    final = {cid: body for cid, body in results if body["state"] != "running"}
    assert final[nap["id"]]["state"] == "failed"
    assert final[nap["id"]]["reason"] == "timeout"
    assert final[nap["id"]]["duration_ms"] < 3000
    assert final[zeros["id"]]["state"] == "succeeded"
    assert final[zeros["id"]]["stdout"] == "\0" * 1024
    assert final[zeros["id"]]["truncated"] is True


def test_reload_agent_reports_what_the_reload_did(
    tmp_path: Path, fake: FakeAggregator, signer: Signer
) -> None:
    systemctl, _ = stand_in_systemctl(tmp_path)
    outcomes = iter([None, "interval (agent.toml): 'fast' is not valid"])
    commands = _commands(
        _config(tmp_path, fake, systemctl), fake, signer, reload=lambda timeout: next(outcomes)
    )
    commands.start()
    first = signer.command("reload-agent", {}, issued=now_ms())
    second = signer.command("reload-agent", {}, issued=now_ms())
    commands.on_answer({"ack": 1, "commands": [first, second]})
    results = [b for _, b in fake.wait_results(4) if b["state"] != "running"]
    commands.stop(2)
    assert results[0]["state"] == "succeeded"
    assert results[1] == {
        "state": "failed",
        "reason": "reload failed: interval (agent.toml): 'fast' is not valid",
        "duration_ms": results[1]["duration_ms"],
    }


def test_the_allowlist_is_advertised_in_the_host_facts(
    tmp_path: Path, fake: FakeAggregator, signer: Signer
) -> None:
    import json

    systemctl, _ = stand_in_systemctl(tmp_path)
    toml = (
        '[[action]]\nname = "grep"\nargv = ["/usr/bin/grep", "-c", "{word}", "/var/log/syslog"]\n'
        'params = { word = "re:[a-z]+" }\n'
    )
    config = _config(
        tmp_path, fake, systemctl, toml, **{"commands.scripts": ["rotate=/usr/local/bin/rotate.sh"]}
    )
    actions = json.loads(_commands(config, fake, signer).facts()["actions"])
    units = {"unit": ["nginx.service", "postgresql.service"]}
    assert actions == [
        {"name": "unit-restart", "params": units},
        {"name": "unit-start", "params": units},
        {"name": "unit-stop", "params": units},
        {"name": "unit-status", "params": units},
        {"name": "reload-agent", "params": {}},
        {"name": "script", "params": {"name": ["rotate"]}},
        {"name": "grep", "params": {"word": "re:[a-z]+"}},
    ]


def test_the_long_poll_stops_promptly(tmp_path: Path, fake: FakeAggregator, signer: Signer) -> None:
    systemctl, _ = stand_in_systemctl(tmp_path)
    commands = _commands(_config(tmp_path, fake, systemctl, **{"commands.poll": True}), fake, signer)
    commands.start()
    deadline = time.monotonic() + 5
    while fake.polls == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.polls == 1  # and the aggregator holds it
    started = time.monotonic()
    commands.stop(1.0)
    assert time.monotonic() - started < 1.5
    assert commands._poller is not None
    assert not commands._poller.is_alive()


def test_results_are_retried_on_server_errors_then_given_up(fake: FakeAggregator) -> None:
    fake.next_statuses = [503, 502]
    reporter = Reporter(HttpClient(fake.url, timeout=5), fake.token, backoff=(0.01, 0.01, 0.01, 0.01))
    assert reporter.submit("c1", {"state": "running"}).wait(5) == 200
    assert [cid for cid, _ in fake.results] == ["c1", "c1", "c1"]
    fake.next_statuses = [500] * 10
    assert reporter.submit("c2", {"state": "running"}).wait(5) is None  # five tries, then lost
    assert [cid for cid, _ in fake.results].count("c2") == 5
    fake.next_statuses = [409]
    assert reporter.submit("c3", {"state": "running"}).wait(5) == 409  # final: not retried
    fake.next_statuses = [413]
    big = {"state": "succeeded", "exit_code": 0, "stdout": "x" * 20_000, "stderr": "", "truncated": False}
    assert reporter.submit("c4", big).wait(5) == 200
    assert fake.results[-1][1]["stdout"] == "x" * 4096  # sent again, cut short
    assert fake.results[-1][1]["truncated"] is True
    reporter.stop(1)


def test_the_long_poll_backs_off_on_errors() -> None:
    from edgewatch.agent.commands.poll import Poller

    from .localservers import HttpServer

    got: list[Any] = []
    with HttpServer({}) as server:  # answers 404 to everything: an aggregator without the endpoint
        poller = Poller(
            HttpClient(server.url, timeout=5), "t", lambda c, s: got.append(c), backoff=(0.05, 0.3)
        )
        poller.start()
        time.sleep(1.0)
        poller.stop(1)
    assert 1 <= poller.polls <= 5
    assert got == []


def test_an_agent_process_with_the_long_poll_exits_within_5_seconds_on_sigterm(
    tmp_path: Path, fake: FakeAggregator, signer: Signer
) -> None:
    import signal

    from edgewatch.agent import identity

    state = tmp_path / "state"
    identity.save(state, identity.Identity(AGENT, fake.url, fake.token, signer.public_b64))
    config = tmp_path / "agent.toml"
    config.write_text(f'state_dir = "{state}"\ninterval = "1s"\n[commands]\nenabled = true\n')
    edgewatch = str(Path(sys.executable).with_name("edgewatch"))
    proc = subprocess.Popen([edgewatch, "agent", "--config", str(config)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while (fake.polls == 0 or not fake.batches) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.polls >= 1
        assert "reload-agent" in fake.batches[-1].host["actions"]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert time.monotonic() - started < 5
    finally:
        proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def test_an_agent_with_commands_on_and_no_pinned_key_does_not_start(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'aggregator = "http://127.0.0.1:9"\ntoken = "t"\nstate_dir = "{tmp_path}"\n'
        "[commands]\nenabled = true\n"
    )
    edgewatch = str(Path(sys.executable).with_name("edgewatch"))
    done = subprocess.run(
        [edgewatch, "agent", "--config", str(config)], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 2
    assert "commands.enabled" in done.stderr
    assert "enroll" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
