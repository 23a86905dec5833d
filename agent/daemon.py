"""The agent's main loop: sample on an aligned interval, batch, spool, hand to the sender.

Ticks fall on multiples of the interval (10:00:00, 10:00:10, ...) and carry that time as their
timestamp, so timestamps cost nothing on the wire; a tick that comes too late is skipped and
counted, never stacked. Every batch is written to the spool as a key frame before the sender sees
it. SIGTERM and SIGINT flush what is pending to the spool and exit within 5 s; SIGHUP reloads the
configuration; with ``WatchdogSec=`` each tick tells systemd the loop is alive. Remote commands
(``commands.service``) arrive in push answers and by long-poll and run in their own threads; their
``reload-agent`` action asks this loop for the same reload as SIGHUP. An agent whose commands are
off loads that module only when a command arrives anyway (to reject it).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from edgewatch.protocol import Batch, Event, Kind, ProtocolError, Series, encode
from edgewatch.protocol.sdnotify import Notifier

from . import identity, logs
from .collectors.base import Sample, SeriesCache
from .config import AgentConfig, ConfigError
from .sampler import Sampler, dedupe
from .sender import Sender
from .spool import Entry, Spool
from .transport import HttpClient

if TYPE_CHECKING:
    from .commands.service import Commands

log = logs.get("edgewatch.agent")

STOP_GRACE = 2.5  # seconds the sender gets to finish a push at shutdown (the unit allows 5)
COMMANDS_GRACE = 1.0  # seconds remote commands get to stop and send their last results
# settings a reload cannot change in a running agent (its connection, identity and spool)
RESTART_KEYS = (
    "aggregator",
    "token",
    "agent_id",
    "state_dir",
    "ca_file",
    "tls_verify",
    "timeout",
    "spool.max_bytes",
    "spool.max_age",
    "spool.backlog_chunk",
    "hostname",
)


class Setup:
    """What a configuration turns into: collectors and host facts (``registry.build`` makes one)."""

    def __init__(self, collectors: Sequence[Any], facts: Callable[[float], dict[str, str]]) -> None:
        self.collectors = collectors
        self.facts = facts


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        build: Callable[[AgentConfig], Setup],
        *,
        reload: Callable[[], AgentConfig] | None = None,
        clock: Callable[[], float] = time.time,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.build = build
        self.reload_config = reload
        self.clock = clock
        self.notifier = notifier or Notifier()
        self.boot_id = int.from_bytes(os.urandom(8), "little")
        self.seq = 0
        self.skipped_ticks = 0
        self.cache = SeriesCache()
        self._wake = threading.Event()
        self._wake_fd: int | None = None
        self._wake_write: int | None = None
        self._reload_lock = threading.Lock()
        self._reload_waiters: list[Callable[[str | None], None]] = []
        self.refused_batches = 0
        self.spool_errors = 0
        self._stop = False
        self._reload = False
        self._pending: list[tuple[int, list[Sample]]] = []
        self._events: list[Event] = []
        self.setup = build(config)
        _call_each(self.setup.collectors, "start")
        self.sampler = Sampler(self.setup.collectors, timeout=config["collectors.timeout"])
        self.agent_id, token, aggregator, ca_file, key = self._identity(config)
        self.spool = Spool(
            config.state_dir / "spool", max_bytes=config["spool.max_bytes"], max_age=config["spool.max_age"]
        )
        tls_verify = config["tls_verify"]

        def client(timeout: float) -> HttpClient:
            return HttpClient(aggregator, timeout=timeout, ca_file=ca_file or None, verify=tls_verify)

        self._client, self._token, self._key = client, token, key
        self._commands_lock = threading.Lock()
        self._running = False
        self.commands: Commands | None = self._new_commands(config) if config["commands.enabled"] else None
        self.sender = Sender(
            self.spool,
            client(config["timeout"]),
            token,
            backlog_chunk=config["spool.backlog_chunk"],
            on_answer=self._on_answer,
        )

    @staticmethod
    def _identity(config: AgentConfig) -> tuple[str, str, str, str, str]:
        try:
            enrolled = identity.load(config.state_dir)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        token = config["token"] or (enrolled.token if enrolled else "")
        aggregator = config["aggregator"] or (enrolled.aggregator if enrolled else "")
        if not aggregator or not token:
            raise ConfigError(
                "aggregator and token: not set; run `edgewatch enroll URL TOKEN`, "
                "or give --aggregator and --token"
            )
        agent_id = config["agent_id"] or (enrolled.agent_id if enrolled else "") or os.uname().nodename
        ca_file = config["ca_file"] or (enrolled.ca_file if enrolled else "")
        key = enrolled.public_key if enrolled else ""
        return agent_id, token, aggregator, ca_file, key

    # -- remote commands -----------------------------------------------------------------------

    def _new_commands(self, config: AgentConfig) -> Commands:
        """The command service for ``config``; ``ConfigError`` when commands are on and no key is pinned."""
        from .commands.service import Commands

        return Commands(
            config,
            agent_id=self.agent_id,
            key=self._key,
            token=self._token,
            client=self._client,
            reload=self.reload_and_wait,
        )

    def _on_answer(self, body: dict[str, Any]) -> None:
        """The sender's hook for an acknowledged push's answer (in the sender's thread)."""
        commands = self.commands
        if commands is None:
            if not body.get("commands"):
                return
            with self._commands_lock:  # commands are off, yet some came: reject them, reported
                if self.commands is None:
                    try:
                        self.commands = self._new_commands(self.config)
                    except (ConfigError, ValueError) as exc:  # not expected with commands off
                        log.error("commands_unavailable error=%r; commands in the answer dropped", str(exc))
                        return
                    if self._running:
                        self.commands.start()
                commands = self.commands
        commands.on_answer(body)

    # -- signals -------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """Handlers only set a flag; the wake-up pipe interrupts the loop's wait (no locks in a handler)."""
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        self._wake_fd, self._wake_write = read_end, write_end
        signal.set_wakeup_fd(write_end)
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    def stop(self) -> None:
        self._stop = True
        self.sampler.abort.set()

    def request_reload(self) -> None:
        self._reload = True

    def reload_and_wait(self, timeout: float) -> str | None:
        """Reload as SIGHUP does, from another thread (the reload-agent action): the error, or None."""
        done = threading.Event()
        outcome: list[str | None] = []

        def finished(error: str | None) -> None:
            outcome.append(error)
            done.set()

        with self._reload_lock:
            self._reload_waiters.append(finished)
        self._reload = True
        self._nudge()
        if not done.wait(timeout):
            return f"the agent did not reload within {timeout:g} s"
        return outcome[0]

    def _nudge(self) -> None:
        """Wake the loop's wait from another thread."""
        if self._wake_write is None:
            self._wake.set()
            return
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"\0")

    def _wait(self, seconds: float) -> None:
        if self._wake_fd is None:  # no signal handlers (tests drive the agent in a thread)
            self._wake.wait(seconds)
            self._wake.clear()
            return
        if select.select([self._wake_fd], [], [], seconds)[0]:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_fd, 512)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        self.sender.start()
        with self._commands_lock:
            self._running = True
            if self.commands is not None:
                self.commands.start()
        interval = self.config["interval"]
        self.notifier.ready(f"sampling every {interval:g} s")
        log.info(
            "started agent_id=%s interval=%gs spool_frames=%d boot_id=%016x",
            self.agent_id,
            interval,
            len(self.spool),
            self.boot_id,
        )
        next_tick = (self.clock() // interval + 1) * interval
        watchdog = self.notifier.watchdog_interval
        try:
            while not self._stop:
                now = self.clock()
                wait = next_tick - now
                if watchdog:  # wake often enough to tell systemd the loop is alive, whatever the interval
                    wait = min(wait, watchdog / 2)
                self._wait(max(0.0, wait))
                if self._stop:
                    break
                if watchdog:
                    self.notifier.watchdog()
                if self._reload:
                    self._do_reload()
                    interval = self.config["interval"]
                    next_tick = (self.clock() // interval + 1) * interval
                    continue
                now = self.clock()
                if next_tick - now > interval:  # the clock stepped back: realign rather than wait it out
                    log.warning("clock_jumped seconds=%.0f; realigning the ticks", now - next_tick)
                    next_tick = (now // interval + 1) * interval
                    continue
                if now < next_tick:
                    continue  # woken early by a signal or for the watchdog
                self.tick(next_tick)
                self.notifier.watchdog()
                next_tick += interval
                now = self.clock()
                if next_tick <= now:  # the tick ran long, or the clock jumped: skip, never stack
                    missed = int((now - next_tick) // interval) + 1
                    if missed > 100:  # a step of the clock, not an overrun: say so, count one
                        log.warning("clock_jumped seconds=%.0f; realigning the ticks", now - next_tick)
                        missed = 1
                    else:
                        log.warning("ticks_skipped count=%d", missed)
                    self.skipped_ticks += missed
                    next_tick = (now // interval + 1) * interval
        finally:
            self.shutdown()
        return 0

    def tick(self, at: float) -> None:
        samples = self.sampler.sample(at)
        samples.extend(self._self_metrics())
        for c in self.setup.collectors:
            events = getattr(c, "events", None)
            if callable(events):
                self._events.extend(events(at))
        self._pending.append((round(at * 1000), samples))
        if len(self._pending) >= self.config["batch_samples"]:
            self.flush()

    def flush(self) -> None:
        """Make a batch of what is pending, spool it as a key frame, and give it to the sender.

        A batch that breaks a cap of the format is dropped and counted; a spool that cannot take the
        frame (disk full, read-only) does not stop the agent: the frame is pushed from memory.
        """
        if not self._pending and not self._events:
            return
        batch = self._batch(at=self.clock())
        self._pending, self._events = [], []
        try:
            frame = encode(batch)
        except ProtocolError as exc:
            self.refused_batches += 1
            log.error("batch_dropped seq=%d samples=%d error=%r", batch.seq, batch.sample_count, str(exc))
            return
        try:
            entry = self.spool.put(frame, boot_id=self.boot_id, seq=batch.seq, samples=batch.sample_count)
        except OSError as exc:
            self.spool_errors += 1
            if self.spool_errors == 1 or self.spool_errors % 360 == 0:
                log.error(
                    "spool_write_failed error=%r; pushing from memory, unsent frames are lost", str(exc)
                )
            now_ms = int(self.clock() * 1000)
            entry = Entry(0, now_ms, self.boot_id, batch.seq, batch.sample_count, len(frame))
        self.sender.submit(entry, batch, frame)

    def _batch(self, at: float) -> Batch:
        rows = [(ts, *dedupe(samples)) for ts, samples in self._pending]
        self.seq += 1
        if len(rows) == 1:
            ts, series, values = rows[0]
            columns: Sequence[Sequence[int | float | None]] = [(v,) for v in values]
            all_series: Sequence[Series] = series
            timestamps = [ts]
        else:
            index: dict[Series, int] = {}
            for _, series, _ in rows:
                for s in series:
                    index.setdefault(s, len(index))
            all_series = list(index)
            grid: list[list[int | float | None]] = [[None] * len(rows) for _ in all_series]
            for t, (_, series, values) in enumerate(rows):
                for s, v in zip(series, values):
                    grid[index[s]][t] = v
            columns = grid
            timestamps = [ts for ts, _, _ in rows]
        return Batch(
            self.agent_id,
            self.boot_id,
            self.seq,
            tuple(timestamps),
            tuple(all_series),
            tuple(tuple(c) for c in columns),
            {**self.setup.facts(at), **(self.commands.facts() if self.commands is not None else {})},
            tuple(self._events),
        )

    def _self_metrics(self) -> list[Sample]:
        c = self.cache
        out: list[Sample] = [
            (c.counter("edgewatch_agent_ticks_skipped_total"), self.skipped_ticks),
            (c.gauge("edgewatch_agent_spool_frames"), len(self.spool)),
            (c.gauge("edgewatch_agent_spool_bytes"), self.spool.size),
            (c.counter("edgewatch_agent_spool_dropped_samples_total"), self.spool.dropped_samples),
            (c.counter("edgewatch_agent_frames_sent_total"), self.sender.stats.frames_sent),
            (c.counter("edgewatch_agent_key_frames_sent_total"), self.sender.stats.key_frames_sent),
            (c.counter("edgewatch_agent_sent_bytes_total"), self.sender.stats.bytes_sent),
            (c.counter("edgewatch_agent_frames_quarantined_total"), self.sender.stats.quarantined),
            (c.counter("edgewatch_agent_spool_errors_total"), self.spool_errors),
            (c.counter("edgewatch_agent_batches_dropped_total"), self.refused_batches),
        ]
        out += [
            (c.counter("edgewatch_agent_collector_errors_total", {"collector": n}), v)
            for n, v in self.sampler.errors.items()
        ]
        out += [
            (c.counter("edgewatch_agent_push_errors_total", {"reason": r}), v)
            for r, v in sorted(self.sender.stats.push_errors.items())
        ]
        times = os.times()
        out.append(
            (c.get("edgewatch_agent_cpu_seconds_total", (), Kind.COUNTER, 2), round(times[0] + times[1], 2))
        )
        try:
            with open("/proc/self/statm") as f:
                out.append(
                    (
                        c.gauge("edgewatch_agent_resident_bytes"),
                        int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"),
                    )
                )
        except OSError:
            pass
        return out

    def _do_reload(self) -> None:
        self._reload = False
        error = self._reload_once()
        with self._reload_lock:
            waiters, self._reload_waiters = self._reload_waiters, []
        for finished in waiters:
            finished(error)

    def _reload_once(self) -> str | None:
        """Reload the configuration: None, or why the running one stays."""
        self.notifier.reloading()
        if self.reload_config is None:
            return None
        fresh: Commands | None = None  # when the reload turns commands on
        try:
            config = self.reload_config()
            setup = self.build(config)
            if self.commands is not None:
                self.commands.check(config)
            elif config["commands.enabled"]:
                fresh = self._new_commands(config)  # checks the key, as check() does
        except (ConfigError, ValueError, OSError) as exc:
            log.error("reload_failed error=%r; keeping the running configuration", str(exc))
            self.notifier.ready()
            return str(exc)
        self.flush()
        self.sampler.close()
        _call_each(self.setup.collectors, "close")
        try:
            _call_each(setup.collectors, "start")
        except (ValueError, OSError) as exc:  # the plugin endpoint's port is taken, say
            log.error("reload_failed error=%r; keeping the running configuration", str(exc))
            _call_each(setup.collectors, "close")
            _call_each(self.setup.collectors, "start")
            self.sampler = Sampler(self.setup.collectors, timeout=self.config["collectors.timeout"])
            self.notifier.ready()
            return str(exc)
        needs_restart = [k for k in RESTART_KEYS if config[k] != self.config[k]]
        if needs_restart:
            log.warning(
                "reload_partial keys=%s; restart the agent for them to take effect", ",".join(needs_restart)
            )
        logs.setup(config["log_level"], config["log_format"])
        self.config, self.setup = config, setup
        with self._commands_lock:
            if self.commands is not None:
                self.commands.configure(config)
            elif fresh is not None:
                self.commands = fresh
                if self._running:
                    fresh.start()
        self.sampler = Sampler(setup.collectors, timeout=config["collectors.timeout"])
        log.info("reloaded interval=%gs collectors=%d", config["interval"], len(setup.collectors))
        self.notifier.ready()
        return None

    def shutdown(self) -> None:
        self.notifier.stopping()
        try:
            self.flush()
        finally:
            self.sampler.close()
            if self.commands is not None:
                self.commands.stop(COMMANDS_GRACE)
            self.sender.stop(STOP_GRACE)
            _call_each(self.setup.collectors, "close")
            log.info("stopped spool_frames=%d", len(self.spool))


def _call_each(collectors: Sequence[Any], method: str) -> None:
    """``start`` or ``close`` the collectors that have one (the plugin endpoint does)."""
    for c in collectors:
        fn = getattr(c, method, None)
        if callable(fn):
            fn()
