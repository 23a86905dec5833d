"""HostFacts and UptimeCollector on golden snapshots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgewatch.agent.collectors.host import HostFacts, UptimeCollector, cpu_model, pretty_name
from edgewatch.agent.collectors.procfs import ProcFormatError
from edgewatch.protocol.version import __version__

from .readings import PI, VM_T0, Reading, snapshot_copy, write

PI_UNAME = os.uname_result(("Linux", "raspberrypi", "6.1.0", "#1 SMP PREEMPT", "aarch64"))


def pi_facts(os_release: list[Path] | None = None) -> HostFacts:
    return HostFacts(
        PI / "proc", os_release=os_release or [PI / "etc" / "os-release"], uname=lambda: PI_UNAME
    )


def test_raspberry_pi_facts() -> None:
    assert pi_facts().facts(0.0) == {
        "hostname": "pi-garage",  # /proc/sys/kernel/hostname, not the uname answer
        "os": "Raspbian GNU/Linux 11 (bullseye)",
        "kernel": "6.1.21-v8+",
        "arch": "aarch64",
        "cpu_model": "BCM2835",  # 64-bit Pi kernels name no "model name": the Hardware line
        "cpu_count": "4",
        "memory_bytes": str(3884564 * 1024),
        "boot_time": "1700000000",
        "agent_version": __version__,
    }


def test_recorded_vm_facts() -> None:
    facts = HostFacts(VM_T0 / "proc", os_release=[VM_T0 / "etc" / "os-release"]).facts(0.0)
    assert facts["os"] == "Debian GNU/Linux 12 (bookworm)"
    assert facts["cpu_model"] == "AMD EPYC"
    assert facts["cpu_count"] == "2"
    assert facts["kernel"] == "6.18.44-fc-v769"
    assert facts["boot_time"] == "1795316323"


def test_facts_are_read_again_after_refresh(tmp_path: Path) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    facts = HostFacts(root, os_release=[], uname=lambda: PI_UNAME, refresh=300.0)
    assert facts.facts(1000.0)["hostname"] == "pi-garage"
    write(root / "sys" / "kernel" / "hostname", "pi-shed\n")
    assert facts.facts(1299.0)["hostname"] == "pi-garage"
    assert facts.facts(1300.0)["hostname"] == "pi-shed"
    write(root / "sys" / "kernel" / "hostname", "pi-attic\n")
    assert facts.facts(1200.0)["hostname"] == "pi-attic"  # the clock went back: read again


def test_missing_or_malformed_files_leave_facts_out(tmp_path: Path) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    (root / "cpuinfo").unlink()
    (root / "sys" / "kernel" / "hostname").unlink()
    write(root / "meminfo", "garbage\n")
    write(root / "stat", "cpu  1 2 3\n")
    facts = HostFacts(root, os_release=[tmp_path / "none"], uname=lambda: PI_UNAME).facts(0.0)
    assert facts == {
        "hostname": "raspberrypi",  # from uname
        "kernel": "6.1.21-v8+",
        "arch": "aarch64",
        "agent_version": __version__,
    }


def test_os_release_falls_back_to_the_next_file(tmp_path: Path) -> None:
    write(tmp_path / "usr-lib-os-release", 'NAME=Alpine\nPRETTY_NAME="Alpine Linux v3.19"\n')
    facts = pi_facts(os_release=[tmp_path / "missing", tmp_path / "usr-lib-os-release"]).facts(0.0)
    assert facts["os"] == "Alpine Linux v3.19"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('PRETTY_NAME="Ubuntu 22.04.4 LTS"\n', "Ubuntu 22.04.4 LTS"),
        ("PRETTY_NAME='Arch Linux'\n", "Arch Linux"),
        ("PRETTY_NAME=OpenWrt\n", "OpenWrt"),
        ('NAME="Foo"\nPRETTY_NAME="Foo \\"bar\\""\n', 'Foo "bar"'),
        ('NAME="Foo"\n', None),
    ],
)
def test_pretty_name(tmp_path: Path, text: str, expected: str | None) -> None:
    write(tmp_path / "os-release", text)
    assert pretty_name(tmp_path / "os-release") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\n\nHardware\t: BCM2835\n",
            "ARMv7 Processor rev 4 (v7l)",
        ),
        (
            "processor\t: 0\nProcessor\t: ARMv6-compatible processor rev 7 (v6l)\n",
            "ARMv6-compatible processor rev 7 (v6l)",
        ),
        ("processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n", None),  # a bare arm64 server
    ],
    ids=["armv7", "armv6", "none"],
)
def test_cpu_model_on_arm(tmp_path: Path, text: str, expected: str | None) -> None:
    write(tmp_path / "cpuinfo", text)
    assert cpu_model(tmp_path / "cpuinfo") == expected


def test_uptime() -> None:
    r = Reading(UptimeCollector(PI / "proc").collect(0.0))
    assert r("node_boot_time_seconds") == 1700000000
    assert r("edgewatch_uptime_seconds") == 2474215


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("uptime", "", "uptime"),
        ("uptime", "soon 1.0\n", "uptime"),
        ("stat", "cpu  1 2 3\n", "btime"),
        ("stat", "ctxt 1\nbtime x\n", "btime"),
    ],
)
def test_malformed_uptime_files_raise(tmp_path: Path, name: str, text: str, message: str) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    write(root / name, text)
    with pytest.raises(ProcFormatError, match=message):
        UptimeCollector(root).collect(0.0)
