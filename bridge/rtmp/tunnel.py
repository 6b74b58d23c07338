"""RTMPT: RTMP tunnelled over HTTP POSTs (RTMPTS when the HTTP service runs over TLS).

The RTMP byte stream, handshake included, travels in POST bodies; what the server has to send
waits until the client's next POST (/work/shared/reference/rtmpt.md). Each tunnel session runs
the very same ``RtmpSession`` as a TCP connection, over a ``TunnelTransport`` whose writes fill
a buffer that the next reply empties. Facts this follows:

- librtmp needs ``HTTP/1.1 200`` and a ``Content-Length`` (never chunked); the open reply is
  the session id plus exactly one ``\\n``; replies to send/idle start with the polling byte.
- Requests of a session are applied in SEQ order (0 on the first after open); a request that
  comes early waits briefly for the ones before it, a replayed SEQ is refused.
- The polling byte adapts as Red5's does: 1 while data flows, doubling after runs of empty
  replies up to 0x21; an idle request with nothing to send is held briefly (long poll) so
  clients that poll at once (librtmp) do not spin.
- A session with no request for ``EXPIRY`` seconds is closed like a dropped TCP connection,
  so an expired publisher's publish ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

from aiohttp import web

from bridge.auth.policy import client_address
from bridge.rtmp.merge import MergedWrites
from bridge.rtmp.session import RtmpSession
from bridge.services import Services

log = logging.getLogger("bridge.rtmpt")

CONTENT_TYPE = "application/x-fcs"
EXPIRY = 8.0  # seconds without a request before a session is closed
IDLE_HOLD = 0.2  # how long an idle request with nothing to send waits for data
# While data flows, an idle reply waits until this long after the session's previous reply
# (or until COALESCE_BYTES are ready): each HTTP request costs far more CPU than the bytes
# it carries, and librtmp always keeps an idle request waiting.
COALESCE = 0.08
COALESCE_BYTES = 64 * 1024
ORDER_WAIT = 2.0  # how long a request that came early waits for the ones before it
MAX_AHEAD = 16  # how far ahead of the expected SEQ a request may be
MAX_SESSIONS = 4096
MAX_BODY = 4 * 1024 * 1024
SWEEP_INTERVAL = 1.0
# No Connection header: aiohttp keeps HTTP/1.1 alive by default and says "close" itself
# when it will close (a fixed "Keep-Alive" would lie then).
_HEADERS = {"Cache-Control": "no-cache"}


class TunnelTransport(asyncio.Transport):
    """An ``asyncio.Transport`` whose bytes go out in HTTP replies instead of a socket."""

    def __init__(self, peer: tuple[str, int], secure: bool) -> None:
        super().__init__()
        self._peer = peer
        self._secure = secure
        self._out = bytearray()
        self._protocol: asyncio.Protocol | None = None
        self._closing = False
        self._paused = False
        self._high = 64 * 1024
        self._low = 16 * 1024
        self.data_ready = asyncio.Event()

    # asyncio.Transport ------------------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        self._out += data
        self.data_ready.set()
        if not self._paused and len(self._out) > self._high and self._protocol is not None:
            self._paused = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def get_write_buffer_size(self) -> int:
        return len(self._out)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = high if high is not None else self._high
        self._low = low if low is not None else min(self._low, self._high)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        # What is buffered still goes out with the next reply; then the session ends.
        self._closing = True
        self.data_ready.set()

    def abort(self) -> None:
        self._closing = True
        self._out.clear()
        self.data_ready.set()

    def can_write_eof(self) -> bool:
        return False

    # the tunnel's side ---------------------------------------------------------------------

    def take(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        if not self._closing:
            self.data_ready.clear()
        if self._paused and self._protocol is not None:
            self._paused = False
            self._protocol.resume_writing()
        return data


class TunnelSession:
    def __init__(self, session_id: str, transport: TunnelTransport, protocol: RtmpSession) -> None:
        self.id = session_id
        self.transport = transport
        self.protocol = protocol
        self.next_seq = 0
        self.admitted = -1  # the highest SEQ let through: each SEQ is applied once
        self.waiting: set[int] = set()  # SEQs of requests waiting for their turn
        self.last_request = time.monotonic()
        self.busy = 0  # requests in progress
        self.last_reply = 0.0
        self.turn = asyncio.Condition()
        self._delay = 0
        self._empty = 0
        self.ended = False

    def polling_byte(self, had_data: bool) -> int:
        """Red5's ladder: 1 while data flows; after 10 empty replies in a row the delay
        doubles, up to 32 (byte 0x21); 0 once the session is closing."""
        if self.transport.is_closing():
            return 0
        if had_data:
            self._delay = 0
            self._empty = 0
        else:
            self._empty += 1
            if self._empty >= 10:
                self._empty = 0
                self._delay = min(32, max(1, self._delay * 2))
        return self._delay + 1


class RtmptService:
    """The RTMPT endpoints of the HTTP service, and every tunnel session's owner."""

    def __init__(self, services: Services, merger: MergedWrites) -> None:
        self.services = services
        self.config = services.config
        self.merger = merger
        self.sessions: dict[str, TunnelSession] = {}
        self.rtmp_sessions: set[RtmpSession] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._accepting = True

    def register(self, app: web.Application) -> None:
        app.router.add_post("/fcs/ident2", self.ident2)
        app.router.add_post("/open/1", self.open)
        app.router.add_post("/send/{id}/{seq}", self.send)
        app.router.add_post("/idle/{id}/{seq}", self.idle)
        app.router.add_post("/close/{id}/{seq}", self.close_request)

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="rtmpt-sweeper")

    # ------------------------------------------------------------------------- endpoints

    async def ident2(self, request: web.Request) -> web.Response:
        # Flash Player asks first; librtmp and FFmpeg do not. An empty 200 satisfies all.
        await request.read()
        return self._reply(b"")

    async def open(self, request: web.Request) -> web.Response:
        await request.read()
        if not self._accepting:
            raise web.HTTPServiceUnavailable(text="server is shutting down")
        if len(self.sessions) >= MAX_SESSIONS:
            log.warning("RTMPT session refused: %d sessions open", len(self.sessions))
            raise web.HTTPServiceUnavailable(text="too many RTMPT sessions")
        peer = self._peer(request)
        if not self.services.sessions.admit(peer[0]):
            log.warning(
                "[rtmpt %s] refused: more than %d connections from this address",
                peer[0],
                self.config.max_ip_concurrent_connections,
            )
            raise web.HTTPTooManyRequests(text="too many connections from this address")
        transport = TunnelTransport(peer, request.secure)
        scheme = "rtmpts" if request.secure else "rtmpt"
        protocol = RtmpSession(self.services, self.rtmp_sessions, scheme, self.merger)
        transport.set_protocol(protocol)
        session_id = secrets.token_urlsafe(18)  # 24 characters of [A-Za-z0-9_-]: no '/'
        session = TunnelSession(session_id, transport, protocol)
        self.sessions[session_id] = session
        protocol.connection_made(transport)
        return self._reply(session_id.encode() + b"\n")

    async def send(self, request: web.Request) -> web.Response:
        session, seq = self._lookup(request)
        async with self._in_order(session, seq, request, carries_data=True) as body:
            if body and not session.transport.is_closing():
                session.protocol.data_received(body)
            return self._pending(session)

    async def idle(self, request: web.Request) -> web.Response:
        session, seq = self._lookup(request)
        async with self._in_order(session, seq, request):
            transport = session.transport
            if not transport.get_write_buffer_size() and not transport.is_closing():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(transport.data_ready.wait(), IDLE_HOLD)
            size = transport.get_write_buffer_size()
            if 0 < size < COALESCE_BYTES and not transport.is_closing():
                delay = session.last_reply + COALESCE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            return self._pending(session)

    async def close_request(self, request: web.Request) -> web.Response:
        session, seq = self._lookup(request)
        async with self._in_order(session, seq, request):
            self._end(session, "client closed the tunnel")
            return self._reply(b"\x00")

    # --------------------------------------------------------------------------- helpers

    def _peer(self, request: web.Request) -> tuple[str, int]:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        host, port = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else ("", 0)
        return client_address(
            host, request.headers.get("X-Forwarded-For"), self.config.trusted_proxies
        ), port

    def _lookup(self, request: web.Request) -> tuple[TunnelSession, int]:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            raise web.HTTPNotFound(text="unknown or expired RTMPT session")
        text = request.match_info["seq"]
        if not (text.isascii() and text.isdigit()) or len(text) > 12:
            raise web.HTTPBadRequest(text="bad sequence number")
        length = request.content_length
        if length is not None and length > MAX_BODY:
            # Refused before it is admitted, so its SEQ stays free.
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=length)
        session.last_request = time.monotonic()
        return session, int(text)

    @contextlib.asynccontextmanager
    async def _in_order(
        self, session: TunnelSession, seq: int, request: web.Request, *, carries_data: bool = False
    ) -> Any:
        """Run the body of the ``async with`` (given the request body) when every request
        before ``seq`` has run.

        SEQ is checked before the body is read, so refused requests hold nothing; at most
        MAX_AHEAD + 1 requests of a session wait at a time. The body is read before waiting
        for the turn, while the client is surely still there."""
        if seq <= session.admitted or seq in session.waiting:
            raise web.HTTPBadRequest(text=f"sequence number {seq} was already used")
        if seq > session.next_seq + MAX_AHEAD:
            raise web.HTTPBadRequest(text=f"sequence number {seq} is too far ahead")
        session.busy += 1
        session.waiting.add(seq)
        try:
            try:
                body = await request.read()
            except ConnectionError:
                if carries_data:  # its bytes are lost: the RTMP stream cannot go on
                    self._end(session, "client dropped a request in flight")
                raise web.HTTPBadRequest(text="connection lost") from None
            if seq != session.next_seq:
                # A held idle ahead of us should answer now rather than make us wait for it.
                session.transport.data_ready.set()
            async with session.turn:
                try:
                    await asyncio.wait_for(
                        session.turn.wait_for(lambda: session.next_seq == seq), ORDER_WAIT
                    )
                except TimeoutError:
                    raise web.HTTPBadRequest(
                        text=f"request {session.next_seq} never came before {seq}"
                    ) from None
                session.admitted = seq
            if session.ended:
                raise web.HTTPNotFound(text="RTMPT session closed")
            try:
                yield body
            finally:
                async with session.turn:
                    session.next_seq = max(session.next_seq, seq + 1)
                    session.turn.notify_all()
                session.last_request = time.monotonic()
        finally:
            session.busy -= 1
            session.waiting.discard(seq)

    def _pending(self, session: TunnelSession) -> web.Response:
        transport = session.transport
        data = transport.take()
        session.last_reply = time.monotonic()
        byte = session.polling_byte(bool(data))
        if transport.is_closing():
            self._end(session, "")
        return self._reply(bytes((byte,)) + data)

    @staticmethod
    def _reply(body: bytes) -> web.Response:
        return web.Response(body=body, content_type=CONTENT_TYPE, headers=_HEADERS)

    def _end(self, session: TunnelSession, reason: str) -> None:
        """Forget the session; if the RTMP side is still open, close it with ``reason``."""
        if session.ended:
            return
        session.ended = True
        self.sessions.pop(session.id, None)
        if reason:
            session.protocol.close(reason)
        session.transport.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if session.busy == 0 and now - session.last_request > EXPIRY:
                    self._end(session, f"RTMPT session expired ({EXPIRY:.0f} s without a request)")

    async def close(self) -> None:
        """Server shutdown: every tunnelled session gets its proper close queued; clients
        that poll in the next moment receive it."""
        self._accepting = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for session in list(self.sessions.values()):
            session.protocol.shutdown()
        if self.sessions:
            await asyncio.sleep(min(1.0, IDLE_HOLD * 3))
        for session in list(self.sessions.values()):
            self._end(session, "server shutting down")
