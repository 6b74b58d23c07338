"""FLV audio/video tag bodies, legacy and Enhanced RTMP.

Bodies are written out byte by byte from the Adobe FLV spec and enhanced-rtmp-v2 (and in
the shapes FFmpeg and OBS send); one table drives parse and build. FFmpeg's own FLV muxer
(through PyAV, when installed) supplies real tags that must survive parse -> build exactly.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.rtmp.errors import FlvError
from bridge.rtmp.flv import (
    MAX_TRACKS,
    AudioTag,
    PacketType,
    VideoTag,
    build_audio,
    build_video,
    parse_audio,
    parse_video,
)

P = PacketType
AVCC = bytes.fromhex("01640028ffe1000467640028010004 68ee3cb0".replace(" ", ""))
HVCC = bytes.fromhex("0101600000009000000000005df000fcfdf8f800000f03")
AMF = bytes.fromhex("0200096c6f6c6f72496e666f030000 09".replace(" ", ""))
NALS = bytes.fromhex("00000005 6588840021 00000003 06abcd".replace(" ", ""))


def v(codec, packet, frame_type, cts, data, enhanced, track_id=0, nano=0) -> VideoTag:
    return VideoTag(codec, packet, frame_type, cts, data, enhanced, track_id, nano)


def a(codec, packet, data, enhanced, flags=0, track_id=0, nano=0) -> AudioTag:
    return AudioTag(codec, packet, data, enhanced, flags, track_id, nano)


# (name, body, tag): parse(body) == [tag] and build(tag) == body.
VIDEO_CASES = [
    # Legacy AVC (FLV spec E.4.3.1): FrameType|CodecID, AVCPacketType, SI24 CTS, data.
    (
        "avc seq header",
        b"\x17\x00\x00\x00\x00" + AVCC,
        v("h264", P.SEQUENCE_START, 1, 0, AVCC, False),
    ),
    (
        "avc key, cts 80",
        b"\x17\x01\x00\x00\x50" + NALS,
        v("h264", P.CODED_FRAMES, 1, 80, NALS, False),
    ),
    (
        "avc inter, cts -10",
        b"\x27\x01\xff\xff\xf6" + NALS,
        v("h264", P.CODED_FRAMES, 2, -10, NALS, False),
    ),
    (
        "avc cts min",
        b"\x27\x01\x80\x00\x00" + NALS,
        v("h264", P.CODED_FRAMES, 2, -(1 << 23), NALS, False),
    ),
    ("avc empty frame", b"\x27\x01\x00\x00\x00", v("h264", P.CODED_FRAMES, 2, 0, b"", False)),
    ("avc end of sequence", b"\x17\x02\x00\x00\x00", v("h264", P.SEQUENCE_END, 1, 0, b"", False)),
    (
        "avc generated key",
        b"\x47\x01\x00\x00\x00" + NALS,
        v("h264", P.CODED_FRAMES, 4, 0, NALS, False),
    ),
    ("avc seek command", b"\x57\x01", v("h264", P.COMMAND, 5, 0, b"\x01", False)),
    ("h263 key", b"\x12\xaa\xbb", v("h263", P.CODED_FRAMES, 1, 0, b"\xaa\xbb", False)),
    ("vp6 disposable", b"\x34\x00\xcc", v("vp6", P.CODED_FRAMES, 3, 0, b"\x00\xcc", False)),
    ("screen2", b"\x16\x01", v("screen2", P.CODED_FRAMES, 1, 0, b"\x01", False)),
    # E-RTMP single track (enhanced-rtmp-v2 ExVideoTagHeader), FFmpeg/OBS shapes.
    ("hvc1 sequence start", b"\x90hvc1" + HVCC, v("hevc", P.SEQUENCE_START, 1, 0, HVCC, True)),
    (
        "hvc1 CodedFrames cts",
        b"\x91hvc1\x00\x00\x50" + NALS,
        v("hevc", P.CODED_FRAMES, 1, 80, NALS, True),
    ),
    (
        "hvc1 negative cts",
        b"\xa1hvc1\xff\xff\xd8" + NALS,
        v("hevc", P.CODED_FRAMES, 2, -40, NALS, True),
    ),
    ("hvc1 CodedFramesX", b"\xa3hvc1" + NALS, v("hevc", P.CODED_FRAMES, 2, 0, NALS, True)),
    ("hvc1 sequence end", b"\x92hvc1", v("hevc", P.SEQUENCE_END, 1, 0, b"", True)),
    ("avc1 metadata", b"\x84avc1" + AMF, v("h264", P.METADATA, 0, 0, AMF, True)),
    ("FFmpeg metadata (frame type 5)", b"\xd4hvc1" + AMF, v("hevc", P.METADATA, 5, 0, AMF, True)),
    ("OBS metadata (frame type 0)", b"\x84av01" + AMF, v("av1", P.METADATA, 0, 0, AMF, True)),
    (
        "av01 sequence start",
        b"\x90av01\x81\x00\x0c\x00",
        v("av1", P.SEQUENCE_START, 1, 0, b"\x81\x00\x0c\x00", True),
    ),
    (
        "av01 frames, no cts",
        b"\x91av01\x12\x00\x0a",
        v("av1", P.CODED_FRAMES, 1, 0, b"\x12\x00\x0a", True),
    ),
    (
        "av01 mpeg2ts start",
        b"\x95av01\x80\x04",
        v("av1", P.MPEG2TS_SEQUENCE_START, 1, 0, b"\x80\x04", True),
    ),
    (
        "vp09 sequence start",
        b"\x90vp09\x01\x00\x00\x00",
        v("vp9", P.SEQUENCE_START, 1, 0, b"\x01\x00\x00\x00", True),
    ),
    ("vp09 inter", b"\xa1vp09\x86\x00", v("vp9", P.CODED_FRAMES, 2, 0, b"\x86\x00", True)),
    ("vp08 key", b"\x91vp08\x10\x02", v("vp8", P.CODED_FRAMES, 1, 0, b"\x10\x02", True)),
    ("vvc1 cts", b"\x91vvc1\x00\x00\x21" + NALS, v("vvc", P.CODED_FRAMES, 1, 33, NALS, True)),
    ("enhanced command", b"\xd1\x00", v("", P.COMMAND, 5, 0, b"\x00", True)),
    # ModEx TimestampOffsetNano: size-1 = 2, u24 offset, then ModExType 0 | PacketType.
    (
        "modex nano",
        b"\x97\x02\x0f\x42\x3f\x03hvc1" + NALS,
        v("hevc", P.CODED_FRAMES, 1, 0, NALS, True, nano=999_999),
    ),
    (
        "modex nano, avc1 (h264 with nano cannot be legacy)",
        b"\xa7\x02\x00\x01\x00\x01avc1\x00\x00\x28" + NALS,
        v("h264", P.CODED_FRAMES, 2, 40, NALS, True, nano=256),
    ),
    (
        "modex nano command",
        b"\xd7\x02\x00\x00\x07\x01\x01",
        v("", P.COMMAND, 5, 0, b"\x01", True, nano=7),
    ),
    # Multitrack OneTrack (OBS multitrack video): no per-track size.
    (
        "one track avc1 X",
        b"\x96\x03avc1\x01" + NALS,
        v("h264", P.CODED_FRAMES, 1, 0, NALS, True, track_id=1),
    ),
    (
        "one track hvc1 cts",
        b"\xa6\x01hvc1\x02\x00\x00\x50" + NALS,
        v("hevc", P.CODED_FRAMES, 2, 80, NALS, True, track_id=2),
    ),
    (
        "one track seq start",
        b"\x96\x00av01\x03\x81\x00",
        v("av1", P.SEQUENCE_START, 1, 0, b"\x81\x00", True, 3),
    ),
    (
        "one track metadata",
        b"\x86\x04hvc1\x01" + AMF,
        v("hevc", P.METADATA, 0, 0, AMF, True, track_id=1),
    ),
    (
        "modex + one track",
        b"\x97\x02\x00\x00\x01\x06\x03hvc1\x05" + NALS,
        v("hevc", P.CODED_FRAMES, 1, 0, NALS, True, track_id=5, nano=1),
    ),
]

AUDIO_CASES = [
    # Legacy (FLV spec E.4.2.1): SoundFormat|rate|size|type, AACPacketType for AAC.
    (
        "aac sequence header",
        b"\xaf\x00\x12\x10",
        a("aac", P.SEQUENCE_START, b"\x12\x10", False, 0xF),
    ),
    ("aac raw", b"\xaf\x01\x21\x10\x04", a("aac", P.CODED_FRAMES, b"\x21\x10\x04", False, 0xF)),
    ("aac mono flags kept", b"\xae\x01\x21", a("aac", P.CODED_FRAMES, b"\x21", False, 0xE)),
    ("mp3 44k stereo", b"\x2f\xff\xfb\x94", a("mp3", P.CODED_FRAMES, b"\xff\xfb\x94", False, 0xF)),
    ("mp3 empty frame", b"\x2f", a("mp3", P.CODED_FRAMES, b"", False, 0xF)),
    ("speex", b"\xb6\x01\x02", a("speex", P.CODED_FRAMES, b"\x01\x02", False, 0x6)),
    ("g711a", b"\x72\x55", a("g711a", P.CODED_FRAMES, b"\x55", False, 0x2)),
    ("g711u", b"\x82\x55", a("g711u", P.CODED_FRAMES, b"\x55", False, 0x2)),
    ("pcm 8-bit", b"\x00\x80", a("pcm", P.CODED_FRAMES, b"\x80", False, 0)),
    ("pcm le", b"\x3f\x00\x01", a("pcm_le", P.CODED_FRAMES, b"\x00\x01", False, 0xF)),
    ("adpcm", b"\x1e\x00", a("adpcm", P.CODED_FRAMES, b"\x00", False, 0xE)),
    ("nellymoser 16k", b"\x42\x00", a("nellymoser_16k", P.CODED_FRAMES, b"\x00", False, 0x2)),
    ("nellymoser 8k", b"\x52\x00", a("nellymoser_8k", P.CODED_FRAMES, b"\x00", False, 0x2)),
    ("nellymoser", b"\x66\x00", a("nellymoser", P.CODED_FRAMES, b"\x00", False, 0x6)),
    ("mp3 8k", b"\xe2\x00", a("mp3_8k", P.CODED_FRAMES, b"\x00", False, 0x2)),
    ("device specific", b"\xf0\x00", a("device", P.CODED_FRAMES, b"\x00", False, 0)),
    # E-RTMP (ExAudioTagHeader), FFmpeg shapes.
    (
        "Opus head",
        b"\x90OpusOpusHead\x01\x02",
        a("opus", P.SEQUENCE_START, b"OpusHead\x01\x02", True),
    ),
    (
        "Opus multichannel native",
        b"\x94Opus\x01\x02\x00\x00\x00\x03",
        a("opus", P.MULTICHANNEL_CONFIG, b"\x01\x02\x00\x00\x00\x03", True),
    ),
    ("Opus frame", b"\x91Opus\xfc\xff\xfe", a("opus", P.CODED_FRAMES, b"\xfc\xff\xfe", True)),
    ("Opus end", b"\x92Opus", a("opus", P.SEQUENCE_END, b"", True)),
    (
        "fLaC header",
        b"\x90fLaCfLaC\x00\x00\x00\x22",
        a("flac", P.SEQUENCE_START, b"fLaC\x00\x00\x00\x22", True),
    ),
    ("fLaC frame", b"\x91fLaC\xff\xf8", a("flac", P.CODED_FRAMES, b"\xff\xf8", True)),
    ("ac-3 empty start", b"\x90ac-3", a("ac3", P.SEQUENCE_START, b"", True)),
    ("ec-3 frame", b"\x91ec-3\x0b\x77", a("eac3", P.CODED_FRAMES, b"\x0b\x77", True)),
    (
        "mp4a 5.1 multichannel",
        b"\x94mp4a\x01\x06\x00\x00\x00\x3f",
        a("aac", P.MULTICHANNEL_CONFIG, b"\x01\x06\x00\x00\x00\x3f", True),
    ),
    ("mp4a end", b"\x92mp4a", a("aac", P.SEQUENCE_END, b"", True)),
    (".mp3 start", b"\x90.mp3", a("mp3", P.SEQUENCE_START, b"", True)),
    (
        "modex nano",
        b"\x97\x02\x00\x03\xe8\x01Opus\xfc",
        a("opus", P.CODED_FRAMES, b"\xfc", True, nano=1000),
    ),
    # Multitrack OneTrack (OBS extra audio tracks): mp4a stays E-RTMP because of the id.
    (
        "one track mp4a",
        b"\x95\x01mp4a\x02\x21\x10",
        a("aac", P.CODED_FRAMES, b"\x21\x10", True, track_id=2),
    ),
    (
        "one track mp4a start",
        b"\x95\x00mp4a\x01\x11\x90",
        a("aac", P.SEQUENCE_START, b"\x11\x90", True, track_id=1),
    ),
]


@pytest.mark.parametrize(("name", "body", "tag"), VIDEO_CASES, ids=[c[0] for c in VIDEO_CASES])
def test_video_table(name: str, body: bytes, tag: VideoTag) -> None:
    assert parse_video(body) == [tag]
    assert build_video(tag) == body


@pytest.mark.parametrize(("name", "body", "tag"), AUDIO_CASES, ids=[c[0] for c in AUDIO_CASES])
def test_audio_table(name: str, body: bytes, tag: AudioTag) -> None:
    assert parse_audio(body) == [tag]
    assert build_audio(tag) == body


def test_keyframe_property() -> None:
    assert [
        t.keyframe
        for t in (parse_video(b"\x17\x01\x00\x00\x00")[0], parse_video(b"\x47\x01\x00\x00\x00")[0])
    ] == [
        True,
        True,
    ]
    assert not parse_video(b"\x27\x01\x00\x00\x00")[0].keyframe
    assert not parse_video(b"\xd4hvc1")[0].keyframe


def test_empty_audio_is_silence() -> None:
    assert parse_audio(b"") == []


# Parse-only shapes: several tracks per message, big ModEx blocks, normalising builds.
def test_many_tracks_one_codec() -> None:
    body = (
        b"\x96\x11hvc1"
        + b"\x01\x00\x00\x05\x00\x00\x50\xaa\xbb"
        + b"\x02\x00\x00\x04\xff\xff\xf6\xcc"
    )
    assert parse_video(body) == [
        v("hevc", P.CODED_FRAMES, 1, 80, b"\xaa\xbb", True, track_id=1),
        v("hevc", P.CODED_FRAMES, 1, -10, b"\xcc", True, track_id=2),
    ]


def test_many_tracks_many_codecs() -> None:
    body = (
        b"\x96\x20"
        + b"hvc1\x00\x00\x00\x02\x01\x02"
        + b"av01\x01\x00\x00\x03\x81\x00\x0c"
        + b"vp09\x02\x00\x00\x00"
    )
    assert parse_video(body) == [
        v("hevc", P.SEQUENCE_START, 1, 0, b"\x01\x02", True, track_id=0),
        v("av1", P.SEQUENCE_START, 1, 0, b"\x81\x00\x0c", True, track_id=1),
        v("vp9", P.SEQUENCE_START, 1, 0, b"", True, track_id=2),
    ]
    # each track re-serialises on its own: track 0 single-track, the others OneTrack
    assert [build_video(t) for t in parse_video(body)] == [
        b"\x90hvc1\x01\x02",
        b"\x96\x00av01\x01\x81\x00\x0c",
        b"\x96\x00vp09\x02",
    ]


def test_audio_many_tracks() -> None:
    body = b"\x95\x11Opus" + b"\x00\x00\x00\x01\xfc" + b"\x01\x00\x00\x02\xfc\xfd"
    assert parse_audio(body) == [
        a("opus", P.CODED_FRAMES, b"\xfc", True, track_id=0),
        a("opus", P.CODED_FRAMES, b"\xfc\xfd", True, track_id=1),
    ]
    body = b"\x95\x20" + b"Opus\x00\x00\x00\x01\xfc" + b"mp4a\x01\x00\x00\x01\x21"
    assert [(t.codec, t.track_id, t.data) for t in parse_audio(body)] == [
        ("opus", 0, b"\xfc"),
        ("aac", 1, b"\x21"),
    ]


def test_track_limit() -> None:
    track = b"\x01\x00\x00\x01\xfc"
    assert len(parse_audio(b"\x95\x11Opus" + track * MAX_TRACKS)) == MAX_TRACKS
    with pytest.raises(FlvError):
        parse_audio(b"\x95\x11Opus" + track * (MAX_TRACKS + 1))


def test_modex_sizes_and_unknown_types() -> None:
    # 16-bit size form: u8 0xFF means "read a u16"; 0x0100 + 1 = 257 bytes of data.
    data = b"\x00\x00\x2a" + bytes(254)
    body = b"\x97\xff\x01\x00" + data + b"\x01Opus\xfc"
    assert parse_audio(body) == [a("opus", P.CODED_FRAMES, b"\xfc", True, nano=42)]
    # An unknown ModEx type is skipped; a chained nano block still applies.
    body = b"\x97\x00\x99\x57\x02\x00\x00\x09\x03hvc1" + NALS
    assert parse_video(body) == [v("hevc", P.CODED_FRAMES, 1, 0, NALS, True, nano=9)]


NORMALISING = [
    # (name, body in, body out): builds that pick the canonical form.
    (
        "legacy HEVC CodecID 12 -> hvc1",
        b"\x1c\x01\x00\x00\x50" + NALS,
        b"\x91hvc1\x00\x00\x50" + NALS,
    ),
    ("legacy HEVC cts 0 -> X", b"\x2c\x01\x00\x00\x00" + NALS, b"\xa3hvc1" + NALS),
    ("legacy HEVC header", b"\x1c\x00\x00\x00\x00" + HVCC, b"\x90hvc1" + HVCC),
    ("avc1 track 0 -> legacy", b"\x91avc1\x00\x00\x00" + NALS, b"\x17\x01\x00\x00\x00" + NALS),
    ("avc1 header -> legacy", b"\x90avc1" + AVCC, b"\x17\x00\x00\x00\x00" + AVCC),
    ("hvc1 CodedFrames cts 0 -> X", b"\x91hvc1\x00\x00\x00" + NALS, b"\x93hvc1" + NALS),
    ("av01 CodedFramesX -> CodedFrames", b"\x93av01\x12\x00", b"\x91av01\x12\x00"),
    ("one track, track 0", b"\x96\x00hvc1\x00" + HVCC, b"\x90hvc1" + HVCC),
    ("legacy HEVC command", b"\x5c\x00", b"\xd1\x00"),
]


@pytest.mark.parametrize(("name", "body", "out"), NORMALISING, ids=[c[0] for c in NORMALISING])
def test_video_normalising_builds(name: str, body: bytes, out: bytes) -> None:
    (tag,) = parse_video(body)
    assert build_video(tag) == out


def test_metadata_on_a_track_drops_frame_type_5() -> None:
    # 5 + Multitrack would read back as a command; FrameType is ignored for Metadata.
    body = build_video(v("hevc", P.METADATA, 5, 0, AMF, True, track_id=1))
    assert body == b"\x86\x04hvc1\x01" + AMF


def test_audio_normalising_builds() -> None:
    (tag,) = parse_audio(b"\x90mp4a\x12\x10")
    assert build_audio(tag) == b"\xaf\x00\x12\x10"
    (tag,) = parse_audio(b"\x91.mp3\xff\xfb")
    assert build_audio(tag) == b"\x20\xff\xfb"
    assert build_audio(a("aac", P.CODED_FRAMES, b"\x21", False)) == b"\xaf\x01\x21"
    assert (
        build_audio(a("aac", P.CODED_FRAMES, b"\x21", False, nano=5))
        == b"\x97\x02\x00\x00\x05\x01mp4a\x21"
    )


VIDEO_ERRORS = [
    ("empty", b""),
    ("codec id 0", b"\x10\x00"),
    ("codec id 1", b"\x11\x00"),
    ("codec id 8", b"\x18\x00"),
    ("codec id 13", b"\x1d\x00\x00\x00\x00"),
    ("codec id 15", b"\x1f"),
    ("avc no packet type", b"\x17"),
    ("avc short cts", b"\x17\x01\x00\x00"),
    ("avc packet type 3", b"\x17\x03\x00\x00\x00"),
    ("legacy command without byte", b"\x57"),
    ("enhanced command without byte", b"\xd1"),
    ("unknown fourcc", b"\x90xxxx"),
    ("fourcc case", b"\x90HVC1"),
    ("fourcc truncated", b"\x90hv"),
    ("hvc1 cts truncated", b"\x91hvc1\x00\x00"),
    ("reserved packet type 8", b"\x98hvc1"),
    ("reserved packet type 15", b"\x9fhvc1"),
    ("modex size missing", b"\x97"),
    ("modex data truncated", b"\x97\x02\x00\x00"),
    ("modex next type missing", b"\x97\x02\x00\x00\x00"),
    ("modex u16 size truncated", b"\x97\xff\x01"),
    ("nano needs 3 bytes", b"\x97\x01\x00\x00\x03hvc1"),
    ("nano >= 1 ms", b"\x97\x02\x0f\x42\x40\x03hvc1"),
    ("modex chain too long", b"\x97" + b"\x00\x00\x17" * 8 + b"\x00\x00\x03hvc1"),
    ("multitrack type byte missing", b"\x96"),
    ("multitrack of multitrack", b"\x96\x06hvc1\x01"),
    ("multitrack of modex", b"\x96\x07hvc1\x01"),
    ("multitrack type 3", b"\x96\x31hvc1\x01"),
    ("one track id missing", b"\x96\x03hvc1"),
    ("many tracks, none", b"\x96\x13hvc1"),
    ("many tracks size missing", b"\x96\x13hvc1\x01\x00"),
    ("many tracks size lies", b"\x96\x13hvc1\x01\x00\x00\x09\xaa"),
    ("many tracks second size lies", b"\x96\x13hvc1\x01\x00\x00\x01\xaa\x02\x00\x00\x02\xaa"),
    ("many codecs fourcc truncated", b"\x96\x23hvc1\x01\x00\x00\x01\xaa" + b"av0"),
    ("many codecs unknown fourcc", b"\x96\x23abcd\x01\x00\x00\x00"),
    ("track cts truncated", b"\x96\x11hvc1\x01\x00\x00\x02\x00\x00"),
]


@pytest.mark.parametrize("body", [c[1] for c in VIDEO_ERRORS], ids=[c[0] for c in VIDEO_ERRORS])
def test_video_errors(body: bytes) -> None:
    with pytest.raises(FlvError):
        parse_video(body)


AUDIO_ERRORS = [
    ("reserved format 12", b"\xc0\x00"),
    ("reserved format 13", b"\xd0\x00"),
    ("aac no packet type", b"\xaf"),
    ("aac packet type 2", b"\xaf\x02\x00"),
    ("unknown fourcc", b"\x90abcd"),
    ("opus lower-case", b"\x90opus"),
    ("flac lower-case", b"\x90flac"),
    ("mp3 without dot", b"\x90mp3 "),
    ("fourcc truncated", b"\x91Op"),
    ("reserved packet type 3", b"\x93Opus"),
    ("reserved packet type 6", b"\x96Opus"),
    ("reserved packet type 8", b"\x98Opus"),
    ("modex truncated", b"\x97\x02\x00"),
    ("multitrack of multitrack", b"\x95\x05Opus\x01"),
    ("multitrack type 4", b"\x95\x41Opus\x01"),
    ("many tracks size lies", b"\x95\x11Opus\x01\x00\x01\x00"),
]


@pytest.mark.parametrize("body", [c[1] for c in AUDIO_ERRORS], ids=[c[0] for c in AUDIO_ERRORS])
def test_audio_errors(body: bytes) -> None:
    with pytest.raises(FlvError):
        parse_audio(body)


BUILD_VIDEO_ERRORS = [
    ("frame type 8", v("h264", P.CODED_FRAMES, 8, 0, b"", False)),
    ("frame type -1", v("hevc", P.CODED_FRAMES, -1, 0, b"", True)),
    ("track id 256", v("hevc", P.CODED_FRAMES, 1, 0, b"", True, track_id=256)),
    ("nano 1 ms", v("hevc", P.CODED_FRAMES, 1, 0, b"", True, nano=1_000_000)),
    ("cts too big", v("h264", P.CODED_FRAMES, 1, 1 << 23, b"", False)),
    ("cts too small", v("hevc", P.CODED_FRAMES, 1, -(1 << 23) - 1, b"", True)),
    ("av1 with cts", v("av1", P.CODED_FRAMES, 1, 5, b"", True)),
    ("command of two bytes", v("h264", P.COMMAND, 5, 0, b"\x00\x01", False)),
    ("command on a track", v("", P.COMMAND, 5, 0, b"\x00", True, track_id=1)),
    ("h263 header", v("h263", P.SEQUENCE_START, 1, 0, b"", False)),
    ("h263 with cts", v("h263", P.CODED_FRAMES, 1, 3, b"", False)),
    ("h263 on a track", v("h263", P.CODED_FRAMES, 1, 0, b"", False, track_id=1)),
    ("unknown codec", v("mpeg2", P.CODED_FRAMES, 1, 0, b"", True)),
    ("audio kind", v("hevc", P.MULTICHANNEL_CONFIG, 1, 0, b"", True)),
    ("frames with frame type 5", v("h264", P.CODED_FRAMES, 5, 0, b"", False)),
    ("command with frame type 1", v("", P.COMMAND, 1, 0, b"\x00", True)),
]


@pytest.mark.parametrize(
    "tag", [c[1] for c in BUILD_VIDEO_ERRORS], ids=[c[0] for c in BUILD_VIDEO_ERRORS]
)
def test_build_video_errors(tag: VideoTag) -> None:
    with pytest.raises(FlvError):
        build_video(tag)


BUILD_AUDIO_ERRORS = [
    ("flags 16", a("aac", P.CODED_FRAMES, b"", False, flags=16)),
    ("pcm on a track", a("pcm", P.CODED_FRAMES, b"", False, track_id=1)),
    ("speex header", a("speex", P.SEQUENCE_START, b"", False)),
    ("video kind", a("opus", P.METADATA, b"", True)),
    ("command kind", a("aac", P.COMMAND, b"", True)),
    ("unknown codec", a("vorbis", P.CODED_FRAMES, b"", True)),
    ("negative track", a("opus", P.CODED_FRAMES, b"", True, track_id=-1)),
    ("negative nano", a("opus", P.CODED_FRAMES, b"", True, nano=-1)),
]


@pytest.mark.parametrize(
    "tag", [c[1] for c in BUILD_AUDIO_ERRORS], ids=[c[0] for c in BUILD_AUDIO_ERRORS]
)
def test_build_audio_errors(tag: AudioTag) -> None:
    with pytest.raises(FlvError):
        build_audio(tag)


# ------------------------------------------------------------------ FFmpeg's FLV muxer


def _flv_tags(data: bytes) -> list[tuple[int, bytes]]:
    assert data[:3] == b"FLV"
    pos = int.from_bytes(data[5:9], "big") + 4
    out = []
    while pos + 11 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        out.append((data[pos], data[pos + 11 : pos + 11 + size]))
        pos += 11 + size + 4
    return out


def _ffmpeg_flv(
    vcodec: str | None, acodec: str | None, layout: str = "stereo", **voptions: str
) -> bytes:
    av = pytest.importorskip("av", reason="PyAV is needed to produce FFmpeg's FLV tags")
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="flv") as out:
        video = out.add_stream(vcodec, rate=25, options=voptions) if vcodec else None
        if video is not None:
            video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        audio = out.add_stream(acodec, rate=48000, layout=layout) if acodec else None
        for i in range(8):
            if video is not None:
                rgb = np.random.default_rng(i).integers(0, 255, (64, 96, 3), dtype=np.uint8)
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = i
                for packet in video.encode(frame):
                    out.mux(packet)
            if audio is not None:
                ctx = audio.codec_context
                size = ctx.frame_size or 1024
                dtype = {"s16": np.int16, "s16p": np.int16, "s32": np.int32, "s32p": np.int32}.get(
                    ctx.format.name, np.float32
                )
                channels = ctx.layout.nb_channels
                shape = (channels, size) if ctx.format.is_planar else (1, size * channels)
                samples = av.AudioFrame.from_ndarray(
                    np.zeros(shape, dtype=dtype), format=ctx.format.name, layout=layout
                )
                samples.sample_rate, samples.pts = 48000, i * size
                for packet in audio.encode(samples):
                    out.mux(packet)
        for stream in (video, audio):
            if stream is not None:
                for packet in stream.encode(None):
                    out.mux(packet)
    return buf.getvalue()


FFMPEG_STREAMS = [
    ("libx264", "aac", {}, "h264", "aac"),
    ("libx264", "aac", {"x264-params": "bframes=0"}, "h264", "aac"),
    ("libx265", "libopus", {"x265-params": "log-level=error"}, "hevc", "opus"),
    ("libx265", None, {"x265-params": "log-level=error:bframes=0"}, "hevc", None),
    ("libsvtav1", "flac", {}, "av1", "flac"),
    ("libvpx-vp9", "ac3", {"deadline": "realtime", "cpu-used": "8"}, "vp9", "ac3"),
    (None, "eac3", {}, None, "eac3"),
    (None, "libmp3lame", {}, None, "mp3"),
]


@pytest.mark.parametrize(("vcodec", "acodec", "options", "vname", "aname"), FFMPEG_STREAMS)
def test_ffmpeg_tags_round_trip(vcodec, acodec, options, vname, aname) -> None:
    """Every tag FFmpeg's FLV muxer writes parses to one tag and rebuilds to the same bytes."""
    av = pytest.importorskip("av")
    for name in (vcodec, acodec):
        if name is not None and name not in av.codecs_available:
            pytest.skip(f"{name} not in this FFmpeg build")
    kinds = set()
    for tag_type, body in _flv_tags(_ffmpeg_flv(vcodec, acodec, **options)):
        if tag_type == 9:
            (tag,) = parse_video(body)
            assert tag.codec == vname
            assert build_video(tag) == body
        elif tag_type == 8:
            (tag,) = parse_audio(body)
            assert tag.codec == aname
            assert build_audio(tag) == body
        else:
            continue
        kinds.add((tag.codec, tag.packet))
    for name in (vname, aname):
        if name is not None:
            assert (name, P.CODED_FRAMES) in kinds
    if vname is not None:
        assert (vname, P.SEQUENCE_START) in kinds


