"""WHIP/WHEP SDP gate: realistic offers from Chromium, OBS and FFmpeg, refusals with the right
HTTP status, trickle fragments, ICE-server settings and Link headers, answer bitrate hints.

The offers below are written in the shape each client produces (line order, attribute set,
payload-type numbering); identifiers, keys and addresses are made up. Whatever parse_offer
accepts is also fed to aiortc's own parser, which is what the gate exists to protect.
"""

from __future__ import annotations

import re

import pytest
from aiortc.sdp import SessionDescription
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.whip.sdp import (
    MAX_SDP_BYTES,
    MAX_SDPFRAG_BYTES,
    IceServer,
    Offer,
    SdpError,
    SdpFrag,
    TrickleCandidate,
    add_bitrate_hints,
    check_content_type,
    etag,
    link_headers,
    parse_ice_servers,
    parse_offer,
    parse_sdpfrag,
    session_url_token,
)

FP = "sha-256 " + ":".join(f"{b:02X}" for b in bytes.fromhex("7b3e" * 16))


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# ----------------------------------------------------------------------------- offers

# A WHEP player in Chromium: addTransceiver("video"/"audio", {direction: "recvonly"}).
CHROME_WHEP = f"""v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107 108 109 127 125 39 40 45 46 98 99 100 101 112 113 116 117 118
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Hn2V
a=ice-pwd:5GBu0dqLhFfQYZy6ZbXcUrEd
a=ice-options:trickle
a=fingerprint:{FP}
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:toffset
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 urn:3gpp:video-orientation
a=extmap:4 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type
a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing
a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space
a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:102 H264/90000
a=rtcp-fb:102 goog-remb
a=rtcp-fb:102 transport-cc
a=rtcp-fb:102 ccm fir
a=rtcp-fb:102 nack
a=rtcp-fb:102 nack pli
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rtpmap:104 H264/90000
a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f
a=rtpmap:105 rtx/90000
a=fmtp:105 apt=104
a=rtpmap:106 H264/90000
a=rtcp-fb:106 nack
a=rtcp-fb:106 nack pli
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:107 rtx/90000
a=fmtp:107 apt=106
a=rtpmap:108 H264/90000
a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f
a=rtpmap:109 rtx/90000
a=fmtp:109 apt=108
a=rtpmap:127 H264/90000
a=fmtp:127 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f
a=rtpmap:125 rtx/90000
a=fmtp:125 apt=127
a=rtpmap:39 H264/90000
a=fmtp:39 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=4d001f
a=rtpmap:40 rtx/90000
a=fmtp:40 apt=39
a=rtpmap:45 AV1/90000
a=fmtp:45 level-idx=5;profile=0;tier=0
a=rtpmap:46 rtx/90000
a=fmtp:46 apt=45
a=rtpmap:98 VP9/90000
a=fmtp:98 profile-id=0
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:100 VP9/90000
a=fmtp:100 profile-id=2
a=rtpmap:101 rtx/90000
a=fmtp:101 apt=100
a=rtpmap:112 H264/90000
a=fmtp:112 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f
a=rtpmap:113 rtx/90000
a=fmtp:113 apt=112
a=rtpmap:116 red/90000
a=rtpmap:117 rtx/90000
a=fmtp:117 apt=116
a=rtpmap:118 ulpfec/90000
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Hn2V
a=ice-pwd:5GBu0dqLhFfQYZy6ZbXcUrEd
a=ice-options:trickle
a=fingerprint:{FP}
a=setup:actpass
a=mid:1
a=extmap:14 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:4 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
"""

# A WHIP publisher in Chromium (getUserMedia + addTransceiver sendonly), after gathering:
# VP8 first, as Chromium orders it, with a host and an mDNS candidate.
CHROME_WHIP = f"""v=0
o=- 8251212539377440124 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS 3f1c9a2e-5b7d-4e8f-9a01-b2c3d4e5f607
m=audio 46243 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 192.0.2.10
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:1467250027 1 udp 2122260223 192.0.2.10 46243 typ host generation 0 network-id 1 network-cost 10
a=candidate:3012357781 1 udp 2122194687 7c4b6f1e-2a3d-4e5f-8a9b-0c1d2e3f4a5b.local 51874 typ host generation 0 network-id 2
a=ice-ufrag:kP0x
a=ice-pwd:Jw9mR2u4TqLp8sVd3eXa7yZb
a=ice-options:trickle
a=fingerprint:{FP}
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendonly
a=msid:3f1c9a2e-5b7d-4e8f-9a01-b2c3d4e5f607 0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:2719563830 cname:Qx7bT2mZ9wLk4vRs
a=ssrc:2719563830 msid:3f1c9a2e-5b7d-4e8f-9a01-b2c3d4e5f607 0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 106 107 116 117 118
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:kP0x
a=ice-pwd:Jw9mR2u4TqLp8sVd3eXa7yZb
a=ice-options:trickle
a=fingerprint:{FP}
a=setup:actpass
a=mid:1
a=extmap:14 urn:ietf:params:rtp-hdrext:toffset
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendonly
a=msid:3f1c9a2e-5b7d-4e8f-9a01-b2c3d4e5f607 6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:102 H264/90000
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rtpmap:106 H264/90000
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:107 rtx/90000
a=fmtp:107 apt=106
a=rtpmap:116 red/90000
a=rtpmap:117 rtx/90000
a=fmtp:117 apt=116
a=rtpmap:118 ulpfec/90000
a=ssrc-group:FID 1946201334 3370410586
a=ssrc:1946201334 cname:Qx7bT2mZ9wLk4vRs
a=ssrc:1946201334 msid:3f1c9a2e-5b7d-4e8f-9a01-b2c3d4e5f607 6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d
a=ssrc:3370410586 cname:Qx7bT2mZ9wLk4vRs
a=ssrc:3370410586 msid:3f1c9a2e-5b7d-4e8f-9a01-b2c3d4e5f607 6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d
"""

