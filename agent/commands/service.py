"""The agent's remote commands: commands in, checked, run one at a time, results out.

Commands come from the push answers (``on_answer``, in the sender's thread) and from the long-poll
(``poll.Poller``). Each is checked at once (``verify.Checker``; the nonce is on disk before the check
answers); a rejected one is reported ``rejected`` with its reason. An accepted one waits in a short
queue for the one worker thread, which reports ``running`` (and runs nothing if the aggregator answers
that with a 4xx: the command expired there, or is not this agent's), runs it, and reports the result.
A copy of a command that is still queued or running (the push answer and the long-poll both brought
it) is dropped quietly; later copies are refused as ``replayed``.

With commands off, every command is reported ``rejected`` with ``commands disabled`` and nothing of
the checking (``cryptography``) or running (``subprocess``) is even imported.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from edgewatch.agent import logs
from edgewatch.agent.config import AgentConfig, ConfigError
from edgewatch.agent.transport import HttpClient
from edgewatch.protocol.limits import MAX_STRING_LEN

from .actions import RELOAD, Action, advertise, allowlist

if TYPE_CHECKING:
    from .poll import Poller
    from .report import Reporter
    from .runner import Outcome
    from .verify import Accepted, Checker

log = logs.get("edgewatch.agent.commands")

DISABLED = "commands disabled"
BUSY = "agent busy"
STOPPING = "agent stopping"
MAX_PER_ANSWER = 64  # commands taken from one answer; the rest are dropped and logged
MAX_QUEUE = 16  # accepted commands waiting for the worker
RUNNING_WAIT = 15.0  # seconds the worker waits for the answer to its "running" report
RELOAD_WAIT = 10.0  # seconds reload-agent waits for the reload to finish
STOP_WAIT = 1.0


class Settings(NamedTuple):
    """What the configuration says about commands, ready to use."""

    enabled: bool
    poll: bool
    timeout: float
    max_output: int
    max_skew: float
    actions: Mapping[str, Action]
    facts: dict[str, str]  # {"actions": JSON} when enabled


def settings_of(config: AgentConfig) -> Settings:
    enabled = bool(config["commands.enabled"])
    actions = allowlist(
        units=config["commands.units"],
        scripts=config["commands.scripts"],
        systemctl=config["commands.systemctl"],
        actions=config.actions,
    )
    return Settings(
        enabled,
        bool(config["commands.poll"]),
        float(config["commands.timeout"]),
        int(config["commands.max_output"]),
        float(config["commands.max_skew"]),
        actions,
        {"actions": _advertised(actions)} if enabled else {},
    )


def _advertised(actions: Mapping[str, Action]) -> str:
    """``facts.actions`` as JSON (host facts are strings), within the wire's string cap."""
    listed = advertise(actions)
    text = json.dumps(listed, separators=(",", ":"), ensure_ascii=False)
    while len(text) > MAX_STRING_LEN and listed:
        listed.pop()
        text = json.dumps(listed, separators=(",", ":"), ensure_ascii=False)
    if len(listed) < len(actions):
        log.warning(
            "actions_not_advertised count=%d; the allowlist is too long for the host facts (%d characters)",
            len(actions) - len(listed),
            MAX_STRING_LEN,
        )
    return text


def result_of(outcome: Outcome) -> dict[str, Any]:
    """The result body of a run (docs/commands.md, Results)."""
    state = "succeeded" if outcome.exit_code == 0 and not outcome.reason else "failed"
    result: dict[str, Any] = {"state": state}
    if outcome.exit_code is not None:
        result["exit_code"] = outcome.exit_code
    if outcome.reason:
        result["reason"] = outcome.reason
    result.update(
        duration_ms=outcome.duration_ms,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        truncated=outcome.truncated,
    )
    return result


