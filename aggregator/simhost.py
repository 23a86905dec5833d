"""One simulated host for ``edgewatch sim``: the series a real agent sends, as pure functions of time.

``SimHost(name, seed)`` draws a host from its seed (role, CPUs, memory, disks, network interfaces,
systemd units, an HTTP check) and ``sample(now_ms)`` answers one value per series of ``series`` for
any instant, in any order: nothing depends on what was sampled before, so a simulated day is made
without waiting and one seed always gives the same data. Names, kinds, labels and precisions are the
agent's (docs/agent.md); values are already rounded to their series' precision.

Rates are sums of cosines (a working-day cycle with a per-host peak hour, a weekly cycle, faster
waves as noise), so every counter is the exact integral of its rate since boot: counters only grow,
and they agree with the gauges (``edgewatch_cpu_usage_percent`` is the busy share of
``node_cpu_seconds_total`` over the last interval, load averages are CPU averages over 1, 5 and 15
minutes). Hosts reboot every 20 to 60 days (counters restart from zero, ``node_boot_time_seconds``
changes, 75 s without samples), services restart every few days (a ``service`` event and
``edgewatch_systemd_unit_restarts_total``), disks fill slowly and are cleaned up.

The tables a host is drawn from and the failure ``Scenario``s are in ``simcatalog``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from edgewatch.protocol import Batch, Event, Kind, Series, Value
from edgewatch.protocol.version import __version__

from .simcatalog import (
    DATA_MOUNT,
    DISK_COUNTERS,
    DISK_TIMES,
    FS_GAUGES,
    MEMORY_FIELDS,
    MODES,
    NET,
    ROLES,
    SCENARIOS,
    SYSTEMS,
    TCP_STATES,
    TOP,
    UNIT_STATES,
    Scenario,
)
from .simsignals import Signal, Trig, kib, overlap, quantize, unit_random

DAY = 86_400.0
DOWN_AFTER_REBOOT = 75.0  # seconds without samples while a host reboots
GiB = 1 << 30

_NOISE = ((0.015, 13.7), (0.02, 47.0), (0.025, 190.0), (0.03, 1170.0), (0.04, 5400.0))  # amplitude, s


class _Fs(NamedTuple):
    labels: dict[str, str]  # device, fstype, mountpoint
    size: int
    reserved: int  # for root only (ext4's 5 %)
    base: float  # share used after a clean-up
    slow: tuple[float, float, float]  # amplitude, period, phase of the fill-and-clean-up sawtooth
    daily: float  # amplitude of the daily one (logs, rotated)
    fills: tuple[tuple[float, float, float], ...]  # disk-fill: start, end, ramp


class _Disk(NamedTuple):
    device: str
    scale: float  # bytes/s at full activity
    read_size: float
    write_size: float
    wave: Trig  # write bytes/s, around 0
    fills: tuple[tuple[float, float, float], ...]  # disk-fill: start, end of the ramp, extra write bytes/s


class _At(NamedTuple):
    """What every section of one sample needs."""

    t: float
    boot: float
    span: float  # seconds since the previous sample (the interval, or less just after boot)
    cpu: float  # seconds of busy CPU since boot (a whole-host share, per core)
    act: float  # seconds of full activity since boot
    act_now: float  # activity over the last span
    noise: tuple[float, float, float]


class SimHost:
    """A virtual host; see the module. Everything not given is drawn from ``seed``."""

    def __init__(
        self,
        name: str,
        seed: int,
        cpus: int | None = None,
        *,
        memory_bytes: int | None = None,
        interval_s: float = 10.0,
        phase_s: float = 0.0,
        scenarios: Sequence[Scenario] = (),
    ) -> None:
        rng = random.Random(seed)
        draw = rng.uniform
        self.name, self.seed, self.interval_s = name, seed, interval_s
        self._interval_ms = max(1, round(interval_s * 1000))
        self._phase_ms = round(phase_s * 1000) % self._interval_ms
        self._jitter_ms = min(200, self._interval_ms // 20)
        self.role = rng.choice(tuple(ROLES))
        self.units, self.check, url, peak = ROLES[self.role]
        self.check_url = url.format(f"{name}.example.net")
        self.cpus = cpus or rng.choice((2, 2, 4, 4, 4, 8))
        self.memory_bytes = memory_bytes or self.cpus * GiB * rng.choice((1, 2, 2, 4))
        self.swap_bytes = rng.choice((0, GiB, 2 * GiB, 4 * GiB))
        self.physical = rng.random() < 0.65
        self.os, self.kernel = rng.choice(SYSTEMS)
        models = ("Intel(R) Xeon(R) E-2388G CPU @ 3.20GHz", "AMD EPYC 7313P 16-Core Processor")
        self.cpu_model = rng.choice(models if self.physical else ("QEMU Virtual CPU version 2.5+",))
        self.scenarios = tuple(scenarios)
        for sc in self.scenarios:
            self._check(sc)
        self._reboot = (draw(20, 60) * DAY, draw(0, 60 * DAY))  # period, phase
        self._restarts = tuple((draw(2, 8) * DAY, draw(0, 8 * DAY)) for _ in self.units)

        # activity, 0 to about 1.2: a working day (peak hour shifted per host) times a week, plus noise
        peak_s = (peak + draw(-2.5, 2.5)) * 3600
        wd, ww, weekly = 2 * math.pi / DAY, 2 * math.pi / (7 * DAY), 0.05 if self.role == "batch" else 0.18
        day = Trig(0.55, ((0.4, wd, -wd * peak_s), (0.1, 2 * wd, -2 * wd * peak_s)))
        week = Trig(1 - weekly, ((weekly, ww, -ww * 6.5 * DAY),))  # busiest on Wednesdays, calm on Sundays
        noise = [Trig.wave(a, p * draw(0.8, 1.2), draw(0, 6.3)) for a, p in _NOISE]
        self.activity = sum(noise, day * week)

        # CPU: busy share of the host, a deviation per core, iowait and steal; idle never below 0.5 %
        cpu = self.activity * draw(0.25, 0.6) + draw(0.02, 0.06)
        cpu = (cpu + max(0.0, 0.02 - cpu.bounds()[0])) * min(1.0, 0.85 / cpu.bounds()[1])
        self._devs = tuple(
            Trig.wave(0.007, draw(15, 40), draw(0, 6.3)) + Trig.wave(0.005, draw(90, 400), draw(0, 6.3))
            for _ in range(self.cpus)
        )
        self._iowait = self.activity * 0.004 + 0.002 + Trig.wave(0.001, draw(30, 90), draw(0, 6.3))
        self._steal = Trig() if self.physical else Trig(0.0015, ((0.001, 2 * math.pi / 77, 0.0),))
        cap = 0.995 - self._iowait.bounds()[1] - self._steal.bounds()[1] - 0.012
        self._cpu = Signal(cpu)
        for sc in self.scenarios:
            if sc.name == "cpu-spike":
                level = min(cap - 0.004, float(sc.param or 97) / 100 - self._steal.const)
                self._cpu = self._cpu.override(*sc.window, Trig(level) + Trig.wave(0.004, 23, 1.0))
            elif sc.name == "flapping":
                period = int(sc.param or 4) * interval_s
                self._cpu = self._cpu.override(*sc.window, Trig(0.80) + Trig.wave(0.12, period))
        self._memory = self.activity * draw(0.08, 0.15) + draw(0.2, 0.45) + Trig.wave(0.01, 3600)
        self._leaks = tuple((*sc.window, sc.ramp()) for sc in self.scenarios if sc.name == "memory-leak")

        # storage: a root disk and a data disk; /, the data mount, and /boot/efi on physical hosts
        root_dev, data_dev = ("nvme0n1", "nvme1n1") if self.physical else ("vda", "vdb")
        fills = tuple((*sc.window, sc.ramp()) for sc in self.scenarios if sc.name == "disk-fill")
        root_part = f"/dev/{root_dev}{'p2' if self.physical else '1'}"
        mounts: list[tuple[str, str, str, float]] = [(root_part, "ext4", "/", rng.choice((32, 64, 128)))]
        mounts += [(f"/dev/{root_dev}p1", "vfat", "/boot/efi", 0.5)] if self.physical else []
        mounts += [(f"/dev/{data_dev}", "xfs", DATA_MOUNT[self.role], rng.choice((100, 250, 500, 1000)))]
        self._fs = tuple(
            _Fs({"device": dev, "fstype": fstype, "mountpoint": mount}, int(gib * GiB),
                int(gib * GiB) // 20 // 4096 * 4096 if mount == "/" else 0, draw(0.12, 0.5),
                (draw(0.03, 0.12), draw(5, 25) * DAY, draw(0, 25 * DAY)), draw(0.001, 0.006),
                fills if mount == "/" else ())
            for dev, fstype, mount, gib in mounts
        )  # fmt: skip
        root, disks = self._fs[0], []
        for n, dev in enumerate((root_dev, data_dev)):
            scale = draw(0.3, 3.0) * (1 + 3 * n) * 1e6  # bytes/s at full activity; at least 0.1 of it always
            extra = tuple(
                (s, min(e, s + r), (root.size - root.reserved) * (1 - root.base) / r) for s, e, r in fills
            )
            wave = Trig.wave(scale * draw(0.01, 0.05), 31, n)
            disks.append(
                _Disk(dev, scale, draw(16, 64) * 1024, draw(8, 32) * 1024, wave, extra if n == 0 else ())
            )
        self._disks = tuple(disks)
        self._nics = [("eno1" if self.physical else "ens3", draw(0.2, 5.0) * 1e6, draw(0.5, 2.5))]
        self._nics += [("docker0", draw(0.05, 0.5) * 1e6, 1.0)] if self.role == "batch" else []
        self._tcp_base, self._procs = draw(20, 600), rng.randrange(90, 160) + 25 * self.cpus
        self._pids = tuple(str(rng.randrange(400, 60000)) for _ in range(3))
        self._check_latency, self._cert_phase = draw(0.01, 0.08), draw(0, 60 * DAY)
        self.series: tuple[Series, ...] = tuple(self._define())

    def _check(self, sc: Scenario) -> None:
        if sc.name not in SCENARIOS:
            raise ValueError(f"unknown scenario {sc.name!r}; use one of {', '.join(SCENARIOS)}")
        if sc.end_ms is not None and sc.end_ms <= sc.start_ms:
            raise ValueError(f"scenario {sc.name} ends before it starts")
        if sc.name == "service-down" and sc.param and sc.param not in self.units:
            raise ValueError(f"{self.name} has no unit {sc.param}; it has {', '.join(self.units)}")
        low, high = {"cpu-spike": (50, 100), "flapping": (2, 1000)}.get(sc.name, (1, 1e9))
        if sc.param and sc.name not in ("service-down", "silent"):
            try:
                ok = low <= float(sc.param) <= high
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(
                    f"scenario {sc.name} takes a number from {low:g} to {high:g}, not {sc.param!r}"
                )

    # -- time ------------------------------------------------------------------------------------

    def boot_time(self, t: float) -> float:
        """When the host last booted at or before ``t`` (seconds)."""
        period, phase = self._reboot
        return phase + math.floor((t - phase) / period) * period

    def silent(self, now_ms: int) -> bool:
        """True when the host sends nothing: rebooting, or in a ``silent`` scenario."""
        t = now_ms / 1000
        if t - self.boot_time(t) < DOWN_AFTER_REBOOT:
            return True
        return any(sc.name == "silent" and sc.window[0] <= t < sc.window[1] for sc in self.scenarios)

    def tick_time(self, k: int) -> int:
        """Timestamp (ms) of sample number ``k``: the interval grid, shifted by the phase, jittered."""
        return k * self._interval_ms + self._phase_ms + int(self._jitter_ms * unit_random(self.seed, 1, k))

    def first_tick(self, at_ms: int) -> int:
        """The number of the first sample whose grid time is at or after ``at_ms``."""
        return -((self._phase_ms - at_ms) // self._interval_ms)

    def ticks(self, start_ms: int, end_ms: int) -> list[int]:
        """Timestamps of the samples whose grid time is in ``[start_ms, end_ms)``, silent ones left out."""
        out = (self.tick_time(k) for k in range(self.first_tick(start_ms), self.first_tick(end_ms)))
        return [t for t in out if not self.silent(t)]

    # -- what a batch carries --------------------------------------------------------------------

    def facts(self, now_ms: int) -> dict[str, str]:
        """Host metadata, as the agent's host collector reports it."""
        boot = str(int(self.boot_time(now_ms / 1000)))
        return {"hostname": self.name, "os": self.os, "kernel": self.kernel, "arch": "x86_64",
                "cpu_model": self.cpu_model, "cpu_count": str(self.cpus), "boot_time": boot,
                "memory_bytes": str(self.memory_bytes), "agent_version": __version__}  # fmt: skip

    def batch(
        self, timestamps_ms: Sequence[int], boot_id: int, seq: int, agent_id: str, since_ms: int | None = None
    ) -> Batch:
        """The samples at ``timestamps_ms`` (increasing) and the events since ``since_ms`` (default: one
        interval before the first sample), each event stamped with the first sample at or after it."""
        stamps = tuple(timestamps_ms)
        since = stamps[0] - self._interval_ms if since_ms is None else since_ms
        events = [
            Event(next(ts for ts in stamps if ts >= at), "service", attrs)
            for at, attrs in self.events(since, stamps[-1])
        ]
        values = tuple(zip(*(self.sample(ts) for ts in stamps)))
        return Batch(agent_id, boot_id, seq, stamps, self.series, values, self.facts(stamps[-1]), events)

    def events(self, since_ms: int, until_ms: int) -> list[tuple[int, dict[str, str | bool]]]:
        """(ms, attributes) of the units' state changes in ``(since_ms, until_ms]``, oldest first."""
        out: list[tuple[float, dict[str, str | bool]]] = []
        t0, t1 = since_ms / 1000, until_ms / 1000
        for i, unit in enumerate(self.units):
            down = self._down(unit)
            gap, phase = self._restarts[i]
            for k in range(math.floor((t0 - phase) / gap), math.floor((t1 - phase) / gap) + 1):
                at = self._restart_at(i, k)
                if t0 < at <= t1 and not any(s <= at < e for s, e in down):
                    out.append((at, _change(unit, "active", "active", restarted=True)))
            out += [(s, _change(unit, "active", "failed")) for s, _ in down if t0 < s <= t1]
            out += [(e, _change(unit, "failed", "active")) for _, e in down if t0 < e <= t1]
        return sorted(((min(until_ms, math.ceil(at * 1000)), attrs) for at, attrs in out), key=lambda e: e[0])

    def _restart_at(self, unit: int, k: int) -> float:
        gap, phase = self._restarts[unit]
        return phase + (k + 0.5 * unit_random(self.seed, 2 + unit, k)) * gap

    def _restarts_until(self, unit: int, t: float) -> int:
        """Restarts of ``unit`` at or before ``t``, counted from an arbitrary origin."""
        gap, phase = self._restarts[unit]
        k = math.floor((t - phase) / gap)
        return k + (self._restart_at(unit, k) <= t)

    def _down(self, unit: str) -> list[tuple[float, float]]:
        downs = (sc for sc in self.scenarios if sc.name == "service-down")
        return [sc.window for sc in downs if (sc.param or self.units[0]) == unit]

    def _leak(self, t: float) -> float:
        """How far a memory leak has got at ``t``: 0 (none) to 1 (all memory gone)."""
        return max((min(1.0, (t - s) / r) for s, e, r in self._leaks if s <= t < e), default=0.0)

    # -- the series, and their values section by section in the same order ---------------------

    def _define(self) -> Iterator[Series]:
        g, c = Kind.GAUGE, Kind.COUNTER
        for n in range(self.cpus):
            yield from (Series("node_cpu_seconds_total", {"cpu": str(n), "mode": m}, c, 2) for m in MODES)
        yield from (Series(f"node_{n}_total", (), c) for n in ("context_switches", "intr", "forks"))
        yield from (Series(f"node_{n}") for n in ("procs_running", "procs_blocked", "cpu_count"))
        for cpu in [*map(str, range(self.cpus)), "all"]:
            yield Series("edgewatch_cpu_usage_percent", {"cpu": cpu}, g, 1)
        yield from (Series(f"edgewatch_cpu_{n}_percent", (), g, 1) for n in ("iowait", "steal"))
        yield from (Series(f"node_load{n}", (), g, 2) for n in (1, 5, 15))
        yield from (Series(f"node_memory_{f}_bytes") for f in MEMORY_FIELDS)
        yield Series("edgewatch_memory_used_bytes")
        yield Series("edgewatch_memory_used_percent", (), g, 1)
        yield Series("edgewatch_swap_used_bytes")
        yield from (Series(f"node_vmstat_{n}", (), c) for n in ("pswpin", "pswpout", "pgmajfault"))
        for f in self._fs:
            yield from (Series(f"node_filesystem_{n}", f.labels) for n in FS_GAUGES)
            yield Series("edgewatch_filesystem_used_percent", f.labels, g, 1)
        for d in self._disks:
            dev = {"device": d.device}
            yield from (Series(f"node_disk_{n}_total", dev, c) for n in DISK_COUNTERS)
            yield from (Series(f"node_disk_{n}_seconds_total", dev, c, 3) for n in DISK_TIMES)
            yield Series("node_disk_io_now", dev)
            yield Series("edgewatch_disk_utilisation_percent", dev, g, 1)
        for nic, _, _ in self._nics:
            for way in ("receive", "transmit"):
                yield from (Series(f"node_network_{way}_{n}_total", {"device": nic}, c) for n in NET)
        yield from (Series("node_tcp_connection_states", {"state": s}) for s in TCP_STATES)
        yield Series("edgewatch_tcp_table_truncated")
        yield from (Series("node_processes_state", {"state": s}) for s in "RSDZTI")
        yield from (Series(f"node_processes_{n}") for n in ("threads", "pids"))
        top = [{"rank": str(r + 1), "pid": pid, "name": n, "user": u}
               for r, (pid, (n, u)) in enumerate(zip(self._pids, TOP[self.role]))]  # fmt: skip
        yield from (Series("edgewatch_process_cpu_percent", labels, g, 1) for labels in top)
        yield from (Series("edgewatch_process_resident_bytes", labels) for labels in top)
        if self.physical:
            for sensor in ("Package id 0", "Core 0", "Core 1"):
                yield Series(
                    "node_hwmon_temp_celsius", {"chip": "platform_coretemp_0", "sensor": sensor}, g, 1
                )
            yield Series("node_hwmon_temp_celsius", {"chip": "nvme_nvme0", "sensor": "Composite"}, g, 1)
            yield Series("node_thermal_zone_temp", {"type": "x86_pkg_temp", "zone": "0"}, g, 1)
        yield from (Series(n) for n in ("node_boot_time_seconds", "edgewatch_uptime_seconds"))
        for unit in self.units:
            yield Series("edgewatch_systemd_unit_active", {"unit": unit})
            yield from (Series("node_systemd_unit_state", {"unit": unit, "state": s}) for s in UNIT_STATES)
            yield Series("edgewatch_systemd_unit_restarts_total", {"unit": unit}, c)
        yield Series("edgewatch_check_up", {"check": self.check, "kind": "http"})
        yield Series("edgewatch_check_duration_seconds", {"check": self.check, "kind": "http"}, g, 3)
        yield Series("edgewatch_check_http_status", {"check": self.check})
        if self.check_url.startswith("https"):
            yield Series("edgewatch_check_certificate_expiry_days", {"check": self.check}, g, 1)
        yield Series("edgewatch_agent_resident_bytes")
        yield Series("edgewatch_agent_cpu_seconds_total", (), c, 2)

    def sample(self, now_ms: int) -> list[Value]:
        """One value per series of ``series`` at ``now_ms``: a pure function of the seed and the time."""
        t = now_ms / 1000
        boot = self.boot_time(t)
        span = max(min(self.interval_s, t - boot), 0.001)
        noise = (
            unit_random(self.seed, 5, now_ms),
            unit_random(self.seed, 6, now_ms),
            unit_random(self.seed, 7, now_ms),
        )
        act_now = max(0.0, self.activity.integral(t - span, t) / span)
        at = _At(t, boot, span, self._cpu.integral(boot, t), self.activity.integral(boot, t), act_now, noise)
        out: list[Value] = []
        busy, running, blocked = self._sample_cpu(out, at)
        self._sample_memory(out, at)
        self._sample_storage(out, at)
        self._sample_rest(out, at, busy, running, blocked)
        return out

    def _sample_cpu(self, out: list[Value], at: _At) -> tuple[float, int, int]:
        """The CPU section; answers the busy share, and the running and blocked processes."""
        t, boot, span, cpu, n = at.t, at.boot, at.span, at.cpu, at.noise[2]
        up = t - boot
        recent = self._cpu.integral(t - span, t)
        iowait, steal = self._iowait.integral(boot, t), self._steal.integral(boot, t)
        w_recent, s_recent = self._iowait.integral(t - span, t), self._steal.integral(t - span, t)
        usage = []
        for dev in self._devs:
            used = cpu + dev.integral(boot, t)  # user nice system idle iowait irq softirq steal
            seconds = (0.7 * used, 0.01 * used, 0.22 * used, up - used - iowait - steal, iowait,
                       0.01 * used, 0.06 * used, steal)  # fmt: skip
            out += [quantize(s, 2) for s in seconds]
            usage.append((recent + dev.integral(t - span, t) + s_recent) / span)
        out += [int(self.cpus * (900 * up + 12000 * cpu)), int(self.cpus * (400 * up + 6000 * cpu))]
        running, blocked = max(1, int(self.cpus * recent / span * 1.3 + n)), int(w_recent / span * 60 * n)
        out += [int(1.5 * up + 8 * self.cpus * cpu), running, blocked, self.cpus]
        busy = sum(usage) / len(usage)
        out += [quantize(min(100.0, 100 * u), 1) for u in (*usage, busy)]
        out += [quantize(100 * w_recent / span, 1), quantize(100 * s_recent / span, 1)]
        for minutes in (1, 5, 15):
            start = max(boot, t - 60 * minutes)
            avg = self._cpu.integral(start, t) / max(t - start, 0.001)
            out.append(quantize(self.cpus * avg * 1.05 + 0.05 * n, 2))
        return busy, running, blocked

    def _sample_memory(self, out: list[Value], at: _At) -> None:
        total, leak, up = self.memory_bytes, self._leak(at.t), at.t - at.boot
        used_share = self._memory.at(at.t)
        avail = kib(total * (1 - used_share - (0.975 - used_share) * leak))
        swap_used = kib(self.swap_bytes * (0.03 + 0.01 * math.sin(at.t / 7200) + 0.6 * leak))
        shmem, sreclaimable = kib(total * 0.012), kib(avail * 0.06)
        cached = kib(avail * 0.5) + shmem
        used = total - avail
        out += [total, kib(avail * 0.32), avail, kib(avail * 0.04), cached, kib(swap_used * 0.05)]
        out += [kib(used * 0.55 + cached * 0.45), kib(used * 0.25 + cached * 0.5), self.swap_bytes]
        out += [self.swap_bytes - swap_used, kib(total * 2e-4 * (1 + at.noise[0])), shmem]
        out += [
            sreclaimable + kib(total * 0.008),
            sreclaimable,
            used,
            quantize(100 * used / total, 1),
            swap_used,
        ]
        out += [int(0.01 * up + at.cpu), int(0.02 * up + 2 * at.cpu), int(0.3 * up + 20 * at.cpu)]

    def _sample_storage(self, out: list[Value], at: _At) -> None:
        t, boot, span = at.t, at.boot, at.span
        for f in self._fs:
            amp, period, phase = f.slow
            used = f.size * (
                f.base + amp * (((t + phase) / period) % 1) + f.daily * (((t + phase) / DAY) % 1)
            )
            for s, e, ramp in f.fills:
                if s <= t < e:
                    used += (f.size - f.reserved - used) * min(1.0, (t - s) / ramp)
            used = min(int(used) // 4096 * 4096, f.size - f.reserved)
            free = f.size - used
            avail = max(0, free - f.reserved)
            files = f.size // 16384
            out += [0, f.size, free, avail, files, files - int(files * (0.02 + 0.3 * used / f.size)), 0]
            out.append(quantize(100 * used / (used + avail), 1))
        for d in self._disks:
            read = d.scale * (0.4 * at.act + 0.05 * (t - boot))
            written = d.scale * (0.6 * at.act + 0.1 * (t - boot)) + d.wave.integral(boot, t)
            written += sum(rate * overlap(s, e, boot, t) for s, e, rate in d.fills)
            busy = (
                0.12 * at.act + 0.01 * (t - boot) + 0.25 * sum(overlap(s, e, boot, t) for s, e, _ in d.fills)
            )
            recent = (
                0.12 * at.act_now
                + 0.01
                + 0.25 * sum(overlap(s, e, t - span, t) for s, e, _ in d.fills) / span
            )
            reads, writes = read / d.read_size, written / d.write_size
            out += [int(reads), int(writes), int(read) // 512 * 512, int(written) // 512 * 512]
            out += [quantize(reads * 0.0006, 3), quantize(writes * 0.0011, 3), quantize(busy, 3)]
            out += [int(recent * 4 * at.noise[1]), quantize(min(100.0, 100 * recent), 1)]

    def _sample_rest(self, out: list[Value], at: _At, busy: float, running: int, blocked: int) -> None:
        t, boot, (n1, n2, _), a = at.t, at.boot, at.noise, at.act_now
        for _, rx, ratio in self._nics:
            for rate, size in ((rx, 900.0), (rx * ratio, 700.0)):  # bytes/s at full activity, packet size
                total = rate * (0.15 * (t - boot) + at.act)
                packets = total / size
                out += [int(total), int(packets), int(packets / 4e7), int(packets / 3e5)]
        established = int(self._tcp_base * (0.2 + a) + 8 * n1)
        out += [established, int(n2 * 2), int(n1 * 1.5), int(n2 * 3), int(n1 * 2)]
        out += [int(established * (0.3 + n2)), 0, int(n1 * 4), int(n2 * 1.2), 12, 0, 0]
        pids, idle = self._procs + int(30 * a + 6 * n2), 40 + 8 * self.cpus
        out += [running, pids - running - blocked - idle - 1, blocked, int(n1 < 0.1), 0, idle]
        out += [int(pids * (3.1 + 0.4 * a)), pids]
        out += [
            quantize(busy * 100 * self.cpus * share * (0.9 + 0.2 * n1), 1) for share in (0.45, 0.15, 0.05)
        ]
        heap = self.memory_bytes * (0.18 + 0.82 * self._leak(t))  # the leaking process is the biggest
        out += [kib(heap), kib(self.memory_bytes * 0.04), 24 << 20]
        if self.physical:
            package = 33 + 50 * busy + 1.5 * n1
            out += [quantize(package, 1), quantize(package - 1 + n2, 1), quantize(package - 2 + n1, 1)]
            out += [quantize(38 + 8 * a + n2, 1), quantize(package, 1)]
        out += [int(boot), int(t - boot)]
        for i, unit in enumerate(self.units):
            down = self._down(unit)
            failed = any(s <= t < e for s, e in down)
            out += [int(not failed), *(int(s == ("failed" if failed else "active")) for s in UNIT_STATES)]
            back = sum(1 for _, e in down if boot < e <= t)  # systemd started it again: a restart
            out.append(self._restarts_until(i, t) - self._restarts_until(i, boot) + back)
        failing = any(s <= t < e for s, e in self._down(self.units[0]))
        latency = None if failing else quantize(self._check_latency * (1 + 2 * busy) * (0.8 + 0.4 * n2), 3)
        out += [int(not failing), latency, 0 if failing else 200]
        if self.check_url.startswith("https"):  # a 90-day certificate renewed 30 days before it expires
            out.append(quantize(90 - 60 * (((t + self._cert_phase) / (60 * DAY)) % 1.0), 1))
        out += [(15 << 20) + (int(n1 * 256) << 12), quantize(0.0004 * (t - boot) + 0.002 * at.cpu, 2)]


def _change(unit: str, before: str, after: str, *, restarted: bool = False) -> dict[str, str | bool]:
    """A ``service`` event's attributes, as the agent's systemd collector sends them."""
    attrs: dict[str, str | bool] = {"unit": unit, "from": before, "to": after}
    attrs["sub"] = "failed" if after == "failed" else "running"
    return {**attrs, "restarted": True} if restarted else attrs


def history(
    host: SimHost,
    start_ms: int,
    end_ms: int,
    *,
    agent_id: str,
    boot_id: int,
    first_seq: int = 1,
    per_frame: int = 60,
) -> Iterator[Batch]:
    """The host's samples from ``start_ms`` to ``end_ms`` as batches of up to ``per_frame`` samples,
    seq counting up from ``first_seq``: what ``edgewatch sim --history`` sends, for benchmarks."""
    stamps, since = host.ticks(start_ms, end_ms), None
    for seq, i in enumerate(range(0, len(stamps), per_frame), first_seq):
        chunk = stamps[i : i + per_frame]
        yield host.batch(chunk, boot_id, seq, agent_id, since)
        since = chunk[-1]
