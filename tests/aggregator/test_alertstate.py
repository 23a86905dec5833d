"""The alert lifecycle: hand-written sequences, and a Hypothesis state machine for its promises
(no resolve without a firing, no firing before ``for``, hysteresis, restart safety, transitions)."""

from __future__ import annotations

import json

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from edgewatch.aggregator.alertstate import (
    AlertState,
    Transition,
    evaluate,
    fingerprint,
    new_state,
    render_annotations,
    retire,
)
from edgewatch.aggregator.rules import Rule, load_rules

T0 = 1_764_000_000_000
LABELS = {"host": "web-1", "mountpoint": "/"}


def make_rule(fields: str) -> Rule:
    rule = load_rules(f'[[rule]]\nname = "r"\nmetric = "m"\n{fields}\n', defaults={}).get("r")
    assert rule is not None
    return rule


def run(rule: Rule, steps: list[tuple[int, float | None]]) -> tuple[AlertState, list[Transition]]:
    """Evaluate ``(seconds after T0, value)`` in turn; the final state and every transition."""
    state, seen = None, []
    for seconds, value in steps:
        state, transitions = evaluate(state, rule, value, T0 + seconds * 1000, labels=LABELS)
        seen += transitions
    assert state is not None
    return state, seen


def moves(transitions: list[Transition]) -> list[tuple[str, str, str | None]]:
    return [(t.from_state, t.to_state, t.level) for t in transitions]


def test_for_zero_fires_at_once_and_follows_the_level() -> None:
    rule = make_rule("warning = 80\ncritical = 95\nclear = 70")
    state, seen = run(rule, [(0, 50), (10, 85), (20, 97), (30, 90), (40, 75), (50, 70)])
    assert moves(seen) == [
        ("inactive", "firing", "warning"),
        ("firing", "firing", "critical"),
        ("firing", "firing", "warning"),
        ("firing", "resolved", "warning"),
    ]
    assert [t.at for t in seen] == [T0 + 10_000, T0 + 20_000, T0 + 30_000, T0 + 50_000]
    assert [t.value for t in seen] == [85, 97, 90, 70]
    assert state.state == "resolved"
    assert state.resolved_at == T0 + 50_000
    assert state.fired_at == T0 + 10_000


def test_hysteresis_keeps_firing_between_clear_and_threshold() -> None:
    rule = make_rule("warning = 80\nclear = 70")
    state, seen = run(rule, [(0, 85), (10, 79), (20, 71), (30, 75)])
    assert moves(seen) == [("inactive", "firing", "warning")]
    assert state.state == "firing"
    assert state.level == "warning"
    assert state.value == 75


def test_for_holds_the_alert_pending() -> None:
    rule = make_rule('warning = 80\nfor = "1m"')
    state, seen = run(rule, [(0, 85), (30, 90), (59, 90)])
    assert state.state == "pending"
    assert moves(seen) == [("inactive", "pending", "warning")]
    state, seen = run(rule, [(0, 85), (30, 90), (60, 90)])
    assert state.state == "firing"
    assert moves(seen)[-1] == ("pending", "firing", "warning")
    assert state.active_since == T0
    assert state.fired_at == T0 + 60_000


def test_a_pending_alert_that_stops_never_notifies() -> None:
    rule = make_rule('warning = 80\ncritical = 90\nfor = "1m"')
    state, seen = run(rule, [(0, 85), (20, 95), (40, 50), (80, 50)])
    assert moves(seen) == [
        ("inactive", "pending", "warning"),
        ("pending", "pending", "critical"),
        ("pending", "inactive", None),
    ]
    assert state.state == "inactive"
    assert state.fired_at is None
    # and the `for` clock starts again with the next crossing
    state, seen = run(rule, [(0, 85), (40, 50), (50, 85), (100, 85), (110, 85)])
    assert moves(seen)[-1] == ("pending", "firing", "warning")
    assert seen[-1].at == T0 + 110_000


def test_no_data_neither_resolves_nor_fires() -> None:
    rule = make_rule('warning = 80\nfor = "30s"')
    state, seen = run(rule, [(0, 85), (40, None), (50, float("nan"))])
    assert state.state == "pending"
    assert state.value == 85
    assert state.evaluated_at == T0 + 50_000
    state, seen = run(rule, [(0, 85), (30, 85), (40, None), (3600, None)])
    assert state.state == "firing"
    assert moves(seen)[-1] == ("pending", "firing", "warning")


