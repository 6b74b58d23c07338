"""HlsMuxer on real media: H.264 (B-frames) + AAC published as ffmpeg would over RTMP (an FLV
fed through FlvIngest: AVCC payloads, avcC config, millisecond timestamps) and HEVC + AAC,
cut into 2 s segments at keyframes and 0.2 s parts as the segmenter does. Every segment is
checked with ffprobe (packet counts, keyframe first, timestamps running on across segments)
and decoded with ffmpeg; TS packets and fMP4 boxes are parsed here too (continuity
counters, PAT/PMT, SPS/PPS before the IDR, tfdt, sample counts per part).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.hls.muxer import TS_AUDIO_PID, TS_PMT_PID, TS_VIDEO_PID, HlsMuxer, UnsupportedTrack
from bridge.media.units import AUDIO, VIDEO, MediaUnit, Track, starts_gop
from bridge.rtmp.ingest import FlvIngest

FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
pytestmark = pytest.mark.skipif(not (FFMPEG and FFPROBE), reason="needs ffmpeg and ffprobe")

Media = tuple[list[MediaUnit], list[Track]]


def _ffmpeg_bytes(*args: str) -> bytes:
    cmd = [str(FFMPEG), "-v", "error", "-nostdin", *args]
    return subprocess.run(cmd, check=True, capture_output=True, timeout=120).stdout


def _flv_units(data: bytes) -> Media:
    """Feed an FLV file's tags to FlvIngest, as an RTMP publish would."""
    ingest = FlvIngest()
    units: list[MediaUnit] = []
    pos = 13  # FLV header + PreviousTagSize0
    while pos + 11 <= len(data):
        kind, size = data[pos], int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        if kind in (8, 9):
            units += ingest.feed(kind, ts, data[pos + 11 : pos + 11 + size])
        pos += 11 + size + 4
    return units, [t for t in (ingest.video, ingest.audio) if t is not None]


@pytest.fixture(scope="module")
def h264_aac() -> Media:
    flv = _ffmpeg_bytes(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", "6.5", "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "60",
        "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "96k", "-ac", "2", "-f", "flv", "pipe:1",
    )  # fmt: skip
    units, tracks = _flv_units(flv)
    assert [t.codec for t in tracks] == ["h264", "aac"]
    assert any(u.pts != u.dts for u in units if u.track.kind == VIDEO)  # B-frames
    return units, tracks


@pytest.fixture(scope="module")
def hevc_aac(tmp_path_factory: pytest.TempPathFactory) -> Media:
    """HEVC + AAC encoded by ffmpeg into MP4, demuxed (never decoded) into millisecond units
    shifted to start at 0, as Enhanced RTMP would deliver them."""
    path = tmp_path_factory.mktemp("hevc") / "hevc.mp4"
    _ffmpeg_bytes(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi",
        "-i", "sine=sample_rate=48000", "-t", "4.5", "-c:v", "libx265", "-preset", "ultrafast",
        "-x265-params", "keyint=60:min-keyint=60:bframes=2:log-level=error",
        "-c:a", "aac", "-b:a", "96k", "-y", str(path),
    )  # fmt: skip
    with av.open(str(path)) as container:  # packets must not outlive their container
        vs, aus = container.streams.video[0], container.streams.audio[0]
        video = Track(VIDEO, "hevc", bytes(vs.codec_context.extradata or b""))
        audio = Track(
            AUDIO, "aac", bytes(aus.codec_context.extradata or b""), sample_rate=aus.sample_rate
        )
        packets = [
            (p.stream.type, p.dts * p.time_base, p.pts * p.time_base, p.is_keyframe, bytes(p))
            for p in container.demux()
            if p.size and p.dts is not None
        ]
    start = min(dts for _, dts, _, _, _ in packets)

    def ms(value: Fraction) -> int:
        return round((value - start) * 1000)

    units = [
        MediaUnit(video if kind == "video" else audio, ms(dts), ms(pts), key, payload)
        for kind, dts, pts, key, payload in packets
    ]
    units.sort(key=lambda u: u.dts)
    return units, [video, audio]


# ------------------------------------------------------------------ cutting like the segmenter


@dataclass
class Piece:
    data: bytes
    units: list[MediaUnit]


