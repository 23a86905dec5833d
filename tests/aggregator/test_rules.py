"""Rule files: every field checked with an error naming rule and field, built-in defaults switchable and
tunable, label matchers, host groups, safe templates, and docs/rules.md in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgewatch.aggregator.rules import (
    BUILTIN_RULES,
    FIELDS,
    Matcher,
    Rule,
    RuleError,
    RuleSet,
    Template,
    load_rules,
)

DOC = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text()

GOOD = """
[groups]
web = ["web-*", "edge-?"]

[[rule]]
name = "root_fs"
metric = "edgewatch_filesystem_used_percent"
labels = { mountpoint = "/", fstype = "!tmpfs", device = "~^/dev/sd" }
groups = ["web"]
hosts = ["db1"]
warning = 70
critical = 85
clear = 65
for = "5m"
window = 120
severity = { critical = "error" }
labels_add = { team = "ops" }
summary = "{labels.mountpoint} on {host}: {value:.1f} % ({level}/{severity}, over {threshold:g})"
"""


def one(text: str, name: str = "r") -> Rule:
    """The user rule ``name`` of a file without built-in rules."""
    rule = load_rules(text, defaults={}).get(name)
    assert rule is not None
    return rule


def user(fields: str) -> str:
    return f'[[rule]]\nname = "r"\nmetric = "m"\n{fields}\n'


def error(text: str, defaults: dict[str, dict[str, object]] | None = None) -> str:
    with pytest.raises(RuleError) as info:
        load_rules(text, defaults={} if defaults is None else defaults)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- parsing ---------------------------------------------------------------------------------------


def test_a_full_rule() -> None:
    rule = one(GOOD, "root_fs")
    assert (rule.warning, rule.critical, rule.clear, rule.for_s, rule.window_s) == (70, 85, 65, 300, 120)
    assert rule.host_patterns == ("db1", "web-*", "edge-?")
    assert dict(rule.severity) == {"warning": "warning", "critical": "error"}
    assert rule.metrics == ("edgewatch_filesystem_used_percent",)


def test_defaults_of_a_minimal_rule() -> None:
    rule = one(user("warning = 1"))
    assert (rule.kind, rule.enabled, rule.reducer, rule.op) == ("threshold", True, "last", ">")
    assert (rule.window_s, rule.for_s) == (300.0, 0.0)
    assert rule.clear == 1
    assert rule.critical is None
    assert rule.host_patterns == ()
    assert rule.severity_of("warning") == "warning"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ('warning = "high"', "rule r: warning: must be a number"),
        ("warning = true", "rule r: warning: must be a number"),
        ("critical = nan", "rule r: critical: must be a number"),
        ("", "rule r: warning: set warning, critical or both"),
        ("warning = 1\nthreshold = 2", "rule r: threshold: unknown field"),
        ('warning = 1\nreducer = "median"', "rule r: reducer: 'median' is not one of last, avg"),
        ('warning = 1\nwindow = "5 minutes"', "rule r: window: use a number of seconds or a duration"),
        ("warning = 1\nwindow = 0", "rule r: window: must be above 0"),
        ("warning = 1\nfor = -1", "rule r: for: must not be negative"),
        ("warning = 1\nfor = [1]", "rule r: for: must be a duration like"),
        ('warning = 1\nop = "=="', "rule r: op: '==' is not one of >, >=, <, <="),
        ("warning = 90\ncritical = 80", "rule r: critical: must not be below warning (90) with op >"),
        (
            'op = "<"\nwarning = 10\ncritical = 20',
            "rule r: critical: must not be above warning (10) with op <",
        ),
        ("warning = 80\nclear = 85", "rule r: clear: must not be past the lowest threshold (80) with op >"),
        ('warning = 1\nreducer = "predict"', "rule r: predict_in: must be set to a duration above 0"),
        ("warning = 1\nbaseline_days = 0", "rule r: baseline_days: must be a whole number from 1 to 90"),
        ("warning = 1\nbaseline_days = 1.5", "rule r: baseline_days: must be a whole number from 1 to 90"),
        ('warning = 1\nlabels = { a = "~(" }', "rule r: labels: '(' is not a valid regular expression"),
        ('warning = 1\nlabels = { "bad-name" = "x" }', "rule r: labels: 'bad-name' is not a label name"),
        ("warning = 1\nlabels = { a = 1 }", "rule r: labels: must be a table of strings"),
        ('warning = 1\nhosts = "web"', "rule r: hosts: must be a list of strings"),
        ('warning = 1\nhosts = [""]', "rule r: hosts: must be a list of strings"),
        ('warning = 1\ngroups = ["nope"]', "rule r: groups: unknown group 'nope'; define it in the [groups]"),
        ('warning = 1\nseverity = { warning = "urgent" }', "rule r: severity: 'urgent' is not one of info"),
        ('warning = 1\nseverity = { major = "error" }', "rule r: severity: 'major' is not a level"),
        ("warning = 1\nseverity = 3", "rule r: severity: must be a table of strings"),
        ("warning = 1\nlabels_add = { team = 1 }", "rule r: labels_add: must be a table of strings"),
        ('warning = 1\nsummary = "{value.__class__}"', "rule r: summary: {value.__class__} is unknown"),
        ('warning = 1\nsummary = "{oops}"', "rule r: summary: {oops} is unknown"),
        ('warning = 1\ndescription = "{host!r}"', "rule r: description: {host!r}: conversions are not"),
        ('warning = 1\nsummary = "{value"', "rule r: summary: expected '}' before end of string"),
        ('warning = 1\nenabled = "yes"', "rule r: enabled: must be true or false"),
        ('warning = 1\nkind = "other"', "rule r: kind: 'other' is not one of threshold, absence"),
        ('warning = 1\ndivide_by = "1x"', "rule r: divide_by: '1x' is not a metric name"),
    ],
)
def test_every_error_names_the_rule_and_the_field(fields: str, expected: str) -> None:
    assert error(user(fields)).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[rule]]\nmetric = "m"\nwarning = 1', "rule #1: name: must be 1-64 letters"),
        ('[[rule]]\nname = 5\nmetric = "m"\nwarning = 1', "rule #1: name: must be a string in quotes"),
        ('[[rule]]\nname = "a b"\nmetric = "m"\nwarning = 1', "rule a b: name: must be 1-64 letters"),
        ('[[rule]]\nname = "r"\nwarning = 1', "rule r: metric: must be set"),
        ('[[rule]]\nname = "r"\nmetric = "a b"\nwarning = 1', "rule r: metric: 'a b' is not a metric name"),
        (user("warning = 1") + user("warning = 2"), "rule r: name: used twice; names must be unique"),
        ("rule = 1", "rules: rule: write each rule as a [[rule]] table"),
        ("[rules]\nx = 1", "rules: rules: unknown table; use [[rule]], [groups] and [defaults]"),
        ("[groups]\nweb = 1", "groups: web: must be a list of host names or globs"),
        ("[[rule]\n", "rules: not valid TOML: "),
    ],
)
def test_errors_outside_the_fields(text: str, expected: str) -> None:
    assert error(text).startswith(expected)


def test_nothing_is_returned_when_one_rule_of_many_is_bad() -> None:
    text = user("warning = 1") + '[[rule]]\nname = "s"\nmetric = "m"\nwarning = "x"\n'
    assert error(text) == "rule s: warning: must be a number"


def test_parsed_tables_load_like_text() -> None:
    rules = load_rules({"rule": [{"name": "r", "metric": "m", "critical": 3}]}, defaults={})
    assert [r.name for r in rules] == ["r"]


def test_absence_rules_default_to_three_intervals() -> None:
    rules = load_rules('[[rule]]\nname = "gone"\nkind = "absence"\nhosts = ["edge-*"]', defaults={})
    rule = rules.get("gone")
    assert rule is not None
    assert (rule.op, rule.critical, rule.warning, rule.metric) == (">=", 3, None, "")
    assert rules.absence == (rule,)
    assert rules.for_metric("") == ()


# --- built-in defaults -----------------------------------------------------------------------------


def test_builtins_load_and_are_indexed_by_metric() -> None:
    rules = load_rules("")
    assert [r.name for r in rules] == list(BUILTIN_RULES)
    assert all(r.enabled for r in rules)
    assert [r.name for r in rules.for_metric("node_cpu_count")] == ["load_per_core"]
    assert [r.name for r in rules.for_metric("edgewatch_plugin_requests_total")] == ["plugin_error_rate"]
    assert [r.name for r in rules.absence] == ["host_down"]


def test_builtins_can_be_switched_off_in_both_ways() -> None:
    rules = load_rules('[defaults]\ndisabled = ["swap_used"]\n[defaults.cpu_high]\nenabled = false\n')
    off = {r.name for r in rules if not r.enabled}
    assert off == {"swap_used", "cpu_high"}
    assert rules.for_metric("edgewatch_cpu_usage_percent") == ()
    assert len(rules) == len(BUILTIN_RULES)  # still listed


def test_builtin_thresholds_can_be_overridden() -> None:
    rules = load_rules('[defaults.cpu_high]\nwarning = 70\nfor = "10m"\n')
    rule = rules.get("cpu_high")
    assert rule is not None
    assert (rule.warning, rule.critical, rule.for_s, rule.clear) == (70, 95, 600, 70)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[defaults.cpu_high]\nwarning = 99", "rule cpu_high: critical: must not be below warning (99)"),
        ('[defaults.cpu_high]\nwarning = "x"', "rule cpu_high: warning: must be a number"),
        ('[defaults.cpu_high]\nname = "x"', "rule cpu_high: name: a built-in rule cannot be renamed"),
        ("[defaults]\ncpu_high = 1", "rule cpu_high: must be a table ([defaults.cpu_high])"),
        ('[defaults]\ndisabled = ["cpu_hgh"]', "defaults: cpu_hgh: not a built-in rule; use one of cpu_high"),
        ("[defaults.nope]\nenabled = false", "defaults: nope: not a built-in rule"),
        ('[defaults]\ndisabled = "cpu_high"', "defaults: disabled: must be a list of built-in rule names"),
        (
            '[[rule]]\nname = "cpu_high"\nmetric = "m"\nwarning = 1',
            "rule cpu_high: name: used twice; change it with [defaults.cpu_high]",
        ),
    ],
)
def test_default_errors(text: str, expected: str) -> None:
    assert error(text, defaults=BUILTIN_RULES).startswith(expected)


def test_a_broken_override_leaves_the_caller_with_its_previous_set() -> None:
    running = load_rules("")
    with pytest.raises(RuleError):
        running = load_rules("[defaults.memory_high]\ncritical = 1")
    assert running.get("memory_high") is not None


# --- selecting series ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ("/", "/", True),
        ("/", "/home", False),
        ("!tmpfs", "ext4", True),
        ("!tmpfs", "tmpfs", False),
        ("~^sd", "sda", True),
        ("~^sd", "nvme0n1", False),
        ("~sd", "xsdy", True),  # search, not full match
        ("!~^loop", "loop0", False),
        ("!~^loop", "sda", True),
        ("=!odd", "!odd", True),
        ("=~x", "~x", True),
        ("", "", True),
        ("!", "x", True),
    ],
)
def test_matchers(text: str, value: str, expected: bool) -> None:
    assert Matcher.parse("l", text).matches({"l": value}) is expected


def test_a_missing_label_is_the_empty_string() -> None:
    assert Matcher.parse("fstype", "!tmpfs").matches({})
    assert not Matcher.parse("fstype", "ext4").matches({})


def test_selects_by_metric_labels_hosts_and_groups() -> None:
    rule = one(GOOD, "root_fs")
    labels = {"mountpoint": "/", "fstype": "ext4", "device": "/dev/sda1"}
    metric = "edgewatch_filesystem_used_percent"
    assert rule.selects(metric, "web-3", labels)
    assert rule.selects(metric, "edge-1", labels)
    assert rule.selects(metric, "db1", labels)
    assert not rule.selects(metric, "db2", labels)
    assert not rule.selects(metric, "edge-10", labels)
    assert not rule.selects("node_load1", "web-3", labels)
    assert not rule.selects(metric, "web-3", {**labels, "fstype": "tmpfs"})
    assert not rule.selects(metric, "web-3", {**labels, "device": "/dev/nvme0n1p1"})
    assert rule.alert_labels("web-3", {**labels, "team": "x"}) == {**labels, "host": "web-3", "team": "ops"}


def test_a_rule_without_hosts_selects_every_host() -> None:
    assert one(user("warning = 1")).selects_host("anything")


# --- levels and hysteresis -------------------------------------------------------------------------


def test_levels_and_clear_for_both_directions() -> None:
    high = one(user("warning = 80\ncritical = 95\nclear = 70"))
    assert [high.level_for(v) for v in (50, 80, 80.1, 95.5)] == [None, None, "warning", "critical"]
    assert high.holds(75)
    assert not high.holds(70)
    low = one(user('op = "<="\nwarning = 14\ncritical = 3'))
    assert [low.level_for(v) for v in (20, 14, 5, 3)] == [None, "warning", "warning", "critical"]
    assert low.clear == 14
    assert low.holds(14)
    assert not low.holds(14.5)
    assert low.threshold_of("critical") == 3
    assert low.threshold_of(None) is None


# --- templates -------------------------------------------------------------------------------------


def test_templates_render_every_field() -> None:
    rule = one(GOOD, "root_fs")
    context = {"host": "web-1", "level": "critical", "severity": "error", "labels": {"mountpoint": "/"}}
    text = rule.summary.render(value=91.234, threshold=85, **context)
    assert text == "/ on web-1: 91.2 % (critical/error, over 85)"


@pytest.mark.parametrize(
    "template",
    [
        "{value.__class__}",
        "{value.real}",
        "{labels[mountpoint]}",
        "{host.__class__.__mro__}",
        "{value[0]}",
        "{0}",
        "{}",
        "{host!a}",
        "{host:>99}",
        "{value:{host}}",
        "{value:999999999}",
        "{value:.999f}",
        "{value:x<10}",
        "{value:d}",
        "{__import__}",
    ],
)
def test_templates_cannot_reach_attributes_or_inflate(template: str) -> None:
    with pytest.raises(ValueError, match=r"\{"):
        Template.parse(template)


def test_template_values_are_not_templates_themselves() -> None:
    template = Template.parse("{labels.unit} {labels.__dict__} {host}")
    assert template.render(host="{value.__class__}", labels={"unit": "{0}"}) == "{0}  {value.__class__}"


def test_template_numbers_and_missing_values() -> None:
    template = Template.parse("{value:.1%} {threshold:,.0f} {value:+08.2f} {{literal}}")
    assert template.render(value=0.1234, threshold=1234567) == "12.3% 1,234,567 +0000.12 {literal}"
    assert Template.parse("{value:.1f} / {threshold}").render() == "n/a / n/a"


def test_builtin_templates_render() -> None:
    for rule in load_rules(""):
        text = rule.summary.render(value=1.5, threshold=1, host="h", level="warning", labels={"plugin": "p"})
        assert "h" in text
        assert "{" not in text


# --- docs/rules.md ---------------------------------------------------------------------------------


def _section(heading: str) -> str:
    start = DOC.index(heading)
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end >= 0 else len(DOC)]


def _default_text(default: object, kind: str) -> str:
    if default is None:
        return "(none)"
    if isinstance(default, bool):
        return str(default).lower()
    if kind == "duration":
        return f"{default:g} s"
    if default == "":
        return "(empty)"
    return str(default)


def test_every_field_is_documented_with_its_type_and_default() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+?) \| `([^`]*)` \|", _section("## Fields"), re.MULTILINE)
    assert [key for key, _, _ in rows] == [f.key for f in FIELDS]
    for (key, kind, default), f in zip(rows, FIELDS):
        assert kind == f.kind, key
        assert default == _default_text(f.default, f.kind), key


def test_every_builtin_rule_is_documented_with_its_thresholds() -> None:
    rows = re.findall(
        r"^\| `([a-z_]+)` \| ([^|]+) \| [^|]+ \| `([<>=]+)` \| ([^|]*) \| ([^|]*) \|",
        _section("## Built-in rules"),
        re.MULTILINE,
    )
    rules = load_rules("")
    assert [name for name, *_ in rows] == [r.name for r in rules]
    for name, selects, op, warning, critical in rows:
        rule = rules.get(name)
        assert rule is not None
        assert rule.op == op, name
        assert (float(warning) if warning.strip() else None) == rule.warning, name
        assert (float(critical) if critical.strip() else None) == rule.critical, name
        assert rule.metric in selects, name
        assert rule.divide_by in selects, name


def test_the_documented_example_loads() -> None:
    example = re.search(r"```toml\n(.*?)```", DOC, re.DOTALL)
    assert example is not None
    rules = load_rules(example[1])
    assert isinstance(rules, RuleSet)
    cpu = rules.get("cpu_high")
    assert cpu is not None
    assert cpu.warning == 90
    assert cpu.for_s == 600
    assert not next(r for r in rules if r.name == "swap_used").enabled
