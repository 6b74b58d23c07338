"""The server side of one RTMP connection, sans-IO.

Bytes in (``receive_data``), events out (its return value), bytes to send pulled with
``data_to_send``. Decisions that need the rest of the server (may this publish start? may this
player watch?) come back as method calls (``accept_publish``, ``reject_play``, ...). Any
protocol error a peer causes is caught here, once, and becomes a ``ConnectionFailed`` event;
after it the connection ignores further input.

Command shapes follow what FFmpeg, OBS and librtmp send and expect
(/work/shared/reference/rtmp.md §7): replies carry the request's transaction id; onStatus is
sent on the NetStream's message stream id; connect is answered with Window Ack Size, Set Peer
Bandwidth, Set Chunk Size and ``_result``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.rtmp import amf0
from bridge.rtmp.chunk import ChunkReader, Message, chunk_message
from bridge.rtmp.errors import AmfError, RtmpError
from bridge.rtmp.handshake import ServerHandshake
from bridge.rtmp.messages import (
    CSID_COMMAND,
    CSID_CONTROL,
    CSID_DATA,
    CSID_STATUS,
    MessageType,
    PeerBandwidthLimit,
    UserControl,
    acknowledgement,
    parse_u32,
    parse_user_control,
    set_chunk_size,
    set_peer_bandwidth,
    user_control,
    window_ack_size,
)

DEFAULT_WINDOW = 2_500_000
MAX_STREAMS = 16  # NetStreams per connection; real clients use one
MAX_AGGREGATE_TAGS = 4096

# Sent in the connect result. "FMS/3,0,1,123" is what nginx-rtmp announces; clients only
# log it.
SERVER_VERSION = "FMS/3,0,1,123"


# ---------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    digest: bool


@dataclass(frozen=True, slots=True)
class ConnectRequested:
    """The client sent ``connect``. It has already been answered with success: names are
    checked when the client publishes or plays, where the answer can name the stream."""

    app: str
    tc_url: str
    flash_ver: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PublishRequested:
    stream_id: int
    app: str
    name: str
    query: str
    publish_type: str


@dataclass(frozen=True, slots=True)
class PlayRequested:
    stream_id: int
    app: str
    name: str
    query: str
    start: float


@dataclass(frozen=True, slots=True)
class MediaReceived:
    """An audio (8) or video (9) message on a publishing stream."""

    stream_id: int
    type_id: int
    timestamp: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class MetadataReceived:
    stream_id: int
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """deleteStream / closeStream / FCUnpublish: the NetStream's publish or play is over."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class ReceiveToggled:
    stream_id: int
    audio: bool | None
    video: bool | None


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """A protocol error: the connection is finished; send what is pending, then close."""

    reason: str


Event = (
    HandshakeCompleted
    | ConnectRequested
    | PublishRequested
    | PlayRequested
    | MediaReceived
    | MetadataReceived
    | StreamClosed
    | ReceiveToggled
    | ConnectionFailed
)


# ------------------------------------------------------------------------------ connection


@dataclass(slots=True)
class _NetStream:
    stream_id: int
    mode: str = ""  # "", "publish-pending", "publishing", "play-pending", "playing"
    name: str = ""
    pending_metadata: dict[str, Any] | None = field(default=None)


def split_name(name: str) -> tuple[str, str]:
    """Split ``name?query`` (FFmpeg and OBS pass query strings through the stream name)."""
    base, _, query = name.partition("?")
    return base, query


def normalise_app(app: str) -> str:
    """The app as nginx-rtmp reads it: without query, trailing '/' and '/_definst_'."""
    app = app.partition("?")[0].rstrip("/")
    if app.endswith("/_definst_"):
        app = app[: -len("/_definst_")]
    return app


