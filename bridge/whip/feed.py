"""A channel's WebRTC output: one bus reader, converted once, fanned out to every WHEP viewer.

Video: H.264 without B-frames goes out as it came (Annex-B, SPS and PPS in front of every
IDR). Anything else (B-frames, HEVC, AV1, VP8/VP9) is re-encoded to H.264 constrained
baseline in a worker thread, once for the channel and only while it has WebRTC viewers.
Audio: AAC is re-encoded to Opus once for the channel; Opus passes through.

The feed keeps the current GOP of what it sends, so a new viewer starts at once on a
keyframe instead of waiting up to a GOP (measured: ~70 ms from POST to first frame).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Protocol

import av
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from bridge.bus.gop import GopCache
from bridge.bus.reader import Reader
from bridge.bus.registry import Registry
from bridge.bus.stream import Stream
from bridge.media import h264
from bridge.media.errors import CodecConfigError
from bridge.media.units import AUDIO, VIDEO, MediaUnit, Track
from bridge.transcode.audio import AacToOpus, EncodedAudio
from bridge.transcode.video import EncodedVideo, VideoTranscoder
from bridge.transcode.worker import Worker, codec_worker
from bridge.whip.aiortc_hooks import SharedPacker

log = logging.getLogger("bridge.webrtc")

PASSTHROUGH = "passthrough"
TRANSCODE = "transcode"
OPUS = "opus"
AAC_TO_OPUS = "aac-to-opus"

VIDEO_CLOCK = Fraction(1, 90000)
OPUS_CLOCK = Fraction(1, 48000)
# The GOP kept for new viewers: a longer one is dropped (they wait for the next keyframe).
GOP_MAX_BYTES = 16 * 1024 * 1024


class Viewer(Protocol):
    """What the feed needs from one WHEP session."""

    def start_video(self, packets: list[tuple[av.Packet, bool]]) -> None:
        """A new viewer's catch-up: the GOP so far, to be sent faster than real time."""

    def send_video(self, packet: av.Packet, keyframe: bool) -> None: ...

    def send_audio(self, packet: av.Packet) -> None: ...

    def publish_ended(self) -> None:
        """The channel's publisher is gone for good (after the grace period)."""


def _packet(data: bytes, pts: int, time_base: Fraction) -> av.Packet:
    packet = av.Packet(data)
    packet.pts = pts
    packet.dts = pts
    packet.time_base = time_base
    return packet


class AnnexB:
    """Length-prefixed H.264 to Annex-B, parameter sets in front of every IDR."""

    def __init__(self, track: Track) -> None:
        config = h264.parse_avcc(track.config)
        self.length_size = config.nal_length_size
        sets = list(config.sps) + list(config.pps)
        self.prefix = b"".join(h264.START_CODE + nal for nal in sets)

    def convert(self, unit: MediaUnit) -> bytes:
        nals = h264.split_nalus(unit.payload, self.length_size)
        types = {h264.nal_type(nal) for nal in nals}
        prefix = self.prefix if h264.NAL_IDR in types and h264.NAL_SPS not in types else b""
        return prefix + b"".join(h264.START_CODE + nal for nal in nals)


