"""HLS and LL-HLS end to end: ffmpeg publishes over RTMP, ffmpeg/ffprobe and plain HTTP
clients read `/hls/CHANNEL/...` (issue 5, "Proof").

Segments are 1 s (the fixtures have a keyframe every second) and the window is 3 segments,
so a playlist slides within a few seconds. One module-wide server (MPEG-TS, LL-HLS) carries
the playlist checks, the blocking reloads and the bad requests; fMP4, HEVC, classic HLS and
the publish/unpublish lifecycle get a server each.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from .helpers import (
    ProcGroup,
    Server,
    SourceMedia,
    Tools,
    iter_flv_tags,
    launch_server,
    publish_argv,
    tail,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

CHANNEL, KEY = "chan", "key"
SEGMENT = 1  # HLS_SEGMENT_SECONDS: one fixture GOP
WINDOW = 3  # HLS_WINDOW
PART = 0.2  # HLS_PART_SECONDS
MPEGURL = "application/vnd.apple.mpegurl"
TS_PACKET = 188


# --------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    elapsed: float

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip()


def get(server: Server, path: str, timeout: float = 10.0) -> Reply:
    """GET on the server's HTTP service; any status is a Reply (never raises on 4xx/5xx)."""
    url = f"http://127.0.0.1:{server.ports['--http-port']}{path}"
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status, body, headers = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, body, headers = exc.code, exc.read(), dict(exc.headers)
    return Reply(status, body, headers, time.monotonic() - started)


def hls(name: str, channel: str = CHANNEL) -> str:
    return f"/hls/{channel}/{name}"


# --------------------------------------------------------------------------- playlists


@dataclass
class Part:
    msn: int
    uri: str
    duration: float
    independent: bool


@dataclass
class Segment:
    msn: int
    uri: str | None  # None: the open segment (only parts so far)
    duration: float | None
    discontinuity: bool
    program_date_time: datetime | None
    map_uri: str | None
    parts: list[Part] = field(default_factory=list)


@dataclass
class MediaPlaylist:
    text: str
    version: int | None = None
    target_duration: int | None = None
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    server_control: dict[str, str] = field(default_factory=dict)
    part_target: float | None = None
    segments: list[Segment] = field(default_factory=list)
    preload_hint: str | None = None
    ended: bool = False

    @property
    def complete(self) -> list[Segment]:
        return [s for s in self.segments if s.uri is not None]

    @property
    def parts(self) -> list[Part]:
        return [p for s in self.segments for p in s.parts]

    @property
    def last_msn(self) -> int:
        return self.segments[-1].msn if self.segments else self.media_sequence - 1

    @property
    def has_part_tags(self) -> bool:
        return bool(re.search(r"^#EXT-X-(PART|PART-INF|PRELOAD-HINT):", self.text, re.M))


