"""The channel's shared WebRTC feed and the per-viewer packet track, on a real bus."""

from __future__ import annotations

import asyncio
import fractions

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from bridge.bus.registry import Registry
from bridge.media import h264
from bridge.media.units import AUDIO, VIDEO, MediaUnit, Track
from bridge.whip import tracks
from bridge.whip.feed import AAC_TO_OPUS, PASSTHROUGH, TRANSCODE, ChannelFeed
from bridge.whip.tracks import PacketTrack

SPS = bytes.fromhex("6742c01e9a6602802dd80880000003008000001e078b1760")
PPS = bytes.fromhex("68ce3c80")


class Viewer:
    def __init__(self) -> None:
        self.video: list[tuple[av.Packet, bool]] = []
        self.audio: list[av.Packet] = []
        self.burst: list[tuple[av.Packet, bool]] = []
        self.ended = 0

    def start_video(self, packets: list[tuple[av.Packet, bool]]) -> None:
        self.burst = list(packets)
        self.video.extend(packets)

    def send_video(self, packet: av.Packet, keyframe: bool) -> None:
        self.video.append((packet, keyframe))

    def send_audio(self, packet: av.Packet) -> None:
        self.audio.append(packet)

    def publish_ended(self) -> None:
        self.ended += 1


class Publisher:
    def __init__(self) -> None:
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1


def video_track() -> Track:
    return Track(VIDEO, "h264", h264.build_avcc([SPS], [PPS]), width=640, height=360)


def unit(track: Track, ms: int, keyframe: bool, cts: int = 0) -> MediaUnit:
    nal = bytes([0x65 if keyframe else 0x41]) + bytes(range(16))
    return MediaUnit(track, ms, ms + cts, keyframe, h264.to_length_prefixed([nal]))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
def registry() -> Registry:
    return Registry(gop_cache_bytes=1 << 20, unpublish_grace=0)


async def test_passthrough_annexb_gop_burst_and_viewer_count(registry: Registry) -> None:
    publisher = Publisher()
    stream = registry.start_publish("ch", "key", publisher)
    track = video_track()
    for i in range(3):
        stream.push(unit(track, i * 33, keyframe=i == 0))
    idle: list[ChannelFeed] = []
    feed = ChannelFeed("ch", registry, on_idle=idle.append)
    first = Viewer()
    feed.add(first)
    await settle()
    # The bus's GOP cache reached the first viewer at once, converted, as its burst.
    assert [k for _, k in first.video] == [True, False, False]
    assert first.burst == first.video
    assert feed.video_path == PASSTHROUGH
    packet, _ = first.video[0]
    nals = h264.split_annexb(bytes(packet))
    assert [h264.nal_type(n) for n in nals] == [7, 8, 5], "SPS and PPS before the IDR"
    assert packet.time_base == fractions.Fraction(1, 90000)
    assert [p.pts for p, _ in first.video] == [0, 33 * 90, 66 * 90]
    assert [h264.nal_type(n) for n in h264.split_annexb(bytes(first.video[1][0]))] == [1]
    assert stream.viewers == 1

    # A later viewer gets the feed's own GOP: the very same packet objects, no new work.
    second = Viewer()
    feed.add(second)
    assert [p for p, _ in second.video] == [p for p, _ in first.video]
    assert second.burst == second.video
    assert stream.viewers == 2
    stream.push(unit(track, 99, keyframe=False))
    await settle()
    assert first.video[-1][0] is second.video[-1][0]

    feed.request_keyframe()  # passthrough: asked of the publisher (a WHIP one can)
    assert publisher.keyframe_requests == 1
    assert feed.describe()["keyframe_requests"] == 1
    assert feed.describe()["video"] == PASSTHROUGH

    feed.remove(first)
    feed.remove(second)
    assert idle == [feed] and feed.closed
    assert stream.viewers == 0 and not stream.readers


async def test_b_frames_switch_to_transcoding(registry: Registry) -> None:
    stream = registry.start_publish("ch", "key", Publisher())
    feed = ChannelFeed("ch", registry, on_idle=lambda f: None)
    viewer = Viewer()
    feed.add(viewer)
    stream.push(unit(video_track(), 0, keyframe=True, cts=66))
    await settle()
    assert feed.video_path == TRANSCODE
    feed.close()


