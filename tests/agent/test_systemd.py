"""The systemd collector on recorded ``systemctl show`` output: states, restarts and change events."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pytest

from edgewatch.agent.collectors.base import Sample
from edgewatch.agent.collectors.systemd import SystemdCollector, SystemdError, run_systemctl
from edgewatch.protocol import Event, Kind

UNITS = ["nginx.service", "postgresql@15-main.service", "apt-daily.timer", "nosuch.service"]


def _block(
    unit: str, active: str, sub: str, entered: int, restarts: int | None = 0, load: str = "loaded"
) -> str:
    """One unit as systemd 252 prints it: service properties (NRestarts) before the unit's own."""
    lines = [] if restarts is None else [f"NRestarts={restarts}"]
    lines += [
        f"Id={unit}",
        f"LoadState={load}",
        f"ActiveState={active}",
        f"SubState={sub}",
        f"ActiveEnterTimestampMonotonic={entered}",
    ]
    return "\n".join(lines) + "\n"


def _show(
    nginx: tuple[str, str, int] = ("active", "running", 8123456), pg_restarts: int = 3, nosuch: bool = True
) -> str:
    """``systemctl show`` of UNITS: blocks separated by blank lines, in the order they were named."""
    blocks = [
        _block("nginx.service", *nginx),
        _block("postgresql@15-main.service", "active", "running", 9034120, pg_restarts),
        _block("apt-daily.timer", "active", "waiting", 7000000, None),
    ]
    if nosuch:
        blocks.append(_block("nosuch.service", "inactive", "dead", 0, load="not-found"))
    return "\n".join(blocks)


class FakeSystemctl:
    def __init__(self, output: str) -> None:
        self.output = output
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        return self.output


def _values(samples: Sequence[Sample]) -> dict[tuple[str, tuple[tuple[str, str], ...]], object]:
    return {(s.name, s.labels): v for s, v in samples}


def _states(samples: Sequence[Sample], unit: str) -> dict[str, object]:
    return {
        dict(s.labels)["state"]: v
        for s, v in samples
        if s.name == "node_systemd_unit_state" and dict(s.labels)["unit"] == unit
    }


def test_one_systemctl_call_reads_every_unit() -> None:
    fake = FakeSystemctl(_show())
    collector = SystemdCollector("systemd", UNITS, fake)
    collector.collect(1000.0)
    collector.collect(1010.0)
    assert len(fake.calls) == 2  # one call per collection, never one per unit
    argv = fake.calls[0]
    assert argv[:2] == ["systemctl", "show"]
    assert "--no-pager" in argv
    props = next(a for a in argv if a.startswith("--property="))
    for prop in ("Id", "LoadState", "ActiveState", "SubState", "NRestarts", "ActiveEnterTimestampMonotonic"):
        assert prop in props
    assert argv[-4:] == UNITS


def test_states_and_restarts() -> None:
    samples = SystemdCollector("systemd", UNITS, FakeSystemctl(_show())).collect(1000.0)
    got = _values(samples)
    assert got[("edgewatch_systemd_unit_active", (("unit", "nginx.service"),))] == 1
    assert got[("edgewatch_systemd_unit_active", (("unit", "apt-daily.timer"),))] == 1
    assert _states(samples, "nginx.service") == {
        "active": 1,
        "activating": 0,
        "deactivating": 0,
        "inactive": 0,
        "failed": 0,
    }
    restarts = next(
        s
        for s, _ in samples
        if s.name == "edgewatch_systemd_unit_restarts_total" and "postgres" in str(s.labels)
    )
    assert restarts.kind == Kind.COUNTER
    assert got[(restarts.name, restarts.labels)] == 3
    # a timer has no NRestarts: no restart series rather than a made-up zero
    assert ("edgewatch_systemd_unit_restarts_total", (("unit", "apt-daily.timer"),)) not in got


