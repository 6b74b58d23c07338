"""``bridge probe URL``: which of rtmp, rtmps, rtmpt (and rtmpts) reach a server, and how fast.

Flash Player, given an rtmp:// URL without a port, tried RTMP on 1935, then 443 and 80, then
RTMPT on 80 (/work/shared/reference/rtmpt.md §1). We try the same kinds of transport at once,
each with its own timeout, run the simple RTMP handshake and ``connect`` on each, and report
which work and how long every step took, so a user can tell a firewall (refused, timed out),
a TLS problem (certificate) and a server refusal apart.

The RTMP side (handshake, connect command, reading the reply) is the sans-IO
:class:`ConnectExchange`; the adapters around it only move bytes: asyncio streams for
rtmp/rtmps, aiohttp POSTs for the RTMPT tunnel (open, send, idle, close: rtmpt.md §2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import json
import re
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from bridge.rtmp.client import (
    ConnectExchange,
    ConnectReply,
)
from bridge.rtmp.errors import HandshakeError, RtmpError

__all__ = [
    "ConnectExchange",
    "ConnectReply",
    "ProbeResult",
    "ProbeTarget",
    "ProbeUrl",
    "ProbeUrlError",
    "Timings",
    "add_arguments",
    "format_summary",
    "format_table",
    "main",
    "make_tls_context",
    "parse_url",
    "plan_targets",
    "probe_all",
    "probe_one",
    "run",
]

# Flash's order, with each transport's default port and whether it runs over TLS / HTTP.
TRANSPORTS: dict[str, tuple[int, bool, bool]] = {
    "rtmp": (1935, False, False),
    "rtmps": (443, True, False),
    "rtmpt": (80, False, True),
    "rtmpts": (443, True, True),
}
DEFAULT_APP = "live"
DEFAULT_TIMEOUT = 5.0

# What we let a server make us hold.
MAX_HTTP_BODY = 256 * 1024
IDLE_PAUSE = 0.01  # before an idle POST that follows an empty reply (FFmpeg waits 50 ms)
CLOSE_GRACE = 1.0  # seconds allowed for a polite close once the answer is known

_HTTP_HEADERS = {
    # The headers librtmp and FFmpeg send on every tunnel POST (rtmpt.md §2).
    "Content-Type": "application/x-fcs",
    "User-Agent": "Shockwave Flash",
    "Cache-Control": "no-cache",
    "Accept": "*/*",
}
_HOST_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class ProbeUrlError(ValueError):
    """The URL (or bare host) cannot be probed."""


# ------------------------------------------------------------------------------------ URLs


@dataclass(frozen=True, slots=True)
class ProbeUrl:
    scheme: str
    host: str
    port: int | None  # the port written in the URL, if any; it belongs to ``scheme``
    app: str
    path: str  # "/app[/stream][?query]", "/live" when the URL had none


def parse_url(text: str) -> ProbeUrl:
    """Parse ``scheme://host[:port]/app[/stream]`` or a bare ``host[:port]`` (rtmp)."""
    text = text.strip()
    if not text:
        raise ProbeUrlError("empty URL")
    if "://" not in text:
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(text).version == 6:
                text = f"[{text}]"
        text = "rtmp://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:  # bad port, unbalanced brackets
        raise ProbeUrlError(f"{text!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in TRANSPORTS:
        raise ProbeUrlError(f"unsupported scheme {scheme!r}: use {', '.join(TRANSPORTS)}")
    host = parts.hostname or ""
    if not _valid_host(host):
        raise ProbeUrlError(f"{text!r}: no valid host name")
    if port == 0:
        raise ProbeUrlError(f"{text!r}: port 0")
    segments = [s for s in parts.path.split("/") if s]
    app = segments[0] if segments else DEFAULT_APP
    path = "/" + "/".join(segments) if segments else "/" + DEFAULT_APP
    if parts.query:
        path += "?" + parts.query
    return ProbeUrl(scheme, host, port, app, path)


def _valid_host(host: str) -> bool:
    if not host or len(host) > 253:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST_RE.match(host)) and ".." not in host


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    transport: str  # one of TRANSPORTS
    host: str
    port: int
    app: str
    path: str

    @property
    def tls(self) -> bool:
        return TRANSPORTS[self.transport][1]

    @property
    def tunnel(self) -> bool:
        return TRANSPORTS[self.transport][2]

    @property
    def url(self) -> str:
        """The URL a client should use for this transport."""
        return f"{self.transport}://{_host_port(self.host, self.port)}{self.path}"

    @property
    def tc_url(self) -> str:
        # The app URL without the stream name, as FFmpeg sends it: a stream key in the path
        # must not end up in the server's connect logs.
        return f"{self.transport}://{_host_port(self.host, self.port)}/{self.app}"


