"""Logging set-up and the per-session prefix ("[rtmp 1.2.3.4:5678 chan] ...")."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any


def setup(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # aiortc, aioice and friends are chatty at debug; our own debug is what is asked for.
    for name in ("asyncio", "aioice", "aiortc", "av"):
        logging.getLogger(name).setLevel(logging.INFO if debug else logging.WARNING)


class SessionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with the session's protocol, peer and channel."""

    def __init__(self, logger: logging.Logger, protocol: str, peer: str) -> None:
        super().__init__(logger, {})
        self.protocol = protocol
        self.peer = peer
        self.channel = ""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        where = f"{self.protocol} {self.peer}"
        if self.channel:
            where += f" {self.channel}"
        return f"[{where}] {msg}", kwargs


def peer_name(address: Any) -> tuple[str, str]:
    """(ip, "ip:port") from a socket peer address, with IPv6 in brackets."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = str(address[0]), address[1]
        if host.startswith("::ffff:") and "." in host:
            host = host[7:]
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return host, shown
    return "", str(address)
