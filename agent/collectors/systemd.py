"""systemd units named in the configuration: active state, sub state, restarts, and state changes.

One ``systemctl show`` call per collection reads every unit. Changes of a unit's ActiveState or
SubState since the previous collection (and restarts between two collections, seen as a new
ActiveEnterTimestampMonotonic) become ``service`` events that ``events(now)`` hands out once. A unit
systemd does not know is reported inactive, with one event saying so.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

from edgewatch.protocol import Event
from edgewatch.protocol.types import Scalar

from .base import Sample, SeriesCache

PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "NRestarts", "ActiveEnterTimestampMonotonic")
STATES = ("active", "activating", "deactivating", "inactive", "failed")
RUNNING = frozenset({"active", "reloading", "refreshing"})  # up, even while reloading its configuration
TIMEOUT = 5.0
MAX_PENDING_EVENTS = 1000


class SystemdError(RuntimeError):
    """systemctl is missing, failed, or said something this collector cannot read."""


def run_systemctl(argv: Sequence[str]) -> str:
    """Run ``argv`` (no shell) and return its output; a missing binary or a failure raises SystemdError."""
    import subprocess

    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except FileNotFoundError:
        raise SystemdError(
            f"{argv[0]} is not installed; remove systemd.units from the configuration"
        ) from None
    except subprocess.TimeoutExpired:
        raise SystemdError(f"{argv[0]} did not answer within {TIMEOUT:g} s") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[0]
        raise SystemdError(f"{argv[0]} failed: {why}")
    return done.stdout


class _State(NamedTuple):
    active: str
    sub: str
    entered: str  # ActiveEnterTimestampMonotonic: changes when the unit is started again
    found: bool


def parse_show(text: str) -> list[dict[str, str]]:
    """``systemctl show`` output: one ``Key=Value`` block per unit, blocks separated by blank lines."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise SystemdError(f"systemctl show printed {line[:80]!r}, not Key=Value")
        current[key] = value
    if current:
        blocks.append(current)
    return blocks


class SystemdCollector:
    blocking = True  # may hang (a dead mount, a slow endpoint): the sampler gives it a thread

    def __init__(
        self,
        name: str = "systemd",
        units: Sequence[str] = (),
        run: Callable[[Sequence[str]], str] = run_systemctl,
        *,
        interval: float = 0.0,
        cache: SeriesCache | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.units = tuple(dict.fromkeys(units))
        self.run = run
        self.cache = cache or SeriesCache()
        self.argv = (
            "systemctl",
            "show",
            "--property=" + ",".join(PROPERTIES),
            "--no-pager",
            "--",
            *self.units,
        )
        self._previous: dict[str, _State] = {}
        self._pending: list[Event] = []
        self._lock = threading.Lock()

    def events(self, now: float) -> list[Event]:
        """State changes seen since the last call, oldest first (each is handed out once)."""
        with self._lock:
            events, self._pending = self._pending, []
        return events

    def collect(self, now: float) -> Sequence[Sample]:
        if not self.units:
            return []
        blocks = parse_show(self.run(self.argv))
        by_unit = self._match(blocks)
        ts = round(now * 1000)
        out: list[Sample] = []
        events: list[Event] = []
        cache = self.cache
        for unit in self.units:
            props = by_unit[unit]
            found = props.get("LoadState", "loaded") != "not-found"
            state = _State(
                props.get("ActiveState", "") if found else "inactive",
                props.get("SubState", "") if found else "not-found",
                props.get("ActiveEnterTimestampMonotonic", ""),
                found,
            )
            event = self._change(unit, self._previous.get(unit), state)
            if event is not None:
                events.append(Event(ts, "service", event))
            self._previous[unit] = state
            out.append(
                (cache.gauge("edgewatch_systemd_unit_active", {"unit": unit}), int(state.active in RUNNING))
            )
            for s in STATES:
                labels = {"unit": unit, "state": s}
                out.append((cache.gauge("node_systemd_unit_state", labels), int(state.active == s)))
            restarts = props.get("NRestarts", "")
            if restarts.isdigit():
                out.append(
                    (cache.counter("edgewatch_systemd_unit_restarts_total", {"unit": unit}), int(restarts))
                )
        with self._lock:
            self._pending.extend(events)
            del self._pending[:-MAX_PENDING_EVENTS]
        return out

    def _match(self, blocks: list[dict[str, str]]) -> dict[str, dict[str, str]]:
        """Blocks come in the order the units were named; by name when that fails (aliases, suffixes)."""
        if len(blocks) == len(self.units):
            return dict(zip(self.units, blocks))
        by_id = {b.get("Id", ""): b for b in blocks}
        out = {}
        for unit in self.units:
            block = by_id.get(unit) or by_id.get(unit + ".service")
            if block is None:
                raise SystemdError(f"systemctl show said nothing about {unit}")
            out[unit] = block
        return out

    @staticmethod
    def _change(unit: str, before: _State | None, now: _State) -> dict[str, Scalar] | None:
        if before is None:
            if now.found:
                return None  # the first collection sets the baseline
            return {"unit": unit, "from": "unknown", "to": now.active, "sub": now.sub}
        if (before.active, before.sub) != (now.active, now.sub):
            return {"unit": unit, "from": before.active, "to": now.active, "sub": now.sub}
        if now.found and now.active in RUNNING and before.entered and now.entered != before.entered:
            return {"unit": unit, "from": before.active, "to": now.active, "sub": now.sub, "restarted": True}
        return None
