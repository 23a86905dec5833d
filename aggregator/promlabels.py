"""A series as Prometheus sees it: valid names, and the label set with the ``host`` label added.

Remote write and ``/federate`` both show a series of host ``web-1`` as its name, its own labels and
``host="web-1"``. Prometheus is stricter than the wire protocol: a metric name is
``[a-zA-Z_:][a-zA-Z0-9_:]*`` and a label name ``[a-zA-Z_][a-zA-Z0-9_]*`` not starting with ``__``,
so any other character becomes ``_`` (``disk.io`` → ``disk_io``, ``9x`` → ``_9x``). A series' own
``host`` label is kept as ``exported_host`` (as Prometheus does with ``honor_labels = false``);
labels with an empty value are left out (Prometheus treats them as absent).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from edgewatch.protocol import Series

HOST_LABEL = "host"
_METRIC_BAD = re.compile(r"[^a-zA-Z0-9_:]")
_LABEL_BAD = re.compile(r"[^a-zA-Z0-9_]")
_METRIC_OK = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_OK = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_CACHED = 1_000_000  # label sets kept by a LabelCache before it starts over

Labels = tuple[tuple[str, str], ...]


def metric_name(name: str) -> str:
    if _METRIC_OK.fullmatch(name):
        return name
    fixed = _METRIC_BAD.sub("_", name)
    return fixed if not fixed[:1].isdigit() else "_" + fixed


def label_name(name: str) -> str:
    if not _LABEL_OK.fullmatch(name) or name.startswith("__"):
        name = _LABEL_BAD.sub("_", name)
        if name[:1].isdigit():
            name = "_" + name
        if name.startswith("__"):  # reserved for Prometheus' own labels
            name = "x" + name
    return "exported_host" if name == HOST_LABEL else name


def labels_of(host: str, labels: Sequence[tuple[str, str]]) -> Labels:
    """The series' labels (names fixed) plus ``host``, sorted by name as Prometheus wants them."""
    out = {label_name(k): v for k, v in labels if v}
    out[HOST_LABEL] = host
    return tuple(sorted(out.items()))


class LabelCache:
    """``(host, series)`` → (metric name, labels): the fixing and sorting is done once per series."""

    def __init__(self, limit: int = MAX_CACHED) -> None:
        self.limit = limit
        self._known: dict[tuple[str, Series], tuple[str, Labels]] = {}

    def get(self, host: str, series: Series) -> tuple[str, Labels]:
        key = (host, series)
        got = self._known.get(key)
        if got is None:
            if len(self._known) >= self.limit:
                self._known.clear()
            got = self._known[key] = (metric_name(series.name), labels_of(host, series.labels))
        return got
