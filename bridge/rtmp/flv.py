"""FLV audio/video tag bodies: legacy FLV and Enhanced RTMP (v1/v2).

An RTMP audio (8) or video (9) message body is exactly an FLV AUDIODATA/VIDEODATA tag body.
This module turns such a body into :class:`AudioTag`/:class:`VideoTag` values and back.

Sources: Adobe FLV spec v10.1 Annex E (legacy headers); veovera/enhanced-rtmp
``enhanced-rtmp-v2.md`` (ExVideoTagHeader/ExAudioTagHeader, ModEx, Multitrack pseudo-code);
FFmpeg ``flvenc.c`` and OBS ``flv-mux.c`` for the shapes real encoders send (both use
CodedFramesX exactly when the composition offset is 0, which :func:`build_video` copies so
their tags survive parse -> build byte for byte).

Parsing is strict: anything truncated, reserved or unknown raises :class:`FlvError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from bridge.rtmp.errors import FlvError

MAX_TRACKS = 16  # tracks one multitrack message may carry before we call it garbage
MAX_MODEX = 8  # chained ModEx blocks in one header
MAX_NANO_OFFSET = 999_999  # TimestampOffsetNano is below one millisecond by definition


class PacketType(IntEnum):
    """Our normalised packet kinds (not wire values: the wire numbers differ per header)."""

    SEQUENCE_START = 0
    CODED_FRAMES = 1  # CodedFrames and CodedFramesX; legacy AVC NALU / AAC raw
    SEQUENCE_END = 2
    METADATA = 3  # video: AMF-encoded name/value pairs (colorInfo)
    COMMAND = 4  # video frame type 5: data is the one command byte
    MPEG2TS_SEQUENCE_START = 5  # video av01: AV1 video descriptor
    MULTICHANNEL_CONFIG = 6  # audio: channel order, count, mapping


# Legacy FLV ids.
_LEGACY_VIDEO = {
    2: "h263",
    3: "screen",
    4: "vp6",
    5: "vp6a",
    6: "screen2",
    7: "h264",
    12: "hevc",
}
_LEGACY_VIDEO_IDS = {name: cid for cid, name in _LEGACY_VIDEO.items() if name != "hevc"}
_LEGACY_AUDIO = {
    0: "pcm",
    1: "adpcm",
    2: "mp3",
    3: "pcm_le",
    4: "nellymoser_16k",
    5: "nellymoser_8k",
    6: "nellymoser",
    7: "g711a",
    8: "g711u",
    10: "aac",
    11: "speex",
    14: "mp3_8k",
    15: "device",
}
_LEGACY_AUDIO_IDS = {name: fmt for fmt, name in _LEGACY_AUDIO.items()}
_AUDIO_EX_HEADER = 9
_AAC = 10
_AVC_PACKETS = {
    0: PacketType.SEQUENCE_START,
    1: PacketType.CODED_FRAMES,
    2: PacketType.SEQUENCE_END,
}
_AVC_WIRE = {kind: wire for wire, kind in _AVC_PACKETS.items()}
_FRAME_COMMAND = 5

# Enhanced RTMP FourCCs (case matters: "Opus", "fLaC").
_VIDEO_FOURCC = {
    b"avc1": "h264",
    b"hvc1": "hevc",
    b"av01": "av1",
    b"vp09": "vp9",
    b"vp08": "vp8",
    b"vvc1": "vvc",
}
_VIDEO_FOURCC_OF = {codec: cc for cc, codec in _VIDEO_FOURCC.items()}
_AUDIO_FOURCC = {
    b"mp4a": "aac",
    b".mp3": "mp3",
    b"Opus": "opus",
    b"fLaC": "flac",
    b"ac-3": "ac3",
    b"ec-3": "eac3",
}
_AUDIO_FOURCC_OF = {codec: cc for cc, codec in _AUDIO_FOURCC.items()}
_CTS_CODECS = frozenset({"h264", "hevc", "vvc"})  # CodedFrames carries SI24 only for these

# Enhanced wire packet types.
(
    _V_SEQ_START,
    _V_CODED,
    _V_SEQ_END,
    _V_CODED_X,
    _V_METADATA,
    _V_MPEG2TS,
    _V_MULTITRACK,
    _MODEX,
) = range(8)
_A_SEQ_START, _A_CODED, _A_SEQ_END, _A_MULTICHANNEL, _A_MULTITRACK = 0, 1, 2, 4, 5
_VIDEO_KIND = {
    _V_SEQ_START: PacketType.SEQUENCE_START,
    _V_CODED: PacketType.CODED_FRAMES,
    _V_SEQ_END: PacketType.SEQUENCE_END,
    _V_CODED_X: PacketType.CODED_FRAMES,
    _V_METADATA: PacketType.METADATA,
    _V_MPEG2TS: PacketType.MPEG2TS_SEQUENCE_START,
}
_AUDIO_KIND = {
    _A_SEQ_START: PacketType.SEQUENCE_START,
    _A_CODED: PacketType.CODED_FRAMES,
    _A_SEQ_END: PacketType.SEQUENCE_END,
    _A_MULTICHANNEL: PacketType.MULTICHANNEL_CONFIG,
}
_AUDIO_WIRE = {kind: wire for wire, kind in _AUDIO_KIND.items()}

_ONE_TRACK, _MANY_TRACKS, _MANY_TRACKS_MANY_CODECS = 0, 1, 2
_MODEX_NANO = 0  # ModExType TimestampOffsetNano


@dataclass(frozen=True, slots=True)
class VideoTag:
    """One video tag body (one track of it, for multitrack messages).

    ``data`` is the configuration record (SEQUENCE_START), the frame (length-prefixed NAL
    units for h264/hevc/vvc, OBUs for av1), raw AMF bytes (METADATA), the command byte
    (COMMAND; ``codec`` is "" for enhanced commands, which carry no FourCC) or the AV1
    descriptor (MPEG2TS_SEQUENCE_START). ``cts`` is the signed composition offset in ms.
    """

    codec: str
    packet: PacketType
    frame_type: int
    cts: int
    data: bytes
    enhanced: bool
    track_id: int = 0
    nano_offset: int = 0

    @property
    def keyframe(self) -> bool:
        return self.frame_type in (1, 4)


@dataclass(frozen=True, slots=True)
class AudioTag:
    """One audio tag body (one track of it). ``legacy_flags`` keeps the rate/size/type
    nibble of a legacy header byte so the tag can be written back unchanged."""

    codec: str
    packet: PacketType
    data: bytes
    enhanced: bool
    legacy_flags: int = 0
    track_id: int = 0
    nano_offset: int = 0


class _Reader:
    """Bounds-checked cursor over a body; running short raises FlvError."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def take(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise FlvError(f"tag body truncated: need {n} bytes, have {self.end - self.pos}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return bytes(out)

    def u8(self) -> int:
        if self.pos >= self.end:
            raise FlvError("tag body truncated")
        self.pos += 1
        return self.data[self.pos - 1]

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def si24(self) -> int:
        value = self.uint(3)
        return value - (1 << 24) if value & 0x800000 else value

    def rest(self) -> bytes:
        out = self.data[self.pos : self.end]
        self.pos = self.end
        return bytes(out)

    def sub(self, n: int) -> _Reader:
        if self.pos + n > self.end:
            raise FlvError(f"track size {n} runs past the message")
        reader = _Reader(self.data, self.pos, self.pos + n)
        self.pos += n
        return reader

    @property
    def done(self) -> bool:
        return self.pos >= self.end


