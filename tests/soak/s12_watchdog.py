"""Scenario 12: a blocked agent is restarted by the watchdog, and its spool comes through intact.

The scenario plays systemd: it binds a unix datagram socket as ``NOTIFY_SOCKET`` (with
``SO_PASSCRED``, so each message carries the sender's pid, as systemd checks it), starts the real
``edgewatch agent`` with ``WATCHDOG_USEC`` set, and watches its ``READY=1`` and ``WATCHDOG=1``.
The aggregator is down meanwhile, so every frame the agent makes waits in its spool. Then the agent
is blocked, each cycle another way:

- ``hung-read``: its sampling loop hangs in a read (``proc_root/loadavg`` becomes a FIFO nobody
  writes to), while its other threads run on;
- ``sigstop``: the whole process is stopped (SIGSTOP).

When no ``WATCHDOG=1`` came for ``WATCHDOG_USEC``, the stand-in does what systemd does on a
watchdog timeout: SIGABRT, then SIGKILL after a grace, and starts the agent again (a new boot id,
the same state directory). After the last cycle the aggregator starts and one more agent
instance sends the back-log: every frame spooled by every killed instance is stored, none twice.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgewatch.aggregator.catalog import to_i64
from tests.aggregator.procs import AggregatorProcess
from tests.soak.core import Context, Result, scenario
from tests.soak.faultkit import AgentProcess, Spooled, admin_cli, agent_config, spooled, wait_for
from tests.soak.pushkit import read_storage, samples_of

PROMISE = (
    "An agent whose loop is blocked (a hung read, or SIGSTOP) stops sending WATCHDOG=1, so systemd's"
    " watchdog kills and restarts it within WatchdogSec; a healthy agent never misses a ping, and the"
    " frames spooled before the block are delivered after the restart, none lost and none twice."
)
NAME = "soak-watchdog"
ABORT_GRACE = 2.0  # seconds between SIGABRT and SIGKILL (systemd: TimeoutAbortSec)


@dataclass
class NotifySocket:
    """systemd's end of sd_notify: every datagram with the time it came and the sender's pid."""

    path: Path
    messages: list[tuple[float, int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.1)
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-notify-socket", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        creds = struct.calcsize("3i")
        while not self._stop.is_set():
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(creds))
            except TimeoutError:
                continue
            except OSError:
                return
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[:creds])[0]
            with self.lock:
                self.messages.append((time.monotonic(), pid, data.decode(errors="replace")))

    def times(self, pid: int, line: str) -> list[float]:
        """When ``pid`` sent a message with this line (``WATCHDOG=1``, ``READY=1``)."""
        with self.lock:
            return [at for at, sender, text in self.messages if sender == pid and line in text.split("\n")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def proc_root(directory: Path) -> Path:
    """A procfs stand-in: a symlink to each of /proc's entries except the process directories."""
    directory.mkdir()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            (directory / name).symlink_to(f"/proc/{name}")
    return directory


@dataclass
class Cycle:
    how: str
    pid: int = 0
    boot: int = 0
    ready_s: float | None = None  # from start to READY=1
    longest_ping_gap_s: float = 0.0  # while healthy
    pings_healthy: int = 0
    detected_s: float | None = None  # from the block to the watchdog timeout
    killed_by: str = ""
    spool: list[Spooled] = field(default_factory=list)  # at the kill

    def row(self) -> dict[str, Any]:
        return {
            "how": self.how,
            "ready_s": None if self.ready_s is None else round(self.ready_s, 2),
            "pings": self.pings_healthy,
            "longest_ping_gap_s": round(self.longest_ping_gap_s, 2),
            "detected_s": None if self.detected_s is None else round(self.detected_s, 2),
            "killed_by": self.killed_by,
            "spooled": len(self.spool),
        }


