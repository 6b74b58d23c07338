"""HLS media muxing from media units: MPEG-TS or fMP4 pieces, remuxed and never decoded.

``HlsMuxer`` turns the units of one publish into the bytes of HLS parts and segments. What
PyAV can and cannot do shaped it (av 18.1, FFmpeg 8.1, checked by experiment):

- PyAV writes only through ``av_interleaved_write_frame``: with two streams in one
  container the interleaving queue keeps the newest packet back until one of the other
  stream arrives, and PyAV exposes neither ``av_write_frame(NULL)`` (which makes the mp4
  muxer cut a ``frag_custom`` fragment) nor a flush (``mux_one(None)`` is a TypeError). So
  one muxer for both streams could never give exactly the units added before ``cut()``.
- **MPEG-TS**: video goes through one continuous PyAV mpegts muxer of its own (one stream:
  nothing waits; ``flush_packets``: its TS packets reach us as each unit is muxed). It does
  the H.264 work: Annex-B with SPS/PPS before every IDR and an AUD per access unit
  (``h264_mp4toannexb``, because the stream has the avcC as extradata), PES, PCR. Its own
  PAT/PMT/SDT are dropped. AAC is packetised here (ADTS, one PES per frame): FFmpeg's
  muxer holds frames of up to 170 bytes until the next one, which PyAV cannot flush. One
  PAT and PMT for both streams start every segment; continuity counters run on per PID.
- **fMP4**: PyAV's mp4 muxer writes the init segment (``ftyp`` + ``moov`` with ``mvex``,
  ``empty_moov``); the ``moof`` + ``mdat`` fragments are written here (ISO/IEC 14496-12
  §8.8), one per ``cut()``, with the track IDs and timescales read back from that moov.

Output streams are made from the codec configuration without ever opening a codec: a
never-opened context of a scratch container serves as template
(``add_stream_from_template`` marks the copy initialised, so ``start_encoding`` does not
open it), then extradata, picture size and sample rate are set before the header is
written. ``packet.time_base`` is always set and keyframe flags carried (both fail silently
otherwise, see shared/reference/measured.md). AAC timestamps follow an exact frame clock.

Not thread-safe; use one muxer from one thread at a time.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

import av
import av.error

from bridge.media import aac, h264, hevc
from bridge.media.errors import CodecConfigError
from bridge.media.units import AUDIO, VIDEO, MediaUnit, Track

TS_PACKET = 188
TS_CLOCK = 90000
TS_VIDEO_PID = 0x100
TS_AUDIO_PID = 0x101
TS_PMT_PID = 0x1000
_TS_STREAM_TYPE = {"h264": 0x1B, "aac": 0x0F}  # ISO/IEC 13818-1 Table 2-34 (ADTS for AAC)

# Between two cuts a piece is a part (0.2-2 s); this only guards against a caller that never
# cuts. Past it, units are dropped and counted.
MAX_PENDING_BYTES = 64 * 1024 * 1024
AAC_FRAME_SAMPLES = 1024
_INT32 = (-(1 << 31), (1 << 31) - 1)

_PID_HIGH = bytes(b & 0x1F for b in range(256))  # the PID bits of a TS header's byte 1
_TS_OPTIONS = {
    "flush_packets": "1",  # hand every packet's bytes to us when it is muxed
    "avoid_negative_ts": "disabled",  # keep PyAV's timeline the one we give audio
}
_MP4_OPTIONS = {"movflags": "frag_custom+empty_moov+default_base_moof+skip_trailer"}


class UnsupportedTrack(ValueError):
    """The tracks cannot be muxed into the requested HLS format."""


# ------------------------------------------------------------------------------ tracks


@dataclass(frozen=True)
class _Params:
    """What an output stream needs, from a track's codec configuration."""

    track: Track
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    asc: aac.AacConfig | None = None


