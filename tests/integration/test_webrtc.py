"""WHEP and WHIP end to end with aiortc as the independent peer (its own process), ffmpeg
publishing and reading RTMP, ffprobe reading HLS (issue 6, "Proof" and "Bad input")."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from bridge.whip import aiortc_hooks

from .helpers import ProcGroup, Server, Tools, wait_until
from .test_callback_auth import RTMP_HOST, SECRET, SUBJECT, CallbackBackend
from .webrtc_helpers import (
    FPS,
    api_channel,
    api_sessions,
    base_url,
    live_publisher,
    peer_argv,
    request,
    run_peer,
    webrtc_server,
)

pytestmark = pytest.mark.timeout(90)

CHANNEL, KEY = "cam", "secret"
SDP = {"Content-Type": "application/sdp"}


def wait_live(server: Server, channel: str = CHANNEL, timeout: float = 15) -> None:
    def live() -> bool:
        reply = request(f"{base_url(server)}/api/v1/channels/{channel}")
        return reply.status == 200 and json.loads(reply.body)["live"]

    assert wait_until(live, timeout, 0.1), f"{channel} not live\n{server.diagnostics()}"


def check_playback(result: dict, seconds: float, what: str) -> None:  # type: ignore[type-arg]
    assert result["status"] == 201, result
    assert result["codec"] == "H264" and result["audio_codec"] == "opus", result
    assert result["answer_hosts"] == ["127.0.0.1"], result
    assert result["first_frame_ms"] is not None and result["first_frame_ms"] < 1500, result
    watched = seconds - result["first_frame_ms"] / 1000
    # The GOP burst adds frames; what matters is that at least 95% of the live ones came.
    assert result["video_frames"] >= 0.95 * FPS * watched, (what, result["video_frames"], watched)
    assert result["max_gap_ms"] < 500, f"{what}: a {result['max_gap_ms']:.0f} ms freeze"
    assert result["audio_frames"] >= 0.8 * 50 * watched, (what, result["audio_frames"])
    assert result["delete_status"] == 200


def test_whep_passthrough_and_transcoded(procs: ProcGroup, tools: Tools) -> None:
    server = webrtc_server(procs)
    whep = f"{base_url(server)}/whep/{CHANNEL}"
    first = live_publisher(procs, tools, server.url(CHANNEL, KEY), bframes=0)
    wait_live(server)
    # Before anyone watches, the API already says how WebRTC viewers would get it.
    assert wait_until(lambda: (api_channel(server, CHANNEL)["webrtc"] or {}).get("audio"), 5)
    unwatched = api_channel(server, CHANNEL)["webrtc"]
    assert (unwatched["viewers"], unwatched["video"]) == (0, "passthrough"), unwatched
    viewer = procs.start("whep-viewer", peer_argv("whep", whep, "--seconds", "5"))
    assert wait_until(lambda: api_channel(server, CHANNEL)["webrtc"]["viewers"] == 1, 10, 0.1)
    path = api_channel(server, CHANNEL)["webrtc"]
    assert path == {
        "viewers": 1,
        "video": "passthrough",
        "audio": "aac-to-opus",
        "video_codec": "h264",
        "audio_codec": "aac",
        "keyframe_requests": path["keyframe_requests"],
    }, path
    assert api_channel(server, CHANNEL)["readers"] == 1
    assert viewer.wait(30) == 0, viewer.diagnostics()
    check_playback(json.loads(viewer.stdout_text()), 5, "passthrough")
    assert wait_until(lambda: api_channel(server, CHANNEL)["webrtc"]["viewers"] == 0, 5, 0.1)

    # The same channel published again with B-frames: re-encoded once for the channel.
    first.stop()
    live_publisher(procs, tools, server.url(CHANNEL, KEY), bframes=3, name="publisher-b")
    time.sleep(1.5)
    wait_live(server)
    assert wait_until(
        lambda: (api_channel(server, CHANNEL)["webrtc"] or {}).get("video") == "transcode", 5
    ), api_channel(server, CHANNEL)
    viewer = procs.start("whep-viewer-b", peer_argv("whep", whep, "--seconds", "6"))
    assert wait_until(lambda: api_channel(server, CHANNEL)["webrtc"]["viewers"] == 1, 10, 0.1)
    assert api_channel(server, CHANNEL)["webrtc"]["video"] == "transcode"
    assert viewer.wait(30) == 0, viewer.diagnostics()
    check_playback(json.loads(viewer.stdout_text()), 6, "transcoded")
    assert "Traceback" not in server.stderr_text(), server.diagnostics()


def test_whep_many_viewers_share_one_feed(procs: ProcGroup, tools: Tools) -> None:
    server = webrtc_server(procs)
    live_publisher(procs, tools, server.url(CHANNEL, KEY))
    wait_live(server)
    whep = f"{base_url(server)}/whep/{CHANNEL}"
    viewers = [
        procs.start(f"viewer-{i}", peer_argv("whep", whep, "--seconds", "4")) for i in range(3)
    ]
    assert wait_until(
        lambda: (api_channel(server, CHANNEL)["webrtc"] or {}).get("viewers") == 3, 15, 0.1
    ), server.diagnostics()
    protocols = [s["protocol"] for s in api_sessions(server)]
    assert protocols.count("whep") == 3, protocols
    for viewer in viewers:
        assert viewer.wait(30) == 0, viewer.diagnostics()
        check_playback(json.loads(viewer.stdout_text()), 4, viewer.name)


def ffprobe_packets(tools: Tools, url: str, seconds: float) -> list[dict]:  # type: ignore[type-arg]
    ffprobe = tools.ffmpeg.replace("ffmpeg", "ffprobe")
    result = subprocess.run(
        [
            ffprobe,
            "-hide_banner",
            "-loglevel",
            "error",
            "-read_intervals",
            f"%+{seconds}",
            "-show_packets",
            "-show_streams",
            "-of",
            "json",
            url,
        ],  # fmt: skip
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    parsed = json.loads(result.stdout)
    return [parsed]


def hls_codecs(tools: Tools, base: str) -> list[str]:
    """The codecs ffprobe finds in the channel's HLS, once its playlist has a whole segment
    (before that a live playlist may offer a reader nothing to read)."""
    assert wait_until(
        lambda: "#EXTINF" in request(f"{base}/hls/{CHANNEL}/stream.m3u8").text, 15, 0.2
    ), request(f"{base}/hls/{CHANNEL}/stream.m3u8").text
    [probe] = ffprobe_packets(tools, f"{base}/hls/{CHANNEL}/index.m3u8", 3)
    return sorted(s["codec_name"] for s in probe["streams"])


@pytest.mark.parametrize(
    ("codec", "offer"), [("h264", "with candidates"), ("vp8", "without candidates (as OBS)")]
)
def test_whip_publish_read_over_rtmp_and_hls(
    procs: ProcGroup, tools: Tools, codec: str, offer: str
) -> None:
    server = webrtc_server(procs)
    whip = f"{base_url(server)}/whip/{CHANNEL}"
    extra = ["--no-candidates"] if offer.startswith("without") else []
    publisher = procs.start(
        "whip",
        peer_argv("whip", whip, "--token", KEY, "--codec", codec, "--seconds", "12", *extra),
    )
    wait_live(server)
    [probe] = ffprobe_packets(tools, server.url(CHANNEL, KEY), 5)
    streams = {s["codec_type"]: s for s in probe["streams"]}
    assert streams["video"]["codec_name"] == "h264", streams
    assert streams["audio"]["codec_name"] == "aac", streams
    assert streams["audio"]["sample_rate"] == "48000"
    if codec == "vp8":
        assert streams["video"]["profile"] == "Constrained Baseline", streams["video"]
    video = [p for p in probe["packets"] if p["codec_type"] == "video"]
    assert len(video) >= 0.9 * FPS * 4, len(video)
    keyframes = [float(p["pts_time"]) for p in video if "K" in p["flags"]]
    assert keyframes, "no keyframe reached the RTMP reader"
    gaps = [b - a for a, b in zip(keyframes, keyframes[1:], strict=False)]
    # Browsers send keyframes only when asked; the server asks so one comes every 2 s.
    assert all(gap <= 2.1 for gap in gaps), f"keyframes too far apart: {gaps}"

    codecs = hls_codecs(tools, base_url(server))
    assert codecs == ["aac", "h264"], codecs
    # The ingest announces its tracks, so HLS starts with both (not audio-only, then again).
    playlist = request(f"{base_url(server)}/hls/{CHANNEL}/stream.m3u8").text
    assert "#EXT-X-DISCONTINUITY" not in playlist.splitlines(), playlist

    assert publisher.wait(30) == 0, publisher.diagnostics()
    result = json.loads(publisher.stdout_text())
    assert result["status"] == 201 and result["connection"] == "connected", result
    assert result["codec"] == codec.upper()
    assert result["delete_status"] == 200
    # DELETE ended the publish: the channel is no longer live.
    assert wait_until(lambda: not api_channel(server, CHANNEL)["live"], 5, 0.1)
    assert "Traceback" not in server.stderr_text(), server.diagnostics()


def test_whip_goes_through_the_publish_callback(procs: ProcGroup) -> None:
    backend = CallbackBackend()
    backend.start()
    try:
        server = webrtc_server(
            procs,
            "--callback-url", backend.url,
            "--jwt-secret", SECRET,
            "--custom-jwt-subject", SUBJECT,
            "--rtmp-host", RTMP_HOST,
        )  # fmt: skip
        backend.rtmp_port = server.port
        whip = f"{base_url(server)}/whip/{CHANNEL}"
        refused = run_peer("whip", whip, "--token", "bad", "--seconds", "1")
        assert refused["status"] == 403, refused
        [start] = backend.events("start", CHANNEL)
        assert start.answer == 403 and start.claims["key"] == "bad"

        accepted = run_peer("whip", whip, "--token", "good", "--seconds", "3")
        assert accepted["status"] == 201 and accepted["connection"] == "connected", accepted
        assert wait_until(lambda: bool(backend.events("stop")), 5), backend.diagnostics()
        time.sleep(1.0)  # a duplicate stop would come now
        [stop] = backend.events("stop")
        good = [e for e in backend.events("start", CHANNEL) if e.answer == 200]
        assert stop.claims["stream_id"] == good[0].stream_id
        assert f"publishing (stream id {good[0].stream_id})" in server.stderr_text()
    finally:
        backend.close()


# ---------------------------------------------------------------------------- bad input


async def make_offer(direction: str = "recvonly") -> str:
    aiortc_hooks.install_ice_policy(aiortc_hooks.IcePolicy(addresses=("127.0.0.1",)))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction=direction)
    pc.addTransceiver("audio", direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


ICE_SERVERS = "stun:stun.example.net:3478,turn:turn.example.net:3478?transport=udp|user|pass"
PUBLIC_IP = "203.0.113.9"  # a documentation address: announced, never contacted by the server


def test_bad_requests_get_clear_errors(procs: ProcGroup, tools: Tools) -> None:
    server = webrtc_server(
        procs,
        "--webrtc-udp-ports", "41500-41520",
        "--webrtc-public-ips", PUBLIC_IP,
        "--webrtc-ice-servers", ICE_SERVERS,
    )  # fmt: skip
    base = base_url(server)
    offer = asyncio.run(make_offer()).encode()
    publish = asyncio.run(make_offer("sendonly")).encode()

    # Not live: 409 with Retry-After (the WHEP draft's "try again").
    reply = request(f"{base}/whep/{CHANNEL}", "POST", offer, SDP)
    assert reply.status == 409 and reply.headers.get("Retry-After"), reply
    live_publisher(procs, tools, server.url(CHANNEL, KEY))
    wait_live(server)

    cases = [
        ("garbage", f"{base}/whep/{CHANNEL}", b"\x00\xffnot sdp", SDP, 400),
        ("huge", f"{base}/whep/{CHANNEL}", b"v=0\r\n" + b"a=x\r\n" * 40000, SDP, 413),
        ("content type", f"{base}/whep/{CHANNEL}", offer, {"Content-Type": "text/plain"}, 415),
        ("no content type", f"{base}/whep/{CHANNEL}", offer, {}, 415),
        ("bad channel", f"{base}/whep/no%20spaces", offer, SDP, 400),
        (
            "VP8 only",
            f"{base}/whep/{CHANNEL}",
            offer.replace(b"H264/90000", b"VP9/90000"),
            SDP,
            422,
        ),
        ("no key", f"{base}/whip/other", publish, SDP, 401),
        ("bad key", f"{base}/whip/other", publish, {**SDP, "Authorization": "Bearer a/b"}, 403),
        ("recvonly", f"{base}/whip/other", offer, {**SDP, "Authorization": "Bearer x"}, 422),
        ("taken", f"{base}/whip/{CHANNEL}", publish, {**SDP, "Authorization": "Bearer x"}, 409),
    ]
    for name, url, body, headers, status in cases:
        reply = request(url, "POST", body, headers)
        assert reply.status == status, (name, reply.status, reply.text)
        assert reply.headers.get("Access-Control-Allow-Origin") == "*", name

    # A real session; its URL is unguessable, and only its own path reaches it.
    reply = request(f"{base}/whep/{CHANNEL}", "POST", offer, SDP)
    assert reply.status == 201, reply.text
    location = reply.headers["Location"]
    assert location.startswith(f"/whep/{CHANNEL}/") and len(location.rsplit("/", 1)[1]) >= 40
    # Host candidates on the UDP port range, the public IP announced on the same port, and
    # the ICE servers for the client in Link headers.
    candidates = {
        tuple(line.split()[4:6])
        for line in reply.text.splitlines()
        if line.startswith("a=candidate:")  # every m-line lists the BUNDLE transport's
    }
    assert sorted(host for host, _ in candidates) == ["127.0.0.1", PUBLIC_IP], candidates
    [port] = {port for _, port in candidates}
    assert 41500 <= int(port) <= 41520
    links = reply.headers["Link"]
    assert '<stun:stun.example.net:3478>; rel="ice-server"' in links, links
    assert 'username="user"' in links and 'credential="pass"' in links, links
    token = location.rsplit("/", 1)[1]
    frag = {"Content-Type": "application/trickle-ice-sdpfrag"}
    for url, method in [
        (f"{base}/whep/other/{token}", "DELETE"),
        (f"{base}/whip/{CHANNEL}/{token}", "DELETE"),
        (f"{base}/whep/{CHANNEL}/{'x' * 43}", "DELETE"),
        (f"{base}/whep/{CHANNEL}/{'x' * 43}", "PATCH"),
    ]:
        assert request(url, method, b"", frag).status == 404, (url, method)
    assert request(f"{base}{location}", "PATCH", b"junk", SDP).status == 415
    good_frag = (
        b"a=ice-ufrag:zzzz\r\na=ice-pwd:zzzzzzzzzzzzzzzzzzzzzz\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
        b"a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
    )
    restart = request(f"{base}{location}", "PATCH", good_frag, frag)
    assert restart.status == 422, restart.text  # a new ufrag is an ICE restart
    wrong_etag = request(f"{base}{location}", "PATCH", b"", {**frag, "If-Match": '"nope"'})
    assert wrong_etag.status == 412
    assert request(f"{base}{location}", "DELETE").status == 200
    assert request(f"{base}{location}", "DELETE").status == 404

    # CORS: a preflight gets no Link; the endpoint advertises what it takes.
    pre = request(
        f"{base}/whep/{CHANNEL}",
        "OPTIONS",
        headers={"Origin": "http://example.test", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status == 204 and "Link" not in pre.headers
    plain = request(f"{base}/whep/{CHANNEL}", "OPTIONS")
    assert plain.status == 204 and "turn:turn.example.net" in plain.headers["Link"]
    assert "Location" in pre.headers["Access-Control-Expose-Headers"]
    assert pre.headers["Accept-Post"] == "application/sdp"
    assert "Traceback" not in server.stderr_text(), server.diagnostics()


def test_half_open_sessions_are_bounded_and_expire(procs: ProcGroup, tools: Tools) -> None:
    server = webrtc_server(
        procs, "--webrtc-max-sessions", "12", "--webrtc-connect-timeout-seconds", "2"
    )
    base = base_url(server)
    offer = asyncio.run(make_offer()).encode()
    live_publisher(procs, tools, server.url(CHANNEL, KEY))
    wait_live(server)
    statuses = [request(f"{base}/whep/{CHANNEL}", "POST", offer, SDP).status for _ in range(30)]
    assert statuses.count(201) == 12 and statuses.count(503) == 18, statuses
    assert len([s for s in api_sessions(server) if s["protocol"] == "whep"]) == 12
    # Nobody connects: every one is closed after the connect timeout.
    assert wait_until(
        lambda: not [s for s in api_sessions(server) if s["protocol"] == "whep"], 8, 0.2
    ), api_sessions(server)
    assert server.stderr_text().count("did not connect within 2 s") == 12
    # And a real viewer still gets in.
    result = run_peer("whep", f"{base}/whep/{CHANNEL}", "--seconds", "3")
    check_playback(result, 3, "after the flood")
    assert "Traceback" not in server.stderr_text(), server.diagnostics()


def test_per_ip_limit_counts_webrtc_sessions(procs: ProcGroup, tools: Tools) -> None:
    server = webrtc_server(procs, "--max-ip-concurrent-connections", "2")
    base = base_url(server)
    offer = asyncio.run(make_offer()).encode()
    # The publisher is one connection from 127.0.0.1; one WHEP session fits, the next not.
    live_publisher(procs, tools, server.url(CHANNEL, KEY))
    wait_live(server)
    assert request(f"{base}/whep/{CHANNEL}", "POST", offer, SDP).status == 201
    refused = request(f"{base}/whep/{CHANNEL}", "POST", offer, SDP)
    assert refused.status == 429, refused.text


def whip_bytes_in(server: Server) -> int:
    return sum(s["bytes_in"] for s in api_sessions(server) if s["protocol"] == "whip")


def test_whip_publisher_that_vanishes_or_is_kicked_ends_its_publish(procs: ProcGroup) -> None:
    server = webrtc_server(procs)
    whip = f"{base_url(server)}/whip/{CHANNEL}"
    # Killed without a DELETE: no more media, then no consent; the publish ends on its own.
    gone = procs.start("whip-killed", peer_argv("whip", whip, "--token", KEY, "--seconds", "30"))
    assert wait_until(lambda: whip_bytes_in(server) > 0, 15, 0.1), server.diagnostics()
    gone.stop(sig=9)
    started = time.monotonic()
    assert wait_until(lambda: not api_channel(server, CHANNEL)["live"], 20, 0.2), (
        server.diagnostics()
    )
    assert time.monotonic() - started < 15
    assert "publisher sent nothing for 10 s" in server.stderr_text() or (
        "ICE or DTLS failed" in server.stderr_text()
    ), server.diagnostics()

    # Kicked through the API: the session ends, and so does the peer's connection.
    kicked = procs.start("whip-kicked", peer_argv("whip", whip, "--token", KEY, "--seconds", "20"))
    assert wait_until(lambda: whip_bytes_in(server) > 0, 15, 0.1), server.diagnostics()
    [session] = [s for s in api_sessions(server) if s["protocol"] == "whip"]
    assert session["role"] == "publisher" and session["bytes_in"] > 0, session
    reply = request(f"{base_url(server)}/api/v1/sessions/{session['id']}", "DELETE")
    assert reply.status in (200, 202, 204), reply.text
    assert wait_until(lambda: not api_channel(server, CHANNEL)["live"], 5, 0.1)
    assert kicked.wait(30) == 0, kicked.diagnostics()
    result = json.loads(kicked.stdout_text())
    assert result["connection"] in ("closed", "failed"), result
    assert "Traceback" not in server.stderr_text(), server.diagnostics()


def test_ffmpeg_whip_muxer_publishes(procs: ProcGroup, tools: Tools) -> None:
    """FFmpeg's own WHIP client (the muxer of FFmpeg 8+, here the imageio-ffmpeg build):
    H.264 High (not a profile aiortc knows by itself) and Opus, read back over RTMP."""
    server = webrtc_server(procs)
    argv = [
        tools.modern_ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate={FPS}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "20",
        "-c:v", "libx264", "-profile:v", "high", "-bf", "0", "-g", str(2 * FPS),
        "-preset", "veryfast", "-b:v", "1M", "-c:a", "libopus", "-ar", "48000", "-ac", "2",
        "-f", "whip", "-authorization", KEY, f"{base_url(server)}/whip/{CHANNEL}",
    ]  # fmt: skip
    publisher = procs.start("ffmpeg-whip", argv)
    assert wait_until(lambda: whip_bytes_in(server) > 0, 15, 0.1), (
        server.diagnostics() + publisher.diagnostics()
    )
    [probe] = ffprobe_packets(tools, server.url(CHANNEL, KEY), 4)
    streams = {s["codec_type"]: s for s in probe["streams"]}
    assert streams["video"]["codec_name"] == "h264" and streams["video"]["profile"] == "High"
    assert streams["audio"]["codec_name"] == "aac"
    video = [p for p in probe["packets"] if p["codec_type"] == "video"]
    assert len(video) >= 0.9 * FPS * 3, len(video)
    publisher.stop(sig=2)  # ffmpeg sends DELETE on its way out
    assert wait_until(lambda: not api_channel(server, CHANNEL)["live"], 12, 0.1), (
        server.diagnostics()
    )
    assert "Traceback" not in server.stderr_text(), server.diagnostics()


def test_whep_viewer_stays_through_a_publisher_restart(procs: ProcGroup, tools: Tools) -> None:
    """A publisher that comes back within UNPUBLISH_GRACE_SECONDS keeps its WHEP viewers,
    whose timestamps keep going forward; after the grace they are closed."""
    server = webrtc_server(procs, "--unpublish-grace-seconds", "4")
    whep = f"{base_url(server)}/whep/{CHANNEL}"
    first = live_publisher(procs, tools, server.url(CHANNEL, KEY), name="publisher-1")
    wait_live(server)
    viewer = procs.start("viewer", peer_argv("whep", whep, "--seconds", "10"))
    assert wait_until(lambda: (api_channel(server, CHANNEL)["webrtc"] or {}).get("viewers"), 10)
    time.sleep(3)
    first.stop()
    time.sleep(1)
    second = live_publisher(procs, tools, server.url(CHANNEL, KEY), name="publisher-2")
    assert viewer.wait(30) == 0, viewer.diagnostics()
    result = json.loads(viewer.stdout_text())
    assert result["connection"] == "connected" and result["delete_status"] == 200, result
    pts = result["video_pts"]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False)), "timestamps went back"
    # About 1.5 s without media (the stop, the gap, the new publisher's start), then more.
    assert result["video_frames"] >= 0.8 * FPS * (10 - 2.5), result["video_frames"]

    # Now the publisher leaves for good: after the grace the viewer's session is closed.
    viewer = procs.start("viewer-2", peer_argv("whep", whep, "--seconds", "9"))
    assert wait_until(lambda: (api_channel(server, CHANNEL)["webrtc"] or {}).get("viewers"), 10)
    second.stop()
    assert wait_until(
        lambda: not [s for s in api_sessions(server) if s["protocol"] == "whep"], 8, 0.2
    ), api_sessions(server)
    assert "the channel's publisher is gone" in server.stderr_text()
    assert viewer.wait(30) == 0, viewer.diagnostics()