class Commands:
    def __init__(
        self,
        config: AgentConfig,
        *,
        agent_id: str,
        key: str,
        token: str,
        client: Callable[[float], HttpClient],
        reload: Callable[[float], str | None] | None = None,
        clock: Callable[[], float] = time.time,
        run: Callable[..., Outcome] | None = None,
    ) -> None:
        """``key``: the pinned aggregator key (base64); ``client(timeout)``: a new HttpClient to the
        aggregator; ``reload(timeout)``: reload the agent's configuration, the error or None."""
        self.agent_id = agent_id
        self.key = key
        self.token = token
        self.new_client = client
        self.reload = reload
        self.clock = clock
        self.state_dir = config.state_dir
        self.timeout = float(config["timeout"])
        self._run = run
        self.settings = settings_of(config)
        self.checker: Checker | None = None
        self._make_checker(self.settings)
        self._intake = threading.Lock()  # one command checked at a time: dedupe, check, enqueue
        self._cond = threading.Condition()
        self._queue: deque[Accepted] = deque()
        self._inflight: dict[str, str] = {}  # id -> signature of commands queued or running
        self._cancel = threading.Event()
        self._stopping = False
        self._started = False
        self._worker: threading.Thread | None = None
        self._poller: Poller | None = None
        self._reporter: Reporter | None = None
        self._reporter_lock = threading.Lock()

    # -- configuration -------------------------------------------------------------------------

    def check(self, config: AgentConfig) -> None:
        """``ConfigError`` when ``config`` cannot be used (commands on, but no key pinned)."""
        if config["commands.enabled"]:
            self._key()

    def configure(self, config: AgentConfig) -> None:
        """Take a reloaded configuration: the allowlist, the limits, on or off, polling or not."""
        settings = settings_of(config)
        self.timeout = float(config["timeout"])
        self._make_checker(settings)
        self.settings = settings
        if self._started:
            self._start_threads()

    def _key(self) -> Any:
        if not self.key:
            raise ConfigError(
                "commands.enabled: the aggregator's signing key is not pinned; "
                "run `edgewatch enroll URL TOKEN`"
            )
        from .verify import public_key

        try:
            return public_key(self.key)
        except ValueError as exc:
            raise ConfigError(f"commands.enabled: {exc}") from None

    def _make_checker(self, settings: Settings) -> None:
        if not settings.enabled:
            return  # a checker made before stays, idle: its nonces are still in memory if commands return
        from .verify import Checker, Policy

        policy = Policy(settings.actions, settings.max_skew, settings.timeout)
        if self.checker is None:
            from .nonces import NonceStore

            self.checker = Checker(
                agent_id=self.agent_id,
                key=self._key(),
                nonces=NonceStore(self.state_dir / "commands"),
                policy=policy,
                clock=self.clock,
            )
        else:
            self.checker.configure(policy)

    def facts(self) -> dict[str, str]:
        """Host facts to add to every batch: ``actions`` when commands are on."""
        return self.settings.facts

    # -- threads -------------------------------------------------------------------------------

    def start(self) -> None:
        self._started = True
        self._start_threads()

    def _start_threads(self) -> None:
        settings = self.settings
        if settings.enabled and self._worker is None:
            self._worker = threading.Thread(target=self._work, name="edgewatch-commands", daemon=True)
            self._worker.start()
        want_poll = settings.enabled and settings.poll
        if want_poll and (self._poller is None or not self._poller.is_alive()):
            from .poll import WAIT, Poller

            client = self.new_client(WAIT + self.timeout)  # the aggregator holds the request up to WAIT
            self._poller = Poller(client, self.token, self.receive)
            self._poller.start()
        elif not want_poll and self._poller is not None:
            self._poller.stop(0)
            self._poller = None

    def stop(self, timeout: float = STOP_WAIT) -> None:
        """Stop polling, kill a running command, and send the results still waiting, within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._cancel.set()
            self._cond.notify_all()
        if self._poller is not None:
            self._poller.stop(0)
        if self._worker is not None:
            self._worker.join(max(0.0, deadline - time.monotonic()) / 2)
        if self._reporter is not None:
            self._reporter.stop(max(0.0, deadline - time.monotonic()))
        if self._poller is not None:
            self._poller.join(max(0.0, deadline - time.monotonic()))

    def reporter(self) -> Reporter:
        """The one reporter (made on first use: an agent with commands off may never need it)."""
        with self._reporter_lock:
            if self._reporter is None:
                from .report import Reporter

                self._reporter = Reporter(self.new_client(self.timeout), self.token)
            return self._reporter

    # -- commands in ---------------------------------------------------------------------------

    def on_answer(self, body: Mapping[str, Any]) -> None:
        """The sender's hook: an acknowledged push's answer, ``{"ack": seq, "commands": [...]}``."""
        commands = body.get("commands")
        if commands:
            self.receive(commands, "push")

    def receive(self, commands: object, source: str) -> None:
        """Check each command; queue what passes, report what does not. Never raises."""
        if not isinstance(commands, list):
            log.warning("commands_dropped source=%s reason=%r", source, "commands is not a list")
            return
        if len(commands) > MAX_PER_ANSWER:
            extra = len(commands) - MAX_PER_ANSWER
            log.warning("commands_dropped source=%s count=%d reason=too many in one answer", source, extra)
        for command in commands[:MAX_PER_ANSWER]:
            try:
                with self._intake:
                    self._take(command, source)
            except Exception:  # a bug here must not stop the sender or the poller
                log.exception("command_intake_error source=%s", source)

    def _take(self, command: object, source: str) -> None:
        from .verify import Rejected, command_id  # light: imports cryptography only through Checker

        cid = command_id(command)
        if cid is None or not isinstance(command, Mapping):
            log.warning("command_dropped source=%s reason=%r", source, "no valid id: cannot report it")
            return
        signature = command.get("signature")
        with self._cond:
            if isinstance(signature, str) and self._inflight.get(cid) == signature:
                log.info("command_duplicate id=%s source=%s; already queued or running", cid, source)
                return
        name = command.get("action")
        name = name[:64] if isinstance(name, str) else ""
        if not self.settings.enabled or self.checker is None:
            self._reject(Rejected(cid, name, DISABLED), source)
            return
        verdict = self.checker.check(command)
        if isinstance(verdict, Rejected):
            self._reject(verdict, source)
            return
        with self._cond:
            refused = STOPPING if self._stopping else BUSY if len(self._queue) >= MAX_QUEUE else ""
            if not refused:
                self._queue.append(verdict)
                self._inflight[cid] = str(signature)
                self._cond.notify()
        if refused:
            self._reject(Rejected(cid, name, refused), source)
        else:
            log.info("command_accepted id=%s action=%s source=%s", cid, name, source)

    def _reject(self, verdict: Any, source: str) -> None:
        log.warning(
            "command_rejected id=%s action=%s source=%s reason=%r",
            verdict.id,
            verdict.action,
            source,
            verdict.reason,
        )
        self.reporter().submit(verdict.id, {"state": "rejected", "reason": verdict.reason})

    # -- the worker ----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    for left in self._queue:
                        log.warning(
                            "command_not_run id=%s action=%s; the agent is stopping",
                            left.id,
                            left.action.name,
                        )
                    return
                job = self._queue.popleft()
            try:
                self._execute(job)
            except Exception:
                log.exception("command_error id=%s", job.id)
                self.reporter().submit(job.id, {"state": "failed", "reason": "internal error in the agent"})
            finally:
                with self._cond:
                    self._inflight.pop(job.id, None)

    def _execute(self, job: Accepted) -> None:
        now_ms = int(self.clock() * 1000)
        if now_ms > job.expires_ms + int(self.settings.max_skew * 1000):
            self._reject_job(job, "expired")  # it waited in the queue past its expiry
            return
        status = self.reporter().submit(job.id, {"state": "running"}).wait(RUNNING_WAIT)
        if status is not None and 400 <= status < 500:
            log.warning("command_not_run id=%s action=%s; the aggregator answered running with %d",
                        job.id, job.action.name, status)  # fmt: skip
            return
        if self._cancel.is_set():
            self.reporter().submit(job.id, {"state": "failed", "reason": "agent stopped"})
            return
        log.info("command_running id=%s action=%s argv=%s", job.id, job.action.name, _show(job.argv))
        result = self._reload() if job.action.name == RELOAD else result_of(self._execute_argv(job))
        log.info(
            "command_finished id=%s action=%s state=%s exit_code=%s duration_ms=%s reason=%r",
            job.id,
            job.action.name,
            result["state"],
            result.get("exit_code"),
            result.get("duration_ms"),
            result.get("reason", ""),
        )
        self.reporter().submit(job.id, result)

    def _reject_job(self, job: Accepted, reason: str) -> None:
        log.warning("command_rejected id=%s action=%s reason=%r", job.id, job.action.name, reason)
        self.reporter().submit(job.id, {"state": "rejected", "reason": reason})

    def _execute_argv(self, job: Accepted) -> Outcome:
        if self._run is not None:
            return self._run(
                job.argv, timeout=job.timeout, max_output=self.settings.max_output, cancel=self._cancel
            )
        from .runner import run

        return run(job.argv, timeout=job.timeout, max_output=self.settings.max_output, cancel=self._cancel)

    def _reload(self) -> dict[str, Any]:
        started = time.monotonic()
        if self.reload is None:
            error: str | None = "this agent cannot reload its configuration"
        else:
            error = self.reload(RELOAD_WAIT)
        duration = round((time.monotonic() - started) * 1000)
        if error:
            return {"state": "failed", "reason": f"reload failed: {error}", "duration_ms": duration}
        return {
            "state": "succeeded",
            "exit_code": 0,
            "duration_ms": duration,
            "stdout": "configuration reloaded\n",
            "stderr": "",
            "truncated": False,
        }


def _show(argv: Sequence[str]) -> str:
    return json.dumps(list(argv), ensure_ascii=False)[:1000]
