"""The web UI in headless Chromium (Debian's ``chromium``, driven by Playwright) against a real
aggregator with simulated hosts (``stack.py``): sign-in, the overview, the host charts over every
range, an alert arriving live and acknowledged, what a viewer may not do (in the UI and in the API),
CSRF and Origin checks, the service worker, and screenshots of every page at phone and desktop
sizes in ``build/screenshots/``.

The UI runs under its strict Content-Security-Policy here; the tests wait on what it marks in the DOM
(``body[data-page-ready]``, ``.chart[data-chart-ready]``) and read it through selectors.
"""

from __future__ import annotations

import contextlib
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from .stack import HOSTS, PASSWORDS, Stack

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
DESKTOP: ViewportSize = {"width": 1366, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
TIMEOUT_MS = 20_000

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="the browser tests need Debian's chromium at /usr/bin/chromium: `make test` installs it "
        "as root, else run `sudo apt-get install chromium`",
    ),
    pytest.mark.slow,
]


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("web"))
    try:
        s.start()
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        # --no-proxy-server: nothing leaves 127.0.0.1, whatever the environment says
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-proxy-server"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def hot_alert(stack: Stack) -> dict[str, Any]:
    """A firing critical cpu_high alert on a host of its own (spike-001)."""
    return stack.wait_alert("cpu_high", stack.spike("spike"))


@contextlib.contextmanager
def session(browser: Browser, stack: Stack, user: str | None, *, phone: bool = False) -> Iterator[Page]:
    """A page in a fresh browser context (no cookies, no cache), signed in as ``user`` through the
    login API unless None. Uncaught errors in the page, and anything its CSP refused, fail the test."""
    context = browser.new_context(
        base_url=stack.url,
        viewport=PHONE if phone else DESKTOP,
        device_scale_factor=2 if phone else 1,
        is_mobile=phone,
        has_touch=phone,
    )
    context.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    try:
        if user is not None:
            answer = context.request.post(
                "/api/v1/login", data={"username": user, "password": PASSWORDS[user]}
            )
            assert answer.status == 200, answer.text()
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None
        )
        yield page
    finally:
        context.close()
    assert errors == [], f"errors in the page: {errors}"


def visit(page: Page, route: str, name: str) -> None:
    """Open ``#/route`` and wait until its page (router name ``name``) says it has rendered."""
    same = page.url.startswith("http") and page.get_attribute("body", "data-route") == name
    page.goto(f"/#/{route}")
    if same:  # a new hash of the same page: load it again, so the old page's mark cannot answer
        page.reload()
    # the router sets data-route and drops data-page-ready in one step, so this is the new page
    page.wait_for_selector(f"body[data-route='{name}'][data-page-ready='1']", state="attached")


def api(
    page: Page, method: str, path: str, body: Any = None, *, csrf: str = "", origin: str = ""
) -> tuple[int, Any]:
    """A request with the page's session cookie, and an X-CSRF-Token and Origin header when given."""
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    if origin:
        headers["Origin"] = origin
    answer = page.request.fetch(path, method=method, data=body, headers=headers)
    try:
        return answer.status, answer.json()
    except ValueError:
        return answer.status, answer.text()


def csrf_of(page: Page) -> str:
    status, me = api(page, "GET", "/api/v1/me")
    assert status == 200, me
    return str(me["csrf"])


# -- signing in and the overview ---------------------------------------------------------------------


def test_sign_in_shows_the_error_for_a_wrong_password_then_signs_in(stack: Stack, browser: Browser) -> None:
    with session(browser, stack, None) as page:
        visit(page, "login", "login")
        page.fill("#login-user", "admin")
        page.fill("#login-password", "not-the-password")
        page.click("#login-form button[type=submit]")
        error = page.wait_for_selector("#login-error:not([hidden])")
        assert error is not None
        assert error.inner_text() == "the user name or password is wrong"
        assert page.get_attribute("body", "data-route") == "login"
        assert not [c for c in page.context.cookies() if c["name"] == "edgewatch_session"]

        page.fill("#login-password", PASSWORDS["admin"])
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("body[data-route='overview'][data-page-ready='1']", state="attached")
        assert page.inner_text("#user") == "admin · admin"
        cookie = next(c for c in page.context.cookies() if c["name"] == "edgewatch_session")
        assert cookie["httpOnly"]
        assert cookie["sameSite"] == "Lax"