# OBS (libdatachannel): no candidates at all, ICE credentials, fingerprint and setup at
# session level, one H.264 and one Opus payload type.
OBS_WHIP = f"""v=0
o=rtc 2371587917 0 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=group:LS 0 1
a=msid-semantic:WMS *
a=setup:actpass
a=ice-ufrag:Gq+/
a=ice-pwd:s0l3jQ8yY2bq7Zp1mN4xV9cA
a=ice-options:ice2,trickle
a=fingerprint:{FP}
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=mid:0
a=sendonly
a=ssrc:1204311934 cname:obs-studio
a=ssrc:1204311934 msid:obs-studio obs-audio
a=msid:obs-studio obs-audio
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;maxaveragebitrate=96000;stereo=1;sprop-stereo=1;useinbandfec=1
m=video 9 UDP/TLS/RTP/SAVPF 96
c=IN IP4 0.0.0.0
a=mid:1
a=sendonly
a=ssrc:2811465290 cname:obs-studio
a=ssrc:2811465290 msid:obs-studio obs-video
a=msid:obs-studio obs-video
a=rtcp-mux
a=rtpmap:96 H264/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 goog-remb
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1
"""

# FFmpeg 8 `-f whip`: setup:passive (the server must be the DTLS client), PT 111 Opus and
# PT 106 H.264, everything per m-line, no candidates.
FFMPEG_WHIP = f"""v=0
o=FFmpeg 4489045141692799359 2 IN IP4 127.0.0.1
s=FFmpegPublishSession
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=ice-ufrag:5d2f8a1c
a=ice-pwd:3b9e7c4a1f6d2e8b5a0c9f7e3d1b6a4c
a=fingerprint:{FP}
a=setup:passive
a=mid:0
a=sendonly
a=msid:FFmpeg audio
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=ssrc:3419871104 cname:FFmpeg
a=ssrc:3419871104 msid:FFmpeg audio
m=video 9 UDP/TLS/RTP/SAVPF 106
c=IN IP4 0.0.0.0
a=ice-ufrag:5d2f8a1c
a=ice-pwd:3b9e7c4a1f6d2e8b5a0c9f7e3d1b6a4c
a=fingerprint:{FP}
a=setup:passive
a=mid:1
a=sendonly
a=msid:FFmpeg video
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:106 H264/90000
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=ssrc:1287430957 cname:FFmpeg
a=ssrc:1287430957 msid:FFmpeg video
"""

REAL_OFFERS = {
    "chrome-whep": (CHROME_WHEP, "whep"),
    "chrome-whip": (CHROME_WHIP, "whip"),
    "obs-whip": (OBS_WHIP, "whip"),
    "ffmpeg-whip": (FFMPEG_WHIP, "whip"),
}


def aiortc_accepts(offer: Offer) -> None:
    """aiortc's parser must take what we let through (it is what the gate protects)."""
    desc = SessionDescription.parse(offer.sdp)
    assert [m.kind for m in desc.media] == [m.kind for m in offer.media]


