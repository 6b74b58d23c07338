"""The sans-IO server connection: command flows as FFmpeg/OBS/librtmp drive them, refusals,
and garbage."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rtmp import amf0
from bridge.rtmp.connection import (
    ConnectionFailed,
    ConnectRequested,
    HandshakeCompleted,
    MediaReceived,
    MetadataReceived,
    PlayRequested,
    PublishRequested,
    ServerConnection,
    StreamClosed,
)
from bridge.rtmp.messages import MessageType, UserControl

from .rtmp_peer import Peer


@pytest.mark.parametrize("digest", [False, True])
@pytest.mark.parametrize("bytewise", [False, True])
def test_connect_reply_sequence(digest: bool, bytewise: bool) -> None:
    peer = Peer(digest=digest)
    events = peer.do_handshake(bytewise=bytewise)
    assert events == [HandshakeCompleted(digest=digest)]
    events = peer.command(
        "connect",
        1.0,
        {"app": "live/_definst_/", "tcUrl": "rtmp://h/live", "objectEncoding": 3.0},
        bytewise=bytewise,
    )
    assert isinstance(events[0], ConnectRequested) and events[0].app == "live"
    types = [m.type_id for m in peer.received]
    assert types == [
        MessageType.WINDOW_ACK_SIZE,
        MessageType.SET_PEER_BANDWIDTH,
        MessageType.SET_CHUNK_SIZE,
        MessageType.COMMAND_AMF0,
    ]
    name, txn, props, info = amf0.decode(peer.received[-1].payload)
    assert (name, txn) == ("_result", 1.0)
    assert props["fmsVer"].startswith("FMS/")
    assert info["code"] == "NetConnection.Connect.Success"
    assert info["objectEncoding"] == 3.0
    # After Set Chunk Size the peer reads with the new size.
    assert peer.reader.chunk_size == 4096


def test_publish_flow_as_ffmpeg_sends_it() -> None:
    peer = Peer()
    peer.connect()
    peer.command("releaseStream", 2.0, None, "key")
    peer.command("FCPublish", 3.0, None, "key")
    stream_id = peer.create_stream(4.0)
    assert stream_id == 1
    events = peer.command("publish", 5.0, None, "key?token=1", "live", msid=stream_id)
    assert events == [PublishRequested(stream_id, "chan", "key", "token=1", "live")]
    # Metadata before the decision is kept and handed back on accept.
    meta = amf0.encode("@setDataFrame", "onMetaData", amf0.EcmaArray({"width": 640.0}))
    assert peer.send(4, 18, stream_id, 0, meta) == []
    # Media before the decision is dropped (FFmpeg and OBS wait for Publish.Start anyway).
    assert peer.send(4, 9, stream_id, 0, b"\x17\x00\x00\x00\x00") == []
    pending = peer.server.accept_publish(stream_id)
    assert pending == [MetadataReceived(stream_id, {"width": 640.0})]
    peer._read_output()
    assert peer.statuses()[-1] == "NetStream.Publish.Start"
    begin = [m for m in peer.received if m.type_id == MessageType.USER_CONTROL][-1]
    assert struct.unpack(">HI", begin.payload) == (UserControl.STREAM_BEGIN, stream_id)
    status = [m for m in peer.received if m.type_id == 20][-1]
    assert status.stream_id == stream_id  # onStatus goes on the NetStream
    events = peer.send(4, 9, stream_id, 40, b"\x27\x01\x00\x00\x00")
    assert events == [MediaReceived(stream_id, 9, 40, b"\x27\x01\x00\x00\x00")]
    events = peer.send(4, 18, stream_id, 0, meta)
    assert events == [MetadataReceived(stream_id, {"width": 640.0})]
    peer.command("FCUnpublish", 6.0, None, "key")
    assert peer.command("deleteStream", 7.0, None, float(stream_id)) == [StreamClosed(stream_id)]


def test_play_flow_and_statuses() -> None:
    peer = Peer()
    peer.connect()
    stream_id = peer.create_stream(2.0)
    peer.command("getStreamLength", 3.0, None, "key")
    assert peer.commands_received()[-1][1][:4] == ["_result", 3.0, None, 0.0]
    events = peer.command("play", 4.0, None, "key", -2000.0, msid=stream_id)
    assert events == [PlayRequested(stream_id, "chan", "key", "", -2000.0)]
    peer.server.accept_play(stream_id)
    peer._read_output()
    assert peer.statuses() == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    peer.server.end_play(stream_id, "gone")
    peer._read_output()
    assert peer.statuses()[-1] == "NetStream.Play.UnpublishNotify"


def test_rejections_carry_the_code() -> None:
    peer = Peer()
    peer.connect()
    stream_id = peer.create_stream()
    peer.command("publish", 5.0, None, "key", "live", msid=stream_id)
    peer.server.reject_publish(stream_id, "NetStream.Publish.BadName", "already publishing")
    peer._read_output()
    _, values = peer.commands_received()[-1]
    assert values[3] == {
        "level": "error",
        "code": "NetStream.Publish.BadName",
        "description": "already publishing",
    }


def test_amf3_command_form() -> None:
    peer = Peer()
    peer.do_handshake()
    # Type 17: a format byte 0, then AMF0 values; the command object switches to AMF3 (0x11)
    # with an anonymous dynamic object {app: "chan"}.
    amf3_object = b"\x11\x0a\x0b\x01\x07app\x06\x09chan\x01"
    payload = b"\x00" + amf0.encode("connect", 1.0) + amf3_object
    events = peer.send(3, 17, 0, 0, payload)
    assert isinstance(events[0], ConnectRequested) and events[0].app == "chan"


def test_acknowledgement_after_the_peer_window() -> None:
    peer = Peer()
    peer.connect()
    peer.send(2, MessageType.WINDOW_ACK_SIZE, 0, 0, struct.pack(">I", 1000))
    before = len(peer.received)
    peer.command("_checkbw", 2.0, None, "x" * 1200)
    acks = [m for m in peer.received[before:] if m.type_id == MessageType.ACKNOWLEDGEMENT]
    assert len(acks) == 1


def test_ping_is_answered() -> None:
    peer = Peer()
    peer.connect()
    peer.send(2, MessageType.USER_CONTROL, 0, 0, struct.pack(">HI", UserControl.PING_REQUEST, 1234))
    last = peer.received[-1]
    assert struct.unpack(">HI", last.payload) == (UserControl.PING_RESPONSE, 1234)


def test_aggregate_message_is_split_and_rebased() -> None:
    peer = Peer()
    peer.connect()
    stream_id = peer.create_stream()
    peer.command("publish", 5.0, None, "key", "live", msid=stream_id)
    peer.server.accept_publish(stream_id)

    def tag(type_id: int, ts: int, body: bytes) -> bytes:
        head = (
            bytes([type_id])
            + len(body).to_bytes(3, "big")
            + (ts & 0xFFFFFF).to_bytes(3, "big")
            + bytes([ts >> 24])
            + b"\0\0\0"
        )
        return head + body + struct.pack(">I", 11 + len(body))

    payload = tag(9, 5000, b"\x17\x01vid") + tag(8, 5020, b"\xaf\x01aud")
    events = peer.send(4, MessageType.AGGREGATE, stream_id, 100, payload)
    assert events == [
        MediaReceived(stream_id, 9, 100, b"\x17\x01vid"),
        MediaReceived(stream_id, 8, 120, b"\xaf\x01aud"),
    ]


@pytest.mark.parametrize(
    "name, args, msid",
    [
        ("publish", (None, "key", "live"), 1),
        ("play", (None, "key"), 1),
        ("createStream", (None,), 0),
    ],
)
def test_commands_before_connect_fail(name: str, args: tuple, msid: int) -> None:
    peer = Peer()
    peer.do_handshake()
    events = peer.command(name, 2.0, *args, msid=msid)
    assert len(events) == 1 and isinstance(events[0], ConnectionFailed)
    assert "before connect" in events[0].reason
    assert peer.server.closed
    assert peer.server.receive_data(b"more") == []


def test_publish_on_a_stream_never_created_fails() -> None:
    peer = Peer()
    peer.connect()
    events = peer.command("publish", 5.0, None, "key", "live", msid=9)
    assert isinstance(events[-1], ConnectionFailed)


def test_deeply_nested_amf_fails_cleanly() -> None:
    peer = Peer()
    peer.do_handshake()
    nested = b"\x02\x00\x07connect" + b"\x00" + struct.pack(">d", 1.0) + b"\x03\x00\x01a" * 50_000
    peer.chunk_size = 128
    # Raise our chunk size so the 50,000-deep object fits the message cap as one message.
    events = peer.send(3, 20, 0, 0, nested)
    assert len(events) == 1 and isinstance(events[0], ConnectionFailed)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_garbage_after_handshake_only_ends_in_connection_failed(data: bytes) -> None:
    peer = Peer()
    peer.do_handshake()
    events = peer.pump(data)
    assert all(not isinstance(e, ConnectionFailed) for e in events[:-1])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "connect",
                    "createStream",
                    "publish",
                    "play",
                    "deleteStream",
                    "closeStream",
                    "FCPublish",
                    "receiveVideo",
                    "x",
                ]
            ),
            st.floats(allow_nan=False),
            st.one_of(
                st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)
            ),
            st.lists(
                st.one_of(
                    st.text(max_size=8), st.floats(allow_nan=False), st.none(), st.booleans()
                ),
                max_size=3,
            ),
            st.integers(0, 3),
        ),
        max_size=12,
    )
)
def test_random_command_sequences_never_raise(commands) -> None:  # type: ignore[no-untyped-def]
    server = ServerConnection()
    peer = Peer(server)
    peer.do_handshake()
    for name, txn, obj, args, msid in commands:
        events = peer.command(name, txn, obj, *args, msid=msid)
        for event in events:
            if isinstance(event, PublishRequested):
                server.accept_publish(event.stream_id)
            elif isinstance(event, PlayRequested):
                server.reject_play(event.stream_id, "NetStream.Play.BadName", "no")
        peer._read_output()