def test_overview_lists_the_simulated_hosts(stack: Stack, browser: Browser) -> None:
    known = {h["host"] for h in stack.get("/api/v1/hosts")["hosts"]}
    with session(browser, stack, "viewer") as page:
        visit(page, "", "overview")
        rows = page.locator("#ov-body [role=row][data-host]")
        shown = {rows.nth(i).get_attribute("data-host") for i in range(rows.count())}
        assert shown == known
        assert set(HOSTS) <= shown
        assert page.inner_text("#ov-count") == str(len(known))
        for name in HOSTS:
            row = page.locator(f"#ov-body [data-host='{name}']")
            assert row.locator(".c-host a").get_attribute("href") == f"#/hosts/{name}"
            assert row.locator(".c-status").inner_text().strip() == "Up"
            assert re.fullmatch(r"\d+(\.\d+)? %", row.locator(".c-metric[data-label=CPU] .val").inner_text())
            assert row.locator(".c-seen").inner_text() != "–"
        # the search narrows the list as one types
        page.fill("#ov-search", "sim-003")
        page.wait_for_selector("#ov-body [data-host='sim-001']", state="detached")
        assert page.locator("#ov-body [role=row][data-host]").count() == 1
        assert page.get_attribute("#ov-body [role=row]", "data-host") == "sim-003"
    # pushing hours of history first did not make them look down
    assert stack.get("/api/v1/alerts/history?rule=host_down")["history"] == []


# -- the host page ---------------------------------------------------------------------------------

RANGES = ("1h", "6h", "24h", "7d", "30d", "1y")
# the charts ask for about a point per two pixels, on whole buckets of a tier (web/pages/host.js)
TIER = {"1h": "raw", "24h": "5m", "30d": "1h"}
HEADLINE_CHARTS = ("cpu", "load", "memory")


def drawn_charts(page: Page) -> int:
    """How many charts are drawn with data, after checking that each of them is non-empty: a canvas,
    and a newest value in the legend of its first line."""
    ready = page.locator(".chart-card:not([hidden]) .chart[data-chart-ready]")
    n = ready.count()
    assert page.locator(".chart-card:not([hidden]) .chart:not([data-chart-ready])").count() == 0
    assert page.locator(".chart[data-chart-ready] canvas").count() >= n
    values = page.locator(
        ".chart[data-chart-ready] .u-legend tr.u-series:nth-child(2) td.u-value"
    ).all_inner_texts()
    assert len(values) == n
    assert all(v.strip() not in ("", "–") for v in values), values
    return n


@pytest.mark.parametrize("span", RANGES)
def test_host_page_draws_non_empty_charts_for_each_range(stack: Stack, browser: Browser, span: str) -> None:
    with session(browser, stack, "viewer") as page:
        visit(page, f"hosts/sim-001?range={span}", "host")
        assert page.get_attribute(f"button[data-range='{span}']", "aria-pressed") == "true"
        tier = page.inner_text("#h-tier")
        assert re.fullmatch(r"(raw|1m|5m|1h) tier, .+ per point", tier), tier
        if span in TIER:
            assert tier.startswith(f"{TIER[span]} tier"), tier
        n = drawn_charts(page)
        assert n >= 8, f"only {n} charts drawn over {span}"
        for key in HEADLINE_CHARTS:
            assert page.locator(f"[data-chart-key='{key}'] .chart[data-chart-ready]").count() == 1, key
        assert page.locator("[data-chart-key^='fs:'] .chart[data-chart-ready]").count() >= 1
        assert page.locator("[data-chart-key^='net:'] .chart[data-chart-ready]").count() >= 1


@pytest.mark.parametrize(
    ("route", "name", "expected"),
    [
        ("", "overview", ["/api/v1/hosts?spark=1", "/api/v1/alerts"]),
        (
            "hosts/sim-001?range=24h",
            "host",
            [
                "/api/v1/hosts/sim-001",
                "/api/v1/hosts/sim-001/series",
                "/api/v1/alerts?host=sim-001",
                "/api/v1/hosts/sim-001/events?start=-24h",
            ],
        ),
    ],
)
def test_the_first_requests_start_before_the_modules_and_are_made_once(
    stack: Stack, browser: Browser, route: str, name: str, expected: list[str]
) -> None:
    """early.js asks for the first page's data while the modules load; the page uses those answers
    instead of asking again (a URL that differs from the page's own shows up twice)."""
    with session(browser, stack, "viewer") as page:
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url.removeprefix(stack.url)))
        page.goto(f"/#/{route}")
        page.wait_for_selector(f"body[data-route='{name}'][data-page-ready='1']", state="attached")
        for url in expected:
            assert asked.count(url) == 1, (url, asked)
        # started before the app ran: its first request is the session check
        assert max(asked.index(url) for url in expected) < asked.index("/api/v1/me"), asked


