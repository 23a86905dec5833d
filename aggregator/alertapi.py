"""The alerts API: active alerts and their history, ack, and the rules with their state.

Reading needs the viewer role, acking the operator role, reloading rules the admin role. Every
ack and reload is written to the audit log and the alert's history with who did it.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from . import accounts
from .alertengine import Engine, log_event, persist
from .alertstate import AlertState, render_annotations
from .api import API, caller, requires
from .ingest import INGEST, error
from .jsonout import json_response
from .rules import RuleError, RuleSet, load_rules

LEVEL_RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}
RULE_SWITCHES = "rules.switched"  # kv: {rule name: enabled} set through the API, over the rules file


@dataclass
class Alerting:
    engine: Engine
    rules_file: Path
    on_ack: Callable[[str], None] = lambda fingerprint: None
    reloads: int = 0
    last_error: str = ""  # why the last reload was refused ("" when it was not)
    switches: dict[str, bool] = field(default_factory=dict)  # rule -> enabled, set through the API

    def load_file(self) -> RuleSet:
        """The rules file with the switches made through the API applied."""
        return switched(self.load_rules_file(self.rules_file), self.switches)

    def apply_switches(self, switches: dict[str, bool], now_ms: int) -> int:
        """Switch rules on or off now (the file is not read again); how many alerts were retired."""
        self.switches = dict(switches)
        return self.engine.reload(switched(self.engine.rules, self.switches), now_ms)

    @staticmethod
    def load_rules_file(path: Path) -> RuleSet:
        """The rules of ``path`` (the defaults alone when it does not exist); ``RuleError``."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError(f"rules file {path} cannot be read: {exc}") from None
        return load_rules(text)

    def reload(self, now_ms: int) -> tuple[int, int]:
        """Load the rules file again; a bad file raises ``RuleError`` and the running rules stay."""
        rules = self.load_file()
        retired = self.engine.reload(rules, now_ms)
        self.reloads += 1
        return len(rules), retired


ALERTING = web.AppKey("alerting", Alerting)


def switched(rules: RuleSet, switches: dict[str, bool]) -> RuleSet:
    """``rules`` with each rule named in ``switches`` enabled or disabled as it says."""
    changed = tuple(
        dataclasses.replace(r, enabled=switches[r.name]) if r.name in switches else r for r in rules
    )
    return RuleSet(changed, rules.groups)


def alert_json(state: AlertState, engine: Engine) -> dict[str, Any]:
    """An alert for the API: its state, host, severity, and the rule's summary and description."""
    rule = engine.rules.get(state.rule)
    severity = rule.severity_of(state.level) if rule else (state.level or "")
    text = render_annotations(rule, state) if rule else {"summary": state.rule, "description": ""}
    out = {**state.to_dict(), "host": state.labels.get("host", ""), "severity": severity, **text}
    if rule is not None:
        out["metric"] = rule.metric
    return out


def _matches(item: dict[str, Any], query: Any) -> bool:
    level = query.get("level")
    if level and LEVEL_RANK.get(item["severity"], -1) < LEVEL_RANK.get(level, 99):
        return False
    return all(not query.get(k) or item[k] == query.get(k) for k in ("host", "rule"))


@requires("viewer")
async def alerts(request: web.Request) -> web.StreamResponse:
    """Alerts: active (pending and firing) by default; ``state``, ``level`` (at least), ``host``, ``rule``."""
    al = request.app[ALERTING]
    q = request.query
    state = q.get("state", "active")
    if state not in ("active", "pending", "firing", "resolved", "all"):
        return error(400, f"state={state!r} is unknown; use active, pending, firing, resolved or all")
    if q.get("level") and q["level"] not in LEVEL_RANK:
        return error(400, f"level={q['level']!r} is unknown; use info, warning, error or critical")
    host, rule = q.get("host"), q.get("rule")

    def wanted(s: AlertState) -> bool:  # before alert_json: rendering 1,000 summaries to keep 2 is slow
        return (not host or s.labels.get("host", "") == host) and (not rule or s.rule == rule)

    items = [alert_json(s, al.engine) for s in al.engine.active() if wanted(s)]
    if state in ("resolved", "all"):

        def stored(conn: sqlite3.Connection) -> list[str]:
            return [
                r[0] for r in conn.execute("SELECT state FROM alerts WHERE status = 'resolved' LIMIT 10000")
            ]

        rows = await request.app[INGEST].store.readers.run(stored)
        olds = (AlertState.from_dict(json.loads(t)) for t in rows)
        resolved = [alert_json(s, al.engine) for s in olds if wanted(s)]
        items = resolved if state == "resolved" else items + resolved
    elif state != "active":
        items = [i for i in items if i["state"] == state]
    items = [i for i in items if _matches(i, q)]
    items.sort(key=lambda i: (-LEVEL_RANK.get(i["severity"], 0), i["host"], i["rule"]))
    return json_response({"alerts": items})


