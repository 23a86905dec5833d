"""Scenario 9: authentication, secrets at rest, rate limits, roles and CSRF against the real aggregator.

- Agent tokens: a push (and the agent's command endpoints) without a token, with a malformed,
  wrong, unknown or foreign (API, enrollment) token, and with a revoked one is ``401``; the valid
  token works before the revocation and stops at once after ``DELETE /api/v1/agents/NAME`` (the
  full form also times a revocation by ``edgewatch admin revoke-agent``, documented to take effect
  within 30 s). API tokens alike.
- Secrets at rest: every secret the scenario made or was shown (agent, API and enrollment tokens
  and their secret parts, passwords, session cookies) is looked for in every value of every table
  of the SQLite file, and as bytes in every file of the data directory (database, WAL, shared
  memory, keys), while the aggregator runs and after it stopped; and in the aggregator's log.
- Rate limits: after 5 failed sign-ins from one client address the next attempt (even with the
  right password) is ``429`` with ``Retry-After``, for one user name and for many; another address
  still signs in. Whether failed agent tokens are limited is measured and reported, not checked:
  the design does not promise it.
- Roles: every endpoint of docs/api.md's table is called without credentials (``401`` for all
  that need some), every operator or admin endpoint as a viewer (API token and browser session,
  ``403``) and every admin one as an operator (``403``); the least role allowed must get past the
  check (not ``401`` / ``403``), so a route that refuses everyone fails too.
- CSRF: with an admin's browser session, every state-changing endpoint without ``X-CSRF-Token``,
  with a wrong one, and with the right one but a foreign ``Origin`` is ``403``; with the right
  token and the aggregator's own origin it gets past the check. A sign-in from a foreign origin is
  ``403``.

Path parameters name things that do not exist, so the calls that get through change nothing.
"""

from __future__ import annotations

import http.cookies
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgewatch.aggregator.api import TOKEN_TTL_S
from edgewatch.aggregator.ingest import AGENT_MAX_FAILURES, AUTH_TTL_S
from edgewatch.protocol import Batch, Series, encode
from tests.aggregator.procs import AggregatorProcess
from tests.soak.core import Context, Result, scenario
from tests.soak.faultkit import Reply, admin_cli, call, secrets_in