def test_resolved_returns_through_pending() -> None:
    rule = make_rule('op = "<"\ncritical = 1\nfor = "20s"')
    state, seen = run(rule, [(0, 0), (20, 0), (30, 1), (40, 0), (50, 1), (60, 0), (80, 0)])
    assert moves(seen) == [
        ("inactive", "pending", "critical"),
        ("pending", "firing", "critical"),
        ("firing", "resolved", "critical"),
        ("resolved", "pending", "critical"),
        ("pending", "inactive", None),
        ("inactive", "pending", "critical"),
        ("pending", "firing", "critical"),
    ]
    assert state.resolved_at is None
    assert state.fired_at == T0 + 80_000


def test_ack_survives_level_changes_and_ends_with_resolution() -> None:
    rule = make_rule("warning = 80\ncritical = 95")
    state, _ = run(rule, [(0, 85)])
    state = AlertState.from_dict(
        {**state.to_dict(), "acked_by": "ann", "acked_at": T0, "ack_comment": "on it"}
    )
    state, seen = evaluate(state, rule, 97, T0 + 10_000)
    assert moves(seen) == [("firing", "firing", "critical")]
    assert state.acked_by == "ann"
    state, seen = evaluate(state, rule, 10, T0 + 20_000)
    assert moves(seen) == [("firing", "resolved", "critical")]
    assert (state.acked_by, state.acked_at, state.ack_comment) == (None, None, None)


def test_states_round_trip_through_json() -> None:
    rule = make_rule("warning = 80")
    state, _ = run(rule, [(0, 85.125)])
    assert AlertState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    transition = Transition("inactive", "firing", "warning", 85.125, T0)
    assert transition.to_dict() == {
        "from": "inactive",
        "to": "firing",
        "level": "warning",
        "value": 85.125,
        "at": T0,
    }
    assert Transition.from_dict(json.loads(json.dumps(transition.to_dict()))) == transition


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state": "gone"}, "state 'gone' is not one of"),
        ({"labels": {"a": 1}}, "labels must be an object of strings"),
        ({"fired_at": "yesterday"}, "fired_at must be an integer"),
    ],
)
def test_bad_stored_states_are_refused(change: dict[str, object], message: str) -> None:
    data = {**new_state(make_rule("warning = 1"), LABELS).to_dict(), **change}
    with pytest.raises(ValueError, match=message):
        AlertState.from_dict(data)
    with pytest.raises(ValueError, match="rule is missing"):
        AlertState.from_dict({})


def test_fingerprint_is_stable_and_ignores_label_order() -> None:
    a = fingerprint("disk_high", {"host": "h", "mountpoint": "/"})
    assert a == fingerprint("disk_high", {"mountpoint": "/", "host": "h"})
    assert a != fingerprint("disk_high", {"host": "h", "mountpoint": "/home"})
    assert a != fingerprint("disk_full_soon", {"host": "h", "mountpoint": "/"})
    assert a == "77d179d693d2794b"  # pinned: stored alerts are keyed by it across versions
    assert len(a) == 16


def test_retire_ends_firing_and_pending_alerts() -> None:
    rule = make_rule('warning = 80\nfor = "1m"')
    pending, _ = run(rule, [(0, 85)])
    done, seen = retire(pending, T0 + 5_000)
    assert done.state == "inactive"
    assert moves(seen) == [("pending", "inactive", None)]
    firing, _ = run(rule, [(0, 85), (60, 85)])
    done, seen = retire(firing, T0 + 70_000)
    assert done.state == "resolved"
    assert done.resolved_at == T0 + 70_000
    assert moves(seen) == [("firing", "resolved", "warning")]
    assert retire(done, T0 + 80_000) == (done, [])


def test_annotations_use_the_alert_level_and_labels() -> None:
    summary = "{labels.mountpoint} on {host}: {value:.0f} > {threshold:g} ({severity})"
    rule = make_rule(
        f'warning = 80\ncritical = 90\nseverity = {{ critical = "error" }}\nsummary = "{summary}"'
    )
    state, _ = run(rule, [(0, 93.4)])
    assert render_annotations(rule, state) == {"summary": "/ on web-1: 93 > 90 (error)", "description": ""}


# --- the state machine -----------------------------------------------------------------------------