# (name, sdp, role, per m-line: (kind, mid, direction, codecs, port, ice_ufrag, setup))
ACCEPTED = [
    (
        "chrome-whep",
        CHROME_WHEP,
        "whep",
        [
            ("video", "0", "recvonly", ("vp8", "rtx", "h264", "av1", "vp9", "red", "ulpfec"), 9, "Hn2V", "actpass"),
            ("audio", "1", "recvonly", ("opus", "red", "g722", "pcmu", "pcma", "cn", "telephone-event"), 9, "Hn2V", "actpass"),
        ],
    ),
    (
        "chrome-whip",
        CHROME_WHIP,
        "whip",
        [
            ("audio", "0", "sendonly", ("opus", "red", "g722", "pcmu", "pcma", "cn", "telephone-event"), 46243, "kP0x", "actpass"),
            ("video", "1", "sendonly", ("vp8", "rtx", "h264", "red", "ulpfec"), 9, "kP0x", "actpass"),
        ],
    ),
    (
        "obs-whip",
        OBS_WHIP,
        "whip",
        [
            ("audio", "0", "sendonly", ("opus",), 9, "Gq+/", "actpass"),
            ("video", "1", "sendonly", ("h264",), 9, "Gq+/", "actpass"),
        ],
    ),
    (
        "ffmpeg-whip",
        FFMPEG_WHIP,
        "whip",
        [
            ("audio", "0", "sendonly", ("opus",), 9, "5d2f8a1c", "passive"),
            ("video", "1", "sendonly", ("h264",), 9, "5d2f8a1c", "passive"),
        ],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("sdp", "role", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
def test_real_offers_are_accepted(sdp: str, role: str, expected: list[tuple]) -> None:
    for body in (crlf(sdp), sdp.encode()):  # CRLF as sent; bare LF is tolerated
        offer = parse_offer(body, role=role)
        got = [
            (m.kind, m.mid, m.direction, m.codecs, m.port, m.ice_ufrag, m.setup)
            for m in offer.media
        ]
        assert got == expected
        assert offer.has_fingerprint
        assert all(m.rtcp_mux and m.ice_pwd for m in offer.media)
        assert offer.sdp == crlf(sdp).decode()
        aiortc_accepts(offer)


def test_offer_details() -> None:
    offer = parse_offer(crlf(CHROME_WHEP), role="whep")
    video = offer.section("video")
    assert video is not None and video.mid == "0"
    h264 = [f for f in video.formats if f.name == "h264"]
    assert [f.pt for f in h264] == [102, 104, 106, 108, 127, 39, 112]
    cb = next(
        f
        for f in h264
        if f.param("profile-level-id") == "42e01f" and f.param("packetization-mode") == "1"
    )
    assert cb.pt == 106 and cb.clock_rate == 90000 and cb.channels is None
    assert video.formats[1].name == "rtx" and video.formats[1].param("apt") == "96"
    audio = offer.section("audio")
    assert audio is not None
    opus = audio.formats[0]
    assert (opus.pt, opus.name, opus.clock_rate, opus.channels) == (111, "opus", 48000, 2)
    assert opus.param("useinbandfec") == "1" and opus.param("stereo") is None
    assert offer.section("application") is None

    ffmpeg = parse_offer(crlf(FFMPEG_WHIP), role="whip")
    assert {m.setup for m in ffmpeg.media} == {"passive"}
    video = ffmpeg.section("video")
    assert video is not None and [(f.pt, f.name) for f in video.formats] == [(106, "h264")]


def replace(sdp: str, old: str, new: str, count: int = -1) -> str:
    assert old in sdp, old
    return sdp.replace(old, new, count)


def drop_lines(sdp: str, prefix: str) -> str:
    kept = [ln for ln in sdp.split("\n") if not ln.startswith(prefix)]
    assert len(kept) < len(sdp.split("\n")), prefix
    return "\n".join(kept)


VP8_ONLY_WHEP = replace(
    CHROME_WHEP,
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107 108 109 127 125 39 40 45 46 98 99 100 101 112 113 116 117 118",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
)
H264_MODE0_WHEP = replace(
    CHROME_WHEP,
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107 108 109 127 125 39 40 45 46 98 99 100 101 112 113 116 117 118",
    "m=video 9 UDP/TLS/RTP/SAVPF 104 105 108 109",
)
DATACHANNEL = f"""m=application 9 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 0.0.0.0
a=ice-ufrag:kP0x
a=ice-pwd:Jw9mR2u4TqLp8sVd3eXa7yZb
a=fingerprint:{FP}
a=setup:actpass
a=mid:2
a=sctp-port:5000
a=max-message-size:262144
"""
SESSION = f"v=0\no=- 1 2 IN IP4 127.0.0.1\ns=-\nt=0 0\na=fingerprint:{FP}\n"
VIDEO_H264 = """m=video 9 UDP/TLS/RTP/SAVPF 96
c=IN IP4 0.0.0.0
a=ice-ufrag:abcd
a=ice-pwd:0123456789abcdefghijklmn
a=setup:actpass
a=mid:{mid}
a={direction}
a=rtcp-mux
a=rtpmap:96 H264/90000
a=fmtp:96 packetization-mode=1;profile-level-id=42e01f
"""


def video(mid: str = "0", direction: str = "sendonly") -> str:
    return VIDEO_H264.format(mid=mid, direction=direction)


# (name, body, role, status, text the reason must contain)
REFUSED: list[tuple[str, bytes, str, int, str]] = [
    ("empty body", b"", "whip", 400, "v=0"),
    ("garbage", b"hello world", "whip", 400, "line 1"),
    ("json", b'{"sdp": "v=0"}', "whep", 400, "line 1"),
    ("not utf-8", b"v=0\r\ns=\xff\xfe\r\n", "whip", 400, "UTF-8"),
    ("bom", b"\xef\xbb\xbfv=0\r\n", "whip", 400, ""),
    ("v=1", b"v=1\r\n", "whip", 400, "v=0"),
    ("oversize", b"v=0\r\n" + b"a=x-pad:" + b"x" * MAX_SDP_BYTES, "whip", 413, "limit"),
    ("no m-line", crlf(SESSION), "whip", 400, "no m= line"),
    ("lone CR line ends", crlf(SESSION + video()).replace(b"\r\n", b"\r"), "whip", 400, "control"),
    ("NUL", crlf(SESSION + video()).replace(b"t=0 0", b"t=0\x000"), "whip", 400, "control"),
    ("unknown line type", crlf(SESSION + video() + "x=1\n"), "whip", 400, "line"),
    ("second v=", crlf(SESSION + video() + "v=0\n"), "whip", 400, "v="),
    ("malformed m-line", crlf(SESSION + "m=video nine UDP/TLS/RTP/SAVPF 96\n"), "whip", 400, "m= line"),
    ("port out of range", crlf(SESSION + replace(video(), "m=video 9", "m=video 70000")), "whip", 400, "70000"),
    ("payload type > 127", crlf(SESSION + replace(video(), "SAVPF 96", "SAVPF 96 200")), "whip", 400, "200"),
    ("payload type 72", crlf(SESSION + replace(video(), "SAVPF 96", "SAVPF 96 72")), "whip", 400, "72"),
    ("bad c= line", crlf(SESSION + replace(video(), "c=IN IP4 0.0.0.0", "c=IN IP4")), "whip", 400, "c="),
    ("rtpmap without clock", crlf(SESSION + replace(video(), "H264/90000", "H264")), "whip", 400, "rtpmap"),
    ("fmtp without rtpmap", crlf(SESSION + video() + "a=fmtp:97 apt=96\n"), "whip", 400, "a=fmtp:97"),
    ("fingerprint without value", crlf(SESSION + video() + "a=fingerprint\n"), "whip", 400, "fingerprint"),
    ("fingerprint garbage", crlf(SESSION + video() + "a=fingerprint:sha-256 zz\n"), "whip", 400, "fingerprint"),
    ("rtcp-fb one token", crlf(SESSION + video() + "a=rtcp-fb:96\n"), "whip", 400, "rtcp-fb"),
    ("ssrc without colon", crlf(SESSION + video() + "a=ssrc:1 cname\n"), "whip", 400, "ssrc"),
    ("bad setup", crlf(SESSION + replace(video(), "setup:actpass", "setup:both")), "whip", 400, "setup"),
    ("bad candidate", crlf(SESSION + video() + "a=candidate:1 1 udp 2122260223 192.0.2.1 port typ host\n"), "whip", 400, "candidate"),
    ("short candidate", crlf(SESSION + video() + "a=candidate:1 1 udp 1 192.0.2.1 9\n"), "whip", 400, "candidate"),
    ("duplicate mid", crlf(SESSION + video("0", "recvonly") + video("0", "recvonly")), "whep", 400, "duplicate a=mid:0"),
    ("no ice-ufrag", crlf(SESSION + drop_lines(video(), "a=ice-ufrag")), "whip", 400, "ice-ufrag"),
    ("no ice-pwd", crlf(SESSION + drop_lines(video(), "a=ice-pwd")), "whip", 400, "ice-pwd"),
    ("ice-ufrag with colon", crlf(SESSION + replace(video(), "ice-ufrag:abcd", "ice-ufrag:ab:cd")), "whip", 400, "ice-ufrag"),
    ("no fingerprint", crlf(drop_lines(FFMPEG_WHIP, "a=fingerprint")), "whip", 400, "fingerprint"),
    ("fingerprint on one m-line only", crlf(replace(FFMPEG_WHIP, f"a=fingerprint:{FP}\n", "", 1)), "whip", 400, "m-line 0 (audio, mid 0) has no a=fingerprint"),
    ("no setup", crlf(drop_lines(FFMPEG_WHIP, "a=setup")), "whip", 400, "a=setup"),
    ("two video m-lines for whip", crlf(SESSION + video("0") + video("1")), "whip", 400, "one video"),
    ("two data channels", crlf(SESSION + video("v") + DATACHANNEL + DATACHANNEL.replace("mid:2", "mid:3")), "whip", 400, "application"),
    ("too many m-lines", crlf(SESSION + "".join(video(str(i), "recvonly") for i in range(17))), "whep", 400, "16"),
    ("holdconn", crlf(SESSION + replace(video(), "setup:actpass", "setup:holdconn")), "whip", 422, "holdconn"),
    ("no rtcp-mux", crlf(drop_lines(FFMPEG_WHIP, "a=rtcp-mux")), "whip", 422, "rtcp-mux"),
    ("unknown kind", crlf(SESSION + video() + replace(DATACHANNEL, "m=application", "m=text")), "whip", 422, "'text'"),
    ("extmap attributes", crlf(SESSION + video() + "a=extmap:1 urn:x attr\n"), "whip", 422, "extmap"),
    ("data channel only", crlf(SESSION + DATACHANNEL), "whep", 422, "no active audio or video"),
    ("all m-lines rejected", crlf(SESSION + replace(video(), "m=video 9", "m=video 0")), "whip", 422, "no active"),
    ("whep offer is sendonly", crlf(CHROME_WHIP), "whep", 422, "recvonly or sendrecv, not sendonly"),
    ("whip offer is recvonly", crlf(CHROME_WHEP), "whip", 422, "sendonly or sendrecv, not recvonly"),
    ("whip video inactive", crlf(replace(FFMPEG_WHIP, "a=sendonly\na=msid:FFmpeg video", "a=inactive\na=msid:FFmpeg video")), "whip", 422, "not inactive"),
    ("whip direction from session level", crlf(SESSION + "a=recvonly\n" + drop_lines(video(), "a=sendonly")), "whip", 422, "not recvonly"),
    ("whep vp8 only", crlf(VP8_ONLY_WHEP), "whep", 422, "offers vp8, rtx"),
    ("whep h264 mode 0 only", crlf(H264_MODE0_WHEP), "whep", 422, "packetization-mode 0"),
    ("whip av1 only", crlf(SESSION + replace(replace(video(), "H264/90000", "AV1/90000"), "a=fmtp:96 packetization-mode=1;profile-level-id=42e01f\n", "")), "whip", 422, "h264, vp8; m-line 0 (video, mid 0) offers av1"),
    ("whip audio pcmu only", crlf(replace(FFMPEG_WHIP, "a=rtpmap:111 opus/48000/2", "a=rtpmap:111 PCMU/8000")), "whip", 422, "offers pcmu"),
    ("whip audio static pt only", crlf(replace(drop_lines(FFMPEG_WHIP, "a=rtpmap:111"), "SAVPF 111", "SAVPF 0")), "whip", 422, "offers pcmu"),
    ("whip video no codec", crlf(replace(drop_lines(FFMPEG_WHIP, "a=fmtp:106"), "a=rtpmap:106 H264/90000\n", "")), "whip", 422, "offers no codec"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "role", "status", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused_offers(body: bytes, role: str, status: int, reason: str) -> None:
    with pytest.raises(SdpError) as info:
        parse_offer(body, role=role)
    assert info.value.status == status
    assert reason in str(info.value)
    assert "\n" not in str(info.value) and "\r" not in str(info.value)


def test_variants_that_are_accepted() -> None:
    # WHEP may have several video m-lines (extra transceivers just stay unused).
    offer = parse_offer(
        crlf(SESSION + video("0", "recvonly") + video("1", "recvonly")), role="whep"
    )
    assert [m.mid for m in offer.media] == ["0", "1"]
    assert offer.section("video") is offer.media[0]
    # A rejected (port 0) m-line neither counts nor is returned by section().
    offer = parse_offer(
        crlf(SESSION + replace(video("0"), "m=video 9", "m=video 0") + video("1")), role="whip"
    )
    assert offer.media[0].port == 0 and not offer.media[0].active
    section = offer.section("video")
    assert section is not None and section.mid == "1"
    # RFC 8843 bundle-only: port 0 but active.
    offer = parse_offer(
        crlf(
            SESSION
            + video("0")
            + replace(DATACHANNEL, "m=application 9", "m=application 0")
            + "a=bundle-only\n"
        ),
        role="whip",
    )
    app = offer.section("application")
    assert app is not None and app.bundle_only and app.port == 0 and app.codecs == ()
    aiortc_accepts(offer)
    # sendrecv is fine for either role, and is the default.
    for role in ("whip", "whep"):
        assert (
            parse_offer(crlf(SESSION + drop_lines(video(), "a=sendonly")), role=role)
            .media[0]
            .direction
            == "sendrecv"
        )
    # Audio-only WHIP is fine.
    audio_only = FFMPEG_WHIP.split("m=video")[0]
    assert [m.kind for m in parse_offer(crlf(audio_only), role="whip").media] == ["audio"]
    # Trailing spaces and a trailing blank line are tolerated and normalised away.
    messy = crlf(FFMPEG_WHIP).replace(b"a=sendonly\r\n", b"a=sendonly  \r\n") + b"\r\n"
    assert parse_offer(messy, role="whip").sdp == crlf(FFMPEG_WHIP).decode()
    # VP8-only video is a usable WHIP codec; VP9-only is not (aiortc cannot receive it).
    vp8 = replace(
        replace(video(), "H264/90000", "VP8/90000"),
        "packetization-mode=1;profile-level-id=42e01f",
        "max-fr=30",
    )
    assert parse_offer(crlf(SESSION + vp8), role="whip").media[0].codecs == ("vp8",)
    vp9 = vp8.replace("VP8/90000", "VP9/90000")
    with pytest.raises(SdpError) as info:
        parse_offer(crlf(SESSION + vp9), role="whip")
    assert info.value.status == 422


def test_offer_size_limit_is_exact() -> None:
    base = crlf(FFMPEG_WHIP)
    pad = MAX_SDP_BYTES - len(base) - len(b"a=x-pad:\r\n")
    body = base + b"a=x-pad:" + b"x" * pad + b"\r\n"
    assert len(body) == MAX_SDP_BYTES
    parse_offer(body, role="whip")
    with pytest.raises(SdpError) as info:
        parse_offer(body + b"x", role="whip")
    assert info.value.status == 413


def test_bad_role_is_a_programming_error() -> None:
    with pytest.raises(ValueError) as info:
        parse_offer(crlf(FFMPEG_WHIP), role="rtmp")
    assert not isinstance(info.value, SdpError)


def test_sdp_error() -> None:
    err = SdpError(422, "line one\nline two\r\x00" + "x" * 500)
    assert err.status == 422 and isinstance(err, ValueError)
    assert "\n" not in str(err) and len(str(err)) <= 300
    with pytest.raises(ValueError):
        SdpError(500, "no")


# ----------------------------------------------------------------------------- fuzzing

SDP_LINES = [ln for sdp, _ in REAL_OFFERS.values() for ln in sdp.split("\n") if ln]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_parse_offer_arbitrary_bytes(body: bytes) -> None:
    for data in (body, b"v=0\r\n" + body):
        for role in ("whip", "whep"):
            try:
                parse_offer(data, role=role)
            except SdpError as exc:
                assert exc.status in (400, 413, 415, 422)


real_line = st.sampled_from(SDP_LINES)
line_strategy = st.one_of(
    real_line,
    st.text(max_size=40),
    st.builds(lambda t, v: f"{t}={v}", st.sampled_from("vosctamb"), st.text(max_size=30)),
    # A real line cut short, with a few characters inserted, or with a new value.
    st.builds(lambda ln, i: ln[:i], real_line, st.integers(0, 40)),
    st.builds(lambda ln, i, v: ln[:i] + v + ln[i:], real_line, st.integers(0, 60), st.text(max_size=4)),
    st.builds(lambda ln, v: ln.split(":")[0] + ":" + v, real_line, st.text(" :/.0123456789abcINP", max_size=12)),
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(REAL_OFFERS)),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 3), line_strategy), max_size=6),
    st.sampled_from(["\r\n", "\n"]),
)
def test_parse_offer_mutated_real_offers(
    name: str, edits: list[tuple[int, int, str]], eol: str
) -> None:
    """Insert, replace, delete and duplicate lines of real offers. Whatever parse_offer then
    accepts, aiortc's own parser must accept too."""
    sdp, role = REAL_OFFERS[name]
    lines = sdp.split("\n")
    for pos, op, line in edits:
        i = pos % len(lines)
        if op == 0:
            lines.insert(i, line)
        elif op == 1:
            lines[i] = line
        elif op == 2:
            del lines[i]
        else:
            lines.insert(i, lines[i])
        if not lines:
            lines = [""]
    body = eol.join(lines).encode("utf-8", "surrogatepass")
    try:
        offer = parse_offer(body, role=role)
    except SdpError as exc:
        assert exc.status in (400, 413, 415, 422)
        assert "\n" not in str(exc)
        return
    aiortc_accepts(offer)


def _line_shapes() -> list[str]:
    """The first line of each kind (attribute name, or type letter) in the real offers."""
    seen: dict[str, str] = {}
    for sdp, _ in REAL_OFFERS.values():
        for ln in sdp.split("\n"):
            seen.setdefault(ln.partition(":")[0] if ln.startswith("a=") else ln[:2], ln)
    return [ln for key, ln in seen.items() if key not in ("v=", "m=", "")]


def test_every_truncated_line_is_refused_or_understood_by_aiortc() -> None:
    """Cut every kind of line at every position, at session and media level of the FFmpeg
    offer: each result is refused with a status, or accepted and parsed by aiortc."""
    outcomes: set[object] = set()
    for line in _line_shapes():
        for cut in range(len(line) + 1):
            for anchor in ("t=0 0\n", "a=mid:1\n"):
                body = crlf(FFMPEG_WHIP.replace(anchor, anchor + line[:cut] + "\n", 1))
                try:
                    offer = parse_offer(body, role="whip")
                except SdpError as exc:
                    outcomes.add(exc.status)
                    continue
                outcomes.add("ok")
                aiortc_accepts(offer)
    assert {"ok", 400} <= outcomes  # both branches exercised


# ----------------------------------------------------------------------------- sdpfrag

# RFC 8840 §9 shape: session-level credentials, a dummy m= line per section, then a=mid.
RFC8840_FRAG = """a=ice-pwd:asd88fgpdd777uzjYhagZg
a=ice-ufrag:8hhY
m=audio 9 RTP/AVP 0
a=mid:1
a=candidate:1 1 UDP 2130706431 198.51.100.1 5000 typ host
a=candidate:2 1 UDP 1694498815 192.0.2.3 5000 typ srflx raddr 198.51.100.1 rport 5000
a=end-of-candidates
"""

# RFC 9725 §4.3.1 shape (trickle PATCH from a browser-based WHIP client): a=ice-options and
# a=group at session level, credentials inside the m= section, two m= sections.
WHIP_TRICKLE = """a=ice-options:trickle ice2
a=group:BUNDLE 0 1
m=audio 9 UDP/TLS/RTP/SAVPF 111
a=mid:0
a=ice-ufrag:EsAw
a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y
a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1
a=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active generation 0 ufrag EsAw network-id 1
m=video 9 UDP/TLS/RTP/SAVPF 96
a=ice-ufrag:EsAw
a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y
a=candidate:842163049 1 udp 1677729535 203.0.113.7 61764 typ srflx raddr 192.0.2.1 rport 61764 generation 0 ufrag EsAw network-id 1 network-cost 10
a=mid:1
a=end-of-candidates
"""

# What a Chromium page sends per icecandidate event: "a=" + RTCIceCandidate.candidate under a
# dummy m= line, with the mid, including an mDNS host candidate.
CHROME_TRICKLE_ONE = """a=ice-ufrag:kP0x
a=ice-pwd:Jw9mR2u4TqLp8sVd3eXa7yZb
m=audio 9 RTP/AVP 0
a=mid:0
a=candidate:3012357781 1 udp 2122194687 7c4b6f1e-2a3d-4e5f-8a9b-0c1d2e3f4a5b.local 51874 typ host generation 0 ufrag kP0x network-id 2
"""


def test_sdpfrag_rfc8840() -> None:
    frag = parse_sdpfrag(crlf(RFC8840_FRAG))
    assert frag == SdpFrag(
        ice_ufrag="8hhY",
        ice_pwd="asd88fgpdd777uzjYhagZg",
        candidates=(
            TrickleCandidate("1", 0, "1 1 UDP 2130706431 198.51.100.1 5000 typ host"),
            TrickleCandidate("1", 0, "2 1 UDP 1694498815 192.0.2.3 5000 typ srflx raddr 198.51.100.1 rport 5000"),
        ),
        end_of_candidates=True,
    )  # fmt: skip


def test_sdpfrag_whip_example_media_level_credentials() -> None:
    frag = parse_sdpfrag(WHIP_TRICKLE.encode())
    assert (frag.ice_ufrag, frag.ice_pwd) == ("EsAw", "bP+XJMM09aR8AiX1jdukzR6Y")
    assert [(c.mid, c.mline_index) for c in frag.candidates] == [("0", 0), ("0", 0), ("1", 1)]
    assert frag.candidates[1].candidate.startswith("473322822 1 tcp ")
    assert frag.end_of_candidates


def test_sdpfrag_chromium_single_candidate() -> None:
    frag = parse_sdpfrag(crlf(CHROME_TRICKLE_ONE))
    assert frag.ice_ufrag == "kP0x" and not frag.end_of_candidates
    (cand,) = frag.candidates
    assert cand.mid == "0" and cand.mline_index == 0
    assert ".local 51874 typ host" in cand.candidate


def test_sdpfrag_other_shapes() -> None:
    # end-of-candidates alone; credentials alone (an ICE restart with nothing gathered yet).
    assert parse_sdpfrag(b"a=end-of-candidates\r\n") == SdpFrag(None, None, (), True)
    assert parse_sdpfrag(b"a=ice-ufrag:ABCD\na=ice-pwd:0123456789012345678901\n") == SdpFrag(
        "ABCD", "0123456789012345678901", (), False
    )
    # Candidates before any m= line, and an m= section without a=mid.
    frag = parse_sdpfrag(
        b"a=candidate:1 1 udp 1 192.0.2.1 9 typ host\r\nm=audio 9 RTP/AVP 0\r\n"
        b"a=candidate:2 1 udp 1 192.0.2.2 9 typ host\r\n"
    )
    assert [(c.mid, c.mline_index) for c in frag.candidates] == [(None, None), (None, 0)]
    # Full-SDP lines around the fragment are ignored.
    assert len(parse_sdpfrag(b"v=0\r\ns=-\r\n" + crlf(RFC8840_FRAG)).candidates) == 2


def candidates(n: int) -> bytes:
    return b"m=audio 9 RTP/AVP 0\r\na=mid:0\r\n" + b"".join(
        b"a=candidate:%d 1 udp 2122260223 192.0.2.1 %d typ host\r\n" % (i, 1000 + i)
        for i in range(n)
    )


REFUSED_FRAGS: list[tuple[str, bytes, int]] = [
    ("empty", b"", 400),
    ("blank", b"\r\n\r\n", 400),
    ("garbage", b"hello", 400),
    ("not utf-8", b"a=ice-ufrag:\xff\xff\xff\xff\r\n", 400),
    ("conflicting ufrag", crlf(WHIP_TRICKLE.replace("a=ice-ufrag:EsAw\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\na=candidate:842", "a=ice-ufrag:Zzzz\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\na=candidate:842")), 400),
    ("two mids in a section", b"m=audio 9 RTP/AVP 0\r\na=mid:0\r\na=mid:1\r\n", 400),
    ("candidate without value", b"a=candidate\r\n", 400),
    ("candidate missing typ", b"a=candidate:1 1 udp 1 192.0.2.1 9 host x\r\n", 400),
    ("candidate bad port", b"a=candidate:1 1 udp 1 192.0.2.1 99999 typ host\r\n", 400),
    ("candidate bad rport", b"a=candidate:1 1 udp 1 192.0.2.1 9 typ srflx raddr 10.0.0.1 rport x\r\n", 400),
    ("candidate double space", b"a=candidate:1 1 udp 1  192.0.2.1 9 typ host\r\n", 400),
    ("bad m= line", b"m=\r\n", 400),
    ("ufrag with quote", b'a=ice-ufrag:ab"c\r\n', 400),
    ("control character", b"a=ice-ufrag:abcd\x0bx\r\n", 400),
    ("64 candidates is fine, 65 is not", candidates(65), 413),
    ("oversize", b"a=x:" + b"y" * MAX_SDPFRAG_BYTES, 413),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status"), [c[1:] for c in REFUSED_FRAGS], ids=[c[0] for c in REFUSED_FRAGS]
)
def test_refused_sdpfrags(body: bytes, status: int) -> None:
    with pytest.raises(SdpError) as info:
        parse_sdpfrag(body)
    assert info.value.status == status


def test_sdpfrag_candidate_limit_is_exact() -> None:
    assert len(parse_sdpfrag(candidates(64)).candidates) == 64


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_parse_sdpfrag_arbitrary_bytes(body: bytes) -> None:
    try:
        parse_sdpfrag(body)
    except SdpError as exc:
        assert exc.status in (400, 413)


FRAG_LINES = [
    ln for f in (RFC8840_FRAG, WHIP_TRICKLE, CHROME_TRICKLE_ONE) for ln in f.split("\n") if ln
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(FRAG_LINES), line_strategy), max_size=12))
def test_parse_sdpfrag_arbitrary_lines(lines: list[str]) -> None:
    try:
        frag = parse_sdpfrag("\r\n".join(lines).encode("utf-8", "surrogatepass"))
    except SdpError as exc:
        assert exc.status in (400, 413)
        return
    for cand in frag.candidates:
        assert len(cand.candidate.split(" ")) >= 8 and "\n" not in cand.candidate


