"""``/federate``: the newest sample of every series in the Prometheus text format (Prometheus itself
scrapes it in test_interop.py)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from edgewatch.aggregator.federate import parse_selector, render
from edgewatch.aggregator.latest import Latest
from edgewatch.aggregator.promlabels import LabelCache
from edgewatch.protocol import Batch, Kind, Series

from .conftest import T0, batch, harness


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def text_of(latest: Latest, **kw: object) -> str:
    return render(latest.snapshot(), LabelCache(), **kw)  # type: ignore[arg-type]


def test_families_have_help_and_type_and_values_their_timestamp() -> None:
    latest = Latest()
    cpu = Series("node_cpu_seconds_total", {"cpu": "0", "mode": "idle"}, Kind.COUNTER)
    load = Series("node_load1")
    latest.observe("web-2", Batch("web-2", 1, 1, [T0], [load, cpu], [[0.5], [1234]]), T0)
    latest.observe("web-1", Batch("web-1", 1, 1, [T0 + 5], [load], [[1.25]]), T0)
    assert text_of(latest) == (
        "# HELP node_cpu_seconds_total node_cpu_seconds_total: the newest sample of each edgewatch host.\n"
        "# TYPE node_cpu_seconds_total counter\n"
        f'node_cpu_seconds_total{{cpu="0",host="web-2",mode="idle"}} 1234 {T0}\n'
        "# HELP node_load1 node_load1: the newest sample of each edgewatch host.\n"
        "# TYPE node_load1 gauge\n"
        f'node_load1{{host="web-1"}} 1.25 {T0 + 5}\n'
        f'node_load1{{host="web-2"}} 0.5 {T0}\n'
    )


def test_label_values_are_escaped_and_odd_names_fixed() -> None:
    latest = Latest()
    s = Series("disk.io", {"path": 'C:\\x "y"\nz', "host": "inner", "__x": "1"})
    latest.observe("h", Batch("h", 1, 1, [1], [s], [[math.nan]]), 0)
    latest.observe("h", Batch("h", 1, 2, [2], [Series("a"), Series("b")], [[math.inf], [-math.inf]]), 0)
    lines = text_of(latest).splitlines()
    assert 'disk_io{exported_host="inner",host="h",path="C:\\\\x \\"y\\"\\nz",x__x="1"} NaN 1' in lines
    assert 'a{host="h"} +Inf 2' in lines
    assert 'b{host="h"} -Inf 2' in lines


def test_a_name_that_is_a_counter_on_one_host_and_a_gauge_on_another_is_untyped() -> None:
    latest = Latest()
    latest.observe("a", Batch("a", 1, 1, [1], [Series("x", kind=Kind.COUNTER)], [[1]]), 0)
    latest.observe("b", Batch("b", 1, 1, [1], [Series("x")], [[1]]), 0)
    assert "# TYPE x untyped" in text_of(latest)


def test_back_fill_never_replaces_a_newer_value_and_gaps_keep_the_last_one() -> None:
    latest = Latest()
    s, t = Series("x"), Series("y")
    latest.observe("h", Batch("h", 1, 5, [5000, 6000], [s, t], [[5, 6], [7, None]]), 0)
    latest.observe("h", Batch("h", 1, 1, [1000], [s, t], [[1], [2]]), 0)  # back-log
    latest.observe("h", Batch("h", 1, 6, [7000], [s, t], [[None], [None]]), 0)  # a gap
    text = text_of(latest)
    assert 'x{host="h"} 6 6000' in text
    assert 'y{host="h"} 7 5000' in text


def test_a_frame_is_held_until_one_does_not_replace_it_and_a_copy_never_changes_what_is_held() -> None:
    latest = Latest()
    s, t = Series("x"), Series("y")
    latest.observe("h", Batch("h", 1, 1, [1000], [s, t], [[1], [2]]), 0)
    latest.observe("h", Batch("h", 1, 2, [2000], [s, t], [[3], [4]]), 0)  # replaces the one before
    held = latest.hosts["h"]
    assert held.values == {}  # nothing folded yet: the newest frame is held
    assert 'x{host="h"} 3 2000' in text_of(latest)
    assert (held.values, held.pending is None) == ({}, False)  # the copy (in a thread) changed nothing
    latest.observe("h", Batch("h", 1, 3, [3000], [s, t], [[5], [None]]), 0)  # a gap: 2000 goes in
    assert held.values == {s: (2000, 3), t: (2000, 4)}
    text = text_of(latest)
    assert 'x{host="h"} 5 3000' in text
    assert 'y{host="h"} 4 2000' in text
    assert latest.series_count == 2


def test_old_series_are_left_out() -> None:
    latest = Latest()
    latest.observe("h", Batch("h", 1, 1, [1000], [Series("old")], [[1]]), 0)
    latest.observe("h", Batch("h", 1, 2, [9000], [Series("new")], [[1]]), 0)
    text = text_of(latest, since_ms=5000)
    assert "new{" in text
    assert "old" not in text


@pytest.mark.parametrize(
    ("selector", "shown"),
    [
        ("node_load1", {"node_load1/web-1", "node_load1/db-1"}),
        ('{host="db-1"}', {"node_load1/db-1", "up/db-1"}),
        ('{host=~"web-.*"}', {"node_load1/web-1", "up/web-1"}),
        ('{host=~"web"}', set()),  # the whole value, as in Prometheus
        ('up{host!="web-1"}', {"up/db-1"}),
        ('node_load1{host!~"w.*"}', {"node_load1/db-1"}),
        ('{__name__="up", host="web-1"}', {"up/web-1"}),
    ],
)
def test_match_selects_series_as_prometheus_does(selector: str, shown: set[str]) -> None:
    latest = Latest()
    for host in ("web-1", "db-1"):
        latest.observe(host, Batch(host, 1, 1, [1], [Series("node_load1"), Series("up")], [[1], [1]]), 0)
    text = text_of(latest, selectors=[parse_selector(selector)])
    got = {
        line.split("{")[0] + "/" + line.split('host="')[1].split('"')[0]
        for line in text.splitlines()
        if not line.startswith("#")
    }
    assert got == shown


@pytest.mark.parametrize("bad", ["", "{}", '{host=~".*"}', "up{host=web}", "9up", '{host=~"("}'])
def test_a_bad_selector_is_one_sentence(bad: str) -> None:
    with pytest.raises(ValueError, match=r"match\[\]=") as info:
        parse_selector(bad)
    assert "\n" not in str(info.value)


def test_federate_over_http_needs_a_token_and_filters(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await h.add_agent("web-1")
            await h.add_agent("web-2")
            for seq, host in enumerate(("web-1", "web-2"), 1):
                assert (await h.push(batch(host, seq, [h.clock.ms - 20_000, h.clock.ms - 10_000])))[0] == 200
            async with h.client.get("/federate") as r:
                assert r.status == 401
                assert "API token" in (await r.json())["error"]
            token = await h.api_token()
            async with h.client.get("/federate", headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200
                assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
                text = await r.text()
            at = h.clock.ms - 10_000
            load, _, received = (col[0] for col in batch("x", 1, [at]).values)
            assert f'node_load1{{host="web-1"}} {load} {at}' in text
            assert f'node_network_receive_bytes_total{{device="eth0",host="web-2"}} {received} {at}' in text
            assert text.count("# TYPE ") == 3
            status, text = await h.get("/federate", token, **{"match[]": '{host="web-2"}'})
            assert status == 200
            assert "web-1" not in text
            assert text.count("\n") == 9
            status, body = await h.get("/federate", token, **{"match[]": "{"})
            assert status == 400
            assert "match[]" in body["error"]
            h.clock.ms += 3_600_000  # federate.max_age (10 minutes) later
            assert await h.get("/federate", token) == (200, "")

    run(scenario())


def test_metrics_public_opens_federate_too(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, metrics__public=True) as h, h.client.get("/federate") as r:
            assert r.status == 200

    run(scenario())


def test_after_a_restart_the_newest_values_come_from_the_database(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await h.add_agent("web-1")
            stamps = [h.clock.ms - 30_000, h.clock.ms - 20_000]
            assert (await h.push(batch("web-1", 1, stamps)))[0] == 200
            await h.store.maintain(h.clock.ms + 3_600_000)  # compacted into a raw block
            assert (await h.push(batch("web-1", 2, [h.clock.ms - 10_000])))[0] == 200  # stays in recent
            token = await h.api_token()
            _, before = await h.get("/federate", token)
        async with harness(tmp_path) as h:
            for _ in range(100):
                _, after = await h.get("/federate", token)
                if after:
                    break
                await asyncio.sleep(0.02)
            assert after == before
            load = batch("x", 1, [h.clock.ms - 10_000]).values[0][0]
            assert f'node_load1{{host="web-1"}} {load} {h.clock.ms - 10_000}' in after

    run(scenario())
