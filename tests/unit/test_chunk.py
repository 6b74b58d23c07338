"""The chunk stream: reassembly, header types, extended timestamps, limits."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rtmp.chunk import ChunkReader, Message, chunk_message
from bridge.rtmp.errors import ChunkError, RtmpError


def feed_all(reader: ChunkReader, data: bytes) -> list[Message]:
    return reader.feed(data)


def feed_bytewise(reader: ChunkReader, data: bytes) -> list[Message]:
    out: list[Message] = []
    for i in range(len(data)):
        out.extend(reader.feed(data[i : i + 1]))
    return out


FEEDERS = [feed_all, feed_bytewise]

CASES = [
    # csid, type, msid, timestamp, payload, chunk size
    (3, 20, 0, 0, b"hello", 128),
    (4, 9, 1, 40, bytes(range(256)) * 3, 128),
    (63, 8, 1, 0xFFFFFE, b"a" * 300, 128),
    (64, 8, 1, 0xFFFFFF, b"b" * 1000, 100),  # 2-byte basic header, extended timestamp
    (319, 9, 7, 0x12345678, b"c" * 5000, 4096),
    (320, 9, 7, 5, b"d" * 10, 128),  # 3-byte basic header
    (65599, 18, 1, 0xFFFFFFFF, b"e" * 129, 128),
    (6, 8, 1, 100, b"", 128),  # empty message (legacy audio silence)
]


@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize("case", CASES)
def test_round_trip(case: tuple, feed) -> None:  # type: ignore[no-untyped-def]
    csid, type_id, msid, ts, payload, size = case
    data = chunk_message(csid, type_id, msid, ts, payload, size)
    reader = ChunkReader()
    reader.chunk_size = size
    assert feed(reader, data) == [Message(csid, type_id, msid, ts, payload)]
    assert reader.buffered == 0


def test_extended_timestamp_repeated_on_continuations() -> None:
    data = chunk_message(5, 9, 1, 0x01000000, b"x" * 300, 128)
    # type 0 (1 + 11 + 4 ext) + 128, then (1 + 4 ext + 128) and (1 + 4 ext + 44)
    assert len(data) == 16 + 128 + 133 + 49
    assert data[144:149] == b"\xc5\x01\x00\x00\x00"


def test_continuation_without_extended_timestamp_is_accepted() -> None:
    """Old Flash servers omit the 4 bytes on continuations (the SRS heuristic reads them as
    payload when they don't match)."""
    ts = 0x01000000
    payload = b"\x01\x02\x03\x04" + b"y" * 200
    head = (
        bytes([0x05])
        + b"\xff\xff\xff"
        + len(payload).to_bytes(3, "big")
        + b"\x09"
        + struct.pack("<I", 1)
    )
    data = head + struct.pack(">I", ts) + payload[:128] + b"\xc5" + payload[128:]
    reader = ChunkReader()
    assert reader.feed(data) == [Message(5, 9, 1, ts, payload)]


def build_header(
    fmt: int,
    csid: int,
    ts: int,
    length: int | None = None,
    type_id: int | None = None,
    msid: int | None = None,
) -> bytes:
    out = bytes([(fmt << 6) | csid])
    if fmt <= 2:
        out += min(ts, 0xFFFFFF).to_bytes(3, "big")
    if fmt <= 1:
        assert length is not None and type_id is not None
        out += length.to_bytes(3, "big") + bytes([type_id])
    if fmt == 0:
        assert msid is not None
        out += struct.pack("<I", msid)
    if fmt <= 2 and ts >= 0xFFFFFF:
        out += struct.pack(">I", ts)
    return out


@pytest.mark.parametrize("feed", FEEDERS)
def test_header_types_and_deltas(feed) -> None:  # type: ignore[no-untyped-def]
    data = (
        build_header(0, 4, 1000, 3, 8, 1)
        + b"abc"
        + build_header(1, 4, 20, 2, 9)
        + b"de"  # delta 20, new length and type
        + build_header(2, 4, 30)
        + b"fg"  # delta 30, same length and type
        + build_header(3, 4, 0)
        + b"hi"  # same delta again
    )
    reader = ChunkReader()
    assert feed(reader, data) == [
        Message(4, 8, 1, 1000, b"abc"),
        Message(4, 9, 1, 1020, b"de"),
        Message(4, 9, 1, 1050, b"fg"),
        Message(4, 9, 1, 1080, b"hi"),
    ]


def test_type3_new_message_after_type0_adds_its_timestamp_again() -> None:
    data = build_header(0, 4, 1000, 2, 8, 1) + b"ab" + build_header(3, 4, 0) + b"cd"
    assert [m.timestamp for m in ChunkReader().feed(data)] == [1000, 2000]


def test_interleaved_chunk_streams() -> None:
    a = b"A" * 200
    b = b"B" * 200
    data = (
        build_header(0, 4, 0, 200, 8, 1)
        + a[:128]
        + build_header(0, 5, 0, 200, 9, 1)
        + b[:128]
        + build_header(3, 4, 0)
        + a[128:]
        + build_header(3, 5, 0)
        + b[128:]
    )
    messages = ChunkReader().feed(data)
    assert [(m.csid, m.payload) for m in messages] == [(4, a), (5, b)]


def test_set_chunk_size_applies_to_the_next_chunk() -> None:
    scs = chunk_message(2, 1, 0, 0, struct.pack(">I", 4096), 128)
    big = chunk_message(4, 9, 1, 0, b"z" * 4000, 4096)
    reader = ChunkReader()
    messages = reader.feed(scs + big)
    assert reader.chunk_size == 4096
    assert messages[-1].payload == b"z" * 4000


@pytest.mark.parametrize("value", [0, 0x80000000, 0xFFFFFFFF])
def test_bad_set_chunk_size(value: int) -> None:
    with pytest.raises(ChunkError):
        ChunkReader().feed(chunk_message(2, 1, 0, 0, struct.pack(">I", value), 128))


def test_huge_chunk_size_is_clamped_not_refused() -> None:
    reader = ChunkReader()
    reader.feed(chunk_message(2, 1, 0, 0, struct.pack(">I", 0x7FFFFFFF), 128))
    assert reader.chunk_size == 0xFFFFFF


def test_abort_discards_a_partial_message() -> None:
    reader = ChunkReader()
    reader.feed(build_header(0, 4, 0, 300, 9, 1) + b"x" * 128)
    reader.feed(chunk_message(2, 2, 0, 0, struct.pack(">I", 4), 128))
    # csid 4 can start a new message now
    assert reader.feed(build_header(0, 4, 0, 2, 8, 1) + b"ok")[0].payload == b"ok"


def test_message_length_over_the_cap_is_refused_at_the_header() -> None:
    with pytest.raises(ChunkError, match="over the limit"):
        ChunkReader().feed(build_header(0, 4, 0, 0xFFFFFF, 9, 1))


def test_half_sent_messages_on_many_chunk_streams_are_bounded() -> None:
    reader = ChunkReader(max_bytes_in_flight=1_000_000)
    with pytest.raises(ChunkError):
        for csid in range(3, 60):
            reader.feed(build_header(0, csid, 0, 100_000, 9, 1) + b"x" * 128)


def test_too_many_chunk_streams() -> None:
    reader = ChunkReader(max_chunk_streams=10)
    with pytest.raises(ChunkError, match="too many chunk streams"):
        for csid in range(3, 30):
            reader.feed(build_header(0, csid, 0, 1, 8, 1) + b"x")


def test_first_header_on_a_stream_must_be_type0() -> None:
    with pytest.raises(ChunkError):
        ChunkReader().feed(build_header(1, 4, 0, 1, 8) + b"x")


def test_new_header_inside_unfinished_message_is_refused() -> None:
    reader = ChunkReader()
    reader.feed(build_header(0, 4, 0, 300, 9, 1) + b"x" * 128)
    with pytest.raises(ChunkError):
        reader.feed(build_header(0, 4, 0, 3, 9, 1) + b"abc")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_garbage_raises_only_protocol_errors(data: bytes) -> None:
    reader = ChunkReader()
    try:
        reader.feed(data)
    except RtmpError:
        pass
    assert reader.buffered <= len(data)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(2, 65599),
            st.sampled_from([8, 9, 18, 20]),
            st.integers(0, 2**32 - 1),
            st.binary(max_size=600),
        ),
        max_size=8,
    ),
    st.integers(1, 700),
    st.integers(1, 50),
)
def test_any_message_sequence_round_trips_at_any_split(messages, chunk_size, split) -> None:  # type: ignore[no-untyped-def]
    data = b"".join(chunk_message(c, t, 1, ts, p, chunk_size) for c, t, ts, p in messages)
    reader = ChunkReader()
    reader.chunk_size = chunk_size
    out: list[Message] = []
    for i in range(0, len(data), split):
        out.extend(reader.feed(data[i : i + split]))
    assert [(m.csid, m.type_id, m.timestamp, m.payload) for m in out] == list(messages)
