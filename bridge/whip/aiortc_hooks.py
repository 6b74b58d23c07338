"""Every place bridge reaches into aiortc's and aioice's internals, in one module.

aiortc 1.16 has no public API for what a media server needs:

- **Candidate gathering**: aioice offers every interface address except loopback, binds
  random ports, and resolves mDNS candidates with multicast. A server must offer exactly the
  addresses it is told to (loopback included, on loopback-only hosts), bind inside a port
  range a firewall can open, announce a public address for 1:1 NAT, and answer clients that
  omit PRIORITY in their checks (early FFmpeg WHIP).
- **Encoded frames from a receiver**: aiortc always decodes what it receives. A WHIP ingest
  wants the depacketised frames (H.264 Annex-B, VP8, Opus) as they came.
- **Keyframe requests**: in passthrough (a track that returns ``av.Packet``) aiortc drops
  PLI and FIR from viewers without telling anyone.
- **Sending pre-encoded packets**: N viewers of one channel would each split the same access
  unit into the same RTP payloads, and aiortc spends most of a viewer's CPU on per-packet
  Python (building a packet object, four nested awaits). Viewers share the split, and a
  tighter send loop builds each frame's header once.
- **Codecs**: aiortc negotiates H.264 Baseline only; WHIP encoders offer Main or High, which
  passthrough handles just as well.

``tests/unit/test_aiortc_hooks.py`` checks every hook against the pinned aiortc, so an
upgrade that moves these internals fails loudly there rather than silently in production.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import aiortc.rtcicetransport
import aiortc.rtcrtpreceiver
import av
import ifaddr
from aioice import Candidate
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.mdns import is_mdns_hostname
from aiortc.codecs import get_encoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender, random_sequence_number
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensions
from aiortc.utils import random32

log = logging.getLogger("bridge.webrtc")

AIORTC_VERSION = "1.16.0"


# --------------------------------------------------------------------------- ICE policy


@dataclass(frozen=True)
class IcePolicy:
    """Which local candidates the server offers and which remote ones it will use.

    ``addresses`` empty means: every interface address, loopback only when the host has
    nothing else. ``ports`` is an inclusive UDP range, or None for any port.
    ``public_ips`` are announced as extra host candidates on the same ports (1:1 NAT).
    """

    addresses: tuple[str, ...] = ()
    ports: tuple[int, int] | None = None
    public_ips: tuple[str, ...] = ()


def interface_addresses() -> list[str]:
    """Every address of this host's interfaces (IPv6 link-local left out: it needs a scope)."""
    out: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                out.append(ip.ip)
            elif ip.ip[2] == 0 and not ipaddress.ip_address(ip.ip[0]).is_link_local:
                out.append(ip.ip[0])
    return list(dict.fromkeys(out))


def local_addresses(policy: IcePolicy) -> list[str]:
    """The addresses ICE binds and offers under ``policy``."""
    if policy.addresses:
        return list(policy.addresses)
    found = interface_addresses()
    outside = [a for a in found if not ipaddress.ip_address(a).is_loopback]
    return outside or [a for a in found if ipaddress.ip_address(a).is_loopback]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_policy = IcePolicy()
_ports_lock = threading.Lock()