# ----------------------------------------------------------------------------- content types


@pytest.mark.parametrize(
    ("value", "expected", "ok"),
    [
        ("application/sdp", "application/sdp", True),
        ("Application/SDP", "application/sdp", True),
        (" application/sdp ; charset=utf-8", "application/sdp", True),
        ('application/sdp; charset="UTF-8"', "application/sdp", True),
        ("application/sdp;charset=us-ascii", "application/sdp", True),
        ("application/sdp; foo=bar", "application/sdp", True),
        ("application/trickle-ice-sdpfrag", "application/trickle-ice-sdpfrag", True),
        ("application/trickle-ice-sdpfrag; charset=utf-8", "application/trickle-ice-sdpfrag", True),
        (None, "application/sdp", False),
        ("", "application/sdp", False),
        ("text/plain", "application/sdp", False),
        ("application/json", "application/sdp", False),
        ("application/sdp-foo", "application/sdp", False),
        ("application/sdp; charset=latin-1", "application/sdp", False),
        ("application/sdp", "application/trickle-ice-sdpfrag", False),
        ("application/trickle-ice-sdpfrag", "application/sdp", False),
    ],
)
def test_content_type(value: str | None, expected: str, ok: bool) -> None:
    if ok:
        check_content_type(value, expected)
    else:
        with pytest.raises(SdpError) as info:
            check_content_type(value, expected)
        assert info.value.status == 415
        assert expected in str(info.value) or "charset" in str(info.value)


