"""TLS listeners that say why a handshake failed.

``loop.create_server(ssl=...)`` drops a failed TLS handshake without a word (asyncio logs
``SSLError`` only in debug mode, since it is an ``OSError``), so a client sending garbage or
stalling in the handshake leaves no trace. Here the TCP connection is accepted plainly, the
handshake runs through ``loop.start_tls`` with a timeout, a failure is one log line, and on
success the TLS transport is handed to the real protocol (an RTMP session or aiohttp's HTTP
handler), together with any bytes that arrived in the meantime.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

from bridge.logs import peer_name

HANDSHAKE_TIMEOUT = 10.0


class TlsAcceptor(asyncio.Protocol):
    def __init__(
        self,
        context: ssl.SSLContext,
        factory: Callable[[], asyncio.BaseProtocol],
        label: str,
        log: logging.Logger,
        *,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self._context = context
        self._factory = factory
        self._label = label
        self._log = log
        self._timeout = handshake_timeout
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._early: list[bytes] = []  # application data decrypted before the hand-over
        self._eof = False
        self._lost: tuple[Exception | None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._task = asyncio.get_running_loop().create_task(self._handshake())

    async def _handshake(self) -> None:
        assert self._transport is not None
        raw = self._transport
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            tls = await loop.start_tls(
                raw, self, self._context, server_side=True, ssl_handshake_timeout=self._timeout
            )
        except (OSError, TimeoutError, ConnectionError) as exc:
            # asyncio reports its own handshake timeout as ConnectionAbortedError.
            timed_out = loop.time() - started >= self._timeout
            self._fail(raw, exc, timed_out)
            return
        if tls is None:  # closed while the handshake ran
            return
        protocol = self._factory()
        tls.set_protocol(protocol)
        protocol.connection_made(tls)
        assert isinstance(protocol, asyncio.Protocol)
        for data in self._early:
            protocol.data_received(data)
        self._early.clear()
        if self._eof:
            protocol.eof_received()
        if self._lost is not None:
            protocol.connection_lost(self._lost[0])

    def _fail(self, raw: asyncio.Transport, exc: BaseException, timed_out: bool) -> None:
        _, peer = peer_name(raw.get_extra_info("peername"))
        if timed_out:
            reason = f"no TLS handshake within {self._timeout:.0f} s"
        elif isinstance(exc, ssl.SSLError):
            reason = f"TLS handshake failed: {exc.reason or exc}"
        else:
            reason = f"TLS handshake failed: {str(exc) or type(exc).__name__}"
        self._log.info("[%s %s] closed: %s", self._label, peer, reason)
        raw.abort()

    # Until the hand-over, SSLProtocol delivers to us: keep what comes for the real protocol.

    def data_received(self, data: bytes) -> None:
        self._early.append(data)

    def eof_received(self) -> bool | None:
        self._eof = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = (exc,)


async def start_tls_server(
    factory: Callable[[], asyncio.BaseProtocol],
    context: ssl.SSLContext,
    host: str | None,
    port: int,
    label: str,
    log: logging.Logger,
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: TlsAcceptor(context, factory, label, log),
        host=host,
        port=port,
        reuse_address=True,
    )
