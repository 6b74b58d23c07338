"""The control API (``/api/v1``), ``/metrics`` and ``/healthz`` on the HTTP service.

The API is an aiohttp sub-application, so its middlewares (JSON errors, authentication) run
for its own requests only and never for RTMPT polls or media. It reads the session table and
the bus registry; the only things it changes are sessions, through ``Session.kick``.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.api.metrics import Metrics
from bridge.api.openapi import PREFIX, build_document
from bridge.auth.policy import client_address, is_loopback, valid_id
from bridge.bus.registry import Registry
from bridge.bus.stream import Stream
from bridge.config import Config
from bridge.sessions import Session, SessionTable

log = logging.getLogger("bridge.api")

KICK_REASON = "ended through the HTTP API"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _none_if_empty(text: str) -> str | None:
    return text or None


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def rfc3339(wall_seconds: float) -> str:
    """Wall-clock seconds as an RFC 3339 UTC timestamp with milliseconds."""
    moment = datetime.fromtimestamp(wall_seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def session_view(session: Session) -> dict[str, Any]:
    """A session as the API shows it; empty strings (not yet known) become null."""
    return {
        "id": session.id,
        "protocol": session.protocol,
        "address": session.ip,
        "channel": _none_if_empty(session.channel),
        "role": _none_if_empty(session.role),
        "stream_id": _none_if_empty(session.stream_id),
        "bytes_in": session.bytes_in,
        "bytes_out": session.bytes_out,
        "started_at": rfc3339(session.started_at),
    }


def channel_view(
    stream: Stream,
    sessions: SessionTable,
    now: float,
    webrtc: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A channel as the API shows it. ``now`` is on the registry's clock (monotonic);
    ``webrtc`` is what the WebRTC output does with the channel (None: no WHEP viewer)."""
    live = stream.live
    publisher: str | None = None
    stream_id: str | None = None
    uptime = 0.0
    bitrate = 0.0
    tracks: list[dict[str, Any]] = []
    if live:
        # The bus's publisher object is the session itself; an input without an id of its
        # own falls back to the table's publisher of the channel.
        owner: object | None = stream.publisher
        if _text_or_none(getattr(owner, "id", None)) is None:
            owner = sessions.publisher(stream.channel)
        publisher = _text_or_none(getattr(owner, "id", None))
        stream_id = _text_or_none(getattr(owner, "stream_id", None))
        if stream.published_at is not None:
            uptime = max(0.0, now - stream.published_at)
        if uptime > 0:
            bitrate = stream.bytes_in * 8 / 1000 / uptime
        tracks = [
            {
                "kind": track.kind,
                "codec": track.codec,
                "width": track.width,
                "height": track.height,
                "sample_rate": track.sample_rate,
                "channels": track.channels,
            }
            for track in stream.tracks.values()
        ]
    return {
        "name": stream.channel,
        "live": live,
        "publisher": publisher,
        "stream_id": stream_id,
        "tracks": tracks,
        "bitrate_kbps": round(bitrate, 3),
        "readers": stream.viewers,
        "dropped": sum(reader.dropped for reader in stream.readers),
        "uptime_seconds": round(uptime, 3),
        "webrtc": webrtc,
    }