def attributes(text: str) -> dict[str, str]:
    """An attribute list (`A=1,B="x,y"`) as a dict, quotes removed."""
    return {
        m.group(1): m.group(2).strip('"')
        for m in re.finditer(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', text)
    }


def parse_media(text: str) -> MediaPlaylist:
    """A media playlist as this test needs it; asserts what every playlist must satisfy."""
    lines = text.splitlines()
    assert lines and lines[0] == "#EXTM3U", text[:200]
    pl = MediaPlaylist(text)
    pending: dict[str, object] = {}
    parts: list[Part] = []
    map_uri: str | None = None
    next_msn: int | None = None

    def msn() -> int:
        return pl.media_sequence if next_msn is None else next_msn

    for line in lines[1:]:
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-VERSION":
            pl.version = int(value)
        elif tag == "#EXT-X-TARGETDURATION":
            pl.target_duration = int(value)
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            pl.media_sequence = int(value)
        elif tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
            pl.discontinuity_sequence = int(value)
        elif tag == "#EXT-X-SERVER-CONTROL":
            pl.server_control = attributes(value)
        elif tag == "#EXT-X-PART-INF":
            pl.part_target = float(attributes(value)["PART-TARGET"])
        elif tag == "#EXT-X-MAP":
            map_uri = attributes(value)["URI"]
        elif tag == "#EXT-X-DISCONTINUITY":
            pending["discontinuity"] = True
        elif tag == "#EXT-X-PROGRAM-DATE-TIME":
            pending["pdt"] = datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif tag == "#EXT-X-PART":
            a = attributes(value)
            parts.append(Part(msn(), a["URI"], float(a["DURATION"]), a.get("INDEPENDENT") == "YES"))
        elif tag == "#EXTINF":
            pending["duration"] = float(value.split(",")[0])
        elif tag == "#EXT-X-PRELOAD-HINT":
            a = attributes(value)
            assert a["TYPE"] == "PART", line
            pl.preload_hint = a["URI"]
        elif tag == "#EXT-X-ENDLIST":
            pl.ended = True
        elif line and not line.startswith("#"):
            assert "duration" in pending, f"URI without EXTINF: {line}\n{text}"
            pl.segments.append(
                Segment(
                    msn(),
                    line,
                    pending["duration"],  # type: ignore[arg-type]
                    bool(pending.get("discontinuity")),
                    pending.get("pdt"),  # type: ignore[arg-type]
                    map_uri,
                    parts,
                )
            )
            next_msn, pending, parts = msn() + 1, {}, []
    if parts or pending.get("pdt"):
        pl.segments.append(
            Segment(
                msn(),
                None,
                None,
                bool(pending.get("discontinuity")),
                pending.get("pdt"),  # type: ignore[arg-type]
                map_uri,
                parts,
            )
        )
    assert pl.target_duration is not None, f"no EXT-X-TARGETDURATION\n{text}"
    for segment in pl.complete:
        # RFC 8216 §4.3.3.1: every EXTINF, rounded to the nearest integer, <= TARGETDURATION.
        assert round(segment.duration) <= pl.target_duration, (
            f"{segment.uri}: EXTINF {segment.duration} > TARGETDURATION {pl.target_duration}"
        )
    for segment in pl.segments:
        if segment.uri is not None:
            assert segment.uri == f"seg{segment.msn}.{segment.uri.rsplit('.', 1)[1]}", (
                f"segment {segment.uri} listed at media sequence number {segment.msn}\n{text}"
            )
        assert segment.program_date_time is not None, (
            f"no PROGRAM-DATE-TIME before seg {segment.msn}"
        )
    return pl


def playlist(server: Server, query: str = "", channel: str = CHANNEL) -> MediaPlaylist:
    reply = get(server, hls("stream.m3u8", channel) + (f"?{query}" if query else ""))
    assert reply.status == 200, (reply.status, reply.text)
    return parse_media(reply.text)


def wait_playlist(
    server: Server,
    ready: Callable[[MediaPlaylist], bool],
    timeout: float,
    what: str,
    channel: str = CHANNEL,
) -> MediaPlaylist:
    """Poll the media playlist (404 while the channel has none) until ready(playlist)."""
    found: list[MediaPlaylist] = []

    def poll() -> bool:
        reply = get(server, hls("stream.m3u8", channel))
        if reply.status != 200:
            return False
        found[:] = [parse_media(reply.text)]
        return ready(found[0])

    if not wait_until(poll, timeout, interval=0.1):
        last = found[0].text if found else "(no playlist)"
        raise AssertionError(f"{what}: not within {timeout} s; last playlist:\n{last}")
    return found[0]


# --------------------------------------------------------------------------- media checks


def ffprobe_exe(tools: Tools) -> str:
    sibling = Path(tools.ffmpeg).with_name("ffprobe")
    return str(sibling) if sibling.exists() else (shutil.which("ffprobe") or "ffprobe")


def decode(tools: Tools, data: bytes, path: Path) -> None:
    """`ffmpeg -v error -i FILE -f null -` decodes every frame with nothing to say."""
    path.write_bytes(data)
    res = subprocess.run(
        [
            tools.ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    err = res.stderr.decode(errors="replace").strip()
    assert res.returncode == 0 and not err, (
        f"{path.name} ({len(data)} bytes) does not decode: {err}"
    )


def probe_streams(tools: Tools, url: str) -> list[dict[str, str]]:
    res = subprocess.run(
        [
            ffprobe_exe(tools),
            "-v",
            "error",
            "-rw_timeout",
            "5000000",
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "compact=nk=0",
            url,
        ],  # fmt: skip
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    streams = []
    for line in res.stdout.decode().splitlines():
        if line.startswith("stream|"):
            streams.append(dict(kv.split("=", 1) for kv in line.split("|")[1:] if "=" in kv))
    return streams


def continuity_breaks(data: bytes, last: dict[int, int]) -> list[str]:
    """MPEG-TS continuity counters (ISO 13818-1 §2.4.3.3): +1 mod 16 per packet with a
    payload on each PID, unless the discontinuity indicator is set. ``last`` carries the
    counters over from the previous segment."""
    assert len(data) % TS_PACKET == 0, f"{len(data)} bytes is not whole TS packets"
    breaks = []
    for index in range(len(data) // TS_PACKET):
        packet = data[index * TS_PACKET : (index + 1) * TS_PACKET]
        assert packet[0] == 0x47, f"packet {index}: no sync byte"
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        control, counter = (packet[3] >> 4) & 3, packet[3] & 0x0F
        if pid == 0x1FFF or not control & 1:
            continue  # null packets, and packets without payload, do not count
        discontinuity = control & 2 and packet[4] > 0 and packet[5] & 0x80
        if pid in last and not discontinuity and counter != (last[pid] + 1) % 16:
            breaks.append(f"packet {index} PID {pid:#x}: {last[pid]} -> {counter}")
        last[pid] = counter
    return breaks


# --------------------------------------------------------------------------- servers


def hls_flags(fmt: str = "mpegts", part: float = PART, grace: float = 1) -> tuple[str, ...]:
    return (
        "--hls-format", fmt, "--hls-segment-seconds", str(SEGMENT),
        "--hls-part-seconds", str(part), "--hls-window", str(WINDOW),
        "--unpublish-grace-seconds", str(grace),
    )  # fmt: skip


def start_hls_server(group: ProcGroup, *flags: str) -> Server:
    return launch_server(group, *flags, listeners=("--http-port",))


def publish(
    group: ProcGroup, exe: str, source: SourceMedia, server: Server, name: str = "publisher"
):
    """A looped live publish of `source` (ffmpeg -re -stream_loop -1 ... -c copy -f flv)."""
    argv = publish_argv(exe, source.path, server.url(CHANNEL, KEY), "-stream_loop", "-1")
    return group.start(name, argv)


@dataclass
class Live:
    """The module's server (MPEG-TS, LL-HLS) with a looped H.264 publish."""

    server: Server
    group: ProcGroup

    def diagnostics(self) -> str:
        return self.group.diagnostics()


@pytest.fixture(scope="module")
def live(
    tools: Tools, h264_source: SourceMedia, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    group = ProcGroup(tmp_path_factory.mktemp("hls-live"))
    try:
        server = start_hls_server(group, *hls_flags())
        publish(group, tools.ffmpeg, h264_source, server)
        yield Live(server, group)
    finally:
        group.stop_all()


def check_multivariant(server: Server, video: str) -> str:
    reply = get(server, hls("index.m3u8"))
    assert reply.status == 200, (reply.status, reply.text)
    assert reply.content_type == MPEGURL
    assert reply.headers.get("Access-Control-Allow-Origin") == "*"
    text = reply.text
    assert text.startswith("#EXTM3U\n"), text
    inf = next((ln for ln in text.splitlines() if ln.startswith("#EXT-X-STREAM-INF:")), None)
    assert inf is not None, text
    a = attributes(inf.partition(":")[2])
    assert int(a.get("BANDWIDTH", "0")) > 0, inf
    assert a.get("RESOLUTION") == "640x360", inf
    codecs = a.get("CODECS", "").split(",")
    assert len(codecs) == 2 and re.fullmatch(video, codecs[0]) and codecs[1] == "mp4a.40.2", inf
    assert text.splitlines()[-1] == "stream.m3u8", text
    return text


def check_segments(tools: Tools, server: Server, pl: MediaPlaylist, tmp: Path) -> None:
    """Every listed segment downloads with the right type and decodes (fMP4: after its init
    section); a segment whose parts are all listed is exactly their concatenation; MPEG-TS
    continuity counters run on across consecutive segments."""
    assert pl.complete, pl.text
    counters: dict[int, int] = {}
    previous: int | None = None
    for segment in pl.complete:
        assert segment.uri is not None
        reply = get(server, hls(segment.uri))
        assert reply.status == 200, (segment.uri, reply.status, reply.text)
        assert reply.headers.get("Access-Control-Allow-Origin") == "*"
        data = reply.body
        if segment.uri.endswith(".ts"):
            assert reply.content_type == "video/mp2t", reply.headers
            if previous is not None and segment.msn != previous + 1 or segment.discontinuity:
                counters = {}
            breaks = continuity_breaks(data, counters)
            assert not breaks, f"{segment.uri}: continuity counter jumps {breaks[:5]}"
            decode(tools, data, tmp / segment.uri)
        else:
            assert reply.content_type in ("video/iso.segment", "video/mp4"), reply.headers
            assert segment.map_uri is not None, f"no EXT-X-MAP before {segment.uri}"
            init = get(server, hls(segment.map_uri))
            assert init.status == 200 and init.content_type == "video/mp4", init.headers
            decode(tools, init.body + data, tmp / f"{segment.uri}.mp4")
        if segment.parts and segment.parts[0].independent:
            joined = b""
            for part in segment.parts:
                got = get(server, hls(part.uri))
                assert got.status == 200, (part.uri, got.status)
                joined += got.body
            assert joined == data, f"{segment.uri} is not the concatenation of its parts"
        previous = segment.msn


# --------------------------------------------------------------------------- 1. playlists


def test_mpegts_ll_hls_playlists_and_segments(live: Live, tools: Tools, tmp_path: Path) -> None:
    server = live.server
    first = wait_playlist(server, lambda p: len(p.complete) >= 2, 20, "two segments")
    check_multivariant(server, r"avc1\.[0-9a-f]{6}")

    # The media sequence advances and the window slides (RFC 8216 §6.2.2: keep WINDOW
    # segments, or more while fewer would last under 3 x TD).
    pl = wait_playlist(
        server, lambda p: p.media_sequence >= first.media_sequence + 2, 15, "the window sliding"
    )
    durations = [s.duration or 0.0 for s in pl.complete]
    assert len(durations) == WINDOW or sum(durations[1:]) < 3 * pl.target_duration, pl.text
    assert pl.segments[0].msn == pl.media_sequence
    assert pl.target_duration in (1, 2), pl.text  # 1 s GOPs; 2 covers the loop's seam
    assert not any(s.discontinuity for s in pl.segments), pl.text
    stamps = [s.program_date_time for s in pl.segments]
    assert stamps == sorted(stamps), pl.text

    # LL-HLS (bis §4.4.3.7, §4.4.3.8, §4.4.5.3).
    assert pl.part_target == PART, pl.text
    control = pl.server_control
    assert control.get("CAN-BLOCK-RELOAD") == "YES", pl.text
    assert float(control["PART-HOLD-BACK"]) >= 3 * PART - 1e-9, pl.text
    assert float(control["CAN-SKIP-UNTIL"]) >= 6 * pl.target_duration, pl.text
    assert pl.preload_hint is not None and not pl.ended, pl.text
    assert pl.parts and all(p.duration > 0 for p in pl.parts), pl.text
    assert all(s.parts[0].independent for s in pl.segments if s.parts), pl.text
    for segment in pl.complete:
        if segment.parts:
            total = sum(p.duration for p in segment.parts)
            assert abs(total - (segment.duration or 0)) < 0.01, (segment.uri, pl.text)

    check_segments(tools, server, pl, tmp_path)

    # ffprobe opens the multivariant playlist like any player.
    streams = probe_streams(
        tools, f"http://127.0.0.1:{server.ports['--http-port']}{hls('index.m3u8')}"
    )
    video = [s for s in streams if s.get("codec_name") == "h264"]
    assert video and video[0].get("width") == "640" and video[0].get("height") == "360", streams
    assert any(s.get("codec_name") == "aac" for s in streams), streams


def test_fmp4_ll_hls(
    procs: ProcGroup, tools: Tools, h264_source: SourceMedia, tmp_path: Path
) -> None:
    server = start_hls_server(procs, *hls_flags("fmp4"))
    publish(procs, tools.ffmpeg, h264_source, server)
    pl = wait_playlist(server, lambda p: len(p.complete) >= 2, 20, "two segments")
    check_multivariant(server, r"avc1\.[0-9a-f]{6}")
    assert "#EXT-X-MAP:" in pl.text and pl.version is not None and pl.version >= 6, pl.text
    assert all(s.uri is None or s.uri.endswith(".m4s") for s in pl.segments), pl.text
    assert pl.parts and pl.preload_hint is not None, pl.text
    check_segments(tools, server, pl, tmp_path)
    # A part decodes on its own after the init section (players start on INDEPENDENT parts).
    part = next(p for p in pl.parts if p.independent)
    map_uri = next(s.map_uri for s in pl.segments if s.msn == part.msn)
    assert map_uri is not None
    decode(
        tools,
        get(server, hls(map_uri)).body + get(server, hls(part.uri)).body,
        tmp_path / "part.mp4",
    )
    # MEDIA-SEQUENCE advances here too.
    wait_playlist(server, lambda p: p.media_sequence > pl.media_sequence, 10, "the window sliding")


def test_hevc_fmp4_from_enhanced_rtmp(
    procs: ProcGroup, tools: Tools, hevc_source: SourceMedia, tmp_path: Path
) -> None:
    server = start_hls_server(procs, *hls_flags("fmp4"))
    publish(procs, tools.modern_ffmpeg, hevc_source, server)
    pl = wait_playlist(server, lambda p: len(p.complete) >= 2, 20, "two segments")
    check_multivariant(server, r"(hvc1|hev1)\.[0-9A-Za-z.]+")
    assert "#EXT-X-MAP:" in pl.text, pl.text
    check_segments(tools, server, pl, tmp_path)
    streams = probe_streams(
        tools, f"http://127.0.0.1:{server.ports['--http-port']}{hls('index.m3u8')}"
    )
    assert {s.get("codec_name") for s in streams} >= {"hevc", "aac"}, streams


def test_classic_hls_has_no_parts(
    procs: ProcGroup, tools: Tools, h264_source: SourceMedia, tmp_path: Path
) -> None:
    server = start_hls_server(procs, *hls_flags(part=0))
    publish(procs, tools.ffmpeg, h264_source, server)
    pl = wait_playlist(server, lambda p: len(p.complete) >= 2, 20, "two segments")
    assert not pl.has_part_tags and "#EXT-X-SERVER-CONTROL" not in pl.text, pl.text
    assert pl.segments[-1].uri is not None, f"an open segment is listed\n{pl.text}"
    check_multivariant(server, r"avc1\.[0-9a-f]{6}")
    check_segments(tools, server, pl, tmp_path)
    # No CAN-BLOCK-RELOAD is advertised, so players send no directives; one that does gets
    # the playlist (at once, or once the segment is there), never a hang.
    reply = get(server, hls("stream.m3u8") + f"?_HLS_msn={pl.last_msn + 1}")
    assert reply.status == 200 and reply.elapsed < 3 * (pl.target_duration or 1) + 1, (
        reply.status,
        reply.elapsed,
    )


@pytest.fixture(scope="module")
def audio_lead_source(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 s of H.264 (no B-frames) + AAC whose video starts 0.5 s after its audio, as
    encoders that open the microphone first send it (less than the service's TRACK_WAIT)."""
    out = tmp_path_factory.mktemp("hls-media") / "audio_lead.flv"
    argv = [
        tools.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-itsoffset", "0.5", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "5",
        "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast",
        "-pix_fmt", "yuv420p", "-g", "25", "-bf", "0", "-c:a", "aac", "-b:a", "96k",
        "-f", "flv", str(out),
    ]  # fmt: skip
    res = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    tags = [t for t in iter_flv_tags(out.read_bytes()) if t.type in (8, 9)]
    first_video_frame = next(t for t in tags if t.type == 9 and t.payload[1:2] == b"\x01")
    assert first_video_frame.timestamp >= 400, "the fixture's video must start late"
    return out


def test_video_starting_after_audio_is_one_timeline(
    procs: ProcGroup, tools: Tools, audio_lead_source: Path, tmp_path: Path
) -> None:
    """One publish is one timeline: the muxer waits for the video that the publisher
    announced (onMetaData, sequence headers) instead of starting audio-only and cutting a
    discontinuity when the video's first frame comes."""
    server = start_hls_server(procs, *hls_flags())
    argv = publish_argv(tools.ffmpeg, audio_lead_source, server.url(CHANNEL, KEY))
    procs.start("publisher", argv)
    pl = wait_playlist(server, lambda p: len(p.complete) >= 2, 20, "two segments")
    assert not any(s.discontinuity for s in pl.segments), (
        f"a discontinuity in one publish\n{pl.text}"
    )
    first = pl.complete[0]
    assert first.uri is not None
    path = tmp_path / first.uri
    path.write_bytes(get(server, hls(first.uri)).body)
    streams = probe_streams(tools, str(path))
    assert {s.get("codec_name") for s in streams} == {"h264", "aac"}, (first.uri, streams, pl.text)
    check_multivariant(server, r"avc1\.[0-9a-f]{6}")


# --------------------------------------------------------------------------- 2. lifecycle


def test_unpublish_gives_endlist_and_return_gives_discontinuity(
    procs: ProcGroup, tools: Tools, h264_source: SourceMedia, tmp_path: Path
) -> None:
    server = start_hls_server(procs, *hls_flags(grace=1))
    port = server.ports["--http-port"]
    publisher = publish(procs, tools.ffmpeg, h264_source, server)
    before = wait_playlist(server, lambda p: len(p.complete) >= 2, 20, "two segments")

    # A blocking reload two segments ahead, then the publisher leaves: the request ends
    # with 503 after 3 x TD, or with 200 once ENDLIST is there; never later than that.
    target = before.last_msn + 2
    blocked: list[Reply] = []
    thread = threading.Thread(
        target=lambda: blocked.append(get(server, hls("stream.m3u8") + f"?_HLS_msn={target}", 15))
    )
    thread.start()
    time.sleep(0.05)
    publisher.stop()
    stopped = time.monotonic()

    ended = wait_playlist(server, lambda p: p.ended, 10, "ENDLIST after the publisher left")
    took = time.monotonic() - stopped
    assert 0.5 < took < 1 + 3, f"ENDLIST {took:.1f} s after the stop (grace 1 s)"
    assert ended.preload_hint is None and "PRELOAD-HINT" not in ended.text, ended.text
    assert ended.text.rstrip().endswith("#EXT-X-ENDLIST"), ended.text
    assert ended.segments[-1].uri is not None, f"an unfinished segment after ENDLIST\n{ended.text}"
    thread.join(20)
    assert blocked, "the blocking request never returned"
    limit = 3 * (before.target_duration or 1) + 1
    assert blocked[0].status in (200, 503) and blocked[0].elapsed < limit, (
        blocked[0].status,
        blocked[0].elapsed,
        blocked[0].text[:300],
    )
    print(f"blocked request: {blocked[0].status} after {blocked[0].elapsed:.2f} s")
    if blocked[0].status == 200:
        assert "#EXT-X-ENDLIST" in blocked[0].text or f"seg{target}." in blocked[0].text
    # An ended playlist is a complete one: ffmpeg reads it to its end.
    res = subprocess.run(
        [tools.ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-i",
         f"http://127.0.0.1:{port}{hls('stream.m3u8')}", "-f", "null", "-"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert res.returncode == 0, tail(res.stderr.decode(errors="replace"))
    # Directives are ignored once ENDLIST is there (bis §6.2.5.2): no blocking.
    reply = get(server, hls("stream.m3u8") + f"?_HLS_msn={ended.last_msn + 2}&_HLS_part=0")
    assert reply.status == 200 and reply.elapsed < 0.5, (reply.status, reply.elapsed)

    # The publisher returns: the playlist goes on after a discontinuity.
    publish(procs, tools.ffmpeg, h264_source, server, name="publisher-again")
    again = wait_playlist(
        server,
        lambda p: not p.ended and any(s.msn > ended.last_msn and s.uri for s in p.segments),
        20,
        "new segments after the return",
    )
    assert "#EXT-X-ENDLIST" not in again.text and again.preload_hint is not None, again.text
    new = [s for s in again.segments if s.msn > ended.last_msn]
    assert new[0].discontinuity, f"no EXT-X-DISCONTINUITY before seg{new[0].msn}\n{again.text}"
    assert not any(s.discontinuity for s in new[1:]), again.text
    old_pdt = ended.segments[-1].program_date_time
    assert old_pdt is not None and new[0].program_date_time is not None
    assert new[0].program_date_time > old_pdt, again.text
    check_segments(tools, server, again, tmp_path)
    # And ffmpeg plays the live playlist across it.
    res = subprocess.run(
        [tools.ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-rw_timeout", "5000000",
         "-live_start_index", "0", "-i", f"http://127.0.0.1:{port}{hls('index.m3u8')}",
         "-t", "2", "-f", "null", "-"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert res.returncode == 0, tail(res.stderr.decode(errors="replace"))


# --------------------------------------------------------------------------- 3. blocking


def test_blocking_reload_returns_when_the_part_appears(live: Live) -> None:
    server = live.server
    pl = wait_playlist(server, lambda p: len(p.complete) >= 1, 20, "a segment")
    target = pl.last_msn + 1
    reply = get(server, hls("stream.m3u8") + f"?_HLS_msn={target}&_HLS_part=0")
    assert reply.status == 200, (reply.status, reply.text)
    got = parse_media(reply.text)
    assert any(p.msn == target for p in got.parts), f"part {target}.0 not in\n{reply.text}"
    # The open segment (about 1 s) had to finish first: bounded by a segment plus parts.
    assert reply.elapsed < 1.5, f"blocked {reply.elapsed:.2f} s"
    assert reply.content_type == MPEGURL and reply.headers.get("Cache-Control") == "no-cache"

    # A part of the current segment: blocks about one part target.
    now = playlist(server)
    last = [p for p in now.parts if p.msn == now.last_msn]
    reply = get(server, hls("stream.m3u8") + f"?_HLS_msn={now.last_msn}&_HLS_part={len(last)}")
    assert reply.status == 200 and reply.elapsed < 1.5, (reply.status, reply.elapsed)

    # Something already there answers at once.
    reply = get(server, hls("stream.m3u8") + f"?_HLS_msn={now.media_sequence}&_HLS_part=0")
    assert reply.status == 200 and reply.elapsed < 0.3, (reply.status, reply.elapsed)

    # Delta update (bis §6.2.5.1): a valid playlist that may skip old segments.
    reply = get(server, hls("stream.m3u8") + "?_HLS_skip=YES")
    assert reply.status == 200 and reply.text.startswith("#EXTM3U"), reply.text


def test_preload_hint_blocks_until_the_part_exists(live: Live) -> None:
    server = live.server
    pl = wait_playlist(server, lambda p: p.preload_hint is not None, 20, "a preload hint")
    hint = pl.preload_hint
    assert hint is not None and hint not in {p.uri for p in pl.parts}, pl.text
    # bis §6.2.6: the hinted part is requested before it exists; the server holds the
    # request until the part is complete, then sends it.
    reply = get(server, hls(hint))
    assert reply.status == 200 and reply.body, (reply.status, reply.text[:200])
    assert reply.content_type == "video/mp2t"
    assert reply.elapsed < 1.5, f"blocked {reply.elapsed:.2f} s"
    after = playlist(server)
    assert hint in {p.uri for p in after.parts}, f"{hint} not listed after it was served"
    assert get(server, hls(hint)).body == reply.body
    # A name that is neither there nor hinted is a 404 at once, not a wait.
    reply = get(server, hls(f"part{after.last_msn + 1}.3.ts"))
    assert reply.status == 404 and reply.elapsed < 0.5, (reply.status, reply.elapsed)


def test_bad_requests(live: Live) -> None:
    server = live.server
    pl = wait_playlist(server, lambda p: len(p.complete) >= 1, 20, "a segment")
    stream = hls("stream.m3u8")
    quick = 0.5

    def refused(path: str, status: int) -> Reply:
        reply = get(server, path)
        assert reply.status == status, (path[:120], reply.status, reply.text[:200])
        assert reply.elapsed < quick, (path[:120], reply.elapsed)
        return reply

    # bis §6.2.5.2: more than two segments ahead, a part without a segment.
    refused(f"{stream}?_HLS_msn={pl.last_msn + 10}", 400)
    refused(f"{stream}?_HLS_msn={pl.last_msn + 3}&_HLS_part=0", 400)
    refused(f"{stream}?_HLS_part=0", 400)
    refused(f"{stream}?_HLS_msn={pl.last_msn}&_HLS_part=500", 400)
    # Malformed and huge values.
    for query in (
        "_HLS_msn=abc", "_HLS_msn=-1", "_HLS_msn=1.5", "_HLS_msn=", "_HLS_msn=%EF%BC%91",
        "_HLS_msn=" + "9" * 5000, "_HLS_msn=1&_HLS_msn=2", "_HLS_skip=NO",
        "_HLS_msn=0&_HLS_part=x", "x=" + "a" * 4000,
        "&".join(f"k{i}=v" for i in range(500)),
    ):  # fmt: skip
        refused(f"{stream}?{query}", 400)
    # A request line past aiohttp's limit is refused too (by the HTTP layer).
    assert get(server, f"{stream}?x={'a' * 20000}").status in (400, 414, 431)
    # Unknown channels, segments, names and attempts to leave /hls/.
    for path in (
        hls("index.m3u8", "nochannel"), hls("stream.m3u8", "nochannel"),
        hls("seg0.ts", "nochannel"), hls("seg999999.ts"), hls("part999999.0.ts"),
        hls("init1.mp4"), hls("seg0.m4s"), hls("seg1.mp4"), hls("x.ts"),
        hls("..%2F..%2Fpyproject.toml"), hls("%2e%2e"), "/hls/..%2Fchan/stream.m3u8",
        "/hls/chan/..%2f..%2f..%2fetc%2fpasswd", hls("stream.m3u8", "a" * 300),
        hls("stream.m3u8", "bad%00name"), hls("seg1.ts%00.m3u8"),
    ):  # fmt: skip
        reply = refused(path, 404)
        assert reply.headers.get("Access-Control-Allow-Origin") == "*", path
        assert b"root:" not in reply.body and b"[project]" not in reply.body
    # The server is still well.
    assert get(server, hls("index.m3u8")).status == 200


async def _blocking_storm(
    base: str, target: int, count: int, deadline: float
) -> list[tuple[int, float]]:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=deadline + 5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(query: str) -> tuple[int, float]:
            started = time.monotonic()
            async with session.get(f"{base}/stream.m3u8?{query}") as response:
                await response.read()
                return response.status, time.monotonic() - started

        tasks = [asyncio.create_task(one(f"_HLS_msn={target}&client={i}")) for i in range(count)]
        await asyncio.sleep(0.3)  # all of them blocked by now
        # Meanwhile the server answers others at once.
        started = time.monotonic()
        async with session.get(f"{base}/index.m3u8") as response:
            assert response.status == 200
        meanwhile = time.monotonic() - started
        assert meanwhile < 1.0, f"index.m3u8 took {meanwhile:.2f} s under {count} blocked requests"
        return await asyncio.gather(*tasks)


def test_many_concurrent_blocking_requests(live: Live) -> None:
    server = live.server
    pl = wait_playlist(server, lambda p: len(p.complete) >= 1, 20, "a segment")
    td = pl.target_duration or 1
    base = f"http://127.0.0.1:{server.ports['--http-port']}/hls/{CHANNEL}"
    count = 500
    results = asyncio.run(_blocking_storm(base, pl.last_msn + 1, count, 3 * td + 1))
    statuses = [status for status, _ in results]
    slowest = max(elapsed for _, elapsed in results)
    assert statuses.count(200) == count, {s: statuses.count(s) for s in set(statuses)}
    assert slowest < 3 * td + 1, f"slowest blocked request {slowest:.2f} s"
    # They did wait for the segment (it takes about a second to come).
    assert min(elapsed for _, elapsed in results) > 0.3, sorted(e for _, e in results)[:5]
    assert get(server, hls("stream.m3u8")).elapsed < 0.5
