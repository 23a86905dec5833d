"""Soak scenario 2, spool overflow: the real agent, a small spool, and an outage longer than it holds.

A real ``edgewatch agent`` (its own collectors, this machine's metrics) pushes every ``interval``
seconds with ``spool.max_bytes`` set to a few frames. The aggregator is stopped (SIGTERM) for
``outage`` seconds, so the spool fills and drops its oldest frames; then it starts again and the
agent sends what its spool kept.

What the agent generated is watched from outside: a thread lists the spool directory every 50 ms
and reads each new frame file (a key frame, so it decodes alone: its seq, sample count and sample
times). What the aggregator got is its ``acked`` table (the seqs it acknowledged) and its raw tier.
What the agent reports as dropped is read three ways: ``spool/dropped_samples`` in its state dir,
its last ``spool_full`` log line, and the ``edgewatch_agent_spool_dropped_samples_total`` sample it
pushed (``/federate``).
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from edgewatch.agent.spool import Entry
from edgewatch.protocol import ProtocolError, decode
from tests.aggregator.procs import EDGEWATCH
from tests.soak.core import Context, Result, scenario
from tests.soak.simkit import (
    Processes,
    acked_ranges,
    compact_everything,
    host_ids,
    opened,
    tally,
    terminate,
    wait_until,
)

FULL: dict[str, Any] = {
    "interval": 2.0,
    "max_bytes": 32 * 1024,
    "before": 10.0,
    "outage": 300.0,
    "drain_timeout": 90.0,
}
FAST: dict[str, Any] = {
    "interval": 1.0,
    "max_bytes": 10 * 1024,
    "before": 3.0,
    "outage": 8.0,
    "drain_timeout": 25.0,
}
AGENT = "spool-agent"
PROMISE = (
    "When an outage outlasts the agent's spool, the spool drops its oldest frames first, keeps and then "
    "delivers the newest, and the dropped-sample count the agent reports (state file, log and its own "
    "metric) equals the samples missing on the aggregator."
)


class Seen(NamedTuple):
    samples: int
    created_ms: int  # when the agent spooled it (wall clock)
    stamps: tuple[int, ...] | None  # its sample times, if the file was read


class SpoolWatcher(threading.Thread):
    """Lists the spool directory every ``period`` seconds; every frame file it sees is remembered by
    seq with its sample count and, if it could read the file before the agent removed it, its times."""

    def __init__(self, directory: Path, period: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.directory, self.period = directory, period
        self.frames: dict[int, Seen] = {}  # by seq
        self.boots: set[int] = set()
        self.problems: list[str] = []  # files whose name and content disagree, errors reading them
        self._halt = threading.Event()

    def listing(self) -> list[Entry]:
        try:
            names = [p.name for p in self.directory.iterdir()]
        except FileNotFoundError:
            return []
        return sorted(e for n in names if (e := Entry.parse(n, 0)) is not None)

    def run(self) -> None:
        while not self._halt.is_set():
            for entry in self.listing():
                if entry.seq in self.frames and self.frames[entry.seq].stamps is not None:
                    continue
                stamps: tuple[int, ...] | None = None
                try:
                    batch = decode((self.directory / entry.name).read_bytes())
                    stamps = tuple(batch.timestamps)
                    if batch.sample_count != entry.samples:
                        self.problems.append(f"{entry.name} holds {batch.sample_count} samples")
                except FileNotFoundError:
                    pass  # sent or dropped meanwhile: its name said enough
                except (OSError, ProtocolError) as exc:
                    self.problems.append(f"{entry.name}: {exc}")
                self.frames[entry.seq] = Seen(entry.samples, entry.created_ms, stamps)
                self.boots.add(entry.boot_id)
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(5)


@scenario(2, "spool overflow", PROMISE)
def run(ctx: Context) -> Result:
    p = ctx.scale(FULL, FAST)
    result = Result()
    figures = result.figures
    figures.update(interval_s=p["interval"], spool_max_bytes=p["max_bytes"], outage_s=p["outage"])
    procs = Processes()
    state = ctx.tmp / "agent-state"
    watcher = SpoolWatcher(state / "spool")
    try:
        agg = procs.aggregator(ctx.tmp, storage__compact_interval="1s")
        agg.start()
        token = agg.admin("add-agent", AGENT)
        api = agg.admin("add-token", "--role", "viewer")
        config = ctx.tmp / "agent.toml"
        config.write_text(
            f'aggregator = "{agg.url}"\ntoken = "{token}"\nagent_id = "{AGENT}"\nstate_dir = "{state}"\n'
            f"interval = {p['interval']}\ntimeout = 5\n[spool]\nmax_bytes = {p['max_bytes']}\n"
        )
        state.mkdir(mode=0o700)
        (state / "spool").mkdir(mode=0o700)
        watcher.start()
        agent_log = ctx.tmp / "agent.log"
        agent = procs.start([*EDGEWATCH, "agent", "--config", str(config)], agent_log)

        def acked(running: bool = True) -> list[tuple[int, int, int]]:
            if running and agent.poll() is not None:
                raise RuntimeError(f"the agent exited: {agent_log.read_text()[-1500:]}")
            with opened(agg.data_dir) as conn:
                ids = host_ids(conn, AGENT)
                return acked_ranges(conn).get(ids.get(AGENT, -1), [])

        wait_until("the agent's first push", lambda: bool(acked()), timeout=30, poll=0.25)
        time.sleep(p["before"])
        agg.stop()
        down_ms = int(time.time() * 1000)
        before = acked()
        last_before = max(hi for _, _, hi in before)
        time.sleep(p["outage"])
        newest_at_restart = max(watcher.frames, default=0)
        agg.start()

        first_ack_ms = 0

        def delivered() -> bool:
            nonlocal first_ack_ms
            ranges = acked()
            if not first_ack_ms and max(hi for _, _, hi in ranges) > last_before:
                first_ack_ms = int(time.time() * 1000)
            return not watcher.listing() and max(hi for _, _, hi in ranges) > newest_at_restart

        try:
            figures["drain_s"] = round(
                wait_until("the spool sent", delivered, timeout=p["drain_timeout"], poll=0.25), 1
            )
        except TimeoutError:
            result.check(False, f"the agent did not send its spool within {p['drain_timeout']:g} s")
        time.sleep(2.5 * p["interval"])  # a frame or two carrying the final dropped count
        federated = agg.get("/federate?match[]=edgewatch_agent_spool_dropped_samples_total", api)
        figures["agent_exit_code"] = terminate(agent, grace=15)
        watcher.stop()
        ranges = acked(running=False)
        agg.stop()
        compact_everything(agg.data_dir)
        with opened(agg.data_dir) as conn:
            stored = tally(conn, host_ids(conn, AGENT))[AGENT]
        # spooled while the aggregator was unreachable, and not the frame the agent came back with:
        # made at least an interval (and our polling's lag) before the first acknowledgement
        unreachable = first_ack_ms - int(p["interval"] * 1000) - 500
        backlog = sorted(s for s, seen in watcher.frames.items() if down_ms <= seen.created_ms < unreachable)
        _judge(result, watcher, ranges, last_before, backlog, stored.per_tick)
        _reports(result, state, agent_log, federated)
        left = watcher.listing()
        figures["spool_left"] = len(left)
        result.check(not left, f"{len(left)} frames were still in the spool when the agent stopped")
        result.check(figures["agent_exit_code"] == 0, f"the agent exited with {figures['agent_exit_code']}")
    finally:
        watcher.stop()
        procs.close()
    return result


def _judge(
    result: Result,
    watcher: SpoolWatcher,
    ranges: list[tuple[int, int, int]],
    last_before: int,
    backlog: list[int],
    per_tick: dict[int, int],
) -> None:
    """Which seqs are missing on the aggregator, whether they are the oldest of the outage, and how
    many samples they held (what the agent must report)."""
    figures = result.figures
    result.check(len(watcher.boots) == 1 and len({b for b, _, _ in ranges}) == 1, "the agent restarted")
    got = {s for _, lo, hi in ranges for s in range(lo, hi + 1)}
    newest = max(*got, *watcher.frames)
    missing = sorted(set(range(1, newest + 1)) - got)
    unseen = [s for s in missing if s not in watcher.frames]
    figures.update(frames_made=newest, frames_acked=len(got), frames_missing=len(missing))
    figures["frames_spooled_unreachable"] = len(backlog)
    result.check(not unseen, f"seqs {unseen[:5]} are missing on the aggregator but never were in the spool")
    result.check(not watcher.problems, f"spool files that do not read back: {watcher.problems[:3]}")
    result.check(bool(missing), "nothing is missing: the outage did not overflow the spool")
    if missing:
        # oldest first: the dropped frames are the outage's first ones, one run; only a frame that was
        # on its way to the aggregator when the spool overflowed may be kept out of turn (agent/spool.py)
        inside = sorted(got & set(range(missing[0], missing[-1])))
        figures["kept_out_of_turn"] = len(inside)
        result.check(
            missing[0] == last_before + 1 and len(inside) <= 1,
            f"the missing seqs {missing[:3]}..{missing[-3:]} are not the oldest frames of the outage "
            f"(the last frame acknowledged before it was {last_before}; kept inside the run: {inside[:5]})",
        )
        kept = sorted(s for s in backlog if s in got and s > missing[-1])
        figures["backlog_frames_delivered"] = len(kept)
        result.check(
            bool(kept),
            f"none of the {len(backlog)} frames spooled while the aggregator was unreachable arrived after "
            f"the dropped ones {missing[:3]}..{missing[-3:]}: the newest must be kept and sent",
        )
    missing_samples = sum(watcher.frames[s].samples for s in missing if s in watcher.frames)
    figures["samples_missing"] = missing_samples
    # the aggregator's raw tier agrees: nothing at a dropped frame's times, all of a delivered one's
    wrong = []
    for seq, (samples, _, stamps) in sorted(watcher.frames.items()):
        if stamps is None:
            continue
        held = sum(per_tick.get(ts, 0) for ts in stamps)
        if held != (0 if seq in missing else samples):
            wrong.append(f"seq {seq}: {held} stored of {samples}{' (dropped)' if seq in missing else ''}")
    figures["frames_checked_in_raw"] = sum(1 for seen in watcher.frames.values() if seen.stamps is not None)
    result.check(not wrong, f"the raw tier disagrees with the spool's frames: {wrong[:5]}")


def _reports(result: Result, state: Path, agent_log: Path, federated: str) -> None:
    """The dropped-sample count as the agent reports it, three ways, against the samples missing."""
    figures = result.figures
    missing = figures["samples_missing"]
    try:
        on_disk: int | None = int((state / "spool" / "dropped_samples").read_text().strip())
    except (FileNotFoundError, ValueError):
        on_disk = None
    totals = re.findall(r"spool_full .*?total_dropped_samples=(\d+)", agent_log.read_text())
    in_log = int(totals[-1]) if totals else None
    metric = re.search(
        r'^edgewatch_agent_spool_dropped_samples_total\{host="' + AGENT + r'"\} (\S+)', federated, re.M
    )
    pushed = int(float(metric.group(1))) if metric else None
    figures.update(dropped_state_file=on_disk, dropped_log=in_log, dropped_metric=pushed)
    for what, value in (("its state file", on_disk), ("its log", in_log), ("its pushed metric", pushed)):
        result.check(
            value == missing,
            f"the agent reports {value} dropped samples in {what}; {missing} are missing on the aggregator",
        )