class PolicyConnection(aioice.ice.Connection):
    """aioice's ICE agent with the process's :class:`IcePolicy` applied."""

    async def gather_candidates(self) -> None:
        if self._local_candidates_start:
            return
        self._local_candidates_start = True
        policy = _policy
        addresses = local_addresses(policy) if self.transport_policy_all else []
        # Host candidates only: the server runs without STUN or TURN (bridge.whip.peer).
        for component in self._components:
            self._local_candidates += await _bind_host_candidates(
                self, component, addresses, policy
            )
        self._local_candidates_end = True

    @property
    def transport_policy_all(self) -> bool:
        return self._transport_policy == aioice.ice.TransportPolicy.ALL

    async def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        if remote_candidate is not None and not self._usable(remote_candidate):
            return
        await super().add_remote_candidate(remote_candidate)

    def _usable(self, candidate: Candidate) -> bool:
        # An mDNS name would make aioice send multicast queries; the peer's checks reach us
        # anyway and teach us its address (peer-reflexive).
        if is_mdns_hostname(candidate.host):
            log.debug("remote candidate %s ignored: mDNS", candidate.host)
            return False
        if candidate.transport.lower() != "udp":
            return False
        # Loopback pairs only with loopback: a server offering 127.0.0.1 must never send
        # checks to the peer's LAN address, and a LAN socket cannot reach the peer's loopback.
        local = local_addresses(_policy)
        if _is_loopback(candidate.host) not in {_is_loopback(a) for a in local}:
            log.debug("remote candidate %s ignored: not reachable from %s", candidate.host, local)
            return False
        return True

    def check_incoming(self, message: Any, addr: tuple[str, int], protocol: Any) -> None:
        # RFC 8445 requires PRIORITY in every check; FFmpeg 8.0's WHIP muxer leaves it out and
        # aioice would raise KeyError when it learns that peer-reflexive candidate.
        if "PRIORITY" not in message.attributes:
            component = protocol.local_candidate.component
            message.attributes["PRIORITY"] = candidate_priority(component, "prflx")
        super().check_incoming(message, addr, protocol)


async def _bind_host_candidates(
    connection: PolicyConnection, component: int, addresses: Sequence[str], policy: IcePolicy
) -> list[Candidate]:
    loop = asyncio.get_running_loop()
    candidates: list[Candidate] = []
    announced: list[Candidate] = []
    for address in addresses:
        bound = await _bind(loop, connection, address, policy.ports)
        if bound is None:
            continue
        transport, protocol = bound
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE)
        host, port = transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=host,
            port=port,
            type="host",
        )
        connection._protocols.append(protocol)
        candidates.append(protocol.local_candidate)
        for public in policy.public_ips:
            if ipaddress.ip_address(public).version != ipaddress.ip_address(host).version:
                continue
            # Same socket, announced under the NAT's address: the peer's checks to it are
            # forwarded to this port and answered from it. Listed first: FFmpeg's WHIP muxer
            # uses only the first host candidate of the answer.
            announced.append(
                Candidate(
                    foundation=candidate_foundation("host", "udp", public),
                    component=component,
                    transport="udp",
                    priority=candidate_priority(component, "host", local_pref=65534),
                    host=public,
                    port=port,
                    type="host",
                )
            )
    return announced + candidates


async def _bind(
    loop: asyncio.AbstractEventLoop,
    connection: PolicyConnection,
    address: str,
    ports: tuple[int, int] | None,
) -> tuple[asyncio.DatagramTransport, Any] | None:
    def factory() -> Any:
        return aioice.ice.StunProtocol(connection)

    if ports is None:
        candidates_ports = [0]
    else:
        low, high = ports
        span = high - low + 1
        start = random.randrange(span)
        candidates_ports = [low + (start + i) % span for i in range(span)]
    last: OSError | None = None
    for port in candidates_ports:
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                factory, local_addr=(address, port)
            )
        except OSError as exc:
            last = exc
            continue
        return transport, protocol
    if ports is None:
        log.warning("ICE: could not bind %s: %s", address, last)
    else:
        log.warning("ICE: no free UDP port on %s in %d-%d (%s)", address, ports[0], ports[1], last)
    return None


def install_ice_policy(policy: IcePolicy) -> None:
    """Make every ICE agent aiortc creates from now on follow ``policy`` (process-wide:
    aiortc builds its agents deep inside ``RTCPeerConnection``)."""
    global _policy
    with _ports_lock:
        _policy = policy
    aiortc.rtcicetransport.Connection = PolicyConnection  # type: ignore[misc]


def current_ice_policy() -> IcePolicy:
    return _policy