async def test_aac_becomes_opus_once(registry: Registry) -> None:
    stream = registry.start_publish("ch", "key", Publisher())
    # 1 s of AAC from PyAV's encoder.
    encoder = av.CodecContext.create("aac", "w")
    encoder.sample_rate = 44100
    encoder.layout = "stereo"
    encoder.format = "fltp"
    encoder.open()
    track = Track(AUDIO, "aac", bytes(encoder.extradata), sample_rate=44100, channels=2)
    frames = []
    import numpy as np

    for i in range(44):
        frame = av.AudioFrame.from_ndarray(
            np.zeros((2, 1024), np.float32), format="fltp", layout="stereo"
        )
        frame.sample_rate = 44100
        frame.pts = i * 1024
        frames.extend(encoder.encode(frame))
    feed = ChannelFeed("ch", registry, on_idle=lambda f: None)
    viewers = [Viewer(), Viewer()]
    for viewer in viewers:
        feed.add(viewer)
    for i, packet in enumerate(frames):
        stream.push(
            MediaUnit(track, round(i * 1024 / 44.1), round(i * 1024 / 44.1), True, bytes(packet))
        )
    for _ in range(100):
        await asyncio.sleep(0.02)
        if len(viewers[0].audio) >= 40:
            break
    assert feed.audio_path == AAC_TO_OPUS
    assert len(viewers[0].audio) >= 40
    assert viewers[0].audio == viewers[1].audio  # shared packets
    assert viewers[0].audio[0].time_base == fractions.Fraction(1, 48000)
    feed.close()


async def test_publish_end_reaches_viewers(registry: Registry) -> None:
    publisher = Publisher()
    stream = registry.start_publish("ch", "key", publisher)
    feed = ChannelFeed("ch", registry, on_idle=lambda f: None)
    viewer = Viewer()
    feed.add(viewer)
    registry.end_publish(stream, publisher)  # grace 0: the end is told at once
    assert viewer.ended == 1
    feed.close()


# ---------------------------------------------------------------------------- the track


def packet(size: int = 10) -> av.Packet:
    return av.Packet(bytes(size))


async def test_track_starts_on_keyframe_and_skips_ahead_when_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracks, "MAX_QUEUED", 4)
    track = PacketTrack("video")
    track.offer(packet(), False)  # not a keyframe: dropped
    assert track.queued == 0 and track.dropped == 1
    first = packet()
    track.offer(first, True)
    for _ in range(3):
        track.offer(packet(), False)
    assert track.queued == 4
    track.offer(packet(), False)  # overflow on a delta frame: everything goes, wait for a key
    assert track.queued == 0 and track.waiting_key
    key = packet()
    track.offer(key, True)
    assert await track.recv() is key
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_track_recv_waits_and_wakes() -> None:
    track = PacketTrack("audio")
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    sent = packet()
    track.offer(sent, True)
    assert await asyncio.wait_for(waiting, 1) is sent
    pending = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.01)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(pending, 1)


async def test_burst_is_paced_but_the_keyframe_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracks, "BURST_BYTES_PER_SECOND", 100_000)
    track = PacketTrack("video")
    track.burst([(packet(5000), True), (packet(5000), False), (packet(5000), False)])
    loop = asyncio.get_running_loop()
    start = loop.time()
    await track.recv()
    assert loop.time() - start < 0.02, "the keyframe goes at once"
    await track.recv()
    await track.recv()
    # 10 kB before the third packet at 100 kB/s: 0.1 s.
    assert 0.08 <= loop.time() - start < 0.3
    live = packet()
    track.offer(live, False)
    start = loop.time()
    assert await track.recv() is live
    assert loop.time() - start < 0.02, "live packets are not paced"


async def test_predicted_paths(registry: Registry) -> None:
    from bridge.whip.feed import predicted_paths

    stream = registry.start_publish("ch", "key", Publisher())
    assert predicted_paths(stream)["video"] is None
    track = video_track()
    stream.push(unit(track, 0, keyframe=True))
    assert predicted_paths(stream)["video"] == PASSTHROUGH
    stream.push(unit(track, 33, keyframe=False, cts=33))  # a reordered frame
    assert predicted_paths(stream)["video"] == TRANSCODE
    # A feed that starts now re-encodes even from a keyframe without an offset.
    feed = ChannelFeed("ch", registry, on_idle=lambda f: None)
    feed.add(Viewer())
    await settle()
    stream.push(unit(Track(VIDEO, "h264", track.config), 66, keyframe=True))
    await settle()
    assert feed.video_path == TRANSCODE
    feed.close()
