"""The aggregator's configuration: one table of settings, read from TOML, environment and flags.

``SETTINGS`` is the one list of keys; docs/aggregator.md lists the same keys and a test keeps them in
step. A key ``a.b`` is ``b`` in the TOML table ``[a]`` and ``EDGEWATCH_AGGREGATOR_A_B`` in the
environment. Retention is the ``[retention]`` table: one duration per tier.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgewatch.protocol.limits import MAX_FRAME_BYTES
from edgewatch.protocol.settings import ConfigError, Setting, read_toml, resolve

from .remotewrite.settings import Endpoint, parse_remote_write

DEFAULT_PATH = Path("/etc/edgewatch/aggregator.toml")
ENV_PREFIX = "EDGEWATCH_AGGREGATOR_"
DAY = 86400.0

SETTINGS: tuple[Setting, ...] = (
    Setting("listen", "str", "127.0.0.1:8480", "Address and port to serve on, HOST:PORT."),
    Setting("data_dir", "str", "/var/lib/edgewatch", "Where the database, keys and backups live."),
    Setting("tls_cert", "str", "", "PEM certificate (chain) to serve HTTPS; needs tls_key."),
    Setting("tls_key", "str", "", "PEM private key of tls_cert."),
    Setting(
        "public_url", "str", "", "URL agents and browsers use, for install lines (default: from listen)."
    ),
    Setting(
        "dist_dir",
        "str",
        "",
        "Wheels served at /dist/ for the agent install script (default: DATA_DIR/dist).",
    ),
    Setting("log_format", "choice:text|json", "text", "Log lines as key=value text or as JSON."),
    Setting("log_level", "choice:debug|info|warning|error", "info", "Least severe level that is logged."),
    Setting("retention.raw", "duration", 7 * DAY, "How long raw samples are kept.", 3600),
    Setting("retention.1m", "duration", 30 * DAY, "How long the 1-minute rollups are kept.", 3600),
    Setting("retention.5m", "duration", 90 * DAY, "How long the 5-minute rollups are kept.", 3600),
    Setting("retention.1h", "duration", 365 * DAY, "How long the 1-hour rollups are kept.", 3600),
    Setting(
        "storage.synchronous",
        "choice:full|normal",
        "full",
        "SQLite synchronous mode; full survives power loss after every acknowledged frame.",
    ),
    Setting(
        "storage.commit_delay", "duration", 0.005, "How long the writer gathers frames into one commit.", 0, 1
    ),
    Setting("storage.queue_frames", "int", 5000, "Frames waiting for the writer before pushes get 503.", 10),
    Setting(
        "storage.compact_interval",
        "duration",
        60.0,
        "How often closed 10-minute windows are compacted into blocks and rollups.",
        1,
        86400,
    ),
    Setting("storage.retention_interval", "duration", 3600.0, "How often old blocks are deleted.", 1, 86400),
    Setting(
        "ingest.max_frame_bytes",
        "size",
        MAX_FRAME_BYTES,
        "Largest accepted push body; larger frames get 413.",
        64,
        MAX_FRAME_BYTES,
    ),
    Setting("ingest.max_inflight", "int", 4, "Concurrent pushes per agent before 429.", 1, 1000),
    Setting("ingest.max_future", "duration", 300.0, "How far ahead of our clock a sample may be.", 0),
    Setting("hosts.down_after", "int", 3, "A host is down after this many missed push intervals.", 1, 1000),
    Setting("metrics.public", "bool", False, "Serve /metrics and /federate without an API token."),
    Setting(
        "federate.max_age",
        "duration",
        600.0,
        "/federate leaves out series whose newest sample is older than this (0: none left out).",
        0,
    ),
    Setting(
        "alerts.rules_file",
        "str",
        "/etc/edgewatch/rules.toml",
        "Alert rules (docs/rules.md); the built-in defaults alone when the file is missing.",
    ),
    Setting(
        "alerts.interval",
        "duration",
        5.0,
        "How often absence rules and notifications are checked.",
        0.1,
        3600,
    ),
    Setting(
        "ui.session_idle", "duration", 3600.0, "A browser session ends this long after its last request.", 60
    ),
    Setting("ui.session_max", "duration", 7 * DAY, "A browser session ends this long after the sign-in.", 60),
    Setting(
        "alerts.push",
        "bool",
        True,
        "Send alerts to every subscribed browser (channel push) when no webpush channel is configured.",
    ),
    Setting(
        "alerts.push_subject",
        "str",
        "mailto:root@localhost",
        "Contact for push services (VAPID subject): mailto: of the admin or an https:// URL.",
    ),
    Setting(
        "alerts.push_allow_loopback_http",
        "bool",
        False,
        "Accept http://127.0.0.1 push endpoints (tests and benchmarks only).",
    ),
)
TABLES = {
    "channel": "Notification channels: name, type (webpush, webhook, apprise, alertmanager) and its fields.",
    "route": "Which alerts go to which channels: match, channels, grouping, digest, escalation.",
    "notify": "Defaults of the notification pipeline: group_wait, group_interval, repeat_interval, ...",
    "remote_write": "Prometheus remote-write endpoints that get every sample: url, auth, queue bound, ...",
}
TIERS = ("raw", "1m", "5m", "1h")


class AggregatorConfig:
    """Validated settings: ``config["retention.raw"]``."""

    def __init__(
        self, values: dict[str, Any], path: Path | None, tables: dict[str, Any] | None = None
    ) -> None:
        self.values = values
        self.path = path
        self.tables = tables or {}

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def data_dir(self) -> Path:
        return Path(self.values["data_dir"])

    @property
    def dist_dir(self) -> Path:
        """Where the wheels that ``GET /dist/FILE.whl`` serves live: ``dist_dir``, or ``DATA_DIR/dist``."""
        return Path(self.values["dist_dir"]) if self.values["dist_dir"] else self.data_dir / "dist"

    @property
    def remote_write(self) -> tuple[Endpoint, ...]:
        """The ``[[remote_write]]`` endpoints (checked by `load`)."""
        return parse_remote_write(self.tables.get("remote_write"))

    @property
    def retention(self) -> dict[str, float]:
        return {tier: float(self.values[f"retention.{tier}"]) for tier in TIERS}

    def listen(self) -> tuple[str, int]:
        return parse_listen(self.values["listen"])

    @property
    def public_url(self) -> str:
        """``public_url``, or the URL of ``listen`` (https when serving TLS)."""
        if self.values["public_url"]:
            return str(self.values["public_url"]).rstrip("/")
        host, port = self.listen()
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 (a wildcard is not a URL)
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.values['tls_cert'] else 'http'}://{host}:{port}"


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen: {text!r} is not HOST:PORT; use e.g. 127.0.0.1:8480 or 0.0.0.0:8480")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 (the operator asked for it)


def load(
    path: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    read: Callable[[Path], bytes] = Path.read_bytes,
) -> AggregatorConfig:
    """Defaults, then the file (if ``path`` exists or was named), then the environment, then ``overrides``."""
    data = read_toml(path, DEFAULT_PATH, read)
    tables = {name: data[name] for name in TABLES if name in data}
    values = resolve(
        SETTINGS,
        {k: v for k, v in data.items() if k not in TABLES},
        path=path,
        environ=os.environ if environ is None else environ,
        env_prefix=ENV_PREFIX,
        overrides=overrides,
        doc="docs/aggregator.md",
    )
    parse_listen(values["listen"])
    if bool(values["tls_cert"]) != bool(values["tls_key"]):
        raise ConfigError("tls_cert and tls_key: give both (HTTPS) or neither (HTTP)")
    ret = [values[f"retention.{t}"] for t in TIERS]
    if ret != sorted(ret):
        raise ConfigError("retention: coarser tiers must be kept at least as long as finer ones")
    try:
        parse_remote_write(tables.get("remote_write"))
    except ValueError as exc:
        raise ConfigError(f"{exc} (see docs/aggregator.md, Remote write)") from None
    return AggregatorConfig(values, path, tables)
