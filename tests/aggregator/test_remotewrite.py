"""Remote write: the wire format, the on-disk queue, the sender's retries, and the aggregator
forwarding what it ingests to a receiver on 127.0.0.1 (real TSDBs: test_interop.py)."""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path
from typing import Any

import cramjam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.aggregator.config import load
from edgewatch.aggregator.metrics import Registry
from edgewatch.aggregator.remotewrite import forwarder
from edgewatch.aggregator.remotewrite.forwarder import FORWARDER, requests_of
from edgewatch.aggregator.remotewrite.segments import HEADER, DiskQueue, Pending
from edgewatch.aggregator.remotewrite.sender import Sender
from edgewatch.aggregator.remotewrite.settings import parse_remote_write
from edgewatch.aggregator.remotewrite.wire import (
    LabelBytes,
    compress,
    decode_request,
    encode_labels,
    series_fields,
    varint,
)
from edgewatch.protocol import Batch, Kind, Series
from edgewatch.protocol.settings import ConfigError

from .conftest import T0, batch, harness
from .interop_services import RemoteWriteReceiver
from .notify_services import closed_port


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


# --- the wire format ----------------------------------------------------------------------------


def test_a_label_and_a_sample_are_the_protobuf_bytes_prometheus_reads() -> None:
    # Label{name: "a", value: "b"} inside TimeSeries.labels, by hand from the .proto
    assert encode_labels("m", (("a", "b"),)) == (
        b"\x0a\x0d" + b"\x0a\x08__name__\x12\x01m" + b"\x0a\x06" + b"\x0a\x01a\x12\x01b"
    )
    assert varint(1) == b"\x01"
    assert varint(300) == b"\xac\x02"
    assert varint(-1) == b"\xff" * 9 + b"\x01"  # int64 -1: ten bytes
    b = Batch("web-1", 1, 1, [1000], [Series("up")], [[1.0]])
    [(field, n)] = series_fields("web-1", b, LabelBytes())
    sample = b"\x12\x0c" + b"\x09\x00\x00\x00\x00\x00\x00\xf0\x3f" + b"\x10\xe8\x07"  # 1.0 at 1000 ms
    assert n == 1
    assert field.endswith(sample)
    assert field[:1] == b"\x0a"  # WriteRequest.timeseries


def test_series_carry_name_labels_and_host_sorted_and_gaps_are_left_out() -> None:
    series = [
        Series("node_filesystem_avail_bytes", {"mountpoint": "/", "fstype": "ext4"}),
        Series("disk.io", {"host": "inner", "0dev": "sda", "empty": ""}, Kind.COUNTER),
        Series("node_load1"),
    ]
    b = Batch("web-1", 1, 1, [1000, 2000], series, [[1.5, 2.5], [None, 7], [None, None]])
    fields = series_fields("web-1", b, LabelBytes())
    assert [n for _, n in fields] == [2, 1]
    got = decode_request(compress(b"".join(f for f, _ in fields)))
    assert got == [
        (
            {"__name__": "node_filesystem_avail_bytes", "fstype": "ext4", "host": "web-1", "mountpoint": "/"},
            [(1000, 1.5), (2000, 2.5)],
        ),
        ({"__name__": "disk_io", "_0dev": "sda", "exported_host": "inner", "host": "web-1"}, [(2000, 7.0)]),
    ]
    for labels, _ in got:  # sorted by name, as Prometheus' TSDB expects
        assert list(labels) == sorted(labels)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-(2**40), 2**45), min_size=1, max_size=5, unique=True).map(sorted),
    st.lists(
        st.one_of(st.none(), st.floats(allow_nan=False), st.integers(-(2**53), 2**53)), min_size=5, max_size=5
    ),
)
def test_every_sample_survives_the_round_trip(stamps: list[int], values: list[Any]) -> None:
    column = values[: len(stamps)]
    b = Batch("h", 1, 1, stamps, [Series("x", {"k": "v"})], [column])
    fields = series_fields("h", b, LabelBytes())
    expected = [(t, float(v)) for t, v in zip(stamps, column) if v is not None]
    if not expected:
        assert fields == []
        return
    [(labels, samples)] = decode_request(compress(b"".join(f for f, _ in fields)))
    assert labels == {"__name__": "x", "k": "v", "host": "h"}
    assert samples == expected