RULES = [
    make_rule("warning = 80\ncritical = 95\nclear = 70"),
    make_rule('warning = 80\ncritical = 95\nfor = "30s"'),
    make_rule('op = "<="\nwarning = 14\ncritical = 3\nclear = 20\nfor = "25s"'),
    make_rule('op = "<"\ncritical = 1\nfor = "1m"'),
    make_rule('op = ">="\nwarning = 5'),
]
# values on both sides of every threshold and clear of RULES, and no data now and then
values = st.sampled_from([None, 0, 0.5, 1, 2.5, 3, 5, 14, 15, 20, 21, 69, 70, 75, 79, 80, 81, 95, 96, 99])
# clock steps around every `for` of RULES, so that "fired too early" would be seen
seconds = st.sampled_from([0, 1, 5, 10, 12, 13, 15, 20, 24, 25, 26, 29, 30, 31, 45, 59, 60, 61, 300])


class Lifecycle(RuleBasedStateMachine):
    """One alert driven by random values and clock steps; a twin goes through JSON before every step
    (a restart each time) and must behave identically."""

    def __init__(self) -> None:
        super().__init__()
        self.rule = RULES[0]
        self.now = T0
        self.state = new_state(self.rule, LABELS)
        self.twin = self.state
        self.history: list[Transition] = []

    @initialize(index=st.integers(0, len(RULES) - 1))
    def pick_rule(self, index: int) -> None:
        self.rule = RULES[index]
        self.state = self.twin = new_state(self.rule, LABELS)

    @rule(seconds=seconds, value=values)
    def step(self, seconds: int, value: float | None) -> None:
        self.now += seconds * 1000
        before = self.state
        after, transitions = evaluate(before, self.rule, value, self.now)
        restarted = AlertState.from_dict(json.loads(json.dumps(self.twin.to_dict())))
        twin_after, twin_transitions = evaluate(restarted, self.rule, value, self.now)
        assert (twin_after, twin_transitions) == (after, transitions), "a restart changed the behaviour"

        # the transitions chain from the old state to the new one, and are the only changes
        chain = [before.state] + [t.to_state for t in transitions]
        assert [t.from_state for t in transitions] == chain[:-1]
        assert chain[-1] == after.state
        if not transitions:
            assert (after.state, after.level) == (before.state, before.level)
        else:
            assert (after.state, after.level) == (transitions[-1].to_state, transitions[-1].level)
            assert (after.state, after.level) != (before.state, before.level)
        for t in transitions:
            assert t.at == self.now
            assert t.value == value
            assert value is not None, "no data never moves an alert"
            if t.to_state == "resolved":
                assert t.from_state == "firing", "no resolve without a firing"
                assert not self.rule.holds(value), "resolved while still past clear"
            if t.to_state == "inactive":
                assert t.from_state == "pending"
            if t.to_state == "firing" and t.from_state != "firing":
                since = before.active_since if t.from_state == "pending" else self.now
                assert since is not None
                assert self.now - since >= self.rule.for_s * 1000, "fired before `for` elapsed"
            if t.to_state in ("pending", "firing"):
                assert t.level in ("warning", "critical")
        if after.state == "firing" and value is not None:
            assert self.rule.holds(value)
        self.history += transitions
        self.state, self.twin = after, twin_after

    @precondition(lambda self: self.state.state == "firing")
    @rule(user=st.sampled_from(["ann", "bob"]))
    def ack(self, user: str) -> None:
        self.state = AlertState.from_dict({**self.state.to_dict(), "acked_by": user, "acked_at": self.now})
        self.twin = self.state

    @invariant()
    def ack_only_on_an_active_alert(self) -> None:
        if self.state.acked_by is not None:
            assert self.state.state in ("pending", "firing")

    @invariant()
    def state_fields_agree(self) -> None:
        s = self.state
        assert (s.level is None) == (s.state == "inactive")
        assert (s.active_since is not None) == (s.state in ("pending", "firing"))
        if s.state == "firing":
            assert s.fired_at is not None
            assert s.level in dict(self.rule.thresholds)
        if s.state == "resolved":
            assert s.resolved_at is not None
            assert s.fired_at is not None
            assert s.fired_at <= s.resolved_at

    @invariant()
    def every_firing_is_followed_by_at_most_one_resolution(self) -> None:
        firing = False
        for t in self.history:
            if t.to_state == "resolved":
                assert firing
            firing = t.to_state == "firing"


TestLifecycle = Lifecycle.TestCase
