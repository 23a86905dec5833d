"""UI benchmark: how fast the web UI draws in headless Chromium against a real aggregator of 1,000 hosts.

Set-up (progress on stderr): the probe host's data is built in-process through the Store API (the
query benchmark's builder, aggregator_query.build: the last 24 h at the agents' 10 s interval and
days before at 30 min), then a real ``edgewatch aggregator`` serves it while ``edgewatch sim`` pushes
the other 999 hosts live at 10 s, as their agents would; the pages are measured once every host has
pushed twice (so each has its headline values, network rates and a start of its sparklines).

Two pages, each loaded ``--runs`` times cold (a new browser context: empty HTTP cache, no service
worker) and warm (the same context reloaded: cached files revalidated, the service worker in
control), signed in as a viewer, at 1366x900:

- ``overview``: ``#/`` with every host; navigation start to the page's ``overview-drawn`` mark.
- ``host``: ``#/hosts/query-probe?range=24h``, every chart of the host over 24 h; navigation start to
  ``charts-drawn``.

From the page's own Performance entries: ``total`` (navigation start to the mark), ``api`` (the time
during which at least one of the requests the page waits for was in flight, request start to
response end from Resource Timing: ``/api/v1/hosts`` and ``/api/v1/alerts`` for the overview; the
host, its series, alerts, events and the ``/api/v1/query`` calls for the host page) and ``render``
(the rest: the document, the modules, the session check, parsing the answers, building the DOM and
drawing the charts). p50 / p95 of each; budget: total p95 at most 1,000 ms. Also per case: when the
first of those requests started (``before_api``: document, modules), the time from the last answer
to the mark (``after_api``), the p50 of the slowest request of each kind and of its wait for a
connection before it was sent (``request_stalled``: the browser opens six per origin), the bytes
of the answers, the CPU the aggregator and the simulator used meanwhile, and the machine's load
average (the figures are only as quiet as the machine). One JSON object per case on stdout, after
one describing the set-up.

Everything runs on 127.0.0.1 (Chromium without a proxy); every process started is stopped on the way
out (errors and Ctrl-C included) and the temporary directory removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aggregator_query
from aggregator_common import (
    CORES,
    Aggregator,
    Processes,
    cpu_seconds,
    edgewatch_bin,
    emit,
    free_port,
    http,
    logger,
    pct,
    rnd,
    run_in_scratch,
    write_config,
)
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

BUDGET_MS = 1000.0
CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT: ViewportSize = {"width": 1366, "height": 900}
USER, PASSWORD = "bench", "bench-viewer-password"
PROBE = aggregator_query.PROBE
log = logger("ui")

# The page's timings, read after it marked itself ready. (Playwright evaluates over the DevTools
# protocol, which the page's Content-Security-Policy does not govern: the UI runs with its real CSP.)
TIMINGS_JS = """mark => {
  const m = performance.getEntriesByName(mark, "mark")[0];
  const res = performance.getEntriesByType("resource")
    .map((r) => ({url: r.name, start: r.startTime, sent: r.requestStart, first: r.responseStart,
                  end: r.responseEnd, bytes: r.encodedBodySize}));
  return {mark: m ? m.startTime : null, resources: res};
}"""


@dataclass(frozen=True)
class PageCase:
    name: str  # "overview" or "host"
    route: str
    router_name: str  # body[data-route] of the page
    mark: str
    waits_for: Callable[[str], bool]  # a URL path (and query) of a request the mark waits for


def overview_waits_for(path: str) -> bool:
    return path.startswith(("/api/v1/hosts?", "/api/v1/alerts")) or path == "/api/v1/hosts"


def host_waits_for(path: str) -> bool:
    return path.startswith((f"/api/v1/hosts/{PROBE}", "/api/v1/alerts", "/api/v1/query"))


CASES = (
    PageCase("overview", "#/", "overview", "overview-drawn", overview_waits_for),
    PageCase("host", f"#/hosts/{PROBE}?range=24h", "host", "charts-drawn", host_waits_for),
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="3 runs of each case, 2 days of probe data")
    ap.add_argument("--hosts", type=int, default=1000, help="hosts in the aggregator (default 1000)")
    ap.add_argument("--runs", type=int, help="timed loads of each page, cold and warm (default 20; quick 3)")
    ap.add_argument("--days", type=float, help="days of the probe host's data (default 30; quick 2)")
    ap.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (its path goes to stderr)"
    )
    ap.add_argument(
        "--waterfall", action="store_true", help="print the requests of the median load of each case (stderr)"
    )
    args = ap.parse_args(argv)
    args.runs = args.runs if args.runs is not None else 3 if args.quick else 20
    args.days = args.days if args.days is not None else 2.0 if args.quick else 30.0
    if args.runs < 1 or args.hosts < 2 or args.days < 1:
        ap.error("--runs must be at least 1, --hosts at least 2 and --days at least 1")
    return args


# -- set-up ------------------------------------------------------------------------------------------


def admin(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [edgewatch_bin(), "admin", "--data-dir", str(data_dir), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"edgewatch admin {args[0]} failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def wait_hosts(url: str, token: str, hosts: int, sim: subprocess.Popen[bytes], timeout: float) -> None:
    """Until ``hosts`` hosts have their network rates (every live one has pushed twice)."""
    deadline = time.monotonic() + timeout
    ready = 0
    while time.monotonic() < deadline:
        if sim.poll() is not None:
            raise RuntimeError(f"edgewatch sim exited with {sim.returncode}")
        status, body = http(url + "/api/v1/hosts", headers={"Authorization": f"Bearer {token}"})
        if status == 200:
            ready = sum(1 for h in json.loads(body)["hosts"] if "net_rx" in h["values"])
            if ready >= hosts:
                return
        time.sleep(2)
    raise RuntimeError(f"only {ready} of {hosts} simulated hosts pushed twice within {timeout:g} s")


# -- measuring ---------------------------------------------------------------------------------------


def union_ms(spans: Sequence[tuple[float, float]]) -> float:
    """Milliseconds covered by at least one of the (start, end) spans."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def sign_in(context: BrowserContext) -> None:
    answer = context.request.post("/api/v1/login", data={"username": USER, "password": PASSWORD})
    if answer.status != 200:
        raise RuntimeError(f"the sign-in failed: HTTP {answer.status} {answer.text()[:200]}")