def plan_targets(
    url: ProbeUrl, ports: dict[str, int | None], *, rtmpts: bool = False
) -> list[ProbeTarget]:
    """The transports to try, in Flash's order. A ``ports`` entry overrides the URL's port,
    which overrides the default. rtmpts only when asked for (flag, port or URL scheme)."""
    targets = []
    for transport, (default_port, _, _) in TRANSPORTS.items():
        given = ports.get(transport)
        if transport == "rtmpts" and not (rtmpts or given or url.scheme == "rtmpts"):
            continue
        if given is None and url.scheme == transport and url.port is not None:
            given = url.port
        targets.append(ProbeTarget(transport, url.host, given or default_port, url.app, url.path))
    return targets


# ---------------------------------------------------------------------------- the adapters


@dataclass(frozen=True, slots=True)
class Timings:
    """Milliseconds; None for a step that was not reached."""

    connect: float | None = None  # TCP connect, TLS included
    handshake: float | None = None  # C0+C1 sent to S2 received
    command: float | None = None  # connect sent to its reply
    total: float | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    transport: str
    host: str
    port: int
    ok: bool
    error: str | None
    timings: Timings
    tls_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        t = self.timings
        return {
            "transport": self.transport,
            "host": self.host,
            "port": self.port,
            "ok": self.ok,
            "error": self.error,
            "timings_ms": {
                "connect": t.connect,
                "handshake": t.handshake,
                "command": t.command,
                "total": t.total,
            },
            "tls_version": self.tls_version,
        }


class _TlsContext(ssl.SSLContext):
    """Remembers the last TLS object it made: aiohttp releases a response's connection as
    soon as its body is in, so the negotiated version is read here instead."""

    last_object: ssl.SSLObject | None = None

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        obj = super().wrap_bio(*args, **kwargs)
        self.last_object = obj
        return obj


def make_tls_context(*, insecure: bool = False, cafile: str | None = None) -> ssl.SSLContext:
    """Verify with the system CA store, or only ``cafile``; ``insecure`` verifies nothing.
    Raises OSError / ssl.SSLError for an unreadable cafile."""
    ctx = _TlsContext(ssl.PROTOCOL_TLS_CLIENT)  # TLS 1.2+, hostname checked
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.load_default_certs()
    return ctx


class _Failure(Exception):
    """A probe failure already worded for the user."""


class _Attempt:
    """The clock and partial results of one probe; the adapters fill it in."""

    def __init__(self, target: ProbeTarget) -> None:
        self.target = target
        self.started = time.perf_counter()
        self.stage = "connecting"
        self.connect: float | None = None
        self.handshake: float | None = None
        self.command: float | None = None
        self.total: float | None = None
        self.tls_version: str | None = None
        self.reply: ConnectReply | None = None

    @staticmethod
    def since(mark: float) -> float:
        return round((time.perf_counter() - mark) * 1000, 3)

    def finish(self, reply: ConnectReply) -> None:
        self.reply = reply
        self.total = self.since(self.started)

    def result(self, error: str | None) -> ProbeResult:
        t = self.target
        if error is None and self.reply is not None and not self.reply.ok:
            error = f"server refused connect: {self.reply.code}"
            if self.reply.description:
                error += f" ({self.reply.description[:200]})"
        ok = error is None and self.reply is not None
        timings = Timings(self.connect, self.handshake, self.command, self.total)
        return ProbeResult(t.transport, t.host, t.port, ok, error, timings, self.tls_version)


