"""The aggregator's own metrics, served at ``/metrics`` in the Prometheus text format.

A small registry: counters and gauges with labels, and histograms with fixed buckets. Registering a
name twice is an error. Gauges may be callbacks, read at scrape time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

LabelKey = tuple[tuple[str, str], ...]


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


def _labels(key: LabelKey, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = key + extra
    if not items:
        return ""
    body = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in items
    )
    return "{" + body + "}"


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str) -> None:
        self.name = name
        self.help = help

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        yield from self.samples()

    def samples(self) -> Iterator[str]:
        return iter(())


class Counter(Metric):
    kind = "counter"

    def __init__(self, name: str, help: str) -> None:
        super().__init__(name, help)
        self.values: dict[LabelKey, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def samples(self) -> Iterator[str]:
        if not self.values:
            yield f"{self.name} 0"
        for key, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(key)} {_fmt(value)}"


class Gauge(Metric):
    kind = "gauge"

    def __init__(self, name: str, help: str, read: Callable[[], dict[LabelKey, float]] | None = None) -> None:
        super().__init__(name, help)
        self.values: dict[LabelKey, float] = {}
        self.read = read

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = value

    def samples(self) -> Iterator[str]:
        values = self.read() if self.read is not None else self.values
        for key, value in sorted(values.items()):
            yield f"{self.name}{_labels(key)} {_fmt(value)}"


DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram(Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help)
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.sum += value
        self.count += 1

    def samples(self) -> Iterator[str]:
        running = 0
        for bound, n in zip((*self.buckets, math.inf), self.counts):
            running += n
            yield f"{self.name}_bucket{_labels((), (('le', _fmt(bound)),))} {running}"
        yield f"{self.name}_sum {_fmt(self.sum)}"
        yield f"{self.name}_count {self.count}"


class Registry:
    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def add(self, metric: Metric) -> Metric:
        if metric.name in self.metrics:
            raise ValueError(f"metric {metric.name} is registered twice")
        self.metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str) -> Counter:
        metric = Counter(name, help)
        self.add(metric)
        return metric

    def gauge(self, name: str, help: str, read: Callable[[], dict[LabelKey, float]] | None = None) -> Gauge:
        metric = Gauge(name, help, read)
        self.add(metric)
        return metric

    def histogram(self, name: str, help: str, buckets: tuple[float, ...] = DEFAULT_BUCKETS) -> Histogram:
        metric = Histogram(name, help, buckets)
        self.add(metric)
        return metric

    def render(self) -> str:
        return "\n".join(line for metric in self.metrics.values() for line in metric.lines()) + "\n"
