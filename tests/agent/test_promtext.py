"""The Prometheus text format parser on real exporters' output and on tricky and broken input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.agent.promtext import parse

NODE_EXPORTER = """\
# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.1851e-05
go_gc_duration_seconds{quantile="0.5"} 4.0052e-05
go_gc_duration_seconds{quantile="1"} 0.000317538
go_gc_duration_seconds_sum 0.012741293
go_gc_duration_seconds_count 213
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 1.23445641e+06
node_cpu_seconds_total{cpu="0",mode="iowait"} 1234.56
# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 4.2089017344e+10
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.52
# HELP node_scrape_collector_duration_seconds node_exporter: Duration of a collector scrape.
# TYPE node_scrape_collector_duration_seconds gauge
node_scrape_collector_duration_seconds{collector="cpu"} 0.000523481
"""

# prometheus_client (Python) 0.20, format 0.0.4: floats everywhere, _created gauges, histograms.
CLIENT_PYTHON = """\
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 324.0
python_gc_objects_collected_total{generation="1"} 37.0
# HELP python_info Python platform information
# TYPE python_info gauge
python_info{implementation="CPython",major="3",minor="11",patchlevel="7",version="3.11.7"} 1.0
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.71234567891e+09
# HELP requests_total Requests handled
# TYPE requests_total counter
requests_total{path="/api"} 42.0
# HELP requests_created Requests handled
# TYPE requests_created gauge
requests_created{path="/api"} 1.7123456789012e+09
# HELP request_latency_seconds Request latency
# TYPE request_latency_seconds histogram
request_latency_seconds_bucket{le="0.005",method="GET"} 0.0
request_latency_seconds_bucket{le="0.1",method="GET"} 2.0
request_latency_seconds_bucket{le="+Inf",method="GET"} 3.0
request_latency_seconds_count{method="GET"} 3.0
request_latency_seconds_sum{method="GET"} 0.42
"""

# prom-client (Node.js) 15: integers, blank lines between families.
PROM_CLIENT = """\
# HELP process_cpu_user_seconds_total Total user CPU time spent in seconds.
# TYPE process_cpu_user_seconds_total counter
process_cpu_user_seconds_total 0.123456

# HELP nodejs_eventloop_lag_seconds Lag of event loop in seconds.
# TYPE nodejs_eventloop_lag_seconds gauge
nodejs_eventloop_lag_seconds 0

# HELP nodejs_heap_space_size_total_bytes Process heap space size total from Node.js in bytes.
# TYPE nodejs_heap_space_size_total_bytes gauge
nodejs_heap_space_size_total_bytes{space="read_only"} 0
nodejs_heap_space_size_total_bytes{space="new"} 1048576

# HELP nodejs_version_info Node.js version info.
# TYPE nodejs_version_info gauge
nodejs_version_info{version="v18.17.0",major="18",minor="17",patch="0"} 1