# ---------------------------------------------------------------------------- parsing


def parse_video(body: bytes) -> list[VideoTag]:
    """Parse a video message body: one tag, or one per track of a multitrack message.

    Bytes after a command frame's command byte are ignored; everything else is consumed.
    """
    r = _Reader(body)
    b0 = r.u8()
    frame_type = (b0 >> 4) & 0x07
    if not b0 & 0x80:
        return [_parse_legacy_video(frame_type, b0 & 0x0F, r)]
    wire, nano = _read_modex(r, b0 & 0x0F)
    if frame_type == _FRAME_COMMAND and wire != _V_METADATA:
        # ERTMP2: a command frame has no FourCC and no body beyond the command byte.
        return [VideoTag("", PacketType.COMMAND, frame_type, 0, r.take(1), True, 0, nano)]
    if wire != _V_MULTITRACK:
        codec = _fourcc(r, _VIDEO_FOURCC, "video")
        return [_video_body(r, codec, wire, frame_type, 0, nano)]
    out = []
    for codec, wire, track_id, track in _tracks(r, _VIDEO_FOURCC, "video", (_V_MULTITRACK, _MODEX)):
        out.append(_video_body(track, codec, wire, frame_type, track_id, nano))
    return out


def _parse_legacy_video(frame_type: int, codec_id: int, r: _Reader) -> VideoTag:
    codec = _LEGACY_VIDEO.get(codec_id)
    if codec is None:
        raise FlvError(f"unknown legacy video CodecID {codec_id}")
    if frame_type == _FRAME_COMMAND:
        # The command byte follows the header byte directly, AVC included, as in the
        # ERTMP2 legacy pseudo-code; FFmpeg's demuxer simply skips such tags.
        return VideoTag(codec, PacketType.COMMAND, frame_type, 0, r.take(1), False)
    if codec in ("h264", "hevc"):  # AVCVIDEOPACKET; CodecID 12 is the unofficial HEVC copy
        kind = _AVC_PACKETS.get(r.u8())
        if kind is None:
            raise FlvError("unknown AVCPacketType")
        cts = r.si24()
        if codec == "hevc" and kind != PacketType.CODED_FRAMES:
            cts = 0  # re-sent as E-RTMP hvc1, where only coded frames carry an offset
        return VideoTag(codec, kind, frame_type, cts, r.rest(), False)
    return VideoTag(codec, PacketType.CODED_FRAMES, frame_type, 0, r.rest(), False)


