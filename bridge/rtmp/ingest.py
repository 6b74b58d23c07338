"""From a publisher's RTMP audio/video messages to tracks and media units (pure).

The original FLV body of each message is kept on the unit (``encodings["flv"]``) so RTMP
readers get the publisher's exact bytes back; other outputs use the canonical payload.
"""

from __future__ import annotations

from bridge.media import aac, h264, hevc
from bridge.media.errors import CodecConfigError
from bridge.media.timestamps import Unwrapper
from bridge.media.units import AUDIO, VIDEO, MediaUnit, Track
from bridge.rtmp import flv
from bridge.rtmp.errors import FlvError
from bridge.rtmp.messages import MessageType

FLV = "flv"

# Codecs whose frames cannot be decoded without the sequence header's configuration.
_NEEDS_CONFIG = {"h264", "hevc", "av1", "vvc", "aac"}
_LEGACY_AUDIO_RATES = (5512, 11025, 22050, 44100)


class FlvIngest:
    """One per publish. ``notices`` collects one-time remarks for the session to log
    (dropped extra tracks, frames before a sequence header, malformed tags)."""

    def __init__(self) -> None:
        self.video: Track | None = None
        self.audio: Track | None = None
        self._clock = Unwrapper()
        self.notices: list[str] = []
        self._noticed: set[str] = set()
        self.malformed = 0

    def _notice(self, text: str) -> None:
        if text not in self._noticed and len(self._noticed) < 32:
            self._noticed.add(text)
            self.notices.append(text)

    def feed(self, type_id: int, timestamp: int, body: bytes) -> list[MediaUnit]:
        dts = self._clock.unwrap(timestamp)
        try:
            if type_id == MessageType.VIDEO:
                return self._video(dts, body)
            return self._audio(dts, body)
        except FlvError as exc:
            self.malformed += 1
            self._notice(
                f"malformed {'video' if type_id == MessageType.VIDEO else 'audio'} tag dropped: {exc}"
            )
            return []

    def _video(self, dts: int, body: bytes) -> list[MediaUnit]:
        tags = flv.parse_video(body)
        single = len(tags) == 1 and tags[0].track_id == 0
        units: list[MediaUnit] = []
        for tag in tags:
            if tag.track_id != 0:
                self._notice(
                    f"extra video track {tag.track_id} ({tag.codec}) dropped: multitrack is not supported yet"
                )
                continue
            if tag.packet == flv.PacketType.SEQUENCE_START:
                self.video = _video_track(tag)
                self.video.encodings[FLV] = body if single else flv.build_video(tag)
            elif tag.packet == flv.PacketType.CODED_FRAMES:
                track = self.video
                if track is None or track.codec != tag.codec:
                    if tag.codec in _NEEDS_CONFIG:
                        self._notice(f"{tag.codec} frames before their sequence header dropped")
                        continue
                    track = self.video = Track(VIDEO, tag.codec)
                unit = MediaUnit(track, dts, dts + tag.cts, tag.keyframe, tag.data)
                unit.encodings[FLV] = body if single else flv.build_video(tag)
                units.append(unit)
        return units

    def _audio(self, dts: int, body: bytes) -> list[MediaUnit]:
        tags = flv.parse_audio(body)
        single = len(tags) == 1 and tags[0].track_id == 0
        units: list[MediaUnit] = []
        for tag in tags:
            if tag.track_id != 0:
                self._notice(
                    f"extra audio track {tag.track_id} ({tag.codec}) dropped: multitrack is not supported yet"
                )
                continue
            if tag.packet == flv.PacketType.SEQUENCE_START:
                self.audio = _audio_track(tag)
                self.audio.encodings[FLV] = body if single else flv.build_audio(tag)
            elif tag.packet == flv.PacketType.CODED_FRAMES:
                track = self.audio
                if track is None or track.codec != tag.codec:
                    if tag.codec in _NEEDS_CONFIG:
                        self._notice(f"{tag.codec} frames before their sequence header dropped")
                        continue
                    track = self.audio = _legacy_audio_track(tag)
                unit = MediaUnit(track, dts, dts, True, tag.data)
                unit.encodings[FLV] = body if single else flv.build_audio(tag)
                units.append(unit)
        return units


def _video_track(tag: flv.VideoTag) -> Track:
    width = height = 0
    try:
        if tag.codec == "h264":
            config = h264.parse_avcc(tag.data)
            if config.sps:
                width, height = h264.sps_dimensions(config.sps[0])
        elif tag.codec == "hevc":
            hconfig = hevc.parse_hvcc(tag.data)
            if hconfig.sps:
                width, height = hevc.sps_dimensions(hconfig.sps[0])
    except CodecConfigError:
        pass  # dimensions are informative; the stream still flows
    return Track(VIDEO, tag.codec, tag.data, width=width, height=height)


def _audio_track(tag: flv.AudioTag) -> Track:
    sample_rate = channels = 0
    if tag.codec == "aac":
        try:
            config = aac.parse_asc(tag.data)
            sample_rate, channels = config.sample_rate, config.channels
        except CodecConfigError:
            pass
    elif tag.codec == "opus" and len(tag.data) >= 19 and tag.data[:8] == b"OpusHead":
        channels = tag.data[9]
        sample_rate = 48000
    return Track(AUDIO, tag.codec, tag.data, sample_rate=sample_rate, channels=channels)


def _legacy_audio_track(tag: flv.AudioTag) -> Track:
    flags = tag.legacy_flags
    return Track(
        AUDIO,
        tag.codec,
        sample_rate=_LEGACY_AUDIO_RATES[(flags >> 2) & 3] if not tag.enhanced else 0,
        channels=(2 if flags & 1 else 1) if not tag.enhanced else 0,
    )