def measure(page: Page, case: PageCase) -> dict[str, Any]:
    """Timings of the load that has just been started in ``page``, once the page says it is ready."""
    page.wait_for_selector(f"body[data-route='{case.router_name}'][data-page-ready='1']", state="attached")
    got = page.evaluate(TIMINGS_JS, case.mark)
    if got["mark"] is None:
        raise RuntimeError(f"the {case.name} page rendered without its {case.mark!r} mark")
    total = float(got["mark"])
    waited = []
    for r in got["resources"]:
        parts = urlsplit(r["url"])
        r["path"] = f"{parts.path}?{parts.query}" if parts.query else parts.path
        if parts.path.startswith("/api/v1/") and case.waits_for(r["path"]) and 0 < r["end"] <= total:
            waited.append(r)
    if not waited:
        raise RuntimeError(f"the {case.name} page made none of the requests it waits for")
    api = union_ms([(r["start"], r["end"]) for r in waited])
    slowest: dict[str, float] = {}  # kind of request -> the longest of its kind in this load
    stalled: dict[str, float] = {}  # kind -> the longest wait for a connection (start to request sent)
    for r in waited:
        kind = request_kind(urlsplit(r["path"]).path)
        slowest[kind] = max(slowest.get(kind, 0.0), r["end"] - r["start"])
        if r["sent"]:  # 0 when the browser withholds the detail
            stalled[kind] = max(stalled.get(kind, 0.0), r["sent"] - r["start"])
    return {
        "total": total,
        "api": api,
        "render": total - api,
        "before_api": min(r["start"] for r in waited),
        "after_api": total - max(r["end"] for r in waited),
        "requests": len(waited),
        "api_bytes": sum(r["bytes"] for r in waited),
        "slowest": slowest,
        "stalled": stalled,
        "resources": got["resources"],
    }