def _params(track: Track, fmt: str) -> _Params:
    if track.kind == VIDEO and track.codec in ("h264", "hevc"):
        if track.codec == "hevc" and fmt == "mpegts":
            raise UnsupportedTrack("hevc can only be muxed into fmp4 (HLS_FORMAT=fmp4)")
        try:
            if track.codec == "h264":
                sps = h264.parse_avcc(track.config).sps
                size = h264.sps_dimensions(sps[0]) if sps else (track.width, track.height)
            else:
                hsps = hevc.parse_hvcc(track.config).sps
                size = hevc.sps_dimensions(hsps[0]) if hsps else (track.width, track.height)
        except CodecConfigError as exc:
            raise UnsupportedTrack(f"{track.codec} track has no usable config: {exc}") from exc
        if not size[0] or not size[1]:
            raise UnsupportedTrack(f"{track.codec} track has no SPS and no picture size")
        return _Params(track, width=size[0], height=size[1])
    if track.kind == AUDIO and track.codec == "aac":
        try:
            cfg = aac.parse_asc(track.config)
            if fmt == "mpegts":
                aac.adts_header(cfg, 0)  # MPEG-TS carries AAC as ADTS
        except CodecConfigError as exc:
            raise UnsupportedTrack(f"aac track has no usable config: {exc}") from exc
        # channelConfiguration 7 is 7.1; 0 means a PCE says, which we do not read.
        channels = {7: 8}.get(cfg.channels, cfg.channels) or track.channels
        channels = channels if 0 < channels <= 24 else 2
        return _Params(track, sample_rate=cfg.sample_rate, channels=channels, asc=cfg)
    raise UnsupportedTrack(
        f"{track.kind} codec {track.codec!r} is not supported in HLS "
        "(video: h264, or hevc in fmp4; audio: aac)"
    )


def _add_stream(
    out: av.container.OutputContainer,
    scratch: av.container.OutputContainer,
    p: _Params,
    time_base: Fraction,
) -> av.stream.Stream:
    """An output stream configured from ``p`` whose codec context is never opened."""
    template = scratch.add_stream(p.track.codec)
    stream = out.add_stream_from_template(template)
    ctx = stream.codec_context
    ctx.extradata = p.track.config
    if isinstance(ctx, av.VideoCodecContext):
        ctx.width, ctx.height = p.width, p.height
        if p.track.codec == "hevc":
            ctx.codec_tag = "hvc1"  # Apple plays HEVC in HLS only as hvc1
    elif isinstance(ctx, av.AudioCodecContext):
        ctx.sample_rate = p.sample_rate
        ctx.layout = f"{p.channels}c"  # FFmpeg's default layout for that many channels
    stream.time_base = time_base
    return stream