def _video_body(
    r: _Reader, codec: str, wire: int, frame_type: int, track_id: int, nano: int
) -> VideoTag:
    kind = _VIDEO_KIND.get(wire)
    if kind is None:
        raise FlvError(f"reserved VideoPacketType {wire}")
    cts = r.si24() if wire == _V_CODED and codec in _CTS_CODECS else 0
    return VideoTag(codec, kind, frame_type, cts, r.rest(), True, track_id, nano)


def parse_audio(body: bytes) -> list[AudioTag]:
    """Parse an audio message body. An empty body (the legacy silence signal) gives []."""
    if not body:
        return []
    r = _Reader(body)
    b0 = r.u8()
    fmt = b0 >> 4
    if fmt != _AUDIO_EX_HEADER:
        return [_parse_legacy_audio(fmt, b0 & 0x0F, r)]
    wire, nano = _read_modex(r, b0 & 0x0F)
    if wire != _A_MULTITRACK:
        codec = _fourcc(r, _AUDIO_FOURCC, "audio")
        return [_audio_body(r, codec, wire, 0, nano)]
    out = []
    for codec, wire, track_id, track in _tracks(r, _AUDIO_FOURCC, "audio", (_A_MULTITRACK, _MODEX)):
        out.append(_audio_body(track, codec, wire, track_id, nano))
    return out


def _parse_legacy_audio(fmt: int, flags: int, r: _Reader) -> AudioTag:
    codec = _LEGACY_AUDIO.get(fmt)
    if codec is None:
        raise FlvError(f"reserved legacy SoundFormat {fmt}")
    if fmt != _AAC:
        return AudioTag(codec, PacketType.CODED_FRAMES, r.rest(), False, flags)
    kind = (PacketType.SEQUENCE_START, PacketType.CODED_FRAMES, None)[min(r.u8(), 2)]
    if kind is None:
        raise FlvError("unknown AACPacketType")
    return AudioTag(codec, kind, r.rest(), False, flags)


def _audio_body(r: _Reader, codec: str, wire: int, track_id: int, nano: int) -> AudioTag:
    kind = _AUDIO_KIND.get(wire)
    if kind is None:
        raise FlvError(f"reserved AudioPacketType {wire}")
    return AudioTag(codec, kind, r.rest(), True, 0, track_id, nano)


def _read_modex(r: _Reader, wire: int) -> tuple[int, int]:
    """Consume ModEx blocks while the packet type says ModEx; return the final packet type
    and the TimestampOffsetNano (0 if none). Unknown ModEx types are skipped."""
    nano = 0
    for _ in range(MAX_MODEX + 1):
        if wire != _MODEX:
            return wire, nano
        size = r.u8() + 1
        if size == 256:
            size = r.uint(2) + 1
        data = r.take(size)
        b = r.u8()
        wire = b & 0x0F
        if b >> 4 == _MODEX_NANO:
            if size < 3:
                raise FlvError("TimestampOffsetNano needs 3 bytes")
            nano = int.from_bytes(data[:3], "big")
            if nano > MAX_NANO_OFFSET:
                raise FlvError(f"TimestampOffsetNano {nano} is not below 1 ms")
    raise FlvError(f"more than {MAX_MODEX} ModEx blocks")