async def _exchange_tcp(attempt: _Attempt, tls: ssl.SSLContext | None) -> None:
    """rtmp / rtmps: the RTMP byte stream straight on TCP (inside TLS for rtmps)."""
    target = attempt.target
    mark = time.perf_counter()
    reader, writer = await asyncio.open_connection(
        target.host, target.port, ssl=tls, server_hostname=target.host if tls else None
    )
    try:
        attempt.connect = attempt.since(mark)
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            attempt.tls_version = ssl_object.version()
        exchange = ConnectExchange(target.app, target.tc_url)
        attempt.stage = "in the handshake"
        mark = time.perf_counter()
        writer.write(exchange.data_to_send())
        while exchange.reply is None:
            data = await reader.read(65536)
            if not data:
                raise _Failure(f"the server closed the connection {attempt.stage}")
            exchange.receive_data(data)
            if exchange.handshake_done and attempt.handshake is None:
                attempt.handshake = attempt.since(mark)
                attempt.stage = "waiting for the connect reply"
                mark = time.perf_counter()
            writer.write(exchange.data_to_send())
            await writer.drain()
        attempt.command = attempt.since(mark)
        attempt.finish(exchange.reply)
    except BaseException:
        writer.transport.abort()  # a stalled TLS peer would hold a polite close for 30 s
        raise
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_GRACE):
            await writer.wait_closed()


class _Tunnel:
    """The HTTP side of RTMPT: POSTs with the tunnel's headers, bounded replies."""

    def __init__(self, session: aiohttp.ClientSession, base: URL) -> None:
        self._session = session
        self._base = base

    async def post(self, path: str, body: bytes = b"\x00") -> bytes:
        # Every request carries a body: Red5 refuses an empty POST (rtmpt.md §2).
        async with self._session.post(self._base.with_path(path), data=body) as resp:
            if resp.status != 200:
                raise _Failure(f"HTTP {resp.status} {resp.reason or ''} on {path}".rstrip())
            data = bytearray()
            async for chunk in resp.content.iter_any():
                data += chunk
                if len(data) > MAX_HTTP_BODY:
                    raise _Failure(f"reply to {path} is over {MAX_HTTP_BODY} bytes")
            return bytes(data)


