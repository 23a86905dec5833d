"""Sign-in, sessions, CSRF and roles through the app; the admin endpoints; the UI's files; the live
WebSocket."""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgewatch.aggregator.sessions import SESSIONS
from edgewatch.protocol import Series

from .conftest import T0, Harness, batch, harness
from .notify_services import PushService

PASSWORD = "correct horse battery"
LOAD = (Series("node_load1", precision=2),)
RULE = '[[rule]]\nname = "load_now"\nmetric = "node_load1"\nop = ">"\nwarning = 1.0\ncritical = 5.0\n'


@pytest.fixture(autouse=True)
def admin_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEWATCH_ADMIN_PASSWORD", PASSWORD)


async def login(h: Harness, user: str = "admin", password: str = PASSWORD, **headers: str) -> tuple[int, Any]:
    async with h.client.post(
        "/api/v1/login", json={"username": user, "password": password}, headers=headers
    ) as r:
        return r.status, await r.json()


async def call(h: Harness, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    async with h.client.request(method, path, json=body, headers=headers) as r:
        return r.status, await r.json()


def session_cookie(h: Harness) -> str:
    return next(c.value for c in h.client.session.cookie_jar if c.key == "edgewatch_session")


def test_sign_in_sets_a_safe_cookie_and_csrf_and_origin_guard_every_change(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            assert (await call(h, "GET", "/api/v1/me"))[0] == 401
            status, body = await login(h, password="wrong password")
            assert (status, body["error"]) == (401, "the user name or password is wrong")
            async with h.client.post("/api/v1/login", json={"username": "admin", "password": PASSWORD}) as r:
                assert r.status == 200
                me = await r.json()
                cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie
            assert "SameSite=Lax" in cookie
            assert "Secure" not in cookie  # plain HTTP here; under TLS it is set
            assert (me["user"], me["role"]) == ("admin", "admin")
            first = session_cookie(h)
            status, body = await call(h, "GET", "/api/v1/me")
            assert (status, body["csrf"]) == (200, me["csrf"])
            # a state change without the token, with a foreign Origin, then done right
            path = "/api/v1/tokens"
            status, body = await call(h, "POST", path, {"role": "viewer", "name": "x"})
            assert status == 403
            assert "CSRF" in body["error"]
            status, body = await call(
                h, "POST", path, {"role": "viewer", "name": "x"}, **{"X-CSRF-Token": "forged"}
            )
            assert status == 403
            status, body = await call(
                h,
                "POST",
                path,
                {"role": "viewer", "name": "x"},
                **{"X-CSRF-Token": me["csrf"], "Origin": "https://evil.example"},
            )
            assert status == 403
            assert "another site" in body["error"]
            status, body = await call(
                h,
                "POST",
                path,
                {"role": "viewer", "name": "x"},
                **{"X-CSRF-Token": me["csrf"], "Origin": str(h.client.make_url("")).rstrip("/")},
            )
            assert status == 201
            assert body["token"].startswith("ewt_")
            # a login from another site is refused; a new login makes a new session id
            assert (await login(h, Origin="https://evil.example"))[0] == 403
            assert (await login(h))[0] == 200
            assert session_cookie(h) != first
            status, _ = await call(h, "POST", "/api/v1/logout", None, **{"X-CSRF-Token": me["csrf"]})
            assert status == 403  # the old session's token no longer counts
            me2 = (await call(h, "GET", "/api/v1/me"))[1]
            status, _ = await call(h, "POST", "/api/v1/logout", None, **{"X-CSRF-Token": me2["csrf"]})
            assert status == 200
            assert (await call(h, "GET", "/api/v1/me"))[0] == 401
            audit = [r[0] for r in h.sql("SELECT action FROM audit")]
            assert {"login", "login-failed", "add-token"} <= set(audit)
            assert h.sql("SELECT count(*) FROM sessions")[0][0] == 1  # the first; the second ended
            stored = h.sql("SELECT id_hash FROM sessions")[0][0]
            assert first.encode() not in stored  # only the hash is kept

    asyncio.run(scenario())


def test_sessions_end_when_idle_and_failed_sign_ins_are_limited(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, ui__session_idle="10m") as h:
            assert (await login(h))[0] == 200
            h.clock.ms += 9 * 60_000
            assert (await call(h, "GET", "/api/v1/me"))[0] == 200  # a request keeps it alive
            h.clock.ms += 9 * 60_000
            assert (await call(h, "GET", "/api/v1/me"))[0] == 200
            h.clock.ms += 11 * 60_000
            assert (await call(h, "GET", "/api/v1/me"))[0] == 401
            for _ in range(5):
                assert (await login(h, "nobody", "not it at all"))[0] == 401
            async with h.client.post(
                "/api/v1/login", json={"username": "nobody", "password": "not it at all"}
            ) as r:
                assert r.status == 429
                assert int(r.headers["Retry-After"]) > 0
            # the limit is per client address too: the right password waits as well
            assert (await login(h))[0] == 429

    asyncio.run(scenario())


def test_roles_are_enforced_for_sessions_and_admins_manage_users_tokens_agents(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULE)

    async def scenario() -> None:
        async with harness(tmp_path, alerts__rules_file=str(rules)) as h:
            await login(h)
            csrf = {"X-CSRF-Token": (await call(h, "GET", "/api/v1/me"))[1]["csrf"]}
            status, body = await call(h, "POST", "/api/v1/users", {"name": "vera", "role": "viewer"}, **csrf)
            assert status == 201
            vera = body["password"]
            assert (await call(h, "POST", "/api/v1/users", {"name": "vera"}, **csrf))[0] == 409
            status, body = await call(h, "DELETE", "/api/v1/users/admin", None, **csrf)
            assert status == 409  # the last admin
            status, body = await call(h, "POST", "/api/v1/enrollments", {"uses": 2, "ttl": 3600}, **csrf)
            assert status == 201
            assert body["token"].startswith("ewe_")
            assert shlex.split(body["command"]) == [
                *(
                    "curl",
                    "-fsSL",
                    f"{body['url']}/install.sh",
                    "|",
                    f"EDGEWATCH_ENROLL_TOKEN={body['token']}",
                ),
                *("sudo", "--preserve-env=EDGEWATCH_ENROLL_TOKEN", "sh", "-s", "--"),
                *("--aggregator", body["url"], "--insecure"),  # plain http here: said out loud
            ]
            await h.add_agent("web-1")
            assert [a["name"] for a in (await call(h, "GET", "/api/v1/agents"))[1]["agents"]] == ["web-1"]
            assert (await call(h, "DELETE", "/api/v1/agents/web-1", None, **csrf))[0] == 200
            status, body = await call(h, "POST", "/api/v1/rules/load_now/disable", None, **csrf)
            assert (status, body["enabled"]) == (200, False)
            rule = next(
                r for r in (await call(h, "GET", "/api/v1/rules"))[1]["rules"] if r["name"] == "load_now"
            )
            assert rule["enabled"] is False
            assert (await call(h, "POST", "/api/v1/rules/nope/enable", None, **csrf))[0] == 404
            # the viewer: reads, changes nothing (403 from the API, not just a hidden button)
            assert (await login(h, "vera", vera))[0] == 200
            csrf = {"X-CSRF-Token": (await call(h, "GET", "/api/v1/me"))[1]["csrf"]}
            assert (await call(h, "GET", "/api/v1/hosts"))[0] == 200
            for method, path, body in (
                ("POST", "/api/v1/silences", {"matchers": ["host=a"], "duration": "1h"}),
                ("POST", "/api/v1/alerts/abc/ack", {"comment": "x"}),
                ("POST", "/api/v1/users", {"name": "eve", "role": "admin"}),
                ("POST", "/api/v1/tokens", {"role": "admin"}),
                ("POST", "/api/v1/rules/load_now/enable", None),
                ("POST", "/api/v1/rules/reload", None),
                ("DELETE", "/api/v1/agents/web-1", None),
                ("POST", "/api/v1/channels/push/test", None),
            ):
                status, answer = await call(h, method, path, body, **csrf)
                assert status == 403, (path, answer)
                assert "role" in answer["error"]
        # the switch survives a restart
        async with harness(tmp_path, alerts__rules_file=str(rules)) as h:
            token = await h.api_token("viewer")
            _, body = await h.get("/api/v1/rules", token)
            assert next(r for r in body["rules"] if r["name"] == "load_now")["enabled"] is False

    asyncio.run(scenario())


def test_the_ui_files_are_served_with_a_strict_policy_and_nothing_else_is(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            async with h.client.get("/") as r:
                assert r.status == 200
                assert r.content_type == "text/html"
                assert "default-src 'self'" in r.headers["Content-Security-Policy"]
                assert r.headers["X-Content-Type-Options"] == "nosniff"
            async with h.client.get("/vendor/uPlot.esm.js") as r:
                assert r.status == 200
                assert r.content_type == "text/javascript"
            for path in (
                "/package.json",
                "/node_modules/uplot/package.json",
                "/__init__.py",
                "/../setup.cfg",
            ):
                async with h.client.get(path) as r:
                    assert r.status == 404, path
            async with h.client.get("/api/v1/nothing") as r:
                assert r.status == 404
                assert "error" in await r.json()

    asyncio.run(scenario())


def test_the_page_inlines_early_js_and_its_policy_allows_exactly_that_script(tmp_path: Path) -> None:
    import base64
    import hashlib
    import re

    from edgewatch.aggregator import static

    async def scenario() -> None:
        async with harness(tmp_path) as h:
            async with h.client.get("/early.js") as r:
                early = await r.read()
            async with h.client.get("/") as r:
                page, csp, etag = await r.read(), r.headers["Content-Security-Policy"], r.headers["ETag"]
            async with h.client.get("/", headers={"If-None-Match": etag}) as r:
                assert r.status == 304
            async with h.client.get("/index.html") as r:
                assert await r.read() == page
                assert r.headers["Content-Security-Policy"] == csp
            async with h.client.get("/app.js") as r:
                assert "sha256-" not in r.headers["Content-Security-Policy"]  # only the page has it
        assert b'<script src="/early.js">' not in page
        inline = re.findall(rb"<script>(.*?)</script>", page, re.S)
        assert inline == [early]
        digest = base64.b64encode(hashlib.sha256(early).digest()).decode()
        assert re.search(r"script-src 'self' 'sha256-([^']+)';", csp).group(1) == digest  # type: ignore[union-attr]
        # a script that would end the tag early is not inlined
        assert static.inline_script(b"<head>TAG</head>", b"TAG", b"let s = '</SCRIPT>';") is None
        assert static.inline_script(b"<head></head>", b"TAG", b"1") is None

    asyncio.run(scenario())


def test_ui_files_are_revalidated_and_a_changed_file_is_served_anew(tmp_path: Path) -> None:
    from edgewatch.aggregator import static

    web_dir = tmp_path / "web"
    web_dir.mkdir()
    page = web_dir / "page.js"
    page.write_text("export const v = 1;\n")

    async def scenario() -> None:
        async with harness(tmp_path) as h:
            target = static._file("/page.js", web_dir.resolve())
            assert target is not None
            async with h.client.get("/app.js") as r:
                assert r.status == 200
                assert r.charset == "utf-8"
                etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
                body = await r.read()
            async with h.client.get("/app.js", headers={"If-None-Match": etag}) as r:
                assert r.status == 304
                assert await r.read() == b""
            async with h.client.get("/app.js", headers={"If-Modified-Since": modified}) as r:
                assert r.status == 304
            async with h.client.get("/app.js", headers={"If-None-Match": '"other"'}) as r:
                assert r.status == 200
                assert await r.read() == body
            first = static._load(target)
            assert first is not None
            assert first.body == b"export const v = 1;\n"
            page.write_text("export const version = 2;\n")  # another size: re-read
            second = static._load(target)
            assert second is not None
            assert second.body == b"export const version = 2;\n"
            assert second.etag != first.etag
            page.unlink()
            assert static._load(target) is None

    asyncio.run(scenario())


def test_live_sends_hello_samples_host_status_and_alerts(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULE)

    async def scenario() -> None:
        async with harness(tmp_path, now_ms=T0 + 10_000, alerts__rules_file=str(rules)) as h:
            await h.add_agent("web-1")
            b = batch("web-1", 1, [T0], series=LOAD, value=lambda k, ts: 0.5)
            assert (await h.push(b))[0] == 200
            [sid] = [r[0] for r in h.sql("SELECT id FROM series")]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await h.client.ws_connect("/api/v1/live")
            assert refused.value.status == 401
            await login(h)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await h.client.ws_connect("/api/v1/live", origin="https://evil.example")
            assert refused.value.status == 403
            async with h.client.ws_connect("/api/v1/live") as ws:
                hello = json.loads((await ws.receive(timeout=5)).data)
                assert (hello["type"], hello["role"]) == ("hello", "admin")
                await ws.send_str(json.dumps({"type": "subscribe", "hosts": ["*"], "series": "x"}))
                assert json.loads((await ws.receive(timeout=5)).data)["type"] == "error"
                await ws.send_str(
                    json.dumps({"type": "subscribe", "hosts": ["*"], "series": [sid], "levels": ["warning"]})
                )
                await asyncio.sleep(0.1)
                b = batch("web-1", 2, [T0 + 10_000], series=LOAD, value=lambda k, ts: 7.5)
                assert (await h.push(b))[0] == 200
                seen: dict[str, Any] = {}
                while len(seen) < 3:
                    m = json.loads((await ws.receive(timeout=10)).data)
                    seen.setdefault(m["type"], m)
                assert seen["samples"]["series"] == {str(sid): [[T0 + 10_000, 7.5]]}
                assert seen["alert"]["alert"]["host"] == "web-1"
                assert seen["alert"]["transition"]["to"] == "firing"
                assert seen["hosts"]["hosts"][0]["host"] == "web-1"

    asyncio.run(scenario())


def test_a_new_password_ends_the_other_sessions_and_the_old_one_stops_working(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await login(h)
            csrf = {"X-CSRF-Token": (await call(h, "GET", "/api/v1/me"))[1]["csrf"]}
            path = "/api/v1/me/password"
            status, body = await call(h, "POST", path, {"old": "not it", "new": "a new long secret"}, **csrf)
            assert status == 403
            assert (await call(h, "POST", path, {"old": PASSWORD, "new": "short"}, **csrf))[0] == 400
            status, body = await call(h, "POST", path, {"old": PASSWORD, "new": "a new long secret"}, **csrf)
            assert (status, body["changed"]) == (200, True)
            assert (await call(h, "GET", "/api/v1/me"))[0] == 200  # this browser got a new session
            assert h.sql("SELECT count(*) FROM sessions") == [(1,)]
            assert (await login(h))[0] == 401
            assert (await login(h, password="a new long secret"))[0] == 200
            token = await h.api_token("admin")
            async with h.client.post(
                path, json={"old": "x", "new": "y" * 12}, headers={"Authorization": f"Bearer {token}"}
            ) as r:
                assert r.status == 400  # a token has no password

    asyncio.run(scenario())


def test_sign_in_is_bounded_against_floods_and_parallel_guesses(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            status, _ = await login(h, "x" * 5000, "y")
            assert status == 400  # not a user name: refused before any work
            async with h.client.post("/api/v1/login", data=b"{" + b" " * 10_000 + b"}") as r:
                assert r.status == 400
            results = await asyncio.gather(*(login(h, "admin", f"guess {k}") for k in range(12)))
            statuses = sorted(s for s, _ in results)
            assert statuses.count(401) <= 5  # each attempt counts before its password is checked
            assert set(statuses) <= {401, 429}
            assert len(h.client.app[SESSIONS].limiter.failures) <= 2

    asyncio.run(scenario())


def test_a_revoked_token_loses_its_socket_and_a_deleted_user_their_phones(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, alerts__push_allow_loopback_http=True) as h:
            token = await h.api_token("viewer")
            headers = {"Authorization": f"Bearer {token}"}
            ws = await h.client.ws_connect("/api/v1/live", headers=headers)
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "hello"
            await login(h)
            csrf = {"X-CSRF-Token": (await call(h, "GET", "/api/v1/me"))[1]["csrf"]}
            [row] = (await call(h, "GET", "/api/v1/tokens"))[1]["tokens"]
            assert (await call(h, "DELETE", f"/api/v1/tokens/{row['id']}", None, **csrf))[0] == 200
            msg = await ws.receive(timeout=5)
            assert msg.type.name in ("CLOSE", "CLOSED", "CLOSING")
            await ws.close()
            # a user's push subscriptions go with the user; ten devices per user at most
            _, made = await call(h, "POST", "/api/v1/users", {"name": "pat", "role": "viewer"}, **csrf)
            await login(h, "pat", made["password"])
            csrf = {"X-CSRF-Token": (await call(h, "GET", "/api/v1/me"))[1]["csrf"]}
            async with PushService() as push:
                for k in range(11):
                    sub = push.subscriber().subscription()
                    status, body = await call(h, "POST", "/api/v1/push/subscriptions", sub, **csrf)
                    assert status == (201 if k < 10 else 409), body
            assert h.sql("SELECT count(*) FROM push_subscriptions") == [(10,)]
            await login(h)
            csrf = {"X-CSRF-Token": (await call(h, "GET", "/api/v1/me"))[1]["csrf"]}
            assert (await call(h, "DELETE", "/api/v1/users/pat", None, **csrf))[0] == 200
            assert h.sql("SELECT count(*) FROM push_subscriptions") == [(0,)]

    asyncio.run(scenario())
