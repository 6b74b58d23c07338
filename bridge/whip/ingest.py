"""One WHIP publisher: encoded frames from aiortc onto the bus.

H.264 goes onto the bus as it came (Annex-B turned into length-prefixed NAL units, the
parameter sets into an avcC record); VP8 is re-encoded to H.264 in a worker thread; Opus is
re-encoded to AAC, since RTMP players and HLS need AAC. The publisher is asked for a
keyframe (PLI) whenever none came for ``KEYFRAME_INTERVAL``, because browsers send none
of their own and RTMP and HLS readers can only start on one.
"""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from typing import Any

from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from bridge.bus.registry import Registry
from bridge.bus.stream import Stream
from bridge.control.callback import PublishCallback
from bridge.media import h264
from bridge.media.errors import CodecConfigError
from bridge.media.units import AUDIO, VIDEO, MediaUnit, Track
from bridge.sessions import PUBLISHER
from bridge.transcode.audio import EncodedAudio, OpusToAac
from bridge.transcode.video import EncodedVideo, VideoTranscoder
from bridge.transcode.worker import Worker, codec_worker
from bridge.whip import aiortc_hooks
from bridge.whip.peer import PeerSession, prefer_codecs

VIDEO_CLOCK = Fraction(1, 90000)
KEYFRAME_INTERVAL = 2.0
# Ask for a keyframe this long after the last one, so that one comes within the interval.
KEYFRAME_ASK_AFTER = 1.7
# A publisher that sends no media for this long after connecting is gone.
MEDIA_TIMEOUT = 10.0
TICK = 0.25


def vp8_keyframe(frame: bytes) -> bool:
    """RFC 6386 §9.1: bit 0 of the first byte is 0 for a key frame."""
    return bool(frame) and not frame[0] & 0x01