def test_a_host_page_takes_the_chart_queries_early_js_made(stack: Stack, browser: Browser) -> None:
    """Once a host's series are in, early.js asks for its charts' data as the page would; the page
    takes those answers: every query URL goes out once, and each is one early.js asked."""
    with session(browser, stack, "viewer") as page:
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url.removeprefix(stack.url)))
        page.goto("/#/hosts/sim-001?range=24h")
        page.wait_for_selector("body[data-route='host'][data-page-ready='1']", state="attached")
        early = [u for u in page.evaluate("window.edgewatchEarlyAsked") if u.startswith("/api/v1/query?")]
        queries = [u for u in asked if u.startswith("/api/v1/query?")]
        assert early, "early.js asked for no chart data"
        assert sorted(queries) == sorted(early), (queries, early)
        assert drawn_charts(page) >= 8


def test_range_buttons_load_and_redraw_the_charts(stack: Stack, browser: Browser) -> None:
    with session(browser, stack, "viewer") as page:
        visit(page, "hosts/sim-001", "host")
        assert page.inner_text("#h-tier").startswith("raw tier")
        page.click("button[data-range='7d']")
        # the tier line changes once the new points are in and the charts are drawn again
        expect(page.locator("#h-tier")).not_to_have_text(re.compile("^raw"))
        assert page.get_attribute("button[data-range='7d']", "aria-pressed") == "true"
        assert page.get_attribute("button[data-range='1h']", "aria-pressed") == "false"
        assert page.url.endswith("#/hosts/sim-001?range=7d")
        assert drawn_charts(page) >= 8


# -- alerts ----------------------------------------------------------------------------------------


def alert_item(host: str) -> str:
    return f"#al-active li.alert-item:has(a[href='#/hosts/{host}'])"


def test_a_cpu_spike_raises_an_alert_that_appears_without_reload(stack: Stack, browser: Browser) -> None:
    with session(browser, stack, "operator") as page:
        visit(page, "alerts", "alerts")
        page.wait_for_selector("#live-dot[data-state='open']", state="attached")
        loads: list[str] = []
        page.on("load", lambda p: loads.append(p.url))
        address = page.url
        host = stack.spike("burst")  # a host of its own: no other test has raised this alert
        assert page.locator(alert_item(host)).count() == 0
        item = page.wait_for_selector(f"{alert_item(host)}.st-firing.lv-critical", timeout=60_000)
        assert item is not None
        assert "fresh" in (item.get_attribute("class") or "").split()  # it came over the WebSocket
        assert item.inner_text().startswith("critical")
        rule = item.query_selector("a.alert-rule")
        assert rule is not None
        assert rule.inner_text() == "cpu_high"
        assert loads == []
        assert page.url == address
        api_alert = stack.wait_alert("cpu_high", host, timeout=5)
        assert item.get_attribute("data-fp") == api_alert["fingerprint"]


def test_an_operator_acks_an_alert_with_a_comment(
    stack: Stack, browser: Browser, hot_alert: dict[str, Any]
) -> None:
    fp = hot_alert["fingerprint"]
    comment = "Looking into it (browser test)"
    with session(browser, stack, "operator") as page:
        visit(page, "alerts", "alerts")
        item = page.locator(f"#al-active li[data-fp='{fp}']")
        item.locator(f"button[data-silence='{fp}']").wait_for()  # an operator may silence, too
        item.locator(f"button[data-ack='{fp}']").click()
        dialog = page.locator("dialog[open]")
        dialog.locator("#ack-comment").fill(comment)
        dialog.locator("button[type=submit]").click()
        dialog.wait_for(state="detached")
        ack = page.locator(f"#al-active li[data-fp='{fp}'] .ack")
        ack.wait_for()
        assert ack.inner_text().startswith("Acknowledged by user:operator")
        assert comment in ack.inner_text()
        assert page.locator(f"button[data-ack='{fp}']").count() == 0
        page.locator("#al-history", has_text=comment).wait_for()
    alert = stack.get(f"/api/v1/alerts/{fp}")["alert"]
    assert alert["acked_by"] == "user:operator"
    assert alert["ack_comment"] == comment
    assert alert["state"] == "firing"


