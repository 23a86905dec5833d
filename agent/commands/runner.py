"""Running one argv: no shell, a clean environment, a time limit, and bounded output.

The process starts in a session of its own, so a timeout (or the agent stopping) kills its whole
process group. stdout and stderr are read as they come, each kept up to ``max_output`` bytes; the rest
is read and dropped, so a chatty process never blocks on a full pipe, and ``truncated`` says so.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
EXIT_GRACE = 1.0  # seconds output is still read after the process exited (a child may hold the pipes)
TICK = 0.1  # seconds between looks at the clock and the cancel flag


class Outcome(NamedTuple):
    exit_code: int | None  # None: it did not exit by itself (timeout, agent stopped) or did not start
    duration_ms: int
    stdout: str
    stderr: str
    truncated: bool
    reason: str = ""  # "" when it exited; "timeout", "agent stopped", "cannot start: ...", "killed by ..."


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    max_output: int,
    cancel: threading.Event | None = None,
    env: Mapping[str, str] = ENV,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    started = clock()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            close_fds=True,
            start_new_session=True,
            env=dict(env),
            cwd="/",
        )
    except (OSError, ValueError) as exc:
        detail = f"{exc.strerror}: {argv[0]}" if isinstance(exc, OSError) and exc.strerror else str(exc)
        return Outcome(None, _ms(clock() - started), "", "", False, f"cannot start: {detail}")
    assert proc.stdout is not None
    assert proc.stderr is not None
    out, err = bytearray(), bytearray()
    kept = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    truncated = False
    reason = ""
    exited_at: float | None = None
    deadline = started + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        selector.register(proc.stderr, selectors.EVENT_READ)
        while True:
            now = clock()
            if cancel is not None and cancel.is_set():
                reason = "agent stopped"
                break
            if now >= deadline:
                reason = "timeout"
                break
            if proc.poll() is not None:
                exited_at = now if exited_at is None else exited_at
                if not selector.get_map() or now - exited_at > EXIT_GRACE:
                    break
            wait = min(deadline - now, TICK)
            if not selector.get_map():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(wait)
                continue
            for key, _ in selector.select(wait):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = kept[key.fd]
                room = max(0, max_output - len(buffer))
                if len(chunk) > room:
                    truncated = True
                buffer += chunk[:room]
    if reason:
        _kill_group(proc)
    code = proc.wait()
    duration = _ms(clock() - started)
    proc.stdout.close()
    proc.stderr.close()
    exit_code: int | None = code
    if reason:
        exit_code = None
    elif code < 0:
        exit_code, reason = 128 - code, f"killed by signal {_signal_name(-code)}"
    return Outcome(exit_code, duration, _text(out), _text(err), truncated, reason)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the session leader's group: everything it started
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _text(data: bytearray) -> str:
    return bytes(data).decode("utf-8", "replace")