@dataclass
class Segment:
    pieces: list[Piece] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return b"".join(p.data for p in self.pieces)

    @property
    def units(self) -> list[MediaUnit]:
        return [u for p in self.pieces for u in p.units]


def _seconds(unit: MediaUnit) -> float:
    return float(unit.dts * unit.track.time_base)


def run(muxer: HlsMuxer, units: list[MediaUnit], seg: float = 2.0, part: float = 0.2):
    """Cut before the unit that crosses a boundary: segments at a keyframe (any unit without
    video) at least ``seg`` after the segment start, parts every ``part`` seconds."""
    has_video = any(t.kind == VIDEO for t in muxer.tracks)
    segments: list[Segment] = []
    pending: list[MediaUnit] = []
    seg_start = part_start = 0.0

    def cut() -> None:
        first = not segments[-1].pieces
        segments[-1].pieces.append(Piece(muxer.cut(segment_start=first), pending.copy()))
        pending.clear()

    for unit in units:
        t = _seconds(unit)
        if not segments:
            segments.append(Segment())
            seg_start = part_start = t
        elif starts_gop(unit, has_video) and t - seg_start >= seg - 0.05:
            cut()
            segments.append(Segment())
            seg_start = part_start = t
        elif t - part_start >= part:
            cut()
            part_start = t
        muxer.add(unit)
        pending.append(unit)
    cut()
    assert muxer.close() == b""
    assert muxer.dropped == 0
    return segments


# ------------------------------------------------------------------ ffprobe / ffmpeg


