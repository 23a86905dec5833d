"""Scrape local Prometheus endpoints: apps already instrumented with prom-client or client_python.

Each target is fetched in its own thread (one hung app does not delay the others) with the agent's
small HTTP client, parsed as the text format 0.0.4 and sent like textfile samples with a ``job``
label (an app's own ``job`` label becomes ``exported_job``, as Prometheus does). At most
``max_series`` samples are taken per target; ``edgewatch_scrape_truncated{job}`` says when more were
there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from itertools import islice
from typing import NamedTuple

from edgewatch.agent import logs
from edgewatch.agent.promtext import PromSample, samples
from edgewatch.agent.transport import HttpClient, TransportError

from .base import Sample, SeriesCache
from .checks import split_url
from .parallel import Jobs
from .textfile import to_samples

log = logs.get("edgewatch.agent.collectors.scrape")

ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
GRACE = 0.25


class _Scrape(NamedTuple):
    samples: list[Sample]
    duration: float
    truncated: bool
    error: str  # empty when the scrape worked


class ScrapeCollector:
    blocking = True  # may hang (a dead mount, a slow endpoint): the sampler gives it a thread

    def __init__(
        self,
        name: str = "scrape",
        targets: Sequence[tuple[str, str]] = (),
        timeout: float = 5.0,
        *,
        max_series: int = 2000,
        interval: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        cache: SeriesCache | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.targets = tuple(targets)
        self.timeout = timeout
        self.max_series = max_series
        self.monotonic = monotonic
        self.cache = cache or SeriesCache(limit=2 * max_series * max(1, len(self.targets)))  # all, twice
        jobs = [job for job, _ in self.targets]
        if len(set(jobs)) != len(jobs):
            raise ValueError(f"scrape jobs named twice: {sorted({j for j in jobs if jobs.count(j) > 1})}")
        self._urls = {job: split_url(url) for job, url in self.targets}
        self._jobs: Jobs[_Scrape] = Jobs("scrape", monotonic=monotonic)
        self._warned: dict[str, str] = {}

    @property
    def max_duration(self) -> float:
        """How long a collection may take: the scrape timeout (the sampler waits that long)."""
        return self.timeout + GRACE + 0.5

    def collect(self, now: float) -> Sequence[Sample]:
        if not self.targets:
            return []
        results = self._jobs.run(
            {job: partial(self._scrape, job) for job, _ in self.targets}, self.timeout + GRACE
        )
        out: list[Sample] = []
        cache = self.cache
        for job, _ in self.targets:
            result = results.get(job) or _Scrape(
                [], self.timeout, False, f"no answer within {self.timeout:g} s"
            )
            if result.error:
                self._warn(job, result.error)
            else:
                self._warned.pop(job, None)
            out.extend(result.samples)
            labels = {"job": job}
            out.append((cache.gauge("edgewatch_scrape_up", labels), 0 if result.error else 1))
            out.append(
                (cache.gauge("edgewatch_scrape_duration_seconds", labels, 3), round(result.duration, 3))
            )
            out.append((cache.gauge("edgewatch_scrape_truncated", labels), int(result.truncated)))
        return out

    def _scrape(self, job: str) -> _Scrape:
        target = self._urls[job]
        t0 = self.monotonic()
        client = HttpClient(target.base, timeout=self.timeout, verify=True)
        try:
            response = client.request("GET", target.path, headers={"Accept": ACCEPT, "Connection": "close"})
        except TransportError as exc:
            return _Scrape([], self.monotonic() - t0, False, str(exc))
        finally:
            client.close()
        if response.status != 200:
            return _Scrape([], self.monotonic() - t0, False, f"HTTP status {response.status}")
        try:
            parsed = list(islice(samples(response.body.decode("utf-8")), self.max_series + 1))
            truncated = len(parsed) > self.max_series
            out = to_samples(self.cache, _relabel(parsed[: self.max_series]), {"job": job})
        except ValueError as exc:  # UnicodeDecodeError and ProtocolError are ValueErrors too
            return _Scrape([], self.monotonic() - t0, False, f"the answer is not Prometheus text: {exc}")
        return _Scrape(out, self.monotonic() - t0, truncated, "")

    def _warn(self, job: str, problem: str) -> None:
        if self._warned.get(job) != problem:
            self._warned[job] = problem
            log.warning("scrape_failed job=%s error=%r", job, problem)


def _relabel(parsed: list[PromSample]) -> list[PromSample]:
    """An app's own ``job`` label is kept as ``exported_job``: ``job`` names the scrape target."""
    for _, labels, _, _ in parsed:
        if "job" in labels:
            labels["exported_job"] = labels.pop("job")
    return parsed
