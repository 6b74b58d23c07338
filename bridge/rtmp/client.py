"""The client side of an RTMP connection, sans-IO: the simple handshake and ``connect``.

Used by ``bridge probe`` and by tests; bytes in, bytes out, one reply.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.rtmp import amf0
from bridge.rtmp.chunk import ChunkReader, chunk_message
from bridge.rtmp.handshake import ClientHandshake
from bridge.rtmp.messages import CSID_COMMAND, MessageType

SUCCESS_CODE = "NetConnection.Connect.Success"
# A connect reply is a few hundred bytes; nothing bigger is worth holding.
MAX_REPLY_MESSAGE = 64 * 1024
# FFmpeg's player connect object (rtmp.md §7): servers know it, and it asks for no publish.
FLASH_VER = "LNX 9,0,124,2"


@dataclass(frozen=True, slots=True)
class ConnectReply:
    ok: bool
    code: str
    description: str


def connect_command(app: str, tc_url: str) -> bytes:
    """``connect`` (txn 1) as one chunked AMF0 command message at the default chunk size."""
    payload = amf0.encode(
        "connect",
        1.0,
        {
            "app": app,
            "flashVer": FLASH_VER,
            "tcUrl": tc_url,
            "fpad": False,
            "capabilities": 15.0,
            "audioCodecs": 4071.0,
            "videoCodecs": 252.0,
            "videoFunction": 1.0,
            "objectEncoding": 0.0,
        },
    )
    return chunk_message(CSID_COMMAND, MessageType.COMMAND_AMF0, 0, 0, payload, 128)


class ConnectExchange:
    """Client side of the simple handshake plus ``connect``: bytes in, bytes out, one reply.

    ``receive_data`` raises RtmpError when the server's bytes are not RTMP; ``reply`` is set
    once ``_result``/``_error`` for txn 1 (or a NetConnection.Connect.* error status) arrives.
    """

    def __init__(
        self, app: str, tc_url: str, *, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._handshake = ClientHandshake(random_bytes=random_bytes)
        self._reader = ChunkReader(max_message_size=MAX_REPLY_MESSAGE)
        self._connect = connect_command(app, tc_url)
        self._out = bytearray(self._handshake.initial_data())
        self.reply: ConnectReply | None = None

    @property
    def handshake_done(self) -> bool:
        return self._handshake.done

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        if self.reply is not None or not data:
            return
        if not self._handshake.done:
            self._handshake.receive_data(data)
            self._out += self._handshake.data_to_send()  # C2
            if not self._handshake.done:
                return
            self._out += self._connect  # the client may send once it has S2 (rtmp.md §2)
            data = self._handshake.take_leftover()
        for message in self._reader.feed(data):
            if message.type_id == MessageType.COMMAND_AMF0:
                self._on_command(amf0.decode(message.payload))
            elif message.type_id == MessageType.COMMAND_AMF3:
                self._on_command(amf0.decode(message.payload[1:]))
            if self.reply is not None:
                return

    def _on_command(self, values: list[Any]) -> None:
        if len(values) < 2 or not isinstance(values[0], str):
            return
        name, txn = values[0], values[1]
        info = next((v for v in values[2:] if isinstance(v, dict) and "code" in v), {})
        code = info.get("code")
        code = code if isinstance(code, str) else ""
        description = info.get("description")
        description = description if isinstance(description, str) else ""
        if name in ("_result", "_error") and txn == 1:
            ok = name == "_result" and code == SUCCESS_CODE
            self.reply = ConnectReply(ok, code or f"{name} without a status code", description)
        elif name == "onStatus" and code.startswith("NetConnection.Connect."):
            # Some servers announce a refusal with onStatus before (or instead of) _error.
            if code != SUCCESS_CODE:
                self.reply = ConnectReply(False, code, description)
