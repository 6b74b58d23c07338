"""The channel registry: the one place that creates, hands out and forgets streams."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bridge.bus.reader import Reader, ReaderSink
from bridge.bus.stream import Stream

log = logging.getLogger("bridge.bus")


class PublishRefused(Exception):
    """The channel already has a live publisher."""


class Registry:
    def __init__(
        self,
        *,
        gop_cache_bytes: int,
        unpublish_grace: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.streams: dict[str, Stream] = {}
        self._gop_cache_bytes = gop_cache_bytes
        self._grace = unpublish_grace
        self._clock = clock
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.dropped_total = 0  # units dropped by readers that have since detached
        # Called with each stream whose publish starts: outputs that run whether or not a
        # viewer is there yet (HLS segments, so the first viewer has a full window).
        self.publish_observers: list[Callable[[Stream], None]] = []

    def get(self, channel: str) -> Stream | None:
        return self.streams.get(channel)

    def _get_or_create(self, channel: str) -> Stream:
        stream = self.streams.get(channel)
        if stream is None:
            stream = self.streams[channel] = Stream(
                channel, gop_cache_bytes=self._gop_cache_bytes, on_reader_detached=self._detached
            )
        return stream

    def start_publish(self, channel: str, key: str, publisher: object) -> Stream:
        stream = self._get_or_create(channel)
        if stream.live:
            raise PublishRefused(f"channel {channel} is already being published")
        timer = self._timers.pop(channel, None)
        if timer is not None:
            timer.cancel()
        stream.start_publish(publisher, key, self._clock())
        for observer in self.publish_observers:
            observer(stream)
        return stream

    def end_publish(self, stream: Stream, publisher: object) -> None:
        if not stream.end_publish(publisher, self._clock()):
            return
        if not stream.readers:
            self._forget(stream)
            return
        generation = stream.publish_generation
        if self._grace <= 0:
            stream.notify_unpublished()
            return
        loop = asyncio.get_running_loop()
        self._timers[stream.channel] = loop.call_later(
            self._grace, self._grace_expired, stream, generation
        )

    def _grace_expired(self, stream: Stream, generation: int) -> None:
        self._timers.pop(stream.channel, None)
        if stream.live or stream.publish_generation != generation:
            return
        stream.notify_unpublished()
        if stream.idle:
            self._forget(stream)

    def attach(
        self, channel: str, sink: ReaderSink, key: str | None, *, internal: bool = False
    ) -> Reader | None:
        stream = self._get_or_create(channel)
        reader = stream.attach(sink, key, internal=internal)
        if reader is None and stream.idle:
            self._forget(stream)
        return reader

    def detach(self, reader: Reader) -> None:
        stream = reader.stream
        stream.detach(reader)
        if stream.idle and stream.channel not in self._timers:
            self._forget(stream)

    def _detached(self, reader: Reader) -> None:
        self.dropped_total += reader.dropped

    def _forget(self, stream: Stream) -> None:
        if self.streams.get(stream.channel) is stream:
            del self.streams[stream.channel]
        timer = self._timers.pop(stream.channel, None)
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