def test_ffmpeg_aac_51_multichannel_config() -> None:
    """FFmpeg 7+ sends an E-RTMP mp4a MultichannelConfig beside legacy AAC for 5.1."""
    tags = [
        (t, body)
        for kind, body in _flv_tags(_ffmpeg_flv(None, "aac", layout="5.1"))
        if kind == 8
        for t in parse_audio(body)
    ]
    multichannel = [t for t, _ in tags if t.packet == P.MULTICHANNEL_CONFIG]
    if not multichannel:
        pytest.skip("this FFmpeg does not send MultichannelConfig")
    assert multichannel[0] == a("aac", P.MULTICHANNEL_CONFIG, b"\x01\x06\x00\x00\x00\x3f", True)
    assert all(build_audio(t) == body for t, body in tags)


# ------------------------------------------------------------------------------ fuzzing

VIDEO_PREFIXES = [
    b"",
    b"\x17\x01",
    b"\x90",
    b"\x91hvc1",
    b"\x96",
    b"\x96\x11hvc1",
    b"\x96\x20",
    b"\x97",
    b"\xd7",
]
AUDIO_PREFIXES = [
    b"",
    b"\xaf",
    b"\x90",
    b"\x95",
    b"\x95\x11Opus",
    b"\x95\x20",
    b"\x97",
    b"\x91Opus",
]


