"""Composition: build every part from the configuration, start them in order, stop them in
reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from bridge.api import ControlApi
from bridge.bus.registry import Registry
from bridge.config import Config
from bridge.control.callback import PublishCallback
from bridge.control.redis_commands import RedisCommands
from bridge.hls.service import HlsService
from bridge.pages import register_pages
from bridge.rtmp.merge import MergedWrites
from bridge.rtmp.server import RtmpServer
from bridge.rtmp.tunnel import MAX_BODY, RtmptService
from bridge.services import Services
from bridge.sessions import SessionTable
from bridge.tls_accept import start_tls_server
from bridge.whip.service import WebRtcService

log = logging.getLogger("bridge")


def _url(scheme: str, host: str | None, port: int) -> str:
    """A listener's URL for the log line (IPv6 hosts in brackets)."""
    host = host or "0.0.0.0"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class App:
    """Owns every part of the server. ``start`` brings them up in order; ``stop`` takes down
    only what started, in reverse."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.registry = Registry(
            gop_cache_bytes=config.gop_cache_size_mb * 1024 * 1024,
            unpublish_grace=config.unpublish_grace_seconds,
        )
        self.sessions = SessionTable(
            max_per_ip=config.max_ip_concurrent_connections,
            exempt=config.concurrent_limit_whitelist,
        )
        self.auth = PublishCallback(config)
        self.services = Services(config, self.registry, self.sessions, self.auth)
        self.merger = MergedWrites(config.rtmp_write_merge_ms / 1000)
        self.tls = None
        if config.tls:
            from bridge.tls import CertificateReloader

            self.tls = CertificateReloader(
                config.ssl_cert, config.ssl_key, interval=config.ssl_check_reload_seconds, log=log
            )
        self.rtmp = RtmpServer(self.services, self.merger)
        self.rtmps = (
            RtmpServer(self.services, self.merger, scheme="rtmps", ssl_context=self.tls.context)
            if self.tls is not None
            else None
        )
        self.redis = RedisCommands(config, self.sessions)
        self.rtmpt = RtmptService(self.services, self.merger)
        self.hls = HlsService(self.services)
        self.webrtc = WebRtcService(self.services)
        self.api = ControlApi(
            config,
            self.registry,
            self.sessions,
            health=self.health,
            redis_state=lambda: self.redis.state,
            webrtc=self.webrtc.describe,
        )
        self.auth.observers.append(self.api.metrics.observe_callback)
        self.web = web.Application(client_max_size=MAX_BODY)
        self.rtmpt.register(self.web)
        self.api.register(self.web)
        self.hls.register(self.web)
        self.webrtc.register(self.web)
        register_pages(self.web)
        self._runner: web.AppRunner | None = None
        self._https: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started: list[str] = []
        self.urls: list[str] = []

    def health(self) -> dict[str, object]:
        redis = self.redis.state
        return {
            "status": "ok" if self._started else "stopped",
            "listeners": list(self.urls),
            "redis": redis,
            "redis_error": self.redis.last_error if redis == "down" else "",
        }

    async def start(self) -> None:
        config = self.config
        if config.rtmp_port:
            self._listening(await self.rtmp.start(config.rtmp_port))
            self._started.append("rtmp")
        if self.rtmps is not None and config.ssl_port:
            self._listening(await self.rtmps.start(config.ssl_port))
            self._started.append("rtmps")
        if config.http_port or config.https_port:
            await self.rtmpt.start()
            self._started.append("rtmpt")
            await self.hls.start()
            self._started.append("hls")
            await self.webrtc.start()
            self._started.append("webrtc")
            # Per-request access logs would be one line per RTMPT poll; sessions log
            # their own open and close instead.
            self._runner = web.AppRunner(self.web, access_log=None, shutdown_timeout=2.0)
            await self._runner.setup()
            self._started.append("http")
            if config.http_port:
                site = web.TCPSite(self._runner, config.bind_host, config.http_port)
                await site.start()
                self._listening(self._site_urls(site, "http", config.http_port))
            if config.https_port and self.tls is not None:
                handler_factory = self._runner.server
                assert handler_factory is not None  # set by setup()
                server = await start_tls_server(
                    handler_factory,
                    self.tls.context,
                    config.bind_host,
                    config.https_port,
                    "https",
                    log,
                )
                self._https = server
                self._listening([_url("https", *s.getsockname()[:2]) for s in server.sockets])
        if self.tls is not None:
            self._tasks.append(asyncio.create_task(self.tls.run(), name="certificate-reload"))
        if config.redis_use:
            self._tasks.append(asyncio.create_task(self.redis.run(), name="redis-commands"))

    @staticmethod
    def _site_urls(site: web.TCPSite, scheme: str, port: int) -> list[str]:
        server = site._server  # aiohttp keeps the asyncio server here; it knows the real port
        if isinstance(server, asyncio.base_events.Server) and server.sockets:
            return [_url(scheme, s.getsockname()[0], s.getsockname()[1]) for s in server.sockets]
        return [_url(scheme, None, port)]

    def _listening(self, urls: list[str]) -> None:
        for url in urls:
            log.info("listening %s", url)
            self.urls.append(url)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if "rtmpt" in self._started:
            await self.rtmpt.close()
        if "webrtc" in self._started:
            await self.webrtc.close()
        if "hls" in self._started:
            await self.hls.close()
        if "rtmps" in self._started and self.rtmps is not None:
            await self.rtmps.close()
        if "rtmp" in self._started:
            await self.rtmp.close()
        # Every publish that ended above owes its backend a "stop": deliver them now.
        await self.auth.close()
        if self._https is not None:
            self._https.close()
            self._https = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.merger.close()
        self.registry.close()
        self._started.clear()


async def serve(config: Config) -> None:
    """Run until SIGINT or SIGTERM, then close every session properly."""
    app = App(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
        await stop.wait()
        log.info("stopping")
    finally:
        await app.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("stopped")
