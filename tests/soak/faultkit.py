"""What soak scenarios 6, 9, 10, 11 and 12 share: a real ``edgewatch agent`` as a subprocess, a
plain HTTP client that can pick its loopback source address, reading the aggregator's counters,
and reading what a spool directory holds.

Not a scenario module (its name does not start with ``s`` and two digits), so ``load_all`` skips it.
Every process started here talks to 127.0.0.1 only and is stopped by its owner's ``finally``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from edgewatch.protocol import Batch, decode
from tests.aggregator.procs import EDGEWATCH, AggregatorProcess, env_without_proxies

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, poll: float = 0.1) -> T:
    """``check()``'s first truthy answer; ``TimeoutError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


# -- HTTP -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    token: str | None = None,
    source: str | None = None,
    timeout: float = 30.0,
) -> Reply:
    """One request on a fresh connection to ``base`` (``http://127.0.0.1:PORT``), from the loopback
    address ``source`` when given (Linux answers on all of 127.0.0.0/8). ``body`` is bytes as they
    are, or anything else as JSON."""
    host, _, port = base.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(
        host, int(port), timeout=timeout, source_address=(source, 0) if source else None
    )
    sent = dict(headers or {})
    data: bytes | None = None
    if isinstance(body, bytes):
        data = body
    elif body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def metric_values(agg: AggregatorProcess, token: str, name: str) -> dict[str, float]:
    """The samples of ``name`` in the aggregator's ``/metrics``, by their label text (``""`` for none)."""
    text = call(agg.url, "GET", "/metrics", token=token).body.decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.fullmatch(rf"{re.escape(name)}(\{{.*\}})?\s+(\S+)", line)
        if m:
            out[m[1] or ""] = float(m[2])
    return out


def admin_cli(agg: AggregatorProcess, *args: str, stdin: str | None = None) -> str:
    """``edgewatch admin --data-dir DIR ARGS``: its last line of output (a token, for the add verbs)."""
    done = subprocess.run(
        [*EDGEWATCH, "admin", "--data-dir", str(agg.data_dir), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env_without_proxies(),
    )
    if done.returncode != 0:
        raise RuntimeError(f"edgewatch admin {args[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


# -- the agent ------------------------------------------------------------------------------------


def agent_config(path: Path, **settings: Any) -> Path:
    """An agent.toml: ``key=value`` at the top, ``table__key=value`` in ``[table]``."""
    lines: list[str] = []
    tables: dict[str, list[str]] = {}
    for key, value in settings.items():
        table, _, name = key.rpartition("__")
        text = str(value).lower() if isinstance(value, bool) else json.dumps(value)
        (tables.setdefault(table, []) if table else lines).append(f"{name} = {text}")
    for table, items in tables.items():
        lines += [f"[{table}]", *items]
    path.write_text("\n".join(lines) + "\n")
    return path


class AgentProcess:
    """``edgewatch agent --config FILE`` with its output in a log file."""

    def __init__(self, config: Path, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.log = log
        self.env = {**env_without_proxies(), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.exit_codes: list[int] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self._log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [*EDGEWATCH, "agent", "--config", str(self.config)],
            stdout=self._log,
            stderr=self._log,
            env=self.env,
            cwd=self.config.parent,  # a core dump (SIGABRT, as systemd's watchdog sends) lands there
        )

    def signal(self, sig: int) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None when it still runs after ``timeout``."""
        if self.proc is None:
            return None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._closed(code)
        return code

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` s: the exit code (None: it had to be killed)."""
        if self.proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        self.signal(signal.SIGTERM)
        code = self.wait(grace)
        if code is None:
            self.kill()
        return code

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self._closed(self.proc.wait())

    def _closed(self, code: int) -> None:
        self.exit_codes.append(code)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


# -- the spool ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spooled:
    """A frame file of an agent's spool (or its quarantine): what its name and its key frame say."""

    path: Path
    boot: int
    seq: int
    batch: Batch | None  # None when the file does not decode


def spooled(directory: Path) -> list[Spooled]:
    """The ``*.frame`` files of a spool directory, oldest first (frames there are key frames)."""
    out = []
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.frame")):
        parts = path.name.removesuffix(".frame").split("-")
        if len(parts) != 5:
            continue
        try:
            batch: Batch | None = decode(path.read_bytes())
        except (ValueError, OSError):
            batch = None
        out.append(Spooled(path, int(parts[2], 16), int(parts[3]), batch))
    return out


def secrets_in(data: bytes, secrets: Iterable[str]) -> list[str]:
    """The secrets (as UTF-8) that occur in ``data``."""
    return [s for s in secrets if s and s.encode() in data]


def free_loopback_source(n: int) -> str:
    """A loopback address other than 127.0.0.1 for the ``n``-th client of a scenario (127.0.0.(n+1))."""
    if not 1 <= n <= 250:
        raise ValueError("n is 1 to 250")
    return f"127.0.0.{n + 1}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
