"""NetworkCollector on golden /proc/net files: interface counters and TCP connections by state."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.agent.collectors.network import TCP_STATES, NetworkCollector
from edgewatch.agent.collectors.procfs import ProcFormatError

from .readings import PI, VM_T1, Reading, snapshot_copy, write


def test_interface_counters() -> None:
    r = Reading(NetworkCollector(PI / "proc").collect(0.0))
    assert r("node_network_receive_bytes_total", device="eth0") == 9876543210
    assert r("node_network_receive_packets_total", device="eth0") == 12345678
    assert r("node_network_receive_errs_total", device="eth0") == 3
    assert r("node_network_receive_drop_total", device="eth0") == 17
    assert r("node_network_transmit_bytes_total", device="eth0") == 1234567890
    assert r("node_network_transmit_packets_total", device="eth0") == 8765432
    assert r("node_network_transmit_errs_total", device="eth0") == 1
    assert r("node_network_transmit_drop_total", device="eth0") == 2
    assert r.is_counter("node_network_receive_bytes_total")


def test_counter_touching_the_colon_and_loopback_skipped() -> None:
    r = Reading(NetworkCollector(PI / "proc").collect(0.0))
    assert r("node_network_receive_bytes_total", device="wlan0") == 1234567890  # "wlan0:1234567890"
    assert r("node_network_transmit_bytes_total", device="wlan0") == 234567890
    assert r("node_network_transmit_bytes_total", device="docker0") == 1402
    assert r.label_values("node_network_receive_bytes_total", "device") == ["eth0", "wlan0", "docker0"]


def test_exclude_is_a_parameter() -> None:
    r = Reading(NetworkCollector(PI / "proc", exclude="^(docker|veth)").collect(0.0))
    assert r.label_values("node_network_receive_bytes_total", "device") == ["lo", "eth0", "wlan0"]


def test_tcp_states_count_ipv4_and_ipv6() -> None:
    r = Reading(NetworkCollector(PI / "proc").collect(0.0))
    counts = {dict(labels)["state"]: n for labels, n in r.of("node_tcp_connection_states").items()}
    assert counts == {
        "established": 3,
        "syn_sent": 1,
        "syn_recv": 0,
        "fin_wait1": 0,
        "fin_wait2": 0,
        "time_wait": 1,
        "close": 0,
        "close_wait": 1,
        "last_ack": 0,
        "listen": 4,
        "closing": 0,
    }
    assert r("edgewatch_tcp_table_truncated") == 0


def test_recorded_vm_tcp_states() -> None:
    # recorded with 3 connected pairs, 2 closed by the client first, 2 half-closed and one over IPv6
    r = Reading(NetworkCollector(VM_T1 / "proc").collect(0.0))
    assert r("node_tcp_connection_states", state="established") == 8
    assert r("node_tcp_connection_states", state="listen") == 3
    assert r("node_tcp_connection_states", state="time_wait") == 10
    assert r("node_tcp_connection_states", state="close_wait") == 2
    assert r("node_tcp_connection_states", state="fin_wait2") == 2
    assert r("node_network_receive_bytes_total", device="eth0") == 277264277
    assert set(r.label_values("node_network_receive_bytes_total", "device")) == {"ifb0", "ifb1", "eth0"}


def test_tcp_table_is_capped(tmp_path: Path) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    r = Reading(NetworkCollector(root, max_sockets=5).collect(0.0))
    assert sum(v for v in r.of("node_tcp_connection_states").values() if v is not None) == 5
    assert r("edgewatch_tcp_table_truncated") == 1
    exact = Reading(NetworkCollector(root, max_sockets=10).collect(0.0))  # 8 + 2 lines: all counted
    assert exact("edgewatch_tcp_table_truncated") == 0


def test_kernel_without_ipv6(tmp_path: Path) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    (root / "net" / "tcp6").unlink()
    r = Reading(NetworkCollector(root).collect(0.0))
    assert r("node_tcp_connection_states", state="listen") == 3
    assert len(r.of("node_tcp_connection_states")) == len(TCP_STATES)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("dev", "h1\nh2\n  eth0: 1 2 3\n", "not 'interface: 16 counters'"),
        ("dev", "h1\nh2\n  eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", "not 'interface: 16 counters'"),
        ("dev", "h1\nh2\n  eth0: 1 2 3 4 5 6 7 8 x 10 11 12 13 14 15 16\n", "not a number"),
        ("tcp", "header\n   0: 00000000:0016\n", "not a socket line"),
    ],
    ids=["dev-truncated", "dev-no-colon", "dev-garbage", "tcp-truncated"],
)
def test_malformed_files_raise(tmp_path: Path, name: str, text: str, message: str) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    write(root / "net" / name, text)
    with pytest.raises(ProcFormatError, match=message):
        NetworkCollector(root).collect(0.0)


def test_tcp_states_are_counted_every_tcp_interval_and_held_in_between(tmp_path: Path) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    c = NetworkCollector(root, tcp_interval=60.0)
    assert Reading(c.collect(1000.0))("node_tcp_connection_states", state="listen") == 4
    (root / "net" / "tcp6").unlink()
    text = (root / "net" / "dev").read_text()
    write(root / "net" / "dev", text.replace("9876543210", "9876543999"))
    held = Reading(c.collect(1050.0))
    assert held("node_tcp_connection_states", state="listen") == 4  # the count of 1000.0
    assert held("node_network_receive_bytes_total", device="eth0") == 9876543999  # read every time
    assert Reading(c.collect(1060.0))("node_tcp_connection_states", state="listen") == 3
    every = NetworkCollector(root, tcp_interval=0.0)
    every.collect(0.0)
    write(root / "net" / "tcp6", (PI / "proc" / "net" / "tcp6").read_text())
    assert Reading(every.collect(0.0))("node_tcp_connection_states", state="listen") == 4


def test_a_missing_ipv4_table_is_an_error_not_zero_connections(tmp_path: Path) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    (root / "net" / "tcp").unlink()
    with pytest.raises(FileNotFoundError):
        NetworkCollector(root).collect(0.0)
