"""``GET /federate``: the newest sample of every series of every host, Prometheus text format 0.0.4.

Each series is shown with its own labels and ``host`` (names fixed as in `promlabels`), its newest
value and that sample's timestamp in ms, grouped into metric families with ``# HELP`` and
``# TYPE`` (``counter`` or ``gauge`` from the series' kind; ``untyped`` when hosts disagree).
``match[]`` selectors (``node_load1``, ``{host=~"web-.*"}``, ``node_cpu_seconds_total{mode!="idle"}``;
several are or-ed) pick series as Prometheus' own ``/federate`` does. Series whose newest sample is
older than ``federate.max_age`` are left out. Access as ``/metrics``: ``metrics.public`` or a token.
The text is made in a thread from a copy of `latest.Latest`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from aiohttp import web

from edgewatch.protocol import Kind, Series

from . import ingest
from .api import API, caller
from .ingest import error
from .latest import Entry, Latest, hosts_to_fill, newest_in_db
from .metrics import Registry
from .promlabels import LabelCache
from .rulesyntax import Matcher

log = logging.getLogger("edgewatch.aggregator.federate")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FILL_HOSTS_PER_JOB = 100
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SELECTOR = re.compile(rf"\s*({_NAME})?\s*(?:\{{(.*)\}})?\s*", re.DOTALL)
_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)', re.DOTALL)
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


@dataclass
class Federation:
    latest: Latest
    max_age_ms: int
    names: LabelCache = field(default_factory=LabelCache)


FEDERATION = web.AppKey("federation", Federation)


# --- match[] ----------------------------------------------------------------------------------


def _unescape(text: str) -> str:
    return _ESCAPED.sub(lambda m: "\n" if m[1] == "n" else m[1], text)


def parse_selector(text: str) -> tuple[Matcher, ...]:
    """A Prometheus series selector as matchers (``__name__`` for the metric name); regular
    expressions match the whole value, as in Prometheus. ValueError (one line) when it is not one."""
    m = _SELECTOR.fullmatch(text)
    if m is None or (m[1] is None and m[2] is None):
        raise ValueError(f'match[]={text!r} is not a selector like node_load1 or {{host="web-1"}}')
    out: list[Matcher] = []
    if m[1]:
        out.append(Matcher("__name__", "=", m[1]))
    body, pos = (m[2] or "").strip(), 0
    while pos < len(body):
        pair = _PAIR.match(body, pos)
        if pair is None or pair.end() == pos:
            raise ValueError(f'match[]={text!r}: write label matchers as name="value", name=~"regex", ...')
        name, op, value = pair[1], pair[2], _unescape(pair[3])
        try:
            pattern = re.compile(f"(?:{value})\\Z") if op in ("=~", "!~") else None
        except re.error as exc:
            raise ValueError(
                f"match[]={text!r}: {value!r} is not a valid regular expression: {exc}"
            ) from None
        out.append(Matcher(name, op, value, pattern))
        pos = pair.end()
    if all(mt.matches({}) for mt in out):
        raise ValueError(f"match[]={text!r} matches every series; give a matcher that needs a value")
    return tuple(out)


def _wanted(selectors: Sequence[tuple[Matcher, ...]], name: str, labels: Sequence[tuple[str, str]]) -> bool:
    if not selectors:
        return True
    seen = {"__name__": name, **dict(labels)}
    return any(all(_match(mt, seen) for mt in sel) for sel in selectors)


def _match(mt: Matcher, labels: dict[str, str]) -> bool:
    if mt.pattern is not None:  # anchored at both ends: match, not search
        return (mt.pattern.match(labels.get(mt.name, "")) is not None) == (mt.op == "=~")
    return mt.matches(labels)


# --- the text format ----------------------------------------------------------------------------


def _label_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def render(
    snapshot: Sequence[tuple[str, Sequence[tuple[Series, Entry]]]],
    names: LabelCache,
    *,
    since_ms: int | None = None,
    selectors: Sequence[tuple[Matcher, ...]] = (),
) -> str:
    """The exposition text of ``snapshot`` (`Latest.snapshot`): families sorted by name, each
    family's series sorted by labels. Samples older than ``since_ms`` are left out."""
    families: dict[str, tuple[set[Kind], list[tuple[str, str]]]] = {}
    for host, items in snapshot:
        for series, (ts, value) in items:
            if since_ms is not None and ts < since_ms:
                continue
            name, labels = names.get(host, series)
            if not _wanted(selectors, name, labels):
                continue
            text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels)
            family = families.get(name)
            if family is None:
                family = families[name] = (set(), [])
            family[0].add(series.kind)
            family[1].append((text, f"{format_value(value)} {ts}"))
    out: list[str] = []
    for name in sorted(families):
        kinds, rows = families[name]
        kind = "untyped" if len(kinds) > 1 else "counter" if Kind.COUNTER in kinds else "gauge"
        out.append(f"# HELP {name} {name}: the newest sample of each edgewatch host.")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{{{labels}}} {rest}" for labels, rest in sorted(rows))
    return "\n".join(out) + "\n" if out else ""


# --- the endpoint -------------------------------------------------------------------------------


async def federate(request: web.Request) -> web.StreamResponse:
    if not request.app[API].metrics_public and await caller(request) is None:
        return error(401, "/federate needs an API token (or metrics.public = true in the config)")
    fed = request.app[FEDERATION]
    try:
        selectors = [parse_selector(text) for text in request.query.getall("match[]", [])]
    except ValueError as exc:
        return error(400, str(exc))
    now_ms = request.app[API].now_ms()
    since = now_ms - fed.max_age_ms if fed.max_age_ms else None

    def make() -> bytes:
        return render(fed.latest.snapshot(), fed.names, since_ms=since, selectors=selectors).encode()

    body = await asyncio.to_thread(make)
    response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
    if len(body) > 1024:
        response.enable_compression()
    return response


async def _fill(app: web.Application, fed: Federation, now_ms: int) -> None:
    """The newest samples from the database, a few hosts per reader job."""
    store = app[ingest.INGEST].store
    since = now_ms - fed.max_age_ms if fed.max_age_ms else -(1 << 62)
    hosts = await store.readers.run(lambda conn: hosts_to_fill(conn, since))
    for i in range(0, len(hosts), FILL_HOSTS_PER_JOB):
        for name, items in await store.readers.run(
            partial(newest_in_db, hosts=hosts[i : i + FILL_HOSTS_PER_JOB])
        ):
            fed.latest.merge(name, items)
    log.info("federate filled hosts=%d series=%d", len(hosts), fed.latest.series_count)


def federation_context(
    max_age_s: float, registry: Registry, wall: Callable[[], float]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context of ``/federate`` (after the storage's): the observer and the start fill."""

    async def federation(app: web.Application) -> AsyncIterator[None]:
        fed = app[FEDERATION] = Federation(Latest(), int(max_age_s * 1000))
        app[ingest.INGEST].observers["federate"] = fed.latest.observe
        registry.gauge(
            "edgewatch_federate_series",
            "Series whose newest sample /federate holds.",
            lambda: {(): float(fed.latest.series_count)},
        )
        fill = asyncio.create_task(_fill(app, fed, int(wall() * 1000)))
        fill.add_done_callback(_report)
        yield
        fill.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await fill

    return federation


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("federate: reading the newest samples from the database failed: %s", exc)
