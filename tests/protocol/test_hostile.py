"""Hostile input: decode returns a Batch or raises ProtocolError, in bounded time and memory."""

from __future__ import annotations

import io
import time
import tracemalloc

import msgpack
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.protocol import Batch, Kind, ProtocolError, Series, decode, encode, next_reference
from edgewatch.protocol import limits as L
from edgewatch.protocol.header import MAJOR, MINOR

from .frames import join, split
from .strategies import batches, reference_pairs

KEY_HEADER = b"EW" + bytes([MAJOR, MINOR, 0])


def _sample_pair() -> tuple[Batch, Batch]:
    series = (Series("a", {"x": "1"}), Series("b", kind=Kind.COUNTER), Series("c", precision=2), Series("d"))
    ref = Batch("agent", 9, 1, (1000, 2000), series, ((1, 2), (10, 20), (0.5, 0.25), (0.1, 0.2)), {"h": "v"})
    batch = Batch(
        "agent", 9, 2, (3000, 4000), series, ((3, None), (30, 45), (0.75, 1.0), (0.3, 1e300)), {"h": "v"}
    )
    return ref, batch


def _decodes_or_rejects(data: bytes, ref: Batch | None = None) -> None:
    try:
        result: Batch | str = decode(data, ref)
    except ProtocolError as exc:
        result = str(exc)
    assert isinstance(result, Batch) or result  # a batch, or an error that says something


