"""Flatten one psutil reading of this host into (name, labels, kind, precision, value) rows.

The benchmarks use it to record *real* host metrics before the agent's collectors exist; names follow
node_exporter, units are base units, floats carry the precision their source really has.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import psutil

Row = tuple[str, dict[str, str], str, int | None, int | float]

_PSEUDO_FS = {
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "tmpfs",
    "overlay",
    "devtmpfs",
    "securityfs",
    "pstore",
    "bpf",
    "tracefs",
    "debugfs",
    "configfs",
    "fusectl",
    "autofs",
    "nsfs",
    "squashfs",
}


def sample(ps: Any = psutil) -> list[Row]:
    rows: list[Row] = []
    add = rows.append
    for cpu, times in enumerate(ps.cpu_times(percpu=True)):
        for mode, seconds in times._asdict().items():
            add(("node_cpu_seconds_total", {"cpu": str(cpu), "mode": mode}, "counter", 2, round(seconds, 2)))
    for cpu, pct in enumerate(ps.cpu_percent(percpu=True)):
        add(("edgewatch_cpu_usage_percent", {"cpu": str(cpu)}, "gauge", 1, round(pct, 1)))
    load = os.getloadavg()
    for label, value in zip(("node_load1", "node_load5", "node_load15"), load):
        add((label, {}, "gauge", 2, round(value, 2)))
    stats = ps.cpu_stats()
    add(("node_context_switches_total", {}, "counter", None, stats.ctx_switches))
    add(("node_intr_total", {}, "counter", None, stats.interrupts))
    vm = ps.virtual_memory()
    for field in (
        "total",
        "available",
        "used",
        "free",
        "active",
        "inactive",
        "buffers",
        "cached",
        "shared",
        "slab",
    ):
        if hasattr(vm, field):
            name = {
                "total": "MemTotal",
                "available": "MemAvailable",
                "free": "MemFree",
                "buffers": "Buffers",
                "cached": "Cached",
                "shared": "Shmem",
                "active": "Active",
                "inactive": "Inactive",
                "slab": "Slab",
                "used": "Used",
            }[field]
            add((f"node_memory_{name}_bytes", {}, "gauge", None, int(getattr(vm, field))))
    sw = ps.swap_memory()
    add(("node_memory_SwapTotal_bytes", {}, "gauge", None, int(sw.total)))
    add(("node_memory_SwapFree_bytes", {}, "gauge", None, int(sw.free)))
    add(("node_vmstat_pswpin", {}, "counter", None, int(sw.sin)))
    add(("node_vmstat_pswpout", {}, "counter", None, int(sw.sout)))
    seen: set[str] = set()
    for part in ps.disk_partitions(all=False):
        if part.fstype in _PSEUDO_FS or part.device in seen:
            continue
        seen.add(part.device)
        try:
            usage = ps.disk_usage(part.mountpoint)
            st = os.statvfs(part.mountpoint)
        except OSError:
            continue
        labels = {"mountpoint": part.mountpoint, "fstype": part.fstype, "device": part.device}
        add(("node_filesystem_size_bytes", labels, "gauge", None, int(usage.total)))
        add(("node_filesystem_avail_bytes", labels, "gauge", None, int(st.f_bavail * st.f_frsize)))
        add(("node_filesystem_free_bytes", labels, "gauge", None, int(st.f_bfree * st.f_frsize)))
        add(("node_filesystem_files", labels, "gauge", None, int(st.f_files)))
        add(("node_filesystem_files_free", labels, "gauge", None, int(st.f_ffree)))
        add(("node_filesystem_readonly", labels, "gauge", None, int("ro" in part.opts.split(","))))
        add(("edgewatch_filesystem_used_percent", labels, "gauge", 1, round(usage.percent, 1)))
    for dev, io in (ps.disk_io_counters(perdisk=True) or {}).items():
        labels = {"device": dev}
        add(("node_disk_read_bytes_total", labels, "counter", None, io.read_bytes))
        add(("node_disk_written_bytes_total", labels, "counter", None, io.write_bytes))
        add(("node_disk_reads_completed_total", labels, "counter", None, io.read_count))
        add(("node_disk_writes_completed_total", labels, "counter", None, io.write_count))
        add(("node_disk_read_time_seconds_total", labels, "counter", 3, io.read_time / 1000))
        add(("node_disk_write_time_seconds_total", labels, "counter", 3, io.write_time / 1000))
        add(("node_disk_io_time_seconds_total", labels, "counter", 3, getattr(io, "busy_time", 0) / 1000))
    for nic, io in ps.net_io_counters(pernic=True).items():
        labels = {"device": nic}
        add(("node_network_receive_bytes_total", labels, "counter", None, io.bytes_recv))
        add(("node_network_transmit_bytes_total", labels, "counter", None, io.bytes_sent))
        add(("node_network_receive_packets_total", labels, "counter", None, io.packets_recv))
        add(("node_network_transmit_packets_total", labels, "counter", None, io.packets_sent))
        add(("node_network_receive_errs_total", labels, "counter", None, io.errin))
        add(("node_network_transmit_errs_total", labels, "counter", None, io.errout))
        add(("node_network_receive_drop_total", labels, "counter", None, io.dropin))
        add(("node_network_transmit_drop_total", labels, "counter", None, io.dropout))
    states: Counter[str] = Counter()
    for proc in ps.process_iter(["status"]):
        states[str(proc.info["status"])] += 1
    for state in ("running", "sleeping", "disk-sleep", "stopped", "zombie", "idle"):
        add(("node_processes_state", {"state": state}, "gauge", None, states.get(state, 0)))
    add(("node_boot_time_seconds", {}, "gauge", None, int(ps.boot_time())))
    return rows