# ----------------------------------------------------------------------------- ICE servers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("  \n ", ()),
        ("stun:stun.l.google.com:19302", (IceServer("stun:stun.l.google.com:19302"),)),
        ("STUN:Example.COM", (IceServer("stun:Example.COM"),)),
        ("stuns:stun.example.com:5349", (IceServer("stuns:stun.example.com:5349"),)),
        ("stun:192.0.2.1", (IceServer("stun:192.0.2.1"),)),
        ("stun:[2001:db8::1]:3478", (IceServer("stun:[2001:db8::1]:3478"),)),
        (
            "turn:turn.example.com:3478?transport=UDP|user|p@ss:w0rd",
            (IceServer("turn:turn.example.com:3478?transport=udp", "user", "p@ss:w0rd"),),
        ),
        (
            "stun:a.example.com, turns:b.example.com?transport=tcp|1700000000:alice|c2VjcmV0\n"
            "turn:[2001:db8::2]|u|p",
            (
                IceServer("stun:a.example.com"),
                IceServer("turns:b.example.com?transport=tcp", "1700000000:alice", "c2VjcmV0"),
                IceServer("turn:[2001:db8::2]", "u", "p"),
            ),
        ),
        ('turn:h|us"er|cr\\ed', (IceServer("turn:h", 'us"er', "cr\\ed"),)),
    ],
)
def test_parse_ice_servers(text: str, expected: tuple[IceServer, ...]) -> None:
    assert parse_ice_servers(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("http://example.com", "scheme"),
        ("example.com:3478", "scheme"),
        ("stun://example.com", "without //"),
        ("stun:", "host"),
        ("stun::3478", "host"),
        ("stun:-bad-.example", "host"),
        ("stun:exämple.com", "host"),
        ("stun:1.2.3.999", "IPv4"),
        ("stun:[2001:db8::1", "unclosed"),
        ("stun:[nothex]:3478", "IPv6"),
        ("stun:[2001:db8::1]3478", "junk"),
        ("stun:example.com:0", "port"),
        ("stun:example.com:65536", "port"),
        ("stun:example.com:http", "port"),
        ("stun:example.com?transport=udp", "no query"),
        ("turn:example.com", "USERNAME"),
        ("turn:example.com|user", "parts"),
        ("turn:example.com|u|p|x", "parts"),
        ("turn:example.com||p", "empty username"),
        ("turn:example.com|u|", "empty credential"),
        ("turn:example.com?transport=sctp|u|p", "transport"),
        ("turn:example.com?foo=udp|u|p", "transport"),
        ("stun:example.com|u|p", "no credentials"),
        ("turn:example.com|u|pässword", "ASCII"),
        ("stun:ok.example.com bogus", "scheme"),
    ],
)
def test_parse_ice_servers_refuses(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_ice_servers(text)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_link_headers() -> None:
    servers = parse_ice_servers(
        "stun:stun.example.com:3478 turn:turn.example.com?transport=udp|user|pass "
        'turns:turn.example.com:5349|we"ird|back\\slash'
    )
    assert link_headers(servers) == [
        '<stun:stun.example.com:3478>; rel="ice-server"',
        '<turn:turn.example.com?transport=udp>; rel="ice-server"; username="user"; '
        'credential="pass"; credential-type="password"',
        '<turns:turn.example.com:5349>; rel="ice-server"; username="we\\"ird"; '
        'credential="back\\\\slash"; credential-type="password"',
    ]
    # STUN never carries credentials, even when an IceServer was built with some.
    assert link_headers([IceServer("stun:h", "u", "p")]) == ['<stun:h>; rel="ice-server"']
    assert link_headers([]) == []


def unquote(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value[1:-1])


@settings(max_examples=100, deadline=None)
@given(
    st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=",|"),
        min_size=1,
        max_size=20,
    )
)
def test_link_header_quoting_round_trips(secret: str) -> None:
    (header,) = link_headers(parse_ice_servers(f"turn:h|{secret}|{secret}"))
    params = dict(re.findall(r'; ([a-z-]+)=("(?:[^"\\]|\\.)*")', header))
    assert unquote(params["username"]) == secret and unquote(params["credential"]) == secret


