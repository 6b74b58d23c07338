"""H.264/AVC helpers: AVCDecoderConfigurationRecord, SPS dimensions, NAL unit framing.

Facts from ISO/IEC 14496-15 (§5.3.3.1 AVCDecoderConfigurationRecord) and ITU-T H.264
(§7.3.2.1.1 seq_parameter_set_data, §7.4.2.1.1 frame cropping, §9.1 Exp-Golomb codes).
Pure functions; every malformed input raises :class:`CodecConfigError`.

Also home of :class:`BitReader` and :func:`unescape_rbsp`, which the HEVC and AAC helpers
share (HEVC uses the same emulation prevention and Exp-Golomb codes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bridge.media.errors import CodecConfigError

# Bounds: a parameter set is small (an SPS with every scaling list is well under 1 KiB);
# anything near these limits is garbage, not a stream we want to describe.
MAX_PARAMETER_SET = 65535  # the u16 length field of the record
MAX_PARAMETER_SETS = 32  # 5 bits of numOfSequenceParameterSets already caps SPS at 31
MAX_EXP_GOLOMB_ZEROS = 31

NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

START_CODE = b"\x00\x00\x00\x01"

# Profiles whose SPS carries chroma_format_idc, bit depths and scaling matrices
# (H.264 §7.3.2.1.1 condition list).
_HIGH_SPS_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
# The avcC record ends with chroma/bit-depth/SPS-ext fields for every profile but these
# three (ISO/IEC 14496-15 §5.3.3.1.2, 2017+ editions; older ones listed only 100, 110,
# 122 and 144). FFmpeg writes the trailer for 244 too, so we follow the newer rule.
_AVCC_NO_EXT_PROFILES = frozenset({66, 77, 88})


class BitReader:
    """MSB-first bit reader over a byte string; overruns raise :class:`CodecConfigError`."""

    __slots__ = ("_size", "_value", "pos")

    def __init__(self, data: bytes) -> None:
        # One big int makes arbitrary-width reads a shift and a mask.
        self._value = int.from_bytes(data, "big")
        self._size = len(data) * 8
        self.pos = 0

    @property
    def remaining(self) -> int:
        return self._size - self.pos

    def bits(self, n: int) -> int:
        if n == 0:
            return 0
        if self.pos + n > self._size:
            raise CodecConfigError("bitstream truncated")
        self.pos += n
        return (self._value >> (self._size - self.pos)) & ((1 << n) - 1)

    def flag(self) -> bool:
        return self.bits(1) == 1

    def skip(self, n: int) -> None:
        if self.pos + n > self._size:
            raise CodecConfigError("bitstream truncated")
        self.pos += n

    def ue(self) -> int:
        """Unsigned Exp-Golomb code, ue(v) (H.264 §9.1)."""
        zeros = 0
        while self.bits(1) == 0:
            zeros += 1
            if zeros > MAX_EXP_GOLOMB_ZEROS:
                raise CodecConfigError("Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        """Signed Exp-Golomb code, se(v) (H.264 §9.1.1)."""
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def unescape_rbsp(nal: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00), H.264 §7.4.1 / H.265 §7.4.2.

    ``bytes.replace`` resumes after each match, which is exactly the rule that the zero
    count restarts after an emulation_prevention_three_byte.
    """
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


@dataclass(frozen=True)
class AvcConfig:
    """The fields of an AVCDecoderConfigurationRecord we use.

    ``sps``/``pps`` are whole NAL units (header byte included), as the record carries them.
    """

    profile: int
    compat: int
    level: int
    nal_length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]


@dataclass(frozen=True)
class SpsInfo:
    """What :func:`parse_sps` extracts from an H.264 SPS."""

    profile: int
    compat: int
    level: int
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    width: int
    height: int


def parse_avcc(record: bytes) -> AvcConfig:
    """Parse an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1).

    The trailing High-profile fields (chroma_format, bit depths, SPS extensions) are often
    missing or wrong in the wild, so they are ignored.
    """
    if len(record) < 7:
        raise CodecConfigError("avcC record truncated")
    if record[0] != 1:
        raise CodecConfigError(f"avcC configurationVersion {record[0]} != 1")
    nal_length_size = (record[4] & 0x03) + 1
    if nal_length_size == 3:
        raise CodecConfigError("avcC lengthSizeMinusOne 2 is not allowed")
    pos = 5
    sps, pos = _read_sets(record, pos, record[pos] & 0x1F)
    if pos >= len(record):
        raise CodecConfigError("avcC record truncated before numOfPictureParameterSets")
    count = record[pos]
    if count > MAX_PARAMETER_SETS:
        raise CodecConfigError(f"avcC has {count} PPS (limit {MAX_PARAMETER_SETS})")
    pps, pos = _read_sets(record, pos, count)
    return AvcConfig(record[1], record[2], record[3], nal_length_size, sps, pps)


