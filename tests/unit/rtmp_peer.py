"""An in-memory RTMP client for driving ``ServerConnection`` in unit tests (no sockets)."""

from __future__ import annotations

from typing import Any

from bridge.rtmp import amf0
from bridge.rtmp.chunk import ChunkReader, Message, chunk_message
from bridge.rtmp.connection import Event, ServerConnection
from bridge.rtmp.handshake import ClientHandshake


class Peer:
    def __init__(self, server: ServerConnection | None = None, *, digest: bool = False) -> None:
        self.server = server or ServerConnection(chunk_size=4096)
        self.reader = ChunkReader()
        self.handshake = ClientHandshake(digest=digest)
        self.received: list[Message] = []
        self.chunk_size = 128

    def pump(self, data: bytes, *, bytewise: bool = False) -> list[Event]:
        events: list[Event] = []
        if bytewise:
            for i in range(len(data)):
                events.extend(self.server.receive_data(data[i : i + 1]))
        else:
            events.extend(self.server.receive_data(data))
        self._read_output()
        return events

    def _read_output(self) -> None:
        out = self.server.data_to_send()
        if not out:
            return
        if not self.handshake.done:
            self.handshake.receive_data(out)
            out = self.handshake.take_leftover()
        if out:
            self.received.extend(self.reader.feed(out))

    def do_handshake(self, *, bytewise: bool = False) -> list[Event]:
        events = self.pump(self.handshake.initial_data(), bytewise=bytewise)
        events += self.pump(self.handshake.data_to_send(), bytewise=bytewise)
        assert self.handshake.done
        return events

    def send(
        self, csid: int, type_id: int, msid: int, ts: int, payload: bytes, *, bytewise: bool = False
    ) -> list[Event]:
        return self.pump(
            chunk_message(csid, type_id, msid, ts, payload, self.chunk_size), bytewise=bytewise
        )

    def command(
        self, name: str, txn: float, obj: Any, *args: Any, msid: int = 0, bytewise: bool = False
    ) -> list[Event]:
        return self.send(3, 20, msid, 0, amf0.encode(name, txn, obj, *args), bytewise=bytewise)

    def commands_received(self) -> list[tuple[int, list[Any]]]:
        """(message stream id, decoded values) for each command message received so far."""
        return [(m.stream_id, amf0.decode(m.payload)) for m in self.received if m.type_id == 20]

    def statuses(self) -> list[str]:
        return [v[3]["code"] for _, v in self.commands_received() if v[0] == "onStatus"]

    def connect(self, app: str = "chan") -> list[Event]:
        events = self.do_handshake()
        events += self.command(
            "connect", 1.0, {"app": app, "tcUrl": f"rtmp://127.0.0.1/{app}", "flashVer": "FMLE/3.0"}
        )
        return events

    def create_stream(self, txn: float = 4.0) -> int:
        self.command("createStream", txn, None)
        for _, values in reversed(self.commands_received()):
            if values[0] == "_result" and values[1] == txn:
                return int(values[3])
        raise AssertionError("no createStream result")
