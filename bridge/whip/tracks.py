"""The track aiortc sends to one WHEP viewer: already-encoded packets, shared by every viewer.

aiortc's sender awaits ``recv()`` and, given an ``av.Packet``, packetises it without
decoding. The packets themselves are built once per channel (see ``feed``); each viewer only
holds references to them in its own bounded queue.
"""

from __future__ import annotations

import asyncio
from collections import deque

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

# A viewer this far behind is not keeping up (a stalled network path): it skips ahead.
MAX_QUEUED = 600
MAX_QUEUED_BYTES = 24 * 1024 * 1024
# A new viewer's cached GOP goes out faster than real time, but not all at once: a 2 s GOP
# of 3 Mbps sent in one go would overflow router buffers on a real path, and the lost
# packets would be older than aiortc's retransmission history. The keyframe is not held.
BURST_BYTES_PER_SECOND = 2_500_000  # 20 Mbit/s


class PacketTrack(MediaStreamTrack):
    """A bounded queue of encoded packets with ``recv()`` for aiortc.

    A video track starts on a keyframe, and when its queue overflows it drops what it holds
    and waits for the next keyframe (a partial GOP only makes the decoder ask for more).
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._queue: deque[av.Packet] = deque()
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self.waiting_key = kind == "video"
        self.dropped = 0
        self.sent = 0
        self.bytes_sent = 0
        self._burst_left = 0  # packets at the head of the queue that are the catch-up burst
        self._burst_bytes = 0
        self._burst_started = 0.0

    def burst(self, packets: list[tuple[av.Packet, bool]]) -> None:
        """Queue the catch-up packets a new viewer starts with, to be sent paced."""
        before = len(self._queue)
        for packet, keyframe in packets:
            self.offer(packet, keyframe)
        self._burst_left = len(self._queue) - before if not before else 0
        self._burst_bytes = 0

    def offer(self, packet: av.Packet, keyframe: bool) -> None:
        if self.readyState != "live":
            return
        if self.waiting_key:
            if not keyframe:
                self.dropped += 1
                return
            self.waiting_key = False
        size = packet.size
        if len(self._queue) >= MAX_QUEUED or self._bytes + size > MAX_QUEUED_BYTES:
            self.dropped += len(self._queue) + 1
            self._queue.clear()
            self._bytes = 0
            self._burst_left = 0
            if self.kind == "video" and not keyframe:
                self.waiting_key = True
                return
            self.dropped -= 1
        self._queue.append(packet)
        self._bytes += size
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def resync(self) -> None:
        """The sender had to drop a frame: what is queued cannot be decoded without it, so
        drop that too and start again at the next keyframe (video)."""
        self.dropped += len(self._queue)
        self._queue.clear()
        self._bytes = 0
        self._burst_left = 0
        if self.kind == "video":
            self.waiting_key = True

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def recv(self) -> av.Packet:  # type: ignore[override]
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.readyState != "live":
            raise MediaStreamError
        if self._burst_left:
            await self._pace()
            if not self._queue or self.readyState != "live":
                raise MediaStreamError
        packet = self._queue.popleft()
        self._bytes -= packet.size
        self.sent += 1
        self.bytes_sent += packet.size
        return packet

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._burst_bytes:
            self._burst_started = loop.time()
        else:
            due = self._burst_started + self._burst_bytes / BURST_BYTES_PER_SECOND
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        self._burst_left -= 1
        if self._queue:
            self._burst_bytes += self._queue[0].size

    def stop(self) -> None:
        super().stop()
        self._queue.clear()
        self._bytes = 0
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
