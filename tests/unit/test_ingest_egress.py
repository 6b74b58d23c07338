"""RTMP media in and out: FlvIngest (FLV bodies -> tracks and units) and egress (units ->
chunks), with real H.264 from libx264 (PyAV) and byte-exact round trips through ChunkReader."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.media import h264
from bridge.media.units import AUDIO, VIDEO, MediaUnit, Metadata, Track
from bridge.rtmp import amf0, egress, flv
from bridge.rtmp.amfvalues import EcmaArray
from bridge.rtmp.chunk import ChunkReader, Message
from bridge.rtmp.ingest import FLV, FlvIngest
from bridge.rtmp.messages import CSID_AUDIO, CSID_DATA, CSID_VIDEO, MessageType

VIDEO_TYPE = int(MessageType.VIDEO)
AUDIO_TYPE = int(MessageType.AUDIO)

# ------------------------------------------------------------------------------ fixtures


@dataclass(frozen=True)
class Frame:
    dts: int  # ms, from the encoder (may be negative with B-frames)
    cts: int
    keyframe: bool
    payload: bytes  # 4-byte length-prefixed NAL units


@dataclass(frozen=True)
class Encoded:
    sps: bytes
    pps: bytes
    avcc: bytes
    frames: tuple[Frame, ...]


def _annexb_nals(data: bytes) -> list[bytes]:
    return [nal for nal in re.split(b"\x00\x00\x00\x01|\x00\x00\x01", data) if nal]


def _length_prefixed(nals: list[bytes]) -> bytes:
    return b"".join(len(nal).to_bytes(4, "big") + nal for nal in nals)


@pytest.fixture(scope="module")
def encoded() -> Encoded:
    """Ten 320x240 frames from libx264 with B-frames (so composition offsets are not 0) and
    a keyframe every 6 frames."""
    cc = av.CodecContext.create("libx264", "w")
    cc.width, cc.height, cc.pix_fmt = 320, 240, "yuv420p"
    cc.time_base = Fraction(1, 1000)
    cc.framerate = Fraction(25)
    cc.options = {
        "preset": "veryfast",
        "bframes": "2",
        "g": "6",
        "keyint_min": "6",
        "sc_threshold": "0",
    }
    cc.flags |= av.codec.context.Flags.global_header
    packets = []
    for i in range(10):
        image = np.zeros((240, 320, 3), np.uint8)
        image[:, (i * 13) % 320 :] = 200
        image[(i * 7) % 240 :, :, 1] = 90
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i * 40
        packets += cc.encode(frame)
    packets += cc.encode(None)
    nals = _annexb_nals(bytes(cc.extradata))
    sps = next(nal for nal in nals if nal[0] & 0x1F == h264.NAL_SPS)
    pps = next(nal for nal in nals if nal[0] & 0x1F == h264.NAL_PPS)
    frames = tuple(
        Frame(p.dts, p.pts - p.dts, p.is_keyframe, _length_prefixed(_annexb_nals(bytes(p))))
        for p in packets
    )
    return Encoded(sps, pps, h264.build_avcc([sps], [pps]), frames)


def avc_sequence_header(avcc: bytes) -> bytes:
    """Legacy FLV: frame type 1 | CodecID 7, AVCPacketType 0, CTS 0 (FLV spec Annex E)."""
    return b"\x17\x00\x00\x00\x00" + avcc


def avc_frame(frame: Frame) -> bytes:
    head = 0x17 if frame.keyframe else 0x27
    return bytes([head, 1]) + (frame.cts & 0xFFFFFF).to_bytes(3, "big") + frame.payload


ASC_48K_STEREO = bytes([0x11, 0x90])  # AAC-LC (2), index 3 (48000), 2 channels
ASC_44K_MONO = bytes([0x12, 0x08])  # AAC-LC (2), index 4 (44100), 1 channel


def aac_sequence_header(asc: bytes) -> bytes:
    return b"\xaf\x00" + asc


def aac_frame(data: bytes) -> bytes:
    return b"\xaf\x01" + data


def read_messages(data: bytes, chunk_size: int, *, bytewise: bool = False) -> list[Message]:
    reader = ChunkReader()
    reader.chunk_size = chunk_size
    if not bytewise:
        messages = reader.feed(data)
    else:
        messages = []
        for i in range(len(data)):
            messages += reader.feed(data[i : i + 1])
    assert reader.buffered == 0
    return messages


def published(encoded: Encoded, base: int = 0) -> tuple[FlvIngest, list[MediaUnit], list[bytes]]:
    """Feed a sequence header then every frame; return the ingest, units and bodies."""
    ingest = FlvIngest()
    assert ingest.feed(VIDEO_TYPE, base & 0xFFFFFFFF, avc_sequence_header(encoded.avcc)) == []
    units, bodies = [], []
    start = encoded.frames[0].dts
    for frame in encoded.frames:
        body = avc_frame(frame)
        bodies.append(body)
        out = ingest.feed(VIDEO_TYPE, (base + frame.dts - start) & 0xFFFFFFFF, body)
        assert len(out) == 1
        units += out
    return ingest, units, bodies


# ------------------------------------------------------------------------------ ingest


def test_fixture_is_real_h264(encoded: Encoded) -> None:
    assert h264.sps_dimensions(encoded.sps) == (320, 240)
    assert any(frame.cts for frame in encoded.frames)
    assert [frame.keyframe for frame in encoded.frames].count(True) == 2
    assert h264.is_idr(encoded.frames[0].payload)
    # The legacy bodies we build by hand are what flv.build_video writes too.
    frame = encoded.frames[1]
    tag = flv.VideoTag("h264", flv.PacketType.CODED_FRAMES, 2, frame.cts, frame.payload, False)
    assert flv.build_video(tag) == avc_frame(frame)


def test_avc_sequence_header_makes_a_track(encoded: Encoded) -> None:
    ingest = FlvIngest()
    body = avc_sequence_header(encoded.avcc)
    assert ingest.feed(VIDEO_TYPE, 0, body) == []
    track = ingest.video
    assert track is not None
    assert (track.kind, track.codec) == (VIDEO, "h264")
    assert (track.width, track.height) == (320, 240)
    assert track.config == encoded.avcc
    assert track.time_base == Fraction(1, 1000)
    assert track.encodings[FLV] == body
    assert ingest.notices == []
    assert ingest.malformed == 0


@pytest.mark.parametrize("base", [0, 123456789, 0xFFFFFF00])
def test_avc_frames_become_units(encoded: Encoded, base: int) -> None:
    ingest, units, bodies = published(encoded, base)
    start = encoded.frames[0].dts
    for unit, frame, body in zip(units, encoded.frames, bodies, strict=True):
        assert unit.track is ingest.video
        assert unit.dts == base + frame.dts - start  # unwrapped: past 2^32 when base is near it
        assert unit.pts == unit.dts + frame.cts
        assert unit.keyframe is frame.keyframe
        assert unit.payload == frame.payload
        assert unit.encodings[FLV] == body  # the publisher's bytes, bit exact
    assert ingest.notices == []
    if base == 0xFFFFFF00:
        assert units[-1].dts > 0xFFFFFFFF


def test_negative_composition_offset(encoded: Encoded) -> None:
    ingest = FlvIngest()
    ingest.feed(VIDEO_TYPE, 1000, avc_sequence_header(encoded.avcc))
    frame = Frame(0, -33, False, encoded.frames[1].payload)
    (unit,) = ingest.feed(VIDEO_TYPE, 1000, avc_frame(frame))
    assert (unit.dts, unit.pts) == (1000, 967)


def test_frames_before_the_sequence_header_are_dropped_with_one_notice(encoded: Encoded) -> None:
    ingest = FlvIngest()
    for frame in encoded.frames[:3]:
        assert ingest.feed(VIDEO_TYPE, 0, avc_frame(frame)) == []
    assert len(ingest.notices) == 1
    assert "h264" in ingest.notices[0]
    assert ingest.malformed == 0
    assert ingest.feed(AUDIO_TYPE, 0, aac_frame(b"\x21\x00")) == []
    assert len(ingest.notices) == 2
    assert "aac" in ingest.notices[1]
    ingest.feed(VIDEO_TYPE, 0, avc_sequence_header(encoded.avcc))
    assert len(ingest.feed(VIDEO_TYPE, 40, avc_frame(encoded.frames[0]))) == 1
    assert len(ingest.notices) == 2


def test_a_new_sequence_header_makes_a_new_track(encoded: Encoded) -> None:
    ingest = FlvIngest()
    ingest.feed(VIDEO_TYPE, 0, avc_sequence_header(encoded.avcc))
    first = ingest.video
    (unit1,) = ingest.feed(VIDEO_TYPE, 0, avc_frame(encoded.frames[0]))
    ingest.feed(VIDEO_TYPE, 40, avc_sequence_header(encoded.avcc))
    second = ingest.video
    (unit2,) = ingest.feed(VIDEO_TYPE, 40, avc_frame(encoded.frames[0]))
    assert first is not second
    assert unit1.track is first
    assert unit2.track is second


@pytest.mark.parametrize(
    ("type_id", "body"),
    [
        (VIDEO_TYPE, b""),
        (VIDEO_TYPE, b"\x17"),  # AVC packet type missing
        (VIDEO_TYPE, b"\x17\x01\x00"),  # CTS truncated
        (VIDEO_TYPE, b"\x17\x07\x00\x00\x00"),  # unknown AVCPacketType
        (VIDEO_TYPE, b"\x1f\x00"),  # reserved CodecID 15
        (VIDEO_TYPE, b"\x91zzzz"),  # unknown E-RTMP FourCC
        (AUDIO_TYPE, b"\xaf"),  # AACPacketType missing
        (AUDIO_TYPE, b"\x9f"),  # E-RTMP audio without a FourCC
        (AUDIO_TYPE, b"\xcf\x00"),  # reserved SoundFormat 12
    ],
)
def test_malformed_bodies_are_counted_with_one_notice(type_id: int, body: bytes) -> None:
    ingest = FlvIngest()
    for _ in range(3):
        assert ingest.feed(type_id, 0, body) == []
    assert ingest.malformed == 3
    assert len(ingest.notices) == 1
    assert "malformed" in ingest.notices[0]


def test_empty_audio_body_is_silence_not_malformed() -> None:
    ingest = FlvIngest()
    assert ingest.feed(AUDIO_TYPE, 0, b"") == []
    assert ingest.malformed == 0
    assert ingest.notices == []


def test_notices_are_bounded() -> None:
    ingest = FlvIngest()
    for codec_id in range(64):  # many distinct error texts
        ingest.feed(VIDEO_TYPE, 0, bytes([0x10 | (codec_id % 16)]) + bytes(codec_id))
        ingest.feed(VIDEO_TYPE, 0, b"\x91" + codec_id.to_bytes(4, "big"))
    assert len(ingest.notices) <= 32


@pytest.mark.parametrize(
    ("asc", "rate", "channels"),
    [(ASC_48K_STEREO, 48000, 2), (ASC_44K_MONO, 44100, 1)],
)
def test_aac_sequence_header_and_frames(asc: bytes, rate: int, channels: int) -> None:
    ingest = FlvIngest()
    header = aac_sequence_header(asc)
    assert ingest.feed(AUDIO_TYPE, 500, header) == []
    track = ingest.audio
    assert track is not None
    assert (track.kind, track.codec, track.config) == (AUDIO, "aac", asc)
    assert (track.sample_rate, track.channels) == (rate, channels)
    assert track.encodings[FLV] == header
    body = aac_frame(b"\x21\x10\x04\x60\x8c\x1c")
    (unit,) = ingest.feed(AUDIO_TYPE, 521, body)
    assert unit.track is track
    assert (unit.dts, unit.pts, unit.keyframe) == (521, 521, True)
    assert unit.payload == b"\x21\x10\x04\x60\x8c\x1c"
    assert unit.encodings[FLV] == body


def test_aac_config_from_a_real_encoder() -> None:
    cc = av.CodecContext.create("aac", "w")
    cc.sample_rate = 22050
    cc.layout = "mono"
    cc.format = "fltp"
    cc.open()
    asc = bytes(cc.extradata)
    ingest = FlvIngest()
    ingest.feed(AUDIO_TYPE, 0, aac_sequence_header(asc))
    assert ingest.audio is not None
    assert (ingest.audio.sample_rate, ingest.audio.channels) == (22050, 1)


def test_a_bad_codec_config_still_makes_a_track() -> None:
    """Dimensions/rates are informative: a config we cannot parse must not stop the stream."""
    ingest = FlvIngest()
    ingest.feed(VIDEO_TYPE, 0, avc_sequence_header(b"\x01\x02"))
    assert ingest.video is not None
    assert (ingest.video.codec, ingest.video.width, ingest.video.height) == ("h264", 0, 0)
    ingest.feed(AUDIO_TYPE, 0, aac_sequence_header(b""))
    assert ingest.audio is not None
    assert (ingest.audio.codec, ingest.audio.sample_rate) == ("aac", 0)
    assert ingest.malformed == 0


@pytest.mark.parametrize(
    ("head", "codec", "rate", "channels"),
    [
        (0x2F, "mp3", 44100, 2),  # SoundFormat 2, 44 kHz, 16 bit, stereo
        (0x26, "mp3", 11025, 1),  # 11 kHz, 16 bit, mono
        (0x76, "g711a", 11025, 1),
        (0x72, "g711a", 5512, 1),
        (0x0E, "pcm", 44100, 1),
    ],
)
def test_legacy_audio_without_config(head: int, codec: str, rate: int, channels: int) -> None:
    ingest = FlvIngest()
    body = bytes([head]) + b"\xff\xfb\x90\x00"
    (unit,) = ingest.feed(AUDIO_TYPE, 7, body)
    assert (unit.track.codec, unit.track.sample_rate, unit.track.channels) == (
        codec,
        rate,
        channels,
    )
    assert unit.payload == b"\xff\xfb\x90\x00"
    assert unit.encodings[FLV] == body
    assert ingest.notices == []


def test_opus_sequence_header() -> None:
    opus_head = (
        b"OpusHead"
        + bytes([1, 2])
        + (312).to_bytes(2, "little")
        + (48000).to_bytes(4, "little")
        + b"\x00\x00\x00"
    )
    body = flv.build_audio(flv.AudioTag("opus", flv.PacketType.SEQUENCE_START, opus_head, True))
    ingest = FlvIngest()
    ingest.feed(AUDIO_TYPE, 0, body)
    assert ingest.audio is not None
    assert (ingest.audio.codec, ingest.audio.sample_rate, ingest.audio.channels) == (
        "opus",
        48000,
        2,
    )
    frame = flv.build_audio(flv.AudioTag("opus", flv.PacketType.CODED_FRAMES, b"\xfc\x01", True))
    (unit,) = ingest.feed(AUDIO_TYPE, 20, frame)
    assert unit.track is ingest.audio
    assert unit.encodings[FLV] == frame


def test_hevc_frames_before_their_sequence_header_are_dropped() -> None:
    body = flv.build_video(
        flv.VideoTag("hevc", flv.PacketType.CODED_FRAMES, 1, 0, b"\x00\x00\x00\x01\x26", True)
    )
    ingest = FlvIngest()
    assert ingest.feed(VIDEO_TYPE, 0, body) == []
    assert len(ingest.notices) == 1
    assert "hevc" in ingest.notices[0]


def test_extra_tracks_of_a_multitrack_message_are_dropped(encoded: Encoded) -> None:
    ingest = FlvIngest()
    ingest.feed(VIDEO_TYPE, 0, avc_sequence_header(encoded.avcc))
    frame = encoded.frames[0]
    other = flv.build_video(
        flv.VideoTag(
            "h264", flv.PacketType.CODED_FRAMES, 1, frame.cts, frame.payload, True, track_id=1
        )
    )
    assert ingest.feed(VIDEO_TYPE, 0, other) == []
    assert len(ingest.notices) == 1
    assert "track 1" in ingest.notices[0]
    assert ingest.feed(VIDEO_TYPE, 40, other) == []
    assert len(ingest.notices) == 1


def test_timestamps_unwrap_across_messages_of_both_kinds(encoded: Encoded) -> None:
    ingest = FlvIngest()
    ingest.feed(VIDEO_TYPE, 0xFFFFFFF0, avc_sequence_header(encoded.avcc))
    ingest.feed(AUDIO_TYPE, 0xFFFFFFF0, aac_sequence_header(ASC_48K_STEREO))
    (audio,) = ingest.feed(AUDIO_TYPE, 0x10, aac_frame(b"\x01"))
    (video,) = ingest.feed(VIDEO_TYPE, 0x08, avc_frame(encoded.frames[0]))
    assert audio.dts == 0xFFFFFFF0 + 0x20
    assert video.dts == 0xFFFFFFF0 + 0x18  # a small step back, not a wrap


@settings(max_examples=300, deadline=None)
@given(type_id=st.sampled_from([VIDEO_TYPE, AUDIO_TYPE]), body=st.binary(max_size=64))
def test_fuzz_feed_never_raises(type_id: int, body: bytes) -> None:
    ingest = FlvIngest()
    ingest.feed(type_id, 0, body)
    ingest.feed(type_id, 40, body)
    assert ingest.malformed in (0, 2)


@settings(max_examples=300, deadline=None)
@given(
    head=st.sampled_from([b"\x17\x00\x00\x00\x00", b"\x90hvc1", b"\xaf\x00", b"\x90avc1"]),
    config=st.one_of(
        st.binary(max_size=80),
        # A plausible record header, then garbage: reaches deeper into the parsers.
        st.binary(max_size=60).map(lambda rest: b"\x01\x64\x00\x1f\xff\xe1\x00\x10\x67" + rest),
    ),
)
def test_fuzz_sequence_headers_never_raise(head: bytes, config: bytes) -> None:
    ingest = FlvIngest()
    ingest.feed(AUDIO_TYPE if head[0] == 0xAF else VIDEO_TYPE, 0, head + config)


# ------------------------------------------------------------------------------ egress


@pytest.mark.parametrize("chunk_size", [128, 1000, 4096, 65536])
def test_unit_chunks_round_trip(encoded: Encoded, chunk_size: int) -> None:
    _, units, bodies = published(encoded, base=5000)
    for unit, body in zip(units, bodies, strict=True):
        data = egress.unit_chunks(unit, chunk_size, 1)
        (message,) = read_messages(data, chunk_size)
        assert message.csid == CSID_VIDEO
        assert message.type_id == VIDEO_TYPE
        assert message.stream_id == 1
        assert message.timestamp == unit.dts
        assert message.payload == body


def test_unit_chunks_fed_one_byte_at_a_time(encoded: Encoded) -> None:
    _, units, bodies = published(encoded)
    data = b"".join(egress.unit_chunks(unit, 128, 1) for unit in units)
    messages = read_messages(data, 128, bytewise=True)
    assert [m.payload for m in messages] == bodies
    assert [m.timestamp for m in messages] == [u.dts for u in units]


@pytest.mark.parametrize("dts", [0xFFFFFE, 0xFFFFFF, 0x1234567, 0xFFFFFFFF])
def test_unit_chunks_extended_timestamps(encoded: Encoded, dts: int) -> None:
    track = Track(VIDEO, "h264", encoded.avcc)
    frame = encoded.frames[0]
    unit = MediaUnit(track, dts, dts + frame.cts, True, frame.payload)
    (message,) = read_messages(egress.unit_chunks(unit, 128, 1), 128)
    assert message.timestamp == dts
    assert message.payload == egress.flv_body(unit)


def test_timestamps_past_32_bits_wrap_on_the_wire(encoded: Encoded) -> None:
    _, units, _ = published(encoded, base=0xFFFFFF00)
    late = units[-1]
    assert late.dts > 0xFFFFFFFF
    (message,) = read_messages(egress.unit_chunks(late, 4096, 1), 4096)
    assert message.timestamp == late.dts & 0xFFFFFFFF


def test_unit_chunks_are_cached_per_chunk_size_and_stream_id(encoded: Encoded) -> None:
    _, units, _ = published(encoded)
    unit = units[0]
    first = egress.unit_chunks(unit, 128, 1)
    assert egress.unit_chunks(unit, 128, 1) is first
    other_size = egress.unit_chunks(unit, 4096, 1)
    other_stream = egress.unit_chunks(unit, 128, 2)
    assert other_size != first
    assert other_stream != first
    assert egress.unit_chunks(unit, 4096, 1) is other_size
    (message,) = read_messages(other_stream, 128)
    assert message.stream_id == 2


def test_audio_unit_chunks() -> None:
    ingest = FlvIngest()
    ingest.feed(AUDIO_TYPE, 0, aac_sequence_header(ASC_48K_STEREO))
    body = aac_frame(bytes(range(200)))
    (unit,) = ingest.feed(AUDIO_TYPE, 777, body)
    (message,) = read_messages(egress.unit_chunks(unit, 128, 1), 128)
    assert (message.csid, message.type_id, message.timestamp) == (CSID_AUDIO, AUDIO_TYPE, 777)
    assert message.payload == body


def test_sequence_header_chunks_round_trip(encoded: Encoded) -> None:
    ingest, _, _ = published(encoded)
    track = ingest.video
    assert track is not None
    data = egress.sequence_header_chunks(track, 4321, 128, 1)
    (message,) = read_messages(data, 128)
    assert (message.csid, message.type_id, message.stream_id) == (CSID_VIDEO, VIDEO_TYPE, 1)
    assert message.timestamp == 4321
    assert message.payload == avc_sequence_header(encoded.avcc)
    ingest.feed(AUDIO_TYPE, 0, aac_sequence_header(ASC_44K_MONO))
    assert ingest.audio is not None
    (message,) = read_messages(egress.sequence_header_chunks(ingest.audio, 0, 128, 1), 128)
    assert (message.csid, message.type_id) == (CSID_AUDIO, AUDIO_TYPE)
    assert message.payload == aac_sequence_header(ASC_44K_MONO)


@pytest.mark.parametrize(
    ("track", "parse"),
    [
        (Track(VIDEO, "h264", b"\x01\x64\x00\x1f\xff\xe0\x00"), flv.parse_video),
        (Track(VIDEO, "hevc", b"\x01" + bytes(22)), flv.parse_video),
        (Track(VIDEO, "av1", b"\x81\x00\x0c\x00"), flv.parse_video),
        (Track(AUDIO, "aac", ASC_48K_STEREO), flv.parse_audio),
        (Track(AUDIO, "opus", b"OpusHead\x01\x02" + bytes(9)), flv.parse_audio),
    ],
    ids=lambda value: getattr(value, "codec", ""),
)
def test_sequence_header_built_for_a_track_from_elsewhere(track: Track, parse) -> None:
    """A track from a non-RTMP input has no FLV body: one is built and cached."""
    body = egress.sequence_header_body(track)
    assert body is not None
    (tag,) = parse(body)
    assert (tag.codec, tag.packet, tag.data) == (
        track.codec,
        flv.PacketType.SEQUENCE_START,
        track.config,
    )
    assert egress.sequence_header_body(track) is body
    (message,) = read_messages(egress.sequence_header_chunks(track, 10, 128, 1), 128)
    assert message.payload == body


def test_no_sequence_header_for_a_codec_without_config() -> None:
    track = Track(AUDIO, "mp3")
    assert egress.sequence_header_body(track) is None
    assert egress.sequence_header_chunks(track, 0, 128, 1) == b""


def test_metadata_chunks_round_trip() -> None:
    values = {
        "width": 320.0,
        "height": 240.0,
        "videocodecid": 7.0,
        "encoder": "Lavf61",
        "stereo": True,
    }
    metadata = Metadata(values)
    data = egress.metadata_chunks(metadata, 128, 1)
    (message,) = read_messages(data, 128)
    assert (message.csid, message.type_id, message.stream_id) == (
        CSID_DATA,
        int(MessageType.DATA_AMF0),
        1,
    )
    assert message.timestamp == 0
    decoded = amf0.decode(message.payload)
    assert decoded == ["onMetaData", values]
    assert isinstance(decoded[1], EcmaArray)
    assert egress.metadata_chunks(metadata, 128, 1) is data


VIDEO_90K = Fraction(1, 90000)


@pytest.mark.parametrize(
    ("track", "dts", "pts", "keyframe", "timestamp", "cts"),
    [
        (Track(VIDEO, "h264", b"cfg"), 1000, 1080, True, 1000, 80),
        (Track(VIDEO, "h264", b"cfg"), 1000, 1000, False, 1000, 0),
        (Track(VIDEO, "hevc", b"cfg"), 40, 120, True, 40, 80),
        (Track(VIDEO, "hevc", b"cfg"), 40, 40, False, 40, 0),
        (Track(VIDEO, "av1", b"cfg"), 40, 40, True, 40, 0),
        (Track(VIDEO, "vp9"), 80, 80, False, 80, 0),
        (Track(VIDEO, "h264", b"cfg", time_base=VIDEO_90K), 90000, 93600, True, 1000, 40),
    ],
)
def test_video_body_built_for_a_unit_from_elsewhere(
    track: Track, dts: int, pts: int, keyframe: bool, timestamp: int, cts: int
) -> None:
    payload = b"\x00\x00\x00\x02\x65\x88" if track.codec in ("h264", "hevc") else b"\x12\x00\x0a"
    unit = MediaUnit(track, dts, pts, keyframe, payload)
    data = egress.unit_chunks(unit, 128, 1)
    (message,) = read_messages(data, 128)
    assert message.timestamp == timestamp
    assert message.type_id == VIDEO_TYPE
    (tag,) = flv.parse_video(message.payload)
    assert (tag.codec, tag.packet) == (track.codec, flv.PacketType.CODED_FRAMES)
    assert tag.data == payload
    assert tag.cts == cts
    assert tag.keyframe is keyframe
    assert unit.encodings[FLV] == message.payload  # cached for the next chunk size


@pytest.mark.parametrize("codec", ["aac", "opus", "mp3", "flac"])
def test_audio_body_built_for_a_unit_from_elsewhere(codec: str) -> None:
    track = Track(AUDIO, codec, sample_rate=48000, channels=2)
    payload = bytes(range(50))
    unit = MediaUnit(track, 20, 20, True, payload)
    (message,) = read_messages(egress.unit_chunks(unit, 128, 1), 128)
    assert (message.type_id, message.timestamp) == (AUDIO_TYPE, 20)
    (tag,) = flv.parse_audio(message.payload)
    assert (tag.codec, tag.packet, tag.data) == (codec, flv.PacketType.CODED_FRAMES, payload)


def test_a_unit_with_a_flv_body_is_sent_as_is_even_if_rebuilding_would_differ() -> None:
    """The publisher's bytes win: an E-RTMP avc1 body is not rewritten as legacy FLV."""
    track = Track(VIDEO, "h264", b"cfg")
    body = b"\x93avc1" + b"\x00\x00\x00\x02\x65\x88"  # E-RTMP CodedFramesX
    (tag,) = flv.parse_video(body)
    unit = MediaUnit(track, 0, 0, tag.keyframe, tag.data)
    unit.encodings[FLV] = body
    (message,) = read_messages(egress.unit_chunks(unit, 128, 1), 128)
    assert message.payload == body


def test_legacy_audio_header_built_for_a_unit_from_elsewhere_describes_the_track() -> None:
    track = Track(AUDIO, "mp3", sample_rate=44100, channels=2)
    unit = MediaUnit(track, 0, 0, True, b"\xff\xfb\x90\x00")
    body = egress.flv_body(unit)
    # FLV spec Annex E: SoundFormat 2, SoundRate 3 (44 kHz), SoundSize 1 (16 bit), SoundType 1
    # (stereo), as FFmpeg's flvenc writes it.
    assert body[0] == 0x2F
