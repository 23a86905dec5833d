"""The agent's configuration: a table of settings, read from TOML, overridden by environment and flags.

``SETTINGS`` is the one list of keys: the loader, ``--check-config``, docs/agent.md and its test all
read it. A key ``a.b`` is ``b`` in the TOML table ``[a]`` and ``EDGEWATCH_AGENT_A_B`` in the
environment. Tables of tables (``[[check]]``, ``[[scrape]]``, ``[[watch]]``) come from the file only.
Every problem is one line naming the key: ``ConfigError``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from edgewatch.protocol.settings import ConfigError, Setting, read_toml, resolve

if TYPE_CHECKING:
    from .commands.actions import Action

DEFAULT_PATH = Path("/etc/edgewatch/agent.toml")
ENV_PREFIX = "EDGEWATCH_AGENT_"


SETTINGS: tuple[Setting, ...] = (
    Setting("aggregator", "str", "", "URL of the aggregator, e.g. https://mon.example.com:8443."),
    Setting("token", "str", "", "This agent's token; `edgewatch enroll` stores it in the state dir instead."),
    Setting(
        "agent_id",
        "str",
        "",
        "The agent's name at the aggregator; default: from enrollment, else the hostname.",
    ),
    Setting("state_dir", "str", "/var/lib/edgewatch-agent", "Where the spool, identity and nonces live."),
    Setting(
        "interval", "duration", 10.0, "Time between samples, aligned to the clock (1 s to 1 h).", 1, 3600
    ),
    Setting("batch_samples", "int", 1, "Samples per frame; 1 pushes after every sample.", 1, 360),
    Setting("timeout", "duration", 10.0, "How long one push may take.", 0.5, 300),
    Setting(
        "ca_file", "str", "", "CA bundle that verifies the aggregator's certificate (default: the system's)."
    ),
    Setting("tls_verify", "bool", True, "Verify the aggregator's TLS certificate; turn off only for tests."),
    Setting("hostname", "str", "", "Host name to report (default: the kernel's)."),
    Setting("log_format", "choice:text|json", "text", "Log lines as key=value text or as JSON."),
    Setting("log_level", "choice:debug|info|warning|error", "info", "Least severe level that is logged."),
    Setting("proc_root", "str", "/proc", "Where procfs is mounted (containers mount the host's elsewhere)."),
    Setting("sys_root", "str", "/sys", "Where sysfs is mounted."),
    Setting(
        "spool.max_bytes",
        "size",
        64 * 1024**2,
        "Largest size of the spool; the oldest frames go first.",
        4096,
    ),
    Setting(
        "spool.max_age", "duration", 7 * 86400.0, "Frames older than this are dropped from the spool.", 60
    ),
    Setting(
        "spool.backlog_chunk",
        "int",
        30,
        "Spooled frames sent after each live frame while catching up.",
        1,
        10_000,
    ),
    Setting(
        "collectors.disabled", "list", [], "Names of collectors not to run (cpu, memory, processes, ...)."
    ),
    Setting(
        "collectors.timeout",
        "duration",
        5.0,
        "Time a collector may take before its tick is skipped.",
        0.1,
        60,
    ),
    Setting("processes.top", "int", 5, "How many processes to report by CPU and by memory.", 0, 20),
    Setting("processes.interval", "duration", 30.0, "Time between process scans.", 0, 3600),
    Setting("sensors.interval", "duration", 60.0, "Time between temperature and fan readings.", 0, 3600),
    Setting("filesystem.exclude_types", "list", [], "More filesystem types to skip."),
    Setting("filesystem.exclude_mounts", "list", [], "More mount points to skip (exact paths)."),
    Setting(
        "disk.exclude", "str", "^(z?ram|loop|fd|sr)\\d+$", "Regular expression of block devices to skip."
    ),
    Setting("network.exclude", "str", "^lo$", "Regular expression of network interfaces to skip."),
    Setting("systemd.units", "list", [], 'systemd units to watch, e.g. ["nginx.service"].'),
    Setting(
        "textfile.directory", "str", "", "Directory of *.prom files to read, as node_exporter's textfile."
    ),
    Setting("plugin.listen", "str", "", "Local endpoint for plugins: 127.0.0.1:PORT or unix:/path.sock."),
    Setting(
        "commands.enabled", "bool", False, "Run remote commands the aggregator signs (docs/commands.md)."
    ),
    Setting(
        "commands.units",
        "list",
        [],
        "systemd units that unit-restart, unit-start, unit-stop and unit-status may name.",
    ),
    Setting(
        "commands.scripts",
        "list",  # a TOML table in the file, name=/path items in the environment; a dict once loaded
        {},
        'Scripts the script action may run, by name: { rotate-logs = "/usr/local/bin/rotate.sh" }.',
    ),
    Setting("commands.systemctl", "str", "/usr/bin/systemctl", "Path of systemctl."),
    Setting("commands.timeout", "duration", 60.0, "Run time limit of an action that sets none.", 1, 3600),
    Setting(
        "commands.max_output",
        "size",
        64 * 1024,
        "Bytes of stdout, and of stderr, kept from a run.",
        1024,
        256 * 1024,
    ),
    Setting("commands.max_skew", "duration", 30.0, "How far the aggregator's clock may be off.", 0, 300),
    Setting(
        "commands.poll",
        "bool",
        True,
        "Long-poll the aggregator for commands (else only push answers bring them).",
    ),
)
TABLES = {
    "check": "HTTP(S) and TCP checks: name, url or address, timeout, expect_status, body_match, tls_verify.",
    "scrape": "Local Prometheus endpoints to scrape: name, url.",
    "watch": "Processes to watch: name, pattern (a command name, or re:REGEX on the command line).",
    "action": "Remote command actions of your own: name, argv, params, timeout (see docs/commands.md).",
}


class CheckSpec(NamedTuple):
    name: str
    kind: str  # http or tcp
    target: str
    timeout: float
    expect_status: int | None
    body_match: str
    verify_tls: bool


class AgentConfig:
    """Validated settings, ``config["spool.max_bytes"]``, and the tables checks, scrapes, watches, actions."""

    def __init__(
        self,
        values: Mapping[str, Any],
        checks: list[CheckSpec],
        scrapes: list[tuple[str, str]],
        watches: list[tuple[str, str]],
        path: Path | None,
        *,
        actions: list[Action] | None = None,
    ) -> None:
        self.values = dict(values)
        self.checks = checks
        self.scrapes = scrapes
        self.watches = watches
        self.path = path
        self.actions = actions or []

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def state_dir(self) -> Path:
        return Path(self.values["state_dir"])


def _table_items(data: Mapping[str, Any], name: str, path: Path | None) -> list[dict[str, Any]]:
    items = data.get(name, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ConfigError(f"{name} ({path}): use [[{name}]] tables")
    return items


def _checks(items: list[dict[str, Any]]) -> list[CheckSpec]:
    checks = []
    for i, item in enumerate(items):
        where = f"check #{i + 1}"
        name = item.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise ConfigError(f"{where}: name must be 1-64 letters, digits, '_', '.' or '-'")
        url, address = item.get("url"), item.get("address")
        if (url is None) == (address is None):
            raise ConfigError(f"check {name}: give either url (HTTP) or address (TCP host:port)")
        if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
            raise ConfigError(f"check {name}: url must start with http:// or https://")
        if address is not None and (not isinstance(address, str) or not re.fullmatch(r".+:\d{1,5}", address)):
            raise ConfigError(f"check {name}: address must be host:port")
        timeout = item.get("timeout", 5)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60:
            raise ConfigError(f"check {name}: timeout must be seconds from 0 to 60")
        status = item.get("expect_status")
        if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
            raise ConfigError(f"check {name}: expect_status must be an HTTP status from 100 to 599")
        match = item.get("body_match", "")
        if not isinstance(match, str):
            raise ConfigError(f"check {name}: body_match must be a string")
        verify = item.get("tls_verify", True)
        if not isinstance(verify, bool):
            raise ConfigError(f"check {name}: tls_verify must be true or false")
        kind = "http" if url is not None else "tcp"
        target = url if url is not None else address
        assert isinstance(target, str)
        checks.append(CheckSpec(name, kind, target, float(timeout), status, match, verify))
    return checks


def _pairs(items: list[dict[str, Any]], table: str, value_key: str) -> list[tuple[str, str]]:
    out = []
    for i, item in enumerate(items):
        name, value = item.get("name"), item.get(value_key)
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise ConfigError(f"{table} #{i + 1}: name must be 1-64 letters, digits, '_', '.' or '-'")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{table} {name}: {value_key} must be a non-empty string")
        out.append((name, value))
    return out


def load(
    path: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    read: Callable[[Path], bytes] = Path.read_bytes,
) -> AgentConfig:
    """Defaults, then the file (if ``path`` exists or was named), then the environment, then ``overrides``."""
    environ = os.environ if environ is None else environ
    data = read_toml(path, DEFAULT_PATH, read)
    tables = {name: _table_items(data, name, path) for name in TABLES}
    rest = {k: v for k, v in data.items() if k not in TABLES}
    commands = rest.get("commands")
    if isinstance(commands, dict) and isinstance(commands.get("scripts"), dict):
        # a table in the file; the settings table knows lists of strings: name=/path items
        from .commands.actions import parse_scripts

        scripts = parse_scripts(commands["scripts"])
        rest["commands"] = {**commands, "scripts": [f"{k}={v}" for k, v in scripts.items()]}
    values = resolve(
        SETTINGS,
        rest,
        path=path,
        environ=environ,
        env_prefix=ENV_PREFIX,
        overrides=overrides,
        doc="docs/agent.md",
    )
    if values["aggregator"]:
        from .transport import Url

        try:
            Url.parse(values["aggregator"])
        except ValueError as exc:
            raise ConfigError(f"aggregator: {exc}; use e.g. https://mon.example.com:8443") from None
    for key in ("disk.exclude", "network.exclude"):
        try:
            re.compile(values[key])
        except re.error as exc:
            raise ConfigError(f"{key}: {values[key]!r} is not a valid regular expression ({exc})") from None
    actions = _commands(values, tables["action"])
    return AgentConfig(
        values,
        _checks(tables["check"]),
        _pairs(tables["scrape"], "scrape", "url"),
        _pairs(tables["watch"], "watch", "pattern"),
        path,
        actions=actions,
    )


def _commands(values: dict[str, Any], items: list[dict[str, Any]]) -> list[Action]:
    """Check the [commands] settings and the [[action]] tables; an agent without them loads nothing more."""
    if not values["commands.systemctl"].startswith("/"):
        raise ConfigError("commands.systemctl: use the absolute path of systemctl, e.g. /usr/bin/systemctl")
    if not (values["commands.units"] or values["commands.scripts"] or items):
        values["commands.scripts"] = {}
        return []
    from .commands.actions import check_units, parse_actions, parse_scripts

    check_units(values["commands.units"])
    values["commands.scripts"] = parse_scripts(values["commands.scripts"])
    return parse_actions(items)
