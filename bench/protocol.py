"""Wire protocol benchmark: frame bytes and encode/decode time per sample, beside JSON and msgpack.

Data sets: ``real`` host metrics recorded with psutil (``host_sample.sample``, 31 samples at a 10 s
interval by default, or ``--replay`` of a ``--record`` file) and a ``synthetic`` fleet (seeded, noisy).
Each is cut into frames of 1, 10 and 30 samples per series. edgewatch codes a stream's first frame
as a key frame (reported on its own line) and every later one as a delta frame against
``next_reference`` of the one before, as agent and aggregator do. Peers code each frame on its own
from a plain ``{agent, seq, timestamps, series: [{name, labels, values}]}``: their encode includes
building that dict, their decode stops at the parsed dict. Every frame is checked to decode right.

stdout: one JSON object per case, then a summary line (each codec's bytes over edgewatch-delta's).
A sample is one non-gap value of one series; times are the best of 5 passes (perf_counter_ns) and
cover encode and decode only (not ``next_reference``).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import msgpack
import zstandard

from edgewatch.protocol import Batch, Kind, Series, Value, as_decoded, decode, encode, next_reference

Row = tuple[str, dict[str, str], str, int | None, int | float]  # as host_sample.sample() gives them
Sample = tuple[int, list[Row]]  # (timestamp in ms, rows)

SAMPLES_PER_FRAME = (1, 10, 30)
MIN_BATCHES = 3  # per stream: a key frame and at least two delta frames
PASSES = 5
MIN_SAMPLES_PER_PASS = 20_000  # small cases are repeated within a pass until they code this many
BUDGET_BYTES, BUDGET_US = 0.5, 3.0  # edgewatch-delta on real host metrics at 10 s, 1 sample a frame
SYNTHETIC_INTERVAL = 10.0
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
PAGE = 4096
US = "encode_decode_us_per_sample"
MEM_NAMES: tuple[str, ...] = ("MemTotal", "MemAvailable", "Used", "MemFree", "Active", "Inactive")
MEM_NAMES += ("Buffers", "Cached", "Shmem", "Slab")
MEM_DRIFT = {"used": (0, 300), "cached": (20, 150), "buffers": (0, 5), "shared": (0, 3), "slab": (0, 20)}
FS_NAMES = ("size_bytes", "avail_bytes", "free_bytes", "files", "files_free", "readonly")
DISK_NAMES: tuple[str, ...] = ("read_bytes", "written_bytes", "reads_completed", "writes_completed")
DISK_NAMES += ("read_time_seconds", "write_time_seconds", "io_time_seconds")


def log(msg: str) -> None:
    print(f"bench/protocol: {msg}", file=sys.stderr, flush=True)


# --- real data: record with psutil, or replay a recording ---------------------------------------


def record(count: int, interval: float, path: Path | None) -> list[Sample]:
    try:
        import psutil
        from host_sample import sample
    except ModuleNotFoundError as exc:
        if exc.name != "psutil":
            raise
        sys.exit("bench/protocol: psutil is missing; run `make setup` (or pass --replay FILE)")
    psutil.cpu_percent(percpu=True)  # the first reading of cpu_percent is meaningless
    log(f"recording {count} samples at a {interval:g} s interval (~{count * interval:.0f} s)")
    out: list[Sample] = []
    step = max(1, round(interval * 1000))
    for i in range(count):
        ts = (time.time_ns() // 1_000_000 // step + 1) * step  # the next multiple of the interval
        time.sleep(max(0.0, ts / 1000 - time.time()))
        out.append((ts, sample()))
        log(f"  sample {i + 1}/{count}: {len(out[-1][1])} series")
    if path is not None:
        with path.open("w") as f:
            f.writelines(json.dumps({"ts": ts, "rows": rows}) + "\n" for ts, rows in out)
        log(f"recording saved to {path}")
    return out


def replay(path: Path) -> list[Sample]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(int(d["ts"]), [(r[0], r[1], r[2], r[3], r[4]) for r in d["rows"]]) for d in lines]


def row_key(r: Row) -> tuple[str, str]:
    return r[0], json.dumps(r[1], sort_keys=True)


def loop(samples: list[Sample], needed: int) -> list[Sample]:
    """The recording repeated up to ``needed`` samples: timestamps go on, counters keep rising at
    their last rate (rounded to their precision), gauges start over."""
    if len(samples) >= needed:
        return samples
    first, prev, last = ({row_key(r): r[4] for r in s[1]} for s in (samples[0], samples[-2], samples[-1]))
    span = {k: 2 * v - first.get(k, v) - prev.get(k, v) for k, v in last.items()}
    period = 2 * samples[-1][0] - samples[0][0] - samples[-2][0]
    out = list(samples)
    for i in range(len(samples), needed):
        n, j = divmod(i, len(samples))
        rows: list[Row] = []
        for row in samples[j][1]:
            name, labels, kind, p, v = row
            if kind == "counter":
                v += n * span.get(row_key(row), 0)
                v = v if p is None else round(v, p)
            rows.append((name, labels, kind, p, v))
        out.append((samples[j][0] + n * period, rows))
    return out


def to_batches(samples: Sequence[Sample], per_frame: int, agent: str) -> list[Batch]:
    """Consecutive samples, ``per_frame`` to a batch (a trailing rest is dropped)."""
    index: dict[tuple[str, str], Series] = {}
    for _, rows in samples:
        for r in rows:
            if (k := row_key(r)) not in index:
                index[k] = Series(r[0], r[1], Kind.COUNTER if r[2] == "counter" else Kind.GAUGE, r[3])
    boot_id = random.Random(agent).getrandbits(64)
    out: list[Batch] = []
    for seq, start in enumerate(range(0, len(samples) - per_frame + 1, per_frame), 1):
        chunk = samples[start : start + per_frame]
        columns: dict[tuple[str, str], list[Value]] = {k: [None] * per_frame for k in index}
        for i, (_, rows) in enumerate(chunk):
            for r in rows:
                columns[row_key(r)][i] = r[4]
        kept = [(index[k], tuple(c)) for k, c in columns.items() if any(v is not None for v in c)]
        timestamps = tuple(ts for ts, _ in chunk)
        series, values = tuple(s for s, _ in kept), tuple(c for _, c in kept)
        out.append(Batch(agent, boot_id, seq, timestamps, series, values, {"hostname": agent, "os": "linux"}))
    return out


# --- synthetic fleet ------------------------------------------------------------------------------


class Host:
    """One simulated host: ``step(dt)`` moves it on by ``dt`` seconds and reads it like host_sample."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = r = rng
        self.busy = r.uniform(0.03, 0.4)  # mean utilisation of a core
        self.steal = r.choice((0, 0, 0.02))  # VMs see steal time
        self.cpu = [[0] * len(MODES) for _ in range(r.choice((4, 6, 8, 8, 8)))]  # centiseconds
        self.load = [self.busy * len(self.cpu)] * 3
        self.ctx = self.intr = 0
        t = r.choice((4, 8, 16, 32, 64)) << 18  # pages
        self.mem = {"total": t, "used": t * r.uniform(0.2, 0.5), "cached": t * r.uniform(0.1, 0.3)}
        self.mem |= {"buffers": t * 0.01, "shared": t * 0.005, "slab": t * 0.02}
        self.swap, self.swapio = r.choice((0, 1 << 19)), [0, 0]
        data = r.random() < 0.5  # a second disk
        disks = ["nvme0n1", "sdb"][: 1 + data]
        self.disks = {d: ([0] * 7, r.uniform(0.5, 20), r.uniform(2, 100)) for d in disks}
        nics = ["lo", "eth0"] + ["docker0"] * (r.random() < 0.3)
        self.nics = {n: ([0] * 8, r.uniform(1e3, 1e5) if n == "lo" else r.uniform(1e4, 5e6)) for n in nics}
        self.procs = {"sleeping": r.randrange(150, 400), "idle": 60 + 4 * len(self.cpu)}
        uptime = r.uniform(2e5, 5e6)
        self.boot = 1_800_000_000 - int(uptime)
        self.fs: list[tuple[dict[str, str], list[int], float]] = []
        self.step(uptime)  # counters count from boot; file systems come after, so they keep their fill
        mounts = [("/", "ext4", "/dev/nvme0n1p2"), ("/boot/efi", "vfat", "/dev/nvme0n1p1")]
        for mnt, fstype, dev in mounts + [("/data", "xfs", "/dev/sdb1")] * data:
            size = 130_000 if fstype == "vfat" else r.randrange(1 << 18, 1 << 28)  # blocks of a page
            state = [size, int(size * r.uniform(0.2, 0.8)), size // 20 * (fstype == "ext4"), size // 4]
            state.append(state[3] - r.randrange(state[3] // 2))
            labels = {"mountpoint": mnt, "fstype": fstype, "device": dev}
            self.fs.append((labels, state, 0 if fstype == "vfat" else r.uniform(5, 200)))

    def jitter(self, mean: float, spread: float = 0.5, burst: float = 0.05) -> float:
        """``mean`` with log-normal noise and, now and then, a burst of many times more."""
        r = self.rng
        return mean * r.lognormvariate(0, spread) * (r.uniform(5, 40) if r.random() < burst else 1)

    def step(self, dt: float) -> list[Row]:
        r = self.rng
        rows: list[Row] = []

        def add(name: str, kind: str, p: int | None, value: float, **labels: str) -> None:
            rows.append((name, labels, kind, p, value))

        pct, running = [], 0.0
        for core, times in enumerate(self.cpu):
            ticks = round(dt * 100) + r.randint(-2, 2)
            util = min(0.9, self.jitter(self.busy, 0.6, 0.03))
            running += util
            shares = (0.7, 0.04 * (r.random() < 0.1), 0.22, 0, 0, 0.01, 0.03, 0, 0, 0)
            inc = [round(ticks * util * x) for x in shares]
            inc[4], inc[7] = round(ticks * r.expovariate(200)), round(ticks * r.uniform(0, self.steal))
            inc[3] = max(0, ticks - sum(inc))  # idle
            for i, mode in enumerate(MODES):
                times[i] += inc[i]
                add("node_cpu_seconds_total", "counter", 2, times[i] / 100, cpu=str(core), mode=mode)
            pct.append(round(100 - 100 * inc[3] / ticks, 1))
        for core, v in enumerate(pct):
            add("edgewatch_cpu_usage_percent", "gauge", 1, v, cpu=str(core))
        for i, horizon in enumerate((60, 300, 900)):
            decay = math.exp(-dt / horizon)
            self.load[i] = self.load[i] * decay + (running + r.uniform(0, 1)) * (1 - decay)
            add(f"node_load{horizon // 60}", "gauge", 2, round(self.load[i], 2))
        self.ctx += int(self.jitter(len(self.cpu) * 800 * dt, 0.3))
        self.intr += int(self.jitter(len(self.cpu) * 400 * dt, 0.2))
        add("node_context_switches_total", "counter", None, self.ctx)
        add("node_intr_total", "counter", None, self.intr)
        m = self.mem
        for k, (mean, sd) in MEM_DRIFT.items():
            m[k] = max(0.0, m[k] + r.gauss(mean, sd))
        total, used, cached, buffers, shared, slab = (int(m[k]) for k in ("total", *MEM_DRIFT))
        free = total - used - cached - buffers - slab
        avail, active = free + cached * 9 // 10 + slab // 2, used * 6 // 10 + cached // 3
        pages = (total, avail, used, free, active, cached // 2, buffers, cached, shared, slab)
        for name, n in zip(MEM_NAMES, pages):
            add(f"node_memory_{name}_bytes", "gauge", None, n * PAGE)
        for i in range(2):
            self.swapio[i] += r.randrange(1, 200) if self.swap and r.random() < 0.05 else 0
        add("node_memory_SwapTotal_bytes", "gauge", None, self.swap * PAGE)
        add("node_memory_SwapFree_bytes", "gauge", None, (self.swap - self.swap // 50) * PAGE)
        add("node_vmstat_pswpin", "counter", None, self.swapio[0])
        add("node_vmstat_pswpout", "counter", None, self.swapio[1])
        for labels, st, rate in self.fs:  # st: size, free, reserved (in blocks), files, files free
            size, reserved = st[0], st[2]
            cleanup = r.randrange(10**3, 10**5) if rate and r.random() < 0.02 else 0
            st[1] = min(size, max(reserved, st[1] - int(self.jitter(rate * dt, 1.0, 0.1)) + cleanup))
            st[4] -= r.randint(-3, 5) if rate else 0
            avail = st[1] - reserved
            for name, v in zip(FS_NAMES, (size * PAGE, avail * PAGE, st[1] * PAGE, st[3], st[4], 0)):
                add(f"node_filesystem_{name}", "gauge", None, v, **labels)
            used_pct = round(100 * (size - st[1]) / (size - st[1] + avail), 1)
            add("edgewatch_filesystem_used_percent", "gauge", 1, used_pct, **labels)
        for dev, (c, reads_per_s, writes_per_s) in self.disks.items():  # c in DISK_NAMES' order
            reads = int(self.jitter(reads_per_s * dt, 0.8))
            writes = int(self.jitter(writes_per_s * dt, 0.5, 0.1))
            c[0] += reads * PAGE * r.choice((1, 2, 4, 8, 32))
            c[1] += writes * PAGE * r.choice((1, 1, 2, 4, 16))
            c[2], c[3] = c[2] + reads, c[3] + writes
            c[4] += int(reads * r.uniform(0.05, 0.5))  # milliseconds
            c[5] += int(writes * r.uniform(0.02, 0.3))
            c[6] += min(int(dt * 1000), int((reads + writes) * r.uniform(0.05, 0.3)))
            for i, name in enumerate(DISK_NAMES):
                p, v = (3, c[i] / 1000) if i > 3 else (None, c[i])  # the times are counted in ms
                add(f"node_disk_{name}_total", "counter", p, v, device=dev)
        for nic, (c, rate) in self.nics.items():  # bytes, packets, errs, drop; each received, transmitted
            rx = int(self.jitter(rate * dt))
            tx = rx if nic == "lo" else int(self.jitter(rate * dt / 4))
            c[0], c[1] = c[0] + rx, c[1] + tx
            c[2] += rx // r.randint(100, 1400) + (rx > 0)
            c[3] = c[2] if nic == "lo" else c[3] + tx // r.randint(60, 1000) + (tx > 0)
            c[6] += nic == "eth0" and r.random() < 0.02
            for i, name in enumerate(("bytes", "packets", "errs", "drop")):
                add(f"node_network_receive_{name}_total", "counter", None, c[2 * i], device=nic)
                add(f"node_network_transmit_{name}_total", "counter", None, c[2 * i + 1], device=nic)
        self.procs["sleeping"] += r.randint(-2, 2)
        self.procs["idle"] += r.random() < 0.05
        procs = {"running": r.randint(1, 4), **self.procs, "disk-sleep": int(r.random() < 0.1)}
        for state in ("running", "sleeping", "disk-sleep", "stopped", "zombie", "idle"):
            add("node_processes_state", "gauge", None, procs.get(state, 0), state=state)
        add("node_boot_time_seconds", "gauge", None, self.boot)
        return rows


def synthetic(hosts: int, steps: int) -> list[list[Sample]]:
    fleet = []
    for h in range(hosts):
        rng = random.Random(1000 + h)
        host, t0 = Host(rng), 1_800_000_000_000 + rng.randrange(10_000)
        ms = round(SYNTHETIC_INTERVAL * 1000)
        fleet.append([(t0 + k * ms + rng.randrange(20), host.step(SYNTHETIC_INTERVAL)) for k in range(steps)])
    return fleet


# --- measurement ----------------------------------------------------------------------------------


def plain(b: Batch) -> dict[str, Any]:
    """The natural self-contained form the peers code."""
    series = [
        {"name": s.name, "labels": dict(s.labels), "values": list(v)} for s, v in zip(b.series, b.values)
    ]
    return {"agent": b.agent_id, "seq": b.seq, "timestamps": list(b.timestamps), "series": series}


_zc, _zd = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()


def json_encode(b: Batch) -> bytes:
    return json.dumps(plain(b), separators=(",", ":")).encode()


PEERS: dict[str, tuple[Callable[[Batch], bytes], Callable[[bytes], Any]]] = {
    "json": (json_encode, json.loads),
    "json+zstd": (lambda b: _zc.compress(json_encode(b)), lambda d: json.loads(_zd.decompress(d))),
    "msgpack+zstd": (
        lambda b: _zc.compress(msgpack.packb(plain(b))),
        lambda d: msgpack.unpackb(_zd.decompress(d)),
    ),
}


def run_all(fn: Callable[..., object], calls: Sequence[tuple[Any, ...]]) -> None:
    for args in calls:
        fn(*args)


def best_us(run: Callable[[], None], samples: int) -> float:
    """Best of PASSES passes of ``run``, in µs per sample."""
    reps = max(1, -(-MIN_SAMPLES_PER_PASS // samples))
    best = math.inf
    gc.disable()
    try:
        for _ in range(PASSES):
            t0 = time.perf_counter_ns()
            for _ in range(reps):
                run()
            best = min(best, time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    return best / reps / samples / 1000


def figures(
    frames: list[bytes], samples: int, encode_all: Callable[[], None], decode_all: Callable[[], None]
) -> dict[str, Any]:
    enc, dec = best_us(encode_all, samples), best_us(decode_all, samples)
    return {
        "frames": len(frames),
        "bytes_per_sample": round(sum(map(len, frames)) / samples, 4),
        "encode_us_per_sample": round(enc, 4),
        "decode_us_per_sample": round(dec, 4),
        US: round(enc + dec, 4),
    }


def measure(streams: list[list[Batch]]) -> dict[str, dict[str, Any]]:
    """Code every stream with edgewatch (checking each frame) and with the peers; codec -> figures."""
    coded: dict[str, list[tuple[Batch, Batch | None, bytes]]] = {"edgewatch-delta": [], "edgewatch-key": []}
    for batches in streams:
        ref: Batch | None = None
        for b in batches:
            frame = encode(b, ref)
            got = decode(frame, ref)
            if got != as_decoded(b):
                sys.exit(f"bench/protocol: frame {b.seq} of {b.agent_id} does not decode to the batch sent")
            coded["edgewatch-key" if ref is None else "edgewatch-delta"].append((b, ref, frame))
            ref = next_reference(ref, got)
    out: dict[str, dict[str, Any]] = {}
    for codec, jobs in coded.items():
        frames = [f for _, _, f in jobs]
        encode_all = partial(run_all, encode, [(b, r) for b, r, _ in jobs])
        decode_all = partial(run_all, decode, [(f, r) for _, r, f in jobs])
        out[codec] = figures(frames, sum(b.sample_count for b, _, _ in jobs), encode_all, decode_all)
    quantized = [as_decoded(b) for batches in streams for b in batches]
    samples = sum(q.sample_count for q in quantized)
    for codec, (enc, dec) in PEERS.items():
        frames = [enc(q) for q in quantized]
        if any(dec(f) != plain(q) for f, q in zip(frames, quantized)):
            sys.exit(f"bench/protocol: {codec} does not decode to what was sent")
        encode_all = partial(run_all, enc, [(q,) for q in quantized])
        out[codec] = figures(frames, samples, encode_all, partial(run_all, dec, [(f,) for f in frames]))
    return out


def report(dataset: str, per_frame: int, streams: list[list[Batch]], meta: dict[str, Any]) -> dict[str, Any]:
    """Measure one case, print one line per codec and return the figures by codec."""
    log(f"{dataset}, {per_frame} sample(s) per frame: {sum(map(len, streams))} frames")
    results = measure(streams)
    head = {"bench": "protocol", "dataset": dataset, "samples_per_frame": per_frame}
    series = len({(b.agent_id, s) for batches in streams for b in batches for s in b.series})
    meta = {"hosts": len(streams), "timestamps_per_host": sum(len(b.timestamps) for b in streams[0])} | meta
    for codec, r in results.items():
        line = head | {"codec": codec, "frames": r["frames"], "series": series} | r | meta
        if dataset == "real" and per_frame == 1 and codec == "edgewatch-delta":
            r["within_budget"] = r["bytes_per_sample"] <= BUDGET_BYTES and r[US] <= BUDGET_US
            line |= {"budget_bytes_per_sample": BUDGET_BYTES, "budget_us_per_sample": BUDGET_US}
            line["within_budget"] = r["within_budget"]
        print(json.dumps(line), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between real samples (default 10)")
    ap.add_argument("--frames", type=int, default=31, help="real samples to record (default 31, ~5 min)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--record", type=Path, metavar="FILE", help="save the real samples as JSON lines")
    src.add_argument("--replay", type=Path, metavar="FILE", help="use a recording instead of sampling")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 s interval, 8 frames, 4 hosts")
    ap.add_argument("--hosts", type=int, default=20, help="synthetic hosts (default 20)")
    args = ap.parse_args(argv)
    if args.quick:
        args.interval, args.frames, args.hosts = 1.0, 8, 4
    if args.frames < 2 or args.interval <= 0 or args.hosts < 1:
        ap.error("--frames must be at least 2, --interval positive and --hosts at least 1")

    if args.replay is not None:
        real, source = replay(args.replay), f"replay {args.replay}"
        if len(real) < 2:
            ap.error(f"{args.replay} holds {len(real)} samples; at least 2 are needed")
        interval = statistics.median(b[0] - a[0] for a, b in itertools.pairwise(real)) / 1000
    else:
        real, source, interval = record(args.frames, args.interval, args.record), "psutil", args.interval
    if interval != 10:
        log(f"the real samples are {interval:g} s apart; the budget assumes 10 s")
    fleet = synthetic(args.hosts, MIN_BATCHES * max(SAMPLES_PER_FRAME))

    ratios: dict[str, dict[str, dict[str, float]]] = {"real": {}, "synthetic": {}}
    within = False
    for dataset, per_frame in itertools.product(ratios, SAMPLES_PER_FRAME):
        if dataset == "real":
            used = loop(real, MIN_BATCHES * per_frame)
            streams = [to_batches(used, per_frame, "this-host")]
            meta = {"interval_s": interval, "source": source, "recorded": len(real)}
            meta["looped"] = len(used) > len(real)
        else:
            streams = [to_batches(s, per_frame, f"host-{i:02d}") for i, s in enumerate(fleet)]
            meta = {"interval_s": SYNTHETIC_INTERVAL, "source": "seeded simulation", "looped": False}
        results = report(dataset, per_frame, streams, meta)
        base = results["edgewatch-delta"]
        within = base.get("within_budget", within)
        bytes_ = {c: r["bytes_per_sample"] for c, r in results.items() if r is not base}
        ratios[dataset][str(per_frame)] = {
            c: round(b / base["bytes_per_sample"], 2) for c, b in bytes_.items()
        }
    summary = {"bench": "protocol", "summary": "bytes_per_sample over edgewatch-delta's", "ratios": ratios}
    print(json.dumps(summary | {"within_budget": within}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
