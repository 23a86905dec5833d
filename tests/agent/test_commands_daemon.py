"""Remote commands inside the agent's loop: they come in push answers, the allowlist goes out in the
host facts, and reload-agent reloads as SIGHUP does."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgewatch.agent import identity
from edgewatch.agent.config import AgentConfig, load
from edgewatch.agent.daemon import Agent, Setup

from .commandkit import AGENT, FakeAggregator, Signer, calls_of, stand_in_systemctl
from .test_daemon import Counting


@pytest.fixture
def fake() -> Iterator[FakeAggregator]:
    with FakeAggregator(via_push=True) as f:
        yield f


def test_commands_in_push_answers_run_and_the_actions_are_advertised(
    tmp_path: Path, fake: FakeAggregator
) -> None:
    signer = Signer()
    state = tmp_path / "state"
    identity.save(state, identity.Identity(AGENT, fake.url, fake.token, signer.public_b64))
    systemctl, calls = stand_in_systemctl(tmp_path)
    path = tmp_path / "agent.toml"
    path.write_text(
        f'state_dir = "{state}"\ninterval = "1s"\n'
        f'[commands]\nenabled = true\npoll = false\nunits = ["nginx.service"]\nsystemctl = "{systemctl}"\n'
    )
    loads: list[AgentConfig] = []

    def reload() -> AgentConfig:
        loads.append(load(path, environ={}))
        return loads[-1]

    agent = Agent(
        load(path, environ={}), lambda c: Setup([Counting()], lambda now: {"hostname": "h"}), reload=reload
    )
    thread = threading.Thread(target=agent.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not fake.batches and time.monotonic() < deadline:
            time.sleep(0.05)
        host = fake.batches[0].host
        assert host["hostname"] == "h"
        assert json.loads(host["actions"])[0] == {
            "name": "unit-restart",
            "params": {"unit": ["nginx.service"]},
        }
        now = int(time.time() * 1000)
        restart = signer.command(issued=now)
        fake.issue(restart)
        results = fake.wait_results(2)
        assert [b["state"] for _, b in results] == ["running", "succeeded"]
        assert calls_of(calls) == ["[restart][nginx.service]"]
        # the reload picks up a new unit, and the next frames advertise it
        path.write_text(path.read_text().replace('["nginx.service"]', '["nginx.service", "php-fpm.service"]'))
        fake.issue(signer.command("reload-agent", {}, issued=now))
        results = fake.wait_results(4)
        assert results[3][1]["state"] == "succeeded", results[3]
        assert len(loads) == 1
        fake.issue(signer.command(args={"unit": "php-fpm.service"}, issued=int(time.time() * 1000)))
        assert fake.wait_results(6)[5][1]["state"] == "succeeded"
        assert calls_of(calls)[-1] == "[restart][php-fpm.service]"
        deadline = time.monotonic() + 5
        while "php-fpm" not in fake.batches[-1].host["actions"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "php-fpm.service" in json.loads(fake.batches[-1].host["actions"])[0]["params"]["unit"]
    finally:
        started = time.monotonic()
        agent.stop()
        agent._wake.set()
        thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5


def test_an_agent_with_commands_off_rejects_what_comes_and_advertises_nothing(
    tmp_path: Path, fake: FakeAggregator
) -> None:
    signer = Signer()
    state = tmp_path / "state"
    identity.save(state, identity.Identity(AGENT, fake.url, fake.token, signer.public_b64))
    systemctl, calls = stand_in_systemctl(tmp_path)
    path = tmp_path / "agent.toml"
    path.write_text(f'state_dir = "{state}"\ninterval = "1s"\n[commands]\nsystemctl = "{systemctl}"\n')
    agent = Agent(load(path, environ={}), lambda c: Setup([Counting()], lambda now: {"hostname": "h"}))
    assert agent.commands is None
    thread = threading.Thread(target=agent.run)
    thread.start()
    try:
        command = signer.command(issued=int(time.time() * 1000))
        fake.issue(command)
        assert fake.wait_results(1) == [(command["id"], {"state": "rejected", "reason": "commands disabled"})]
        assert all("actions" not in b.host for b in fake.batches)
    finally:
        agent.stop()
        agent._wake.set()
        thread.join(5)
    assert not thread.is_alive()
    assert calls_of(calls) == []
