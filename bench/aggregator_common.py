"""Helpers of the aggregator benchmark (bench/aggregator.py): processes, /proc, HTTP, figures.

Every process the benchmark starts is registered in ``Processes`` and stopped by its ``close()``
(SIGTERM, then SIGKILL after a grace period), which the caller runs in a ``finally``; SIGTERM to the
benchmark itself raises ``SystemExit`` so those ``finally`` blocks run on every way out.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
HOST = "127.0.0.1"  # nothing of this benchmark talks to anything else


def logger(name: str) -> Callable[[str], None]:
    """A progress printer for stderr: ``bench/NAME: message``."""

    def say(msg: str) -> None:
        print(f"bench/{name}: {msg}", file=sys.stderr, flush=True)

    return say


log = logger("aggregator")


def emit(obj: dict[str, Any]) -> None:
    """One measurement: one JSON object on one line of stdout."""
    print(json.dumps(obj), flush=True)


def exit_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (every core, every process), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by the nearest-rank method."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def rnd(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def http(
    url: str,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    method: str | None = None,
) -> tuple[int, bytes]:
    """(status, body) of one request to 127.0.0.1; an HTTP error status is answered, not raised."""
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError(f"the benchmark only talks to {HOST}, not {url}")
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0, what: str = "") -> None:
    """Wait until ``url`` answers 200 (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what or proc.args!r} exited with {proc.returncode} while starting")
        with contextlib.suppress(OSError):
            status, _ = http(url, timeout=2)
            if status == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what or url} did not answer within {timeout:g} s")


class Processes:
    """The processes this benchmark started; ``close()`` stops every one of them."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(list(argv), **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 30.0) -> int:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; answers the exit code."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.returncode

    def close(self) -> None:
        for proc in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop(proc, grace=10.0)
        for proc in list(self.procs):  # stop() failed for these: make sure they are gone
            with contextlib.suppress(Exception):
                proc.kill()
                proc.wait(5)
        self.procs.clear()


def run_in_scratch(
    name: str, what: str, body: Callable[[Path, Processes], None], *, keep: bool = False
) -> int:
    """The shape of every benchmark's ``main``: ``body(tmp, procs)`` in a new scratch directory,
    every process it started stopped on the way out (errors, Ctrl-C and SIGTERM included) and the
    directory removed unless ``keep``. Progress on stderr as ``bench/NAME``; 130 after Ctrl-C."""
    say = logger(name)
    exit_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix=f"edgewatch-bench-{name}-"))
    procs = Processes()
    started = time.perf_counter()
    say(f"{what} on {CORES} cores; scratch {tmp}")
    try:
        body(tmp, procs)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        procs.close()
        if keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        say(f"done in {time.perf_counter() - started:.0f} s")
    return 0


def edgewatch_bin() -> str:
    path = Path(sys.executable).with_name("edgewatch")
    if not path.exists():
        sys.exit(f"bench/aggregator: {path} is missing; run `make setup`")
    return str(path)


def write_config(path: Path, data_dir: Path, port: int, **sections: dict[str, Any]) -> None:
    """An aggregator.toml: listen on 127.0.0.1:port, data in data_dir, plus ``sections``."""
    lines = [f'listen = "{HOST}:{port}"', f'data_dir = "{data_dir}"', 'log_level = "info"']
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, (int, float)):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f'{key} = "{value}"')
    path.write_text("\n".join(lines) + "\n")


class Aggregator:
    """A real ``edgewatch aggregator`` process on 127.0.0.1, its log in ``log_path``."""

    def __init__(self, procs: Processes, config: Path, log_path: Path, port: int) -> None:
        self.procs = procs
        self.url = f"http://{HOST}:{port}"
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = procs.start(
            [edgewatch_bin(), "aggregator", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        try:
            wait_http(self.url + "/healthz", self.proc, what="the aggregator")
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> int:
        code = self.procs.stop(self.proc)
        self._log.close()
        return code

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def ro_connect(db: Path) -> sqlite3.Connection:
    """A read-only connection to a database another process writes (WAL mode)."""
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30, isolation_level=None)


def maintenance_totals(log_path: Path, since_line: int = 0) -> dict[str, int]:
    """Sums of the aggregator's ``maintenance windows=… rows=… merged=…`` log lines after ``since_line``."""
    totals = {"passes": 0, "windows": 0, "rows": 0, "merged": 0}
    for line in log_path.read_text(errors="replace").splitlines()[since_line:]:
        if " maintenance windows=" not in line:
            continue
        totals["passes"] += 1
        for part in line.split():
            key, _, value = part.partition("=")
            if key in ("windows", "rows", "merged") and value.isdigit():
                totals[key] += int(value)
    return totals


def log_lines(log_path: Path) -> int:
    return len(log_path.read_text(errors="replace").splitlines()) if log_path.exists() else 0


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    log(f"{what}: {time.perf_counter() - started:.1f} s")
