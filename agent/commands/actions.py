"""The allowlist: named actions, each a fixed argv whose ``{param}`` items take values from a declared set.

Ready-made actions come from ``[commands]`` (``units``, ``scripts``); actions of one's own from
``[[action]]`` tables. ``expand`` turns a command's arguments into the argv to run, or into the
reason it is refused: the arguments must be exactly the declared parameters, each value in its
declared list or a full match of its ``re:`` pattern, and a value starting with ``-`` only when the
declared list names it. A value replaces ``{name}`` inside its one argv item and never becomes two.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from edgewatch.protocol.settings import ConfigError, parse_duration

NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
UNIT = re.compile(r"[A-Za-z0-9:_.\\@-]{1,256}")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
UNIT_VERBS = ("restart", "start", "stop", "status")
RELOAD = "reload-agent"
SCRIPT = "script"
READY_MADE = (*(f"unit-{verb}" for verb in UNIT_VERBS), RELOAD, SCRIPT)
MAX_VALUE_LEN = 1024
MAX_ARGV = 64
ACTION_KEYS = ("name", "argv", "params", "timeout")


class Param(NamedTuple):
    """A declared parameter: a list of values, or a regular expression (``re:...``, full match)."""

    values: tuple[str, ...] = ()
    pattern: str = ""  # without the "re:" prefix; "" when the parameter is a list
    mapping: Mapping[str, str] | None = None  # value -> argv text (the script action: name -> path)

    def allows(self, value: str) -> bool:
        if not value or len(value) > MAX_VALUE_LEN or "\x00" in value:
            return False
        if self.pattern:
            return not value.startswith("-") and re.fullmatch(self.pattern, value) is not None
        return value in self.values

    def advertised(self) -> list[str] | str:
        return f"re:{self.pattern}" if self.pattern else list(self.values)


class Action(NamedTuple):
    name: str
    argv: tuple[str, ...]  # with {param} placeholders; empty for reload-agent
    params: Mapping[str, Param]
    timeout: float | None = None  # None: commands.timeout


def expand(action: Action, args: object) -> tuple[str, ...] | str:
    """The argv to run, or the reason (``parameter NAME not allowed``) the arguments are refused."""
    if not isinstance(args, Mapping):
        return "malformed command"
    odd = sorted(set(args) ^ set(action.params), key=str)  # arguments not declared, parameters not given
    if odd:
        return f"parameter {str(odd[0])[:64]} not allowed"
    for name, param in sorted(action.params.items()):
        value = args[name]
        if not isinstance(value, str) or not param.allows(value):
            return f"parameter {name} not allowed"

    def one(match: re.Match[str]) -> str:
        param, value = action.params[match[1]], args[match[1]]
        return param.mapping[value] if param.mapping is not None else value

    return tuple(PLACEHOLDER.sub(one, item) for item in action.argv)


def placeholders(argv: Sequence[str]) -> set[str]:
    return {name for item in argv for name in PLACEHOLDER.findall(item)}


def allowlist(
    *, units: Sequence[str], scripts: Mapping[str, str], systemctl: str, actions: Sequence[Action]
) -> dict[str, Action]:
    """Every action this agent accepts, by name: the ready-made ones its settings enable, then its own."""
    out: dict[str, Action] = {}
    if units:
        unit = {"unit": Param(values=tuple(units))}
        for verb in UNIT_VERBS:
            out[f"unit-{verb}"] = Action(f"unit-{verb}", (systemctl, verb, "{unit}"), unit)
    out[RELOAD] = Action(RELOAD, (), {})
    if scripts:
        name = Param(values=tuple(scripts), mapping=dict(scripts))
        out[SCRIPT] = Action(SCRIPT, ("{name}",), {"name": name})
    for action in actions:
        out[action.name] = action
    return out


def advertise(actions: Mapping[str, Action]) -> list[dict[str, Any]]:
    """``facts.actions``: each action's name and its parameters' declared values or ``re:`` pattern."""
    return [
        {"name": a.name, "params": {p: param.advertised() for p, param in sorted(a.params.items())}}
        for a in actions.values()
    ]


# -- the configuration ---------------------------------------------------------------------------


def check_units(units: Sequence[str]) -> None:
    for unit in units:
        if not UNIT.fullmatch(unit) or unit.startswith("-"):
            raise ConfigError(f"commands.units: {unit!r} is not a systemd unit name; use e.g. nginx.service")


def parse_scripts(raw: Any) -> dict[str, str]:
    """``commands.scripts``: a table ``{ name = "/path" }`` (or ``name=/path`` items from the environment)."""
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, list):
        pairs = [item.partition("=")[::2] for item in raw]
    else:
        raise ConfigError('commands.scripts: use a table, e.g. { rotate-logs = "/usr/local/bin/rotate.sh" }')
    out: dict[str, str] = {}
    for name, path in pairs:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ConfigError(
                f"commands.scripts: {name!r} is not a name of 1-64 letters, digits, '_', '.' or '-'"
            )
        if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
            raise ConfigError(f"commands.scripts: script {name} must be an absolute path")
        out[name] = path
    return out


def parse_actions(items: Sequence[Mapping[str, Any]]) -> list[Action]:
    """The ``[[action]]`` tables, each checked; a mistake is one ``ConfigError`` line naming the action."""
    out: list[Action] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        name = item.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ConfigError(f"action #{i + 1}: name must be 1-64 letters, digits, '_', '.' or '-'")
        where = f"action {name}"
        if name in READY_MADE:
            raise ConfigError(f"{where}: the name is taken by a ready-made action; choose another")
        if name in seen:
            raise ConfigError(f"{where}: defined twice; give each [[action]] its own name")
        seen.add(name)
        unknown = sorted(set(item) - set(ACTION_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; use {', '.join(ACTION_KEYS)}")
        argv = item.get("argv")
        if (
            not isinstance(argv, list)
            or not 0 < len(argv) <= MAX_ARGV
            or not all(isinstance(a, str) and "\x00" not in a for a in argv)
        ):
            raise ConfigError(f'{where}: argv must be a list of 1-{MAX_ARGV} strings, e.g. ["/usr/bin/true"]')
        if not argv[0].startswith("/") or PLACEHOLDER.search(argv[0]):
            raise ConfigError(f"{where}: argv[0] must be the program's absolute path, without parameters")
        params = _params(where, item.get("params", {}))
        used = placeholders(argv)
        if used - set(params):
            raise ConfigError(
                f"{where}: argv uses {{{sorted(used - set(params))[0]}}}, which params does not declare"
            )
        if set(params) - used:
            raise ConfigError(
                f"{where}: parameter {sorted(set(params) - used)[0]} is declared but argv never uses it"
            )
        out.append(Action(name, tuple(argv), params, _timeout(where, item.get("timeout"))))
    return out


def _params(where: str, raw: Any) -> dict[str, Param]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f'{where}: params must be a table, e.g. {{ pattern = ["^/static/"] }}')
    out: dict[str, Param] = {}
    for name, spec in raw.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"{where}: parameter {name!r} must be letters, digits and '_'")
        if isinstance(spec, str) and spec.startswith("re:"):
            try:
                re.compile(spec[3:])
            except re.error as exc:
                raise ConfigError(
                    f"{where}: parameter {name}: {spec!r} is not a valid regular expression ({exc})"
                ) from None
            out[name] = Param(pattern=spec[3:])
        elif (
            isinstance(spec, list)
            and spec
            and all(isinstance(v, str) and v and "\x00" not in v for v in spec)
        ):
            out[name] = Param(values=tuple(spec))
        else:
            raise ConfigError(f'{where}: parameter {name} must be a list of values or "re:REGEX"')
    return out


def _timeout(where: str, raw: Any) -> float | None:
    if raw is None:
        return None
    try:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise ValueError("use seconds or a duration like 10s")
        value = parse_duration(raw) if isinstance(raw, str) else float(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: timeout {raw!r} is not valid: {exc}") from None
    if not 0 < value <= 3600:
        raise ConfigError(f"{where}: timeout must be more than 0 and at most 1 h")
    return value