async def _exchange_http(attempt: _Attempt, tls: ssl.SSLContext | None) -> None:
    """rtmpt / rtmpts: open, send C0+C1, idle until S0+S1+S2, send C2+connect, idle until the
    reply, close (rtmpt.md §2). Replies to send/idle start with the polling-interval byte."""
    target = attempt.target
    marks: dict[str, float] = {}

    async def on_create_start(*_: Any) -> None:
        marks.setdefault("start", time.perf_counter())

    async def on_create_end(*_: Any) -> None:
        marks.setdefault("end", time.perf_counter())

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(on_create_start)
    trace.on_connection_create_end.append(on_create_end)
    base = URL.build(scheme="https" if tls else "http", host=target.host, port=target.port)
    connector = aiohttp.TCPConnector(ssl=tls if tls is not None else False, limit=1)
    async with aiohttp.ClientSession(
        connector=connector,
        headers=_HTTP_HEADERS,
        trace_configs=[trace],
        timeout=aiohttp.ClientTimeout(total=None),  # the probe's own timeout applies
        auto_decompress=False,
    ) as session:
        tunnel = _Tunnel(session, base)
        attempt.stage = "opening the tunnel"
        opened = await tunnel.post("/open/1")
        if "start" in marks and "end" in marks:
            attempt.connect = round((marks["end"] - marks["start"]) * 1000, 3)
        if isinstance(tls, _TlsContext) and tls.last_object is not None:
            attempt.tls_version = tls.last_object.version()
        # The id ends with "\n"; a server that also put a polling byte in front is forgiven.
        session_id = opened.strip(bytes(range(33))).decode("ascii", "replace")
        if not session_id or len(session_id) > 256 or not session_id.isprintable():
            raise _Failure("no usable session id in the reply to /open/1")
        if "/" in session_id or " " in session_id:
            raise _Failure("no usable session id in the reply to /open/1")

        exchange = ConnectExchange(target.app, target.tc_url)
        attempt.stage = "in the handshake"
        mark = time.perf_counter()
        seq = 0
        empty = False
        while exchange.reply is None:
            out = exchange.data_to_send()
            if out:
                body = await tunnel.post(f"/send/{session_id}/{seq}", out)
            else:
                if empty:
                    await asyncio.sleep(IDLE_PAUSE)
                body = await tunnel.post(f"/idle/{session_id}/{seq}")
            seq += 1
            data = body[1:]  # body[0] is the polling interval
            empty = not data
            exchange.receive_data(data)
            if exchange.handshake_done and attempt.handshake is None:
                attempt.handshake = attempt.since(mark)
                attempt.stage = "waiting for the connect reply"
                mark = time.perf_counter()
        attempt.command = attempt.since(mark)
        attempt.finish(exchange.reply)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_GRACE):
                await tunnel.post(f"/close/{session_id}/{seq}")


def _describe(exc: BaseException) -> str:
    """One line for the user, naming the cause rather than the exception class."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        exc = exc.certificate_error
    elif isinstance(exc, aiohttp.ClientConnectorError):
        exc = exc.os_error
    if isinstance(exc, _Failure):
        return str(exc)
    if isinstance(exc, HandshakeError):
        return f"handshake failed: {exc}"
    if isinstance(exc, RtmpError):
        return f"protocol error: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        return "TLS: " + re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientError):
        return f"HTTP: {exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host: {exc.strerror}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(exc, OSError):
        text = str(exc)
        # A name with several addresses fails with "Multiple exceptions: [Errno 111] ...".
        errnos = set(re.findall(r"\[Errno (\d+)\]", text))
        if errnos == {str(errno.ECONNREFUSED)}:
            return "connection refused"
        return exc.strerror or text
    return f"unexpected error: {exc!r}"


async def probe_one(
    target: ProbeTarget, *, timeout: float = DEFAULT_TIMEOUT, tls: ssl.SSLContext | None = None
) -> ProbeResult:
    """Connect, handshake and ``connect`` on one transport, within ``timeout`` seconds.
    ``tls`` is used for the TLS transports; None means make_tls_context() defaults."""
    attempt = _Attempt(target)
    context = (tls or make_tls_context()) if target.tls else None
    exchange = _exchange_http if target.tunnel else _exchange_tcp
    try:
        async with asyncio.timeout(timeout):
            await exchange(attempt, context)
    except TimeoutError as exc:
        if attempt.reply is None:  # a timeout while closing politely changes nothing
            if exc.errno is not None:  # the OS gave up connecting (ETIMEDOUT)
                return attempt.result(f"timed out {attempt.stage} ({exc.strerror})")
            return attempt.result(f"timed out after {timeout:.1f} s {attempt.stage}")
    except Exception as exc:  # every failure is a row in the table, never a traceback
        if attempt.reply is None:
            reason = _describe(exc)
            if isinstance(exc, ConnectionResetError | aiohttp.ServerDisconnectedError):
                reason += f" {attempt.stage}"
            return attempt.result(reason)
    return attempt.result(None)


async def probe_all(
    targets: list[ProbeTarget],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    tls_factory: Callable[[], ssl.SSLContext] = make_tls_context,
) -> list[ProbeResult]:
    """Probe every target at once; results in the targets' order. Each TLS probe gets its
    own context so the negotiated versions don't mix."""
    return list(
        await asyncio.gather(
            *(probe_one(t, timeout=timeout, tls=tls_factory() if t.tls else None) for t in targets)
        )
    )


