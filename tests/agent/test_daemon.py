"""The agent's loop in-process: a failing disk, a failing reload, ticks, against the real receiver."""

from __future__ import annotations

import errno
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from edgewatch.agent.collectors.base import Sample, SeriesCache
from edgewatch.agent.config import AgentConfig, load
from edgewatch.agent.daemon import Agent, Setup

from .conftest import ReceiverProcess

CACHE = SeriesCache()


class Counting:
    name = "counting"
    interval = 0.0

    def __init__(self) -> None:
        self.n = 0

    def collect(self, now: float) -> Sequence[Sample]:
        self.n += 1
        return [(CACHE.counter("test_ticks_total"), self.n)]


class Unstartable(Counting):
    name = "plugin"

    def start(self) -> None:
        raise ValueError("127.0.0.1:9 is in use")


def _config(tmp: Path, receiver: ReceiverProcess, **overrides: object) -> AgentConfig:
    values = {"aggregator": receiver.url, "token": receiver.token, "state_dir": str(tmp / "state")}
    values.update(overrides)
    return load(None, environ={}, overrides=values)


def _build(config: AgentConfig) -> Setup:
    return Setup([Counting()], lambda now: {"hostname": "test-host"})


def test_a_full_disk_does_not_stop_the_agent(tmp_path: Path, receiver: ReceiverProcess) -> None:
    agent = Agent(_config(tmp_path, receiver), _build)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    agent.spool.put = full  # type: ignore[method-assign]
    agent.sender.start()
    try:
        for t in range(3):  # ticks some time apart, as they are
            agent.tick(1_700_000_000.0 + t)
            receiver.wait_for(t + 1)
        frames = receiver.received()
        assert [f["seq"] for f in frames] == [1, 2, 3]  # pushed from memory
        assert agent.spool_errors == 3
    finally:
        agent.shutdown()


def test_a_reload_whose_collectors_cannot_start_keeps_the_running_ones(
    tmp_path: Path, receiver: ReceiverProcess
) -> None:
    builds = iter([Setup([Counting()], lambda now: {}), Setup([Unstartable()], lambda now: {})])
    config = _config(tmp_path, receiver)
    agent = Agent(config, lambda config: next(builds), reload=lambda: config)
    before = agent.setup
    agent.request_reload()
    agent._do_reload()
    assert agent.setup is before
    agent.tick(1_700_000_000.0)
    assert len(agent.spool) == 1  # still sampling with the old collectors
    agent.shutdown()


def test_ticks_are_aligned_and_stop_promptly(tmp_path: Path, receiver: ReceiverProcess) -> None:
    agent = Agent(_config(tmp_path, receiver, interval="1s"), _build)
    thread = threading.Thread(target=agent.run)
    thread.start()
    try:
        frames = receiver.wait_for(3, timeout=10)
        assert all(f["timestamps"][0] % 1000 == 0 for f in frames)
    finally:
        started = time.monotonic()
        agent.stop()
        agent._wake.set()
        thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_sigterm_during_a_slow_tick_exits_within_5_seconds(tmp_path: Path, receiver: ReceiverProcess) -> None:
    import socket

    stall = socket.create_server(("127.0.0.1", 0))  # accepts, never answers: a check that hangs
    port = stall.getsockname()[1]
    config = tmp_path / "agent.toml"
    config.write_text(
        f'aggregator = "{receiver.url}"\ntoken = "{receiver.token}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'interval = "1s"\n[[check]]\nname = "stuck"\nurl = "http://127.0.0.1:{port}/"\ntimeout = 30\n'
    )
    edgewatch = str(Path(sys.executable).with_name("edgewatch"))
    proc = subprocess.Popen([edgewatch, "agent", "--config", str(config)], stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # a tick is now waiting for the stuck check
        started = time.monotonic()
        proc.terminate()
        assert proc.wait(10) == 0
        assert time.monotonic() - started < 5
    finally:
        proc.kill()
        proc.wait()
        stall.close()
