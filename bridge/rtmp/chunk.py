"""The RTMP chunk stream, sans-IO: chunks in, whole messages out; messages in, chunks out.

Reference: RTMP 1.0 §5.3 (/work/shared/reference/rtmp.md §3). Two details that clients get
wrong in different ways are handled explicitly:

- Extended timestamps on type-3 continuation chunks. The spec, FFmpeg and OBS put the 4 bytes
  there; old Flash servers did not. We read them when the bytes equal the value we expect and
  otherwise treat them as payload, the heuristic SRS uses.
- A type-3 chunk that starts a new message reuses the previous header and adds the previous
  timestamp field again (after a type-0 header, that field is the absolute timestamp).

The writer always starts a message with a type-0 header (absolute timestamp) and continues
with type-3 chunks. That costs a few bytes per message but makes the chunked bytes of a
message independent of what was sent before, so one serialisation can go to every reader.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from bridge.rtmp.errors import ChunkError

DEFAULT_CHUNK_SIZE = 128
# The chunk size field is 31 bits; values above 0xFFFFFF behave as 0xFFFFFF (spec §5.4.1).
MAX_CHUNK_SIZE_FIELD = 0x7FFFFFFF
EXTENDED = 0xFFFFFF

# Limits on what one peer may make us hold. gortmplib caps a message at 10 MiB; a 4K keyframe
# at a high bitrate is a few MiB.
MAX_MESSAGE_SIZE = 8 * 1024 * 1024
MAX_BYTES_IN_FLIGHT = 16 * 1024 * 1024
MAX_CHUNK_STREAMS = 256

TYPE_SET_CHUNK_SIZE = 1
TYPE_ABORT = 2

_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Message:
    """One reassembled RTMP message. ``timestamp`` is the 32-bit value as the peer sent it."""

    csid: int
    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes


class _ChunkStreamState:
    __slots__ = (
        "timestamp",
        "ts_field",
        "extended",
        "length",
        "type_id",
        "stream_id",
        "partial",
        "started",
    )

    def __init__(self) -> None:
        self.timestamp = 0  # absolute timestamp of the current/last message
        self.ts_field = 0  # last timestamp field (absolute for type 0, delta otherwise)
        self.extended = False  # the last type 0/1/2 header carried an extended timestamp
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.partial: bytearray | None = None  # payload of a message in progress
        self.started = False  # a type 0 header has been seen on this csid


class ChunkReader:
    """Reassembles messages from the peer's chunk stream.

    Set Chunk Size and Abort are applied here, as soon as they are parsed, because they change
    how the very next chunk is read; they are also returned like any other message.
    """

    def __init__(
        self,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_bytes_in_flight: int = MAX_BYTES_IN_FLIGHT,
        max_chunk_streams: int = MAX_CHUNK_STREAMS,
    ) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._max_message_size = max_message_size
        self._max_in_flight = max_bytes_in_flight
        self._max_streams = max_chunk_streams
        self._streams: dict[int, _ChunkStreamState] = {}
        self._buffer = bytearray()
        self._in_flight = 0  # declared lengths of the messages in progress

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed (at most one chunk header plus one chunk)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        """Take bytes from the peer; return every message they complete, in order."""
        self._buffer += data
        messages: list[Message] = []
        buf = self._buffer
        pos = 0
        while True:
            consumed = self._read_chunk(buf, pos, messages)
            if consumed == 0:
                break
            pos += consumed
        if pos:
            del buf[:pos]
        return messages

    def _state(self, csid: int) -> _ChunkStreamState:
        state = self._streams.get(csid)
        if state is None:
            if len(self._streams) >= self._max_streams:
                raise ChunkError(f"too many chunk streams (more than {self._max_streams})")
            state = self._streams[csid] = _ChunkStreamState()
        return state

    def _read_chunk(self, buf: bytearray, pos: int, out: list[Message]) -> int:
        """Parse one chunk at ``pos``. Returns bytes consumed, or 0 if it is incomplete."""
        end = len(buf)
        start = pos
        if pos >= end:
            return 0
        first = buf[pos]
        fmt = first >> 6
        csid = first & 0x3F
        pos += 1
        if csid == 0:
            if pos + 1 > end:
                return 0
            csid = buf[pos] + 64
            pos += 1
        elif csid == 1:
            if pos + 2 > end:
                return 0
            csid = buf[pos + 1] * 256 + buf[pos] + 64
            pos += 2

        header_len = (11, 7, 3, 0)[fmt]
        if pos + header_len > end:
            return 0
        state = self._streams.get(csid)
        if state is None:
            if fmt != 0:
                raise ChunkError(f"chunk stream {csid} starts with a type-{fmt} header")
            state = self._state(csid)
        elif fmt != 0 and not state.started:
            raise ChunkError(f"chunk stream {csid} starts with a type-{fmt} header")

        new_message = state.partial is None
        if fmt != 3 and not new_message:
            # A new header while a message is unfinished: the peer abandoned it. FFmpeg and
            # nginx treat this as an error; so do we, since its length and type may change.
            raise ChunkError(f"new header on chunk stream {csid} inside an unfinished message")

        ts_field = state.ts_field
        length = state.length
        type_id = state.type_id
        stream_id = state.stream_id
        if fmt <= 2:
            ts_field = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
            if fmt <= 1:
                length = (buf[pos + 3] << 16) | (buf[pos + 4] << 8) | buf[pos + 5]
                type_id = buf[pos + 6]
                if fmt == 0:
                    stream_id = _U32LE.unpack_from(buf, pos + 7)[0]
        pos += header_len

        extended = state.extended if fmt == 3 else ts_field == EXTENDED
        if extended:
            if fmt != 3 or new_message:
                if pos + 4 > end:
                    return 0
                ts_field = _U32.unpack_from(buf, pos)[0]
                pos += 4
            else:
                # Continuation chunk: the 4 bytes may or may not be there (see module doc).
                if pos + 4 > end:
                    return 0
                if _U32.unpack_from(buf, pos)[0] == state.ts_field:
                    pos += 4

        if new_message:
            if length > self._max_message_size:
                raise ChunkError(
                    f"message of {length} bytes is over the limit of {self._max_message_size}"
                )
            if self._in_flight + length > self._max_in_flight:
                raise ChunkError("too many bytes in unfinished messages")
            want = min(length, self.chunk_size)
        else:
            assert state.partial is not None
            want = min(length - len(state.partial), self.chunk_size)
        if pos + want > end:
            return 0

        # The whole chunk is here: commit the header to the state.
        if new_message:
            if fmt == 0:
                timestamp = ts_field
            else:
                timestamp = (state.timestamp + ts_field) & 0xFFFFFFFF
            state.timestamp = timestamp
            state.ts_field = ts_field
            state.length = length
            state.type_id = type_id
            state.stream_id = stream_id
            if fmt != 3:
                state.extended = extended
            state.started = True
            if want == length:
                out.append(
                    Message(csid, type_id, stream_id, timestamp, bytes(buf[pos : pos + want]))
                )
                self._apply_control(out[-1])
                return pos + want - start
            state.partial = bytearray(buf[pos : pos + want])
            self._in_flight += length
            return pos + want - start

        assert state.partial is not None
        state.partial += buf[pos : pos + want]
        if len(state.partial) == length:
            payload = bytes(state.partial)
            state.partial = None
            self._in_flight -= length
            out.append(Message(csid, type_id, stream_id, state.timestamp, payload))
            self._apply_control(out[-1])
        return pos + want - start

    def _apply_control(self, message: Message) -> None:
        if message.stream_id != 0 and message.type_id in (TYPE_SET_CHUNK_SIZE, TYPE_ABORT):
            return
        if message.type_id == TYPE_SET_CHUNK_SIZE:
            if len(message.payload) < 4:
                raise ChunkError("Set Chunk Size message is too short")
            size = _U32.unpack_from(message.payload)[0]
            if size & 0x80000000:
                raise ChunkError(f"Set Chunk Size {size:#x} has the top bit set")
            if size == 0:
                raise ChunkError("Set Chunk Size 0")
            self.chunk_size = min(size, EXTENDED)
        elif message.type_id == TYPE_ABORT:
            if len(message.payload) < 4:
                raise ChunkError("Abort message is too short")
            csid = _U32.unpack_from(message.payload)[0]
            state = self._streams.get(csid)
            if state is not None and state.partial is not None:
                self._in_flight -= state.length
                state.partial = None


def _basic_header(fmt: int, csid: int) -> bytes:
    if 2 <= csid <= 63:
        return bytes(((fmt << 6) | csid,))
    if 64 <= csid <= 319:
        return bytes((fmt << 6, csid - 64))
    if 320 <= csid <= 65599:
        rest = csid - 64
        return bytes(((fmt << 6) | 1, rest & 0xFF, rest >> 8))
    raise ValueError(f"chunk stream id {csid} out of range")


def chunk_message(
    csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes, chunk_size: int
) -> bytes:
    """Serialise one message: a type-0 chunk, then type-3 continuations.

    The result does not depend on earlier messages, so it may be cached and sent to any
    connection that uses ``chunk_size`` and has the message stream ``stream_id``.
    """
    timestamp &= 0xFFFFFFFF
    length = len(payload)
    if length > 0xFFFFFF:
        raise ValueError("RTMP message payload over 16 MiB")
    extended = timestamp >= EXTENDED
    ts_field = EXTENDED if extended else timestamp
    first = bytearray(_basic_header(0, csid))
    first += ts_field.to_bytes(3, "big")
    first += length.to_bytes(3, "big")
    first.append(type_id)
    first += _U32LE.pack(stream_id)
    if extended:
        first += _U32.pack(timestamp)
    if length <= chunk_size:
        first += payload
        return bytes(first)
    continuation = _basic_header(3, csid) + (_U32.pack(timestamp) if extended else b"")
    view = memoryview(payload)
    parts: list[bytes | bytearray | memoryview] = [first, view[:chunk_size]]
    for offset in range(chunk_size, length, chunk_size):
        parts.append(continuation)
        parts.append(view[offset : offset + chunk_size])
    return b"".join(parts)
