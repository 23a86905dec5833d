"""The real `edgewatch agent` process against the real receiver: outages, kill -9, a full spool."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ReceiverProcess

EDGEWATCH = str(Path(sys.executable).with_name("edgewatch"))
pytestmark = pytest.mark.slow


def _config(tmp: Path, receiver: ReceiverProcess, **extra: Any) -> Path:
    lines = [
        f'aggregator = "{receiver.url}"',
        f'token = "{receiver.token}"',
        f'state_dir = "{tmp / "state"}"',
        'interval = "1s"',
        'timeout = "2s"',
    ]
    sections: dict[str, list[str]] = {}
    for key, value in extra.items():
        section, _, name = key.rpartition("__")
        line = f"{name or key} = {json.dumps(value)}"
        if section:
            sections.setdefault(section, []).append(line)
        else:
            lines.append(line)
    for section, body in sections.items():
        lines += [f"[{section}]", *body]
    path = tmp / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class AgentProcess:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [EDGEWATCH, "agent", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._close()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self) -> None:
        if self.proc is not None:
            assert self.proc.stderr is not None
            self.stderr = self.proc.stderr.read().decode()
            self.proc.stderr.close()
            self.proc = None


@pytest.fixture
def agent_factory() -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for a in started:
        a.kill()


def _start(started: list[AgentProcess], config: Path) -> AgentProcess:
    a = AgentProcess(config)
    a.start()
    started.append(a)
    return a


def _edgewatch(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `edgewatch` command to the end and capture what it says."""
    return subprocess.run([EDGEWATCH, *args], capture_output=True, text=True, timeout=60, check=False)


