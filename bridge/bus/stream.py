"""A channel's stream: its publisher, tracks, metadata, GOP cache and readers."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from fractions import Fraction

from bridge.bus.gop import GopCache
from bridge.bus.reader import DEFAULT_MAX_BYTES, DEFAULT_MAX_UNITS, Item, Reader, ReaderSink
from bridge.media.units import MILLISECONDS, VIDEO, MediaUnit, Metadata, Track, starts_gop


def keys_match(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison, so a wrong key's timing says nothing about the right one."""
    if given is None or expected is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


class Stream:
    """Everything the bus knows about one channel.

    Timestamps are rebased per publish: the first unit of a publish lands just after where the
    previous publish ended (plus the real time that passed), or at 0, so a reader that stays
    across a publisher's restart sees one monotonic timeline. Within a publish, DTS never goes
    back per track.
    """

    def __init__(
        self,
        channel: str,
        *,
        gop_cache_bytes: int,
        reader_max_units: int = DEFAULT_MAX_UNITS,
        reader_max_bytes: int = DEFAULT_MAX_BYTES,
        on_reader_detached: Callable[[Reader], None] | None = None,
    ) -> None:
        self.channel = channel
        self._on_reader_detached = on_reader_detached
        self.key: str | None = None
        self.publisher: object | None = None
        self.publish_generation = 0
        self.tracks: dict[str, Track] = {}
        self.metadata: Metadata | None = None
        self.gop: GopCache[MediaUnit] = GopCache(gop_cache_bytes)
        self.readers: list[Reader] = []
        # Viewers served through one shared internal reader (WebRTC), counted by that output.
        self.relayed_viewers = 0
        self.has_video = False
        # The publish's video has been seen reordered (B-frames): WebRTC outputs re-encode.
        self.reordered = False
        self.published_at: float | None = None
        self.unpublished_at: float | None = None
        self.units_in = 0
        self.bytes_in = 0
        self._reader_max_units = reader_max_units
        self._reader_max_bytes = reader_max_bytes
        self._offset_ms: int | None = None
        self._next_start_ms = 0
        self._last_dts: dict[str, int] = {}
        self._last_out_ms = 0

    @property
    def live(self) -> bool:
        return self.publisher is not None

    # ----------------------------------------------------------------------------- publish

    def start_publish(self, publisher: object, key: str, now: float) -> None:
        if self.unpublished_at is not None:
            gap_ms = max(1, round((now - self.unpublished_at) * 1000))
            self._next_start_ms = self._last_out_ms + gap_ms
        self.publisher = publisher
        self.key = key
        self.publish_generation += 1
        self.published_at = now
        self.unpublished_at = None
        self.tracks = {}
        self.metadata = None
        self.has_video = False
        self.reordered = False
        self.units_in = 0  # counts are per publish (the API's bitrate divides by its uptime)
        self.bytes_in = 0
        self.gop.clear()
        self._offset_ms = None
        self._last_dts = {}
        for reader in list(self.readers):
            if not keys_match(reader.key, key) and reader.key is not None:
                self.detach(reader)
                reader.sink.on_refused("the play key does not match the publisher's")
                continue
            if reader.active:
                # What is queued is the old publish; the new one starts at its first keyframe.
                reader.waiting_key = True
            else:
                reader.start([])
            reader.sink.on_publish_start()

    def end_publish(self, publisher: object, now: float) -> bool:
        """The publisher went away. Returns False if it was not this stream's publisher."""
        if self.publisher is not publisher:
            return False
        self.publisher = None
        self.unpublished_at = now
        self.gop.clear()
        return True

    def notify_unpublished(self) -> None:
        for reader in list(self.readers):
            reader.clear()
            reader.sink.on_publish_end()

    def set_metadata(self, values: dict[str, object]) -> None:
        metadata = Metadata(values)
        self.metadata = metadata
        for reader in self.readers:
            if reader.active:
                reader.offer(metadata)

    def push(self, unit: MediaUnit) -> None:
        """Take one unit from the publisher: rebase it, cache it, offer it to every reader."""
        track = unit.track
        kind = track.kind
        if self.tracks.get(kind) is not track:
            self.tracks[kind] = track
            if kind == VIDEO:
                self.has_video = True
        if unit.pts != unit.dts and kind == VIDEO:
            self.reordered = True
        self._rebase(unit)
        self.units_in += 1
        self.bytes_in += unit.size
        self.gop.add(unit, starts_gop(unit, self.has_video))
        for reader in self.readers:
            if reader.active:
                reader.offer(unit)

    def _rebase(self, unit: MediaUnit) -> None:
        time_base = unit.track.time_base
        dts_ms = unit.dts if time_base == MILLISECONDS else int(unit.dts * time_base * 1000)
        if self._offset_ms is None:
            self._offset_ms = self._next_start_ms - dts_ms
        shift = self._offset_ms
        if time_base != MILLISECONDS:
            shift = round(Fraction(shift, 1000) / time_base)
        dts = unit.dts + shift
        pts = unit.pts + shift
        kind = unit.track.kind
        floor = self._last_dts.get(kind, self._next_start_ms if time_base == MILLISECONDS else 0)
        if dts < floor:
            pts += floor - dts
            dts = floor
        unit.dts = dts
        unit.pts = pts
        self._last_dts[kind] = dts
        out_ms = dts if time_base == MILLISECONDS else int(dts * time_base * 1000)
        if out_ms > self._last_out_ms:
            self._last_out_ms = out_ms

    # ----------------------------------------------------------------------------- readers

    @property
    def viewers(self) -> int:
        """Clients reading the stream: its non-internal readers plus the viewers an internal
        output relays (WebRTC); the server's own outputs (HLS) are not counted."""
        return self.relayed_viewers + sum(1 for reader in self.readers if not reader.internal)

    def attach(self, sink: ReaderSink, key: str | None, *, internal: bool = False) -> Reader | None:
        """Add a reader. ``key`` None means an internal output that does its own checks.

        On a live stream the reader starts at once from the GOP cache; a wrong key returns
        None. Otherwise it waits for a publisher.
        """
        if self.live and key is not None and not keys_match(key, self.key):
            return None
        reader = Reader(
            self,
            sink,
            key,
            max_units=self._reader_max_units,
            max_bytes=self._reader_max_bytes,
            internal=internal,
        )
        self.readers.append(reader)
        if self.live:
            initial: list[Item] = []
            if self.metadata is not None:
                initial.append(self.metadata)
            initial.extend(self.gop.units)
            reader.start(initial)
        return reader

    def detach(self, reader: Reader) -> None:
        try:
            self.readers.remove(reader)
        except ValueError:
            return
        reader.active = False
        reader.clear()
        if self._on_reader_detached is not None:
            self._on_reader_detached(reader)

    @property
    def idle(self) -> bool:
        """Nothing holds this stream: no publisher, no readers."""
        return self.publisher is None and not self.readers