# --------------------------------------------------------------------------- encoded frames


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One depacketised frame as the publisher sent it: H.264 Annex-B, a VP8/VP9 frame or an
    Opus packet. ``timestamp`` is the RTP timestamp, unwrapped, from 0 at the first frame."""

    codec: str  # lower-case encoding name: h264, vp8, vp9, opus
    data: bytes
    timestamp: int
    clock_rate: int


_encoded_queues: dict[int, asyncio.Queue[Any]] = {}
_original_worker = aiortc.rtcrtpreceiver.decoder_worker


def _passthrough_worker(
    loop: asyncio.AbstractEventLoop,
    input_q: Any,
    output_q: asyncio.Queue[Any],
    decode_error: threading.Event,
) -> None:
    if _encoded_queues.get(id(output_q)) is not output_q:
        _original_worker(loop, input_q, output_q, decode_error)
        return
    try:
        while True:
            task = input_q.get()
            if task is None:
                asyncio.run_coroutine_threadsafe(output_q.put(None), loop)
                return
            codec, frame = task
            encoded = EncodedFrame(
                codec.name.lower(), bytes(frame.data), frame.timestamp, codec.clockRate
            )
            loop.call_soon_threadsafe(_put_bounded, output_q, encoded)
    finally:
        _encoded_queues.pop(id(output_q), None)


ENCODED_QUEUE_LIMIT = 256


def _put_bounded(queue: asyncio.Queue[Any], item: EncodedFrame) -> None:
    # aiortc's track queue is unbounded; a consumer that stalls must not grow it forever.
    if queue.qsize() >= ENCODED_QUEUE_LIMIT:
        log.warning("encoded frames dropped: the consumer is %d frames behind", queue.qsize())
        while not queue.empty():
            queue.get_nowait()
    queue.put_nowait(item)


def want_encoded_frames(receiver: RTCRtpReceiver) -> None:
    """Make ``receiver.track.recv()`` return :class:`EncodedFrame` instead of decoded frames.

    Call it after ``setRemoteDescription`` (the track exists) and before the connection
    starts receiving (aiortc starts its decoder thread then).
    """
    track = receiver.track
    if track is None:
        raise ValueError("the receiver has no track yet")
    queue = track._queue  # type: ignore[attr-defined]
    _encoded_queues[id(queue)] = queue
    aiortc.rtcrtpreceiver.decoder_worker = _passthrough_worker


def forget_encoded_frames(receiver: RTCRtpReceiver) -> None:
    """Undo :func:`want_encoded_frames` for a receiver that never started (its decoder
    thread, which would forget it on exit, never ran)."""
    track = receiver.track
    if track is not None:
        _encoded_queues.pop(id(track._queue), None)  # type: ignore[attr-defined]


def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Send a PLI to the publisher of ``receiver``'s stream. False while no RTP has come."""
    sources = receiver.getSynchronizationSources()
    if not sources:
        return False
    asyncio.ensure_future(receiver._send_rtcp_pli(sources[0].source))
    return True