class _Sink:
    """The write-only file object a container writes into; no seek, so muxers never go back."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


class _Clock:
    """Per-track timestamps in output ticks: DTS strictly increasing, PTS never before DTS.

    For AAC (``sample_rate`` set) DTS follows an exact frame clock (1024 samples a frame),
    re-anchored on the input only when it drifts by more than half a frame, so the
    millisecond jitter of RTMP timestamps does not become gaps and overlaps. Integer
    arithmetic throughout: this runs for every unit.
    """

    __slots__ = ("_den", "_expected", "_fine", "_frame", "_num", "last_dts", "rate", "sample_rate")

    def __init__(self, rate: int, sample_rate: int = 0) -> None:
        self.rate = rate
        self.sample_rate = sample_rate
        self.last_dts: int | None = None
        self._num = self._den = self._fine = self._frame = 0
        self._expected: int | None = None

    def _setup(self, time_base: Fraction) -> None:
        self._num, self._den = time_base.numerator * self.rate, time_base.denominator
        # Audio positions are kept in 1/(den * sample_rate) ticks, where a frame is whole.
        self._fine = self._den * self.sample_rate
        self._frame = AAC_FRAME_SAMPLES * self.rate * self._den

    def ticks(self, unit: MediaUnit) -> tuple[int, int]:
        if not self._num:
            self._setup(unit.track.time_base)
        num, den = self._num, self._den
        offset = ((unit.pts - unit.dts) * num * 2 + den) // (2 * den)
        if self.sample_rate:
            exact = unit.dts * num * self.sample_rate
            expected = self._expected
            if expected is not None and 2 * abs(exact - expected) <= self._frame:
                exact = expected
            self._expected = exact + self._frame
            dts = (2 * exact + self._fine) // (2 * self._fine)
        else:
            dts = (2 * unit.dts * num + den) // (2 * den)
        pts = dts + offset
        if dts < 0:  # the bus starts publishes at 0; anything earlier is pinned there
            dts = 0
        last = self.last_dts
        if last is not None and dts <= last:
            pts += last + 1 - dts
            dts = last + 1
        self.last_dts = dts
        return dts, max(pts, dts)


def _clock(p: _Params, rate: int) -> _Clock:
    return _Clock(rate, p.sample_rate if p.track.kind == AUDIO else 0)


def _validate(tracks: list[Track], fmt: str) -> list[_Params]:
    if fmt not in ("mpegts", "fmp4"):
        raise ValueError(f"unknown HLS format {fmt!r}")
    if not tracks:
        raise UnsupportedTrack("no tracks to mux")
    kinds = [t.kind for t in tracks]
    if len(tracks) > 2 or len(set(kinds)) != len(kinds):
        raise UnsupportedTrack(f"at most one video and one audio track, got {kinds}")
    # Video first: it gets the first PID / track ID and carries the PCR.
    return [_params(t, fmt) for t in sorted(tracks, key=lambda t: t.kind != VIDEO)]


# ------------------------------------------------------------------------------ muxer


class HlsMuxer:
    """Remuxes the units of one publish into HLS pieces (parts or whole segments).

    ``add()`` queues a unit; ``cut()`` returns the bytes of every unit added since the
    previous cut as one self-contained piece, so a segment is the concatenation of its
    pieces. MPEG-TS pieces are 188-byte aligned, with continuity counters continuous across
    all pieces, and begin with PAT and PMT when ``segment_start`` is set. fMP4 pieces are one
    ``moof`` + ``mdat`` each, after the ``init`` segment. Units with malformed payloads that
    the muxer refuses are dropped and counted in ``dropped``; nothing a publisher sends
    raises from ``add()``.
    """

    def __init__(self, tracks: list[Track], fmt: Literal["mpegts", "fmp4"]) -> None:
        params = _validate(tracks, fmt)
        self.fmt = fmt
        self.tracks = [p.track for p in params]
        self.dropped = 0
        self._closed = False
        self._writer: _TsWriter | _Fmp4Writer = (
            _TsWriter(params) if fmt == "mpegts" else _Fmp4Writer(params)
        )
        self.init: bytes | None = self._writer.init

    def add(self, unit: MediaUnit) -> None:
        """Queue one unit; its track must be one of ``tracks`` (the same object)."""
        if self._closed:
            raise ValueError("muxer is closed")
        if not any(unit.track is t for t in self.tracks):
            raise ValueError(f"unit of a track this muxer was not made for: {unit.track!r}")
        if not unit.payload or self._writer.pending_bytes > MAX_PENDING_BYTES:
            self.dropped += 1
            return
        if not self._writer.add(unit):
            self.dropped += 1

    def cut(self, *, segment_start: bool) -> bytes:
        """The bytes of every unit added since the previous cut (empty if none)."""
        if self._closed:
            raise ValueError("muxer is closed")
        return self._writer.cut(segment_start)

    def close(self) -> bytes:
        """Flush what is left (a last piece, not a segment start) and release the muxer."""
        if self._closed:
            return b""
        self._closed = True
        return self._writer.close()


# ------------------------------------------------------------------------------ MPEG-TS


def _crc32_mpeg(data: bytes) -> int:
    """CRC-32/MPEG-2 of PSI sections (ISO/IEC 13818-1 Annex B): poly 0x04C11DB7, MSB first."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _section(table_id: int, id_field: int, body: bytes) -> bytes:
    """A long-form PSI section, version 0, current, section 0 of 0 (ISO/IEC 13818-1 §2.4.4)."""
    length = 5 + len(body) + 4
    head = struct.pack(">BHHBBB", table_id, 0xB000 | length, id_field, 0xC1, 0, 0)
    data = head + body
    return data + _crc32_mpeg(data).to_bytes(4, "big")


