"""One WHEP viewer: H.264 and Opus from the channel's shared feed, sent by aiortc."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import av
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from bridge.sessions import PLAYER
from bridge.whip import aiortc_hooks
from bridge.whip.feed import ChannelFeed
from bridge.whip.peer import PeerSession, prefer_codecs
from bridge.whip.tracks import PacketTrack


class WhepSession(PeerSession):
    protocol = "whep"

    def __init__(
        self,
        token: str,
        *,
        feed_for: Callable[[str], ChannelFeed],
        **common: Any,
    ) -> None:
        super().__init__(token, **common)
        self.role = PLAYER
        self._feed_for = feed_for
        self.feed: ChannelFeed | None = None
        self.video = PacketTrack("video")
        self.audio = PacketTrack("audio")
        self.keyframe_requests = 0
        video = self.pc.addTransceiver(self.video, direction="sendonly")
        audio = self.pc.addTransceiver(self.audio, direction="sendonly")
        prefer_codecs(video, ["h264"])
        prefer_codecs(audio, ["opus"])
        self._video_sender = video.sender
        self._audio_sender = audio.sender
        aiortc_hooks.on_keyframe_request(video.sender, self._keyframe_requested)
        for sender in (video.sender, audio.sender):
            aiortc_hooks.send_packets_directly(sender, self._packer)

    @property
    def bytes_out(self) -> int:
        return self.video.bytes_sent + self.audio.bytes_sent

    def on_connected(self) -> None:
        self.feed = self._feed_for(self.channel)
        self.feed.add(self)

    def _packer(self, codec: RTCRtpCodecParameters) -> aiortc_hooks.SharedPacker:
        # Every viewer of the channel packs the same packets: share the RTP payload split.
        # (aiortc starts sending after ``on_connected``, so the feed exists by then.)
        if self.feed is not None:
            return self.feed.packer(codec)
        return aiortc_hooks.SharedPacker(codec)

    def on_close(self) -> None:
        feed, self.feed = self.feed, None
        self.video.stop()
        self.audio.stop()
        if feed is not None:
            feed.remove(self)

    def _keyframe_requested(self) -> None:
        self.keyframe_requests += 1
        if self.feed is not None:
            self.feed.request_keyframe()

    # feed.Viewer
    def start_video(self, packets: list[tuple[av.Packet, bool]]) -> None:
        self.video.burst(packets)

    def send_video(self, packet: av.Packet, keyframe: bool) -> None:
        self.video.offer(packet, keyframe)

    def send_audio(self, packet: av.Packet) -> None:
        self.audio.offer(packet, True)

    def publish_ended(self) -> None:
        self.close("the channel's publisher is gone")