def _zstd_bomb(size: int, declare: bool) -> bytes:
    out = io.BytesIO()
    cctx = zstandard.ZstdCompressor(level=3, write_content_size=declare)
    with cctx.stream_writer(out, size=size if declare else -1, closefd=False) as w:
        chunk = b"\0" * (1 << 20)
        for _ in range(size // len(chunk)):
            w.write(chunk)
    return out.getvalue()


@given(st.binary(max_size=512))
def test_arbitrary_bytes(data: bytes) -> None:
    _decodes_or_rejects(data)


@given(st.binary(max_size=256))
def test_arbitrary_bytes_behind_a_valid_header(data: bytes) -> None:
    _decodes_or_rejects(KEY_HEADER + data)
    _decodes_or_rejects(KEY_HEADER[:4] + b"\x02" + zstandard.ZstdCompressor().compress(data))


@given(st.binary(max_size=256), st.booleans())
def test_arbitrary_delta_bodies_against_a_reference(data: bytes, compress: bool) -> None:
    ref = _sample_pair()[0]
    header = b"EW" + bytes([MAJOR, MINOR, 1]) + ref.boot_id.to_bytes(8, "little") + bytes([ref.seq])
    body = zstandard.ZstdCompressor().compress(data) if compress else data
    _decodes_or_rejects(header[:4] + bytes([header[4] | (2 if compress else 0)]) + header[5:] + body, ref)


@given(reference_pairs(), st.data())
def test_mutated_frames(pair: tuple[Batch, Batch], data: st.DataObject) -> None:
    ref, batch = pair
    use_ref = data.draw(st.booleans())
    frame = bytearray(encode(batch, ref if use_ref else None))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = data.draw(st.integers(0, max(0, len(frame) - 1)))
        if op == "flip" and frame:
            frame[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del frame[at:]
        elif op == "insert":
            frame[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif frame:
            del frame[at]
    _decodes_or_rejects(bytes(frame), ref if use_ref else None)


@given(batches(), st.data())
def test_mutated_payload_maps(batch: Batch, data: st.DataObject) -> None:
    """Well-formed msgpack with wrong types and values in every field."""
    header, payload, stream = split(encode(batch))
    if payload:
        key = data.draw(st.sampled_from(sorted(payload)))
        payload[key] = data.draw(
            st.none()
            | st.integers(-(1 << 63), (1 << 64) - 1)
            | st.text(max_size=4)
            | st.binary(max_size=4)
            | st.lists(st.integers(-2, 5) | st.text(max_size=2), max_size=4)
            | st.dictionaries(st.integers(-2, 5), st.integers(-2, 5) | st.binary(max_size=2), max_size=3)
        )
    _decodes_or_rejects(join(header, payload, stream))


def test_every_truncation_is_rejected() -> None:
    ref, batch = _sample_pair()
    for frame, reference in ((encode(batch), None), (encode(batch, ref), ref)):
        assert decode(frame, reference) == batch
        for cut in range(len(frame)):
            with pytest.raises(ProtocolError):
                decode(frame[:cut], reference)


@pytest.mark.parametrize("declare", [True, False], ids=["size-declared", "size-omitted"])
def test_zstd_bomb_is_rejected_within_bounded_memory(declare: bool) -> None:
    bomb = _zstd_bomb(200 << 20, declare)
    assert len(bomb) < 64 << 10  # a few KB that claim 200 MB
    frame = KEY_HEADER[:4] + b"\x02" + bomb
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ProtocolError, match="cap" if declare else "declare its size"):
            decode(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 2 * L.MAX_PAYLOAD_BYTES + (8 << 20)


def test_declared_size_is_checked_before_decompressing() -> None:
    frame = KEY_HEADER[:4] + b"\x02" + _zstd_bomb(64 << 20, declare=True)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="declares"):
            decode(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # nothing near the declared size was allocated


@pytest.mark.parametrize(
    ("tail", "match"),
    [
        (b"trailing", "after its zstd frame"),
        (b"\x50\x2a\x4d\x18\x04\x00\x00\x00abcd", "after its zstd frame"),
    ],
    ids=["garbage", "skippable-frame"],
)
def test_nothing_may_follow_the_zstd_frame(tail: bytes, match: str) -> None:
    header, payload, stream = split(encode(_sample_pair()[1]))
    frame = join(header, payload, stream, compress=True)
    assert decode(frame) == _sample_pair()[1]
    with pytest.raises(ProtocolError, match=match):
        decode(frame + tail)


def test_a_key_frame_decodes_alone_whatever_reference_is_passed() -> None:
    ref = _sample_pair()[0]
    other = Batch("agent", 10, 1, (1,), (Series("z"),), ((5,),))
    assert decode(encode(other), ref) == other


def test_size_caps_say_they_are_size_caps() -> None:
    with pytest.raises(ProtocolError) as info:
        decode(KEY_HEADER + b"\0" * L.MAX_FRAME_BYTES)
    assert info.value.too_large
    with pytest.raises(ProtocolError) as info:
        decode(KEY_HEADER[:4] + b"\x02" + _zstd_bomb(64 << 20, declare=True))
    assert info.value.too_large
    with pytest.raises(ProtocolError) as info:
        decode(b"EW\x01\x00\x00\x81\x01\xc0")
    assert not info.value.too_large


@pytest.mark.parametrize(
    "varint",
    [b"\x80\x00", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", b"\x80" * 11 + b"\x01"],
    ids=["not-shortest", "65-bits", "eleven-bytes"],
)
def test_varints_are_64_bit_and_shortest(varint: bytes) -> None:
    series = Series("x")
    batch = Batch("a", 1, 1, (5,), (series,), ((7,),))
    header, payload, stream = split(encode(batch))
    # the stream: no wrong guesses (0), then the timestamp's and the value's tokens
    with pytest.raises(ProtocolError, match="varint"):
        decode(join(header, payload, b"\x00" + varint + stream[2:]))


def test_oversized_frame_is_rejected_before_reading_it() -> None:
    with pytest.raises(ProtocolError, match="over the cap"):
        decode(KEY_HEADER + b"\0" * L.MAX_FRAME_BYTES)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"E",
        b"EW\x01\x00",
        b"XW\x01\x00\x00\x80",
        b"\x89PNG\r\n\x1a\n",
        b"EW\x01\x00\x01",
        b"EW\x01\x00\x01" + b"\0" * 8,
    ],
    ids=["empty", "one-byte", "no-flags", "wrong-magic", "png", "delta-without-reference", "reference-cut"],
)
def test_malformed_headers(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(data)


def test_future_major_version_is_a_clear_error() -> None:
    frame = bytearray(encode(_sample_pair()[1]))
    frame[2] = MAJOR + 1
    with pytest.raises(ProtocolError, match=f"major version {MAJOR + 1}"):
        decode(bytes(frame))


def test_newer_minor_version_with_unknown_fields_is_readable() -> None:
    batch = _sample_pair()[1]
    header, payload, stream = split(encode(batch))
    payload[200] = {"a future field": [1, 2, {"nested": True}]}
    payload[201] = b"\x00" * 10
    future = bytearray(join(header, payload, stream))
    future[3] = MINOR + 3
    future[4] |= 0x80  # a reserved flag bit is ignored by this reader
    assert decode(bytes(future)) == batch


@pytest.mark.parametrize(
    "payload",
    [
        b"\xdd\x7f\xff\xff\xff",  # array32 announcing 2**31 - 1 elements
        b"\xdf\x7f\xff\xff\xff",  # map32 announcing 2**31 - 1 pairs
        b"\x81\x05\xdd\x7f\xff\xff\xff\x00",  # {SERIES: array of 2**31 - 1}
        b"\x81\x05\xdc\xff\xff" + b"\x90" * 100,  # an array announcing 65535 with 100 present
        b"\x81\x01\xdb\x7f\xff\xff\xff" + b"a" * 10,  # a string announcing 2 GB
        b"\x81\x01\xc6\x7f\xff\xff\xff",  # a bin announcing 2 GB
        b"\x81\x01\xc7\x05\x01abcde",  # an ext type
        b"\x81\x90\x01",  # a map key that cannot be hashed
        b"\x81\x01\xc1",  # a byte msgpack never uses
        b"\xc0",  # nil instead of a map
    ],
)
def test_hostile_msgpack(payload: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            decode(KEY_HEADER + payload)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


@pytest.mark.parametrize("depth", [L.MAX_DEPTH + 1, 100, 5000])
def test_deep_nesting_is_rejected(depth: int) -> None:
    nested = b"\x91" * depth + b"\x00"
    with pytest.raises(ProtocolError):
        decode(KEY_HEADER + b"\x81\xcc\xc8" + nested)  # {200: [[[...]]]}


def test_nesting_within_the_cap_in_an_unknown_field_is_fine() -> None:
    batch = _sample_pair()[1]
    header, payload, stream = split(encode(batch))
    payload[200] = [[[[1]]]]
    assert decode(join(header, payload, stream)) == batch


def test_caps_on_counts_and_strings() -> None:
    base = _sample_pair()[1]
    header, payload, stream = split(encode(base))
    too_many = dict(payload)
    too_many[6] = L.MAX_TIMESTAMPS + 1  # SAMPLES
    long_name = dict(payload)
    long_name[1] = "x" * (L.MAX_NAME_LEN + 1)  # AGENT
    for forged in (too_many, long_name):
        with pytest.raises(ProtocolError):
            decode(join(header, forged, stream))


def test_delta_against_the_wrong_or_missing_reference_asks_for_a_key_frame() -> None:
    ref, batch = _sample_pair()
    frame = encode(batch, ref)
    other = Batch(ref.agent_id, ref.boot_id, ref.seq + 5, ref.timestamps, ref.series, ref.values)
    reboot = Batch(ref.agent_id, ref.boot_id + 1, ref.seq, ref.timestamps, ref.series, ref.values)
    for reference in (None, other, reboot):
        with pytest.raises(ProtocolError) as info:
            decode(frame, reference)
        assert info.value.needs_reference


def test_delta_whose_series_map_points_past_the_reference_asks_for_a_key_frame() -> None:
    ref = _sample_pair()[0]
    shorter = Batch(ref.agent_id, ref.boot_id, ref.seq, ref.timestamps, ref.series[:1], ref.values[:1])
    moved = Batch("agent", 9, 2, (3000,), (ref.series[3], ref.series[0]), ((1.5,), (2,)))
    frame = encode(moved, ref)
    with pytest.raises(ProtocolError) as info:
        decode(frame, shorter)
    assert info.value.needs_reference


def test_trailing_bytes_after_the_stream_are_rejected() -> None:
    batch = _sample_pair()[1]
    with pytest.raises(ProtocolError, match="after its last value"):
        decode(encode(batch) + b"\x00")


def test_not_bytes() -> None:
    with pytest.raises(ProtocolError):
        decode("EW\x01\x00\x00")  # type: ignore[arg-type]


def test_reference_chain_survives_fuzzed_neighbours() -> None:
    """A rejected frame leaves the reference usable for the next good one."""
    ref, batch = _sample_pair()
    kept = next_reference(None, ref)
    frame = encode(batch, kept)
    with pytest.raises(ProtocolError):
        decode(frame[:-1], kept)
    assert decode(frame, kept) == batch


def _declare_less(frame: bytes, declared: int) -> bytes:
    """A zstd frame whose header declares ``declared`` bytes while its blocks hold far more."""
    fhd = frame[4]
    fcs_size = (1, 2, 4, 8)[fhd >> 6]
    single_segment = fhd >> 5 & 1
    dict_size = (0, 1, 2, 4)[fhd & 3]
    at = 5 + (0 if single_segment else 1) + dict_size
    assert fcs_size == 4, "the test expects a four-byte content size field"
    return frame[:at] + declared.to_bytes(4, "little") + frame[at + 4 :]


def test_a_frame_that_holds_more_than_it_declares_stays_within_the_declared_size() -> None:
    lying = _declare_less(_zstd_bomb(512 << 20, declare=True), 16 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="corrupt"):
            decode(KEY_HEADER[:4] + b"\x02" + lying)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (16 << 20) + (4 << 20)


def test_huge_values_in_a_precision_series_are_sent_exactly() -> None:
    s = Series("huge", precision=15)
    batch = Batch("a", 1, 1, (1, 2), (s,), ((1e300, 1.7e308),))
    decoded = decode(encode(batch))
    assert decoded == batch
    assert next_reference(None, batch) == next_reference(None, decoded)


def test_keys_of_other_types_are_unknown_not_merged() -> None:
    batch = _sample_pair()[1]
    header, payload, stream = split(encode(batch))
    forged = msgpack.packb(payload, use_bin_type=True)
    # append {true: "other-agent"} to the payload map: a map of n+1 pairs
    count = forged[0] & 0x0F
    forged = bytes([0x80 | (count + 1)]) + forged[1:] + b"\xc3" + msgpack.packb("other-agent")
    assert decode(join(header, forged, stream)).agent_id == "agent"
    twice = bytes([0x80 | (count + 1)]) + forged[1 : -len(msgpack.packb("other-agent")) - 1]
    twice += b"\x01" + msgpack.packb("other-agent")
    with pytest.raises(ProtocolError, match="same key twice"):
        decode(join(header, twice, stream))


def test_the_reference_seq_must_be_a_shortest_varint() -> None:
    ref, batch = _sample_pair()
    frame = encode(batch, ref)
    assert frame[13] == ref.seq  # one byte: seq 1
    longer = frame[:13] + bytes([0x80 | ref.seq, 0x00]) + frame[14:]
    with pytest.raises(ProtocolError, match="shortest"):
        decode(longer, ref)