@requires("viewer")
async def alert(request: web.Request) -> web.StreamResponse:
    """One alert by fingerprint: active, or as it was last stored."""
    al, fp = request.app[ALERTING], request.match_info["fingerprint"]
    state = al.engine.states.get(fp)
    if state is None:
        row = await request.app[INGEST].store.readers.run(
            lambda conn: conn.execute("SELECT state FROM alerts WHERE fingerprint = ?", (fp,)).fetchone()
        )
        if row is None:
            return error(404, f"no alert has the fingerprint {fp!r}; see /api/v1/alerts")
        state = AlertState.from_dict(json.loads(row[0]))
    return json_response({"alert": alert_json(state, al.engine)})


@requires("viewer")
async def history(request: web.Request) -> web.StreamResponse:
    """Transitions, notifications, deliveries, acks; by ``fingerprint``, ``host``, ``rule``, ``kind``."""
    q = request.query
    where, params = [], []
    for key in ("fingerprint", "host", "rule", "kind"):
        if q.get(key):
            where.append(f"{key} = ?")
            params.append(q[key])
    try:
        limit = min(int(q.get("limit", "500")), 10_000)
    except ValueError:
        return error(400, "limit must be a whole number")
    sql = "SELECT fingerprint, rule, host, at, kind, level, detail FROM alert_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"

    def work(conn: sqlite3.Connection) -> list[Any]:
        return conn.execute(sql, (*params, limit)).fetchall()

    rows = await request.app[INGEST].store.readers.run(work)
    keys = ("fingerprint", "rule", "host", "at", "kind", "level")
    return json_response({"history": [{**dict(zip(keys, r[:6])), "detail": json.loads(r[6])} for r in rows]})


@requires("operator")
async def ack(request: web.Request) -> web.StreamResponse:
    """Acknowledge a firing alert with a comment: no more repeats or escalation for it."""
    al = request.app[ALERTING]
    fp = request.match_info["fingerprint"]
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("comment", ""), str):
        return error(400, 'send a JSON object like {"comment": "looking into it"}')
    state = al.engine.states.get(fp)
    if state is None or state.state != "firing":
        return error(404, f"no firing alert has the fingerprint {fp!r}; see /api/v1/alerts")
    who = await caller(request)
    actor = who.actor if who else "unknown"
    now = request.app[API].now_ms()
    comment = str(body.get("comment", ""))[:1000]
    acked = dataclasses.replace(state, acked_by=actor, acked_at=now, ack_comment=comment)
    al.engine.states[fp] = acked

    def write(conn: sqlite3.Connection) -> None:
        persist(conn, [(acked, [])])
        log_event(conn, acked, now, "ack", level=acked.level, detail={"by": actor, "comment": comment})
        accounts.audit(conn, now, actor, "ack", fingerprint=fp, rule=acked.rule, comment=comment)

    await request.app[INGEST].store.write(write)
    al.on_ack(fp)
    return json_response({"alert": alert_json(acked, al.engine)})


@requires("viewer")
async def rules(request: web.Request) -> web.StreamResponse:
    """The rules in force, each with how many of its alerts are pending and firing."""
    al = request.app[ALERTING]
    counts: dict[str, dict[str, int]] = {}
    for s in al.engine.active():
        c = counts.setdefault(s.rule, {"pending": 0, "firing": 0})
        c[s.state] += 1
    out = []
    for rule in al.engine.rules:
        out.append(
            {
                "name": rule.name,
                "kind": rule.kind,
                "enabled": rule.enabled,
                "metric": rule.metric,
                "reducer": rule.reducer,
                "window_s": rule.window_s,
                "op": rule.op,
                "warning": rule.warning,
                "critical": rule.critical,
                "clear": rule.clear,
                "for_s": rule.for_s,
                "severity": dict(rule.severity),
                "alerts": counts.get(rule.name, {"pending": 0, "firing": 0}),
            }
        )
    return json_response(
        {"rules": out, "file": str(al.rules_file), "reloads": al.reloads, "last_error": al.last_error}
    )


@requires("admin")
async def reload(request: web.Request) -> web.StreamResponse:
    """Read the rules file again; a bad rule is a 400 naming it, and the running rules stay."""
    al = request.app[ALERTING]
    now = request.app[API].now_ms()
    try:
        count, retired = al.reload(now)
        al.last_error = ""
    except RuleError as exc:
        al.last_error = str(exc)
        return error(400, f"{exc}; the running rules stay in force")
    who = await caller(request)
    actor = who.actor if who else "unknown"
    await request.app[INGEST].store.write(
        lambda conn: accounts.audit(conn, now, actor, "reload-rules", rules=count, retired=retired)
    )
    await al.engine.flush()
    return json_response({"rules": count, "retired": retired})