def _pat() -> bytes:
    return _section(0x00, 1, struct.pack(">HH", 1, 0xE000 | TS_PMT_PID))


def _pmt(streams: list[tuple[int, int]], pcr_pid: int) -> bytes:
    body = struct.pack(">HH", 0xE000 | pcr_pid, 0xF000)
    for stream_type, pid in streams:
        body += struct.pack(">BHH", stream_type, 0xE000 | pid, 0xF000)
    return _section(0x02, 1, body)


def _pes_time(prefix: int, ticks: int) -> bytes:
    """A 33-bit PTS/DTS field with its 4-bit prefix and marker bits (13818-1 §2.4.3.7)."""
    t = ticks & 0x1FFFFFFFF
    return bytes(
        (prefix << 4 | (t >> 29) & 0x0E | 1, t >> 22 & 0xFF, (t >> 14) & 0xFE | 1,
         t >> 7 & 0xFF, (t << 1) & 0xFE | 1)
    )  # fmt: skip


def _ts_packets(pid: int, cc: int, data: bytes, pcr: int | None) -> tuple[bytes, int]:
    """One PES in TS packets: random access indicator (and PCR, on the PCR PID) on the first
    packet, adaptation-field stuffing in the last (13818-1 §2.4.3.4). Returns the packets and
    the next continuity counter."""
    out = []
    pos, first = 0, True
    while pos < len(data):
        flags = b""
        if first:  # every audio frame is a random access point, as FFmpeg marks them
            flags = b"\x40"
            if pcr is not None:  # 33-bit base, 6 reserved bits, 9-bit extension
                base, ext = pcr // 300 & 0x1FFFFFFFF, pcr % 300
                flags = b"\x50" + (base << 15 | 0x7E00 | ext).to_bytes(6, "big")
        room = TS_PACKET - 4 - (1 + len(flags) if flags else 0)
        chunk = data[pos : pos + room]
        pos += len(chunk)
        stuffing = room - len(chunk)
        if flags or stuffing:
            size = (1 + len(flags) if flags else 0) + stuffing  # whole adaptation field
            body = (flags or b"\x00") + b"\xff" * (size - 1 - len(flags or b"\x00"))
            adaptation = bytes((size - 1,)) + (body if size > 1 else b"")
        else:
            adaptation = b""
        head = (
            0x47,
            (0x40 if first else 0) | pid >> 8,
            pid & 0xFF,
            (0x30 if adaptation else 0x10) | cc,
        )
        out.append(bytes(head) + adaptation + chunk)
        cc, first = (cc + 1) & 0x0F, False
    return b"".join(out), cc


class _TsAudio:
    """AAC as ADTS in one PES per frame, packetised here.

    FFmpeg's mpegts muxer gathers audio frames of up to 170 bytes (its smallest
    ``pes_payload_size``, rounded up to one TS packet) and writes them only when the next
    frame comes, and PyAV cannot flush it: low-bitrate or silent AAC would straddle cuts.
    """

    def __init__(self, p: _Params, pid: int, pcr: bool) -> None:
        assert p.asc is not None
        self.asc, self.pid, self.pcr, self.cc = p.asc, pid, pcr, 0
        self.clock = _clock(p, TS_CLOCK)

    def mux(self, unit: MediaUnit) -> bytes | None:
        try:
            adts = aac.adts_header(self.asc, len(unit.payload))
        except CodecConfigError:
            return None  # a frame too large for ADTS
        _, pts = self.clock.ticks(unit)
        length = 3 + 5 + len(adts) + len(unit.payload)  # after PES_packet_length
        header = b"\x00\x00\x01\xc0" + length.to_bytes(2, "big") + b"\x80\x80\x05"
        pes = header + _pes_time(0b0010, pts) + adts + unit.payload
        data, self.cc = _ts_packets(self.pid, self.cc, pes, pts * 300 if self.pcr else None)
        return data

    def close(self) -> bytes:
        return b""


