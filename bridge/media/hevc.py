"""H.265/HEVC helpers: HEVCDecoderConfigurationRecord, SPS dimensions, codec strings.

Facts from ISO/IEC 14496-15 §8.3.3.1 (HEVCDecoderConfigurationRecord) and Annex E.3
(``hvc1``/``hev1`` codec parameter strings), and ITU-T H.265 §7.3.2.2
(seq_parameter_set_rbsp), §7.3.3 (profile_tier_level) and §7.4.3.2.1 (conformance
window). NAL units keep their 2-byte header everywhere. Errors raise
:class:`CodecConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.media.errors import CodecConfigError
from bridge.media.h264 import MAX_PARAMETER_SET, BitReader, unescape_rbsp

NAL_VPS = 32
NAL_SPS = 33
NAL_PPS = 34
NAL_IDR_W_RADL = 19
NAL_IDR_N_LP = 20
NAL_CRA = 21

MAX_PARAMETER_SETS = 64  # across all arrays of one record; real records hold 3-5
_HVCC_HEADER = 23


@dataclass(frozen=True)
class HevcConfig:
    """The general profile/tier/level fields of an hvcC record and its parameter sets.

    ``constraint_flags`` is the 48-bit general_constraint_indicator_flags field as an int
    (first byte most significant). ``vps``/``sps``/``pps`` are whole NAL units.
    """

    profile_space: int
    tier: int
    profile_idc: int
    compat_flags: int
    constraint_flags: int
    level_idc: int
    nal_length_size: int
    vps: tuple[bytes, ...]
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]


def parse_hvcc(record: bytes) -> HevcConfig:
    """Parse an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1).

    Arrays other than VPS/SPS/PPS (SEI and so on) are walked and skipped.
    """
    if len(record) < _HVCC_HEADER:
        raise CodecConfigError("hvcC record truncated")
    if record[0] != 1:
        raise CodecConfigError(f"hvcC configurationVersion {record[0]} != 1")
    b1 = record[1]
    compat = int.from_bytes(record[2:6], "big")
    constraint = int.from_bytes(record[6:12], "big")
    level = record[12]
    nal_length_size = (record[21] & 0x03) + 1
    if nal_length_size == 3:
        raise CodecConfigError("hvcC lengthSizeMinusOne 2 is not allowed")
    sets: dict[int, list[bytes]] = {NAL_VPS: [], NAL_SPS: [], NAL_PPS: []}
    total = 0
    pos = _HVCC_HEADER
    for _ in range(record[22]):  # numOfArrays
        if pos + 3 > len(record):
            raise CodecConfigError("hvcC array header truncated")
        nal_unit_type = record[pos] & 0x3F
        count = int.from_bytes(record[pos + 1 : pos + 3], "big")
        pos += 3
        total += count
        if total > MAX_PARAMETER_SETS:
            raise CodecConfigError(f"hvcC holds over {MAX_PARAMETER_SETS} NAL units")
        for _ in range(count):
            if pos + 2 > len(record):
                raise CodecConfigError("hvcC NAL unit length truncated")
            length = int.from_bytes(record[pos : pos + 2], "big")
            pos += 2
            if length == 0 or pos + length > len(record):
                raise CodecConfigError("hvcC NAL unit length is wrong")
            if nal_unit_type in sets:
                sets[nal_unit_type].append(bytes(record[pos : pos + length]))
            pos += length
    return HevcConfig(
        profile_space=b1 >> 6,
        tier=(b1 >> 5) & 1,
        profile_idc=b1 & 0x1F,
        compat_flags=compat,
        constraint_flags=constraint,
        level_idc=level,
        nal_length_size=nal_length_size,
        vps=tuple(sets[NAL_VPS]),
        sps=tuple(sets[NAL_SPS]),
        pps=tuple(sets[NAL_PPS]),
    )


@dataclass(frozen=True)
class HevcSpsInfo:
    """What :func:`parse_sps` extracts from an HEVC SPS (general PTL + picture size)."""

    profile_space: int
    tier: int
    profile_idc: int
    compat_flags: int
    constraint_flags: int
    level_idc: int
    chroma_format_idc: int
    width: int
    height: int


def parse_sps(sps: bytes) -> HevcSpsInfo:
    """Parse an HEVC SPS NAL unit (2-byte header included) up to its conformance window."""
    if len(sps) < 3 or (sps[0] >> 1) & 0x3F != NAL_SPS:
        raise CodecConfigError("not an HEVC SPS NAL unit")
    if len(sps) > MAX_PARAMETER_SET:
        raise CodecConfigError("SPS too large")
    r = BitReader(unescape_rbsp(sps[2:]))
    r.skip(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = r.bits(3)
    if max_sub_layers_minus1 > 6:
        raise CodecConfigError("sps_max_sub_layers_minus1 > 6")
    r.skip(1)  # sps_temporal_id_nesting_flag
    # profile_tier_level(1, sps_max_sub_layers_minus1), H.265 §7.3.3
    profile_space = r.bits(2)
    tier = r.bits(1)
    profile_idc = r.bits(5)
    compat = r.bits(32)
    constraint = r.bits(48)  # 4 source flags + 43 reserved/constraint bits + 1 bit
    level_idc = r.bits(8)
    sub_profile = []
    sub_level = []
    for _ in range(max_sub_layers_minus1):
        sub_profile.append(r.flag())
        sub_level.append(r.flag())
    if max_sub_layers_minus1 > 0:
        r.skip(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for has_profile, has_level in zip(sub_profile, sub_level, strict=True):
        if has_profile:
            r.skip(88)  # sub_layer profile space .. inbld/reserved bits
        if has_level:
            r.skip(8)  # sub_layer_level_idc
    r.ue()  # sps_seq_parameter_set_id
    chroma_format_idc = r.ue()
    if chroma_format_idc > 3:
        raise CodecConfigError(f"chroma_format_idc {chroma_format_idc} > 3")
    separate_colour_plane = chroma_format_idc == 3 and r.flag()
    width = r.ue()
    height = r.ue()
    if r.flag():  # conformance_window_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        # §7.4.3.2.1 with Table 6-1: offsets are in chroma sample units.
        chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
        sub_w = 2 if chroma_array_type in (1, 2) else 1
        sub_h = 2 if chroma_array_type == 1 else 1
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    if not (0 < width <= 65535 and 0 < height <= 65535):
        raise CodecConfigError(f"SPS picture size {width}x{height} is not plausible")
    return HevcSpsInfo(
        profile_space,
        tier,
        profile_idc,
        compat,
        constraint,
        level_idc,
        chroma_format_idc,
        width,
        height,
    )


def sps_dimensions(sps: bytes) -> tuple[int, int]:
    """Displayed (conformance-window cropped) width and height of an HEVC SPS NAL unit."""
    info = parse_sps(sps)
    return info.width, info.height


def codec_string(cfg: HevcConfig, fourcc: str = "hvc1") -> str:
    """ISO/IEC 14496-15 Annex E codec string, e.g. ``hvc1.1.6.L93.B0``.

    Fields: profile space as '', 'A', 'B', 'C' before the profile_idc in decimal; the 32
    compatibility flags bit-reversed in hex; 'L' or 'H' (tier) with level_idc in decimal;
    then the six constraint bytes in hex, trailing zero bytes omitted.
    """
    space = ("", "A", "B", "C")[cfg.profile_space & 3]
    compat = int(f"{cfg.compat_flags & 0xFFFFFFFF:032b}"[::-1], 2)
    tier = "H" if cfg.tier else "L"
    constraint = (cfg.constraint_flags & ((1 << 48) - 1)).to_bytes(6, "big").rstrip(b"\x00")
    parts = [
        fourcc,
        f"{space}{cfg.profile_idc}",
        f"{compat:X}",
        f"{tier}{cfg.level_idc}",
    ]
    parts += [f"{b:X}" for b in constraint]
    return ".".join(parts)


def nal_type(nal: bytes) -> int:
    """nal_unit_type of an HEVC NAL unit (bits 1-6 of its first byte)."""
    if not nal:
        raise CodecConfigError("empty NAL unit")
    return (nal[0] >> 1) & 0x3F


def is_irap(nal: bytes) -> bool:
    """Whether an HEVC NAL unit is an IRAP picture slice (BLA, IDR or CRA: types 16-23)."""
    return 16 <= nal_type(nal) <= 23
