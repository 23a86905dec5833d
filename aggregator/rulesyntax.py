"""The two small syntaxes inside an alert rule: label matchers and annotation templates.

A matcher value is ``"v"`` (equal), ``"!v"`` (not equal), ``"~re"`` (the regular expression is found
in the value, ``re.search``), ``"!~re"`` (it is not) or ``"=v"`` (equal, for values that start with
``!``, ``~`` or ``=``). A missing label counts as the empty string, as in Prometheus.

A template is ``str.format`` syntax, but ``Template`` substitutes the named fields itself instead of
calling ``format`` on objects: only ``TEMPLATE_FIELDS`` and ``labels.NAME`` exist, there is no
attribute or item access and no conversion, and only the numbers (``value``, ``threshold``) take a
format spec, a plain numeric one with at most two width and two precision digits (``{value:.1f}``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

TEMPLATE_FIELDS = ("value", "threshold", "host", "level", "severity", "rule")
NUMERIC_FIELDS = ("value", "threshold")
LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")
_SPEC_RE = re.compile(r"[<>^]?[+\- ]?#?0?\d{0,2}[,_]?(?:\.\d{1,2})?[eEfFgG%]?")


@dataclass(frozen=True)
class Matcher:
    """One label matcher: ``=`` exact, ``!=`` not equal, ``=~`` regex found, ``!~`` regex not found."""

    name: str
    op: str
    value: str
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, name: str, text: str) -> Matcher:
        """``"v"`` or ``"=v"`` equal, ``"!v"`` not equal, ``"~re"`` matches, ``"!~re"`` does not."""
        prefix = next((p for p in ("!~", "!", "~", "=") if text.startswith(p)), "")
        op, value = {"!~": "!~", "!": "!=", "~": "=~"}.get(prefix, "="), text[len(prefix) :]
        try:
            pattern = re.compile(value) if op in ("=~", "!~") else None
        except re.error as exc:
            raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
        return cls(name, op, value, pattern)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """A missing label counts as the empty string (as in Prometheus)."""
        actual = labels.get(self.name, "")
        if self.pattern is not None:
            return (self.pattern.search(actual) is not None) == (self.op == "=~")
        return (actual == self.value) == (self.op == "=")


@dataclass(frozen=True)
class Template:
    """A ``str.format``-like template that only substitutes ``TEMPLATE_FIELDS`` and ``labels.NAME``."""

    text: str
    parts: tuple[tuple[str, str | None, str], ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Template:
        parts: list[tuple[str, str | None, str]] = []
        for literal, name, raw_spec, conversion in string.Formatter().parse(text):  # ValueError on bad braces
            if name is None:
                parts.append((literal, None, ""))
                continue
            label = name.startswith("labels.") and LABEL_RE.fullmatch(name[7:]) is not None
            if name not in TEMPLATE_FIELDS and not label:
                known = ", ".join(f"{{{f}}}" for f in TEMPLATE_FIELDS)
                raise ValueError(f"{{{name}}} is unknown; use {known} or {{labels.NAME}}")
            if conversion:
                raise ValueError(f"{{{name}!{conversion}}}: conversions are not allowed")
            spec = raw_spec or ""
            if spec and (name not in NUMERIC_FIELDS or not _SPEC_RE.fullmatch(spec)):
                raise ValueError(
                    f"{{{name}:{spec}}}: only value and threshold take a format, like {{value:.1f}}"
                )
            parts.append((literal, name, spec))
        return cls(text, tuple(parts))

    def render(
        self,
        *,
        value: float | None = None,
        threshold: float | None = None,
        host: str = "",
        level: str = "",
        severity: str = "",
        rule: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> str:
        """The text with the fields filled in; a missing number shows as ``n/a``, a missing label as ""."""
        numbers = {"value": value, "threshold": threshold}
        texts = {"host": host, "level": level, "severity": severity, "rule": rule}
        out: list[str] = []
        for literal, name, spec in self.parts:
            out.append(literal)
            if name is None:
                continue
            if name.startswith("labels."):
                out.append((labels or {}).get(name[7:], ""))
            elif name in numbers:
                number = numbers[name]
                out.append("n/a" if number is None else format(float(number), spec))
            else:
                out.append(texts[name])
        return "".join(out)
