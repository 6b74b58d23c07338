"""A reader of a stream: a bounded queue that never makes the publisher wait."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Protocol

from bridge.media.units import MediaUnit, Metadata, starts_gop

if TYPE_CHECKING:
    from bridge.bus.stream import Stream

Item = MediaUnit | Metadata

DEFAULT_MAX_UNITS = 2048
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


class ReaderSink(Protocol):
    """What an output adapter gives the bus for one reader."""

    def on_ready(self) -> None:
        """Items are waiting (called when the queue stops being empty)."""

    def on_publish_start(self) -> None:
        """A publish began on the stream (the first, or one after a gap)."""

    def on_publish_end(self) -> None:
        """The publisher is gone and did not come back within the grace period."""

    def on_refused(self, reason: str) -> None:
        """The reader was detached by the bus (wrong key for the new publisher, ...)."""


class Reader:
    """One reader's queue. The stream offers every item; the owner takes them as fast as its
    connection drains. When the queue is full, everything queued is dropped and the reader
    skips to the next point it can start from (a keyframe); the drop is counted."""

    __slots__ = (
        "stream",
        "sink",
        "key",
        "active",
        "queue",
        "queued_bytes",
        "max_units",
        "max_bytes",
        "waiting_key",
        "dropped",
        "delivered",
        "_extra_units",
        "_extra_bytes",
        "internal",
    )

    def __init__(
        self,
        stream: Stream,
        sink: ReaderSink,
        key: str | None,
        *,
        max_units: int = DEFAULT_MAX_UNITS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        internal: bool = False,
    ) -> None:
        self.stream = stream
        self.internal = internal  # the server's own output (HLS), not a viewer
        self.sink = sink
        self.key = key
        self.active = False
        self.queue: deque[Item] = deque()
        self.queued_bytes = 0
        self.max_units = max_units
        self.max_bytes = max_bytes
        self.waiting_key = True
        self.dropped = 0
        self.delivered = 0
        # The initial GOP does not count against the bounds; shrinks as it is taken.
        self._extra_units = 0
        self._extra_bytes = 0

    def start(self, initial: list[Item]) -> None:
        """Begin with the cached GOP. It may exceed the queue bound: the stream holds those
        units anyway, so the bound applies to what comes after."""
        self.active = True
        self.waiting_key = True
        for item in initial:
            if isinstance(item, MediaUnit):
                if self.waiting_key:
                    if not starts_gop(item, self.stream.has_video):
                        continue
                    self.waiting_key = False
                self.queued_bytes += item.size
            self.queue.append(item)
        self._extra_units = len(self.queue)
        self._extra_bytes = self.queued_bytes
        if self.queue:
            self.sink.on_ready()

    def offer(self, item: Item) -> None:
        queue = self.queue
        was_empty = not queue
        if isinstance(item, MediaUnit):
            if self.waiting_key:
                if not starts_gop(item, self.stream.has_video):
                    self.dropped += 1
                    return
                self.waiting_key = False
            if (
                len(queue) >= self.max_units + self._extra_units
                or self.queued_bytes + item.size > self.max_bytes + self._extra_bytes
            ):
                self._overflow(item)
                if not queue:
                    return
            else:
                queue.append(item)
                self.queued_bytes += item.size
        else:
            if len(queue) >= self.max_units + self._extra_units:
                return
            queue.append(item)
        if was_empty:
            self.sink.on_ready()

    def _overflow(self, item: MediaUnit) -> None:
        metadata = None
        for queued in self.queue:
            if isinstance(queued, Metadata):
                metadata = queued  # the latest one still matters to the player
            else:
                self.dropped += 1
        self.dropped += 1
        self.queue.clear()
        self.queued_bytes = 0
        self._extra_units = self._extra_bytes = 0
        self.waiting_key = True
        if metadata is not None and self.max_units > 1:
            self.queue.append(metadata)
        if starts_gop(item, self.stream.has_video):
            # This unit is itself a place to start from: keep it, skip nothing more.
            self.dropped -= 1
            self.waiting_key = False
            self.queue.append(item)
            self.queued_bytes = item.size

    def take(self) -> Item | None:
        if not self.queue:
            return None
        item = self.queue.popleft()
        if self._extra_units:
            self._extra_units -= 1
        if isinstance(item, MediaUnit):
            self.queued_bytes -= item.size
            self.delivered += 1
            if self._extra_bytes:
                self._extra_bytes = max(0, self._extra_bytes - item.size)
        return item

    def clear(self) -> None:
        self.queue.clear()
        self.queued_bytes = 0
        self._extra_units = self._extra_bytes = 0
        self.waiting_key = True
