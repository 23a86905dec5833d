"""What a simulated host (``simhost.SimHost``) is drawn from, and the failures it can be given.

The tables: the series families the agent sends (their field, state and mode names, as
docs/agent.md lists them), the roles a host can have (its systemd units, HTTP check and the hour its
load peaks), the busiest processes of each role, the mount of its data disk, and the operating
systems.

``Scenario`` switches a failure on for a window: ``cpu-spike`` (busy CPU at about 97 %, or ``param``
percent), ``memory-leak`` (MemAvailable falls to 2.5 % over ``param`` seconds, default the window or
1 h, then stays there), ``disk-fill`` (``/`` fills to 100 % the same way), ``service-down`` (unit
``param``, default the host's main unit, failed; the HTTP check down with it), ``silent`` (no
samples: ``silent(now_ms)`` says so) and ``flapping`` (CPU oscillating across 80 %, a period of
``param`` samples, default 4). After the window the host is as it would have been without it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

SCENARIOS = ("cpu-spike", "memory-leak", "disk-fill", "service-down", "silent", "flapping")
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")  # as the agent
# the agent's /proc/meminfo fields (agent/collectors/memory.py FIELDS; the aggregator may not import the
# agent, so a test keeps the two in step)
MEMORY_FIELDS: tuple[str, ...] = (
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapCached",
    "Active",
)
MEMORY_FIELDS += ("Inactive", "SwapTotal", "SwapFree", "Dirty", "Shmem", "Slab", "SReclaimable")
TCP_STATES: tuple[str, ...] = (
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
)
TCP_STATES += ("close_wait", "last_ack", "listen", "closing")
FS_GAUGES = ("device_error", "size_bytes", "free_bytes", "avail_bytes", "files", "files_free", "readonly")
DISK_COUNTERS = ("reads_completed", "writes_completed", "read_bytes", "written_bytes")
DISK_TIMES = ("read_time", "write_time", "io_time")
NET = ("bytes", "packets", "errs", "drop")
UNIT_STATES = ("active", "activating", "deactivating", "inactive", "failed")

# role -> (systemd units: the first is the main service, behind the HTTP check), check, URL, peak hour
ROLES: dict[str, tuple[tuple[str, ...], str, str, float]] = {
    "web": (("nginx.service", "php8.2-fpm.service"), "site", "https://{}/health", 14.0),
    "api": (("api.service", "redis-server.service"), "api", "https://{}/healthz", 11.0),
    "db": (("patroni.service", "pgbouncer.service"), "patroni", "http://[::1]:8008/health", 10.0),
    "batch": (("worker.service", "docker.service"), "jobs", "http://[::1]:8080/health", 3.0),
}
TOP = {  # the three busiest processes: name, user
    "web": (("nginx", "www-data"), ("php-fpm8.2", "www-data"), ("edgewatch", "edgewatch")),
    "api": (("gunicorn", "api"), ("redis-server", "redis"), ("edgewatch", "edgewatch")),
    "db": (("postgres", "postgres"), ("patroni", "postgres"), ("pgbouncer", "postgres")),
    "batch": (("python3", "worker"), ("dockerd", "root"), ("containerd", "root")),
}
DATA_MOUNT = {"web": "/srv", "api": "/var/lib/redis", "db": "/var/lib/postgresql", "batch": "/var/lib/docker"}
SYSTEMS = (
    ("Debian GNU/Linux 12 (bookworm)", "6.1.0-26-amd64"),
    ("Ubuntu 24.04.1 LTS", "6.8.0-45-generic"),
    ("Ubuntu 22.04.5 LTS", "5.15.0-122-generic"),
    ("Rocky Linux 9.4 (Blue Onyx)", "5.14.0-427.13.1.el9_4.x86_64"),
)


class Scenario(NamedTuple):
    """A failure from ``start_ms`` to ``end_ms`` (``None``: for ever); ``param`` as the module says."""

    name: str
    start_ms: int
    end_ms: int | None = None
    param: str = ""

    @property
    def window(self) -> tuple[float, float]:
        return self.start_ms / 1000, math.inf if self.end_ms is None else self.end_ms / 1000

    def ramp(self) -> float:
        """Seconds a leak or a fill takes to reach the end (``param``, default the window or 1 h)."""
        s, e = self.window
        return float(self.param) if self.param else (e - s if e < math.inf else 3600.0)
