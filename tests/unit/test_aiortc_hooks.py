"""The hooks into aiortc's and aioice's internals, against the pinned aiortc.

If an aiortc upgrade moves what ``bridge.whip.aiortc_hooks`` relies on, these fail loudly
(and ``check_hooks`` logs it at startup) instead of WebRTC silently going wrong.
"""

from __future__ import annotations

import asyncio
import fractions
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiortc
import av
import numpy as np
import pytest
from aioice import Candidate, stun
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
)

from bridge.media import h264
from bridge.whip import aiortc_hooks
from bridge.whip.aiortc_hooks import EncodedFrame, IcePolicy, PolicyConnection
from bridge.whip.peer import prefer_codecs

LOOPBACK = IcePolicy(addresses=("127.0.0.1",))


@pytest.fixture(autouse=True)
def loopback_policy() -> None:
    aiortc_hooks.install_ice_policy(LOOPBACK)


def test_pinned_version_and_internals() -> None:
    assert aiortc.__version__ == aiortc_hooks.AIORTC_VERSION, (
        "aiortc changed: re-check every hook in bridge/whip/aiortc_hooks.py, then update "
        "AIORTC_VERSION and the pin in pyproject.toml"
    )
    check = aiortc_hooks.check_hooks()
    assert check.ok, check.results


def test_local_addresses() -> None:
    assert aiortc_hooks.local_addresses(IcePolicy(addresses=("127.0.0.1",))) == ["127.0.0.1"]
    found = aiortc_hooks.local_addresses(IcePolicy())
    assert found, "a host always has at least a loopback address"
    everything = aiortc_hooks.interface_addresses()
    assert set(found) <= set(everything)
    if any(not a.startswith("127.") and a != "::1" for a in everything):
        assert not {"127.0.0.1", "::1"} & set(found), "loopback only when nothing else"


async def test_gathers_only_policy_addresses_in_port_range() -> None:
    aiortc_hooks.install_ice_policy(IcePolicy(addresses=("127.0.0.1",), ports=(40100, 40109)))
    connections = [PolicyConnection(ice_controlling=False) for _ in range(3)]
    try:
        for connection in connections:
            await connection.gather_candidates()
        for connection in connections:
            (candidate,) = connection.local_candidates
            assert candidate.host == "127.0.0.1"
            assert 40100 <= candidate.port <= 40109
            assert candidate.type == "host"
        ports = {c.local_candidates[0].port for c in connections}
        assert len(ports) == 3
    finally:
        for connection in connections:
            await connection.close()


async def test_port_range_exhausted_gives_no_candidate() -> None:
    aiortc_hooks.install_ice_policy(IcePolicy(addresses=("127.0.0.1",), ports=(40120, 40120)))
    first, second = PolicyConnection(ice_controlling=False), PolicyConnection(ice_controlling=False)
    try:
        await first.gather_candidates()
        await second.gather_candidates()
        assert len(first.local_candidates) == 1
        assert second.local_candidates == []
    finally:
        await first.close()
        await second.close()


async def test_public_ip_announced_on_same_port() -> None:
    aiortc_hooks.install_ice_policy(
        IcePolicy(addresses=("127.0.0.1",), public_ips=("203.0.113.7", "2001:db8::7"))
    )
    connection = PolicyConnection(ice_controlling=False)
    try:
        await connection.gather_candidates()
        # The IPv6 one does not match IPv4; the announced one comes first (FFmpeg's WHIP
        # muxer takes the first host candidate).
        public, local = connection.local_candidates
        assert local.host == "127.0.0.1"
        assert (public.host, public.port) == ("203.0.113.7", local.port)
        assert public.priority < local.priority
    finally:
        await connection.close()


async def test_remote_candidates_filtered() -> None:
    connection = PolicyConnection(ice_controlling=False)
    await connection.gather_candidates()
    try:
        for host in ("a1b2c3d4-0000-1111-2222-333344445555.local", "192.0.2.10", "198.51.100.3"):
            await connection.add_remote_candidate(
                Candidate(
                    foundation="1",
                    component=1,
                    transport="udp",
                    priority=1,
                    host=host,
                    port=5000,
                    type="host",
                )
            )
        assert connection.remote_candidates == []
        await connection.add_remote_candidate(
            Candidate(
                foundation="2",
                component=1,
                transport="udp",
                priority=1,
                host="127.0.0.1",
                port=5000,
                type="host",
            )
        )
        assert [c.host for c in connection.remote_candidates] == ["127.0.0.1"]
    finally:
        await connection.close()


