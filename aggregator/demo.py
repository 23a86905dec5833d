"""``edgewatch demo``: an aggregator, this host's agent and simulated hosts, on a data dir here.

Everything runs as real processes on loopback: ``edgewatch aggregator``, ``edgewatch agent`` (this
host, enrolled once) and ``edgewatch sim`` (20 hosts with six hours of history and failure
scenarios). It prints the URL, the admin login and an API token, and stops them all on Ctrl-C (or
after ``--duration``). The data dir stays, so the next run goes on where this one stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import accounts
from .db import DB_NAME, open_writer

SCENARIOS = (
    "cpu-spike:3@2m+10m",
    "memory-leak/2h:5@-1h",
    "disk-fill/3h:7@-2h",
    "service-down:9@1m+15m",
    "silent:11@3m+10m",
    "flapping:13",
)
EDGEWATCH = [sys.executable, "-c", "from edgewatch.protocol.cli import main; raise SystemExit(main())"]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the aggregator exited at start; see aggregator.log in the demo dir")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):  # noqa: S310 (our own http URL)
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError("the aggregator did not answer within 30 s; see aggregator.log in the demo dir")


def _credentials(data_dir: Path, hosts: int) -> dict[str, Any]:
    """The admin login and API token (made once, kept in credentials.json), and a new enrollment."""
    path = data_dir.parent / "credentials.json"
    conn = open_writer(data_dir / DB_NAME)
    now = int(time.time() * 1000)
    try:
        creds: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        conn.execute("BEGIN IMMEDIATE")
        if not creds:
            password = os.environ.get("EDGEWATCH_ADMIN_PASSWORD") or accounts.auth.new_secret()[:16]
            try:
                accounts.add_user(conn, "admin", "admin", password, now, actor="demo")
            except accounts.AccountError:  # an earlier run made it, and its credentials file is gone
                password = "(the one printed by the first demo run)"  # noqa: S105 (a message)
            creds = {
                "user": "admin",
                "password": password,
                "api_token": accounts.add_api_token(conn, "admin", "demo", now, actor="demo"),
            }
        creds["enrollment"] = accounts.add_enrollment(conn, now, ttl_s=3600, uses=hosts + 1, actor="demo")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({k: v for k, v in creds.items() if k != "enrollment"}, f)
    return creds


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgewatch demo",
        description="Run an aggregator, this host's agent and simulated hosts with failure scenarios, "
        "on a data dir in the working directory; prints the URL and the admin login.",
    )
    p.add_argument(
        "--dir", type=Path, default=Path("edgewatch-demo"), help="demo data dir (default ./edgewatch-demo)"
    )
    p.add_argument(
        "--port", type=int, default=8480, help="port on 127.0.0.1 (default 8480; a free one if taken)"
    )
    p.add_argument("--hosts", type=int, default=20, help="simulated hosts (default 20)")
    p.add_argument(
        "--history", default="6h", help="past data the simulated hosts back-fill first (default 6h)"
    )
    p.add_argument(
        "--interval", default="10s", help="sampling interval of agent and simulated hosts (default 10s)"
    )
    p.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (default: at Ctrl-C)"
    )
    p.add_argument("--no-agent", action="store_true", help="do not run an agent for this host")
    return p


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    if args.hosts < 0 or args.port <= 0:
        print("edgewatch demo: --hosts must be 0 or more and --port a port number", file=sys.stderr)
        return 2
    root: Path = args.dir.resolve()
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    port = args.port if _port_free(args.port) else _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "EDGEWATCH_AGGREGATOR_STORAGE_COMPACT_INTERVAL": "10s"}
    procs: list[subprocess.Popen[bytes]] = []
    logs = []

    def spawn(name: str, *cmd: str) -> subprocess.Popen[bytes]:
        log = (root / f"{name}.log").open("ab")
        logs.append(log)
        proc = subprocess.Popen([*EDGEWATCH, *cmd], stdout=log, stderr=log, env=env)
        procs.append(proc)
        return proc

    stop = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        creds = _credentials(data_dir, args.hosts)
        aggregator = spawn(
            "aggregator", "aggregator", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"
        )
        _wait_ready(url, aggregator)
        if not args.no_agent:
            state = root / "agent"
            if not (state / "identity.json").exists():
                done = subprocess.run(
                    [*EDGEWATCH, "enroll", url, creds["enrollment"], "--state-dir", str(state)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if done.returncode != 0:
                    print(
                        f"edgewatch demo: the local agent could not enroll: {done.stderr.strip()}",
                        file=sys.stderr,
                    )
            if (state / "identity.json").exists():
                spawn(
                    "agent",
                    "agent",
                    "--state-dir",
                    str(state),
                    "--aggregator",
                    url,
                    "--interval",
                    args.interval,
                )
        if args.hosts:
            sim = ["sim", "--hosts", str(args.hosts), "--interval", args.interval, "--aggregator", url]
            sim += ["--enroll-token", creds["enrollment"], "--state", str(root / "sim-hosts.json")]
            sim += ["--history", args.history, "--seed", "7"]
            for spec in SCENARIOS:
                sim += ["--scenario", spec]
            spawn("sim", *sim)
        print("edgewatch demo is running")
        print(f"  URL:        {url}/")
        print(f"  login:      {creds['user']} / {creds['password']}")
        print(f"  API token:  {creds['api_token']}")
        print(f"  try:        curl -H 'Authorization: Bearer {creds['api_token']}' {url}/api/v1/hosts")
        print(f"  data, logs: {root}  (Ctrl-C stops; the next run goes on with the same data)")
        sys.stdout.flush()
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop and (deadline is None or time.monotonic() < deadline):
            if aggregator.poll() is not None:
                print("edgewatch demo: the aggregator stopped; see aggregator.log", file=sys.stderr)
                return 1
            time.sleep(0.2)
    except (RuntimeError, OSError, sqlite3.Error) as exc:
        print(f"edgewatch demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    print("edgewatch demo stopped")
    return 0
