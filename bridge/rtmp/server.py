"""The RTMP listener (and, with an SSL context, RTMPS: the same sessions over TLS)."""

from __future__ import annotations

import asyncio
import logging
import ssl

from bridge.rtmp.merge import MergedWrites
from bridge.rtmp.session import RtmpSession
from bridge.services import Services
from bridge.tls_accept import start_tls_server

log = logging.getLogger("bridge.rtmp")


class RtmpServer:
    def __init__(
        self,
        services: Services,
        merger: MergedWrites,
        *,
        scheme: str = "rtmp",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.services = services
        self.config = services.config
        self.scheme = scheme
        self.ssl_context = ssl_context
        self.merger = merger
        self.sessions: set[RtmpSession] = set()
        self._server: asyncio.Server | None = None

    async def start(self, port: int) -> list[str]:
        """Listen; returns the URLs listened on."""

        def factory() -> RtmpSession:
            return RtmpSession(self.services, self.sessions, self.scheme, self.merger)

        if self.ssl_context is not None:
            self._server = await start_tls_server(
                factory, self.ssl_context, self.config.bind_host, port, self.scheme, log
            )
        else:
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                factory, host=self.config.bind_host, port=port, reuse_address=True
            )
        urls = []
        for sock in self._server.sockets:
            host, bound_port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            urls.append(f"{self.scheme}://{shown}:{bound_port}")
        return urls

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.shutdown()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), timeout=3.0)
            except TimeoutError:
                log.warning("some RTMP connections did not close within 3 s")