class _TsVideo:
    """A continuous one-stream PyAV mpegts muxer whose elementary-stream packets we keep.

    It writes each packet at once (one PES per access unit; a one-stream container never
    waits in the interleaving queue; ``flush_packets``), and does the H.264 work: Annex-B
    with SPS/PPS before every IDR and an AUD per access unit (``h264_mp4toannexb``, because
    the stream has the avcC as extradata), PES packetisation, PCR.
    """

    def __init__(self, p: _Params, pid: int, scratch: av.container.OutputContainer) -> None:
        self.pid = pid
        self.sink = _Sink()
        options = {**_TS_OPTIONS, "mpegts_start_pid": str(pid)}
        self.container = av.open(self.sink, "w", format="mpegts", options=options)
        self.stream = _add_stream(self.container, scratch, p, Fraction(1, TS_CLOCK))
        self.clock = _clock(p, TS_CLOCK)
        self._rest = b""

    def mux(self, unit: MediaUnit) -> bytes | None:
        dts, pts = self.clock.ticks(unit)
        packet = av.Packet(unit.payload)
        packet.stream = self.stream
        packet.time_base = Fraction(1, TS_CLOCK)  # unset, every segment breaks silently
        packet.dts, packet.pts = dts, pts
        packet.is_keyframe = unit.keyframe
        try:
            self.container.mux_one(packet)
        except (av.error.FFmpegError, ValueError):
            return None  # e.g. NAL lengths that run past the payload: the bsf refuses it
        return self._take()

    def _take(self) -> bytes:
        """The TS packets of our PID written since the last call, in order."""
        data = self._rest + self.sink.take()
        whole = len(data) - len(data) % TS_PACKET
        self._rest = data[whole:]
        hi, lo = self.pid >> 8, self.pid & 0xFF
        count = whole // TS_PACKET
        if (
            data[2:whole:TS_PACKET] == bytes((lo,)) * count
            and data[1:whole:TS_PACKET].translate(_PID_HIGH) == bytes((hi,)) * count
        ):
            return data[:whole]  # only our PID: the common case, no copying per packet
        view = memoryview(data)
        keep = [
            view[i : i + TS_PACKET]
            for i in range(0, whole, TS_PACKET)
            if data[i + 2] == lo and data[i + 1] & 0x1F == hi
        ]
        return b"".join(keep)

    def close(self) -> bytes:
        try:
            self.container.close()
        except av.error.FFmpegError:
            pass  # nothing the trailer of a TS muxer writes matters for the last piece
        return self._take()


class _TsWriter:
    init: bytes | None = None

    def __init__(self, params: list[_Params]) -> None:
        self._es: dict[int, _TsVideo | _TsAudio] = {}
        entries = []
        for p in params:
            if p.track.kind == VIDEO:
                scratch = av.open(io.BytesIO(), "w", format="mpegts")
                try:
                    es: _TsVideo | _TsAudio = _TsVideo(p, TS_VIDEO_PID, scratch)
                finally:
                    scratch.close()
            else:
                es = _TsAudio(p, TS_AUDIO_PID, pcr=len(params) == 1)
            self._es[id(p.track)] = es
            entries.append((_TS_STREAM_TYPE[p.track.codec], es.pid))
        self._pat = _pat()
        self._pmt = _pmt(entries, pcr_pid=entries[0][1])
        self._cc = {0: 0, TS_PMT_PID: 0}
        self._pieces: list[bytes] = []
        self.pending_bytes = 0

    def _psi(self, pid: int, section: bytes) -> bytes:
        cc = self._cc[pid]
        self._cc[pid] = (cc + 1) & 0x0F
        header = bytes((0x47, 0x40 | pid >> 8, pid & 0xFF, 0x10 | cc))
        payload = b"\x00" + section  # pointer_field 0: the section starts right here
        return header + payload + b"\xff" * (TS_PACKET - 4 - len(payload))

    def add(self, unit: MediaUnit) -> bool:
        data = self._es[id(unit.track)].mux(unit)
        if data is None:
            return False
        self._pieces.append(data)
        self.pending_bytes += len(data)
        return True

    def cut(self, segment_start: bool) -> bytes:
        if not self._pieces:
            return b""
        head = self._psi(0, self._pat) + self._psi(TS_PMT_PID, self._pmt) if segment_start else b""
        data = head + b"".join(self._pieces)
        self._pieces.clear()
        self.pending_bytes = 0
        return data

    def close(self) -> bytes:
        for es in self._es.values():
            self._pieces.append(es.close())
        return self.cut(False)