class WhipSession(PeerSession):
    protocol = "whip"

    def __init__(
        self,
        token: str,
        *,
        key: str,
        stream_id: str,
        registry: Registry,
        auth: PublishCallback,
        **common: Any,
    ) -> None:
        super().__init__(token, **common)
        self.role = PUBLISHER
        self.key = key
        self.stream_id = stream_id
        self.registry = registry
        self.auth = auth
        self._stop_owed = True  # the callback accepted this publish: "stop" is due once
        self.stream: Stream | None = None
        video = self.pc.addTransceiver("video", direction="recvonly")
        audio = self.pc.addTransceiver("audio", direction="recvonly")
        prefer_codecs(video, ["h264", "vp8"])
        prefer_codecs(audio, ["opus"])
        self._video_receiver: RTCRtpReceiver = video.receiver
        self._audio_receiver: RTCRtpReceiver = audio.receiver
        self._tasks: list[asyncio.Task[None]] = []
        self._tick: asyncio.TimerHandle | None = None
        self._bytes_in = 0
        self._video_track: Track | None = None
        self._sps: bytes | None = None
        self._pps: bytes | None = None
        self._video_worker: Worker[Any, EncodedVideo] | None = None
        self._audio_worker: Worker[Any, EncodedAudio] | None = None
        self._origin: float | None = None  # when the first frame of either kind came
        self._offsets: dict[str, int] = {}
        self._last_keyframe = 0.0
        self._last_pli = 0.0
        self._last_media = 0.0
        self.video_codec = ""
        self.keyframe_requests = 0

    @property
    def bytes_in(self) -> int:
        return self._bytes_in

    def start(self, stream: Stream) -> None:
        self.stream = stream
        # Announce the tracks, as an RTMP publisher's onMetaData does: HLS then waits for the
        # first video keyframe instead of starting audio-only (Opus comes before it), and
        # RTMP players learn the codecs (FLV ids: 7 H.264, 10 AAC) before the media.
        values: dict[str, object] = {"encoder": "bridge WHIP ingest"}
        if self._video_receiver.track is not None:
            values["videocodecid"] = 7.0
        if self._audio_receiver.track is not None:
            values["audiocodecid"] = 10.0
        stream.set_metadata(values)

    def prepare(self) -> None:
        for receiver in (self._video_receiver, self._audio_receiver):
            if receiver.track is not None:
                aiortc_hooks.want_encoded_frames(receiver)

    def on_connected(self) -> None:
        now = time.monotonic()
        self._last_media = self._last_keyframe = now
        for receiver in (self._video_receiver, self._audio_receiver):
            if receiver.track is not None:
                self._tasks.append(asyncio.ensure_future(self._read(receiver)))
        self._tick = asyncio.get_running_loop().call_later(TICK, self._on_tick)
        self.log.info("publishing (stream id %s)", self.stream_id)

    async def _read(self, receiver: RTCRtpReceiver) -> None:
        track = receiver.track
        try:
            while not self.closed:
                frame = await track.recv()
                if not isinstance(frame, aiortc_hooks.EncodedFrame):
                    continue
                self._last_media = time.monotonic()
                self._bytes_in += len(frame.data)
                try:
                    self._on_frame(frame)
                except CodecConfigError as exc:
                    self.log.warning("frame dropped: %s", exc)
        except MediaStreamError:
            if not self.closed:
                self.close("the publisher's track ended")

    def _timestamp(self, kind: str, frame: aiortc_hooks.EncodedFrame) -> int:
        # Each RTP stream counts from its own first frame; place both on one timeline by
        # when their first frames arrived, so audio and video start in sync.
        offset = self._offsets.get(kind)
        if offset is None:
            now = time.monotonic()
            if self._origin is None:
                self._origin = now
            offset = self._offsets[kind] = round((now - self._origin) * frame.clock_rate)
        return frame.timestamp + offset

    def _on_frame(self, frame: aiortc_hooks.EncodedFrame) -> None:
        if frame.codec == "h264":
            self.video_codec = "h264"
            self._push_h264(frame.data, self._timestamp(VIDEO, frame))
        elif frame.codec == "vp8":
            self.video_codec = "vp8"
            pts = self._timestamp(VIDEO, frame)
            keyframe = vp8_keyframe(frame.data)
            if keyframe:
                self._last_keyframe = time.monotonic()
            self._transcoder().submit((frame.data, pts, pts, keyframe), can_start=keyframe)
        elif frame.codec == "opus":
            pts = self._timestamp(AUDIO, frame)
            self._aac_encoder().submit((frame.data, pts, Fraction(1, frame.clock_rate)))

    # ------------------------------------------------------------------ video

    def _push_h264(self, annexb: bytes, pts: int) -> None:
        nals = h264.split_annexb(annexb)
        if not nals:
            return
        keyframe = False
        for nal in nals:
            kind = h264.nal_type(nal)
            if kind == h264.NAL_SPS:
                self._sps = nal
            elif kind == h264.NAL_PPS:
                self._pps = nal
            elif kind == h264.NAL_IDR:
                keyframe = True
        if keyframe:
            self._last_keyframe = time.monotonic()
            self._update_video_track()
        if self._video_track is None:
            return  # nothing can decode this before the first keyframe and its SPS/PPS
        payload = h264.to_length_prefixed(
            [nal for nal in nals if h264.nal_type(nal) != h264.NAL_AUD]
        )
        self._push(MediaUnit(self._video_track, pts, pts, keyframe, payload))

    def _update_video_track(self) -> None:
        if self._sps is None or self._pps is None:
            return
        config = h264.build_avcc([self._sps], [self._pps])
        track = self._video_track
        if track is not None and track.config == config:
            return
        width, height = h264.sps_dimensions(self._sps)
        self._video_track = Track(VIDEO, "h264", config, VIDEO_CLOCK, width=width, height=height)

    def _transcoder(self) -> Worker[Any, EncodedVideo]:
        if self._video_worker is None:
            transcoder = VideoTranscoder(
                "vp8", b"", VIDEO_CLOCK, keyframe_interval=KEYFRAME_INTERVAL
            )

            def deliver(frames: list[EncodedVideo]) -> None:
                if self.closed:
                    return
                for frame in frames:
                    self._push_h264(frame.annexb, frame.pts)

            self._video_worker = codec_worker(
                f"whip-video-{self.channel}",
                transcoder,
                deliver,
                loop=asyncio.get_running_loop(),
                max_pending=120,
            )
        return self._video_worker

    # ------------------------------------------------------------------ audio

    def _aac_encoder(self) -> Worker[Any, EncodedAudio]:
        if self._audio_worker is None:
            encoder = OpusToAac()
            track = Track(
                AUDIO,
                "aac",
                encoder.config,
                encoder.time_base,
                sample_rate=48000,
                channels=2,
            )

            def deliver(frames: list[EncodedAudio]) -> None:
                if self.closed:
                    return
                for frame in frames:
                    self._push(MediaUnit(track, frame.pts, frame.pts, True, frame.payload))

            self._audio_worker = codec_worker(
                f"whip-audio-{self.channel}",
                encoder,
                deliver,
                loop=asyncio.get_running_loop(),
                max_pending=200,
            )
        return self._audio_worker

    def _push(self, unit: MediaUnit) -> None:
        if self.stream is not None and not self.closed:
            self.stream.push(unit)

    # ------------------------------------------------------------------ liveness

    def _on_tick(self) -> None:
        self._tick = None
        if self.closed:
            return
        now = time.monotonic()
        if now - self._last_media > MEDIA_TIMEOUT:
            self.close(f"publisher sent nothing for {MEDIA_TIMEOUT:.0f} s")
            return
        # RTMP and HLS readers start on keyframes; a browser sends one only when asked.
        if (
            now - self._last_keyframe >= KEYFRAME_ASK_AFTER
            and now - self._last_pli >= KEYFRAME_INTERVAL / 2
            and aiortc_hooks.request_keyframe(self._video_receiver)
        ):
            self._last_pli = now
            self.keyframe_requests += 1
        self._tick = asyncio.get_running_loop().call_later(TICK, self._on_tick)

    def request_keyframe(self) -> None:
        """A reader (a WHEP viewer) wants a keyframe: pass it on to the publisher."""
        now = time.monotonic()
        if now - self._last_pli >= 0.5 and aiortc_hooks.request_keyframe(self._video_receiver):
            self._last_pli = now
            self.keyframe_requests += 1

    def on_close(self) -> None:
        for receiver in (self._video_receiver, self._audio_receiver):
            aiortc_hooks.forget_encoded_frames(receiver)
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        for task in self._tasks:
            task.cancel()
        for worker in (self._video_worker, self._audio_worker):
            if worker is not None:
                worker.close(timeout=0)
        stream, self.stream = self.stream, None
        if stream is not None:
            self.registry.end_publish(stream, self)
        if self._stop_owed:
            self._stop_owed = False
            self.auth.stop(self.channel, self.key, self.ip, self.stream_id)
