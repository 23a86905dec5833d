"""Interface counters from ``/proc/net/dev`` and TCP connections by state from ``/proc/net/tcp{,6}``.

Series (node_exporter names):

- ``node_network_{receive,transmit}_{bytes,packets,errs,drop}_total{device}`` counters; interfaces
  matching ``exclude`` (default: loopback) are skipped
- ``node_tcp_connection_states{state}``: IPv4 and IPv6 sockets together, every state always sent
  (0 when none) so the set of series does not change with traffic

Both files describe the network namespace the agent runs in. The TCP tables can be large on a busy
server (one line per socket), so they are read line by line and at most ``max_sockets`` lines are
counted; past that the counts are a lower bound and ``edgewatch_tcp_table_truncated`` is 1.

Reading the TCP tables is the dear part even when there are few sockets: the kernel walks its whole
connection hash table (sized by RAM) for each file, about 4 ms per file on a 24 GB VM and well under
1 ms on a 4 GB board. So the states are counted every ``tcp_interval`` seconds (default 60) and the
last counts are sent in between, as the sampler does for collectors with a long interval; the
interface counters are read at every call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from .base import Sample, SeriesCache, read_text
from .procfs import ProcFormatError

# /proc/net/dev columns: 8 receive then 8 transmit; (column, direction, name) of those reported
_COLUMNS = (
    (0, "receive", "bytes"),
    (1, "receive", "packets"),
    (2, "receive", "errs"),
    (3, "receive", "drop"),
    (8, "transmit", "bytes"),
    (9, "transmit", "packets"),
    (10, "transmit", "errs"),
    (11, "transmit", "drop"),
)
# the kernel's TCP states (include/net/tcp_states.h) as the hex "st" column writes them
TCP_STATES = {
    "01": "established",
    "02": "syn_sent",
    "03": "syn_recv",
    "04": "fin_wait1",
    "05": "fin_wait2",
    "06": "time_wait",
    "07": "close",
    "08": "close_wait",
    "09": "last_ack",
    "0A": "listen",
    "0B": "closing",
}
MAX_SOCKETS = 200_000


class NetworkCollector:
    name = "network"

    def __init__(
        self,
        proc_root: Path = Path("/proc"),
        *,
        exclude: str = "^lo$",
        max_sockets: int = MAX_SOCKETS,
        tcp_interval: float = 60.0,
        interval: float = 0.0,
        cache: SeriesCache | None = None,
    ) -> None:
        self.interval = interval
        self._dev = proc_root / "net" / "dev"
        self._tcp = (proc_root / "net" / "tcp", proc_root / "net" / "tcp6")
        self._exclude = re.compile(exclude).search
        self._max_sockets = max_sockets
        self._tcp_interval = tcp_interval
        self._cache = cache or SeriesCache()
        self._tcp_counted: tuple[float, list[Sample]] | None = None  # (now, samples) of the last count

    def collect(self, now: float) -> Sequence[Sample]:
        counted = self._tcp_counted
        if counted is None or not 0 <= now - counted[0] < self._tcp_interval - 0.001:
            counted = self._tcp_counted = (now, self._tcp_states())
        return self._interfaces() + counted[1]

    def _interfaces(self) -> list[Sample]:
        c = self._cache
        out: list[Sample] = []
        for line in read_text(self._dev).splitlines()[2:]:  # two header lines
            device, sep, rest = line.rpartition(":")  # counters may touch the colon: "eth0:1234"
            device = device.strip()
            values = rest.split()
            if not sep or len(values) < 16:
                raise ProcFormatError(self._dev, f"line {line!r} is not 'interface: 16 counters'")
            if self._exclude(device):
                continue
            try:
                numbers = [int(values[i]) for i, _, _ in _COLUMNS]
            except ValueError:
                raise ProcFormatError(
                    self._dev, f"line {line!r} has a counter that is not a number"
                ) from None
            labels = (("device", device),)
            for (_, direction, what), value in zip(_COLUMNS, numbers):
                out.append((c.counter(f"node_network_{direction}_{what}_total", labels), value))
        return out

    def _tcp_states(self) -> list[Sample]:
        counts = dict.fromkeys(TCP_STATES, 0)
        budget, truncated = self._max_sockets, False
        for path in self._tcp:
            try:
                with open(path, encoding="ascii", errors="replace") as f:
                    f.readline()  # header
                    for line in f:
                        if budget == 0:
                            truncated = True
                            break
                        budget -= 1
                        fields = line.split(None, 4)  # sl local remote st ...
                        if len(fields) < 5:
                            raise ProcFormatError(path, f"line {line.strip()!r} is not a socket line")
                        st = fields[3]
                        if st in counts:
                            counts[st] += 1
            except FileNotFoundError:
                if path is self._tcp[0]:
                    raise
                continue  # a kernel without IPv6 has no tcp6 table
        c = self._cache
        out: list[Sample] = [
            (c.gauge("node_tcp_connection_states", (("state", name),)), counts[st])
            for st, name in TCP_STATES.items()
        ]
        out.append((c.gauge("edgewatch_tcp_table_truncated"), int(truncated)))
        return out