def changing_endpoints() -> list[tuple[str, str, str]]:
    """(method, path, role) of every state-changing endpoint docs/api.md says needs operator or admin."""
    rows = re.findall(
        r"^\| (POST|PUT|PATCH|DELETE) \| `(/api/v1/[^`]+)` \| (operator|admin) \|",
        (ROOT / "docs" / "api.md").read_text(),
        re.MULTILINE,
    )
    paths = {p for _, p, _ in rows}
    assert {"/api/v1/alerts/{fingerprint}/ack", "/api/v1/silences", "/api/v1/users"} <= paths, rows
    return rows


def concrete(path: str, fp: str) -> str:
    name = "admin" if "/users/" in path else "sim-001" if "/agents/" in path else "cpu_high"
    subs = {"fingerprint": fp, "silence": "1", "channel": "webpush", "id": "1", "name": name}
    return re.sub(r"\{(\w+)\}", lambda m: subs.get(m.group(1), "x"), path)


BODIES: dict[str, Any] = {  # what a viewer would like to do (a refusal must not be for a bad body)
    "/ack": {"comment": "a viewer was here"},
    "/api/v1/silences": {"matchers": ["host=sim-001"], "duration": "1h", "comment": "a viewer was here"},
    "/api/v1/users": {"name": "mallory", "role": "admin", "password": "mallory-secret-4"},
    "/api/v1/tokens": {"role": "admin", "name": "mallory"},
    "/api/v1/enrollments": {"uses": 1, "ttl": 3600},
    "/api/v1/commands": {"hosts": ["sim-001"], "action": "restart", "args": {}},
}


def test_a_viewer_sees_no_controls_and_the_api_refuses_every_change(
    stack: Stack, browser: Browser, hot_alert: dict[str, Any]
) -> None:
    fp = hot_alert["fingerprint"]
    with session(browser, stack, "viewer") as page:
        visit(page, "alerts", "alerts")
        page.wait_for_selector(f"#al-active li[data-fp='{fp}']")
        for control in ("[data-ack]", "[data-silence]", "#al-new-silence", "[data-end-silence]"):
            assert page.locator(control).count() == 0, control
        visit(page, "rules", "rules")
        assert page.locator("#ru-body tr[data-rule='cpu_high']").count() == 1
        assert page.locator("button[data-toggle]").count() == 0
        assert page.locator("#ru-reload").count() == 0
        visit(page, "settings", "settings")
        assert page.locator("#st-account").is_visible()
        assert page.locator("#st-admin > *").count() == 0

        token = csrf_of(page)
        # the session and its token are good: a viewer's own kind of change gets through to the handler
        gone = {"endpoint": "https://push.example.net/x"}
        status, body = api(page, "DELETE", "/api/v1/push/subscriptions", gone, csrf=token)
        assert status == 404, body
        answered = []
        for method, path, role in changing_endpoints():
            target = concrete(path, fp)
            body_of: Any = next((b for k, b in BODIES.items() if path.endswith(k)), {})
            status, body = api(page, method, target, body_of, csrf=token)
            if status != 403 or f"needs the {role} role" not in str(body):
                answered.append((method, target, status, body))
        assert answered == [], f"answered a viewer: {answered}"

    # and nothing changed
    assert stack.get(f"/api/v1/alerts/{fp}")["alert"]["acked_by"] != "user:viewer"
    silences = stack.get("/api/v1/silences?state=all")["silences"]
    assert not [s for s in silences if "host=sim-001" in s["matchers"]]
    assert {u["name"] for u in stack.get("/api/v1/users")["users"]} == set(PASSWORDS)
    assert "mallory" not in {t["name"] for t in stack.get("/api/v1/tokens")["tokens"]}
    agents = stack.get("/api/v1/agents")["agents"]
    assert "sim-001" in {a["name"] for a in agents}
    assert [a["name"] for a in agents if a["revoked_ms"] is not None] == []
    rule = next(r for r in stack.get("/api/v1/rules")["rules"] if r["name"] == "cpu_high")
    assert rule["enabled"]


