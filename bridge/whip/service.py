"""WHIP (RFC 9725) and WHEP on the HTTP service: signalling, sessions, limits and CORS.

``POST /whip/CHANNEL`` (``Authorization: Bearer KEY``) and ``POST /whep/CHANNEL`` take an
SDP offer and answer 201 with the complete answer and the session's unguessable URL,
``/whip|whep/CHANNEL/TOKEN``, which takes ``PATCH`` (trickle ICE) and ``DELETE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiohttp import web
from aiortc.sdp import candidate_from_sdp

from bridge.auth.policy import client_address, valid_id
from bridge.bus.registry import PublishRefused
from bridge.control.callback import PublishDenied
from bridge.services import Services
from bridge.whip import aiortc_hooks
from bridge.whip.feed import ChannelFeed, predicted_paths
from bridge.whip.ingest import WhipSession
from bridge.whip.peer import PeerSession
from bridge.whip.sdp import (
    MAX_SDP_BYTES,
    SdpError,
    add_bitrate_hints,
    check_content_type,
    etag,
    link_headers,
    parse_offer,
    parse_sdpfrag,
    session_url_token,
)
from bridge.whip.whep import WhepSession

log = logging.getLogger("bridge.webrtc")

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
# A WHEP player retries a channel that is not live after this (draft-ietf-wish-whep: 409).
NOT_LIVE_RETRY_SECONDS = 2
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "OPTIONS, GET, HEAD, POST, PATCH, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch, Accept-Post",
    "Access-Control-Max-Age": "600",
}
# What Chromium should start a WHIP publish at (aiortc's bandwidth feedback is weak, so
# without hints Chromium starts at 640x360 and 0.5 Mbps and stays there for a long time).
START_KBPS, MIN_KBPS, MAX_KBPS = 2500, 600, 6000


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=reason + "\n", headers={**CORS, **(headers or {})})


class WebRtcService:
    """Every WHIP and WHEP session of the server, and the channels' shared WebRTC feeds."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.config = config = services.config
        self.sessions: dict[str, PeerSession] = {}
        self.feeds: dict[str, ChannelFeed] = {}
        # For the clients only (see peer.rtc_configuration).
        self._links = link_headers(config.webrtc_ice_servers)
        self._closing = False

    def register(self, app: web.Application) -> None:
        router = app.router
        for kind in ("whip", "whep"):
            router.add_route("OPTIONS", f"/{kind}/{{channel}}", self.options)
            router.add_get(f"/{kind}/{{channel}}", self.describe_endpoint)
            router.add_post(f"/{kind}/{{channel}}", self.whip if kind == "whip" else self.whep)
            router.add_route("OPTIONS", f"/{kind}/{{channel}}/{{token}}", self.options)
            router.add_route("PATCH", f"/{kind}/{{channel}}/{{token}}", self.patch)
            router.add_route("DELETE", f"/{kind}/{{channel}}/{{token}}", self.delete)

    async def start(self) -> None:
        aiortc_hooks.install_ice_policy(
            aiortc_hooks.IcePolicy(
                addresses=self.config.webrtc_addresses or self._bind_addresses(),
                ports=self.config.webrtc_udp_ports,
                public_ips=self.config.webrtc_public_ips,
            )
        )
        aiortc_hooks.add_h264_profiles()
        check = aiortc_hooks.check_hooks()
        if not check.ok:
            broken = ", ".join(name for name, ok in check.results.items() if not ok)
            log.warning("aiortc internals differ from the pinned version: %s", broken)
        addresses = aiortc_hooks.local_addresses(aiortc_hooks.current_ice_policy())
        log.info("WebRTC candidates on %s", ", ".join(addresses) or "no address")

    def _bind_addresses(self) -> tuple[str, ...]:
        bind = self.config.bind_address
        if bind and bind not in ("0.0.0.0", "::"):
            return (bind,)
        return ()

    async def close(self) -> None:
        self._closing = True
        sessions = list(self.sessions.values())
        for session in sessions:
            session.close("server shutting down")
        waits = [session.wait_closed() for session in sessions]
        if waits:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), 6.0)
        for feed in list(self.feeds.values()):
            feed.close()

    # ------------------------------------------------------------------ helpers

    def _client(self, request: web.Request) -> str:
        peer = request.remote or ""
        return client_address(
            peer, request.headers.get("X-Forwarded-For"), self.config.trusted_proxies
        )

    def _feed_for(self, channel: str) -> ChannelFeed:
        feed = self.feeds.get(channel)
        if feed is None or feed.closed:
            feed = self.feeds[channel] = ChannelFeed(
                channel, self.services.registry, on_idle=self._feed_idle
            )
        return feed

    def _feed_idle(self, feed: ChannelFeed) -> None:
        if self.feeds.get(feed.channel) is feed:
            del self.feeds[feed.channel]

    def _closed(self, session: PeerSession) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
        self.services.sessions.remove(session)

    def describe(self, channel: str) -> dict[str, object] | None:
        """The WebRTC path of ``channel`` for the API: its feed's, or what it would be for
        a live channel no WHEP viewer watches yet (None when not live and unwatched)."""
        feed = self.feeds.get(channel)
        if feed is not None:
            return feed.describe()
        stream = self.services.registry.get(channel)
        return predicted_paths(stream) if stream is not None and stream.live else None

    def _link_headers(self) -> dict[str, str]:
        return {"Link": ", ".join(self._links)} if self._links else {}

    async def _read_offer(self, request: web.Request, role: str) -> str:
        check_content_type(request.headers.get("Content-Type"), SDP)
        if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
            raise SdpError(413, f"the offer is larger than {MAX_SDP_BYTES} bytes")
        body = await request.content.read(MAX_SDP_BYTES + 1)
        # The checked text (CRLF endings), which aiortc's parser is known to take.
        return parse_offer(body, role=role).sdp

    def _admit(self, ip: str) -> web.Response | None:
        if self._closing:
            return _error(503, "server shutting down", {"Retry-After": "5"})
        if len(self.sessions) >= self.config.webrtc_max_sessions:
            return _error(503, "too many WebRTC sessions", {"Retry-After": "5"})
        if not self.services.sessions.admit(ip):
            limit = self.config.max_ip_concurrent_connections
            return _error(429, f"more than {limit} sessions from this address")
        return None

    def _created(self, session: PeerSession, kind: str, answer: str) -> web.Response:
        headers = {
            **CORS,
            "Location": f"/{kind}/{session.channel}/{session.id}",
            "ETag": etag(session.ufrag),
            "Accept-Patch": SDPFRAG,
            "Cache-Control": "no-store",
            **self._link_headers(),
        }
        return web.Response(status=201, body=answer.encode(), content_type=SDP, headers=headers)

    def _session_args(self, ip: str, channel: str) -> dict[str, Any]:
        """What every session is built with, WHIP or WHEP."""
        return {
            "ip": ip,
            "channel": channel,
            "on_closed": self._closed,
            "log_requests": self.config.log_requests,
            "connect_timeout": self.config.webrtc_connect_timeout_seconds,
        }

    async def _open(self, session: PeerSession, offer: str) -> str:
        """Register ``session`` and answer its offer (it closes itself if that fails)."""
        self.sessions[session.id] = session
        self.services.sessions.add(session)
        try:
            return await asyncio.wait_for(session.answer(offer), 10.0)
        except TimeoutError:
            session.close("answering the offer took too long")
            raise web.HTTPServiceUnavailable(
                text="the server could not answer in time\n", headers={**CORS, "Retry-After": "5"}
            ) from None
        except Exception as exc:  # aiortc raises ValueError/OperationError/... on offers
            session.close(f"offer refused: {exc}")
            raise SdpError(422, f"the offer cannot be answered: {exc}") from None

    # ------------------------------------------------------------------ endpoints

    async def options(self, request: web.Request) -> web.Response:
        headers = {**CORS, "Accept-Post": SDP, "Accept-Patch": SDPFRAG}
        # ICE servers go only on a real OPTIONS, never on a CORS preflight (RFC 9725 §4.6).
        if "Access-Control-Request-Method" not in request.headers:
            headers.update(self._link_headers())
        return web.Response(status=204, headers=headers)

    async def describe_endpoint(self, request: web.Request) -> web.Response:
        # WHEP discovery: HEAD answers 200 with the content type a POST takes.
        return web.Response(status=200, headers={**CORS, "Content-Type": SDP, "Accept-Post": SDP})

    async def whep(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel"]
        if not valid_id(channel, self.config.id_max_length):
            return _error(400, "invalid channel name")
        ip = self._client(request)
        try:
            offer = await self._read_offer(request, "whep")
        except SdpError as exc:
            return _error(exc.status, str(exc))
        stream = self.services.registry.get(channel)
        if stream is None or not stream.live:
            return _error(
                409, f"{channel} is not live", {"Retry-After": str(NOT_LIVE_RETRY_SECONDS)}
            )
        refused = self._admit(ip)
        if refused is not None:
            return refused
        session = WhepSession(
            session_url_token(), feed_for=self._feed_for, **self._session_args(ip, channel)
        )
        try:
            answer = await self._open(session, offer)
        except SdpError as exc:
            return _error(exc.status, str(exc))
        return self._created(session, "whep", answer)

    async def whip(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel"]
        limit = self.config.id_max_length
        if not valid_id(channel, limit):
            return _error(400, "invalid channel name")
        key = _bearer(request.headers.get("Authorization", ""))
        if key is None:
            return _error(
                401, "Authorization: Bearer STREAM_KEY is required", {"WWW-Authenticate": "Bearer"}
            )
        if not valid_id(key, limit):
            return _error(403, "invalid stream key")
        ip = self._client(request)
        try:
            offer = await self._read_offer(request, "whip")
        except SdpError as exc:
            return _error(exc.status, str(exc))
        registry = self.services.registry
        live = registry.get(channel)
        if live is not None and live.live:
            return _error(409, f"{channel} already has a publisher")
        refused = self._admit(ip)
        if refused is not None:
            return refused
        token = session_url_token()
        # Hold the IP's slot while the backend decides, as an RTMP connection would.
        placeholder = _Pending(token, ip, channel)
        self.services.sessions.add(placeholder)
        try:
            stream_id = await self.services.auth.start(channel, key, ip)
        except PublishDenied as exc:
            return _error(403, f"publish refused: {exc}")
        finally:
            self.services.sessions.remove(placeholder)
        session = WhipSession(
            token,
            key=key,
            stream_id=stream_id,
            registry=registry,
            auth=self.services.auth,
            **self._session_args(ip, channel),
        )
        try:
            answer = await self._open(session, offer)
        except SdpError as exc:
            return _error(exc.status, str(exc))
        try:
            stream = registry.start_publish(channel, key, session)
        except PublishRefused:
            session.close("another publisher took the channel meanwhile")
            return _error(409, f"{channel} already has a publisher")
        if session.closed:  # the client went away while we answered
            registry.end_publish(stream, session)
            return _error(410, "the session ended before it started")
        session.start(stream)
        answer = add_bitrate_hints(
            answer, start_kbps=START_KBPS, min_kbps=MIN_KBPS, max_kbps=MAX_KBPS
        )
        return self._created(session, "whip", answer)

    def _session(self, request: web.Request, kind: str) -> PeerSession:
        session = self.sessions.get(request.match_info["token"])
        if (
            session is None
            or session.protocol != kind
            or session.channel != request.match_info["channel"]
        ):
            raise web.HTTPNotFound(text="no such session\n", headers=CORS)
        return session

    async def patch(self, request: web.Request) -> web.Response:
        kind = request.path.split("/", 2)[1]
        session = self._session(request, kind)
        match = request.headers.get("If-Match")
        try:
            check_content_type(request.headers.get("Content-Type"), SDPFRAG)
            if match is not None and match != "*" and match != etag(session.ufrag):
                return _error(412, "the session's ETag does not match")
            frag = parse_sdpfrag(await request.content.read(64 * 1024 + 1))
        except SdpError as exc:
            return _error(exc.status, str(exc))
        remote = session.pc.remoteDescription
        remote_ufrag = _first_value(remote.sdp if remote else "", "a=ice-ufrag:")
        if match == "*" or (frag.ice_ufrag and frag.ice_ufrag != remote_ufrag):
            return _error(422, "ICE restarts are not supported: start a new session")
        for item in frag.candidates:
            try:
                candidate = candidate_from_sdp(item.candidate)
            except (ValueError, IndexError):
                return _error(400, f"bad candidate: {item.candidate[:80]}")
            candidate.sdpMid = item.mid
            candidate.sdpMLineIndex = item.mline_index if item.mline_index is not None else 0
            if candidate.sdpMid is None:
                candidate.sdpMid = _first_mid(remote.sdp if remote else "")
            with contextlib.suppress(Exception):  # an unusable candidate is dropped (§4.3.1)
                await session.pc.addIceCandidate(candidate)
        return web.Response(status=204, headers=CORS)

    async def delete(self, request: web.Request) -> web.Response:
        kind = request.path.split("/", 2)[1]
        session = self._session(request, kind)
        session.close("ended by the client (DELETE)")
        return web.Response(status=200, headers=CORS)


class _Pending:
    """A WHIP publish waiting for the callback: counts against its IP's limit meanwhile."""

    protocol = "whip"
    role = ""
    stream_id = ""
    bytes_in = 0
    bytes_out = 0

    def __init__(self, token: str, ip: str, channel: str) -> None:
        self.id = token + "-pending"
        self.ip = ip
        self.channel = channel
        self.started_at = time.time()

    def kick(self, reason: str) -> None:
        pass


def _bearer(header: str) -> str | None:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _first_value(sdp: str, prefix: str) -> str | None:
    for line in sdp.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return None


def _first_mid(sdp: str) -> str | None:
    return _first_value(sdp, "a=mid:")
