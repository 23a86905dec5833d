"""The [commands] settings and [[action]] tables: the documented examples load, mistakes are one line
naming the key or the action."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgewatch.agent.config import ConfigError, load

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _toml_blocks(doc: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", (DOCS / doc).read_text(), re.DOTALL)


@pytest.mark.parametrize("doc", ["commands.md", "agent.md"])
def test_the_documented_examples_load(tmp_path: Path, doc: str) -> None:
    block = next(b for b in _toml_blocks(doc) if "[commands]" in b)
    path = tmp_path / "agent.toml"
    path.write_text(block)
    config = load(path, environ={})
    assert config["commands.enabled"] is True
    assert config["commands.units"][0] == "nginx.service"
    assert config["commands.scripts"] == {"rotate-logs": "/usr/local/lib/edgewatch/rotate-logs.sh"}
    (action,) = config.actions
    assert action.name == "flush-cache"
    assert action.argv == ("/usr/bin/varnishadm", "ban", "req.url ~ {pattern}")
    assert action.params["pattern"].values == ("^/static/", "^/img/")
    assert action.timeout == 10.0


def test_defaults_are_off_and_safe() -> None:
    config = load(None, environ={})
    assert config["commands.enabled"] is False
    assert config["commands.poll"] is True
    assert config["commands.timeout"] == 60.0
    assert config["commands.max_output"] == 64 * 1024
    assert config["commands.max_skew"] == 30.0
    assert config["commands.systemctl"] == "/usr/bin/systemctl"
    assert config.actions == []


def test_scripts_from_the_environment() -> None:
    config = load(None, environ={"EDGEWATCH_AGENT_COMMANDS_SCRIPTS": "rotate=/usr/local/bin/rotate.sh,a=/b"})
    assert config["commands.scripts"] == {"rotate": "/usr/local/bin/rotate.sh", "a": "/b"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[commands]\nenabled = "yes please"\n', "commands.enabled"),
        ("[commands]\nenable = true\n", "commands.enable"),
        ('[commands]\nunits = ["nginx; rm -rf /"]\n', "commands.units"),
        ('[commands]\nunits = ["-rf"]\n', "commands.units"),
        ('[commands]\nscripts = { "bad name!" = "/x" }\n', "commands.scripts"),
        ('[commands]\nscripts = { rotate = "rotate.sh" }\n', "commands.scripts"),
        ('[commands]\nsystemctl = "systemctl"\n', "commands.systemctl"),
        ('[commands]\nmax_output = "10MB"\n', "commands.max_output"),
        ('[commands]\nmax_skew = "10m"\n', "commands.max_skew"),
        ('[commands]\ntimeout = "0s"\n', "commands.timeout"),
        ('[[action]]\nname = "unit-restart"\nargv = ["/bin/true"]\n', "action unit-restart"),
        ('[[action]]\nname = "x y"\nargv = ["/bin/true"]\n', "action #1"),
        ('[[action]]\nname = "x"\nargv = "/bin/true"\n', "action x"),
        ('[[action]]\nname = "x"\nargv = []\n', "action x"),
        ('[[action]]\nname = "x"\nargv = ["true"]\n', "action x: argv[0]"),
        ('[[action]]\nname = "x"\nargv = ["/bin/{prog}"]\nparams = { prog = ["sh"] }\n', "action x: argv[0]"),
        ('[[action]]\nname = "x"\nargv = ["/bin/echo", "{what}"]\n', "action x: argv uses {what}"),
        ('[[action]]\nname = "x"\nargv = ["/bin/true"]\nparams = { a = ["1"] }\n', "action x: parameter a"),
        (
            '[[action]]\nname = "x"\nargv = ["/bin/echo", "{a}"]\nparams = { a = "re:(" }\n',
            "action x: parameter a",
        ),
        (
            '[[action]]\nname = "x"\nargv = ["/bin/echo", "{a}"]\nparams = { a = [] }\n',
            "action x: parameter a",
        ),
        (
            '[[action]]\nname = "x"\nargv = ["/bin/echo", "{a}"]\nparams = { a = "any" }\n',
            "action x: parameter a",
        ),
        ('[[action]]\nname = "x"\nargv = ["/bin/true"]\ntimeout = "soon"\n', "action x: timeout"),
        ('[[action]]\nname = "x"\nargv = ["/bin/true"]\ntimeout = 7200\n', "action x: timeout"),
        ('[[action]]\nname = "x"\nargv = ["/bin/true"]\nshell = true\n', "action x: unknown key 'shell'"),
        (
            '[[action]]\nname = "x"\nargv = ["/bin/true"]\n[[action]]\nname = "x"\nargv = ["/bin/true"]\n',
            "twice",
        ),
    ],
)
def test_mistakes_are_one_line_naming_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
