"""AAC helpers: AudioSpecificConfig parsing, ADTS headers, codec strings.

Facts from ISO/IEC 14496-3 §1.6.2.1 (AudioSpecificConfig, including the explicit SBR/PS
signalling) and §1.A.2.2 (adts_fixed_header / adts_variable_header), as summarised at
https://wiki.multimedia.cx/index.php?title=MPEG-4_Audio and .../ADTS.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.media.errors import CodecConfigError
from bridge.media.h264 import BitReader

SAMPLE_RATES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)
ESCAPE_FREQ_INDEX = 15

AOT_LC = 2
AOT_SBR = 5
AOT_PS = 29
AOT_ER_BSAC = 22

ADTS_HEADER_SIZE = 7
_ADTS_MAX_FRAME = (1 << 13) - 1


@dataclass(frozen=True)
class AacConfig:
    """What an AudioSpecificConfig says.

    ``object_type`` is the signalled audioObjectType (5 or 29 for explicitly signalled
    HE-AAC v1/v2, which is what the ``mp4a.40.N`` codec string wants). ``sample_rate``
    and ``freq_index`` are the core AAC sampling rate; ``freq_index`` is 15 when the rate
    was written explicitly. For explicit SBR/PS, ``core_object_type`` is the underlying
    object type (usually 2) and ``ext_sample_rate`` the SBR output rate; otherwise they are
    ``object_type`` and 0. ``channels`` is the channelConfiguration (0: defined by a PCE).
    """

    object_type: int
    sample_rate: int
    channels: int
    freq_index: int
    core_object_type: int = 0
    ext_sample_rate: int = 0


def parse_asc(asc: bytes) -> AacConfig:
    """Parse the leading fields of an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).

    Handles the audioObjectType escape (31 -> 32 + 6 bits), the samplingFrequencyIndex
    escape (15 -> explicit 24-bit rate) and explicit SBR/PS signalling. The
    GASpecificConfig that follows is not needed for our purposes and is not read.
    """
    r = BitReader(asc[:64])  # every field we read lies in the first few bytes
    object_type = _object_type(r)
    freq_index, sample_rate = _sampling_frequency(r)
    channels = r.bits(4)
    core_object_type, ext_sample_rate = object_type, 0
    if object_type in (AOT_SBR, AOT_PS):
        _, ext_sample_rate = _sampling_frequency(r)
        core_object_type = _object_type(r)
        if core_object_type == AOT_ER_BSAC:
            r.skip(4)  # extensionChannelConfiguration
    if object_type == 0:
        raise CodecConfigError("audioObjectType 0 is null")
    return AacConfig(
        object_type,
        sample_rate,
        channels,
        freq_index,
        core_object_type,
        ext_sample_rate,
    )


def _object_type(r: BitReader) -> int:
    value = r.bits(5)
    if value == 31:
        value = 32 + r.bits(6)
    return value


def _sampling_frequency(r: BitReader) -> tuple[int, int]:
    index = r.bits(4)
    if index == ESCAPE_FREQ_INDEX:
        rate = r.bits(24)
        if rate == 0:
            raise CodecConfigError("explicit sampling frequency is 0")
        return index, rate
    if index >= len(SAMPLE_RATES):
        raise CodecConfigError(f"reserved samplingFrequencyIndex {index}")
    return index, SAMPLE_RATES[index]


def adts_header(cfg: AacConfig, frame_length: int) -> bytes:
    """The 7-byte ADTS header (no CRC) for one raw AAC frame of ``frame_length`` bytes.

    ``frame_length`` is the length of the raw frame that follows; the header's own 7 bytes
    are added here. ADTS carries the core object type (HE-AAC goes as LC with implicit
    SBR), a 4-bit frequency index and a 3-bit channel configuration, so configs outside
    that range raise :class:`CodecConfigError`.
    """
    object_type = cfg.core_object_type or cfg.object_type
    profile = object_type - 1
    if not 0 <= profile <= 3:
        raise CodecConfigError(f"object type {object_type} cannot be carried in ADTS")
    if cfg.freq_index >= len(SAMPLE_RATES):
        raise CodecConfigError("ADTS needs a table sampling frequency index")
    if not 0 <= cfg.channels <= 7:
        raise CodecConfigError(f"channel configuration {cfg.channels} does not fit ADTS")
    total = frame_length + ADTS_HEADER_SIZE
    if frame_length < 0 or total > _ADTS_MAX_FRAME:
        raise CodecConfigError(f"AAC frame of {frame_length} bytes does not fit ADTS")
    bits = 0xFFF  # syncword
    bits = (bits << 1) | 0  # ID: MPEG-4
    bits = (bits << 2) | 0  # layer
    bits = (bits << 1) | 1  # protection_absent: no CRC
    bits = (bits << 2) | profile
    bits = (bits << 4) | cfg.freq_index
    bits = (bits << 1) | 0  # private_bit
    bits = (bits << 3) | cfg.channels
    bits = (bits << 4) | 0  # original_copy, home, copyright_id_bit, copyright_id_start
    bits = (bits << 13) | total
    bits = (bits << 11) | 0x7FF  # adts_buffer_fullness: VBR
    bits = (bits << 2) | 0  # number_of_raw_data_blocks_in_frame - 1
    return bits.to_bytes(ADTS_HEADER_SIZE, "big")


def codec_string(cfg: AacConfig) -> str:
    """RFC 6381 codec string, ``mp4a.40.<audioObjectType>``."""
    return f"mp4a.40.{cfg.object_type}"