class ControlApi:
    """The HTTP control plane: API routes, metrics and health on the given application."""

    def __init__(
        self,
        config: Config,
        registry: Registry,
        sessions: SessionTable,
        *,
        health: Callable[[], dict[str, Any]],
        redis_state: Callable[[], str] = lambda: "off",
        webrtc: Callable[[str], dict[str, Any] | None] = lambda channel: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.registry = registry
        self.sessions = sessions
        self.metrics = Metrics(registry, sessions, redis_state)
        self._health = health
        self._webrtc = webrtc
        # Must be the registry's clock: Stream.published_at is read from it.
        self._clock = clock
        self._token = config.api_token.encode()
        self._document = json.dumps(build_document(config.id_max_length)).encode()

    def register(self, app: web.Application) -> None:
        """Add ``/api/v1/...``, ``/metrics`` and ``/healthz`` to ``app``."""
        api = web.Application(middlewares=[self._json_errors, self._authenticate])
        api.router.add_get("/channels", self.list_channels)
        api.router.add_get("/channels/{channel}", self.get_channel)
        api.router.add_delete("/channels/{channel}", self.end_channel)
        api.router.add_get("/sessions", self.list_sessions)
        api.router.add_get("/sessions/{id}", self.get_session)
        api.router.add_delete("/sessions/{id}", self.end_session)
        api.router.add_get("/openapi.json", self.openapi)
        app.add_subapp(PREFIX, api)
        app.router.add_get("/metrics", self.scrape)
        app.router.add_get("/healthz", self.healthz)

    # ------------------------------------------------------------------------- middlewares

    @web.middleware
    async def _json_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every error of the API as JSON, with aiohttp's own 404/405 rewritten too."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if exc.status == 404:
                message = f"no such API endpoint: {request.path}"
            elif exc.status == 405:
                message = f"{request.method} is not allowed on {request.path}"
            else:
                message = exc.reason
            keep = {"Allow", "WWW-Authenticate"}
            headers = {name: value for name, value in exc.headers.items() if name in keep}
            return _error(exc.status, message, headers)
        except Exception:
            # The cause goes to the log; the client gets no traceback.
            log.exception("API %s %s failed", request.method, request.path)
            return _error(500, "internal error (logged by the server)")

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == f"{PREFIX}/openapi.json":
            return await handler(request)  # documentation, open to all
        if self._token:
            given = _bearer(request.headers.get("Authorization", ""))
            if given is None:
                return _error(
                    401,
                    "this API needs an 'Authorization: Bearer TOKEN' header",
                    {"WWW-Authenticate": 'Bearer realm="bridge"'},
                )
            # Bytes on both sides, so a non-ASCII header is just a wrong token.
            if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self._token):
                return _error(
                    401,
                    "wrong API token",
                    {"WWW-Authenticate": 'Bearer realm="bridge", error="invalid_token"'},
                )
            return await handler(request)
        peer = request.remote or ""
        client = client_address(
            peer, request.headers.get("X-Forwarded-For"), self.config.trusted_proxies
        )
        # Both must be loopback: a proxy on this host may forward a remote client, and with
        # TRUSTED_PROXIES=* a remote peer could otherwise name itself 127.0.0.1.
        if not (is_loopback(peer) and is_loopback(client)):
            return _error(
                403,
                "without API_TOKEN the API answers loopback clients only "
                "(set API_TOKEN to use it remotely)",
            )
        return await handler(request)

    # ---------------------------------------------------------------------------- channels

    def _bad_channel(self) -> web.Response:
        limit = self.config.id_max_length
        return _error(400, f"a channel name has 1 to {limit} letters, digits, '-' or '_'")

    async def list_channels(self, request: web.Request) -> web.Response:
        now = self._clock()
        streams = self.registry.streams
        channels = [
            channel_view(streams[name], self.sessions, now, self._webrtc(name))
            for name in sorted(streams)
        ]
        return web.json_response({"channels": channels})

    async def get_channel(self, request: web.Request) -> web.Response:
        name = request.match_info["channel"]
        if not valid_id(name, self.config.id_max_length):
            return self._bad_channel()
        stream = self.registry.get(name)
        if stream is None:
            return _error(404, f"no channel named {name}")
        return web.json_response(
            channel_view(stream, self.sessions, self._clock(), self._webrtc(stream.channel))
        )

    async def end_channel(self, request: web.Request) -> web.Response:
        name = request.match_info["channel"]
        if not valid_id(name, self.config.id_max_length):
            return self._bad_channel()
        known = self.registry.get(name) is not None
        ended = self.sessions.kick_channel(name, KICK_REASON)
        if not ended and not known:
            return _error(404, f"no channel named {name}")
        log.info("API: ended channel %s (%d sessions)", name, ended)
        return web.json_response({"ended": ended})

    # ---------------------------------------------------------------------------- sessions

    async def list_sessions(self, request: web.Request) -> web.Response:
        channel = request.query.get("channel")
        if channel is not None and not valid_id(channel, self.config.id_max_length):
            return self._bad_channel()
        sessions = self.sessions if channel is None else self.sessions.by_channel(channel)
        return web.json_response({"sessions": [session_view(s) for s in sessions]})

    async def get_session(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return _error(404, "no session with that id")
        return web.json_response(session_view(session))

    async def end_session(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return _error(404, "no session with that id")
        log.info("API: ending session %s", session.id)
        session.kick(KICK_REASON)
        return web.json_response({"ended": 1})

    # ------------------------------------------------------------------------- meta routes

    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self._document, content_type="application/json")

    async def scrape(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.render(request.headers.get("Accept"))
        # aiohttp wants the charset apart from the content type.
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        try:
            report = dict(self._health())
        except Exception:
            log.exception("health check failed")
            report = {"status": "error", "error": "the health check failed (logged)"}
        report["sessions"] = len(self.sessions)
        report["channels"] = len(self.registry.streams)
        status = 200 if report.get("status") == "ok" else 503
        return web.json_response(report, status=status)


def _bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (scheme case-insensitive,
    RFC 7235), or None when the header is missing or of another scheme."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