def _same(x: VideoTag | AudioTag, y: VideoTag | AudioTag) -> bool:
    fields = ["packet", "data", "track_id", "nano_offset"]
    if isinstance(x, VideoTag):
        if x.packet != P.METADATA:  # FrameType is ignored for Metadata
            fields.append("frame_type")
        if x.packet == P.CODED_FRAMES:
            fields.append("cts")
        if x.packet != P.COMMAND:  # enhanced commands carry no codec
            fields.append("codec")
    else:
        fields.append("codec")
    return all(getattr(x, f) == getattr(y, f) for f in fields)


@given(st.sampled_from(VIDEO_PREFIXES), st.binary(max_size=64))
def test_fuzz_video(prefix: bytes, tail: bytes) -> None:
    """Nothing but FlvError escapes; whatever decodes re-encodes to a stable form."""
    try:
        tags = parse_video(prefix + tail)
    except FlvError:
        return
    assert tags
    for tag in tags:
        body = build_video(tag)
        (again,) = parse_video(body)
        assert _same(tag, again)
        assert build_video(again) == body


@given(st.sampled_from(AUDIO_PREFIXES), st.binary(max_size=64))
def test_fuzz_audio(prefix: bytes, tail: bytes) -> None:
    try:
        tags = parse_audio(prefix + tail)
    except FlvError:
        return
    for tag in tags:
        body = build_audio(tag)
        (again,) = parse_audio(body)
        assert _same(tag, again)
        assert build_audio(again) == body


