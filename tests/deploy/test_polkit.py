"""The polkit rule for remote commands, run by node against polkit's rule API as polkitd calls it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

RULE = Path(__file__).parents[2] / "packaging" / "polkit" / "50-edgewatch-agent.rules"
HARNESS = """
const fs = require("fs");
const rules = [];
const polkit = {Result: {YES: "yes", NO: "no", NOT_HANDLED: null}, addRule: (f) => rules.push(f)};
eval(fs.readFileSync(process.argv[1], "utf8"));
const cases = JSON.parse(process.argv[2]);
const out = cases.map(([id, user, unit, verb]) => {
  const action = {id, lookup: (k) => ({unit, verb})[k]};
  return rules[0](action, {user});
});
console.log(JSON.stringify(out));
"""
MANAGE = "org.freedesktop.systemd1.manage-units"


@pytest.mark.skipif(shutil.which("node") is None, reason="node runs the rule (installed with npm by make)")
def test_the_agent_user_may_manage_only_the_listed_units_and_verbs() -> None:
    cases = [
        (MANAGE, "edgewatch-agent", "nginx.service", "restart"),
        (MANAGE, "edgewatch-agent", "nginx.service", "start"),
        (MANAGE, "edgewatch-agent", "nginx.service", "stop"),
        (MANAGE, "edgewatch-agent", "sshd.service", "restart"),
        (MANAGE, "edgewatch-agent", "nginx.service", "reload-or-restart"),
        (MANAGE, "edgewatch-agent", "nginx.service; rm -rf /", "restart"),
        (MANAGE, "alice", "nginx.service", "restart"),
        ("org.freedesktop.login1.reboot", "edgewatch-agent", None, None),
        ("org.freedesktop.systemd1.manage-unit-files", "edgewatch-agent", "nginx.service", None),
    ]
    done = subprocess.run(
        ["node", "-e", HARNESS, str(RULE), json.dumps(cases)], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == ["yes", "yes", "yes", "no", "no", "no", None, None, None]
