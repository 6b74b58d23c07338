"""Composition: build every part from the configuration, start them in order, stop them in
reverse."""

from __future__ import annotations

import asyncio
import logging
import signal

from bridge.bus.registry import Registry
from bridge.config import Config
from bridge.rtmp.server import RtmpServer

log = logging.getLogger("bridge")


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.registry = Registry(
            gop_cache_bytes=config.gop_cache_size_mb * 1024 * 1024,
            unpublish_grace=config.unpublish_grace_seconds,
        )
        self.rtmp = RtmpServer(config, self.registry)
        self._started: list[str] = []

    async def start(self) -> None:
        if self.config.rtmp_port:
            for url in await self.rtmp.start(self.config.rtmp_port):
                log.info("listening %s", url)
            self._started.append("rtmp")

    async def stop(self) -> None:
        if "rtmp" in self._started:
            await self.rtmp.close()
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