def supervise(
    agent: AgentProcess,
    notify: NotifySocket,
    cycle: Cycle,
    *,
    watchdog_s: float,
    run_s: float,
    block: Callable[[int], None],
    spool: Path,
    known_boots: set[int],
) -> None:
    """One life of the agent under the stand-in systemd: start, READY, pings, block, watchdog kill."""
    started = time.monotonic()
    agent.start()
    pid = cycle.pid = agent.pid
    ready = wait_for(lambda: notify.times(pid, "READY=1"), 30, "READY=1")[0]
    cycle.ready_s = ready - started
    time.sleep(run_s)
    blocked_at = time.monotonic()
    pings = [ready, *notify.times(pid, "WATCHDOG=1")]
    cycle.pings_healthy = len(pings) - 1
    cycle.longest_ping_gap_s = max(
        (b - a for a, b in zip([*pings, blocked_at], [*pings, blocked_at][1:])), default=0.0
    )
    block(pid)
    deadline = blocked_at + watchdog_s + 15  # the agent may not keep pinging longer than this
    while time.monotonic() < deadline:
        last = max([ready, *notify.times(pid, "WATCHDOG=1")])
        if time.monotonic() - last > watchdog_s:  # systemd: WatchdogSec passed without a ping
            cycle.detected_s = time.monotonic() - blocked_at
            break
        time.sleep(0.02)
    agent.signal(signal.SIGABRT)
    code = agent.wait(ABORT_GRACE)
    if code is None:
        agent.kill()
        cycle.killed_by = "SIGKILL"
    else:
        cycle.killed_by = f"SIGABRT (exit {code})"
    cycle.spool = spooled(spool)  # what the kill left: the next instance starts from it
    new = {s.boot for s in cycle.spool} - known_boots
    cycle.boot = new.pop() if len(new) == 1 else 0  # 0: not one new boot id in the spool
    known_boots.add(cycle.boot)


