"""A parser for the Prometheus text exposition format, version 0.0.4.

``parse(text)`` gives one ``(name, labels, value, type)`` tuple per sample line, ``type`` being the
family's ``# TYPE`` (``counter``, ``gauge``, ``histogram``, ``summary``) or ``untyped``. Histogram
and summary lines (``_bucket``, ``_sum``, ``_count``, quantiles) stay separate series, typed by their
family. Timestamps are checked and dropped: the agent stamps samples with its own tick. A malformed
line raises ``ValueError`` naming its line number, so a half-written file is never half-read.

``samples(text)`` is the same, lazily: a caller with a cap stops reading where the cap is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

PromSample = tuple[str, dict[str, str], float, str]

TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_FAMILY_SUFFIXES = {
    "_bucket": ("histogram",),
    "_sum": ("histogram", "summary"),
    "_count": ("histogram", "summary"),
}

_METRIC = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_METRIC_RE = re.compile(_METRIC)
_SIMPLE_RE = re.compile(rf"({_METRIC})[ \t]+(\S+)(?:[ \t]+(\S+))?[ \t]*")
_NAME_RE = re.compile(rf"({_METRIC})[ \t]*\{{")
_LABEL_RE = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"[ \t]*(,|(?=\}))')
_LABELS_END_RE = re.compile(r"[ \t]*\}[ \t]*(\S+)(?:[ \t]+(\S+))?[ \t]*")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_TIMESTAMP_RE = re.compile(r"-?\d+")
_ESCAPE_RE = re.compile(r"\\(.)")
_SPECIAL = {"nan": math.nan, "+inf": math.inf, "inf": math.inf, "-inf": -math.inf}
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


def parse(text: str, *, max_series: int = 10_000) -> list[PromSample]:
    """Every sample of ``text``; more than ``max_series`` samples is an error, as is a malformed line."""
    out: list[PromSample] = []
    for sample in samples(text):
        if len(out) >= max_series:
            raise ValueError(f"the exposition has more than {max_series} series; expose fewer")
        out.append(sample)
    return out


def samples(text: str) -> Iterator[PromSample]:
    """The samples of ``text`` one by one, raising ``ValueError`` at the first malformed line."""
    types: dict[str, str] = {}
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        stripped = line.strip(" \t")
        if not stripped:
            continue
        try:
            if stripped[0] == "#":
                _comment(stripped, types)
                continue
            yield _sample(stripped, types)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}: {line[:120]!r}") from None


def _comment(line: str, types: dict[str, str]) -> None:
    parts = line[1:].split(None, 3)
    if len(parts) < 2 or parts[0] not in ("HELP", "TYPE"):
        return  # an ordinary comment
    keyword, name = parts[0], parts[1]
    if not _METRIC_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid metric name")
    if keyword == "TYPE":
        kind = parts[2] if len(parts) > 2 else ""
        if len(parts) > 3 or kind not in TYPES:
            raise ValueError(f"unknown metric type {kind!r}; use one of {', '.join(sorted(TYPES))}")
        if name in types:
            raise ValueError(f"a second TYPE line for {name}")
        types[name] = kind


def _sample(line: str, types: dict[str, str]) -> PromSample:
    labels: dict[str, str] = {}
    simple = _SIMPLE_RE.fullmatch(line)
    if simple:
        name, value, timestamp = simple.groups()
    else:
        head = _NAME_RE.match(line)
        if head is None:
            raise ValueError(
                "expected a metric name, optional labels in braces, a value and an optional timestamp"
            )
        name = head[1]
        pos = head.end()
        while True:
            label = _LABEL_RE.match(line, pos)
            if label is None:
                break
            key = label[1]
            if key in labels:
                raise ValueError(f"label {key!r} is given twice")
            labels[key] = _unescape(label[2])
            pos = label.end()
        tail = _LABELS_END_RE.fullmatch(line, pos)
        if tail is None:
            raise ValueError(
                'expected label="value" pairs separated by commas, then a closing brace and a value'
            )
        value, timestamp = tail.groups()
    if timestamp is not None and not _TIMESTAMP_RE.fullmatch(timestamp):
        raise ValueError(f"the timestamp {timestamp!r} is not a whole number of milliseconds")
    return name, labels, _value(value), _type_of(name, types)


def _value(text: str) -> float:
    if _FLOAT_RE.fullmatch(text):
        return float(text)
    special = _SPECIAL.get(text.lower())
    if special is None:
        raise ValueError(f"the value {text!r} is not a number")
    return special


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        char = _UNESCAPE.get(match[1])
        if char is None:
            raise ValueError(f'invalid escape \\{match[1]} in a label value; use \\\\, \\" or \\n')
        return char

    return _ESCAPE_RE.sub(one, text)


def _type_of(name: str, types: dict[str, str]) -> str:
    kind = types.get(name)
    if kind is not None:
        return kind
    for suffix, families in _FAMILY_SUFFIXES.items():
        if name.endswith(suffix):
            family = types.get(name[: -len(suffix)])
            if family in families:
                return family
    return "untyped"
