"""Checking remote commands: each documented check refuses with its reason, in the documented order;
nonces survive a restart and a damaged nonce file lets no replay through."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.agent.commands.actions import Action, allowlist, expand, parse_actions
from edgewatch.agent.commands.nonces import NonceStore, parse, render
from edgewatch.agent.commands.verify import Accepted, Checker, Policy, Rejected, public_key

from .commandkit import AGENT, NOW, NOW_MS, Signer

ACTIONS = allowlist(
    units=["nginx.service", "postgresql.service"],
    scripts={"rotate-logs": "/usr/local/lib/edgewatch/rotate-logs.sh"},
    systemctl="/usr/bin/systemctl",
    actions=parse_actions(
        [
            {
                "name": "flush-cache",
                "argv": ["/usr/bin/varnishadm", "ban", "req.url ~ {pattern}"],
                "params": {"pattern": ["^/static/", "^/img/"]},
                "timeout": "10s",
            },
            {
                "name": "count",
                "argv": ["/usr/bin/grep", "-c", "{word}", "/var/log/syslog"],
                "params": {"word": "re:[a-z]+"},
            },
        ]
    ),
)


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def signer() -> Signer:
    return Signer()


def checker(state: Path, signer: Signer, clock: Clock | None = None, **policy: Any) -> Checker:
    return Checker(
        agent_id=AGENT,
        key=public_key(signer.public_b64),
        nonces=NonceStore(state / "commands", max_entries=policy.pop("max_entries", 10_000)),
        policy=Policy(policy.pop("actions", ACTIONS), policy.pop("max_skew", 30.0), 60.0),
        clock=clock or Clock(),
    )


def reason(verdict: Accepted | Rejected) -> str:
    return verdict.reason if isinstance(verdict, Rejected) else "accepted"


def test_a_valid_command_gives_its_fixed_argv(tmp_path: Path, signer: Signer) -> None:
    verdict = checker(tmp_path, signer).check(signer.command())
    assert isinstance(verdict, Accepted)
    assert verdict.argv == ("/usr/bin/systemctl", "restart", "nginx.service")
    assert verdict.timeout == 60.0
    flush = checker(tmp_path, signer).check(signer.command("flush-cache", {"pattern": "^/img/"}))
    assert isinstance(flush, Accepted)
    assert flush.argv == ("/usr/bin/varnishadm", "ban", "req.url ~ ^/img/")  # one item, never split
    assert flush.timeout == 10.0
    script = checker(tmp_path, signer).check(signer.command("script", {"name": "rotate-logs"}))
    assert isinstance(script, Accepted)
    assert script.argv == ("/usr/local/lib/edgewatch/rotate-logs.sh",)


def test_a_forged_signature_is_refused(tmp_path: Path, signer: Signer) -> None:
    check = checker(tmp_path, signer).check
    assert reason(check(Signer().command())) == "bad signature"  # signed by another key
    tampered = signer.command()
    tampered["args"] = {"unit": "postgresql.service"}
    assert reason(check(tampered)) == "bad signature"
    unsigned = signer.command()
    del unsigned["signature"]
    assert reason(check(unsigned)) == "bad signature"
    garbage = {**signer.command(), "signature": "not base64url!"}
    assert reason(check(garbage)) == "bad signature"
    missing = signer.command()
    del missing["nonce"]
    assert reason(check(missing)) == "bad signature"
    padded = signer.command()  # padded base64url is as good as unpadded
    padded["signature"] += "=" * (-len(padded["signature"]) % 4)
    assert reason(check(padded)) == "accepted"


def test_the_signature_is_checked_first(tmp_path: Path, signer: Signer) -> None:
    forged = Signer().command(agent="db-1", issued=NOW_MS - 600_000, lifetime=120_000, action="rm-rf")
    assert reason(checker(tmp_path, signer).check(forged)) == "bad signature"


def test_another_agents_command_is_refused(tmp_path: Path, signer: Signer) -> None:
    assert reason(checker(tmp_path, signer).check(signer.command(agent="db-1"))) == "for another agent"


@pytest.mark.parametrize(
    ("issued", "lifetime", "expected"),
    [
        (NOW_MS - 120_000, 60_000, "expired"),
        (NOW_MS - 60_000, 30_000, "expired"),  # expired 30 s ago: past a 30 s skew... by a hair
        (NOW_MS - 50_000, 30_000, "accepted"),  # expired 20 s ago: within the skew
        (NOW_MS + 60_000, 30_000, "issued in the future"),
        (NOW_MS + 20_000, 30_000, "accepted"),  # 20 s ahead: within the skew
        (NOW_MS, 61_000, "lifetime over 60 s"),
        (NOW_MS, 60_000, "accepted"),
    ],
)
def test_time_checks(tmp_path: Path, signer: Signer, issued: int, lifetime: int, expected: str) -> None:
    check = checker(tmp_path, signer, Clock(NOW + 0.001)).check
    assert reason(check(signer.command(issued=issued, lifetime=lifetime))) == expected


def test_a_replay_is_refused_also_after_a_restart(tmp_path: Path, signer: Signer) -> None:
    command = signer.command()
    first = checker(tmp_path, signer)
    assert reason(first.check(command)) == "accepted"
    assert reason(first.check(command)) == "replayed"
    assert reason(first.check({**signer.sign({**command, "id": "other-id"})})) == "replayed"  # same nonce
    odd = signer.command(nonce="é\n " * 85 + "x")  # 256 characters, none of them plain
    assert reason(first.check(odd)) == "accepted"
    restarted = checker(tmp_path, signer)  # a new process on the same state dir
    assert reason(restarted.check(command)) == "replayed"
    assert reason(restarted.check(odd)) == "replayed"


def test_the_nonce_is_spent_even_when_the_action_is_refused(tmp_path: Path, signer: Signer) -> None:
    """Step 4 comes before step 5: a command refused for its action cannot come back after a reload."""
    command = signer.command("unit-restart", {"unit": "sshd.service"})
    assert reason(checker(tmp_path, signer).check(command)) == "parameter unit not allowed"
    more_units = allowlist(units=["sshd.service"], scripts={}, systemctl="/usr/bin/systemctl", actions=[])
    assert reason(checker(tmp_path, signer, actions=more_units).check(command)) == "replayed"


def test_an_action_not_on_the_allowlist_is_refused(tmp_path: Path, signer: Signer) -> None:
    check = checker(tmp_path, signer).check
    assert reason(check(signer.command("reboot", {}))) == "action not allowed"
    no_units = allowlist(units=[], scripts={}, systemctl="/usr/bin/systemctl", actions=[])
    assert reason(checker(tmp_path, signer, actions=no_units).check(signer.command())) == "action not allowed"


@pytest.mark.parametrize(
    ("action", "args", "expected"),
    [
        ("unit-restart", {"unit": "sshd.service"}, "parameter unit not allowed"),
        ("unit-restart", {"unit": "nginx; rm -rf /"}, "parameter unit not allowed"),
        ("unit-restart", {"unit": "nginx.service; rm -rf /"}, "parameter unit not allowed"),
        ("unit-restart", {"unit": "-rf"}, "parameter unit not allowed"),
        ("unit-restart", {"unit": "--root=/"}, "parameter unit not allowed"),
        ("unit-restart", {"unit": ["nginx.service"]}, "parameter unit not allowed"),
        ("unit-restart", {}, "parameter unit not allowed"),
        ("unit-restart", {"unit": "nginx.service", "extra": "x"}, "parameter extra not allowed"),
        ("count", {"word": "-rf"}, "parameter word not allowed"),  # a pattern never takes an option
        ("count", {"word": "abc def"}, "parameter word not allowed"),  # full match only
        ("count", {"word": "abc\ndef"}, "parameter word not allowed"),
        ("count", {"word": "abc"}, "accepted"),
        ("script", {"name": "/bin/sh"}, "parameter name not allowed"),
        ("flush-cache", {"pattern": "^/"}, "parameter pattern not allowed"),
    ],
)
def test_parameters_outside_their_set_are_refused(
    tmp_path: Path, signer: Signer, action: str, args: dict[str, Any], expected: str
) -> None:
    assert reason(checker(tmp_path, signer).check(signer.command(action, args))) == expected


def test_a_signed_command_with_wrong_types_is_malformed(tmp_path: Path, signer: Signer) -> None:
    check = checker(tmp_path, signer).check
    command = signer.command()
    assert reason(check(signer.sign({**command, "issued": str(NOW_MS)}))) == "malformed command"
    assert reason(check(signer.sign({**command, "nonce": ""}))) == "malformed command"
    assert reason(check(signer.sign({**command, "expires": NOW_MS - 1}))) == "malformed command"


def test_a_corrupt_nonce_file_lets_no_replay_through(tmp_path: Path, signer: Signer) -> None:
    command = signer.command()
    assert reason(checker(tmp_path, signer).check(command)) == "accepted"
    path = tmp_path / "commands" / "nonces"
    lines = path.read_text().split("\n")
    lines[1] = lines[1][:-1] + ("B" if lines[1][-1] == "A" else "A")  # still a well-formed nonce line
    data = "\n".join(lines).encode()
    path.write_bytes(data)
    clock = Clock()
    restarted = checker(tmp_path, signer, clock)
    assert reason(restarted.check(command)) == "nonce store unreadable"
    assert reason(restarted.check(signer.command())) == "nonce store unreadable"  # fails closed for all
    assert (tmp_path / "commands" / "nonces.corrupt").read_bytes() == data
    again = checker(tmp_path, signer, clock)  # a restart does not lift the fence
    assert reason(again.check(signer.command())) == "nonce store unreadable"
    clock.now = NOW + 121  # a lifetime plus twice the skew later: all it could have held has expired
    assert reason(again.check(command)) == "expired"
    fresh = signer.command(issued=int(clock.now * 1000))
    assert reason(again.check(fresh)) == "accepted"
    assert reason(checker(tmp_path, signer, clock).check(fresh)) == "replayed"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00" * 64,
        b"edgewatch-nonces 1\n",
        b"edgewatch-nonces 1\ncheck 00000000\n",
        b"edgewatch-nonces 1\n123 zz\n",
        render({"0" * 32: NOW_MS}, 0)[:-1],  # the last byte lost
        render({"0" * 32: NOW_MS}, 0).replace(b"edgewatch", b"edgewatcH"),
    ],
)
def test_every_kind_of_damage_fails_closed(tmp_path: Path, signer: Signer, content: bytes) -> None:
    (tmp_path / "commands").mkdir()
    (tmp_path / "commands" / "nonces").write_bytes(content)
    assert reason(checker(tmp_path, signer).check(signer.command())) == "nonce store unreadable"


def test_an_unwritable_nonce_store_refuses(tmp_path: Path, signer: Signer) -> None:
    (tmp_path / "commands" / "nonces.tmp").mkdir(parents=True)  # where the new file is written first
    assert reason(checker(tmp_path, signer).check(signer.command())) == "nonce store unwritable"


def test_nonces_are_pruned_after_expiry_plus_skew_and_bounded(tmp_path: Path, signer: Signer) -> None:
    clock = Clock()
    check = checker(tmp_path, signer, clock, max_entries=3).check
    for _ in range(3):
        assert reason(check(signer.command())) == "accepted"
    assert reason(check(signer.command())) == "nonce store full"
    clock.now = NOW + 61  # the first three expired 31 s ago: more than the 30 s skew
    later = int(clock.now * 1000)
    assert reason(check(signer.command(issued=later))) == "accepted"
    entries, fence = parse((tmp_path / "commands" / "nonces").read_text())
    assert len(entries) == 1
    assert fence == 0


def test_the_nonce_file_is_on_disk_before_the_answer(tmp_path: Path, signer: Signer) -> None:
    check = checker(tmp_path, signer).check
    command = signer.command()
    assert reason(check(command)) == "accepted"
    entries, _ = parse((tmp_path / "commands" / "nonces").read_text())
    assert list(entries.values()) == [command["expires"]]


def test_the_pinned_key_must_be_an_ed25519_key() -> None:
    with pytest.raises(ValueError, match="enroll"):
        public_key(base64.b64encode(b"short").decode())


# -- the argv a command can produce -----------------------------------------------------------

VALUES = st.one_of(
    st.sampled_from(
        ["nginx.service", "postgresql.service", "^/static/", "^/img/", "rotate-logs", "abc", "-rf"]
    ),
    st.text(max_size=30),
)
NAMES = st.sampled_from(["unit", "pattern", "name", "word", "extra"])


@given(
    action=st.sampled_from(sorted(ACTIONS)),
    args=st.dictionaries(NAMES, st.one_of(VALUES, st.integers(), st.none()), max_size=3),
)
def test_argv_holds_only_declared_values_and_has_the_declared_length(
    action: str, args: dict[str, Any]
) -> None:
    spec: Action = ACTIONS[action]
    argv = expand(spec, args)
    if isinstance(argv, str):
        assert argv.startswith("parameter ") or argv == "malformed command"
        return
    assert len(argv) == len(spec.argv)
    for template, item in zip(spec.argv, argv):
        if "{" not in template:
            assert item == template
    if action.startswith("unit-"):
        assert argv[:2] == ("/usr/bin/systemctl", action.removeprefix("unit-"))
        assert argv[2] in ("nginx.service", "postgresql.service")
    elif action == "flush-cache":
        assert argv[2] in ("req.url ~ ^/static/", "req.url ~ ^/img/")
    elif action == "script":
        assert argv == ("/usr/local/lib/edgewatch/rotate-logs.sh",)
    elif action == "count":
        assert argv[2].isalpha()
        assert argv[2].islower()
        assert argv[2].isascii()
    else:
        assert argv == ()
