"""One WHEP viewer: H.264 and Opus from the channel's shared feed, sent by aiortc."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import av

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

    @property
    def bytes_out(self) -> int:
        return self.video.bytes_sent + self.audio.bytes_sent

    def on_connected(self) -> None:
        feed = self.feed = self._feed_for(self.channel)
        # Every viewer of the channel packs the same packets: share the RTP payload split.
        # (aiortc takes its packer at the first frame, which only comes after ``add``.)
        for sender in (self._video_sender, self._audio_sender):
            codec = aiortc_hooks.sending_codec(self.pc, sender)
            if codec is not None:
                aiortc_hooks.use_packer(sender, feed.packer(codec))
        feed.add(self)

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
    def send_video(self, packet: av.Packet, keyframe: bool) -> None:
        self.video.offer(packet, keyframe)

    def send_audio(self, packet: av.Packet) -> None:
        self.audio.offer(packet, True)

    def publish_ended(self) -> None:
        self.close("the channel's publisher is gone")