# ----------------------------------------------------------------------------------- output


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def format_table(results: list[ProbeResult]) -> str:
    """One aligned line per transport."""
    if not results:
        return ""
    names = max(len(r.transport) for r in results)
    addresses = max(len(_host_port(r.host, r.port)) for r in results)
    lines = []
    for r in results:
        head = f"{r.transport:<{names}}  {_host_port(r.host, r.port):<{addresses}}  "
        if not r.ok:
            lines.append(f"{head}FAILED: {r.error}")
            continue
        t = r.timings
        line = (
            f"{head}ok  {'tcp+tls' if TRANSPORTS[r.transport][1] else 'tcp'}"
            f" {_ms(t.connect)}  handshake {_ms(t.handshake)}  connect {_ms(t.command)}"
            f"  total {_ms(t.total)}"
        )
        if r.tls_version:
            line += f"  {r.tls_version}"
        lines.append(line)
    return "\n".join(lines)


def format_summary(results: list[ProbeResult], targets: list[ProbeTarget]) -> str:
    """ "2 of 3 transports work; use rtmp://...": the first working one in Flash's order."""
    working = [t for t, r in zip(targets, results, strict=True) if r.ok]
    text = f"{len(working)} of {len(results)} transports work"
    if working:
        text += f"; use {working[0].url}"
    return text


# -------------------------------------------------------------------------------------- CLI


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"timeout out of range: {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``probe`` sub-command's arguments."""
    parser.add_argument(
        "url", metavar="URL", help="rtmp[s|t|ts]://host[:port]/app[/stream], or a bare host"
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"per transport (default {DEFAULT_TIMEOUT:g})",
    )
    for transport, (default, _, _) in TRANSPORTS.items():
        parser.add_argument(
            f"--{transport}-port",
            dest=f"{transport}_port",
            type=_port,
            metavar="PORT",
            help=f"{transport} port (default {default})",
        )
    parser.add_argument(
        "--rtmpts", action="store_true", help="also try rtmpts (RTMPT over HTTPS) on 443"
    )
    parser.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    parser.add_argument(
        "--cafile", metavar="FILE", help="verify TLS with these CA certificates (PEM) only"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list")


async def run(args: argparse.Namespace) -> int:
    """The command, for callers that already run an event loop. 0: at least one transport
    works; 1: none does; 2: bad URL or arguments."""
    try:
        url = parse_url(args.url)
    except ProbeUrlError as exc:
        print(f"bridge probe: bad URL: {exc}", file=sys.stderr)
        return 2

    def tls_factory() -> ssl.SSLContext:
        return make_tls_context(insecure=args.insecure, cafile=args.cafile)

    try:
        tls_factory()  # an unreadable --cafile is a usage error, not three failed rows
    except (OSError, ssl.SSLError) as exc:
        print(f"bridge probe: cannot use --cafile {args.cafile}: {exc}", file=sys.stderr)
        return 2
    ports = {t: getattr(args, f"{t}_port", None) for t in TRANSPORTS}
    targets = plan_targets(url, ports, rtmpts=args.rtmpts)
    results = await probe_all(targets, timeout=args.timeout, tls_factory=tls_factory)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        print(format_table(results))
        print(format_summary(results, targets))
    return 0 if any(r.ok for r in results) else 1


def main(args: argparse.Namespace) -> int:
    """Entry point for ``bridge probe`` (args from a parser set up by add_arguments)."""
    return asyncio.run(run(args))
