"""The sender against a real receiver: deltas, key frames on 409, retries, quarantine, back-log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgewatch.agent.sender import Sender
from edgewatch.agent.spool import Spool
from edgewatch.agent.transport import HttpClient, Response
from edgewatch.protocol import Batch, Kind, Series, decode, encode

from .conftest import ReceiverProcess

SERIES = (
    Series("node_load1", precision=2),
    Series("node_cpu_seconds_total", {"cpu": "0", "mode": "idle"}, Kind.COUNTER, 2),
    Series("node_memory_MemAvailable_bytes"),
)


def _batch(seq: int) -> Batch:
    return Batch(
        "web-1",
        42,
        seq,
        (1_700_000_000_000 + 10_000 * seq,),
        SERIES,
        ((round(0.5 + seq / 100, 2),), (round(100 + 9.9 * seq, 2),), (8_000_000_000 - 4096 * seq,)),
        {"hostname": "web-1"},
    )


class Rig:
    def __init__(
        self, tmp: Path, receiver: ReceiverProcess, token: str | None = None, start: bool = True
    ) -> None:
        self.spool = Spool(tmp / "spool", max_bytes=1 << 20, max_age=3600)
        self.sender = Sender(
            self.spool,
            HttpClient(receiver.url, timeout=2.0),
            token or receiver.token,
            backlog_chunk=5,
            backoff=(0.05, 0.3),
        )
        if start:
            self.sender.start()

    def put(self, seq: int) -> None:
        batch = _batch(seq)
        frame = encode(batch)
        entry = self.spool.put(frame, boot_id=batch.boot_id, seq=seq, samples=batch.sample_count)
        self.sender.submit(entry, batch, frame)

    def drained(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.spool) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.spool) == 0, f"{len(self.spool)} frames still spooled"

    def close(self) -> None:
        self.sender.stop(2.0)


@pytest.fixture
def rig(tmp_path: Path, receiver: ReceiverProcess) -> Rig:
    r = Rig(tmp_path, receiver)
    yield r  # type: ignore[misc]
    r.close()


def test_first_a_key_frame_then_small_deltas(rig: Rig, receiver: ReceiverProcess) -> None:
    for seq in range(1, 11):
        rig.put(seq)
        receiver.wait_for(seq)
    got = receiver.received()
    assert [g["seq"] for g in got] == list(range(1, 11))
    assert [g["kind"] for g in got] == ["key"] + ["delta"] * 9
    assert max(g["bytes"] for g in got[2:]) < 40  # steady series cost next to nothing
    rig.drained()


def test_a_lost_reference_is_answered_with_a_key_frame(rig: Rig, receiver: ReceiverProcess) -> None:
    rig.put(1)
    rig.put(2)
    receiver.wait_for(2)
    receiver.control(forget=True)  # as an aggregator restart would
    rig.put(3)
    rig.put(4)
    got = receiver.wait_for(4)
    assert [(g["seq"], g["kind"]) for g in got] == [(1, "key"), (2, "delta"), (3, "key"), (4, "delta")]
    rig.drained()


@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 503, "retry_after": 1}, {"garbage": True}])
def test_server_errors_are_retried_and_nothing_is_lost(
    rig: Rig, receiver: ReceiverProcess, fault: dict
) -> None:
    rig.put(1)
    receiver.wait_for(1)
    receiver.control(**fault)
    for seq in range(2, 6):
        rig.put(seq)
    time.sleep(0.5)
    receiver.control()  # healthy again
    rig.put(6)
    got = receiver.wait_for(6)
    # a 200 without an ack (garbage) is not an acknowledgement: those frames are sent again
    assert sorted(g["seq"] for g in got) == [1, 2, 3, 4, 5, 6]
    assert len({g["seq"] for g in got}) == len(got)
    rig.drained()


def test_retry_after_is_honoured(rig: Rig, receiver: ReceiverProcess) -> None:
    receiver.control(status=429, retry_after=2)
    started = time.monotonic()
    rig.put(1)
    time.sleep(0.3)
    receiver.control()
    receiver.wait_for(1)
    assert time.monotonic() - started >= 1.8


def test_a_refused_frame_goes_to_quarantine_once(
    rig: Rig, receiver: ReceiverProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.control(status=400)
    rig.put(1)
    rig.put(2)
    rig.drained()
    assert len(list(rig.spool.quarantine_dir.glob("*.frame"))) == 2
    logged = [line for line in capsys.readouterr().err.splitlines() if "frame_refused" in line]
    assert len(logged) == 1
    assert "level=error" in logged[0]
    assert "not retried" in logged[0]
    receiver.control()
    rig.put(3)
    assert [g["seq"] for g in receiver.wait_for(1)] == [3]


def test_a_wrong_token_pauses_without_dropping(tmp_path: Path, receiver: ReceiverProcess) -> None:
    rig = Rig(tmp_path, receiver, token="wrong")
    try:
        rig.put(1)
        time.sleep(0.5)
        assert len(rig.spool) == 1
        assert not list(rig.spool.quarantine_dir.glob("*.frame"))
        assert rig.sender.stats.push_errors.get("http_401", 0) >= 1
    finally:
        rig.close()


def test_back_log_goes_oldest_first_without_starving_live_frames(
    tmp_path: Path, receiver: ReceiverProcess
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, max_age=3600)
    for seq in range(1, 21):  # spooled while the aggregator was away
        spool.put(encode(_batch(seq)), boot_id=42, seq=seq, samples=3)
    rig = Rig(tmp_path, receiver, start=False)
    try:
        rig.put(21)  # the first tick after a restart, before the sender has looked at the spool
        rig.sender.start()
        got = receiver.wait_for(21)
        seqs = [g["seq"] for g in got]
        assert seqs[0] == 21  # the live frame first
        assert seqs[1:] == list(range(1, 21))  # then the back-log, oldest first
        rig.drained()
    finally:
        rig.close()


def test_slow_answers_time_out_and_are_retried(rig: Rig, receiver: ReceiverProcess) -> None:
    receiver.control(delay=3)  # longer than the client's 2 s timeout
    rig.put(1)
    time.sleep(2.5)
    receiver.control()
    got = receiver.wait_for(1, timeout=15)
    assert [g["seq"] for g in got][:1] == [1]
    rig.drained(timeout=15)
    assert rig.sender.stats.push_errors.get("network", 0) >= 1


@pytest.mark.parametrize("fault", [{"status": 301, "location": "https://elsewhere/"}, {"status": 404}])
def test_a_redirect_or_a_wrong_url_pauses_and_drops_nothing(
    rig: Rig, receiver: ReceiverProcess, fault: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.control(**fault)
    rig.put(1)
    rig.put(2)
    time.sleep(0.5)
    assert len(rig.spool) == 2
    assert not list(rig.spool.quarantine_dir.glob("*.frame"))
    err = capsys.readouterr().err
    assert "fix the aggregator URL" in err or "does not point at an edgewatch aggregator" in err


def test_a_refused_delta_is_sent_again_as_a_key_frame(rig: Rig, receiver: ReceiverProcess) -> None:
    rig.put(1)
    receiver.wait_for(1)
    rig.sender.ref = rig.sender.ref  # the reference of frame 1 is held
    receiver.control(status=400)
    rig.put(2)  # the delta is refused, then its key frame too: only then is it quarantined
    rig.drained()
    assert len(list(rig.spool.quarantine_dir.glob("*.frame"))) == 1
    assert rig.sender.ref is not None
    assert rig.sender.ref.seq == 1  # a refused frame never becomes the reference


def test_a_spool_file_deleted_by_hand_is_forgotten(tmp_path: Path, receiver: ReceiverProcess) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, max_age=3600)
    entry = spool.put(encode(_batch(1)), boot_id=42, seq=1, samples=3)
    (spool.directory / entry.name).unlink()
    assert spool.read(entry) is None
    assert len(spool) == 0  # the sender does not spin on it


class _OverflowingClient:
    """Acknowledges every frame; while frame ``seq`` is on its way, a tick spools a new frame into
    the full spool (as the sampling thread does)."""

    def __init__(self, spool: Spool, seq: int) -> None:
        self.spool, self.seq = spool, seq
        self.acked: list[int] = []

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Response:
        seq = decode(body).seq
        if seq == self.seq:
            self.spool.put(encode(_batch(99)), boot_id=42, seq=99, samples=3)
        self.acked.append(seq)
        return Response(200, {}, json.dumps({"ack": seq}).encode())

    def close(self) -> None:
        pass


def test_a_frame_acknowledged_while_the_spool_overflows_is_not_counted_as_dropped(tmp_path: Path) -> None:
    size = len(encode(_batch(1)))
    spool = Spool(tmp_path / "spool", max_bytes=3 * size + size // 2, max_age=3600)
    for seq in (1, 2, 3):  # spooled while the aggregator was away; the spool holds three
        spool.put(encode(_batch(seq)), boot_id=42, seq=seq, samples=3)
    client = _OverflowingClient(spool, seq=1)
    sender = Sender(spool, client, "token", backlog_chunk=5)  # type: ignore[arg-type]
    sender.start()
    try:
        deadline = time.monotonic() + 10
        while 99 not in [e.seq for e in spool.oldest(10)] or len(spool) > 1:
            assert time.monotonic() < deadline, client.acked
            time.sleep(0.01)
    finally:
        sender.stop(2.0)
    # frame 1 was on its way when frame 99 overflowed the spool: frame 2 went instead of it
    assert client.acked == [1, 3]
    assert spool.dropped_samples == 3  # frame 2's samples: exactly what the aggregator lacks