# ------------------------------------------------------------------------------ fMP4


def _box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _children(data: bytes, start: int = 0, end: int | None = None) -> dict[bytes, list[bytes]]:
    """Top-level boxes of ``data[start:end]`` by type (bodies without their headers)."""
    end = len(data) if end is None else end
    out: dict[bytes, list[bytes]] = {}
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size < 8 or pos + size > end:
            raise RuntimeError(f"malformed {kind!r} box from the mp4 muxer")
        out.setdefault(kind, []).append(data[pos + 8 : pos + size])
        pos += size
    return out


def _track_ids(moov: bytes) -> list[tuple[int, int]]:
    """(track_ID, media timescale) of each trak, from tkhd and mdhd (14496-12 §8.3.2, §8.4.2)."""
    out = []
    for trak in _children(moov).get(b"trak", []):
        boxes = _children(trak)
        tkhd = boxes[b"tkhd"][0]
        track_id = struct.unpack_from(">I", tkhd, 20 if tkhd[0] == 1 else 12)[0]
        mdhd = _children(boxes[b"mdia"][0])[b"mdhd"][0]
        timescale = struct.unpack_from(">I", mdhd, 20 if mdhd[0] == 1 else 12)[0]
        out.append((track_id, timescale))
    return out


_SAMPLE = struct.Struct(">IIIi")  # duration, size, flags, composition offset
_SYNC = 0x02000000  # sample_depends_on=2 (an I picture)
_NON_SYNC = 0x01010000  # sample_depends_on=1, sample_is_non_sync_sample=1
_TRUN_FLAGS = 0x000F01  # data-offset, duration, size, flags and composition offset present


@dataclass
class _Fmp4Track:
    track_id: int
    timescale: int
    clock: _Clock
    frame: int  # an AAC frame in ticks, the last sample's duration; 0 for video
    units: list[tuple[int, int, MediaUnit]] = field(default_factory=list)  # (dts, pts, unit)
    next_start: int | None = None  # where the previous fragment of this track ended
    last_start: int = -1  # decode time of its last sample
    last_delta: int = 0

    def place(self) -> tuple[list[int], int]:
        """Decode times of the queued samples and where the last one ends.

        Inside a fragment a sample lasts until the next one's DTS. The last one's duration
        is unknown at a cut: it is estimated low (an AAC frame; the shortest frame interval
        of the fragment for video), and the next fragment starts where this one ended, its
        first sample absorbing the difference. So tfdt runs on without gaps or overlaps,
        and no composition offset is negative (FFmpeg's demuxer would shift every PTS).
        A real gap (over 100 ms) or an estimate too long restarts from the input's DTS;
        decode times never go back, whatever the input.
        """
        ticks = [dts for dts, _, _ in self.units]
        start, resume = ticks[0], self.next_start
        if (
            resume is not None
            and resume <= self.units[0][1]  # its PTS: no negative composition offset
            and start <= resume + self.timescale // 10  # not a real gap
            and (len(ticks) == 1 or resume < ticks[1])
        ):
            start = resume
        start = max(start, self.last_start + 1)  # pathological input: order beats PTS
        starts = [start]
        for t in ticks[1:]:
            start = max(t, start + 1)
            starts.append(start)
        if len(ticks) > 1:
            self.last_delta = min(b - a for a, b in zip(ticks, ticks[1:], strict=False))
        estimate = self.frame or self.last_delta or self.timescale // 30
        return starts, max(starts[-1] + 1, ticks[-1] + estimate)