async def test_check_without_priority_learns_peer_reflexive() -> None:
    connection = PolicyConnection(ice_controlling=False)
    await connection.gather_candidates()
    connection.remote_username = "peer"
    connection.remote_password = "peerpasswordpeerpassword"
    (local,) = connection.local_candidates
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    try:
        connect = asyncio.ensure_future(connection.connect())
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{connection.local_username}:peer"
        request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity(connection.local_password.encode())
        request.add_fingerprint()
        # Early FFmpeg WHIP: no PRIORITY, no ICE-CONTROLLING.
        await asyncio.sleep(0.05)
        sock.sendto(bytes(request), (local.host, local.port))
        data = await asyncio.to_thread(sock.recv, 2048)
        response = stun.parse_message(data)
        assert response.message_class == stun.Class.RESPONSE
        await asyncio.sleep(0.1)
        assert [c.type for c in connection.remote_candidates] == ["prflx"]
        connect.cancel()
    finally:
        sock.close()
        await connection.close()


# ---------------------------------------------------------------------------- peers


class Pattern(MediaStreamTrack):
    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def recv(self) -> av.VideoFrame:
        await asyncio.sleep(1 / 30)
        image = np.full((120, 160, 3), self.count % 255, np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self.count * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        self.count += 1
        return frame


async def _connect(
    offerer: RTCPeerConnection, answerer: RTCPeerConnection, encoded: Any = None
) -> None:
    """Offer and answer; ``encoded``, a receiver of the answerer, hands over encoded frames
    (set between the offer and the answer, as the WHIP ingest does)."""
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    if encoded is not None:
        aiortc_hooks.want_encoded_frames(encoded)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[RTCPeerConnection, RTCPeerConnection]]:
    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def _wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_encoded_h264_frames_and_keyframe_requests(
    pair: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    sender_pc, receiver_pc = pair
    sending = sender_pc.addTransceiver(Pattern(), direction="sendonly")
    prefer_codecs(sending, ["h264"])
    receiving = receiver_pc.addTransceiver("video", direction="recvonly")
    await _connect(sender_pc, receiver_pc, encoded=receiving.receiver)
    for pc in pair:
        for candidate in pc.localDescription.sdp.splitlines():
            if candidate.startswith("a=candidate:"):
                assert " 127.0.0.1 " in candidate, candidate

    requests: list[int] = []
    aiortc_hooks.on_keyframe_request(sending.sender, lambda: requests.append(1))
    track = receiving.receiver.track
    frame = await asyncio.wait_for(track.recv(), 10)
    assert isinstance(frame, EncodedFrame)
    assert frame.codec == "h264" and frame.clock_rate == 90000
    types = {h264.nal_type(n) for n in h264.split_annexb(frame.data)}
    assert h264.NAL_IDR in types and h264.NAL_SPS in types, types
    second = await asyncio.wait_for(track.recv(), 5)
    assert second.timestamp > frame.timestamp

    assert aiortc_hooks.request_keyframe(receiving.receiver)
    await _wait(lambda: requests)


async def test_shared_packer_reuses_payloads() -> None:
    codec = next(
        c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"
    )
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    packer = aiortc_hooks.SharedPacker(
        RTCRtpCodecParameters(mimeType=codec.mimeType, clockRate=90000, payloadType=102),
        limit=2,
    )
    nal = b"\x65" + bytes(3000)
    packet = av.Packet(h264.START_CODE + nal)
    packet.pts = 900
    packet.time_base = fractions.Fraction(1, 90000)
    first = packer.pack(packet)
    again = packer.pack(packet)
    assert again[0] is first[0] and again[1] == 900
    assert (packer.hits, packer.misses) == (1, 1)
    assert len(first[0]) == 3  # FU-A fragments under aiortc's 1300-byte limit
    for _ in range(3):  # evicts: the cache stays bounded
        other = av.Packet(h264.START_CODE + nal)
        other.pts = 0
        other.time_base = fractions.Fraction(1, 90000)
        packer.pack(other)
    assert len(packer._cache) == 2


def test_extra_h264_profiles_negotiable() -> None:
    aiortc_hooks.add_h264_profiles()
    aiortc_hooks.add_h264_profiles()  # idempotent
    profiles = [
        c.parameters.get("profile-level-id")
        for c in RTCRtpSender.getCapabilities("video").codecs
        if c.mimeType == "video/H264"
    ]
    assert len(profiles) == len(set(profiles))
    assert {"42e01f", "640c1f", "4d001f"} <= set(profiles)


async def test_direct_sender_delivers_frames_and_keeps_aiortc_bookkeeping(
    pair: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    from bridge.whip.tracks import PacketTrack

    sender_pc, receiver_pc = pair
    track = PacketTrack("video")
    sending = sender_pc.addTransceiver(track, direction="sendonly")
    prefer_codecs(sending, ["h264"])
    packers: list[aiortc_hooks.SharedPacker] = []

    def packer_for(codec):  # type: ignore[no-untyped-def]
        packers.append(aiortc_hooks.SharedPacker(codec))
        return packers[-1]

    aiortc_hooks.send_packets_directly(sending.sender, packer_for)
    receiving = receiver_pc.addTransceiver("video", direction="recvonly")
    await _connect(sender_pc, receiver_pc, encoded=receiving.receiver)
    await _wait(lambda: sender_pc.connectionState == "connected")

    sps, pps = bytes.fromhex("6742c01e9a660280"), bytes.fromhex("68ce3c80")
    sent = []
    for index in range(6):
        nal = bytes([0x65 if index == 0 else 0x41]) + bytes([index]) * (4000 if index == 0 else 300)
        nals = [sps, pps, nal] if index == 0 else [nal]
        data = b"".join(h264.START_CODE + n for n in nals)
        packet = av.Packet(data)
        packet.pts = index * 3000
        packet.time_base = fractions.Fraction(1, 90000)
        sent.append(data)
        track.offer(packet, index == 0)
        await asyncio.sleep(0.01)
    received = []
    for _ in range(5):  # aiortc's jitter buffer holds the last frame until the next one
        frame = await asyncio.wait_for(receiving.receiver.track.recv(), 5)
        received.append(frame)
    assert [f.data for f in received] == sent[:5]
    assert [f.timestamp for f in received] == [i * 3000 for i in range(5)]
    assert packers and packers[0].misses == 6

    # aiortc's RTCP side still reads what the direct loop wrote: sender reports count the
    # packets, and a NACK finds the packet in the history and sends it again.
    stats = await sending.sender.getStats()
    outbound = next(s for s in stats.values() if s.type == "outbound-rtp")
    assert outbound.packetsSent >= 8  # the 4 kB keyframe alone is 4 FU-A packets
    history = sending.sender._RTCRtpSender__rtp_history  # type: ignore[attr-defined]
    first = min(history.values(), key=lambda p: p.timestamp)
    # The header as sent parses back, with this sender's mid and a current abs-send-time.
    from aiortc import clock
    from aiortc.rtp import RtpPacket

    ext_map = sending.sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined]
    last = max(history.values(), key=lambda p: p.timestamp)
    parsed = RtpPacket.parse(last.serialize(), ext_map)
    assert parsed.payload == last.payload and parsed.marker == 1
    assert parsed.extensions.mid == sending.mid
    now = (clock.current_ntp_time() >> 14) & 0xFFFFFF
    assert (now - parsed.extensions.abs_send_time) % (1 << 24) < 262144  # within 1 s
    before = sending.sender.transport._RTCDtlsTransport__tx_packets  # type: ignore[attr-defined]
    await sending.sender._retransmit(first.sequence_number)
    after = sending.sender.transport._RTCDtlsTransport__tx_packets  # type: ignore[attr-defined]
    assert after == before + 1


async def test_direct_sender_drops_frames_when_the_socket_does_not_drain(
    pair: tuple[RTCPeerConnection, RTCPeerConnection], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.whip.tracks import PacketTrack

    sender_pc, receiver_pc = pair
    track = PacketTrack("video")
    sending = sender_pc.addTransceiver(track, direction="sendonly")
    prefer_codecs(sending, ["h264"])
    aiortc_hooks.send_packets_directly(sending.sender, aiortc_hooks.SharedPacker)
    receiver_pc.addTransceiver("video", direction="recvonly")
    await _connect(sender_pc, receiver_pc)
    await _wait(lambda: sender_pc.connectionState == "connected")
    pair_ = sending.sender.transport.transport._connection._nominated[1]
    monkeypatch.setattr(pair_.protocol.transport, "get_write_buffer_size", lambda: 2 * 1024 * 1024)

    def frame(keyframe: bool) -> av.Packet:
        packet = av.Packet(h264.START_CODE + bytes([0x65 if keyframe else 0x41]) + bytes(500))
        packet.pts = 0
        packet.time_base = fractions.Fraction(1, 90000)
        return packet

    track.offer(frame(True), True)
    track.offer(frame(False), False)
    await _wait(lambda: track.queued == 0)
    stats = await sending.sender.getStats()
    outbound = next(s for s in stats.values() if s.type == "outbound-rtp")
    assert outbound.packetsSent == 0  # nothing went into the stuck socket's buffer
    assert track.waiting_key and track.dropped >= 1