@scenario(12, "watchdog restart with the spool intact", PROMISE)
def run(ctx: Context) -> Result:
    result = Result()
    watchdog_s, run_s = ctx.scale(5.0, 2.0), ctx.scale(10.0, 3.0)
    hows = ctx.scale(["hung-read", "sigstop", "hung-read", "sigstop"], ["hung-read", "sigstop"])
    agg = AggregatorProcess(ctx.tmp)
    token = admin_cli(agg, "add-agent", NAME)  # into the data dir, before the aggregator ever runs
    root = proc_root(ctx.tmp / "proc")
    state = ctx.tmp / "agent-state"
    config = agent_config(
        ctx.tmp / "agent.toml",
        aggregator=agg.url,
        token=token,
        agent_id=NAME,
        state_dir=str(state),
        interval="1s",
        timeout="2s",
        proc_root=str(root),
        collectors__disabled=["processes", "sensors"],
    )
    notify = NotifySocket(ctx.tmp / "notify")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": str(int(watchdog_s * 1_000_000))}
    agent = AgentProcess(config, ctx.tmp / "agent.log", env)
    loadavg = root / "loadavg"

    def block(how: str) -> Callable[[int], None]:
        def hung_read(pid: int) -> None:
            loadavg.unlink()
            os.mkfifo(loadavg)  # the next tick's read of it waits for a writer that never comes

        def sigstop(pid: int) -> None:
            os.kill(pid, signal.SIGSTOP)

        return hung_read if how == "hung-read" else sigstop

    cycles: list[Cycle] = []
    known_boots: set[int] = set()
    final_code: int | None = None
    final_ready = False
    try:
        for how in hows:
            cycle = Cycle(how)
            cycles.append(cycle)
            supervise(
                agent,
                notify,
                cycle,
                watchdog_s=watchdog_s,
                run_s=run_s,
                block=block(how),
                spool=state / "spool",
                known_boots=known_boots,
            )
            if loadavg.is_fifo():
                loadavg.unlink()
                loadavg.symlink_to("/proc/loadavg")
        agg.start()
        agent.start()
        pid = agent.pid
        ready = wait_for(lambda: notify.times(pid, "READY=1"), 30, "READY=1 of the last instance")[0]
        final_ready = True
        wait_for(lambda: not spooled(state / "spool"), ctx.scale(120.0, 20.0), "the back-log to be delivered")
        time.sleep(max(0.0, ready + 2.5 - time.monotonic()))  # and a live frame or two of its own
        wait_for(lambda: not spooled(state / "spool"), 20, "the last instance's own frames to be delivered")
        final_code = agent.stop()
    finally:
        agent.kill()
        notify.close()
        agg.stop()
    stored = read_storage(agg.data_dir / "edgewatch.db")

    result.figures["watchdog_s"] = watchdog_s
    result.figures["cycles"] = [c.row() for c in cycles]
    result.figures["exit_code_last"] = final_code
    for c in cycles:
        result.check(c.ready_s is not None, f"{c.how}: no READY=1 from pid {c.pid}")
        result.check(
            c.pings_healthy >= 1 and c.longest_ping_gap_s < watchdog_s,
            f"{c.how}: the healthy agent went {c.longest_ping_gap_s:.2f} s without WATCHDOG=1 "
            f"(WATCHDOG_USEC is {watchdog_s:g} s): systemd would have killed it",
        )
        result.check(
            c.detected_s is not None and c.detected_s <= watchdog_s + 2.0,
            f"{c.how}: the blocked agent kept sending WATCHDOG=1 (watchdog timeout after "
            f"{c.detected_s} s, expected within {watchdog_s + 2:g} s)",
        )
        result.check(c.boot != 0, f"{c.how}: the spool does not hold frames of one new boot id")
    # the spool at each kill: every frame of the killed instance is there, and every earlier one
    earlier: set[tuple[int, int]] = set()
    for c in cycles:
        now = {(s.boot, s.seq) for s in c.spool}
        own = sorted(seq for boot, seq in now if boot == c.boot)
        result.check(
            bool(own) and own == list(range(1, len(own) + 1)),
            f"{c.how}: the killed instance's spool holds seqs {own[:5]}..., not 1..N",
        )
        result.check(
            earlier <= now, f"{c.how}: {len(earlier - now)} frames of earlier instances left the spool"
        )
        earlier |= now
    # after the restart: each spooled frame stored, each of its samples once
    spooled_frames = {(s.boot, s.seq): s.batch for c in cycles for s in c.spool}
    missing = [k for k in spooled_frames if not stored.has_frame(NAME, *k)]
    expected: set[Any] = set()
    undecodable = 0
    for batch in spooled_frames.values():
        if batch is None:
            undecodable += 1
        else:
            expected |= samples_of(batch).keys()
    held = {k: v for k, v in stored.samples.items() if k[0] == NAME}
    twice = [k for k, v in held.items() if len(v) > 1]
    boots_stored = {boot for host, boot, _ in stored.acked if host == NAME}
    result.figures.update(
        spooled_frames=len(spooled_frames),
        stored_frames=sum(1 for host, _, _ in stored.acked if host == NAME),
        boots_stored=len(boots_stored),
        samples_stored=len(held),
        missing_frames=len(missing),
        samples_twice=len(twice),
    )
    result.check(bool(spooled_frames) and not missing, f"{len(missing)} spooled frames were never stored")
    result.check(undecodable == 0, f"{undecodable} spooled frames do not decode")
    result.check(expected <= set(held), f"{len(expected - set(held))} spooled samples are not stored")
    result.check(not twice, f"{len(twice)} samples stored twice, e.g. {twice[:2]}")
    result.check(
        {to_i64(c.boot) for c in cycles} <= boots_stored and len(boots_stored) == len(cycles) + 1,
        f"frames of {len(boots_stored)} boots stored, expected {len(cycles)} killed instances and the last",
    )
    result.check(
        final_ready and final_code == 0, f"the last instance: READY {final_ready}, exit {final_code}"
    )
    return result