def _read_sets(record: bytes, pos: int, count: int) -> tuple[tuple[bytes, ...], int]:
    """Read ``count`` u16-length-prefixed NAL units after the count byte at ``pos``."""
    pos += 1
    out = []
    for _ in range(count):
        if pos + 2 > len(record):
            raise CodecConfigError("avcC parameter set length truncated")
        length = int.from_bytes(record[pos : pos + 2], "big")
        pos += 2
        if length == 0 or pos + length > len(record):
            raise CodecConfigError("avcC parameter set length is wrong")
        out.append(bytes(record[pos : pos + length]))
        pos += length
    return tuple(out), pos


def build_avcc(
    sps_list: Sequence[bytes], pps_list: Sequence[bytes], nal_length_size: int = 4
) -> bytes:
    """Build an AVCDecoderConfigurationRecord from whole SPS and PPS NAL units.

    Profile, compatibility and level come from the first SPS (its bytes 1-3). For every
    profile except Baseline, Main and Extended the chroma/bit-depth trailer is written
    from the SPS, with no SPS extensions, as FFmpeg's muxers do.
    """
    if not sps_list:
        raise CodecConfigError("avcC needs at least one SPS")
    if nal_length_size not in (1, 2, 4):
        raise CodecConfigError(f"NAL length size {nal_length_size} not in (1, 2, 4)")
    if len(sps_list) > 31 or len(pps_list) > 255:
        raise CodecConfigError("too many parameter sets for an avcC record")
    first = sps_list[0]
    if len(first) < 4:
        raise CodecConfigError("SPS too short")
    out = bytearray([1, first[1], first[2], first[3], 0xFC | (nal_length_size - 1)])
    out.append(0xE0 | len(sps_list))
    for nal in sps_list:
        out += _length16(nal) + nal
    out.append(len(pps_list))
    for nal in pps_list:
        out += _length16(nal) + nal
    if first[1] not in _AVCC_NO_EXT_PROFILES:
        info = parse_sps(first)
        out.append(0xFC | info.chroma_format_idc)
        out.append(0xF8 | (info.bit_depth_luma - 8))
        out.append(0xF8 | (info.bit_depth_chroma - 8))
        out.append(0)  # numOfSequenceParameterSetExt
    return bytes(out)


def _length16(nal: bytes) -> bytes:
    if not 0 < len(nal) <= MAX_PARAMETER_SET:
        raise CodecConfigError("parameter set size out of range")
    return len(nal).to_bytes(2, "big")