def waterfall(sample: dict[str, Any]) -> None:
    """Every request of one load on stderr, in the order they started: ms from navigation start to
    the request's start, to its being sent, to its first byte and to its end; then the mark."""
    log(f"waterfall of a load of {sample['total']:.0f} ms (start / sent / first byte / end, ms):")
    for r in sorted(sample["resources"], key=lambda r: r["start"]):
        times = " / ".join(f"{r[k]:6.0f}" for k in ("start", "sent", "first", "end"))
        log(f"  {times}  {r['path'][:90]}")


def request_kind(path: str) -> str:
    """``/api/v1/hosts`` -> hosts, ``/api/v1/hosts/web-1`` -> host, ``/api/v1/hosts/web-1/series`` ->
    series, ``/api/v1/query`` -> query."""
    parts = path.removeprefix("/api/v1/").split("/")
    return parts[0] if len(parts) == 1 else "host" if len(parts) == 2 else parts[-1]


def check_page(page: Page, case: PageCase, hosts: int) -> dict[str, int]:
    """What the page shows (once): every host in the overview, every chart drawn on the host page."""
    if case.name == "overview":
        rows = page.locator("#ov-body [role=row]").count()
        if rows != hosts:
            raise RuntimeError(f"the overview shows {rows} hosts, not {hosts}")
        return {"rows": rows}
    charts = page.locator(".chart-card").count()
    drawn = page.locator(".chart[data-chart-ready]").count()
    if drawn < 10:
        raise RuntimeError(f"the host page drew {drawn} of {charts} charts")
    return {"charts": charts, "charts_drawn": drawn}


