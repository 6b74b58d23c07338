"""What WHIP and WHEP sessions share: the peer connection, its lifetime and its one log line.

A session is created by a POST and lives until the client DELETEs it, its ICE or DTLS fails
or consent expires, it does not connect in time, the server kicks it, or
the server stops. Whatever ends it, ``close`` runs once and the session leaves every table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from bridge.logs import SessionLog

log = logging.getLogger("bridge.webrtc")

# A session whose ICE and DTLS have not completed by then is given up (a client that POSTed
# and vanished, or cannot reach any candidate): bounds half-open sessions.
DEFAULT_CONNECT_TIMEOUT = 15.0


def rtc_configuration() -> RTCConfiguration:
    """The server's own ICE configuration: host candidates only (the ICE policy decides
    which), no STUN or TURN. aiortc's default is a public STUN server, which makes every
    answer wait for seconds on a host that cannot reach it; behind 1:1 NAT,
    WEBRTC_PUBLIC_IPS announces the public address instead. Configured ICE servers are for
    the clients (Link headers)."""
    return RTCConfiguration(iceServers=[])


def prefer_codecs(transceiver: RTCRtpTransceiver, names: Sequence[str]) -> None:
    """Offer/accept only ``names`` (in that order) on ``transceiver``, with RTX for video.

    Must run before ``setRemoteDescription``: without it aiortc picks the first common codec
    (VP8 for a browser), and H.264 bytes would go out labelled VP8 as black video.
    """
    kind = transceiver.kind
    caps = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for name in names for c in caps if c.mimeType.lower() == f"{kind}/{name}"]
    chosen += [c for c in caps if c.mimeType.lower() == f"{kind}/rtx"]
    transceiver.setCodecPreferences(chosen)


class PeerSession:
    """One WHIP or WHEP session: also a ``bridge.sessions.Session``."""

    protocol = "webrtc"

    def __init__(
        self,
        token: str,
        *,
        ip: str,
        channel: str,
        on_closed: Callable[[PeerSession], None],
        log_requests: bool = True,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.id = token
        self.connect_timeout = connect_timeout
        self.ip = ip
        self.channel = channel
        self.role = ""
        self.stream_id = ""
        self.started_at = time.time()
        self.opened = time.monotonic()
        self.pc = RTCPeerConnection(rtc_configuration())
        self.log = SessionLog(log, self.protocol, ip)
        self.log.channel = channel
        self.ufrag = ""
        self.connected = False
        self.closed = False
        self.close_reason = ""
        self._on_closed = on_closed
        self._log_requests = log_requests
        self._timeout: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._state_changed)

    # bridge.sessions.Session
    @property
    def bytes_in(self) -> int:
        return 0

    @property
    def bytes_out(self) -> int:
        return 0

    def kick(self, reason: str) -> None:
        self.close(reason)

    async def answer(self, offer_sdp: str) -> str:
        """Apply the client's offer and return the complete answer (every candidate in it:
        a WHIP/WHEP server cannot trickle)."""
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        self.prepare()
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        description = self.pc.localDescription
        self.ufrag = _ice_ufrag(description.sdp)
        self._timeout = asyncio.get_running_loop().call_later(self.connect_timeout, self._timed_out)
        if self._log_requests:
            self.log.info("session %s…", self.id[:8])
        return description.sdp

    def prepare(self) -> None:
        """Between applying the offer and answering (receivers exist, nothing flows yet)."""

    def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and not self.connected:
            self.connected = True
            if self._timeout is not None:
                self._timeout.cancel()
                self._timeout = None
            self.log.debug("connected after %.0f ms", (time.monotonic() - self.opened) * 1000)
            self.on_connected()
        elif state == "failed":
            self.close("ICE or DTLS failed (peer unreachable, or consent expired)")
        elif state == "closed" and not self.closed:
            self.close("connection closed by the peer")

    def on_connected(self) -> None:
        """ICE and DTLS are up: media can flow."""

    def _timed_out(self) -> None:
        self._timeout = None
        if not self.connected:
            self.close(f"did not connect within {self.connect_timeout:g} s")

    def close(self, reason: str) -> None:
        """End the session (idempotent); the peer connection closes in the background."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        self.on_close()
        self._on_closed(self)
        if self._log_requests:
            self.log.info("closed: %s", reason)
        self._closing = asyncio.ensure_future(self._close_pc())

    def on_close(self) -> None:
        """Release what the session holds on the bus (runs once, before the pc closes)."""

    async def _close_pc(self) -> None:
        try:
            await asyncio.wait_for(self.pc.close(), 5.0)
        except Exception as exc:  # aiortc can raise from a half-built connection
            self.log.debug("peer connection close: %r", exc)

    async def wait_closed(self) -> None:
        if self._closing is not None:
            await asyncio.shield(self._closing)


def _ice_ufrag(sdp: str) -> str:
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line[len("a=ice-ufrag:") :].strip()
    return ""
