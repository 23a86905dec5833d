"""Settings tables shared by both sides: parse TOML values, environment strings and flags by kind.

A side declares its keys as a tuple of ``Setting`` (key, kind, default, help, bounds); ``resolve``
applies defaults, then the file, then the environment, then command-line overrides, and every
problem is one ``ConfigError`` line that names the key. The docs of each side list the same table,
and a test keeps them in step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple


class ConfigError(ValueError):
    """A configuration problem, as one line that names the key and says what to do."""


def parse_duration(text: str) -> float:
    """Seconds from ``30``, ``1.5``, ``250ms``, ``30s``, ``5m``, ``12h`` or ``7d``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if not match:
        raise ValueError("use a number of seconds or a duration like 30s, 5m, 12h, 7d")
    number, unit = float(match[1]), match[2] or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def parse_size(text: str) -> int:
    """Bytes from ``4096``, ``512KB``, ``64MB`` or ``1GB`` (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B?|B)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError("use a number of bytes or a size like 512KB, 64MB, 1GB")
    unit = (match[2] or "B").upper().rstrip("B").rstrip("I")
    return int(match[1]) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[unit]


class Setting(NamedTuple):
    key: str
    kind: str  # str, bool, int, float, duration, size, list, choice:a|b
    default: Any
    help: str
    low: float | None = None
    high: float | None = None


def _number(kind: str, raw: Any) -> Any:
    if isinstance(raw, bool):
        raise ValueError("use a number")
    if isinstance(raw, str):
        parse = {"duration": parse_duration, "size": parse_size}.get(kind, float)
        value = parse(raw)
    elif isinstance(raw, int | float):
        value = raw
    else:
        raise ValueError("use a number")
    if not math.isfinite(value):
        raise ValueError("use a finite number")
    if kind in ("int", "size"):
        if value != int(value):
            raise ValueError("use a whole number")
        return int(value)
    return float(value)


def convert(setting: Setting, raw: Any, source: str) -> Any:
    """``raw`` (from TOML, the environment or a flag) as the setting's kind, or ``ConfigError``."""
    where = f"{setting.key} ({source})"
    kind = setting.kind
    try:
        if kind == "str":
            if not isinstance(raw, str):
                raise ValueError("use a string in quotes")
            value: Any = raw
        elif kind == "bool":
            if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raw = raw.lower() in ("1", "true", "yes", "on")
            if not isinstance(raw, bool):
                raise ValueError("use true or false")
            value = raw
        elif kind in ("int", "float", "duration", "size"):
            value = _number(kind, raw)
        elif kind == "list":
            if isinstance(raw, str):
                raw = [part.strip() for part in raw.split(",") if part.strip()]
            if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
                raise ValueError('use a list of strings, e.g. ["a", "b"]')
            value = raw
        else:  # choice:a|b
            choices = kind.split(":", 1)[1].split("|")
            if raw not in choices:
                raise ValueError(f"use one of {', '.join(choices)}")
            value = raw
    except (ValueError, OverflowError) as exc:
        raise ConfigError(f"{where}: {raw!r} is not valid: {exc}") from None
    if setting.low is not None and value < setting.low:
        raise ConfigError(f"{where}: {raw!r} is too small; use at least {setting.low:g}")
    if setting.high is not None and value > setting.high:
        raise ConfigError(f"{where}: {raw!r} is too large; use at most {setting.high:g}")
    return value


def flatten(data: Mapping[str, Any], known: Mapping[str, Setting], prefix: str = "") -> dict[str, Any]:
    """TOML tables as dotted keys: ``{"spool": {"max_bytes": 1}}`` is ``{"spool.max_bytes": 1}``."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in known:
            out.update(flatten(v, known, key + "."))
        else:
            out[key] = v
    return out


def read_toml(path: Path | None, default_path: Path, read: Callable[[Path], bytes]) -> dict[str, Any]:
    """The parsed file; a missing file is empty only when it is the default path."""
    import tomllib

    if path is None:
        return {}
    try:
        text = read(path).decode()
    except FileNotFoundError:
        if path != default_path:
            raise ConfigError(f"config file {path} does not exist; create it or leave out --config") from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def resolve(
    settings: Sequence[Setting],
    data: Mapping[str, Any],
    *,
    path: Path | None,
    environ: Mapping[str, str],
    env_prefix: str,
    overrides: Mapping[str, Any] | None,
    doc: str,
) -> dict[str, Any]:
    """Defaults, then ``data`` (the file's non-table keys), then the environment, then ``overrides``."""
    by_key = {s.key: s for s in settings}
    values = {s.key: s.default for s in settings}
    for key, raw in flatten(data, by_key).items():
        if key not in by_key:
            raise ConfigError(f"{key} ({path}): unknown setting; see {doc} for the list")
        values[key] = convert(by_key[key], raw, str(path))
    env_names = {env_prefix + s.key.upper().replace(".", "_"): s for s in settings}
    for name, raw in environ.items():
        if name in env_names:
            values[env_names[name].key] = convert(env_names[name], raw, f"environment {name}")
        elif name.startswith(env_prefix):
            raise ConfigError(f"{name}: unknown setting in the environment; see {doc} for the list")
    for key, raw in (overrides or {}).items():
        if raw is not None:
            values[key] = convert(by_key[key], raw, "command line")
    return values
