"""HLS and LL-HLS for spectators: per channel, a bus reader feeds the segmenter and the
muxer; parts, segments and playlists are kept in memory and served from there.

The muxer starts when a publish starts (a registry observer), so the first viewer already
has a full window. Playlists follow /work/shared/reference/hls.md: a multivariant
``index.m3u8`` pointing at the media playlist ``stream.m3u8``; LL-HLS parts, preload hints
and blocking reloads (``_HLS_msn``/``_HLS_part``, with the 400/503 rules); delta updates
(``_HLS_skip``); ``#EXT-X-DISCONTINUITY`` when a publisher returns and ``#EXT-X-ENDLIST``
when its publish ends for good.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from bridge.auth.policy import valid_id
from bridge.bus.reader import Reader
from bridge.bus.stream import Stream
from bridge.hls.muxer import HlsMuxer, UnsupportedTrack
from bridge.hls.playlist import (
    MediaPlaylist,
    Variant,
    blocking_decision,
    multivariant,
    parse_directives,
)
from bridge.hls.segmenter import Cut, Segmenter
from bridge.media import aac, h264, hevc
from bridge.media.errors import CodecConfigError
from bridge.media.units import AUDIO, VIDEO, MediaUnit, Metadata, Track

if TYPE_CHECKING:
    from bridge.services import Services

log = logging.getLogger("bridge.hls")

# A channel waits this long for its tracks (a keyframe, and audio if any) before muxing.
TRACK_WAIT = 1.0
# Resources that left the playlist stay this long (RFC 8216 §6.2.2: at least the segment's
# duration plus the playlist's).
MAX_BLOCKED_PER_CHANNEL = 1024
ENDED_CHANNEL_TTL = 60.0  # an ended playlist is served this long, then forgotten
_NAME = re.compile(r"^(init\d+\.mp4|seg\d+\.(ts|m4s)|part\d+\.\d+\.(ts|m4s))$")
_CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
}
_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Content-Length"}


def codec_string(track: Track) -> str | None:
    """The CODECS attribute entry for a track (hls.md §4)."""
    try:
        if track.codec == "h264":
            return h264.codec_string(h264.parse_avcc(track.config))
        if track.codec == "hevc":
            return hevc.codec_string(hevc.parse_hvcc(track.config))
        if track.codec == "aac":
            return aac.codec_string(aac.parse_asc(track.config))
    except CodecConfigError:
        return None
    return None


class HlsChannel:
    """One channel's HLS output (a ``ReaderSink`` on its stream)."""

    def __init__(self, service: HlsService, stream: Stream) -> None:
        self.service = service
        self.config = service.config
        self.channel = stream.channel
        self.fmt = self.config.hls_format
        self.ext = "ts" if self.fmt == "mpegts" else "m4s"
        self.part_target = self.config.hls_part_seconds or None
        self.reader: Reader | None = None
        self.playlist = self._new_playlist()
        self.resources: OrderedDict[str, bytes | tuple[bytes, ...]] = OrderedDict()
        self.changed = asyncio.Event()
        self.blocked = 0
        self.muxer: HlsMuxer | None = None
        self.segmenter: Segmenter | None = None
        self.tracks: dict[str, Track] = {}
        self.pending: list[MediaUnit] = []
        self.collect_since: float | None = None  # dts (s) of the first unit seen while collecting
        self.init_count = 0
        self.map_uri: str | None = None
        self.segment_open = False
        self.segment_start: float = 0.0  # dts (s) of the open segment's first unit
        self.part_start: float = 0.0
        self.part_units = 0
        self.part_first = True  # the open part is the first of its segment
        self.part_independent = False
        self.part_index = 0
        self.last_dts = 0.0
        self.discontinuity = False
        self.wall_base: tuple[float, float] | None = None  # (dts s, wall time) at the start
        self.ended_at: float | None = None
        self.bytes_out_window: list[tuple[float, int]] = []
        self.max_bitrate = 0
        self._draining = False

    def _new_playlist(self) -> MediaPlaylist:
        return MediaPlaylist(
            target_duration_hint=self.config.hls_segment_seconds,
            part_target=self.part_target,
            window=self.config.hls_window,
            low_latency=self.part_target is not None,
            map_uri=None,
        )

    # --------------------------------------------------------------------- ReaderSink

    def on_ready(self) -> None:
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().call_soon(self._drain)

    def on_publish_start(self) -> None:
        if self.playlist.ended:
            # The same channel publishes again after it ended: the playlist goes on after
            # a discontinuity (players that saw ENDLIST have stopped; new ones get both).
            self.playlist.reopen()
            self.ended_at = None
        if self.muxer is not None or self.pending:
            self.discontinuity = True
        self._close_segment()
        self._drop_muxer()
        self.segmenter = None
        self.tracks = {}
        self.pending = []
        self.collect_since = None
        self.wall_base = None

    def on_publish_end(self) -> None:
        self._close_segment()
        self._drop_muxer()
        self.playlist.end()
        self.ended_at = time.monotonic()
        self._changed()

    def on_refused(self, reason: str) -> None:
        self.reader = None

    # ------------------------------------------------------------------------ muxing

    def _drain(self) -> None:
        self._draining = False
        reader = self.reader
        if reader is None:
            return
        for _ in range(4096):  # bounded per turn of the loop
            item = reader.take()
            if item is None:
                return
            if isinstance(item, Metadata):
                continue
            try:
                self._on_unit(item)
            except UnsupportedTrack as exc:
                log.warning("[hls %s] not muxed: %s", self.channel, exc)
                self._give_up()
                return
        self.on_ready()

    def _drop_muxer(self) -> None:
        if self.muxer is not None:
            self.muxer.close()  # frees its PyAV container now, not at garbage collection
            self.muxer = None

    def _give_up(self) -> None:
        if self.reader is not None:
            self.service.services.registry.detach(self.reader)
            self.reader = None

    def _on_unit(self, unit: MediaUnit) -> None:
        if self.muxer is None:
            self._collect(unit)
            return
        if self.tracks.get(unit.track.kind) is not unit.track:
            # New codec configuration, or a track that appeared after muxing began: a new
            # muxer (and init segment) after a discontinuity, with every track in it.
            self._close_segment()
            self.discontinuity = True
            self._drop_muxer()
            self.pending = []
            self.tracks = {}
            self.collect_since = None
            self._collect(unit)
            return
        self._mux(unit)

    def _collect(self, unit: MediaUnit) -> None:
        """Gather units until the tracks are known: start at a video keyframe when there is
        video, and wait for every track the publisher announced (its onMetaData) or for
        TRACK_WAIT of media, whichever comes first."""
        kind = unit.track.kind
        now = _seconds(unit)
        if self.collect_since is None:
            self.collect_since = now
        expected = self._expected_kinds()
        if VIDEO in expected and not self.pending and now - self.collect_since > 3 * TRACK_WAIT:
            expected.discard(VIDEO)  # announced video that never came: go on without it
        if VIDEO in expected and not self.pending and not (kind == VIDEO and unit.keyframe):
            return  # nothing can start before a video keyframe
        self.pending.append(unit)
        kinds = {u.track.kind for u in self.pending}
        span = now - _seconds(self.pending[0])
        if kinds >= expected or span >= TRACK_WAIT or len(self.pending) > 512:
            self._start_muxer()

    def _expected_kinds(self) -> set[str]:
        stream = self.reader.stream if self.reader is not None else None
        if stream is None:
            return {VIDEO, AUDIO}
        kinds = set(stream.tracks)
        values = stream.metadata.values if stream.metadata is not None else {}
        for kind, key in ((VIDEO, "videocodecid"), (AUDIO, "audiocodecid")):
            if values.get(key) not in (None, 0, 0.0, ""):
                kinds.add(kind)
        return kinds

    def _start_muxer(self) -> None:
        tracks: dict[str, Track] = {}
        for unit in self.pending:
            tracks.setdefault(unit.track.kind, unit.track)
        units = [u for u in self.pending if tracks.get(u.track.kind) is u.track]
        self.pending = []
        self.muxer = HlsMuxer(list(tracks.values()), "fmp4" if self.fmt == "fmp4" else "mpegts")
        self.tracks = tracks
        self.segmenter = Segmenter(
            self.config.hls_segment_seconds,
            self.part_target or self.config.hls_segment_seconds,
            has_video=VIDEO in tracks,
        )
        if self.muxer.init is not None:
            self.init_count += 1
            self.map_uri = f"init{self.init_count}.mp4"
            self.resources[self.map_uri] = self.muxer.init
            self.playlist.set_map(self.map_uri)
        for unit in units:
            self._mux(unit)

    def _mux(self, unit: MediaUnit) -> None:
        assert self.muxer is not None and self.segmenter is not None
        dts = _seconds(unit)
        is_video = unit.track.kind == VIDEO
        cut = self.segmenter.before(dts, unit.keyframe, is_video)
        if cut != Cut.SEGMENT and not self.segment_open:
            return  # before the first place a segment can start (audio ahead of a keyframe)
        if cut == Cut.SEGMENT:
            self._close_segment(end_dts=dts)
            self._open_segment(dts)
        elif cut == Cut.PART and self.part_target is not None:
            self._close_part(dts)
        if self.part_units == 0:
            self.part_start = dts
            self.part_independent = unit.keyframe and (is_video or VIDEO not in self.tracks)
        self.muxer.add(unit)
        self.part_units += 1
        self.last_dts = max(self.last_dts, dts)

    def _open_segment(self, dts: float) -> None:
        if self.wall_base is None:
            self.wall_base = (dts, time.time())
        base_dts, base_wall = self.wall_base
        when = datetime.fromtimestamp(base_wall, UTC) + timedelta(seconds=dts - base_dts)
        self.playlist.start_segment(
            f"seg{self.playlist.next_msn}.{self.ext}", when, discontinuity=self.discontinuity
        )
        self.discontinuity = False
        self.segment_open = True
        self.segment_start = dts
        self.segment_parts: list[bytes] = []
        self.part_first = True
        self.part_index = 0
        self.part_units = 0
        self._hint()

    def _close_part(self, end_dts: float) -> None:
        if not self.segment_open or self.part_units == 0 or self.muxer is None:
            return
        data = self.muxer.cut(segment_start=self.part_first)
        msn = self.playlist.last_msn
        uri = f"part{msn}.{self.part_index}.{self.ext}"
        duration = max(0.001, end_dts - self.part_start)
        self.resources[uri] = data
        self.segment_parts.append(data)
        self.playlist.add_part(uri, duration, self.part_independent)
        self.part_index += 1
        self.part_first = False
        self.part_units = 0
        self._hint()
        self._changed()

    def _close_segment(self, end_dts: float | None = None) -> None:
        if not self.segment_open:
            return
        end = self.last_dts if end_dts is None else end_dts
        if end_dts is None and self.part_units:
            # The publish ended: the last unit's duration is unknown; one frame-ish.
            end = self.last_dts + 0.02
        if self.part_units:
            if self.part_target is not None:
                self._close_part(end)
            elif self.muxer is not None:
                self.segment_parts.append(self.muxer.cut(segment_start=True))
                self.part_units = 0
        msn = self.playlist.last_msn
        # The segment refers to its parts' bytes (joined when served) rather than a copy.
        pieces = tuple(self.segment_parts)
        self.resources[f"seg{msn}.{self.ext}"] = pieces
        data_size = sum(len(piece) for piece in pieces)
        self.playlist.end_segment(max(0.001, end - self.segment_start))
        self._note_bitrate(data_size, max(0.001, end - self.segment_start))
        self.segment_open = False
        self._forget_old()
        self._changed()

    def _hint(self) -> None:
        if self.part_target is None:
            return
        msn = self.playlist.last_msn
        self.playlist.set_preload_hint(f"part{msn}.{self.part_index}.{self.ext}")

    def _note_bitrate(self, size: int, duration: float) -> None:
        self.max_bitrate = max(self.max_bitrate, int(size * 8 / duration))

    def _forget_old(self) -> None:
        """Drop resources the playlist no longer lists, after their retention time."""
        keep = self.playlist.resource_names(retain=3 * self.playlist.target_duration)
        if self.map_uri:
            keep.add(self.map_uri)
        for name in list(self.resources):
            if name not in keep:
                del self.resources[name]

    def _changed(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    # ----------------------------------------------------------------------- serving

    def variants(self) -> str:
        codecs = [c for c in (codec_string(t) for t in self.tracks.values()) if c]
        video = self.tracks.get(VIDEO)
        resolution = (video.width, video.height) if video and video.width else None
        bandwidth = self.max_bitrate or 1_000_000
        return multivariant([Variant("stream.m3u8", bandwidth, codecs, resolution, None)])

    async def media_playlist(self, request: web.Request) -> web.Response:
        parsed = parse_directives(request.query)
        if isinstance(parsed[0], int) and len(parsed) == 2:
            raise web.HTTPBadRequest(text=str(parsed[1]), headers=_CORS)
        msn, part, skip, extra = parsed  # type: ignore[misc]
        if self.part_target is None:
            # Classic HLS advertises no CAN-BLOCK-RELOAD: directives are not ours to honour.
            msn = part = skip = None
        timeout = 3 * self.playlist.target_duration
        deadline = asyncio.get_running_loop().time() + timeout
        counted = False
        try:
            while True:
                decision = blocking_decision(
                    self.playlist, msn, part, skip, part_target=self.part_target or 1.0
                )
                if decision == "ready":
                    break
                if isinstance(decision, tuple):
                    raise web.HTTPBadRequest(text=decision[1], headers=_CORS)
                if not counted:
                    if self.blocked >= MAX_BLOCKED_PER_CHANNEL:
                        raise web.HTTPServiceUnavailable(
                            text="too many blocked requests", headers=_CORS
                        )
                    self.blocked += 1
                    counted = True
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    raise web.HTTPServiceUnavailable(
                        text="the requested segment or part did not come in time", headers=_CORS
                    )
                try:
                    await asyncio.wait_for(self.changed.wait(), remaining)
                except TimeoutError:
                    continue
        finally:
            if counted:
                self.blocked -= 1
        text = self.playlist.render(skip=skip is not None and skip != "", query=extra)
        return _response(text, ".m3u8", "no-cache")

    async def resource(self, name: str) -> web.Response:
        data = self.resources.get(name)
        if data is None and self.playlist.is_hinted(name):
            # A preload hint: block until the part is complete (bis §6.2.6), bounded.
            deadline = asyncio.get_running_loop().time() + 3 * self.playlist.target_duration
            while data is None:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self.changed.wait(), remaining)
                except TimeoutError:
                    break
                data = self.resources.get(name)
        if data is None:
            raise web.HTTPNotFound(text="no such segment or part", headers=_CORS)
        ext = name[name.rfind(".") :]
        body = b"".join(data) if isinstance(data, tuple) else data
        return _response(body, ext, "public, max-age=3600")