def test_unknown_unit_is_inactive_with_one_event() -> None:
    fake = FakeSystemctl(_show())
    collector = SystemdCollector("systemd", UNITS, fake)
    samples = collector.collect(1000.0)
    assert _values(samples)[("edgewatch_systemd_unit_active", (("unit", "nosuch.service"),))] == 0
    assert _states(samples, "nosuch.service")["inactive"] == 1
    events = collector.events(1000.0)
    assert events == [
        Event(
            1_000_000,
            "service",
            {"unit": "nosuch.service", "from": "unknown", "to": "inactive", "sub": "not-found"},
        )
    ]
    collector.collect(1010.0)
    assert collector.events(1010.0) == []  # said once, not every tick


def test_state_changes_become_events_once() -> None:
    fake = FakeSystemctl(_show(nosuch=False))
    collector = SystemdCollector("systemd", UNITS[:3], fake)
    collector.collect(1000.0)
    assert collector.events(1000.0) == []  # the first reading is the baseline

    fake.output = _show(nginx=("failed", "failed", 0), nosuch=False)
    samples = collector.collect(1010.0)
    assert _values(samples)[("edgewatch_systemd_unit_active", (("unit", "nginx.service"),))] == 0
    assert _states(samples, "nginx.service")["failed"] == 1
    fake.output = _show(nginx=("activating", "auto-restart", 0), pg_restarts=4, nosuch=False)
    collector.collect(1020.0)

    events = collector.events(1020.0)
    assert [(e.ts, dict(e.attrs)) for e in events] == [
        (1_010_000, {"unit": "nginx.service", "from": "active", "to": "failed", "sub": "failed"}),
        (1_020_000, {"unit": "nginx.service", "from": "failed", "to": "activating", "sub": "auto-restart"}),
    ]
    assert all(e.type == "service" for e in events)
    assert collector.events(1030.0) == []  # handed out once


def test_a_restart_between_two_readings_is_an_event() -> None:
    fake = FakeSystemctl(_block("nginx.service", "active", "running", 8123456))
    collector = SystemdCollector("systemd", ["nginx.service"], fake)
    collector.collect(1000.0)
    fake.output = _block("nginx.service", "active", "running", 9999999, restarts=0)
    collector.collect(1010.0)
    [event] = collector.events(1010.0)
    assert event.attrs["restarted"] is True
    assert event.attrs["to"] == "active"


def test_units_named_by_alias_are_matched_by_id() -> None:
    # "nginx" is shown as nginx.service; a block count that does not match falls back to the Id
    fake = FakeSystemctl(
        _block("nginx.service", "active", "running", 1) + "\n" + _block("x.service", "a", "b", 1)
    )
    got = _values(SystemdCollector("systemd", ["nginx"], fake).collect(0.0))
    assert got[("edgewatch_systemd_unit_active", (("unit", "nginx"),))] == 1


def test_systemctl_that_fails_raises_clearly() -> None:
    def broken(argv: Sequence[str]) -> str:
        raise SystemdError(
            "systemctl failed: System has not been booted with systemd as init system (PID 1)."
        )

    with pytest.raises(SystemdError, match="not been booted"):
        SystemdCollector("systemd", UNITS, broken).collect(0.0)
    with pytest.raises(SystemdError, match="Key=Value"):
        SystemdCollector("systemd", UNITS, FakeSystemctl("Failed to connect to bus\n")).collect(0.0)


def test_default_runner_reports_missing_binary_and_failure() -> None:
    with pytest.raises(SystemdError, match="is not installed"):
        run_systemctl(["/nonexistent/systemctl", "show"])
    failing = [
        sys.executable,
        "-c",
        "import sys; sys.stderr.write('Failed to connect to bus: Host is down'); sys.exit(1)",
    ]
    with pytest.raises(SystemdError, match="failed: Failed to connect to bus: Host is down"):
        run_systemctl(failing)
    assert run_systemctl([sys.executable, "-c", "print('Id=x.service')"]) == "Id=x.service\n"