@pytest.mark.parametrize(
    "server",
    [
        IceServer("turn:h", "u\r\nSet-Cookie: x=1", "p"),
        IceServer("turn:h", "u", "p\x00"),
        IceServer("turn:h", "ü", "p"),
        IceServer("turn:h>; rel=x", "u", "p"),
        IceServer("turn:h p", "u", "p"),
    ],
)
def test_link_headers_refuse_header_injection(server: IceServer) -> None:
    with pytest.raises(ValueError):
        link_headers([server])


# ----------------------------------------------------------------------------- bitrate hints

# An aiortc-style answer: VP8 + rtx and two H.264 + rtx, the first VP8 without a=fmtp.
ANSWER = """v=0
o=- 3927563450 3927563450 IN IP4 0.0.0.0
s=-
t=0 0
a=group:BUNDLE 0 1
a=msid-semantic:WMS *
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=recvonly
a=mid:0
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;useinbandfec=1
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 106 107 116
c=IN IP4 0.0.0.0
a=recvonly
a=mid:1
a=rtcp-mux
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:102 H264/90000
a=rtcp-fb:102 nack
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rtpmap:106 H264/90000
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:107 rtx/90000
a=fmtp:107 apt=106
a=rtpmap:116 red/90000
a=setup:active
"""
HINTS = "x-google-start-bitrate=1500;x-google-min-bitrate=300;x-google-max-bitrate=4000"