def run_case(
    browser: Browser,
    url: str,
    case: PageCase,
    *,
    cache: str,
    runs: int,
    hosts: int,
    busy: Callable[[], float],
    show_waterfall: bool = False,
) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    shown: dict[str, int] = {}
    cpu0, wall0 = busy(), time.monotonic()
    if cache == "cold":
        for _ in range(runs):
            context = browser.new_context(base_url=url, viewport=VIEWPORT)
            try:
                sign_in(context)
                page = context.new_page()
                page.goto(case.route, wait_until="commit")
                samples.append(measure(page, case))
                shown = shown or check_page(page, case, hosts)
            finally:
                context.close()
    else:
        context = browser.new_context(base_url=url, viewport=VIEWPORT)
        try:
            sign_in(context)
            page = context.new_page()
            page.goto(case.route, wait_until="commit")
            measure(page, case)  # the first load fills the cache and installs the service worker
            shown = check_page(page, case, hosts)
            for _ in range(runs):
                page.reload(wait_until="commit")
                samples.append(measure(page, case))
        finally:
            context.close()
    background = (busy() - cpu0) / (time.monotonic() - wall0)
    if show_waterfall:  # the load at the median
        waterfall(sorted(samples, key=lambda s: s["total"])[len(samples) // 2])
    line: dict[str, Any] = {"bench": "ui", "what": case.name, "cache": cache, "hosts": hosts, "runs": runs}
    line["page"] = case.route
    for key in ("total", "api", "render"):
        values = [s[key] for s in samples]
        line[f"{key}_p50_ms"] = rnd(pct(values, 0.5), 1)
        line[f"{key}_p95_ms"] = rnd(pct(values, 0.95), 1)
    line["total_max_ms"] = rnd(max(s["total"] for s in samples), 1)
    line["before_api_p50_ms"] = rnd(pct([s["before_api"] for s in samples], 0.5), 1)
    line["after_api_p50_ms"] = rnd(pct([s["after_api"] for s in samples], 0.5), 1)
    line["api_requests"] = samples[0]["requests"]
    kinds = sorted({k for s in samples for k in s["slowest"]})
    line["request_p50_ms"] = {  # per kind of request: the longest of its kind in a load
        k: rnd(pct([s["slowest"][k] for s in samples if k in s["slowest"]], 0.5), 1) for k in kinds
    }
    line["request_stalled_p50_ms"] = {  # of those, waiting for a connection before being sent
        k: rnd(pct([s["stalled"][k] for s in samples if k in s["stalled"]], 0.5), 1)
        for k in kinds
        if any(k in s["stalled"] for s in samples)
    }
    line["api_bytes"] = round(sum(s["api_bytes"] for s in samples) / len(samples))
    line.update(shown)
    line["budget_ms"] = BUDGET_MS
    line["within_budget"] = line["total_p95_ms"] <= BUDGET_MS
    line["server_cpu_cores_busy"] = rnd(background, 2)  # aggregator + simulator, while measuring
    line["load_avg_1m"] = rnd(os.getloadavg()[0], 2)  # the machine's, at the end of the case
    return line


# -- main ------------------------------------------------------------------------------------------


def run(tmp: Path, procs: Processes, args: argparse.Namespace) -> None:
    data_dir = tmp / "data"
    log(f"building the probe host ({args.days:g} days) in-process")
    built = asyncio.run(
        aggregator_query.build(data_dir, hosts=1, days=args.days, history_s=1800.0, filler_min=0)
    )
    admin(data_dir, "add-user", USER, "--role", "viewer", "--password-stdin", stdin=PASSWORD + "\n")
    token = aggregator_query.add_token(data_dir)
    live = args.hosts - 1
    enrollment = admin(data_dir, "add-enrollment", "--uses", str(live))
    port = free_port()
    config = tmp / "aggregator.toml"
    write_config(config, data_dir, port)
    agg = Aggregator(procs, config, tmp / "aggregator.log", port)
    sim_log = (tmp / "sim.log").open("ab")
    argv = [edgewatch_bin(), "sim", "--aggregator", agg.url, "--hosts", str(live), "--interval", "10"]
    argv += ["--prefix", "ui", "--seed", "11", "--enroll-token", enrollment, "--log-level", "warning"]
    sim = procs.start(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=sim_log,
    )
    log(f"{live} simulated hosts push every 10 s; waiting until each has pushed twice")
    wait_hosts(agg.url, token, live, sim, timeout=240)

    def busy() -> float:
        return cpu_seconds(agg.pid) + cpu_seconds(sim.pid)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-proxy-server"])
        try:
            emit(
                {
                    "bench": "ui",
                    "what": "setup",
                    "hosts": args.hosts,
                    "live_hosts": live,
                    "live": "edgewatch sim, 10 s interval, one sample a frame, pushing while measuring",
                    "probe_host": PROBE,
                    "probe_series": built["probe_series"],
                    "probe_data": f"{args.days:g} days: the last 24 h at 10 s, the days before at 1800 s",
                    "build_s": built["build_s"],
                    "browser": f"Debian chromium {browser.version}, headless",
                    "viewport": f"{VIEWPORT['width']}x{VIEWPORT['height']}",
                    "cores": CORES,
                    "cold": "a new browser context per load: empty HTTP cache, no service worker",
                    "warm": "the same context reloaded: files revalidated, the service worker in control",
                }
            )
            for case in CASES:
                for cache in ("cold", "warm"):
                    log(f"{case.name}, {cache} cache: {args.runs} loads")
                    emit(
                        run_case(
                            browser,
                            agg.url,
                            case,
                            cache=cache,
                            runs=args.runs,
                            hosts=args.hosts,
                            busy=busy,
                            show_waterfall=args.waterfall,
                        )
                    )
        finally:
            browser.close()
    procs.stop(sim)
    sim_log.close()
    agg.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not CHROMIUM.exists():
        sys.exit(f"bench/ui: {CHROMIUM} is missing; run `make bench-ui` (installs Debian's chromium as root)")
    what = f"{'quick' if args.quick else 'full'} run, {args.hosts} hosts, {args.runs} loads a case"
    return run_in_scratch("ui", what, lambda tmp, procs: run(tmp, procs, args), keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