video_tags = st.builds(
    VideoTag,
    codec=st.sampled_from(["h264", "hevc", "av1", "vp9", "vp8", "vvc", "h263", "vp6", ""]),
    packet=st.sampled_from(list(PacketType)),
    frame_type=st.integers(0, 7),
    cts=st.integers(-(1 << 23), (1 << 23) - 1) | st.just(0),
    data=st.binary(max_size=16),
    enhanced=st.booleans(),
    track_id=st.integers(0, 255) | st.just(0),
    nano_offset=st.integers(0, 999_999) | st.just(0),
)
audio_tags = st.builds(
    AudioTag,
    codec=st.sampled_from(["aac", "mp3", "opus", "flac", "ac3", "eac3", "pcm", "speex", "device"]),
    packet=st.sampled_from(list(PacketType)),
    data=st.binary(max_size=16),
    enhanced=st.booleans(),
    legacy_flags=st.integers(0, 15),
    track_id=st.integers(0, 255) | st.just(0),
    nano_offset=st.integers(0, 999_999) | st.just(0),
)


@given(video_tags)
def test_fuzz_build_video(tag: VideoTag) -> None:
    """Whatever encodes decodes back to the same tag."""
    try:
        body = build_video(tag)
    except FlvError:
        return
    (again,) = parse_video(body)
    assert _same(tag, again)


@given(audio_tags)
def test_fuzz_build_audio(tag: AudioTag) -> None:
    try:
        body = build_audio(tag)
    except FlvError:
        return
    (again,) = parse_audio(body)
    assert _same(tag, again)