# HELP http_request_duration_seconds Duration of HTTP requests in seconds
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1",route="/",code="200"} 5
http_request_duration_seconds_bucket{le="+Inf",route="/",code="200"} 6
http_request_duration_seconds_sum{route="/",code="200"} 0.5
http_request_duration_seconds_count{route="/",code="200"} 6
"""


def _by_name(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, str]]:
    return {(n, tuple(sorted(labels.items()))): (v, t) for n, labels, v, t in parse(text)}


def test_node_exporter_output() -> None:
    got = _by_name(NODE_EXPORTER)
    assert len(got) == 10
    assert got[("node_cpu_seconds_total", (("cpu", "0"), ("mode", "idle")))] == (1234456.41, "counter")
    fs = (("device", "/dev/sda1"), ("fstype", "ext4"), ("mountpoint", "/"))
    assert got[("node_filesystem_avail_bytes", fs)] == (42089017344.0, "gauge")
    # a summary's quantiles, _sum and _count are separate series of the summary family
    assert got[("go_gc_duration_seconds", (("quantile", "0.5"),))] == (4.0052e-05, "summary")
    assert got[("go_gc_duration_seconds_sum", ())] == (0.012741293, "summary")
    assert got[("go_gc_duration_seconds_count", ())] == (213.0, "summary")


def test_client_python_output() -> None:
    got = _by_name(CLIENT_PYTHON)
    assert got[("requests_total", (("path", "/api"),))] == (42.0, "counter")
    assert got[("requests_created", (("path", "/api"),))] == (1712345678.9012, "gauge")
    info = dict(next(labels for n, labels, _, _ in parse(CLIENT_PYTHON) if n == "python_info"))
    assert info["version"] == "3.11.7"
    buckets = [(labels["le"], v, t) for n, labels, v, t in parse(CLIENT_PYTHON) if n.endswith("_bucket")]
    assert buckets == [("0.005", 0.0, "histogram"), ("0.1", 2.0, "histogram"), ("+Inf", 3.0, "histogram")]
    assert got[("request_latency_seconds_sum", (("method", "GET"),))] == (0.42, "histogram")


def test_prom_client_output() -> None:
    samples = parse(PROM_CLIENT)
    assert len(samples) == 9
    got = _by_name(PROM_CLIENT)
    assert got[("nodejs_heap_space_size_total_bytes", (("space", "new"),))] == (1048576.0, "gauge")
    labels = (("code", "200"), ("route", "/"))
    assert got[("http_request_duration_seconds_count", labels)] == (6.0, "histogram")
    assert got[("process_cpu_user_seconds_total", ())] == (0.123456, "counter")


def test_escapes_specials_timestamps_and_whitespace() -> None:
    text = (
        "# just a comment, and an empty one:\n"
        "#\n"
        'msg{text="say \\"hi\\"\\\\ now\\nplease",city="Zürich"} 1\n'
        'odd{a="x,}={y}",b="#not a comment"} 2 1712345678000\n'
        'spaced { a = "1" , b="2", } 3\n'
        "empty{} -4 -1000\n"
        'temps{kind="nan"} NaN\n'
        'temps{kind="hot"} +Inf\n'
        'temps{kind="cold"} -Inf\n'
        "sci 1.5e-3\r\n"
        "\t  trailing 7   \n"
    )
    got = parse(text)
    assert got[0] == ("msg", {"text": 'say "hi"\\ now\nplease', "city": "Zürich"}, 1.0, "untyped")
    assert got[1] == ("odd", {"a": "x,}={y}", "b": "#not a comment"}, 2.0, "untyped")
    assert got[2] == ("spaced", {"a": "1", "b": "2"}, 3.0, "untyped")
    assert got[3] == ("empty", {}, -4.0, "untyped")
    assert math.isnan(got[4][2])
    assert got[5][2] == math.inf
    assert got[6][2] == -math.inf
    assert got[7] == ("sci", {}, 0.0015, "untyped")
    assert got[8] == ("trailing", {}, 7.0, "untyped")


def test_suffixes_only_join_histogram_and_summary_families() -> None:
    text = "# TYPE queue gauge\nqueue_count 3\n# TYPE lat summary\nlat_count 2\nlat_bucket 1\n"
    assert [t for _, _, _, t in parse(text)] == ["untyped", "summary", "untyped"]


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ('ok 1\nbroken{a="b" 1\n', 2, "label"),
        ("ok 1\n\nbroken{a=b} 1\n", 3, "label"),
        ('broken "x"\n', 1, "not a number"),
        ("broken 1 2 3\n", 1, "metric name"),
        ("broken abc\n", 1, "not a number"),
        ("broken 1_000\n", 1, "not a number"),
        ("broken 1 1.5\n", 1, "timestamp"),
        ("broken\n", 1, "metric name"),
        ("1broken 1\n", 1, "metric name"),
        ('broken{a="\\x"} 1\n', 1, "escape"),
        ('broken{a="1",a="2"} 1\n', 1, "twice"),
        ('broken{a="1" b="2"} 1\n', 1, "label"),
        ("# TYPE broken bogus\nbroken 1\n", 1, "unknown metric type"),
        ("# TYPE broken gauge\n# TYPE broken counter\n", 2, "second TYPE"),
        ("# HELP 9broken text\n", 1, "metric name"),
    ],
)
def test_malformed_lines_name_their_line(text: str, line: int, problem: str) -> None:
    with pytest.raises(ValueError, match=rf"line {line}: .*{problem}"):
        parse(text)


def test_series_cap() -> None:
    text = "".join(f'm{{i="{i}"}} {i}\n' for i in range(11))
    assert len(parse(text, max_series=11)) == 11
    with pytest.raises(ValueError, match="more than 10 series"):
        parse(text, max_series=10)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


names = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True)
label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True)
values = st.floats(allow_nan=False) | st.integers(-(2**60), 2**60).map(float)


@given(
    samples=st.lists(
        st.tuples(names, st.dictionaries(label_names, st.text(max_size=20), max_size=4), values),
        max_size=20,
    )
)
def test_what_an_exporter_writes_is_read_back(
    samples: list[tuple[str, dict[str, str], float]],
) -> None:
    lines = []
    for name, labels, value in samples:
        pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{pairs}}} {value!r}" if labels else f"{name} {value!r}")
    got = parse("\n".join(lines))
    assert [(n, labels, v) for n, labels, v, _ in got] == samples