def test_add_bitrate_hints() -> None:
    answer = ANSWER.replace("\n", "\r\n")
    out = add_bitrate_hints(answer, start_kbps=1500, min_kbps=300, max_kbps=4000)
    assert out.endswith("\r\n") and "\n" not in out.replace("\r\n", "")
    lines = out.split("\r\n")
    assert lines[lines.index("a=rtpmap:96 VP8/90000") + 1] == f"a=fmtp:96 {HINTS}"
    assert (
        f"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f;{HINTS}"
        in lines
    )
    assert (
        f"a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f;{HINTS}"
        in lines
    )
    for untouched in (
        "a=fmtp:97 apt=96",
        "a=fmtp:103 apt=102",
        "a=fmtp:107 apt=106",
        "a=fmtp:111 minptime=10;useinbandfec=1",
    ):
        assert untouched in lines
    assert not any(ln.startswith(("a=fmtp:116", "a=fmtp:111 x-google")) for ln in lines)
    assert len(lines) == len(answer.split("\r\n")) + 1
    # Applying again replaces, not duplicates, and new values win.
    again = add_bitrate_hints(out, start_kbps=800, min_kbps=100, max_kbps=900)
    assert again.count("x-google-start-bitrate") == 3 and "x-google-start-bitrate=800" in again
    assert "1500" not in again
    # aiortc reads the result back with the parameters on the codecs.
    desc = SessionDescription.parse(out)
    vp8 = desc.media[1].rtp.codecs[0]
    assert vp8.mimeType == "video/VP8" and vp8.parameters["x-google-max-bitrate"] == "4000"


