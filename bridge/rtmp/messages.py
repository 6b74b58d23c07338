"""RTMP message types, protocol control and user control messages (spec §5.4, §6.2, §7.1)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from bridge.rtmp.errors import RtmpError

_U32 = struct.Struct(">I")
_U16U32 = struct.Struct(">HI")
_U16U32U32 = struct.Struct(">HII")


class MessageType(IntEnum):
    SET_CHUNK_SIZE = 1
    ABORT = 2
    ACKNOWLEDGEMENT = 3
    USER_CONTROL = 4
    WINDOW_ACK_SIZE = 5
    SET_PEER_BANDWIDTH = 6
    AUDIO = 8
    VIDEO = 9
    DATA_AMF3 = 15
    SHARED_OBJECT_AMF3 = 16
    COMMAND_AMF3 = 17
    DATA_AMF0 = 18
    SHARED_OBJECT_AMF0 = 19
    COMMAND_AMF0 = 20
    AGGREGATE = 22


class UserControl(IntEnum):
    STREAM_BEGIN = 0
    STREAM_EOF = 1
    STREAM_DRY = 2
    SET_BUFFER_LENGTH = 3
    STREAM_IS_RECORDED = 4
    PING_REQUEST = 6
    PING_RESPONSE = 7


class PeerBandwidthLimit(IntEnum):
    HARD = 0
    SOFT = 1
    DYNAMIC = 2


# Chunk stream ids we send on. 2 is reserved for protocol control by the spec; the others are
# our choice (nginx uses similar ones). Media of every reader uses the same ones, which is what
# lets one serialisation of a packet go to all readers.
CSID_CONTROL = 2
CSID_COMMAND = 3
CSID_STATUS = 5
CSID_DATA = 5
CSID_AUDIO = 6
CSID_VIDEO = 7


def u32(value: int) -> bytes:
    return _U32.pack(value & 0xFFFFFFFF)


def set_chunk_size(size: int) -> bytes:
    return u32(size)


def acknowledgement(sequence: int) -> bytes:
    return u32(sequence)


def window_ack_size(size: int) -> bytes:
    return u32(size)


def set_peer_bandwidth(size: int, limit: PeerBandwidthLimit = PeerBandwidthLimit.DYNAMIC) -> bytes:
    return u32(size) + bytes((limit,))


def user_control(event: UserControl, value: int, extra: int | None = None) -> bytes:
    if extra is None:
        return _U16U32.pack(event, value & 0xFFFFFFFF)
    return _U16U32U32.pack(event, value & 0xFFFFFFFF, extra & 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class UserControlEvent:
    event: int
    value: int
    extra: int | None = None


def parse_user_control(payload: bytes) -> UserControlEvent:
    """Parse a user control message. Unknown event types are returned, not refused."""
    if len(payload) < 2:
        raise RtmpError("user control message is too short")
    event = int.from_bytes(payload[:2], "big")
    if len(payload) >= 10 and event == UserControl.SET_BUFFER_LENGTH:
        _, value, extra = _U16U32U32.unpack_from(payload)
        return UserControlEvent(event, value, extra)
    if len(payload) >= 6:
        return UserControlEvent(event, _U16U32.unpack_from(payload)[1])
    return UserControlEvent(event, 0)


def parse_u32(payload: bytes, what: str) -> int:
    if len(payload) < 4:
        raise RtmpError(f"{what} message is too short")
    return int(_U32.unpack_from(payload)[0])
