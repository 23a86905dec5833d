"""Alert rules as data: parsed from TOML, checked whole, then swapped in as one ``RuleSet``.

``load_rules(text)`` reads ``[[rule]]`` tables, a ``[groups]`` table (group name -> host globs) and a
``[defaults]`` table that turns built-in rules off or overrides their fields. Every problem is a
``RuleError`` of one line naming the rule and the field (``rule cpu_high: warning: must be a
number``); nothing is returned unless every rule is valid, so a bad file never replaces the running
set. The fields, their types and defaults are the ``FIELDS`` table, which docs/rules.md lists too.
Label matchers and templates are in ``rulesyntax``, the built-in rules in ``ruledefaults``.
No I/O, no clock.
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from edgewatch.protocol.settings import parse_duration

from .reducers import REDUCERS
from .ruledefaults import BUILTIN_RULES
from .rulesyntax import LABEL_RE, Matcher, Template

__all__ = [
    "BUILTIN_RULES",
    "FIELDS",
    "Matcher",
    "Rule",
    "RuleError",
    "RuleSet",
    "Template",
    "load_rules",
    "parse_rule",
]


class RuleError(ValueError):
    """A rule file problem, as one line: ``rule NAME: FIELD: what is wrong``."""


SEVERITIES = ("info", "warning", "error", "critical")
LEVELS = ("warning", "critical")  # threshold levels, least severe first
KINDS = ("threshold", "absence")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_METRIC_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,199}")


class Field(NamedTuple):
    key: str
    kind: str  # as docs/rules.md names it
    default: Any
    help: str


FIELDS = (
    Field("name", "str", "", "Unique id of the rule: letters, digits, `_ . : -` (required)."),
    Field("kind", "threshold or absence", "threshold", "`absence`: the value is intervals without a push."),
    Field("enabled", "bool", True, "`false` keeps the rule listed but never evaluated."),
    Field("metric", "str", "", "Series name to read (required unless kind is absence)."),
    Field("labels", "table of str", {}, 'Label matchers: `"v"`, `"!v"`, `"~re"`, `"!~re"`, `"=v"`.'),
    Field(
        "hosts", "list of str", [], "Host names or globs (`web-*`); empty with `groups` empty: every host."
    ),
    Field("groups", "list of str", [], "Names of `[groups]` entries whose hosts the rule also selects."),
    Field("reducer", "one of " + ", ".join(REDUCERS), "last", "How the window's samples become one value."),
    Field("window", "duration", 300.0, "How far back the reducer looks."),
    Field("predict_in", "duration", 0.0, "For `predict`: how far ahead to extrapolate (required there)."),
    Field(
        "baseline_days", "int (1 to 90)", 7, "For `zscore`: previous days whose same hour is the baseline."
    ),
    Field("divide_by", "str", "", "A second metric; the value is metric / divide_by, both reduced alike."),
    Field("op", "one of >, >=, <, <=", ">", "Comparison of the value with the thresholds."),
    Field("warning", "number", None, "Threshold of the warning level."),
    Field("critical", "number", None, "Threshold of the critical level (at least one of the two)."),
    Field("clear", "number", None, "A firing alert resolves only past this; default: the lowest threshold."),
    Field("for", "duration", 0.0, "How long the condition must hold before the alert fires."),
    Field("severity", "str or table", {}, 'Severity per level: `{ warning = "warning", critical = ... }`.'),
    Field("labels_add", "table of str", {}, "Extra labels on the alert (they win over the series' labels)."),
    Field("summary", "template", "{rule} on {host}: {value:.4g}", "One line for notifications."),
    Field("description", "template", "", "Longer text; same fields as `summary`."),
)
_BY_KEY = {f.key: f for f in FIELDS}


@dataclass(frozen=True)
class Rule:
    """One validated rule. Durations are seconds; ``clear`` is always set after loading."""

    name: str
    kind: str = "threshold"
    enabled: bool = True
    metric: str = ""
    labels: tuple[Matcher, ...] = ()
    hosts: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    host_patterns: tuple[str, ...] = ()  # hosts plus the globs of the groups, resolved at load
    reducer: str = "last"
    window_s: float = 300.0
    predict_in_s: float = 0.0
    baseline_days: int = 7
    divide_by: str = ""
    op: str = ">"
    warning: float | None = None
    critical: float | None = None
    clear: float | None = None
    for_s: float = 0.0
    severity: Mapping[str, str] = field(default_factory=dict)
    labels_add: Mapping[str, str] = field(default_factory=dict)
    summary: Template = field(default_factory=lambda: Template.parse(_BY_KEY["summary"].default))
    description: Template = field(default_factory=lambda: Template.parse(""))

    @property
    def thresholds(self) -> list[tuple[str, float]]:
        """``(level, threshold)`` of the levels this rule has, least severe first."""
        pairs = (("warning", self.warning), ("critical", self.critical))
        return [(level, t) for level, t in pairs if t is not None]

    @property
    def metrics(self) -> tuple[str, ...]:
        """The series names this rule reads (evaluate it when one of them arrives)."""
        return tuple(m for m in (self.metric, self.divide_by) if m)

    def level_for(self, value: float) -> str | None:
        """The most severe level whose threshold ``value`` is past, or ``None``."""
        compare = OPS[self.op]
        return next((lv for lv, t in reversed(self.thresholds) if compare(value, t)), None)

    def holds(self, value: float) -> bool:
        """Whether a firing alert stays firing: ``value`` is still past ``clear`` (hysteresis)."""
        return self.clear is not None and OPS[self.op](value, self.clear)

    def threshold_of(self, level: str | None) -> float | None:
        return dict(self.thresholds).get(level or "")

    def severity_of(self, level: str | None) -> str:
        return self.severity.get(level or "", level or "warning")

    def selects_host(self, host: str) -> bool:
        return not self.host_patterns or any(fnmatch.fnmatchcase(host, p) for p in self.host_patterns)

    def selects(self, metric: str, host: str, labels: Mapping[str, str]) -> bool:
        """Whether the series ``metric{labels}`` of ``host`` is one this rule alerts on."""
        return (
            metric == self.metric and self.selects_host(host) and all(m.matches(labels) for m in self.labels)
        )

    def alert_labels(self, host: str, series_labels: Mapping[str, str]) -> dict[str, str]:
        """The alert's label set: the series' labels, ``host``, then ``labels_add``."""
        return {**series_labels, "host": host, **self.labels_add}


class RuleSet:
    """The rules of one load, with an index by metric; immutable once built."""

    def __init__(self, rules: tuple[Rule, ...], groups: Mapping[str, tuple[str, ...]]) -> None:
        self.rules = rules
        self.groups = dict(groups)
        self._by_name = {r.name: r for r in rules}
        self._by_metric: dict[str, list[Rule]] = {}
        for rule in rules:
            if rule.enabled and rule.kind == "threshold":
                for metric in rule.metrics:
                    self._by_metric.setdefault(metric, []).append(rule)
        self.absence = tuple(r for r in rules if r.enabled and r.kind == "absence")

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, name: str) -> Rule | None:
        return self._by_name.get(name)

    def for_metric(self, metric: str) -> tuple[Rule, ...]:
        """Enabled threshold rules that read ``metric`` (as ``metric`` or ``divide_by``)."""
        return tuple(self._by_metric.get(metric, ()))


def _convert(f: Field, raw: Any) -> Any:
    """``raw`` as field ``f``'s kind, or ``ValueError`` with what to write instead."""
    kind = f.kind
    if kind in ("str", "template") or kind.startswith("one of") or kind == "threshold or absence":
        if not isinstance(raw, str):
            raise ValueError("must be a string in quotes")
        if kind == "template":
            return Template.parse(raw)
        choices = kind[7:].split(", ") if kind.startswith("one of") else KINDS
        if kind != "str" and raw not in choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(choices)}")
        return raw
    if kind == "bool":
        if not isinstance(raw, bool):
            raise ValueError("must be true or false")
        return raw
    if kind in ("number", "duration") or kind.startswith("int"):
        if kind == "duration" and isinstance(raw, str):
            raw = parse_duration(raw)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise ValueError(
                "must be a duration like 30s, 5m, 24h" if kind == "duration" else "must be a number"
            )
        if kind == "duration" and raw < 0:
            raise ValueError("must not be negative")
        if kind.startswith("int") and (raw != int(raw) or not 1 <= raw <= 90):
            raise ValueError("must be a whole number from 1 to 90")
        return int(raw) if kind.startswith("int") else float(raw)
    if kind == "list of str":
        if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
            raise ValueError('must be a list of strings, e.g. ["web-*"]')
        return tuple(raw)
    # "table of str" and "str or table" (severity)
    if kind == "str or table" and isinstance(raw, str):
        raw = dict.fromkeys(LEVELS, raw)
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ValueError('must be a table of strings, e.g. { name = "value" }')
    for key in raw:
        if not LABEL_RE.fullmatch(key):
            raise ValueError(f"{key!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return dict(raw)


def parse_rule(raw: Any, groups: Mapping[str, tuple[str, ...]], where: str = "rule") -> Rule:
    """One ``[[rule]]`` table as a ``Rule``; ``RuleError`` names the rule and the field."""
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: must be a table ([[rule]])")
    name = raw.get("name")
    who = f"rule {name}" if isinstance(name, str) and name else where

    def fail(key: str, message: str) -> RuleError:
        return RuleError(f"{who}: {key}: {message}")

    for key in raw:
        if key not in _BY_KEY:
            raise fail(key, "unknown field; the fields are listed in docs/rules.md")
    if raw.get("kind") == "absence":
        raw = {"op": ">=", **raw}
        if "warning" not in raw and "critical" not in raw:
            raw["critical"] = 3
    values: dict[str, Any] = {}
    for f in FIELDS:
        if f.key not in raw and f.default is None:  # warning, critical, clear
            values[f.key] = None
            continue
        try:
            values[f.key] = _convert(f, raw.get(f.key, f.default))
        except ValueError as exc:
            raise fail(f.key, str(exc)) from None
    if not _NAME_RE.fullmatch(values["name"]):
        raise fail("name", "must be 1-64 letters, digits, '_', '.', ':' or '-'")
    for key in ("metric", "divide_by"):
        if values[key] and not _METRIC_RE.fullmatch(values[key]):
            raise fail(key, f"{values[key]!r} is not a metric name")
    if values["kind"] == "threshold" and not values["metric"]:
        raise fail("metric", "must be set (the series name to read)")
    try:
        matchers = tuple(Matcher.parse(k, v) for k, v in values["labels"].items())
    except ValueError as exc:
        raise fail("labels", str(exc)) from None
    patterns = list(values["hosts"])
    for group in values["groups"]:
        if group not in groups:
            raise fail("groups", f"unknown group {group!r}; define it in the [groups] table")
        patterns += groups[group]
    if values["reducer"] == "predict" and values["predict_in"] <= 0:
        raise fail("predict_in", "must be set to a duration above 0 for reducer predict")
    if values["window"] <= 0:
        raise fail("window", "must be above 0")
    warning, critical, op = values["warning"], values["critical"], values["op"]
    if warning is None and critical is None:
        raise fail("warning", "set warning, critical or both")
    past = operator.gt if op.startswith(">") else operator.lt  # strictly more severe than
    side = "below" if op.startswith(">") else "above"
    if warning is not None and critical is not None and past(warning, critical):
        raise fail("critical", f"must not be {side} warning ({warning:g}) with op {op}")
    lowest = warning if warning is not None else critical
    clear = lowest if values["clear"] is None else values["clear"]
    if past(clear, lowest):
        raise fail("clear", f"must not be past the lowest threshold ({lowest:g}) with op {op}")
    for level, severity in values["severity"].items():
        if level not in LEVELS:
            raise fail("severity", f"{level!r} is not a level; use warning or critical")
        if severity not in SEVERITIES:
            raise fail("severity", f"{severity!r} is not one of {', '.join(SEVERITIES)}")
    return Rule(
        name=values["name"],
        kind=values["kind"],
        enabled=values["enabled"],
        metric=values["metric"],
        labels=matchers,
        hosts=values["hosts"],
        groups=values["groups"],
        host_patterns=tuple(patterns),
        reducer=values["reducer"],
        window_s=values["window"],
        predict_in_s=values["predict_in"],
        baseline_days=values["baseline_days"],
        divide_by=values["divide_by"],
        op=op,
        warning=warning,
        critical=critical,
        clear=clear,
        for_s=values["for"],
        severity={**dict(zip(LEVELS, LEVELS)), **values["severity"]},
        labels_add=values["labels_add"],
        summary=values["summary"],
        description=values["description"],
    )


def _groups(raw: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise RuleError('groups: must be a table like [groups] web = ["web-*"]')
    for name, hosts in raw.items():
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
            raise RuleError(f"groups: {name}: must be a list of host names or globs")
    return {name: tuple(hosts) for name, hosts in raw.items()}


def _builtins(raw: Any, builtins: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The built-in rule tables after ``[defaults]``: ``disabled = [...]`` and per-rule overrides."""
    if not isinstance(raw, dict):
        raise RuleError("defaults: must be a table ([defaults])")
    known = ", ".join(builtins)
    disabled = raw.get("disabled", [])
    if not isinstance(disabled, list) or not all(isinstance(x, str) for x in disabled):
        raise RuleError('defaults: disabled: must be a list of built-in rule names, e.g. ["swap_used"]')
    for name in [*disabled, *(k for k in raw if k != "disabled")]:
        if name not in builtins:
            raise RuleError(f"defaults: {name}: not a built-in rule; use one of {known}")
    out = []
    for name, table in builtins.items():
        override = raw.get(name, {})
        if not isinstance(override, dict):
            raise RuleError(f"rule {name}: must be a table ([defaults.{name}])")
        if override.get("name", name) != name:
            raise RuleError(f"rule {name}: name: a built-in rule cannot be renamed; copy it into [[rule]]")
        merged = {**table, **override}
        if name in disabled:
            merged["enabled"] = False
        out.append(merged)
    return out


def load_rules(
    text: str | Mapping[str, Any], defaults: Mapping[str, Mapping[str, Any]] = BUILTIN_RULES
) -> RuleSet:
    """Every rule of a TOML text (or its parsed tables) plus the built-in ``defaults``, all validated.

    Raises ``RuleError`` (one line) at the first problem; the caller keeps its previous ``RuleSet``.
    Pass ``defaults={}`` for no built-in rules.
    """
    if isinstance(text, str):
        try:
            data: Mapping[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RuleError(f"rules: not valid TOML: {exc}") from None
    else:
        data = text
    for key in data:
        if key not in ("rule", "groups", "defaults"):
            raise RuleError(f"rules: {key}: unknown table; use [[rule]], [groups] and [defaults]")
    groups = _groups(data.get("groups", {}))
    tables = data.get("rule", [])
    if not isinstance(tables, list):
        raise RuleError("rules: rule: write each rule as a [[rule]] table")
    builtin = [
        parse_rule(t, groups, f"rule {t['name']}") for t in _builtins(data.get("defaults", {}), defaults)
    ]
    rules = list(builtin)
    seen = {r.name for r in rules}
    for i, table in enumerate(tables, 1):
        rule = parse_rule(table, groups, f"rule #{i}")
        if rule.name in seen:
            hint = (
                f"change it with [defaults.{rule.name}]" if rule.name in defaults else "names must be unique"
            )
            raise RuleError(f"rule {rule.name}: name: used twice; {hint}")
        seen.add(rule.name)
        rules.append(rule)
    return RuleSet(tuple(rules), groups)