def _seconds(unit: MediaUnit) -> float:
    return float(unit.dts * unit.track.time_base)


def _response(body: str | bytes, ext: str, cache: str) -> web.Response:
    data = body.encode() if isinstance(body, str) else body
    return web.Response(
        body=data,
        content_type=_CONTENT_TYPES[ext],
        headers={**_CORS, "Cache-Control": cache},
    )


class HlsService:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.config = services.config
        self.channels: dict[str, HlsChannel] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def register(self, app: web.Application) -> None:
        app.router.add_get("/hls/{channel}/index.m3u8", self.index)
        app.router.add_get("/hls/{channel}/stream.m3u8", self.stream)
        app.router.add_get("/hls/{channel}/{name}", self.resource)

    async def start(self) -> None:
        """Start muxing publishes; only when the HTTP service runs (nobody could fetch)."""
        self.services.registry.publish_observers.append(self.on_publish)
        self._sweeper = asyncio.create_task(self._sweep(), name="hls-sweeper")

    def on_publish(self, stream: Stream) -> None:
        channel = self.channels.get(stream.channel)
        if channel is not None and channel.reader is not None:
            return  # it is attached and heard on_publish_start itself
        channel = HlsChannel(self, stream)
        reader = self.services.registry.attach(stream.channel, channel, None, internal=True)
        if reader is None:
            return
        channel.reader = reader
        self.channels[stream.channel] = channel

    def _channel(self, request: web.Request) -> HlsChannel:
        name = request.match_info["channel"]
        if not valid_id(name, self.config.id_max_length):
            raise web.HTTPNotFound(text="no such channel", headers=_CORS)
        channel = self.channels.get(name)
        if channel is None:
            raise web.HTTPNotFound(text="no such channel", headers=_CORS)
        return channel

    async def index(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        if not channel.tracks:
            raise web.HTTPNotFound(text="the channel has no media yet", headers=_CORS)
        return _response(channel.variants(), ".m3u8", "no-cache")

    async def stream(self, request: web.Request) -> web.Response:
        return await self._channel(request).media_playlist(request)

    async def resource(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if len(name) > 64 or not _NAME.match(name):
            raise web.HTTPNotFound(text="no such resource", headers=_CORS)
        return await self._channel(request).resource(name)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            now = time.monotonic()
            for name, channel in list(self.channels.items()):
                if channel.ended_at is not None and now - channel.ended_at > ENDED_CHANNEL_TTL:
                    channel._give_up()
                    del self.channels[name]

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for channel in self.channels.values():
            if not channel.playlist.ended:
                channel.on_publish_end()
            channel._give_up()
