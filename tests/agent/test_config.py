"""Configuration: file, environment and flags; one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewatch.agent.config import SETTINGS, ConfigError, load


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    config = load(None, environ={})
    assert {s.key: config[s.key] for s in SETTINGS} == {s.key: s.default for s in SETTINGS}


def test_file_environment_and_flags_in_that_order(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'aggregator = "https://mon.example.com:8443"\ninterval = "30s"\n[spool]\nmax_bytes = "16MB"\n'
        '[systemd]\nunits = ["nginx.service"]\n',
    )
    config = load(path, environ={"EDGEWATCH_AGENT_INTERVAL": "20", "EDGEWATCH_AGENT_SPOOL_MAX_AGE": "2d"})
    assert config["aggregator"] == "https://mon.example.com:8443"
    assert config["interval"] == 20.0  # the environment beats the file
    assert config["spool.max_bytes"] == 16 * 1024**2
    assert config["spool.max_age"] == 2 * 86400
    assert config["systemd.units"] == ["nginx.service"]
    flagged = load(path, environ={"EDGEWATCH_AGENT_INTERVAL": "20"}, overrides={"interval": "5"})
    assert flagged["interval"] == 5.0  # flags beat both


def test_tables(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[[check]]\nname = "web"\nurl = "https://example.org/health"\nexpect_status = 200\n'
        '[[check]]\nname = "db"\naddress = "127.0.0.1:5432"\ntimeout = 2\n'
        '[[scrape]]\nname = "app"\nurl = "http://127.0.0.1:8000/metrics"\n'
        '[[watch]]\nname = "nginx"\npattern = "nginx"\n',
    )
    config = load(path, environ={})
    assert [(c.name, c.kind, c.target, c.timeout) for c in config.checks] == [
        ("web", "http", "https://example.org/health", 5.0),
        ("db", "tcp", "127.0.0.1:5432", 2.0),
    ]
    assert config.scrapes == [("app", "http://127.0.0.1:8000/metrics")]
    assert config.watches == [("nginx", "nginx")]


@pytest.mark.parametrize(
    ("text", "env", "fragment"),
    [
        ("interval = 0.2\n", {}, "interval"),
        ('interval = "fast"\n', {}, "interval"),
        ("intervall = 10\n", {}, "intervall"),
        ("[spool]\nmax_bytes = -1\n", {}, "spool.max_bytes"),
        ('log_format = "xml"\n', {}, "log_format"),
        ('aggregator = "mon.example.com"\n', {}, "aggregator"),
        ('network.exclude = "("\n', {}, "network.exclude"),
        ('[[check]]\nname = "x"\n', {}, "check x"),
        ("interval = [\n", {}, "not valid TOML"),
        ("", {"EDGEWATCH_AGENT_INTERVALL": "5"}, "EDGEWATCH_AGENT_INTERVALL"),
        ("", {"EDGEWATCH_AGENT_TLS_VERIFY": "maybe"}, "tls_verify"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(
    tmp_path: Path, text: str, env: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(_write(tmp_path, text), environ=env)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml", environ={})
