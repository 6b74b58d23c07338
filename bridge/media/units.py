"""Tracks and media units: what inputs hand to the bus and outputs take from it."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from fractions import Fraction

VIDEO = "video"
AUDIO = "audio"

MILLISECONDS = Fraction(1, 1000)


@dataclass(frozen=True, eq=False)
class Track:
    """One elementary stream.

    ``config`` is the codec configuration record in its MP4/FLV form: the
    AVCDecoderConfigurationRecord for h264, HEVCDecoderConfigurationRecord for hevc,
    AV1CodecConfigurationRecord for av1, VPCodecConfigurationRecord for vp8/vp9, the
    AudioSpecificConfig for aac, the OpusHead for opus; empty when the codec has none.
    Identity matters: a new sequence header makes a new Track.
    """

    kind: str
    codec: str
    config: bytes = b""
    time_base: Fraction = MILLISECONDS
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    # Cached encodings of the configuration for outputs (an RTMP sequence header, ...).
    encodings: dict[Hashable, bytes] = field(default_factory=dict, compare=False, repr=False)


@dataclass(eq=False, slots=True)
class MediaUnit:
    """One access unit (video) or frame (audio).

    ``payload`` is canonical per codec: h264/hevc are length-prefixed NAL units (4-byte
    lengths, as FLV and MP4 carry them); other codecs their plain frame bytes. ``pts`` and
    ``dts`` are integers in ``track.time_base``. Audio units are always keyframes.
    ``encodings`` caches what outputs build from this unit (RTMP chunks for a chunk size,
    Annex-B, ...), so N readers of one protocol cost one conversion.
    """

    track: Track
    dts: int
    pts: int
    keyframe: bool
    payload: bytes
    encodings: dict[Hashable, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.payload)


@dataclass(eq=False, slots=True)
class Metadata:
    """Stream metadata (RTMP onMetaData): what the publisher says about its stream."""

    values: dict[str, object]
    encodings: dict[Hashable, bytes] = field(default_factory=dict)


def starts_gop(unit: MediaUnit, has_video: bool) -> bool:
    """Whether a reader may start at this unit: a video keyframe, or any audio frame of a
    stream without video."""
    if unit.track.kind == VIDEO:
        return unit.keyframe
    return not has_video