def _by_boot(frames: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for f in frames:
        out.setdefault(f["boot"], []).append(f)
    return out


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_once_prints_one_sample_as_json_lines() -> None:
    result = _edgewatch("agent", "--once")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    names = {r["name"] for r in rows}
    assert {"node_load1", "node_memory_MemAvailable_bytes", "node_cpu_seconds_total"} <= names
    assert all(set(r) == {"name", "labels", "value"} for r in rows)
    total = next(r["value"] for r in rows if r["name"] == "node_memory_MemTotal_bytes")
    assert total == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") or total > 0


def test_check_config(tmp_path: Path, receiver: ReceiverProcess) -> None:
    good = _config(tmp_path, receiver)
    result = _edgewatch("agent", "--config", str(good), "--check-config")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["interval"] == 1.0
    assert shown["token"] == "********"  # secrets are not printed
    bad = tmp_path / "bad.toml"
    bad.write_text('interval = "soon"\n')
    result = _edgewatch("agent", "--config", str(bad), "--check-config")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "interval" in result.stderr


def test_enroll_stores_the_identity_and_the_agent_uses_it(
    tmp_path: Path, receiver: ReceiverProcess, agent_factory: list[AgentProcess]
) -> None:
    state = tmp_path / "state"
    refused = _edgewatch("enroll", receiver.url, "wrong", "--state-dir", str(state))
    assert refused.returncode == 1
    assert "refused" in refused.stderr
    assert refused.stderr.count("\n") == 1
    ok = _edgewatch("enroll", receiver.url, "enroll-me", "--state-dir", str(state), "--name", "db-7")
    assert ok.returncode == 0, ok.stderr
    identity = json.loads((state / "identity.json").read_text())
    assert identity["agent_id"] == "db-7"
    assert oct((state / "identity.json").stat().st_mode & 0o777) == "0o600"
    config = tmp_path / "agent.toml"
    config.write_text(f'state_dir = "{state}"\ninterval = "1s"\n')  # no URL, no token: from enrollment
    _start(agent_factory, config)
    frames = receiver.wait_for(2)
    assert frames[0]["agent"] == "db-7"


def test_frames_arrive_key_then_deltas(
    tmp_path: Path, receiver: ReceiverProcess, agent_factory: list[AgentProcess]
) -> None:
    _start(agent_factory, _config(tmp_path, receiver))
    frames = receiver.wait_for(6, timeout=20)
    assert frames[0]["kind"] == "key"
    assert {f["kind"] for f in frames[1:]} == {"delta"}
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    steps = {b["timestamps"][0] - a["timestamps"][0] for a, b in itertools.pairwise(frames)}
    assert steps <= {1000, 2000}  # aligned one-second ticks (2 s if a tick was skipped)
    assert frames[0]["host"]["hostname"] == os.uname().nodename


def test_an_outage_loses_nothing(
    tmp_path: Path, receiver: ReceiverProcess, agent_factory: list[AgentProcess]
) -> None:
    """The receiver is down for a minute, then up: every sample arrives exactly once."""
    _start(agent_factory, _config(tmp_path, receiver))
    receiver.wait_for(3, timeout=20)
    receiver.stop()
    before = len(receiver.received())
    time.sleep(60)
    receiver.start()

    def caught_up() -> bool:
        seqs = [f["seq"] for f in receiver.received()]
        return bool(seqs) and max(seqs) >= 62 and len(set(seqs)) == max(seqs)

    _wait(caught_up, 60, "the back-log after the outage")  # the back-off is capped at 30 s
    frames = receiver.received()
    seqs = [f["seq"] for f in frames]
    assert len(seqs) == len(set(seqs)), "a frame was stored twice"
    assert sorted(seqs) == list(range(1, max(seqs) + 1)), "a frame is missing"
    assert max(seqs) >= 62
    ts = [f["timestamps"][0] for f in sorted(frames, key=lambda f: f["seq"])]
    assert ts == sorted(ts)
    after = [f["seq"] for f in frames[before:]]
    live, backlog = [s for s in after if s >= after[0]], [s for s in after if s < after[0]]
    assert backlog == sorted(backlog), "the back-log was not sent oldest first"
    assert live == sorted(live), "live frames went out of order"
    assert len(backlog) >= 55


def test_kill_9_while_pushing_loses_nothing_and_repeats_nothing(
    tmp_path: Path, receiver: ReceiverProcess, agent_factory: list[AgentProcess]
) -> None:
    config = _config(tmp_path, receiver)
    first = _start(agent_factory, config)
    receiver.wait_for(3, timeout=20)
    receiver.control(delay=1.5)  # pushes in flight when the kill lands
    time.sleep(3.2)
    first.kill()
    spooled = len(list((tmp_path / "state" / "spool").glob("*.frame")))
    receiver.control()
    _start(agent_factory, config)
    _wait(
        lambda: (
            len(_by_boot(receiver.received())) == 2
            and not list((tmp_path / "state" / "spool").glob("*.frame"))
        ),
        20,
        "the restarted agent to drain the spool and push its own frames",
    )
    boots = _by_boot(receiver.received())
    old = sorted(f["seq"] for f in next(iter(boots.values())))
    assert old == list(range(1, old[-1] + 1)), "an unacknowledged frame of the killed agent was lost"
    assert spooled >= 1
    assert len(receiver.duplicates()) <= 1  # at most the frame whose answer the kill cut off is sent again


def test_a_full_spool_drops_the_oldest_and_says_how_many(
    tmp_path: Path, receiver: ReceiverProcess, agent_factory: list[AgentProcess]
) -> None:
    config = _config(tmp_path, receiver, spool__max_bytes=4096, collectors__disabled=["processes", "sensors"])
    _start(agent_factory, config)
    receiver.wait_for(2, timeout=20)
    receiver.control(status=503)
    time.sleep(25)
    receiver.control()
    _wait(lambda: not list((tmp_path / "state" / "spool").glob("*.frame")), 30, "the spool to drain")
    time.sleep(2)
    frames = sorted(receiver.received(), key=lambda f: f["seq"])
    seqs = [f["seq"] for f in frames]
    missing = sorted(set(range(1, seqs[-1] + 1)) - set(seqs))
    assert missing, "the spool should have overflowed"
    assert missing == list(range(missing[0], missing[-1] + 1)), "the oldest should go first, as one run"
    dropped = max(f["values"]["edgewatch_agent_spool_dropped_samples_total{}"][0] for f in frames)
    samples = {f["seq"]: f["samples"] for f in frames}
    assert dropped == sum(samples.get(s - 1, samples[seqs[-1]]) for s in missing) or dropped >= len(missing)


def test_sigterm_flushes_and_exits_quickly(
    tmp_path: Path, receiver: ReceiverProcess, agent_factory: list[AgentProcess]
) -> None:
    config = _config(tmp_path, receiver, batch_samples=30)
    a = _start(agent_factory, config)
    time.sleep(4.5)  # four samples pending in memory, none sent yet
    assert receiver.received() == []
    started = time.monotonic()
    a.signal(signal.SIGTERM)
    assert a.wait(10) == 0
    assert time.monotonic() - started < 5
    frames = receiver.received()
    spooled = list((tmp_path / "state" / "spool").glob("*.frame"))
    assert len(frames) + len(spooled) == 1  # the pending samples were flushed as one batch
    assert sum(f["samples"] for f in frames) >= 3 * 50 or spooled


def test_sighup_reloads_the_configuration(
    tmp_path: Path, receiver: ReceiverProcess, agent_factory: list[AgentProcess]
) -> None:
    config = _config(tmp_path, receiver)
    a = _start(agent_factory, config)
    receiver.wait_for(2, timeout=20)
    config.write_text(config.read_text().replace('interval = "1s"', 'interval = "2s"'))
    a.signal(signal.SIGHUP)
    time.sleep(7)
    frames = receiver.received()
    last = [f["timestamps"][0] for f in frames[-3:]]
    assert {b - c for c, b in itertools.pairwise(last)} == {2000}
    config.write_text("interval = [broken\n")
    a.signal(signal.SIGHUP)
    time.sleep(3)
    count = len(receiver.received())
    time.sleep(3)
    assert len(receiver.received()) > count  # a bad reload keeps the running configuration


def test_enroll_verifies_tls_and_takes_a_private_ca(tmp_path: Path) -> None:
    import datetime

    from .localservers import self_signed

    self_signed(tmp_path, datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30))
    receiver = ReceiverProcess(
        tmp_path, enroll_token="enroll-me", tls=(tmp_path / "cert.pem", tmp_path / "key.pem")
    )
    receiver.start()
    try:
        state = tmp_path / "state"
        untrusted = _edgewatch("enroll", receiver.url, "enroll-me", "--state-dir", str(state))
        assert untrusted.returncode == 1
        assert "certificate verify failed" in untrusted.stderr
        assert not (state / "identity.json").exists()
        trusted = _edgewatch(
            "enroll",
            receiver.url,
            "enroll-me",
            "--state-dir",
            str(state),
            "--ca-file",
            str(tmp_path / "cert.pem"),
        )
        assert trusted.returncode == 0, trusted.stderr
        assert json.loads((state / "identity.json").read_text())["ca_file"] == str(tmp_path / "cert.pem")
    finally:
        receiver.stop()


def test_a_misbehaving_aggregator_never_stops_the_agent(
    tmp_path: Path, receiver: ReceiverProcess, agent_factory: list[AgentProcess]
) -> None:
    a = _start(agent_factory, _config(tmp_path, receiver))
    receiver.wait_for(2, timeout=20)
    for fault in (
        {"garbage": True},
        {"status": 500},
        {"forget": True},
        {"delay": 2},
        {"status": 429, "retry_after": 1},
    ):
        receiver.control(**fault)
        time.sleep(2.5)
    receiver.control()
    assert a.proc is not None
    assert a.proc.poll() is None, "the agent died"

    def complete() -> bool:
        seqs = [f["seq"] for f in receiver.received()]
        return len(seqs) == len(set(seqs)) == max(seqs) and not list(
            (tmp_path / "state" / "spool").glob("*.frame")
        )

    _wait(complete, 40, "every frame to arrive once after the faults")