def probe(path: Path) -> list[dict]:
    out = subprocess.run(
        [str(FFPROBE), "-v", "error", "-show_entries", "packet=codec_type,pts,dts,flags,size",
         "-of", "json", str(path)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return json.loads(out.stdout)["packets"]


def decode_errors(path: Path) -> str:
    done = subprocess.run(
        [str(FFMPEG), "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    return done.stderr.decode(errors="replace") + ("" if done.returncode == 0 else "exit != 0")


def check_with_ffmpeg(segments: list[Segment], tmp: Path, init: bytes) -> None:
    """Every segment on its own: packet counts, keyframe first, clean decode; and timestamps
    across segments: video PTS exact, audio on a gapless 1024-sample clock."""
    seen: dict[str, list[tuple[int, int]]] = {VIDEO: [], AUDIO: []}
    for i, segment in enumerate(segments):
        path = tmp / f"seg{i}.{'m4s' if init else 'ts'}"
        path.write_bytes(init + segment.data)
        packets = probe(path)
        for kind in (VIDEO, AUDIO):
            got = [p for p in packets if p["codec_type"] == kind]
            assert len(got) == sum(u.track.kind == kind for u in segment.units), (i, kind)
            seen[kind] += [(int(p["pts"]), int(p["dts"])) for p in got]
        video = [p for p in packets if p["codec_type"] == VIDEO]
        if video:
            assert "K" in video[0]["flags"], f"segment {i} does not start with a keyframe"
        assert decode_errors(path) == "", f"segment {i}"
    with av.open(str(tmp / f"seg0.{'m4s' if init else 'ts'}")) as c:
        rate = {s.type: s.time_base for s in c.streams}
    units = {k: [u for s in segments for u in s.units if u.track.kind == k] for k in seen}
    if units[VIDEO]:
        scale = int(1 / (rate[VIDEO] * 1000))  # 90 ticks a millisecond in both formats
        pts = sorted(p for p, _ in seen[VIDEO])
        assert pts == sorted(u.pts * scale for u in units[VIDEO])  # exact, across segments
        dts = [d for _, d in seen[VIDEO]]
        assert dts == sorted(set(dts))
        for d, unit in zip(dts, units[VIDEO], strict=True):
            assert abs(d - unit.dts * scale) <= 3 * scale  # first samples of fMP4 parts
    if units[AUDIO]:
        sample_rate = units[AUDIO][0].track.sample_rate
        frame = 1024 / sample_rate / float(rate[AUDIO])
        pts = [p for p, _ in seen[AUDIO]]
        assert all(abs(b - a - frame) <= 1 for a, b in zip(pts, pts[1:], strict=False))
        for p, unit in zip(pts, units[AUDIO], strict=True):
            assert abs(p * rate[AUDIO] - _seconds(unit)) <= 0.5 * 1024 / sample_rate + 0.001


# ------------------------------------------------------------------ MPEG-TS parsing


def ts_packets(data: bytes) -> list[tuple[int, bool, int, int, bytes]]:
    """(pid, payload_unit_start, adaptation_field_control, cc, payload) per TS packet."""
    assert len(data) % 188 == 0
    out = []
    for i in range(0, len(data), 188):
        pkt = data[i : i + 188]
        assert pkt[0] == 0x47
        pid, afc, cc = (pkt[1] & 0x1F) << 8 | pkt[2], pkt[3] >> 4 & 3, pkt[3] & 0x0F
        start = 4 + (1 + pkt[4] if afc & 2 else 0)
        out.append((pid, bool(pkt[1] & 0x40), afc, cc, pkt[start:] if afc & 1 else b""))
    return out


def check_continuity(data: bytes) -> None:
    """Per PID, the continuity counter of every packet with payload is the previous + 1."""
    last: dict[int, int] = {}
    for pid, _, afc, cc, _ in ts_packets(data):
        if afc & 1:
            if pid in last:
                assert cc == (last[pid] + 1) % 16, f"PID {pid:#x}: {last[pid]} -> {cc}"
            last[pid] = cc
        elif pid in last:
            assert cc == last[pid]  # adaptation-only packets do not count


def pmt_streams(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """PCR PID and (stream_type, PID) entries of the PMT that must follow the PAT."""
    (pat_pid, pusi, *_), (pmt_pid, _, _, _, pmt) = ts_packets(data[:376])
    assert pat_pid == 0 and pusi and pmt_pid == TS_PMT_PID
    section = pmt[1:]
    length = (section[1] & 0x0F) << 8 | section[2]
    pcr_pid = (section[8] & 0x1F) << 8 | section[9]
    entries, pos = [], 12
    while pos < 3 + length - 4:
        es_info = (section[pos + 3] & 0x0F) << 8 | section[pos + 4]
        entries.append((section[pos], (section[pos + 1] & 0x1F) << 8 | section[pos + 2]))
        pos += 5 + es_info
    return pcr_pid, entries


def first_video_nal_types(data: bytes) -> list[int]:
    """NAL unit types of the first video PES (Annex-B) in a TS segment."""
    pes = b""
    for pid, pusi, _, _, payload in ts_packets(data):
        if pid != TS_VIDEO_PID:
            continue
        if pusi and pes:
            break
        pes += payload
    body = pes[9 + pes[8] :]
    return [nal[0] & 0x1F for nal in body.split(b"\x00\x00\x01")[1:] if nal]


def check_pes_per_piece(segment: Segment) -> None:
    """Each piece holds exactly the units added before its cut: one PES per unit."""
    for piece in segment.pieces:
        starts = [pid for pid, pusi, _, _, _ in ts_packets(piece.data) if pusi and pid > 0x20]
        for kind, pid in ((VIDEO, TS_VIDEO_PID), (AUDIO, TS_AUDIO_PID)):
            assert starts.count(pid) == sum(u.track.kind == kind for u in piece.units)


# ------------------------------------------------------------------ fMP4 parsing


def boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        assert size >= 8 and pos + size <= len(data)
        out.append((kind, data[pos + 8 : pos + size]))
        pos += size
    return out


def parse_fragment(data: bytes) -> tuple[int, dict[int, tuple[int, list[tuple]]]]:
    """(sequence number, {track_ID: (tfdt, [(duration, size, flags, cto), ...])})."""
    (moof_kind, moof), (mdat_kind, mdat) = boxes(data)
    assert (moof_kind, mdat_kind) == (b"moof", b"mdat")
    sequence, tracks, total = 0, {}, 0
    for kind, body in boxes(moof):
        if kind == b"mfhd":
            sequence = struct.unpack_from(">I", body, 4)[0]
            continue
        traf = dict(boxes(body))
        track_id = struct.unpack_from(">I", traf[b"tfhd"], 4)[0]
        assert traf[b"tfdt"][0] == 1
        tfdt = struct.unpack_from(">Q", traf[b"tfdt"], 4)[0]
        trun = traf[b"trun"]
        count, offset = struct.unpack_from(">Ii", trun, 4)
        samples = [struct.unpack_from(">IIIi", trun, 12 + 16 * i) for i in range(count)]
        assert offset == len(moof) + 16 + total  # data starts where this track's bytes are
        total += sum(s[1] for s in samples)
        tracks[track_id] = (tfdt, samples)
    assert total == len(mdat)
    return sequence, tracks


def check_fragments(segments: list[Segment], init: bytes) -> None:
    """One moof+mdat per piece: sequence numbers, sample counts and sizes per piece, and
    every track's tfdt exactly where its previous fragment ended."""
    moov = dict(boxes(init))[b"moov"]
    assert b"mvex" in dict(boxes(moov))
    track_ids = {}
    for trak in (body for kind, body in boxes(moov) if kind == b"trak"):
        parts = dict(boxes(trak))
        kind = dict(boxes(parts[b"mdia"]))[b"hdlr"][8:12]
        track_ids[{b"vide": VIDEO, b"soun": AUDIO}[kind]] = struct.unpack_from(
            ">I", parts[b"tkhd"], 12
        )[0]
    ends: dict[int, int] = {}
    sequence = 0
    for piece in (p for s in segments for p in s.pieces):
        number, tracks = parse_fragment(piece.data)
        assert number == sequence + 1
        sequence = number
        for kind, track_id in track_ids.items():
            units = [u for u in piece.units if u.track.kind == kind]
            if not units:
                assert track_id not in tracks
                continue
            tfdt, samples = tracks[track_id]
            assert [s[1] for s in samples] == [len(u.payload) for u in units]
            assert [bool(s[2] & 0x10000) for s in samples] == [not u.keyframe for u in units]
            assert all(s[0] > 0 and s[3] >= 0 for s in samples)
            if track_id in ends:
                assert tfdt == ends[track_id], f"track {track_id}: tfdt not continuous"
            ends[track_id] = tfdt + sum(s[0] for s in samples)


# ------------------------------------------------------------------ the tests


def _only(media: Media, kind: str | None) -> Media:
    units, tracks = media
    if kind is None:
        return units, tracks
    return [u for u in units if u.track.kind == kind], [t for t in tracks if t.kind == kind]


@pytest.mark.parametrize("only", [None, VIDEO, AUDIO], ids=["av", "video-only", "audio-only"])
def test_mpegts_segments(h264_aac: Media, only: str | None, tmp_path: Path) -> None:
    units, tracks = _only(h264_aac, only)
    muxer = HlsMuxer(tracks, "mpegts")
    assert muxer.init is None
    segments = run(muxer, units)
    assert len(segments) >= 3
    check_with_ffmpeg(segments, tmp_path, b"")
    check_continuity(b"".join(s.data for s in segments))  # never restarting per segment
    want_pids = {VIDEO: (0x1B, TS_VIDEO_PID), AUDIO: (0x0F, TS_AUDIO_PID)}
    for segment in segments:
        pcr_pid, entries = pmt_streams(segment.data)
        assert entries == [want_pids[t.kind] for t in tracks]
        assert pcr_pid == entries[0][1]
        if only != AUDIO:
            nals = first_video_nal_types(segment.data)
            assert nals.index(7) < nals.index(8) < nals.index(5), nals  # SPS, PPS, IDR
        for piece in segment.pieces[1:]:
            assert ts_packets(piece.data)[0][0] in (TS_VIDEO_PID, TS_AUDIO_PID)  # no PAT
        check_pes_per_piece(segment)


@pytest.mark.parametrize("only", [None, VIDEO, AUDIO], ids=["av", "video-only", "audio-only"])
def test_fmp4_segments(h264_aac: Media, only: str | None, tmp_path: Path) -> None:
    units, tracks = _only(h264_aac, only)
    muxer = HlsMuxer(tracks, "fmp4")
    assert muxer.init is not None
    assert [kind for kind, _ in boxes(muxer.init)] == [b"ftyp", b"moov"]
    segments = run(muxer, units)
    assert len(segments) >= 3
    check_with_ffmpeg(segments, tmp_path, muxer.init)
    check_fragments(segments, muxer.init)
    whole = tmp_path / "all.mp4"  # and the whole stream in one piece
    whole.write_bytes(muxer.init + b"".join(s.data for s in segments))
    assert len(probe(whole)) == len(units)
    assert decode_errors(whole) == ""


def test_small_aac_frames_are_not_held_back(tmp_path: Path) -> None:
    """FFmpeg's mpegts muxer holds audio frames of up to 170 bytes until the next one comes;
    silence at a low bitrate is made of such frames, and every piece must still hold exactly
    its own units."""
    flv = _ffmpeg_bytes(
        "-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", "3", "-c:a", "aac",
        "-b:a", "24k", "-f", "flv", "pipe:1",
    )  # fmt: skip
    units, tracks = _flv_units(flv)
    assert sum(u.size + 7 <= 170 for u in units) > len(units) // 2
    segments = run(HlsMuxer(tracks, "mpegts"), units)
    for segment in segments:
        check_pes_per_piece(segment)
    check_with_ffmpeg(segments, tmp_path, b"")


def test_hevc_in_fmp4(hevc_aac: Media, tmp_path: Path) -> None:
    units, tracks = hevc_aac
    muxer = HlsMuxer(tracks, "fmp4")
    segments = run(muxer, units)
    assert len(segments) >= 2
    check_with_ffmpeg(segments, tmp_path, muxer.init or b"")
    check_fragments(segments, muxer.init or b"")
    with av.open(str(tmp_path / "seg0.m4s")) as c:
        video = c.streams.video[0]
        assert (video.codec_context.codec_tag, video.width, video.height) == ("hvc1", 320, 240)


def test_time_base_does_not_matter(h264_aac: Media) -> None:
    """The same media in 1/90000 instead of milliseconds gives the same bytes."""
    units, tracks = h264_aac
    fine = {id(t): Track(t.kind, t.codec, t.config, Fraction(1, 90000)) for t in tracks}
    scaled = [
        MediaUnit(fine[id(u.track)], u.dts * 90, u.pts * 90, u.keyframe, u.payload) for u in units
    ]
    for fmt in ("mpegts", "fmp4"):
        a, b = HlsMuxer(tracks, fmt), HlsMuxer(list(fine.values()), fmt)
        assert [s.data for s in run(a, units)] == [s.data for s in run(b, scaled)]


def _track(kind: str, codec: str, config: bytes = b"") -> Track:
    return Track(kind, codec, config)


@pytest.mark.parametrize(
    ("make", "fmt", "message"),
    [
        (lambda v, a: [_track(VIDEO, "hevc")], "mpegts", "fmp4"),
        (lambda v, a: [_track(AUDIO, "opus", b"OpusHead")], "fmp4", "opus"),
        (lambda v, a: [_track(VIDEO, "vp8"), a], "mpegts", "vp8"),
        (lambda v, a: [v, v], "fmp4", "at most one"),
        (lambda v, a: [v, a, a], "mpegts", "at most one"),
        (lambda v, a: [], "fmp4", "no tracks"),
        (lambda v, a: [_track(VIDEO, "h264", b"\x01\x64")], "mpegts", "config"),
        (lambda v, a: [_track(AUDIO, "aac", b"")], "fmp4", "config"),
    ],
    ids=["hevc-ts", "opus", "vp8", "two-video", "two-audio", "none", "bad-avcc", "no-asc"],
)
def test_unsupported_tracks(h264_aac: Media, make, fmt: str, message: str) -> None:
    video, audio = h264_aac[1]
    with pytest.raises(UnsupportedTrack, match=message):
        HlsMuxer(make(video, audio), fmt)  # type: ignore[arg-type]


def test_hevc_mpegts_is_refused(hevc_aac: Media) -> None:
    with pytest.raises(UnsupportedTrack, match="hevc"):
        HlsMuxer(hevc_aac[1], "mpegts")


@pytest.mark.parametrize("fmt", ["mpegts", "fmp4"])
def test_foreign_track_and_closed(h264_aac: Media, fmt: str) -> None:
    units, tracks = h264_aac
    muxer = HlsMuxer(tracks[:1], fmt)
    assert muxer.cut(segment_start=True) == b""  # nothing added, nothing to say
    audio = next(u for u in units if u.track.kind == AUDIO)
    with pytest.raises(ValueError, match="not made for"):
        muxer.add(audio)
    muxer.add(units[0])
    assert muxer.close() != b""  # what was left
    assert muxer.close() == b""
    with pytest.raises(ValueError, match="closed"):
        muxer.add(units[1])


# A publisher controls payloads, timestamps and flags: whatever it sends, add() and cut()
# raise nothing, TS stays 188-aligned with continuous counters, and fMP4 fragments hold
# exactly the units accepted, with decode times that never go back.
unit_plans = st.lists(
    st.tuples(
        st.sampled_from([VIDEO, AUDIO]),
        st.integers(-40, 120),  # dts step, ms (may go back)
        st.integers(-50, 200),  # pts - dts, ms (may be negative)
        st.booleans(),  # keyframe
        st.binary(min_size=0, max_size=64),  # payload: NAL lengths that run past the end
        st.booleans(),  # cut before this unit
    ),
    max_size=40,
)


@pytest.fixture(scope="module")
def av_tracks(h264_aac: Media) -> list[Track]:
    return h264_aac[1]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=unit_plans, fmt=st.sampled_from(["mpegts", "fmp4"]))
def test_garbage_units_never_raise(av_tracks: list[Track], plan, fmt: str) -> None:
    tracks = av_tracks
    by_kind = {t.kind: t for t in tracks}
    muxer = HlsMuxer(tracks, fmt)
    pieces, clock = [], {VIDEO: 0, AUDIO: 0}
    for kind, step, cts, key, payload, cut in plan:
        if cut:
            pieces.append(muxer.cut(segment_start=key))
        clock[kind] += step
        muxer.add(MediaUnit(by_kind[kind], clock[kind], clock[kind] + cts, key, payload))
    pieces.append(muxer.cut(segment_start=False))
    pieces.append(muxer.close())
    data = b"".join(pieces)
    if fmt == "mpegts":
        check_continuity(data)
        return
    accepted, last = 0, {}
    for piece in filter(None, pieces):
        _, tracks_ = parse_fragment(piece)
        for track_id, (tfdt, samples) in tracks_.items():
            assert tfdt > last.get(track_id, -1)  # decode times never go back
            assert all(s[0] > 0 for s in samples)
            last[track_id] = tfdt + sum(s[0] for s in samples[:-1])
            accepted += len(samples)
    assert accepted == len(plan) - muxer.dropped


def test_remux_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CPU to remux 60 s of 1080p30 at ~4.4 Mbps with AAC, in 0.2 s parts and 2 s segments.

    Measured (2 cores, av 18.1): 0.08-0.18 CPU-s for MPEG-TS and 0.03-0.07 for fMP4 per
    minute of stream, i.e. at most 0.3 % of a core; a 0.2 s part costs well under a
    millisecond. Cheap enough to stay on the event loop."""
    flv = _ffmpeg_bytes(
        "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30", "-f", "lavfi",
        "-i", "sine=sample_rate=48000", "-t", "2", "-vf", "noise=alls=12:allf=t",
        "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "4M", "-maxrate", "4M",
        "-bufsize", "4M", "-g", "60", "-c:a", "aac", "-f", "flv", "pipe:1",
    )  # fmt: skip
    gop, tracks = _flv_units(flv)
    units = [
        MediaUnit(u.track, u.dts + 2000 * k, u.pts + 2000 * k, u.keyframe, u.payload)
        for k in range(30)
        for u in gop
    ]
    units.sort(key=lambda u: u.dts)
    mbps = sum(u.size for u in units) * 8 / 60 / 1e6
    figures = []
    for fmt in ("mpegts", "fmp4"):
        cpu = time.process_time()
        run(HlsMuxer(tracks, fmt), units)
        figures.append((fmt, time.process_time() - cpu))
    with capsys.disabled():
        print(f"\nremux of 60 s 1080p30 {mbps:.1f} Mbps: " + ", ".join(
            f"{fmt} {cpu:.3f} CPU-s" for fmt, cpu in figures))  # fmt: skip
    assert mbps > 3
    assert all(cpu < 2.0 for _, cpu in figures)  # 20x the measured figure