def _fourcc(r: _Reader, table: dict[bytes, str], kind: str) -> str:
    cc = r.take(4)
    codec = table.get(cc)
    if codec is None:
        raise FlvError(f"unknown {kind} FourCC {cc!r}")
    return codec


def _tracks(
    r: _Reader, table: dict[bytes, str], kind: str, forbidden: tuple[int, ...]
) -> list[tuple[str, int, int, _Reader]]:
    """Split a Multitrack header and body into (codec, packet type, track id, reader)."""
    b = r.u8()
    mt_type, wire = b >> 4, b & 0x0F
    if wire in forbidden:
        raise FlvError("multitrack packet type cannot be Multitrack or ModEx")
    if mt_type not in (_ONE_TRACK, _MANY_TRACKS, _MANY_TRACKS_MANY_CODECS):
        raise FlvError(f"reserved AvMultitrackType {mt_type}")
    shared = None if mt_type == _MANY_TRACKS_MANY_CODECS else _fourcc(r, table, kind)
    out = []
    while True:
        codec = shared or _fourcc(r, table, kind)
        track_id = r.u8()
        if mt_type == _ONE_TRACK:
            return [(codec, wire, track_id, r.sub(r.end - r.pos))]
        out.append((codec, wire, track_id, r.sub(r.uint(3))))
        if r.done:
            return out
        if len(out) >= MAX_TRACKS:
            raise FlvError(f"more than {MAX_TRACKS} tracks in one message")


# ---------------------------------------------------------------------------- building


def build_video(tag: VideoTag) -> bytes:
    """Serialise a video tag body.

    h264 (and the pre-AVC codecs) use the legacy header when they can: track 0, no nano
    offset, and a packet kind legacy FLV has. Everything else uses E-RTMP: the single-track
    form, or Multitrack/OneTrack when ``track_id`` != 0, with a TimestampOffsetNano ModEx
    block first when ``nano_offset`` != 0. Coded frames of avc/hvc/vvc go as CodedFramesX
    when ``cts`` is 0 and CodedFrames + SI24 otherwise; other codecs use CodedFrames.
    """
    frame_type = tag.frame_type
    if not 0 <= frame_type <= 7:
        raise FlvError(f"video frame type {frame_type} out of range")
    _check_ids(tag.track_id, tag.nano_offset)
    # Frame type 5 means "command" on the wire except before a Metadata packet type.
    if tag.packet == PacketType.METADATA:
        if frame_type == _FRAME_COMMAND and tag.track_id:
            frame_type = 0  # ignored for Metadata, and 5 + Multitrack would read as a command
    elif (frame_type == _FRAME_COMMAND) != (tag.packet == PacketType.COMMAND):
        raise FlvError("frame type 5 is for command tags only")
    legacy_id = _LEGACY_VIDEO_IDS.get(tag.codec)
    plain = tag.track_id == 0 and tag.nano_offset == 0
    if tag.packet == PacketType.COMMAND:
        if len(tag.data) != 1 or tag.track_id:
            raise FlvError("a command tag is one command byte on track 0")
        if legacy_id is not None and plain:
            return bytes([frame_type << 4 | legacy_id]) + tag.data
        # Enhanced commands carry no FourCC; the packet type nibble is unused.
        return _ex_header(0x80 | frame_type << 4, _V_CODED, tag.nano_offset) + tag.data
    if legacy_id is not None and plain:
        if tag.codec == "h264" and tag.packet in _AVC_WIRE:
            head = bytes([frame_type << 4 | legacy_id, _AVC_WIRE[tag.packet]])
            return head + _si24(tag.cts) + tag.data
        if tag.codec != "h264" and tag.packet == PacketType.CODED_FRAMES:
            if tag.cts:
                raise FlvError(f"{tag.codec} frames carry no composition offset")
            return bytes([frame_type << 4 | legacy_id]) + tag.data
    fourcc = _VIDEO_FOURCC_OF.get(tag.codec)
    if fourcc is None:
        raise FlvError(f"video codec {tag.codec!r} has no E-RTMP FourCC")
    prefix = b""
    if tag.packet == PacketType.CODED_FRAMES:
        if tag.codec in _CTS_CODECS:
            wire = _V_CODED if tag.cts else _V_CODED_X
            prefix = _si24(tag.cts) if tag.cts else b""
        elif tag.cts:
            raise FlvError(f"{tag.codec} frames carry no composition offset")
        else:
            wire = _V_CODED
    else:
        wire = {
            PacketType.SEQUENCE_START: _V_SEQ_START,
            PacketType.SEQUENCE_END: _V_SEQ_END,
            PacketType.METADATA: _V_METADATA,
            PacketType.MPEG2TS_SEQUENCE_START: _V_MPEG2TS,
        }.get(tag.packet, -1)
        if wire < 0:
            raise FlvError(f"{tag.packet.name} is not a video packet")
    head = _ex_header(
        0x80 | frame_type << 4,
        _V_MULTITRACK if tag.track_id else wire,
        tag.nano_offset,
    )
    if tag.track_id:
        head += bytes([_ONE_TRACK << 4 | wire]) + fourcc + bytes([tag.track_id])
    else:
        head += fourcc
    return head + prefix + tag.data