def parse_sps(sps: bytes) -> SpsInfo:
    """Parse an H.264 SPS NAL unit (header byte included) far enough for its picture size.

    Follows seq_parameter_set_data (H.264 §7.3.2.1.1): High-profile chroma/bit-depth and
    scaling lists, both picture-order-count types, frame_mbs_only and frame cropping.
    """
    if not sps or sps[0] & 0x1F != NAL_SPS:
        raise CodecConfigError("not an SPS NAL unit")
    if len(sps) > MAX_PARAMETER_SET:
        raise CodecConfigError("SPS too large")
    r = BitReader(unescape_rbsp(sps[1:]))
    profile = r.bits(8)
    compat = r.bits(8)
    level = r.bits(8)
    r.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = False
    bit_depth_luma = bit_depth_chroma = 8
    if profile in _HIGH_SPS_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc > 3:
            raise CodecConfigError(f"chroma_format_idc {chroma_format_idc} > 3")
        if chroma_format_idc == 3:
            separate_colour_plane = r.flag()
        bit_depth_luma = r.ue() + 8
        bit_depth_chroma = r.ue() + 8
        if bit_depth_luma > 14 or bit_depth_chroma > 14:
            raise CodecConfigError("bit depth out of range")
        r.skip(1)  # qpprime_y_zero_transform_bypass_flag
        if r.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.flag():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.skip(1)  # delta_pic_order_always_zero_flag
        r.se()  # offset_for_non_ref_pic
        r.se()  # offset_for_top_to_bottom_field
        cycle = r.ue()
        if cycle > 255:
            raise CodecConfigError("num_ref_frames_in_pic_order_cnt_cycle > 255")
        for _ in range(cycle):
            r.se()
    elif poc_type != 2:
        raise CodecConfigError(f"pic_order_cnt_type {poc_type} > 2")
    r.ue()  # max_num_ref_frames
    r.skip(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.bits(1)
    if not frame_mbs_only:
        r.skip(1)  # mb_adaptive_frame_field_flag
    r.skip(1)  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if r.flag():  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        # §7.4.2.1.1: crop units depend on ChromaArrayType and field coding.
        chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
        if chroma_array_type == 0:
            unit_x, unit_y = 1, 2 - frame_mbs_only
        else:
            sub_w = 2 if chroma_array_type in (1, 2) else 1
            sub_h = 2 if chroma_array_type == 1 else 1
            unit_x, unit_y = sub_w, sub_h * (2 - frame_mbs_only)
        width -= unit_x * (left + right)
        height -= unit_y * (top + bottom)
    if width <= 0 or height <= 0 or width > 65535 or height > 65535:
        raise CodecConfigError(f"SPS picture size {width}x{height} is not plausible")
    return SpsInfo(
        profile,
        compat,
        level,
        chroma_format_idc,
        bit_depth_luma,
        bit_depth_chroma,
        width,
        height,
    )


def _skip_scaling_list(r: BitReader, size: int) -> None:
    """scaling_list() of H.264 §7.3.2.1.1.1: only the delta_scale codes are on the wire."""
    last = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            delta = r.se()
            if not -128 <= delta <= 127:
                raise CodecConfigError("delta_scale out of range")
            next_scale = (last + delta + 256) % 256
        if next_scale != 0:
            last = next_scale


def sps_dimensions(sps: bytes) -> tuple[int, int]:
    """Displayed (cropped) width and height of an H.264 SPS NAL unit."""
    info = parse_sps(sps)
    return info.width, info.height


def codec_string(cfg: AvcConfig) -> str:
    """RFC 6381 ``avc1.PPCCLL`` (profile, constraint flags, level as hex)."""
    return f"avc1.{cfg.profile:02x}{cfg.compat:02x}{cfg.level:02x}"


def split_nalus(payload: bytes, length_size: int = 4) -> list[bytes]:
    """Split length-prefixed NAL units (AVCC/HVCC framing). Zero-length entries are
    dropped; a length that runs past the payload raises :class:`CodecConfigError`."""
    if length_size not in (1, 2, 3, 4):
        raise CodecConfigError(f"NAL length size {length_size} not in 1..4")
    out = []
    pos, end = 0, len(payload)
    while pos < end:
        if pos + length_size > end:
            raise CodecConfigError("NAL length prefix truncated")
        length = int.from_bytes(payload[pos : pos + length_size], "big")
        pos += length_size
        if length > end - pos:
            raise CodecConfigError(f"NAL length {length} runs past the payload")
        if length:
            out.append(bytes(payload[pos : pos + length]))
        pos += length
    return out


def to_annexb(payload: bytes, length_size: int = 4, prefix: bytes = b"") -> bytes:
    """Turn length-prefixed NAL units into Annex-B (4-byte start codes).

    ``prefix`` is copied verbatim in front, e.g. an AUD and the Annex-B SPS/PPS to put
    before an IDR.
    """
    parts = [prefix]
    for nal in split_nalus(payload, length_size):
        parts.append(START_CODE)
        parts.append(nal)
    return b"".join(parts)


def nal_type(nal: bytes) -> int:
    """nal_unit_type of an H.264 NAL unit (low 5 bits of its first byte)."""
    if not nal:
        raise CodecConfigError("empty NAL unit")
    return nal[0] & 0x1F


def is_idr(payload: bytes, length_size: int = 4) -> bool:
    """Whether a length-prefixed access unit contains an IDR slice."""
    return any(nal_type(nal) == NAL_IDR for nal in split_nalus(payload, length_size))


def split_annexb(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream (3- or 4-byte start codes) into NAL units.

    Zero bytes at the end of a NAL unit are not part of it (the first byte of a 4-byte start
    code, trailing_zero_8bits), so they are stripped; empty NAL units are dropped.
    """
    out = []
    pos = data.find(b"\x00\x00\x01")
    while pos != -1:
        start = pos + 3
        pos = data.find(b"\x00\x00\x01", start)
        end = len(data) if pos == -1 else pos
        nal = data[start:end].rstrip(b"\x00")
        if nal:
            out.append(bytes(nal))
    return out


def to_length_prefixed(nals: Sequence[bytes]) -> bytes:
    """NAL units as 4-byte length-prefixed AVCC framing (the bus's form)."""
    return b"".join(len(nal).to_bytes(4, "big") + nal for nal in nals)