class ChannelFeed:
    """The shared WebRTC output of one channel (a ``ReaderSink`` of the bus)."""

    def __init__(
        self,
        channel: str,
        registry: Registry,
        *,
        on_idle: Callable[[ChannelFeed], None],
        keyframe_interval: float = 2.0,
    ) -> None:
        self.channel = channel
        self.registry = registry
        self.loop = asyncio.get_running_loop()
        self._on_idle = on_idle
        self._keyframe_interval = keyframe_interval
        self.viewers: list[Viewer] = []
        self.reader: Reader | None = None
        self.video_path: str | None = None
        self.audio_path: str | None = None
        self._video_track: Track | None = None
        self._audio_track: Track | None = None
        self._annexb: AnnexB | None = None
        self._video_worker: Worker[Any, EncodedVideo] | None = None
        self._transcoder: VideoTranscoder | None = None
        self._audio_worker: Worker[Any, EncodedAudio] | None = None
        self._gop: GopCache[av.Packet] = GopCache(GOP_MAX_BYTES)
        self._drain_scheduled = False
        self._catch_up: list[tuple[av.Packet, bool]] | None = None
        self._last_video_pts: int | None = None
        self.keyframe_requests = 0  # PLI/FIR from viewers (aiortc would drop them)
        self.closed = False
        self._packers: dict[str, SharedPacker] = {}

    # ------------------------------------------------------------------ viewers

    def packer(self, codec: RTCRtpCodecParameters) -> SharedPacker:
        """The channel's shared RTP packetiser for ``codec`` (payloads do not depend on the
        payload type, so viewers that negotiated different ones still share)."""
        key = codec.mimeType.lower()
        packer = self._packers.get(key)
        if packer is None:
            packer = self._packers[key] = SharedPacker(codec)
        return packer

    def add(self, viewer: Viewer) -> None:
        self.viewers.append(viewer)
        if self._gop.units:
            viewer.start_video([(packet, packet.is_keyframe) for packet in self._gop.units])
        if self.reader is None:
            self.reader = self.registry.attach(self.channel, self, None, internal=True)
            if self.reader is not None:
                # The bus hands the new reader its GOP cache: convert it now and give it to
                # the first viewer as its catch-up burst, like later viewers get the feed's.
                self._catch_up = []
                self._drain()
                catch_up, self._catch_up = self._catch_up, None
                if catch_up:
                    viewer.start_video(catch_up)
        if self.reader is not None:
            self.reader.stream.relayed_viewers += 1

    def remove(self, viewer: Viewer) -> None:
        try:
            self.viewers.remove(viewer)
        except ValueError:
            return
        if self.reader is not None:
            self.reader.stream.relayed_viewers -= 1
        if not self.viewers:
            self.close()

    def request_keyframe(self) -> None:
        """A viewer lost a picture (PLI/FIR): a transcoder makes one, a WHIP publisher is
        asked for one; an RTMP publisher cannot be asked (the viewer waits for the next)."""
        self.keyframe_requests += 1
        if self._video_worker is not None and self._transcoder is not None:
            self._video_worker.call(self._transcoder.request_keyframe)
            return
        publisher = self.reader.stream.publisher if self.reader is not None else None
        ask = getattr(publisher, "request_keyframe", None)
        if callable(ask):
            ask()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        reader, self.reader = self.reader, None
        if reader is not None:
            reader.stream.relayed_viewers -= len(self.viewers)
            self.registry.detach(reader)
        self._stop_video_worker()
        self._stop_audio_worker()
        self._gop.clear()
        self._on_idle(self)

    def describe(self) -> dict[str, object]:
        """What the API shows: how this channel goes out over WebRTC, and to how many."""
        return {
            "viewers": len(self.viewers),
            "video": self.video_path,
            "audio": self.audio_path,
            "video_codec": self._video_track.codec if self._video_track else None,
            "audio_codec": self._audio_track.codec if self._audio_track else None,
            "keyframe_requests": self.keyframe_requests,
        }

    # ------------------------------------------------------------------ bus reader

    def on_ready(self) -> None:
        # Drain on the next loop turn, not inside the publisher's push.
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

    def on_publish_start(self) -> None:
        log.debug("[webrtc %s] publish started", self.channel)

    def on_publish_end(self) -> None:
        for viewer in list(self.viewers):
            viewer.publish_ended()

    def on_refused(self, reason: str) -> None:
        for viewer in list(self.viewers):
            viewer.publish_ended()

    def _drain(self) -> None:
        self._drain_scheduled = False
        reader = self.reader
        if reader is None:
            return
        while True:
            item = reader.take()
            if item is None:
                return
            if isinstance(item, MediaUnit):
                try:
                    if item.track.kind == VIDEO:
                        self._video(item)
                    elif item.track.kind == AUDIO:
                        self._audio(item)
                except CodecConfigError as exc:
                    log.warning("[webrtc %s] unit dropped: %s", self.channel, exc)

    # ------------------------------------------------------------------ video

    def _video(self, unit: MediaUnit) -> None:
        track = unit.track
        if track is not self._video_track:
            self._new_video_track(track, unit)
        if self.video_path == PASSTHROUGH and unit.pts != unit.dts:
            log.info("[webrtc %s] B-frames appeared: transcoding from here on", self.channel)
            self._start_transcoder(track)
        if self.video_path == PASSTHROUGH:
            assert self._annexb is not None
            data = self._annexb.convert(unit)
            pts = round(unit.pts * track.time_base / VIDEO_CLOCK)
            self._emit_video(_packet(data, pts, VIDEO_CLOCK), unit.keyframe)
        elif self._video_worker is not None:
            self._video_worker.submit(
                (unit.payload, unit.pts, unit.dts, unit.keyframe), can_start=unit.keyframe
            )

    def _new_video_track(self, track: Track, unit: MediaUnit) -> None:
        self._video_track = track
        self._stop_video_worker()
        # RTP carries no composition offsets and browsers decode H.264 B-frames at about
        # one frame per second: a reordered first keyframe means re-encode.
        stream = self.reader.stream if self.reader is not None else None
        reordered = unit.pts != unit.dts or (stream is not None and stream.reordered)
        if track.codec == "h264" and not reordered:
            try:
                self._annexb = AnnexB(track)
            except CodecConfigError as exc:
                log.warning("[webrtc %s] bad avcC, transcoding: %s", self.channel, exc)
            else:
                self.video_path = PASSTHROUGH
                return
        self._start_transcoder(track)

    def _start_transcoder(self, track: Track) -> None:
        self._stop_video_worker()
        self.video_path = TRANSCODE
        self._annexb = None
        transcoder = VideoTranscoder(
            track.codec,
            track.config,
            track.time_base,
            keyframe_interval=self._keyframe_interval,
            # veryfast costs ~0.45 CPU-s per second of 720p here, superfast ~0.3.
            preset="superfast",
        )
        self._transcoder = transcoder
        time_base = track.time_base

        def deliver(frames: list[EncodedVideo]) -> None:
            if self._transcoder is not transcoder:
                return
            for frame in frames:
                pts = round(frame.pts * time_base / VIDEO_CLOCK)
                self._emit_video(_packet(frame.annexb, pts, VIDEO_CLOCK), frame.keyframe)

        self._video_worker = codec_worker(
            f"webrtc-video-{self.channel}", transcoder, deliver, loop=self.loop, max_pending=120
        )
        log.info(
            "[webrtc %s] video %s is transcoded to H.264 constrained baseline",
            self.channel,
            track.codec,
        )

    def _stop_video_worker(self) -> None:
        worker, self._video_worker = self._video_worker, None
        self._transcoder = None
        if worker is not None:
            worker.close(timeout=0)  # never block the event loop on a codec

    def _emit_video(self, packet: av.Packet, keyframe: bool) -> None:
        # Shared by every viewer: aiortc reads the packet, never changes it.
        packet.is_keyframe = keyframe
        pts = packet.pts if packet.pts is not None else 0
        if self._last_video_pts is not None and pts <= self._last_video_pts:
            # A new publish restarts close to where the last ended; never go back in time.
            packet.pts = packet.dts = self._last_video_pts + 1
        self._last_video_pts = packet.pts if packet.pts is not None else 0
        self._gop.add(packet, keyframe)
        if self._catch_up is not None:
            self._catch_up.append((packet, keyframe))
            return
        for viewer in self.viewers:
            viewer.send_video(packet, keyframe)

    # ------------------------------------------------------------------ audio

    def _audio(self, unit: MediaUnit) -> None:
        track = unit.track
        if track is not self._audio_track:
            self._audio_track = track
            self._stop_audio_worker()
            self.audio_path = None
            if track.codec == "opus":
                self.audio_path = OPUS
            elif track.codec == "aac":
                self._start_audio_transcoder(track)
            else:
                log.warning(
                    "[webrtc %s] audio %s cannot be sent over WebRTC", self.channel, track.codec
                )
        if self.audio_path == OPUS:
            pts = round(unit.pts * track.time_base / OPUS_CLOCK)
            self._emit_audio(_packet(unit.payload, pts, OPUS_CLOCK))
        elif self._audio_worker is not None:
            self._audio_worker.submit((unit.payload, unit.pts, track.time_base))

    def _start_audio_transcoder(self, track: Track) -> None:
        try:
            transcoder = AacToOpus(track.config)
        except Exception as exc:  # PyAV raises several kinds for a bad config
            log.warning("[webrtc %s] AAC cannot be decoded: %s", self.channel, exc)
            return
        self.audio_path = AAC_TO_OPUS
        time_base = transcoder.time_base

        def deliver(frames: list[EncodedAudio]) -> None:
            for frame in frames:
                self._emit_audio(_packet(frame.payload, frame.pts, time_base))

        self._audio_worker = codec_worker(
            f"webrtc-audio-{self.channel}", transcoder, deliver, loop=self.loop, max_pending=200
        )

    def _stop_audio_worker(self) -> None:
        worker, self._audio_worker = self._audio_worker, None
        if worker is not None:
            worker.close(timeout=0)  # never block the event loop on a codec

    def _emit_audio(self, packet: av.Packet) -> None:
        for viewer in self.viewers:
            viewer.send_audio(packet)


def predicted_paths(stream: Stream) -> dict[str, object]:
    """The paths a live channel's WebRTC output will take, before any viewer has asked (the
    feed decides the same way when it starts)."""
    video = stream.tracks.get(VIDEO)
    audio = stream.tracks.get(AUDIO)
    video_path = None
    if video is not None:
        video_path = PASSTHROUGH if video.codec == "h264" and not stream.reordered else TRANSCODE
    audio_path = None
    if audio is not None:
        audio_path = {"opus": OPUS, "aac": AAC_TO_OPUS}.get(audio.codec)
    return {
        "viewers": 0,
        "video": video_path,
        "audio": audio_path,
        "video_codec": video.codec if video is not None else None,
        "audio_codec": audio.codec if audio is not None else None,
        "keyframe_requests": 0,
    }
