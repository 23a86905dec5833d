"""sd_notify over a real datagram socket, as systemd listens for it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from edgewatch.protocol.sdnotify import Notifier


def test_messages_reach_the_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(2)
    try:
        n = Notifier(
            {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
        )
        assert n.watchdog_interval == 30.0
        assert n.ready("sampling every 10 s")
        assert listener.recv(1024) == b"READY=1\nSTATUS=sampling every 10 s"
        assert n.watchdog()
        assert listener.recv(1024) == b"WATCHDOG=1"
        assert n.stopping()
        assert listener.recv(1024) == b"STOPPING=1"
        n.close()
    finally:
        listener.close()


def test_outside_systemd_it_does_nothing() -> None:
    n = Notifier({})
    assert not n.enabled
    assert not n.ready()
    assert n.watchdog_interval is None


def test_watchdog_meant_for_another_process_is_ignored() -> None:
    assert (
        Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval
        is None
    )