PROMISE = (
    "Missing, wrong and revoked agent and API tokens get 401; no token, password or session id is"
    " stored or logged in plain text; failed sign-ins are limited to 5 per address (429 with"
    " Retry-After); every endpoint enforces its role (no credentials 401, a lower role 403) and every"
    " state-changing request of a browser session needs its CSRF token and the aggregator's own origin."
)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
CHANGING = ("POST", "PUT", "PATCH", "DELETE")
RANK = {"viewer": 1, "operator": 2, "admin": 3}
PLACEHOLDERS = {
    "fingerprint": "0" * 16,
    "silence": "soak-nosuch",
    "channel": "soak-nosuch",
    "name": "soak-nosuch",
    "id": "soak-nosuch",
    "host": "soak-nosuch",
}
FOREIGN = "https://evil.example"
CONTROL = "soak-viewer"  # stored in plain text (a user name): what proves the scans read everything
PASSWORDS = {
    "soak-admin": "soak admin pass " + secrets.token_hex(8),
    "soak-viewer": "soak viewer " + secrets.token_hex(8),
}
TOKEN = re.compile(r"ew[ate]_[A-Za-z0-9._-]+")
FRAME = "application/x-edgewatch-frame"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as documented, with {placeholders}
    who: str  # viewer, operator, admin, session, agent, enrollment, anyone

    @property
    def url(self) -> str:
        return re.sub(r"\{(\w+)[^}]*\}", lambda m: PLACEHOLDERS.get(m[1], "soak-nosuch"), self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def documented() -> list[Endpoint]:
    """The endpoints of docs/api.md's table (a test keeps it in step with the routes)."""
    out = []
    for line in DOCS.read_text().splitlines():
        m = re.match(r"\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \| ([^|]+)\|", line)
        if not m:
            continue
        who = m[3].strip()
        who = {"agent token": "agent", "enrollment token": "enrollment"}.get(who, who.split(",")[0].strip())
        out.append(Endpoint(m[1], m[2], who))
    return out


@dataclass
class Session:
    cookie: str
    csrf: str

    def headers(self, csrf: str | None = None, origin: str | None = None) -> dict[str, str]:
        out = {"Cookie": f"edgewatch_session={self.cookie}"}
        if csrf is not None:
            out["X-CSRF-Token"] = csrf
        if origin is not None:
            out["Origin"] = origin
        return out


def login(
    agg: AggregatorProcess, user: str, password: str, *, source: str | None = None
) -> tuple[Reply, Session | None]:
    reply = call(agg.url, "POST", "/api/v1/login", {"username": user, "password": password}, source=source)
    if reply.status != 200:
        return reply, None
    jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie(reply.headers.get("set-cookie", ""))
    return reply, Session(jar["edgewatch_session"].value, reply.json()["csrf"])


def push_frame(agent: str, seq: int, boot: int = 7) -> bytes:
    now = int(time.time() * 1000)
    return encode(
        Batch(agent, boot, seq, [now], [Series("node_load1", precision=2)], [[0.5]], {"hostname": agent})
    )


class Secrets:
    """Everything that must never be stored or logged in plain text."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, *values: str) -> None:
        for v in values:
            if not v:
                continue
            self.values.add(v)
            _, dot, secret = v.rpartition(".")
            if dot and TOKEN.fullmatch(v) and len(secret) >= 16:
                self.values.add(secret)  # the secret part of a token, without its public id

    def harvest(self, reply: Reply) -> Reply:
        """Keep any token an answer shows (a created token is shown once)."""
        self.add(*TOKEN.findall(reply.body.decode(errors="replace")))
        return reply


Found = list[tuple[str, str]]  # (where, which secret)


def scan_database(db: Path, values: Iterable[str]) -> tuple[dict[str, int], Found]:
    """Every value of every column of every table: ``(counts, (table.column, secret) found)``."""
    wanted = list(values)
    found: Found = []
    counts = {"tables": 0, "columns": 0, "values": 0}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            counts["tables"] += 1
            cursor = conn.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cursor.description]
            counts["columns"] += len(columns)
            for row in cursor:
                for column, value in zip(columns, row):
                    counts["values"] += 1
                    data = (
                        value.encode()
                        if isinstance(value, str)
                        else value
                        if isinstance(value, bytes)
                        else None
                    )
                    if data is not None:
                        found += [(f"{table}.{column}", s) for s in secrets_in(data, wanted)]
    finally:
        conn.close()
    return counts, found


def scan_files(directory: Path, values: Iterable[str]) -> tuple[int, Found]:
    """Every byte of every file under ``directory``: ``(bytes scanned, (file, secret) found)``."""
    wanted = list(values)
    total, found = 0, []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        total += len(data)
        found += [(path.name, s) for s in secrets_in(data, wanted)]
    return total, found


@scenario(9, "authentication, secrets at rest, limits, roles, CSRF", PROMISE)
def run(ctx: Context) -> Result:
    result = Result()
    agg = AggregatorProcess(ctx.tmp)
    keep = Secrets()
    keep.add(*PASSWORDS.values())
    endpoints = documented()
    figures = result.figures
    try:
        agg.start()
        admin = admin_cli(agg, "add-token", "--role", "admin")
        keep.add(admin)

        def api(method: str, path: str, body: Any = None, token: str | None = admin, **kw: Any) -> Reply:
            return keep.harvest(call(agg.url, method, path, body, token=token, **kw))

        viewer = api("POST", "/api/v1/tokens", {"role": "viewer", "name": "soak viewer"}).json()["token"]
        operator = api("POST", "/api/v1/tokens", {"role": "operator", "name": "soak operator"}).json()[
            "token"
        ]
        doomed = api("POST", "/api/v1/tokens", {"role": "viewer", "name": "soak doomed"}).json()["token"]
        for user, password in PASSWORDS.items():
            role = "admin" if user == "soak-admin" else "viewer"
            api("POST", "/api/v1/users", {"name": user, "role": role, "password": password})
        enrollment = api("POST", "/api/v1/enrollments", {"uses": 1, "ttl": 600}).json()["token"]
        agent_a = api("POST", "/api/v1/enroll", {"token": enrollment, "name": "auth-a"}, token=None).json()[
            "token"
        ]
        agent_b = admin_cli(agg, "add-agent", "auth-b")
        agent_c = admin_cli(agg, "add-agent", "auth-c")
        cli_enrollment = admin_cli(agg, "add-enrollment")
        keep.add(viewer, operator, doomed, agent_b, agent_c, cli_enrollment)

        agent_tokens(result, api, agent_a, agent_b, admin, cli_enrollment, enrollment)
        api_tokens(result, api, viewer, doomed)
        if not ctx.fast:
            cli_doomed = api("POST", "/api/v1/tokens", {"role": "viewer", "name": "soak cli"}).json()["token"]
            cli_revocations(result, agg, api, agent_c, cli_doomed)
        sessions = {user: login(agg, user, pw)[1] for user, pw in PASSWORDS.items()}
        for s in sessions.values():
            if s is not None:
                keep.add(s.cookie)
        admin_session, viewer_session = sessions["soak-admin"], sessions["soak-viewer"]
        result.check(
            admin_session is not None and viewer_session is not None, "the soak users cannot sign in"
        )
        if admin_session is not None and viewer_session is not None:
            roles(result, agg, endpoints, admin, operator, viewer, agent_a, viewer_session)
            csrf(result, agg, endpoints, admin_session)
        limits(result, agg, agent_a)

        # secrets at rest, while the aggregator runs (the WAL holds the recent writes)
        figures["secrets_checked"] = len(keep.values)
        counts, in_tables = scan_database(agg.data_dir / "edgewatch.db", [*keep.values, CONTROL])
        scanned, in_files = scan_files(agg.data_dir, [*keep.values, CONTROL])
        figures.update(scanned_running={**counts, "bytes": scanned})
        figures["wal_bytes"] = (
            (agg.data_dir / "edgewatch.db-wal").stat().st_size
            if (agg.data_dir / "edgewatch.db-wal").exists()
            else 0
        )
    finally:
        agg.stop()
    scanned_after, in_files_after = scan_files(agg.data_dir, [*keep.values, CONTROL])
    figures["scanned_stopped_bytes"] = scanned_after
    log_hits = secrets_in(agg.log.read_bytes(), keep.values) if agg.log.exists() else []
    # the scanners' own test: a user name is stored in plain text, so each scan must find it
    found = [any(secret == CONTROL for _, secret in hits) for hits in (in_tables, in_files, in_files_after)]
    result.check(all(found), f"the scans do not find the plain-text control {CONTROL!r}: {found}")
    leaks = [
        f"{where}: {secret[:10]}..."
        for where, secret in in_tables + in_files + in_files_after
        if secret != CONTROL
    ]
    result.check(not leaks, f"secrets in plain text in the database or the data dir: {leaks[:4]}")
    result.check(not log_hits, f"{len(log_hits)} secrets in plain text in the aggregator's log")
    return result


def agent_tokens(
    result: Result,
    api: Any,
    good: str,
    doomed: str,
    admin: str,
    enrollment: str,
    enrollment_used: str,
) -> None:
    ident, _, secret = good.rpartition(".")
    wrong_secret = ident + "." + ("A" if secret[0] != "A" else "B") + secret[1:]
    cases = {
        "missing": None,
        "empty bearer": "",
        "malformed": "not-a-token",
        "wrong secret": wrong_secret,
        "unknown agent": "ewa_soak-nosuch." + secrets.token_urlsafe(32),
        "truncated": good[:-4],
        "an API token": admin,
        "an enrollment token": enrollment,
    }
    got: dict[str, list[int]] = {}
    for n, (case, token) in enumerate(cases.items()):
        headers = {"Content-Type": FRAME}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        source = f"127.0.1.{n + 1}"  # each case from its own address: under the wrong-token limit
        got[case] = [
            api(
                "POST", "/api/v1/push", push_frame("auth-a", 1), token=None, headers=headers, source=source
            ).status,
            api("GET", "/api/v1/agent/commands?wait=0", token=None, headers=headers, source=source).status,
            api(
                "POST",
                "/api/v1/agent/commands/soak-nosuch/result",
                {"state": "running"},
                token=None,
                headers=headers,
                source=source,
            ).status,
        ]
    bad = {case: codes for case, codes in got.items() if codes != [401, 401, 401]}
    result.figures["agent_token_cases"] = len(cases)
    result.check(not bad, f"bad agent tokens not answered 401 (push, poll, result): {bad}")
    frame = {"Content-Type": FRAME}
    valid = [
        api("POST", "/api/v1/push", push_frame("auth-a", 1), token=good, headers=frame).status,
        api("POST", "/api/v1/push", push_frame("auth-b", 1), token=doomed, headers=frame).status,
        api("GET", "/api/v1/agent/commands?wait=0", token=good).status,
    ]
    result.check(valid == [200, 200, 200], f"valid agent tokens were answered {valid}")
    # another agent's frame with this agent's token: the token says who pushes
    other = api("POST", "/api/v1/push", push_frame("auth-b", 2), token=good, headers=frame).status
    result.check(other == 403, f"a frame of another agent was answered {other}, not 403")
    revoke = api("DELETE", "/api/v1/agents/auth-b").status
    after = [
        api("POST", "/api/v1/push", push_frame("auth-b", 2), token=doomed, headers=frame).status,
        api("GET", "/api/v1/agent/commands?wait=0", token=doomed).status,
    ]
    result.figures["agent_revoked_api"] = {"revoke": revoke, "then": after}
    result.check(
        revoke == 200 and after == [401, 401], f"an agent revoked through the API: {revoke}, then {after}"
    )
    # the enrollment endpoint: its token is the credential, and it is used up
    unknown = "ewe_soaknosuch." + secrets.token_urlsafe(32)
    enroll = [
        api("POST", "/api/v1/enroll", {"token": enrollment_used, "name": "auth-x"}, token=None).status,
        api("POST", "/api/v1/enroll", {"token": unknown, "name": "auth-y"}, token=None).status,
    ]
    result.figures["enroll_refused"] = enroll
    result.check(
        enroll == [403, 403], f"a used and an unknown enrollment token were answered {enroll}, not 403"
    )


def cli_revocations(result: Result, agg: AggregatorProcess, api: Any, agent: str, token: str) -> None:
    """The admin CLI writes the database only: the aggregator's caches learn a revocation within 30 s."""
    frame = {"Content-Type": FRAME}
    seq = 0

    def pushed() -> int:
        nonlocal seq
        seq += 1
        return int(api("POST", "/api/v1/push", push_frame("auth-c", seq), token=agent, headers=frame).status)

    def read() -> int:
        return int(api("GET", "/api/v1/hosts", token=token).status)

    before = [pushed(), read()]  # both are in the caches now
    admin_cli(agg, "revoke-agent", "auth-c")
    admin_cli(agg, "revoke-token", token.removeprefix("ewt_").rpartition(".")[0])
    revoked = time.monotonic()
    took: dict[str, float | None] = {"agent": None, "api": None}
    while time.monotonic() - revoked < max(AUTH_TTL_S, TOKEN_TTL_S) + 15 and None in took.values():
        for what, probe in (("agent", pushed), ("api", read)):
            if took[what] is None and probe() == 401:
                took[what] = round(time.monotonic() - revoked, 1)
        time.sleep(0.5)
    result.figures["revoked_by_cli_s"] = took
    result.check(
        before == [200, 200]
        and took["agent"] is not None
        and took["agent"] <= AUTH_TTL_S + 3
        and took["api"] is not None
        and took["api"] <= TOKEN_TTL_S + 3,
        f"revoked with the admin CLI: worked before {before}, refused after {took} s (within 30 s)",
    )


def api_tokens(result: Result, api: Any, viewer: str, doomed: str) -> None:
    ident, _, secret = viewer.rpartition(".")
    cases = {
        "missing": None,
        "malformed": "nonsense",
        "wrong secret": ident + "." + ("A" if secret[0] != "A" else "B") + secret[1:],
        "unknown id": "ewt_soaknosuch." + secrets.token_urlsafe(32),
    }
    got = {case: api("GET", "/api/v1/hosts", token=token).status for case, token in cases.items()}
    result.check(all(code == 401 for code in got.values()), f"bad API tokens were answered {got}, not 401")
    before = api("GET", "/api/v1/hosts", token=doomed).status
    revoke = api("DELETE", f"/api/v1/tokens/{doomed.removeprefix('ewt_').rpartition('.')[0]}").status
    after = api("GET", "/api/v1/hosts", token=doomed).status
    result.figures["api_token_revoked"] = [before, revoke, after]
    result.check(
        [before, revoke, after] == [200, 200, 401], f"an API token revoked: {[before, revoke, after]}"
    )


def roles(
    result: Result,
    agg: AggregatorProcess,
    endpoints: list[Endpoint],
    admin: str,
    operator: str,
    viewer: str,
    agent: str,
    viewer_session: Session,
) -> None:
    tokens = {"viewer": viewer, "operator": operator, "admin": admin}
    no_auth: dict[str, int] = {}
    too_low: dict[str, int] = {}
    allowed: dict[str, int] = {}
    checked = 0
    for e in endpoints:
        if e.path == "/api/v1/live" or e.who not in (*RANK, "session", "agent"):
            continue
        body = {} if e.method in CHANGING else None
        headers = {"Content-Type": FRAME} if e.who == "agent" and e.method == "POST" else None
        checked += 1
        status = call(agg.url, e.method, e.url, body, headers=headers).status
        if status != 401:
            no_auth[str(e)] = status
        if e.who in RANK:
            for role, token in tokens.items():
                if RANK[role] < RANK[e.who]:
                    status = call(agg.url, e.method, e.url, body, token=token).status
                    if status != 403:
                        too_low[f"{e} as {role}"] = status
            if RANK["viewer"] < RANK[e.who]:
                hdr = viewer_session.headers(viewer_session.csrf, agg.url)
                status = call(agg.url, e.method, e.url, body, headers=hdr).status
                if status != 403:
                    too_low[f"{e} as a viewer's session"] = status
            least = tokens[e.who]
        else:
            least = agent if e.who == "agent" else admin
        if e.path == "/api/v1/logout" and e.who == "session":
            continue  # its positive control is the CSRF part's last request
        status = call(agg.url, e.method, e.url, body, token=least, headers=headers).status
        if status in (401, 403):
            allowed[f"{e} as {e.who}"] = status
    result.figures["roles_endpoints"] = checked
    result.figures["roles_state_changing"] = sum(1 for e in endpoints if e.method in CHANGING)
    rows = sum(
        1 for line in DOCS.read_text().splitlines() if re.match(r"\| (GET|POST|PUT|PATCH|DELETE) \|", line)
    )
    result.check(
        checked > 0 and len(endpoints) == rows,
        f"docs/api.md has {rows} endpoint rows, {len(endpoints)} were read",
    )
    result.check(not no_auth, f"endpoints answered without credentials (not 401): {no_auth}")
    result.check(not too_low, f"endpoints let a lower role through (not 403): {too_low}")
    result.check(not allowed, f"endpoints refused the role they document: {allowed}")


def _wrong(token: str) -> str:
    """``token`` with its first character changed (to "x", or to "y" when it is an "x" already)."""
    return ("y" if token[:1] == "x" else "x") + token[1:]


def csrf(result: Result, agg: AggregatorProcess, endpoints: list[Endpoint], admin_session: Session) -> None:
    s = admin_session
    passed: dict[str, list[int]] = {}
    refused: dict[str, int] = {}
    logout: Endpoint | None = None
    checked = 0
    for e in endpoints:
        if e.method not in CHANGING or e.who not in (*RANK, "session"):
            continue
        if e.path == "/api/v1/logout":
            logout = e
            continue
        checked += 1
        codes = [
            call(agg.url, e.method, e.url, {}, headers=s.headers()).status,
            call(agg.url, e.method, e.url, {}, headers=s.headers(_wrong(s.csrf))).status,
            call(agg.url, e.method, e.url, {}, headers=s.headers(s.csrf, FOREIGN)).status,
        ]
        if codes != [403, 403, 403]:
            passed[str(e)] = codes
        ok = call(agg.url, e.method, e.url, {}, headers=s.headers(s.csrf, agg.url)).status
        if ok in (401, 403):
            refused[str(e)] = ok
    foreign_login = call(
        agg.url, "POST", "/api/v1/login", {"username": "soak-admin", "password": PASSWORDS["soak-admin"]},
        headers={"Origin": FOREIGN},
    ).status  # fmt: skip
    out: list[int] = []
    if logout is not None:  # last: it ends the session
        out = [
            call(agg.url, "POST", "/api/v1/logout", None, headers=s.headers()).status,
            call(agg.url, "POST", "/api/v1/logout", None, headers=s.headers(s.csrf, FOREIGN)).status,
            call(agg.url, "POST", "/api/v1/logout", None, headers=s.headers(s.csrf, agg.url)).status,
            call(agg.url, "GET", "/api/v1/me", headers=s.headers()).status,
        ]
    result.figures["csrf_endpoints"] = checked + (logout is not None)
    result.check(checked > 0, "no state-changing session endpoints found in docs/api.md")
    result.check(
        not passed, f"session requests without the CSRF token or from a foreign origin got through: {passed}"
    )
    result.check(not refused, f"session requests with the CSRF token and own origin were refused: {refused}")
    result.check(foreign_login == 403, f"a sign-in from a foreign origin was answered {foreign_login}")
    result.check(out == [403, 403, 200, 401], f"logout without CSRF, foreign, right, then /me: {out}")


def limits(result: Result, agg: AggregatorProcess, agent: str) -> None:
    user, password = "soak-viewer", PASSWORDS["soak-viewer"]
    a, b, c = "127.0.0.2", "127.0.0.3", "127.0.0.4"
    one_user = [login(agg, user, "wrong " + str(i), source=a)[0].status for i in range(5)]
    blocked, _ = login(agg, user, password, source=a)
    elsewhere = login(agg, user, password, source=b)[0].status
    many_users = [login(agg, f"nobody-{i}", "wrong", source=c)[0].status for i in range(5)]
    address_blocked, _ = login(agg, user, password, source=c)
    retry_after = blocked.headers.get("retry-after", "")
    result.figures["login_limit"] = {
        "one_user": [*one_user, blocked.status],
        "retry_after": retry_after,
        "other_address": elsewhere,
        "many_users": [*many_users, address_blocked.status],
    }
    result.check(
        one_user == [401] * 5
        and blocked.status == 429
        and retry_after.isdigit()
        and 0 < int(retry_after) <= 900,
        f"5 failed sign-ins, then the right one: {one_user}, {blocked.status}, Retry-After {retry_after!r}",
    )
    result.check(elsewhere == 200, f"the limit locked the user out from another address too ({elsewhere})")
    result.check(
        many_users == [401] * 5 and address_blocked.status == 429,
        f"5 user names failed from one address, then a good sign-in: {many_users}, {address_blocked.status}",
    )
    # wrong agent tokens from one address: 401 up to the limit, then 429; a known agent still pushes
    ident = agent.rpartition(".")[0]
    wrong = [
        call(agg.url, "POST", "/api/v1/push", push_frame("auth-a", 1), headers={"Content-Type": FRAME},
             token=f"{ident}.{secrets.token_urlsafe(32)}", source=c)
        for _ in range(AGENT_MAX_FAILURES + 5)
    ]  # fmt: skip
    codes = [r.status for r in wrong]
    known = call(
        agg.url, "POST", "/api/v1/push", push_frame("auth-a", 2), headers={"Content-Type": FRAME},
        token=agent, source=c,
    ).status  # fmt: skip
    other = call(
        agg.url, "POST", "/api/v1/push", push_frame("auth-a", 3), headers={"Content-Type": FRAME},
        token=f"{ident}.{secrets.token_urlsafe(32)}", source=b,
    ).status  # fmt: skip
    retry = wrong[-1].headers.get("retry-after", "")
    result.figures["agent_token_failures"] = {
        "tries": len(codes),
        "401": codes.count(401),
        "429": codes.count(429),
        "retry_after": retry,
        "known_agent_same_address": known,
        "wrong_token_other_address": other,
    }
    result.check(
        codes == [401] * AGENT_MAX_FAILURES + [429] * 5 and retry.isdigit() and 0 < int(retry) <= 60,
        f"{len(codes)} wrong agent tokens from one address: {codes}, Retry-After {retry!r}",
    )
    result.check(known == 200, f"a known agent behind the limited address was answered {known}")
    result.check(other == 401, f"a wrong agent token from another address was answered {other}, not 401")