def build_audio(tag: AudioTag) -> bytes:
    """Serialise an audio tag body.

    AAC (sequence header / raw frames) and the legacy-only codecs use the legacy header on
    track 0 without a nano offset; AAC gets ``legacy_flags`` or 0xF (0xAF, as FFmpeg and
    OBS write). Opus, FLAC, AC-3, E-AC-3, and anything needing a track id, nano offset or
    an E-RTMP-only packet kind use the E-RTMP header.
    """
    if not 0 <= tag.legacy_flags <= 15:
        raise FlvError(f"legacy flags {tag.legacy_flags} out of range")
    _check_ids(tag.track_id, tag.nano_offset)
    plain = tag.track_id == 0 and tag.nano_offset == 0
    fmt = _LEGACY_AUDIO_IDS.get(tag.codec)
    if plain and fmt == _AAC and tag.packet in (PacketType.SEQUENCE_START, PacketType.CODED_FRAMES):
        aac_type = 0 if tag.packet == PacketType.SEQUENCE_START else 1
        return bytes([_AAC << 4 | (tag.legacy_flags or 0x0F), aac_type]) + tag.data
    if plain and fmt is not None and fmt != _AAC and tag.packet == PacketType.CODED_FRAMES:
        return bytes([fmt << 4 | tag.legacy_flags]) + tag.data
    fourcc = _AUDIO_FOURCC_OF.get(tag.codec)
    if fourcc is None:
        raise FlvError(f"audio codec {tag.codec!r} has no E-RTMP FourCC")
    wire = _AUDIO_WIRE.get(tag.packet)
    if wire is None:
        raise FlvError(f"{tag.packet.name} is not an audio packet")
    head = _ex_header(
        _AUDIO_EX_HEADER << 4, _A_MULTITRACK if tag.track_id else wire, tag.nano_offset
    )
    if tag.track_id:
        head += bytes([_ONE_TRACK << 4 | wire]) + fourcc + bytes([tag.track_id])
    else:
        head += fourcc
    return head + tag.data


def _ex_header(high: int, wire: int, nano: int) -> bytes:
    """First header byte, with a 3-byte TimestampOffsetNano ModEx block when needed."""
    if not nano:
        return bytes([high | wire])
    return bytes([high | _MODEX, 2]) + nano.to_bytes(3, "big") + bytes([_MODEX_NANO << 4 | wire])


def _check_ids(track_id: int, nano: int) -> None:
    if not 0 <= track_id <= 255:
        raise FlvError(f"track id {track_id} out of range")
    if not 0 <= nano <= MAX_NANO_OFFSET:
        raise FlvError(f"nano offset {nano} out of range")


def _si24(value: int) -> bytes:
    if not -(1 << 23) <= value < (1 << 23):
        raise FlvError(f"composition offset {value} does not fit SI24")
    return (value & 0xFFFFFF).to_bytes(3, "big")
