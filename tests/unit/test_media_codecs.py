"""Codec configuration helpers: avcC/SPS, hvcC/SPS, AudioSpecificConfig/ADTS, NAL framing.

Real parameter sets come from libx264/libx265/FFmpeg's AAC encoder through PyAV (skipped
when PyAV is missing); hand-built bitstreams cover branches encoders rarely take.
"""

from __future__ import annotations

import io
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.media import aac, h264, hevc
from bridge.media.errors import CodecConfigError
from bridge.rtmp.flv import PacketType, parse_audio, parse_video

# ----------------------------------------------------------------------------- helpers


class BitWriter:
    """Test-side MSB-first bit writer with Exp-Golomb codes, to build SPS/ASC by hand."""

    def __init__(self) -> None:
        self.value = 0
        self.size = 0

    def bits(self, n: int, value: int) -> BitWriter:
        assert 0 <= value < (1 << n) or n == 0
        self.value = (self.value << n) | value
        self.size += n
        return self

    def ue(self, value: int) -> BitWriter:
        code = value + 1
        n = code.bit_length()
        return self.bits(n - 1, 0).bits(n, code)

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def bytes(self, trailing: bool = False) -> bytes:
        if trailing:  # rbsp_trailing_bits
            self.bits(1, 1)
        pad = -self.size % 8
        return (self.value << pad).to_bytes((self.size + pad) // 8, "big")


def escape_rbsp(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes (H.264 §7.4.1), the inverse of unescape_rbsp."""
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def make_h264_sps(
    *,
    profile: int = 66,
    compat: int = 0xC0,
    level: int = 30,
    sps_id: int = 0,
    chroma: int = 1,
    scaling: tuple[int, ...] = (),
    poc_type: int = 0,
    width_mbs: int = 40,
    height_units: int = 23,
    frame_mbs_only: bool = True,
    crop: tuple[int, int, int, int] | None = None,
) -> bytes:
    """An H.264 SPS NAL unit with the fields the parser must walk."""
    w = BitWriter().bits(8, profile).bits(8, compat).bits(8, level).ue(sps_id)
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        w.ue(chroma)
        if chroma == 3:
            w.bits(1, 0)  # separate_colour_plane_flag
        w.ue(0).ue(0).bits(1, 0)  # bit depths 8, qpprime bypass
        w.bits(1, 1 if scaling else 0)
        if scaling:
            for i in range(8 if chroma != 3 else 12):
                present = i in scaling
                w.bits(1, int(present))
                if present:
                    # a non-flat list: a few deltas then a 0 next_scale ending the list
                    for delta in (3, -2, 5, -14):
                        w.se(delta)
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(poc_type)
    if poc_type == 0:
        w.ue(2)
    elif poc_type == 1:
        w.bits(1, 0).se(-1).se(2).ue(3).se(1).se(-1).se(4)
    w.ue(1).bits(1, 0)  # max_num_ref_frames, gaps
    w.ue(width_mbs - 1).ue(height_units - 1)
    w.bits(1, int(frame_mbs_only))
    if not frame_mbs_only:
        w.bits(1, 0)
    w.bits(1, 1)  # direct_8x8_inference_flag
    w.bits(1, int(crop is not None))
    if crop is not None:
        for value in crop:
            w.ue(value)
    w.bits(1, 0)  # vui_parameters_present_flag
    return b"\x67" + escape_rbsp(w.bytes(trailing=True))


# ------------------------------------------------------------------------------- H.264

H264_SPS_CASES = [
    # (name, kwargs, expected (width, height))
    ("baseline 640x368 uncropped", {}, (640, 368)),
    ("baseline 640x360 cropped", {"crop": (0, 0, 0, 4)}, (640, 360)),
    (
        "1920x1080 cropped",
        {"width_mbs": 120, "height_units": 68, "crop": (0, 0, 0, 4)},
        (1920, 1080),
    ),
    ("left/right crop", {"crop": (2, 3, 1, 1)}, (630, 364)),
    (
        "field coding",
        {"height_units": 12, "frame_mbs_only": False, "crop": (0, 0, 0, 3)},
        (640, 372),
    ),
    ("poc type 1", {"poc_type": 1}, (640, 368)),
    ("poc type 2", {"poc_type": 2}, (640, 368)),
    ("high, scaling lists", {"profile": 100, "compat": 0, "scaling": (0, 3, 6, 7)}, (640, 368)),
    (
        "high 4:4:4, 12 lists",
        {"profile": 244, "chroma": 3, "scaling": (0, 11), "crop": (1, 1, 1, 1)},
        (638, 366),
    ),
    ("high 4:2:2 crop units", {"profile": 122, "chroma": 2, "crop": (1, 0, 1, 0)}, (638, 367)),
    ("monochrome crop units", {"profile": 100, "chroma": 0, "crop": (1, 0, 1, 0)}, (639, 367)),
    ("emulation prevention", {"compat": 0, "level": 0, "sps_id": 63}, (640, 368)),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "size"), H264_SPS_CASES, ids=[c[0] for c in H264_SPS_CASES]
)
def test_h264_sps_dimensions_hand_built(name: str, kwargs: dict, size: tuple[int, int]) -> None:
    sps = make_h264_sps(**kwargs)
    assert h264.sps_dimensions(sps) == size


def test_escape_case_really_escapes() -> None:
    sps = make_h264_sps(compat=0, level=0, sps_id=63)
    assert b"\x00\x00\x03" in sps
    assert h264.unescape_rbsp(b"\x00\x00\x03\x00\x00\x03\x01") == b"\x00\x00\x00\x00\x01"


def test_h264_sps_rejects_garbage() -> None:
    with pytest.raises(CodecConfigError):
        h264.sps_dimensions(b"\x68\x42\x00\x1e")  # a PPS header
    with pytest.raises(CodecConfigError):
        h264.sps_dimensions(make_h264_sps()[:6])  # truncated
    with pytest.raises(CodecConfigError):
        h264.sps_dimensions(b"\x67" + b"\x42\x00\x1e" + b"\x00" * 8)  # endless Exp-Golomb
    with pytest.raises(CodecConfigError):  # cropping away the whole picture
        h264.sps_dimensions(make_h264_sps(crop=(200, 200, 0, 0)))


SPS_A = make_h264_sps(profile=100, compat=0, level=31, width_mbs=80, height_units=45)
PPS_A = b"\x68\xeb\xe3\xcb\x22\xc0"


def test_avcc_build_parse_round_trip() -> None:
    record = h264.build_avcc([SPS_A], [PPS_A])
    # header, one SPS, one PPS, then the High-profile trailer (4:2:0, 8-bit, no ext)
    assert record[:6] == bytes([1, 100, 0, 31, 0xFF, 0xE1])
    assert record[-4:] == bytes([0xFD, 0xF8, 0xF8, 0x00])
    cfg = h264.parse_avcc(record)
    assert cfg == h264.AvcConfig(100, 0, 31, 4, (SPS_A,), (PPS_A,))
    assert h264.codec_string(cfg) == "avc1.64001f"
    assert h264.sps_dimensions(cfg.sps[0]) == (1280, 720)
    baseline = h264.build_avcc([make_h264_sps()], [PPS_A], nal_length_size=2)
    assert baseline[4] == 0xFD and len(baseline) == 5 + 1 + 2 + len(make_h264_sps()) + 1 + 2 + 6
    assert h264.parse_avcc(baseline).nal_length_size == 2


@pytest.mark.parametrize(
    "record",
    [
        b"",
        b"\x01\x64\x00\x1f\xff",  # too short
        b"\x00\x64\x00\x1f\xff\xe0\x00",  # configurationVersion 0
        b"\x01\x64\x00\x1f\xfe\xe0\x00",  # lengthSizeMinusOne 2
        b"\x01\x64\x00\x1f\xff\xe1\x00\x10\x67",  # SPS length lies
        b"\x01\x64\x00\x1f\xff\xe1\x00\x00\x00",  # zero-length SPS
        b"\x01\x64\x00\x1f\xff\xe0",  # no PPS count
        b"\x01\x64\x00\x1f\xff\xe0\x01\x00",  # PPS length truncated
    ],
)
def test_avcc_rejects(record: bytes) -> None:
    with pytest.raises(CodecConfigError):
        h264.parse_avcc(record)


def test_build_avcc_rejects() -> None:
    with pytest.raises(CodecConfigError):
        h264.build_avcc([], [PPS_A])
    with pytest.raises(CodecConfigError):
        h264.build_avcc([SPS_A], [PPS_A], nal_length_size=3)


NALS = [b"\x09\xf0", b"\x67\x42\x00\x1e", b"\x68\xce", b"\x65\x88\x84\x00"]


@pytest.mark.parametrize("length_size", [1, 2, 3, 4])
def test_split_nalus_and_annexb(length_size: int) -> None:
    payload = b"".join(len(n).to_bytes(length_size, "big") + n for n in NALS)
    assert h264.split_nalus(payload, length_size) == NALS
    assert h264.to_annexb(payload, length_size) == b"".join(b"\x00\x00\x00\x01" + n for n in NALS)
    assert h264.to_annexb(payload, length_size, prefix=b"P").startswith(b"P\x00\x00\x00\x01\x09")
    assert [h264.nal_type(n) for n in NALS] == [9, 7, 8, 5]
    assert h264.is_idr(payload, length_size)
    assert not h264.is_idr(payload[: -(length_size + 4)], length_size)


def test_split_nalus_errors_and_empty_entries() -> None:
    assert h264.split_nalus(b"\x00\x00\x00\x00\x00\x00\x00\x01\x41") == [b"\x41"]
    assert h264.split_nalus(b"") == []
    for lie in (b"\x00\x00\x00\x05\x41", b"\x00\x00\x01", b"\x00\x00\x00\x01\x41\x00"):
        with pytest.raises(CodecConfigError):
            h264.split_nalus(lie)
    with pytest.raises(CodecConfigError):
        h264.split_nalus(b"\x01\x41", 5)
    with pytest.raises(CodecConfigError):
        h264.nal_type(b"")


# -------------------------------------------------------------------------------- HEVC


def make_hvcc(
    *,
    byte1: int = 0x01,
    compat: int = 0x60000000,
    constraint: int = 0x900000000000,
    level: int = 93,
    arrays=(),
) -> bytes:
    head = (
        bytes([1, byte1])
        + compat.to_bytes(4, "big")
        + constraint.to_bytes(6, "big")
        + bytes([level])
    )
    head += bytes([0xF0, 0x00, 0xFC, 0xFD, 0xF8, 0xF8, 0x00, 0x00, 0x0F, len(arrays)])
    for nal_type, nals in arrays:
        head += bytes([0x80 | nal_type]) + len(nals).to_bytes(2, "big")
        for nal in nals:
            head += len(nal).to_bytes(2, "big") + nal
    return head


def make_hevc_sps(
    *, width: int, height: int, chroma: int = 1, window=None, sub_layers: int = 0
) -> bytes:
    w = BitWriter().bits(4, 0).bits(3, sub_layers).bits(1, 1)
    w.bits(2, 0).bits(1, 0).bits(5, 1).bits(32, 0x60000000).bits(48, 0xB00000000000).bits(8, 93)
    for _ in range(sub_layers):
        w.bits(1, 1).bits(1, 1)  # sub-layer profile and level present
    if sub_layers:
        w.bits(2 * (8 - sub_layers), 0)
    for _ in range(sub_layers):
        w.bits(88, (1 << 87) | 12345).bits(8, 90)
    w.ue(0).ue(chroma)
    if chroma == 3:
        w.bits(1, 0)
    w.ue(width).ue(height).bits(1, int(window is not None))
    if window is not None:
        for value in window:
            w.ue(value)
    w.ue(0).ue(0)  # bit depths; the parser stops before these
    return b"\x42\x01" + escape_rbsp(w.bytes(trailing=True))


HEVC_SPS_CASES = [
    ("1280x720", {"width": 1280, "height": 720}, (1280, 720)),
    ("640x360 window", {"width": 640, "height": 368, "window": (0, 0, 0, 4)}, (640, 360)),
    (
        "4:2:2 window",
        {"width": 640, "height": 368, "chroma": 2, "window": (1, 1, 0, 4)},
        (636, 364),
    ),
    (
        "4:4:4 window",
        {"width": 648, "height": 368, "chroma": 3, "window": (3, 3, 0, 6)},
        (642, 362),
    ),
    (
        "3 sub-layers",
        {"width": 1920, "height": 1088, "window": (0, 0, 0, 4), "sub_layers": 2},
        (1920, 1080),
    ),
    ("6 sub-layers", {"width": 320, "height": 240, "sub_layers": 6}, (320, 240)),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "size"), HEVC_SPS_CASES, ids=[c[0] for c in HEVC_SPS_CASES]
)
def test_hevc_sps_dimensions_hand_built(name: str, kwargs: dict, size: tuple[int, int]) -> None:
    sps = make_hevc_sps(**kwargs)
    assert hevc.sps_dimensions(sps) == size
    info = hevc.parse_sps(sps)
    assert (info.profile_idc, info.compat_flags, info.level_idc) == (1, 0x60000000, 93)
    assert info.constraint_flags == 0xB00000000000


def test_hvcc_parse_and_codec_strings() -> None:
    vps, sps, pps, sei = (
        b"\x40\x01\x0c",
        make_hevc_sps(width=1280, height=720),
        b"\x44\x01\xc1",
        b"\x4e\x01\x05",
    )
    record = make_hvcc(
        constraint=0xB00000000000, arrays=[(32, [vps]), (33, [sps]), (34, [pps]), (39, [sei])]
    )
    cfg = hevc.parse_hvcc(record)
    assert (cfg.profile_space, cfg.tier, cfg.profile_idc, cfg.level_idc) == (0, 0, 1, 93)
    assert (cfg.vps, cfg.sps, cfg.pps, cfg.nal_length_size) == ((vps,), (sps,), (pps,), 4)
    assert hevc.codec_string(cfg) == "hvc1.1.6.L93.B0"
    # The ISO/IEC 14496-15 Annex E example: profile space 1, high tier, two constraint bytes.
    odd = make_hvcc(byte1=0x40 | 0x20 | 4, compat=0x82000000, constraint=0xB02300000000, level=120)
    assert hevc.codec_string(hevc.parse_hvcc(odd), "hev1") == "hev1.A4.41.H120.B0.23"
    main10 = make_hvcc(byte1=2, compat=0x20000000, constraint=0, level=150)
    assert hevc.codec_string(hevc.parse_hvcc(main10)) == "hvc1.2.4.L150"
    assert hevc.nal_type(vps) == 32 and hevc.is_irap(b"\x26\x01") and not hevc.is_irap(b"\x02\x01")


@pytest.mark.parametrize(
    "record",
    [
        b"",
        make_hvcc()[:22],
        b"\x00" + make_hvcc()[1:],
        make_hvcc(arrays=[(33, [b"\x42\x01\x01"])])[:-1],  # NAL unit cut short
        make_hvcc(arrays=[(33, [b"\x42\x01\x01"])])[:-4],  # NAL length cut short
        make_hvcc(arrays=[(33, [b"\x42\x01\x01"])])[:-6],  # array header cut short
        make_hvcc(arrays=[(33, [b""])]),  # zero-length NAL
        make_hvcc(arrays=[(39, [b"\x4e"] * 65)]),  # over the NAL unit limit
    ],
)
def test_hvcc_rejects(record: bytes) -> None:
    with pytest.raises(CodecConfigError):
        hevc.parse_hvcc(record)


def test_hevc_sps_rejects() -> None:
    with pytest.raises(CodecConfigError):
        hevc.sps_dimensions(b"\x40\x01\x0c\x01")  # a VPS
    with pytest.raises(CodecConfigError):
        hevc.sps_dimensions(make_hevc_sps(width=640, height=360)[:12])
    with pytest.raises(CodecConfigError):
        hevc.sps_dimensions(make_hevc_sps(width=64, height=64, window=(40, 40, 0, 0)))


# --------------------------------------------------------------------------------- AAC


def asc_bits(*fields: tuple[int, int]) -> bytes:
    w = BitWriter()
    for n, value in fields:
        w.bits(n, value)
    return w.bytes()


ASC_CASES = [
    # (name, ASC bytes, expected AacConfig, codec string)
    ("LC 44.1k stereo", b"\x12\x10", aac.AacConfig(2, 44100, 2, 4, 2, 0), "mp4a.40.2"),
    ("LC 48k stereo", b"\x11\x90", aac.AacConfig(2, 48000, 2, 3, 2, 0), "mp4a.40.2"),
    ("LC 22.05k mono", b"\x13\x88", aac.AacConfig(2, 22050, 1, 7, 2, 0), "mp4a.40.2"),
    ("LC 7350 5.1", b"\x16\x30", aac.AacConfig(2, 7350, 6, 12, 2, 0), "mp4a.40.2"),
    (
        "object type escape (USAC 42)",
        asc_bits((5, 31), (6, 10), (4, 3), (4, 2)),
        aac.AacConfig(42, 48000, 2, 3, 42, 0),
        "mp4a.40.42",
    ),
    (
        "explicit frequency",
        asc_bits((5, 2), (4, 15), (24, 50000), (4, 1)),
        aac.AacConfig(2, 50000, 1, 15, 2, 0),
        "mp4a.40.2",
    ),
    (
        "explicit HE-AAC (SBR)",
        asc_bits((5, 5), (4, 6), (4, 2), (4, 3), (5, 2)),
        aac.AacConfig(5, 24000, 2, 6, 2, 48000),
        "mp4a.40.5",
    ),
    (
        "explicit HE-AACv2 (PS), escaped ext rate",
        asc_bits((5, 29), (4, 6), (4, 1), (4, 15), (24, 44100), (5, 2)),
        aac.AacConfig(29, 24000, 1, 6, 2, 44100),
        "mp4a.40.29",
    ),
]


@pytest.mark.parametrize(("name", "asc", "cfg", "codec"), ASC_CASES, ids=[c[0] for c in ASC_CASES])
def test_parse_asc(name: str, asc: bytes, cfg: aac.AacConfig, codec: str) -> None:
    assert aac.parse_asc(asc) == cfg
    assert aac.codec_string(cfg) == codec


@pytest.mark.parametrize(
    "asc",
    [
        b"",
        b"\x12",
        asc_bits((5, 0), (4, 4), (4, 2)),
        asc_bits((5, 2), (4, 13), (4, 2)),
        asc_bits((5, 2), (4, 15), (24, 0), (4, 2)),
        b"\xf8",
    ],
)
def test_parse_asc_rejects(asc: bytes) -> None:
    with pytest.raises(CodecConfigError):
        aac.parse_asc(asc)


def parse_adts(header: bytes) -> dict[str, int]:
    """Independent bit-field read of an ADTS header (ISO/IEC 14496-3 §1.A.2.2)."""
    v = int.from_bytes(header, "big")

    def field(start: int, n: int) -> int:
        return (v >> (56 - start - n)) & ((1 << n) - 1)

    return {
        "sync": field(0, 12),
        "id": field(12, 1),
        "layer": field(13, 2),
        "protection_absent": field(15, 1),
        "profile": field(16, 2),
        "freq_index": field(18, 4),
        "private": field(22, 1),
        "channels": field(23, 3),
        "flags": field(26, 4),
        "frame_length": field(30, 13),
        "fullness": field(43, 11),
        "blocks": field(54, 2),
    }


def test_adts_header_bits() -> None:
    header = aac.adts_header(aac.parse_asc(b"\x12\x10"), 100)
    assert header == bytes.fromhex("fff150800d7ffc")
    fields = parse_adts(header)
    assert fields == {
        "sync": 0xFFF,
        "id": 0,
        "layer": 0,
        "protection_absent": 1,
        "profile": 1,
        "freq_index": 4,
        "private": 0,
        "channels": 2,
        "flags": 0,
        "frame_length": 107,
        "fullness": 0x7FF,
        "blocks": 0,
    }
    # HE-AAC goes out as its LC core at the core rate (implicit SBR signalling).
    he = parse_adts(aac.adts_header(aac.AacConfig(5, 24000, 2, 6, 2, 48000), 8184))
    assert (he["profile"], he["freq_index"], he["frame_length"]) == (1, 6, 8191)


@pytest.mark.parametrize(
    ("cfg", "length"),
    [
        (aac.AacConfig(2, 44100, 2, 4, 2, 0), 8185),  # frame too long
        (aac.AacConfig(2, 44100, 2, 4, 2, 0), -1),
        (aac.AacConfig(42, 48000, 2, 3, 42, 0), 10),  # USAC has no ADTS profile
        (aac.AacConfig(2, 50000, 1, 15, 2, 0), 10),  # explicit rate
        (aac.AacConfig(2, 48000, 13, 3, 2, 0), 10),  # channel config past 3 bits
    ],
)
def test_adts_header_rejects(cfg: aac.AacConfig, length: int) -> None:
    with pytest.raises(CodecConfigError):
        aac.adts_header(cfg, length)


# ---------------------------------------------------------------- real encoders (PyAV)


def _encode_flv_video(
    codec: str, width: int, height: int, options: dict, pix_fmt: str = "yuv420p"
) -> bytes:
    """Encode two frames with PyAV into an in-memory FLV; return the sequence header's record."""
    av = pytest.importorskip("av", reason="PyAV is needed to produce real parameter sets")
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="flv") as out:
        stream = out.add_stream(codec, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for i in range(2):
            rgb = np.full((height, width, 3), 60 * i, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    for tag_type, body in _flv_tags(buf.getvalue()):
        if tag_type == 9:
            (tag,) = parse_video(body)
            if tag.packet == PacketType.SEQUENCE_START:
                return tag.data
    raise AssertionError("no sequence header in the FLV")


def _flv_tags(data: bytes) -> list[tuple[int, bytes]]:
    assert data[:3] == b"FLV"
    pos = int.from_bytes(data[5:9], "big") + 4
    out = []
    while pos + 11 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        out.append((data[pos], data[pos + 11 : pos + 11 + size]))
        pos += 11 + size + 4
    return out


X264_CASES = [
    # (profile option, pix_fmt, x264-params, size, expected codec string)
    ("baseline", "yuv420p", "level=3.0", (640, 360), "avc1.42c01e"),
    ("baseline", "yuv420p", "level=3.1", (1280, 720), "avc1.42c01f"),
    ("high", "yuv420p", "level=3.0", (640, 360), "avc1.64001e"),
    ("high", "yuv420p", "level=3.1", (1280, 720), "avc1.64001f"),
    ("main", "yuv420p", "level=4.0", (1920, 1080), "avc1.4d4028"),
    ("high", "yuv420p", "level=3.0:interlaced=1", (640, 360), "avc1.64001e"),
    ("high", "yuv420p", "level=3.0:cqm=jvt", (640, 360), "avc1.64001e"),
    ("high", "yuv420p", "level=3.2", (1366, 768), "avc1.640020"),
    ("high444", "yuv444p", "level=3.0", (640, 360), "avc1.f4001e"),
    ("high422", "yuv422p", "level=3.0", (640, 360), "avc1.7a001e"),
]


@pytest.mark.parametrize(("profile", "pix_fmt", "params", "size", "codec"), X264_CASES)
def test_x264_parameter_sets(
    profile: str, pix_fmt: str, params: str, size: tuple[int, int], codec: str
) -> None:
    options = {"profile": profile, "x264-params": params}
    record = _encode_flv_video("libx264", *size, options, pix_fmt)
    cfg = h264.parse_avcc(record)
    assert h264.sps_dimensions(cfg.sps[0]) == size
    assert h264.codec_string(cfg) == codec
    assert cfg.nal_length_size == 4 and len(cfg.pps) == 1
    # FFmpeg's avcC writer and ours agree byte for byte (including the High trailer).
    assert h264.build_avcc(cfg.sps, cfg.pps) == record


X265_CASES = [
    ("yuv420p", "level-idc=3", (640, 360), "hvc1.1.6.L90.90"),
    ("yuv420p", "level-idc=3.1", (1280, 720), "hvc1.1.6.L93.90"),
    ("yuv420p10le", "level-idc=3.1", (1280, 720), "hvc1.2.4.L93.90"),
    ("yuv420p", "level-idc=4:high-tier=0:temporal-layers=3", (1920, 1080), "hvc1.1.6.L120.90"),
    ("yuv444p", "level-idc=3", (642, 362), "hvc1.4.10.L90.9E.8"),
]


@pytest.mark.parametrize(("pix_fmt", "params", "size", "codec"), X265_CASES)
def test_x265_parameter_sets(pix_fmt: str, params: str, size: tuple[int, int], codec: str) -> None:
    options = {"x265-params": "log-level=error:" + params}
    cfg = hevc.parse_hvcc(_encode_flv_video("libx265", *size, options, pix_fmt))
    assert hevc.sps_dimensions(cfg.sps[0]) == size
    assert hevc.codec_string(cfg) == codec
    assert len(cfg.vps) == len(cfg.sps) == len(cfg.pps) == 1
    info = hevc.parse_sps(cfg.sps[0])  # the SPS's profile_tier_level agrees with the record
    assert (info.profile_idc, info.tier, info.level_idc) == (
        cfg.profile_idc,
        cfg.tier,
        cfg.level_idc,
    )
    assert (info.compat_flags, info.constraint_flags) == (cfg.compat_flags, cfg.constraint_flags)


@pytest.mark.parametrize(
    ("rate", "layout", "channels"), [(48000, "stereo", 2), (44100, "mono", 1), (22050, "5.1", 6)]
)
def test_ffmpeg_aac_config_and_adts(rate: int, layout: str, channels: int) -> None:
    """FFmpeg's AAC encoder's ASC parses to its settings, and our ADTS headers match the
    ones FFmpeg's ADTS muxer writes for the same frames. (For 5.1 FFmpeg's FLV muxer also
    sends an E-RTMP mp4a MultichannelConfig tag, which is skipped here.)"""
    av = pytest.importorskip("av", reason="PyAV is needed to produce real AAC")
    import numpy as np

    flv_buf, adts_buf = io.BytesIO(), io.BytesIO()
    with (
        av.open(flv_buf, "w", format="flv") as flv_out,
        av.open(adts_buf, "w", format="adts") as adts_out,
    ):
        stream = flv_out.add_stream("aac", rate=rate, layout=layout)
        adts_stream = adts_out.add_stream("aac", rate=rate, layout=layout)
        packets = []
        for i in range(6):
            samples = np.zeros((channels, 1024), dtype=np.float32)
            samples[:, ::7] = 0.1 * (i + 1)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, i * 1024, Fraction(1, rate)
            packets += stream.encode(frame)
        packets += stream.encode(None)
        for packet in packets:
            raw = bytes(packet)
            flv_out.mux(packet)
            adts_packet = av.Packet(raw)
            adts_packet.stream = adts_stream
            adts_packet.pts = adts_packet.dts = packet.pts
            adts_packet.time_base = packet.time_base
            adts_out.mux(adts_packet)
    tags = [
        t for kind, body in _flv_tags(flv_buf.getvalue()) if kind == 8 for t in parse_audio(body)
    ]
    assert tags[0].packet == PacketType.SEQUENCE_START
    cfg = aac.parse_asc(tags[0].data)
    assert (cfg.object_type, cfg.sample_rate, cfg.channels) == (2, rate, channels)
    frames = [t.data for t in tags if t.packet == PacketType.CODED_FRAMES]
    assert len(frames) >= 6
    stream_bytes = adts_buf.getvalue()
    pos = 0
    for raw in frames:
        header = stream_bytes[pos : pos + 7]
        assert aac.adts_header(cfg, len(raw)) == header
        assert stream_bytes[pos + 7 : pos + 7 + len(raw)] == raw
        pos += 7 + len(raw)
    assert pos == len(stream_bytes)


# ---------------------------------------------------------------------------- fuzzing


@given(st.binary(max_size=200))
def test_parsers_raise_only_codec_errors(data: bytes) -> None:
    for parse in (
        h264.parse_avcc,
        aac.parse_asc,
        hevc.parse_hvcc,
        h264.sps_dimensions,
        hevc.sps_dimensions,
        h264.split_nalus,
        lambda d: h264.is_idr(d, 2),
    ):
        try:
            parse(data)
        except CodecConfigError:
            pass


@given(
    st.binary(max_size=80),
    st.sampled_from([b"\x67\x42", b"\x67\x64", b"\x67\xf4", b"\x42\x01\x01\x01"]),
)
def test_sps_parsers_deep_fuzz(tail: bytes, head: bytes) -> None:
    """Plausible SPS headers so the fuzzer gets past the first checks."""
    for parse in (h264.sps_dimensions, hevc.sps_dimensions):
        try:
            width, height = parse(head + tail)
        except CodecConfigError:
            continue
        assert width > 0 and height > 0


@given(
    st.lists(st.binary(min_size=2, max_size=40), min_size=1, max_size=4),
    st.lists(st.binary(min_size=1, max_size=20), max_size=3),
)
def test_avcc_round_trip_fuzz(sps_tails: list[bytes], pps_list: list[bytes]) -> None:
    """Whatever build_avcc accepts, parse_avcc gives back."""
    sps_list = [b"\x67\x42" + tail for tail in sps_tails]
    record = h264.build_avcc(sps_list, pps_list)
    cfg = h264.parse_avcc(record)
    assert (cfg.sps, cfg.pps) == (tuple(sps_list), tuple(pps_list))
    assert cfg.profile == 0x42


@given(
    st.builds(
        aac.AacConfig,
        object_type=st.integers(0, 50),
        sample_rate=st.integers(0, 96000),
        channels=st.integers(0, 15),
        freq_index=st.integers(0, 15),
        core_object_type=st.integers(0, 50),
        ext_sample_rate=st.integers(0, 96000),
    ),
    st.integers(-10, 9000),
)
def test_adts_header_fuzz(cfg: aac.AacConfig, length: int) -> None:
    """adts_header either refuses with CodecConfigError or writes what it was given."""
    try:
        header = aac.adts_header(cfg, length)
    except CodecConfigError:
        return
    fields = parse_adts(header)
    assert fields["frame_length"] == length + 7
    assert (fields["freq_index"], fields["channels"]) == (cfg.freq_index, cfg.channels)
    assert fields["profile"] + 1 == (cfg.core_object_type or cfg.object_type)