# --------------------------------------------------------------------------- senders


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` for each PLI or FIR the viewer sends about ``sender``'s stream.

    aiortc answers them by flagging its own encoder, which a passthrough track never uses.
    """
    original = sender._send_keyframe

    def surfaced() -> None:
        original()
        callback()

    sender._send_keyframe = surfaced  # type: ignore[method-assign]


class SharedPacker:
    """aiortc's packetiser for one codec, with a small cache of its last results, so every
    viewer of a channel sending the same ``av.Packet`` reuses one split into RTP payloads.

    Single-threaded (the event loop); ``limit`` bounds the cache: viewers further behind than
    that recompute, which is correct, only slower.
    """

    def __init__(self, codec: RTCRtpCodecParameters, limit: int = 64) -> None:
        self._encoder = get_encoder(codec)
        self._cache: OrderedDict[int, tuple[av.Packet, list[bytes], int]] = OrderedDict()
        self._limit = limit
        self.hits = 0
        self.misses = 0

    def pack(self, packet: av.Packet) -> tuple[list[bytes], int]:
        key = id(packet)
        cached = self._cache.get(key)
        if cached is not None and cached[0] is packet:
            self.hits += 1
            return cached[1], cached[2]
        self.misses += 1
        payloads, timestamp = self._encoder.pack(packet)
        # Holding the packet keeps its id from being reused while the entry lives.
        self._cache[key] = (packet, payloads, timestamp)
        if len(self._cache) > self._limit:
            self._cache.popitem(last=False)
        return payloads, timestamp

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise TypeError("SharedPacker only packs pre-encoded packets")


# Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_EPOCH_OFFSET = 2_208_988_800
# Bytes asyncio may hold for one viewer's socket before frames are dropped.
SEND_BUFFER_LIMIT = 1024 * 1024


class _Sent:
    """A sent RTP packet as aiortc's NACK handling reads it from the sender's history
    (``_retransmit``: sequence number, then ``wrap_rtx`` or ``serialize``)."""

    __slots__ = ("sequence_number", "marker", "timestamp", "payload", "csrc", "extensions", "_head")

    def __init__(
        self, seq: int, marker: int, timestamp: int, payload: bytes, extensions: Any, head: bytes
    ) -> None:
        self.sequence_number = seq
        self.marker = marker
        self.timestamp = timestamp
        self.payload = payload
        self.csrc: list[int] = []
        self.extensions = extensions
        self._head = head

    def serialize(self, extensions_map: Any = None) -> bytes:
        return self._head + self.payload


async def _send_packets(
    sender: RTCRtpSender,
    packer_for: Callable[[RTCRtpCodecParameters], SharedPacker],
    codec: RTCRtpCodecParameters,
) -> None:
    """aiortc's ``RTCRtpSender._run_rtp`` for pre-encoded packets, without its per-packet
    Python: the header and extensions are built once per frame, each packet only gets its
    sequence number and marker, then SRTP and ``sendto``. Same wire format, same RTCP
    sender-report counters and NACK history (so aiortc's RTCP side keeps working)."""
    private = "_RTCRtpSender__"
    getattr(sender, private + "rtp_started").set()
    history: dict[int, Any] = getattr(sender, private + "rtp_history")
    extensions_map = getattr(sender, private + "rtp_header_extensions_map")
    mid = getattr(sender, private + "mid")
    track = sender.track
    packer = packer_for(codec)
    payload_type = codec.payloadType or 0
    ssrc = sender._ssrc
    sequence = random_sequence_number()
    origin = random32()
    dtls = sender.transport
    # The header extensions (mid, abs-send-time) are laid out once; each frame only writes
    # its send time into them (aiortc rebuilds them per packet: ~10 us per frame here).
    extensions = HeaderExtensions()
    extensions.mid = mid
    extensions.abs_send_time = 0xABCDEF
    profile, layout = extensions_map.set(extensions)
    at = layout.find(b"\xab\xcd\xef") if layout else -1
    try:
        while True:
            packet = await track.recv()
            if not sender._enabled or not isinstance(packet, av.Packet):
                continue
            payloads, rtp_time = packer.pack(packet)
            if not payloads:
                continue
            timestamp = (origin + rtp_time) & 0xFFFFFFFF
            ntp = int((time.time() + NTP_EPOCH_OFFSET) * 4294967296)
            value = layout
            if at >= 0:
                # abs-send-time: NTP seconds modulo 64 in 6.18 fixed point.
                value = layout[:at] + ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big") + layout[at + 3 :]
            tail = struct.pack("!LL", timestamp, ssrc)
            if value:
                tail += struct.pack("!HH", profile, len(value) >> 2) + value
            first = 0x90 if value else 0x80
            pair = dtls.transport._connection._nominated.get(1)
            if dtls.state != "connected" or pair is None:
                raise ConnectionError("not connected")
            transport = pair.protocol.transport
            # (asyncio's selector datagram transport has it; typeshed's class does not.)
            if transport.get_write_buffer_size() > SEND_BUFFER_LIMIT:  # type: ignore[attr-defined]
                # The socket is not draining (asyncio buffers UDP without bound and aioice
                # never pauses): drop this frame, and let the track skip to a keyframe.
                resync = getattr(track, "resync", None)
                if callable(resync):
                    resync()
                continue
            protect = dtls._tx_srtp.protect
            sendto = transport.sendto
            address = pair.remote_addr
            last = len(payloads) - 1
            octets = 0
            for index, payload in enumerate(payloads):
                marker = 1 if index == last else 0
                head = struct.pack("!BBH", first, (marker << 7) | payload_type, sequence) + tail
                history[sequence % RTP_HISTORY_SIZE] = _Sent(
                    sequence, marker, timestamp, payload, extensions, head
                )
                sendto(protect(head + payload), address)
                octets += len(payload)
                sequence = (sequence + 1) & 0xFFFF
            setattr(sender, private + "ntp_timestamp", ntp)
            setattr(sender, private + "rtp_timestamp", timestamp)
            setattr(
                sender, private + "octet_count", getattr(sender, private + "octet_count") + octets
            )
            count = getattr(sender, private + "packet_count") + len(payloads)
            setattr(sender, private + "packet_count", count)
    except (asyncio.CancelledError, ConnectionError, MediaStreamError):
        pass
    except Exception:
        log.exception("RTP sender failed")
    finally:
        if track is not None:
            track.stop()
        getattr(sender, private + "rtp_exited").set()


def send_packets_directly(
    sender: RTCRtpSender, packer_for: Callable[[RTCRtpCodecParameters], SharedPacker]
) -> None:
    """Make ``sender`` (whose track returns ``av.Packet``) send through
    :func:`_send_packets`, packetising with ``packer_for(codec)``: about a quarter of
    aiortc's CPU per packet. Call before the connection starts (``send`` starts the loop)."""

    def run(codec: RTCRtpCodecParameters) -> Any:
        return _send_packets(sender, packer_for, codec)

    sender._run_rtp = run  # type: ignore[method-assign]


# --------------------------------------------------------------------------- codecs

# aiortc only knows H.264 Constrained Baseline and Baseline; encoders publishing over WHIP
# (FFmpeg, hardware) offer Main or High. Passthrough never decodes, so any profile will do.
EXTRA_H264_PROFILES = ("4d001f", "640c1f", "64001f")


def add_h264_profiles(profile_level_ids: Sequence[str] = EXTRA_H264_PROFILES) -> None:
    """Let aiortc negotiate these H.264 profiles too (process-wide, idempotent)."""
    from aiortc.codecs import CODECS
    from aiortc.rtcrtpparameters import RTCRtcpFeedback

    video = CODECS["video"]
    known = {
        str(c.parameters.get("profile-level-id", "")).lower()
        for c in video
        if c.mimeType.lower() == "video/h264"
    }
    next_pt = max(c.payloadType or 0 for c in video) + 1
    for plid in profile_level_ids:
        if plid.lower() in known or next_pt + 1 > 127:
            continue
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/H264",
                clockRate=90000,
                payloadType=next_pt,
                rtcpFeedback=[
                    RTCRtcpFeedback(type="nack"),
                    RTCRtcpFeedback(type="nack", parameter="pli"),
                    RTCRtcpFeedback(type="goog-remb"),
                ],
                parameters={
                    "level-asymmetry-allowed": "1",
                    "packetization-mode": "1",
                    "profile-level-id": plid,
                },
            )
        )
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/rtx",
                clockRate=90000,
                payloadType=next_pt + 1,
                parameters={"apt": next_pt},
            )
        )
        next_pt += 2


@dataclass
class HookCheck:
    """What :func:`check_hooks` found (all True on the pinned aiortc)."""

    results: dict[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.results.values())


def check_hooks() -> HookCheck:
    """Whether the internals these hooks use still exist; logged at startup."""
    check = HookCheck()
    r = check.results
    r["aiortc version"] = aiortc.__version__ == AIORTC_VERSION
    r["rtcicetransport.Connection"] = hasattr(aiortc.rtcicetransport, "Connection")
    r["Connection internals"] = all(
        hasattr(aioice.ice.Connection, name)
        for name in ("get_component_candidates", "check_incoming", "add_remote_candidate")
    )
    r["rtcrtpreceiver.decoder_worker"] = callable(
        getattr(aiortc.rtcrtpreceiver, "decoder_worker", None)
    )
    r["RTCRtpReceiver._send_rtcp_pli"] = hasattr(RTCRtpReceiver, "_send_rtcp_pli")
    r["RTCRtpSender._send_keyframe"] = hasattr(RTCRtpSender, "_send_keyframe")
    r["RTCRtpSender._run_rtp"] = hasattr(RTCRtpSender, "_run_rtp")
    r["RTCRtpSender._retransmit"] = hasattr(RTCRtpSender, "_retransmit")
    return check