def test_nan_and_infinities_are_sent_as_doubles() -> None:
    b = Batch("h", 1, 1, [1, 2, 3], [Series("x")], [[math.nan, math.inf, -math.inf]])
    [(_, samples)] = decode_request(compress(series_fields("h", b, LabelBytes())[0][0]))
    assert math.isnan(samples[0][1])
    assert samples[1:] == [(2, math.inf), (3, -math.inf)]


def test_requests_hold_at_most_batch_size_samples() -> None:
    fields = [(b"\x0a\x00", 3)] * 10
    reqs = requests_of(fields, 7, 123)
    assert [r.samples for r in reqs] == [6, 6, 6, 6, 6]
    assert all(r.queued_ms == 123 for r in reqs)
    assert bytes(cramjam.snappy.decompress_raw(reqs[0].payload)) == b"\x0a\x00" * 2
    assert [r.samples for r in requests_of([(b"", 50)], 7, 0)] == [50]  # one big series goes alone


# --- the on-disk queue ---------------------------------------------------------------------------


def pending(i: int, size: int = 100) -> Pending:
    return Pending(bytes([i % 256]) * size, i + 1, 1000 + i)


def test_the_queue_hands_out_records_in_order_and_resumes_at_the_cursor(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q", 1 << 20)
    assert q.append([pending(i) for i in range(5)]) == 0
    assert q.samples == 15
    assert q.bytes == 5 * (HEADER.size + 100)
    assert q.oldest_ms == 1000
    for i in range(2):
        r = q.peek()
        assert r is not None
        assert q.read(r) == bytes([i]) * 100
        assert q.ack(r)
    assert q.oldest_ms == 1002
    q.close()
    q.close()  # safe twice
    q = DiskQueue(tmp_path / "q", 1 << 20)  # a restart
    r = q.peek()
    assert r is not None
    assert q.read(r) == bytes([2]) * 100
    assert q.samples == 3 + 4 + 5
    q.append([pending(9)])
    got = []
    while (r := q.peek()) is not None:
        got.append(q.read(r))
        q.ack(r)
    assert got == [bytes([i]) * 100 for i in (2, 3, 4, 9)]
    assert q.bytes == 0
    assert q.oldest_ms is None
    q.close()


def test_a_torn_tail_is_cut_off_at_the_start(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q", 1 << 20)
    q.append([pending(0), pending(1)])
    q.close()
    [segment] = sorted((tmp_path / "q").glob("*.seg"))
    with segment.open("ab") as f:
        f.write(HEADER.pack(100, 1, 0, 0) + b"half a record")  # a crash mid-write
    q = DiskQueue(tmp_path / "q", 1 << 20)
    assert q.samples == 3
    assert segment.stat().st_size == 2 * (HEADER.size + 100)
    q.append([pending(2)])
    records = []
    while (r := q.peek()) is not None:
        records.append(q.read(r))
        q.ack(r)
    assert records == [bytes([i]) * 100 for i in range(3)]
    q.close()


def test_over_the_bound_the_oldest_segments_go_and_are_counted(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q", 10_000, segment_bytes=2_000)
    first = None
    dropped = 0
    for i in range(40):
        dropped += q.append([pending(i, 480)])  # 500 bytes a record
        if first is None:
            first = q.peek()
    assert q.bytes <= 10_000
    assert dropped > 0
    assert dropped + q.samples == sum(i + 1 for i in range(40))  # every sample is sent or counted
    assert first is not None
    assert not q.ack(first)  # dropped meanwhile: the sender learns it
    assert q.read(first) is None
    r = q.peek()
    assert r is not None
    assert r.samples > first.samples  # the newest data stays
    assert len(list((tmp_path / "q").glob("*.seg"))) <= 6
    q.close()


def test_sent_segments_are_deleted(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q", 1 << 20, segment_bytes=1_000)
    for i in range(20):
        q.append([pending(i, 480)])
    while (r := q.peek()) is not None:
        q.ack(r)
    assert len(list((tmp_path / "q").glob("*.seg"))) == 1  # the one being written
    q.close()


# --- the sender ----------------------------------------------------------------------------------


def _endpoint(url: str, **kw: Any) -> Any:
    [e] = parse_remote_write([{"url": url, **kw}])
    return e


async def _send_all(
    receiver: RemoteWriteReceiver, tmp: Path, **kw: Any
) -> tuple[dict[str, int], list[float]]:
    endpoint = _endpoint(receiver.write_url, max_backoff="2s", **kw)
    q = DiskQueue(tmp / "q", 1 << 20)
    for ts in (1000, 2000):  # two requests
        b = Batch("web-1", 1, 1, [ts], [Series("up")], [[1]])
        q.append(requests_of(series_fields("web-1", b, LabelBytes()), 1, 0))
    counts: dict[str, int] = {}
    waits: list[float] = []

    def count(outcome: str, n: int) -> None:
        counts[outcome] = counts.get(outcome, 0) + n

    async def sleep(s: float) -> None:
        waits.append(s)

    task = asyncio.create_task(Sender(endpoint, q, count, sleep=sleep).run())
    for _ in range(200):
        if q.peek() is None:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    q.close()
    return counts, waits


def test_5xx_and_429_are_retried_with_growing_back_off_and_nothing_is_lost(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with RemoteWriteReceiver() as rw:
            rw.fail(503, 3)
            rw.fail(429, 1, retry_after="1")
            counts, waits = await _send_all(rw, tmp_path)
            assert counts == {"retried": 4, "sent": 2}
            assert waits == [0.5, 1.0, 2.0, 2.0]  # doubling up to max_backoff; Retry-After 1 s is less
            assert rw.series("up", host="web-1") == {1000: 1.0, 2000: 1.0}
            assert rw.headers[-1]["User-Agent"].startswith("edgewatch/")

    run(scenario())


def test_other_4xx_drop_the_request_and_count_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with RemoteWriteReceiver() as rw:
            rw.fail(400)
            counts, waits = await _send_all(rw, tmp_path)
            assert counts == {"rejected": 1, "sent": 1}
            assert waits == []
            assert rw.series("up", host="web-1") == {2000: 1.0}

    run(scenario())


def test_credentials_and_headers_are_sent(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with RemoteWriteReceiver() as rw:
            await _send_all(rw, tmp_path, bearer_token="s3cret", headers={"X-Scope-OrgID": "t1"})
            assert rw.headers[0]["Authorization"] == "Bearer s3cret"
            assert rw.headers[0]["X-Scope-OrgID"] == "t1"

    run(scenario())


def test_a_refused_connection_is_retried(tmp_path: Path) -> None:
    async def scenario() -> None:
        endpoint = _endpoint(f"http://127.0.0.1:{closed_port()}/api/v1/write")
        q = DiskQueue(tmp_path / "q", 1 << 20)
        q.append([pending(0)])
        counts: dict[str, int] = {}
        slept = asyncio.Event()

        async def sleep(s: float) -> None:
            slept.set()
            await asyncio.sleep(3600)

        def count(outcome: str, n: int) -> None:
            counts[outcome] = counts.get(outcome, 0) + n

        task = asyncio.create_task(Sender(endpoint, q, count, sleep=sleep).run())
        await asyncio.wait_for(slept.wait(), 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert counts == {"retried": 1}
        assert q.samples == 1  # still queued
        q.close()

    run(scenario())


# --- the settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('url = "ftp://x"', "remote_write 1: url: give the endpoint's http:// or https:// URL"),
        ('url = "http://x/w"\nbatch_size = 0', "remote_write 1: batch_size: must be a whole number"),
        ('url = "http://x/w"\nmax_queue_bytes = "10KB"', "remote_write 1: max_queue_bytes: must be a size"),
        ('url = "http://x/w"\ntimeout = "soon"', "remote_write 1: timeout: use a number of seconds"),
        (
            'url = "http://x/w"\nbearer_token = "a"\nbasic_auth = { username = "u" }',
            "remote_write 1: bearer_token: give",
        ),
        (
            'url = "http://x/w"\nheaders = { Content-Encoding = "gzip" }',
            "remote_write 1: headers: Content-Encoding is set",
        ),
        ('url = "http://x/w"\nqueue = 1', "remote_write 1: queue: unknown field"),
    ],
)
def test_a_bad_remote_write_table_is_one_line_naming_the_field(
    tmp_path: Path, table: str, message: str
) -> None:
    path = tmp_path / "a.toml"
    path.write_text(f"[[remote_write]]\n{table}\n")
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_the_same_url_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('[[remote_write]]\nurl = "http://x/w"\n[[remote_write]]\nurl = "http://x/w"\n')
    with pytest.raises(ConfigError, match="another"):
        load(path, environ={})


# --- in the aggregator ---------------------------------------------------------------------------


def test_every_stored_sample_of_every_host_is_forwarded_with_its_host(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with RemoteWriteReceiver() as rw:
            toml = f'[[remote_write]]\nurl = "{rw.write_url}"\nbatch_size = 4\n'
            async with harness(tmp_path, toml=toml) as h:
                for host in ("web-1", "web-2"):
                    await h.add_agent(host)
                    assert (await h.push(batch(host, 1, [T0, T0 + 10_000])))[0] == 200
                    assert (await h.push(batch(host, 1, [T0, T0 + 10_000])))[0] == 200  # duplicate
                h.client.app[FORWARDER].flush()  # type: ignore[index]
                for _ in range(100):
                    if rw.total() >= 12:
                        break
                    await asyncio.sleep(0.02)
                assert rw.total() == 12  # 2 hosts x 3 series x 2 samples, the duplicate once
                assert rw.series("node_load1", host="web-2") == {T0: 0.5, T0 + 10_000: 0.6}
                assert rw.series("node_network_receive_bytes_total", device="eth0", host="web-1") == {
                    T0: 0.0,
                    T0 + 10_000: 1000.0,
                }
                token = await h.api_token()
                _, text = await h.get("/metrics", token)
                url = f'url="{rw.write_url}"'
                assert f'edgewatch_remote_write_samples_total{{outcome="sent",{url}}} 12' in text
                assert f"edgewatch_remote_write_queue_bytes{{{url}}} 0" in text
                assert f"edgewatch_remote_write_lag_seconds{{{url}}} 0" in text

    run(scenario())


def test_what_was_queued_while_the_endpoint_was_down_goes_after_a_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        port = closed_port()
        toml = f'[[remote_write]]\nurl = "http://127.0.0.1:{port}/api/v1/write"\n'
        async with harness(tmp_path, toml=toml) as h:
            await h.add_agent("web-1")
            assert (await h.push(batch("web-1", 1, [T0, T0 + 10_000])))[0] == 200
        # the stop wrote the inbox to the queue; nothing was sent
        folder = next((tmp_path / "data" / "remote_write").iterdir())
        assert sum(p.stat().st_size for p in folder.glob("*.seg")) > 0
        async with RemoteWriteReceiver() as rw:
            toml2 = toml.replace(f"http://127.0.0.1:{port}/api/v1/write", rw.write_url)
            os.rename(folder, folder.with_name(_endpoint(rw.write_url).queue_name))
            async with harness(tmp_path, toml=toml2):
                for _ in range(200):
                    if rw.total() >= 6:
                        break
                    await asyncio.sleep(0.02)
            assert rw.total() == 6

    run(scenario())


def test_when_the_encoder_falls_behind_the_oldest_frames_are_dropped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forwarder, "MAX_INBOX_SAMPLES", 10)
    registry = Registry()
    fw = forwarder.Forwarder([_endpoint("http://127.0.0.1:9/w")], tmp_path, registry)
    for seq in range(1, 6):  # 3 samples a frame: two frames are too many
        fw.observe("web-1", batch("web-1", seq, [T0 + seq * 10_000]), T0)
    assert fw.samples.get(url="http://127.0.0.1:9/w", outcome="dropped") == 6
    fw.flush()
    assert fw.queues[0].samples == 9
    for q in fw.queues:
        q.close()
