"""An RTMPT client for unit tests: the sans-IO RTMP client pieces over aiohttp's TestClient.

It speaks the tunnel as librtmp and FFmpeg do (open, then send/idle with a SEQ counter that
starts at 0) and feeds every reply's payload, polling byte stripped, into a ClientHandshake and
then a ChunkReader, so a test can read the server's messages.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient
from multidict import CIMultiDictProxy

from bridge.rtmp import amf0
from bridge.rtmp.chunk import ChunkReader, Message, chunk_message
from bridge.rtmp.handshake import ClientHandshake
from bridge.rtmp.messages import MessageType, set_chunk_size

VIDEO = int(MessageType.VIDEO)
COMMAND = int(MessageType.COMMAND_AMF0)

# A tiny AVC stream: the FLV bodies a publisher sends (legacy AVC tags). The avcC holds a
# one-byte-short SPS on purpose: the server must treat its dimensions as informative only.
AVC_SEQUENCE_HEADER = (
    b"\x17\x00\x00\x00\x00"
    + b"\x01\x42\xc0\x1e\xff\xe1\x00\x04\x67\x42\xc0\x1e\x01\x00\x04\x68\xce\x3c\x80"
)


def avc_frame(keyframe: bool, payload: bytes) -> bytes:
    """An FLV AVC NALU tag body (CTS 0) carrying one length-prefixed NAL unit."""
    nal = (b"\x65" if keyframe else b"\x41") + payload
    return bytes((0x17 if keyframe else 0x27, 1, 0, 0, 0)) + len(nal).to_bytes(4, "big") + nal


@dataclass
class Reply:
    status: int
    body: bytes
    headers: CIMultiDictProxy[str]
    version: tuple[int, int] = (1, 1)


@dataclass
class Tunnel:
    """One RTMPT session as a client sees it."""

    http: TestClient
    id: str = ""
    seq: int = 0
    handshake: ClientHandshake = field(default_factory=ClientHandshake)
    reader: ChunkReader = field(default_factory=ChunkReader)
    messages: list[Message] = field(default_factory=list)
    polling: list[int] = field(default_factory=list)  # every reply's polling byte
    chunk_size: int = 128

    # -------------------------------------------------------------------------- HTTP level

    async def post(self, path: str, body: bytes = b"\x00", **headers: str) -> Reply:
        async with self.http.post(
            path,
            data=body,
            headers={"Content-Type": "application/x-fcs", **headers},
        ) as resp:
            data = await resp.read()
            return Reply(resp.status, data, resp.headers, (resp.version.major, resp.version.minor))

    async def open(self, **headers: str) -> Reply:
        reply = await self.post("/open/1", **headers)
        assert reply.status == 200, reply
        self.id = reply.body[:-1].decode()
        self.seq = 0
        return reply

    async def request(self, kind: str, body: bytes = b"\x00", seq: int | None = None) -> Reply:
        """POST /kind/ID/SEQ (the next SEQ unless given); a 200 reply's payload is read."""
        if seq is None:
            seq = self.seq
            self.seq += 1
        reply = await self.post(f"/{kind}/{self.id}/{seq}", body)
        if reply.status == 200 and kind != "close":
            self.feed(reply.body)
        return reply

    async def send(self, data: bytes) -> Reply:
        return await self.request("send", data)

    async def idle(self) -> Reply:
        return await self.request("idle")

    # -------------------------------------------------------------------------- RTMP level

    def feed(self, body: bytes) -> None:
        assert body, "a send/idle reply always carries the polling byte"
        self.polling.append(body[0])
        data = body[1:]
        if not self.handshake.done and data:
            self.handshake.receive_data(data)
            data = self.handshake.take_leftover()
        if data:
            self.messages.extend(self.reader.feed(data))

    async def do_handshake(self) -> bytes:
        """C0+C1 in the first send; returns C2 (to be sent with the next bytes)."""
        await self.send(self.handshake.initial_data())
        for _ in range(20):
            if self.handshake.done:
                break
            await self.idle()
        assert self.handshake.done
        return self.handshake.data_to_send()

    def chunks(self, csid: int, type_id: int, msid: int, ts: int, payload: bytes) -> bytes:
        return chunk_message(csid, type_id, msid, ts, payload, self.chunk_size)

    def command(self, name: str, txn: float, obj: Any, *args: Any, msid: int = 0) -> bytes:
        return self.chunks(3, COMMAND, msid, 0, amf0.encode(name, txn, obj, *args))

    def connect_bytes(self, app: str) -> bytes:
        return self.command(
            "connect", 1.0, {"app": app, "tcUrl": f"rtmpt://127.0.0.1/{app}", "flashVer": "LNX 9"}
        )

    def big_chunks(self) -> bytes:
        """Set Chunk Size 65536 (so media goes in few chunks)."""
        data = chunk_message(2, int(MessageType.SET_CHUNK_SIZE), 0, 0, set_chunk_size(65536), 128)
        self.chunk_size = 65536
        return data

    def commands(self) -> list[tuple[int, list[Any]]]:
        return [
            (m.stream_id, amf0.decode(m.payload)) for m in self.messages if m.type_id == COMMAND
        ]

    def statuses(self) -> list[str]:
        return [v[3]["code"] for _, v in self.commands() if v[0] == "onStatus"]

    def results(self) -> list[list[Any]]:
        return [v for _, v in self.commands() if v[0] == "_result"]

    def video(self) -> list[bytes]:
        return [m.payload for m in self.messages if m.type_id == VIDEO]

    async def poll_until(self, done: Any, timeout: float = 3.0) -> None:
        """Idle until ``done()`` holds (what librtmp does while it waits for a reply)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not done():
            assert asyncio.get_running_loop().time() < deadline, "timed out polling"
            reply = await self.idle()
            assert reply.status == 200, reply

    async def start(
        self,
        app: str = "chan",
        *,
        mode: str,
        key: str = "key",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Open (with ``headers``), handshake, connect, createStream and publish or play
        ``key`` on stream 1; returns the last reply."""
        await self.open(**(headers or {}))
        c2 = await self.do_handshake()
        return await self.send(
            c2
            + self.big_chunks()
            + self.connect_bytes(app)
            + self.command("createStream", 2.0, None)
            + self.command(mode, 3.0, None, key, *(["live"] if mode == "publish" else []), msid=1)
        )

    async def publish(self, app: str = "chan", key: str = "key") -> None:
        await self.start(app, mode="publish", key=key)
        await self.poll_until(lambda: "NetStream.Publish.Start" in self.statuses())

    async def play(self, app: str = "chan", key: str = "key", **headers: str) -> Reply:
        return await self.start(app, mode="play", key=key, headers=headers)

    def media(self, bodies: list[bytes], ts: int = 0, step: int = 33) -> bytes:
        return b"".join(
            self.chunks(6, VIDEO, 1, ts + i * step, body) for i, body in enumerate(bodies)
        )