def test_add_bitrate_hints_keeps_lf_and_skips_audio_only() -> None:
    out = add_bitrate_hints(ANSWER, start_kbps=1000, min_kbps=1000, max_kbps=1000)
    assert "\r" not in out and out.endswith("\n")
    audio_only = ANSWER.split("m=video")[0].replace("\n", "\r\n")
    assert add_bitrate_hints(audio_only, start_kbps=1, min_kbps=1, max_kbps=1) == audio_only
    rejected = ANSWER.replace("m=video 9 ", "m=video 0 ")
    assert add_bitrate_hints(rejected, start_kbps=1, min_kbps=1, max_kbps=1) == rejected


@pytest.mark.parametrize(
    ("start", "lo", "hi"), [(0, 0, 0), (100, 200, 300), (400, 100, 300), (-1, -2, 5)]
)
def test_add_bitrate_hints_refuses_bad_ranges(start: int, lo: int, hi: int) -> None:
    with pytest.raises(ValueError):
        add_bitrate_hints(ANSWER, start_kbps=start, min_kbps=lo, max_kbps=hi)


# ----------------------------------------------------------------------------- ids and etags


def test_session_url_token() -> None:
    tokens = {session_url_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)  # 32 bytes, base64url, no "="


def test_etag() -> None:
    assert etag("Hn2V") == '"Hn2V"'
    assert etag("a+b/c") == '"a+b/c"'
    for bad in ('a"b', "a b", "a\r\nb", "ü"):
        with pytest.raises(ValueError):
            etag(bad)