class ServerConnection:
    def __init__(
        self,
        *,
        chunk_size: int = 4096,
        window: int = DEFAULT_WINDOW,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.chunk_size_out = chunk_size
        self._window = window
        self._handshake: ServerHandshake | None = ServerHandshake(random_bytes=random_bytes)
        self._reader = ChunkReader()
        self._out = bytearray()
        self._connected = False
        self.closed = False
        self.app = ""
        self.tc_url = ""
        self.object_encoding = 0.0
        self.params: dict[str, Any] = {}
        self._streams: dict[int, _NetStream] = {}
        self._next_stream_id = 1
        self._received = 0
        self._peer_window = 0
        self._last_ack = 0
        self.bytes_received = 0

    # ----------------------------------------------------------------------------- input

    def receive_data(self, data: bytes) -> list[Event]:
        if self.closed or not data:
            return []
        self.bytes_received += len(data)
        events: list[Event] = []
        try:
            if self._handshake is not None:
                handshake = self._handshake
                handshake.receive_data(data)
                self._out += handshake.data_to_send()
                if not handshake.done:
                    return events
                events.append(HandshakeCompleted(handshake.digest))
                data = handshake.take_leftover()
                self._handshake = None
                if not data:
                    return events
            self._count_received(len(data))
            for message in self._reader.feed(data):
                self._handle_message(message, events)
        except RtmpError as exc:
            self.closed = True
            events.append(ConnectionFailed(str(exc) or type(exc).__name__))
        return events

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def _count_received(self, count: int) -> None:
        # The peer asked for an Acknowledgement every window of bytes (spec §5.4.3).
        self._received += count
        if self._peer_window and self._received - self._last_ack >= self._peer_window:
            self._last_ack = self._received
            self._send_control(MessageType.ACKNOWLEDGEMENT, acknowledgement(self._received))

    # -------------------------------------------------------------------------- dispatch

    def _handle_message(self, message: Message, events: list[Event]) -> None:
        type_id = message.type_id
        if type_id in (MessageType.AUDIO, MessageType.VIDEO):
            stream = self._streams.get(message.stream_id)
            if stream is not None and stream.mode == "publishing":
                events.append(
                    MediaReceived(message.stream_id, type_id, message.timestamp, message.payload)
                )
            return
        if type_id == MessageType.COMMAND_AMF0:
            self._handle_command(message, _decode(message.payload), events)
        elif type_id == MessageType.COMMAND_AMF3:
            self._handle_command(message, _decode(message.payload[1:]), events)
        elif type_id == MessageType.DATA_AMF0:
            self._handle_data(message, _decode(message.payload), events)
        elif type_id == MessageType.DATA_AMF3:
            self._handle_data(message, _decode(message.payload[1:]), events)
        elif type_id == MessageType.AGGREGATE:
            self._handle_aggregate(message, events)
        elif type_id == MessageType.WINDOW_ACK_SIZE:
            self._peer_window = parse_u32(message.payload, "Window Ack Size")
        elif type_id == MessageType.USER_CONTROL:
            event = parse_user_control(message.payload)
            if event.event == UserControl.PING_REQUEST:
                self._send_control(
                    MessageType.USER_CONTROL, user_control(UserControl.PING_RESPONSE, event.value)
                )
        # Set Chunk Size and Abort were applied by the chunk reader; Acknowledgement, Set Peer
        # Bandwidth and shared objects need nothing from a live server.

    def _handle_command(self, message: Message, values: list[Any], events: list[Event]) -> None:
        if not values or not isinstance(values[0], str):
            raise RtmpError("command message without a command name")
        name = values[0]
        txn = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        args = values[3:]
        if name == "connect":
            self._handle_connect(txn, values[2] if len(values) > 2 else None, events)
            return
        if not self._connected:
            raise RtmpError(f"{name!r} before connect")
        handler = _COMMANDS.get(name)
        if handler is not None:
            handler(self, message.stream_id, txn, args, events)
        # Anything else (_checkbw, FCSubscribe, onBWDone replies, ...) needs no answer: FFmpeg
        # ignores missing replies to those, and nginx-rtmp does not answer them either.

    def _handle_connect(self, txn: float, command: Any, events: list[Event]) -> None:
        if self._connected:
            raise RtmpError("connect sent twice")
        if not isinstance(command, dict):
            raise RtmpError("connect without a command object")
        app = command.get("app", "")
        if not isinstance(app, str):
            raise RtmpError("connect with a non-string app")
        encoding = command.get("objectEncoding", 0.0)
        self.object_encoding = 3.0 if encoding == 3 else 0.0
        self.app = normalise_app(app)
        tc_url = command.get("tcUrl", "")
        self.tc_url = tc_url if isinstance(tc_url, str) else ""
        flash_ver = command.get("flashVer", "")
        self.params = dict(command)
        self._connected = True
        self._send_control(MessageType.WINDOW_ACK_SIZE, window_ack_size(self._window))
        self._send_control(
            MessageType.SET_PEER_BANDWIDTH,
            set_peer_bandwidth(self._window, PeerBandwidthLimit.DYNAMIC),
        )
        self._send_control(MessageType.SET_CHUNK_SIZE, set_chunk_size(self.chunk_size_out))
        self._send_command(
            0,
            "_result",
            txn,
            {"fmsVer": SERVER_VERSION, "capabilities": 31.0, "mode": 1.0},
            {
                "level": "status",
                "code": "NetConnection.Connect.Success",
                "description": "Connection succeeded.",
                "objectEncoding": self.object_encoding,
            },
        )
        events.append(
            ConnectRequested(
                self.app, self.tc_url, flash_ver if isinstance(flash_ver, str) else "", self.params
            )
        )

    def _cmd_create_stream(
        self, msid: int, txn: float, args: list[Any], events: list[Event]
    ) -> None:
        if len(self._streams) >= MAX_STREAMS:
            self._send_command(
                0,
                "_error",
                txn,
                None,
                _status("error", "NetConnection.Call.Failed", "Too many streams"),
            )
            return
        stream_id = self._next_stream_id
        self._next_stream_id += 1
        self._streams[stream_id] = _NetStream(stream_id)
        self._send_command(0, "_result", txn, None, float(stream_id))

    def _cmd_ack_only(self, msid: int, txn: float, args: list[Any], events: list[Event]) -> None:
        # releaseStream / FCPublish: librtmp keeps the call pending until some answer comes.
        if txn:
            self._send_command(0, "_result", txn, None, amf0.UNDEFINED)

    def _cmd_get_stream_length(
        self, msid: int, txn: float, args: list[Any], events: list[Event]
    ) -> None:
        self._send_command(0, "_result", txn, None, 0.0)

    def _stream_for(self, msid: int, command: str) -> _NetStream:
        stream = self._streams.get(msid)
        if stream is None:
            raise RtmpError(f"{command} on message stream {msid}, which was never created")
        if stream.mode:
            raise RtmpError(f"{command} on a stream that is already in use ({stream.mode})")
        return stream

    def _cmd_publish(self, msid: int, txn: float, args: list[Any], events: list[Event]) -> None:
        stream = self._stream_for(msid, "publish")
        raw = args[0] if args and isinstance(args[0], str) else ""
        kind = args[1] if len(args) > 1 and isinstance(args[1], str) else "live"
        name, query = split_name(raw)
        stream.mode = "publish-pending"
        stream.name = name
        events.append(PublishRequested(msid, self.app, name, query, kind))

    def _cmd_play(self, msid: int, txn: float, args: list[Any], events: list[Event]) -> None:
        stream = self._stream_for(msid, "play")
        raw = args[0] if args and isinstance(args[0], str) else ""
        start = args[1] if len(args) > 1 and isinstance(args[1], float) else -2.0
        name, query = split_name(raw)
        stream.mode = "play-pending"
        stream.name = name
        events.append(PlayRequested(msid, self.app, name, query, start))

    def _cmd_delete_stream(
        self, msid: int, txn: float, args: list[Any], events: list[Event]
    ) -> None:
        target = args[0] if args and isinstance(args[0], float) else float(msid)
        stream_id = int(target) if 0 <= target < 2**31 else -1
        if self._streams.pop(stream_id, None) is not None:
            events.append(StreamClosed(stream_id))

    def _cmd_close_stream(
        self, msid: int, txn: float, args: list[Any], events: list[Event]
    ) -> None:
        stream = self._streams.get(msid)
        if stream is not None and stream.mode:
            stream.mode = ""
            events.append(StreamClosed(msid))

    def _cmd_receive(
        self, msid: int, txn: float, args: list[Any], events: list[Event], *, audio: bool
    ) -> None:
        flag = bool(args[0]) if args else True
        events.append(ReceiveToggled(msid, flag if audio else None, None if audio else flag))

    def _cmd_receive_audio(
        self, msid: int, txn: float, args: list[Any], events: list[Event]
    ) -> None:
        self._cmd_receive(msid, txn, args, events, audio=True)

    def _cmd_receive_video(
        self, msid: int, txn: float, args: list[Any], events: list[Event]
    ) -> None:
        self._cmd_receive(msid, txn, args, events, audio=False)

    def _handle_data(self, message: Message, values: list[Any], events: list[Event]) -> None:
        stream = self._streams.get(message.stream_id)
        if stream is None or stream.mode not in ("publishing", "publish-pending"):
            return
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            metadata = dict(values[1])
            if stream.mode == "publishing":
                events.append(MetadataReceived(stream.stream_id, metadata))
            else:
                stream.pending_metadata = metadata

    def _handle_aggregate(self, message: Message, events: list[Event]) -> None:
        """Aggregate messages hold FLV tags; each sub-tag's time is rebased on the message's
        (spec §7.1.6)."""
        stream = self._streams.get(message.stream_id)
        if stream is None or stream.mode != "publishing":
            return
        data = message.payload
        pos = 0
        first_ts: int | None = None
        count = 0
        while pos + 11 <= len(data):
            count += 1
            if count > MAX_AGGREGATE_TAGS:
                raise RtmpError("aggregate message with too many tags")
            tag_type = data[pos]
            size = int.from_bytes(data[pos + 1 : pos + 4], "big")
            ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
            end = pos + 11 + size
            if end + 4 > len(data) and end != len(data):
                raise RtmpError("aggregate message tag overruns the message")
            body = data[pos + 11 : end]
            if first_ts is None:
                first_ts = ts
            timestamp = (message.timestamp + ts - first_ts) & 0xFFFFFFFF
            if tag_type in (MessageType.AUDIO, MessageType.VIDEO):
                events.append(MediaReceived(message.stream_id, tag_type, timestamp, body))
            pos = end + 4

    # ------------------------------------------------------------------------- decisions

    def accept_publish(self, stream_id: int, description: str = "") -> list[Event]:
        """Start the publish: StreamBegin and NetStream.Publish.Start (FFmpeg and OBS send no
        media before it). Returns metadata that arrived while the decision was pending."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.mode != "publish-pending":
            return []
        stream.mode = "publishing"
        self._send_control(
            MessageType.USER_CONTROL, user_control(UserControl.STREAM_BEGIN, stream_id)
        )
        self.send_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            description or f"{stream.name} is now published.",
        )
        if stream.pending_metadata is not None:
            metadata, stream.pending_metadata = stream.pending_metadata, None
            return [MetadataReceived(stream_id, metadata)]
        return []

    def reject_publish(self, stream_id: int, code: str, description: str) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.mode = ""
        self.send_status(stream_id, "error", code, description)

    def accept_play(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.mode != "play-pending":
            return
        stream.mode = "playing"
        self._send_control(
            MessageType.USER_CONTROL, user_control(UserControl.STREAM_BEGIN, stream_id)
        )
        self.send_status(
            stream_id, "status", "NetStream.Play.Reset", f"Playing and resetting {stream.name}."
        )
        self.send_status(
            stream_id, "status", "NetStream.Play.Start", f"Started playing {stream.name}."
        )
        # Flash players need this before they let scripts read the media; nginx-rtmp sends it.
        self._send(
            CSID_DATA,
            MessageType.DATA_AMF0,
            stream_id,
            0,
            amf0.encode("|RtmpSampleAccess", True, True),
        )

    def reject_play(self, stream_id: int, code: str, description: str) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.mode = ""
        self.send_status(stream_id, "error", code, description)

    def end_play(self, stream_id: int, description: str) -> None:
        """The publisher is gone: StreamEOF and NetStream.Play.UnpublishNotify (FFmpeg and
        librtmp end their read on it)."""
        self._send_control(
            MessageType.USER_CONTROL, user_control(UserControl.STREAM_EOF, stream_id)
        )
        self.send_status(stream_id, "status", "NetStream.Play.UnpublishNotify", description)

    def resume_play(self, stream_id: int, description: str) -> None:
        """A publisher (re)started for a player that was told it had stopped."""
        self._send_control(
            MessageType.USER_CONTROL, user_control(UserControl.STREAM_BEGIN, stream_id)
        )
        self.send_status(stream_id, "status", "NetStream.Play.PublishNotify", description)

    def send_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        self._send_command(
            stream_id, "onStatus", 0.0, None, _status(level, code, description), csid=CSID_STATUS
        )

    def send_ping(self, timestamp: int) -> None:
        self._send_control(
            MessageType.USER_CONTROL, user_control(UserControl.PING_REQUEST, timestamp)
        )

    def stream_mode(self, stream_id: int) -> str:
        stream = self._streams.get(stream_id)
        return stream.mode if stream is not None else ""

    # ---------------------------------------------------------------------------- output

    def _send(
        self, csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes
    ) -> None:
        self._out += chunk_message(
            csid, type_id, stream_id, timestamp, payload, self.chunk_size_out
        )

    def _send_control(self, type_id: int, payload: bytes) -> None:
        # Set Chunk Size must go out in the old size; every control message here is far
        # below 128 bytes, so one chunk whatever the size.
        self._send(CSID_CONTROL, type_id, 0, 0, payload)

    def _send_command(
        self, stream_id: int, name: str, txn: float, *values: Any, csid: int = CSID_COMMAND
    ) -> None:
        self._send(csid, MessageType.COMMAND_AMF0, stream_id, 0, amf0.encode(name, txn, *values))


def _status(level: str, code: str, description: str) -> dict[str, Any]:
    return {"level": level, "code": code, "description": description}


def _decode(payload: bytes) -> list[Any]:
    try:
        return amf0.decode(payload)
    except AmfError:
        raise
    except RecursionError as exc:  # defensive: amf0 bounds depth itself
        raise AmfError("AMF nested too deep") from exc


_Handler = Callable[[ServerConnection, int, float, list[Any], list[Event]], None]
_COMMANDS: dict[str, _Handler] = {
    "createStream": ServerConnection._cmd_create_stream,
    "releaseStream": ServerConnection._cmd_ack_only,
    "FCPublish": ServerConnection._cmd_ack_only,
    "getStreamLength": ServerConnection._cmd_get_stream_length,
    "publish": ServerConnection._cmd_publish,
    "play": ServerConnection._cmd_play,
    "deleteStream": ServerConnection._cmd_delete_stream,
    "closeStream": ServerConnection._cmd_close_stream,
    "FCUnpublish": ServerConnection._cmd_close_stream,
    "receiveAudio": ServerConnection._cmd_receive_audio,
    "receiveVideo": ServerConnection._cmd_receive_video,
}