def test_posts_without_the_csrf_token_or_from_another_origin_get_403(stack: Stack, browser: Browser) -> None:
    silence = {"matchers": ["host=nowhere-001"], "duration": "10m", "comment": "csrf test"}
    with session(browser, stack, "operator") as page:
        token = csrf_of(page)
        status, body = api(page, "POST", "/api/v1/silences", silence)
        assert (status, "CSRF" in str(body)) == (403, True), body
        status, body = api(page, "POST", "/api/v1/silences", silence, csrf="wrong")
        assert (status, "CSRF" in str(body)) == (403, True), body
        status, body = api(page, "DELETE", "/api/v1/silences/1")
        assert (status, "CSRF" in str(body)) == (403, True), body
        evil = "http://evil.example"
        status, body = api(page, "POST", "/api/v1/silences", silence, csrf=token, origin=evil)
        assert (status, "Origin" in str(body)) == (403, True), body
        status, body = api(page, "POST", "/api/v1/logout", None, csrf=token, origin=evil)
        assert status == 403, body
        login = {"username": "operator", "password": PASSWORDS["operator"]}
        status, body = api(page, "POST", "/api/v1/login", login, origin=evil)
        assert (status, "Origin" in str(body)) == (403, True), body
        assert stack.get("/api/v1/silences?state=all")["silences"] == []
        # the same request with the token from the aggregator's own origin goes through
        status, body = api(page, "POST", "/api/v1/silences", silence, csrf=token, origin=stack.url)
        assert status in (200, 201), body
        made = body["silence"]["id"]
        status, body = api(page, "DELETE", f"/api/v1/silences/{made}", None, csrf=token)
        assert status == 200, body
        status, me = api(page, "GET", "/api/v1/me")
        assert (status, me["user"]) == (200, "operator")  # the refused logout ended nothing


# -- the app itself --------------------------------------------------------------------------------


def test_the_service_worker_registers_and_controls_the_page(stack: Stack, browser: Browser) -> None:
    with session(browser, stack, "viewer") as page:
        with page.context.expect_event("serviceworker") as event:
            visit(page, "", "overview")
        assert event.value.url == f"{stack.url}/sw.js"
        # Playwright evaluates over the DevTools protocol, which the page's CSP does not govern
        ready = page.evaluate(
            "() => navigator.serviceWorker.ready.then(r => ({scope: r.scope, state: r.active.state}))"
        )
        assert ready["scope"] == f"{stack.url}/"
        assert ready["state"] in ("activating", "activated")
        page.reload()
        page.wait_for_selector("body[data-page-ready='1']", state="attached")
        assert page.evaluate("() => navigator.serviceWorker.controller?.scriptURL") == f"{stack.url}/sw.js"
        status, manifest = api(page, "GET", "/manifest.webmanifest")
        assert status == 200
        assert manifest["name"]
        assert manifest["start_url"]
        assert manifest["display"] in ("standalone", "fullscreen", "minimal-ui")


PAGES = (  # screenshot name, route, router name
    ("overview", "", "overview"),
    ("host", "hosts/sim-001", "host"),
    ("alerts", "alerts", "alerts"),
    ("rules", "rules", "rules"),
    ("settings", "settings", "settings"),
)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_screenshots_of_every_page(
    stack: Stack, browser: Browser, hot_alert: dict[str, Any], size: str
) -> None:
    phone = size == "phone"
    SHOTS.mkdir(parents=True, exist_ok=True)
    width = (PHONE if phone else DESKTOP)["width"] * (2 if phone else 1)
    made: list[Path] = []

    def shot(page: Page, name: str) -> None:
        path = SHOTS / f"{size}-{name}.png"
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        made.append(path)

    with session(browser, stack, None, phone=phone) as page:
        visit(page, "login", "login")
        shot(page, "login")
        page.fill("#login-user", "admin")
        page.fill("#login-password", PASSWORDS["admin"])
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("body[data-route='overview'][data-page-ready='1']", state="attached")
        for name, route, router_name in PAGES:
            visit(page, route, router_name)
            if name == "alerts":
                page.wait_for_selector(f"#al-active li[data-fp='{hot_alert['fingerprint']}']")
            if name == "settings":
                page.wait_for_selector("#ad-users")
            shot(page, name)
    for path in made:
        w, h = png_size(path)
        # no page is wider than the screen: nothing to scroll sideways on a phone
        assert w == width, f"{path.name} is {w} px wide, the screen {width} px"
        assert h >= (PHONE if phone else DESKTOP)["height"] * (2 if phone else 1) // 2
    assert len(made) == 1 + len(PAGES)
