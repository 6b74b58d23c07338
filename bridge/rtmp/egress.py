"""From bus items to RTMP messages for players, serialised once per stream.

Every reader of a stream shares the chunk size (RTMP_CHUNK_SIZE) and in practice the message
stream id (1), so a unit's chunks are built once and cached on the unit under
``("rtmp", chunk_size, stream_id)``; each further reader costs one transport write.
"""

from __future__ import annotations

from bridge.media.units import AUDIO, MILLISECONDS, VIDEO, MediaUnit, Metadata, Track
from bridge.rtmp import amf0, flv
from bridge.rtmp.chunk import chunk_message
from bridge.rtmp.ingest import FLV
from bridge.rtmp.messages import CSID_AUDIO, CSID_DATA, CSID_VIDEO, MessageType

_LEGACY_AUDIO = {
    "aac",
    "mp3",
    "pcm",
    "pcm_le",
    "adpcm",
    "nellymoser",
    "g711a",
    "g711u",
    "speex",
    "mp3_8k",
}


def legacy_audio_flags(track: Track) -> int:
    """The low nibble of a legacy FLV audio header (rate, size, channels) for a track.
    AAC always says 44 kHz 16-bit stereo (0xAF, as FFmpeg and OBS write): the real values
    are in the AudioSpecificConfig."""
    if track.codec == "aac":
        return 0xF
    rate = {5512: 0, 5500: 0, 11025: 1, 22050: 2}.get(track.sample_rate, 3)
    return (rate << 2) | 0x2 | (1 if track.channels >= 2 else 0)


def dts_ms(unit: MediaUnit) -> int:
    time_base = unit.track.time_base
    if time_base == MILLISECONDS:
        return unit.dts
    return int(unit.dts * time_base * 1000)


def flv_body(unit: MediaUnit) -> bytes:
    body = unit.encodings.get(FLV)
    if body is None:
        track = unit.track
        if track.kind == VIDEO:
            cts = unit.pts - unit.dts
            if track.time_base != MILLISECONDS:
                cts = int(cts * track.time_base * 1000)
            body = flv.build_video(
                flv.VideoTag(
                    codec=track.codec,
                    packet=flv.PacketType.CODED_FRAMES,
                    frame_type=1 if unit.keyframe else 2,
                    cts=cts,
                    data=unit.payload,
                    enhanced=track.codec != "h264",
                )
            )
        else:
            body = flv.build_audio(
                flv.AudioTag(
                    codec=track.codec,
                    packet=flv.PacketType.CODED_FRAMES,
                    data=unit.payload,
                    enhanced=track.codec not in _LEGACY_AUDIO,
                    legacy_flags=legacy_audio_flags(track),
                )
            )
        unit.encodings[FLV] = body
    return body


def sequence_header_body(track: Track) -> bytes | None:
    """The FLV sequence header for a track, or None for codecs that have none."""
    body = track.encodings.get(FLV)
    if body is None:
        if not track.config:
            return None
        if track.kind == VIDEO:
            tag = flv.VideoTag(
                codec=track.codec,
                packet=flv.PacketType.SEQUENCE_START,
                frame_type=1,
                cts=0,
                data=track.config,
                enhanced=track.codec != "h264",
            )
            body = flv.build_video(tag)
        else:
            body = flv.build_audio(
                flv.AudioTag(
                    codec=track.codec,
                    packet=flv.PacketType.SEQUENCE_START,
                    data=track.config,
                    enhanced=track.codec not in _LEGACY_AUDIO,
                    legacy_flags=legacy_audio_flags(track),
                )
            )
        track.encodings[FLV] = body
    return body


def unit_chunks(unit: MediaUnit, chunk_size: int, stream_id: int) -> bytes:
    key = ("rtmp", chunk_size, stream_id)
    data = unit.encodings.get(key)
    if data is None:
        video = unit.track.kind == VIDEO
        data = chunk_message(
            CSID_VIDEO if video else CSID_AUDIO,
            MessageType.VIDEO if video else MessageType.AUDIO,
            stream_id,
            dts_ms(unit),
            flv_body(unit),
            chunk_size,
        )
        unit.encodings[key] = data
    return data


def sequence_header_chunks(track: Track, timestamp: int, chunk_size: int, stream_id: int) -> bytes:
    """Built per reader start (the timestamp is the reader's), so not cached."""
    body = sequence_header_body(track)
    if body is None:
        return b""
    video = track.kind == VIDEO
    return chunk_message(
        CSID_VIDEO if video else CSID_AUDIO,
        MessageType.VIDEO if video else MessageType.AUDIO,
        stream_id,
        timestamp,
        body,
        chunk_size,
    )


def metadata_chunks(metadata: Metadata, chunk_size: int, stream_id: int) -> bytes:
    key = ("rtmp", chunk_size, stream_id)
    data = metadata.encodings.get(key)
    if data is None:
        payload = amf0.encode("onMetaData", amf0.EcmaArray(metadata.values))
        data = chunk_message(CSID_DATA, MessageType.DATA_AMF0, stream_id, 0, payload, chunk_size)
        metadata.encodings[key] = data
    return data


KINDS = (VIDEO, AUDIO)