class _Fmp4Writer:
    def __init__(self, params: list[_Params]) -> None:
        self.init, ids = self._init_segment(params)
        self._tracks: dict[int, _Fmp4Track] = {}
        for p, (track_id, timescale) in zip(params, ids, strict=True):
            frame = 0
            if p.track.kind == AUDIO:
                frame = round(Fraction(AAC_FRAME_SAMPLES * timescale, p.sample_rate))
            self._tracks[id(p.track)] = _Fmp4Track(track_id, timescale, _clock(p, timescale), frame)
        self._sequence = 0
        self.pending_bytes = 0

    @staticmethod
    def _init_segment(params: list[_Params]) -> tuple[bytes, list[tuple[int, int]]]:
        sink = _Sink()
        out = av.open(sink, "w", format="mp4", options=_MP4_OPTIONS)
        scratch = av.open(io.BytesIO(), "w", format="mp4")
        try:
            for p in params:
                rate = TS_CLOCK if p.track.kind == VIDEO else p.sample_rate
                _add_stream(out, scratch, p, Fraction(1, rate))
            out.start_encoding()  # writes ftyp + empty moov; no packet is ever muxed here
        finally:
            scratch.close()
            out.close()
        data = sink.take()
        boxes = _children(data)
        if b"ftyp" not in boxes or b"moov" not in boxes:
            raise RuntimeError("the mp4 muxer wrote no ftyp/moov")
        init = _box(b"ftyp", boxes[b"ftyp"][0]) + _box(b"moov", boxes[b"moov"][0])
        ids = _track_ids(boxes[b"moov"][0])
        if len(ids) != len(params):
            raise RuntimeError("the mp4 muxer wrote an unexpected number of tracks")
        return init, ids

    def add(self, unit: MediaUnit) -> bool:
        track = self._tracks[id(unit.track)]
        dts, pts = track.clock.ticks(unit)
        track.units.append((dts, pts, unit))
        self.pending_bytes += len(unit.payload)
        return True

    def cut(self, segment_start: bool) -> bytes:
        active = [t for t in self._tracks.values() if t.units]
        if not active:
            return b""
        self._sequence += 1
        plans = []
        for t in active:
            starts, end = t.place()
            plans.append((t, starts, end))
        # Sizes first: each trun's data_offset counts from the start of the moof.
        traf_sizes = [8 + 16 + 20 + 20 + _SAMPLE.size * len(t.units) for t, _, _ in plans]
        moof_size = 8 + 16 + sum(traf_sizes)
        offset = moof_size + 8
        trafs = []
        payloads: list[bytes] = []
        for t, starts, end in plans:
            bounds = [*starts[1:], end]
            entries = []
            for (_, pts, unit), start, stop in zip(t.units, starts, bounds, strict=True):
                flags = _SYNC if unit.keyframe or t.frame else _NON_SYNC
                cto = min(max(pts - start, _INT32[0]), _INT32[1])
                entries.append(_SAMPLE.pack(stop - start, len(unit.payload), flags, cto))
                payloads.append(unit.payload)
            trafs.append(
                _box(
                    b"traf",
                    _box(b"tfhd", struct.pack(">II", 0x020000, t.track_id)),  # default-base-is-moof
                    _box(b"tfdt", struct.pack(">IQ", 0x01000000, starts[0])),
                    _box(
                        b"trun",
                        struct.pack(">IIi", 0x01000000 | _TRUN_FLAGS, len(entries), offset),
                        *entries,
                    ),
                )
            )
            offset += sum(len(u.payload) for _, _, u in t.units)
            t.next_start, t.last_start = end, starts[-1]
            t.units = []
        moof = _box(b"moof", _box(b"mfhd", struct.pack(">II", 0, self._sequence)), *trafs)
        if len(moof) != moof_size:  # the data offsets above would all be wrong
            raise RuntimeError("fMP4 fragment size mismatch")
        self.pending_bytes = 0
        return moof + _box(b"mdat", *payloads)

    def close(self) -> bytes:
        return self.cut(False)
