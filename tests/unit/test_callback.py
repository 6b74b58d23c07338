"""The publish callback against a real HTTP receiver (aiohttp, in the test, on 127.0.0.1).

The receiver checks what a backend written for the Go server checks: a POST, an empty
body, an ``rtmp-event`` HS256 JWT that verifies with the shared secret, and every claim.
"""

from __future__ import annotations

import asyncio
import socket
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from jwt.warnings import InsecureKeyLengthWarning

from bridge.config import load
from bridge.control.callback import PublishCallback, PublishDenied

SECRET = "s3cret"
HOST = "media.example"
PORT = 1936
IP = "203.0.113.7"


@dataclass
class Receiver:
    """A callback backend whose answer depends on the publish key."""

    events: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    redirect_hits: int = 0
    stop_failures: int = 0  # answer 500 to this many stops before accepting
    issued: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    stop_seen: asyncio.Event = field(default_factory=asyncio.Event)
    server: TestServer | None = None

    def url(self, path: str = "/cb") -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            self.problems.append(f"method {request.method}")
        body = await request.read()
        if body or request.content_length not in (0, None):
            self.problems.append(f"body {body!r}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                claims = jwt.decode(
                    request.headers["rtmp-event"],
                    SECRET,
                    algorithms=["HS256"],
                    options={"require": ["exp", "sub"]},
                    subject="rtmp_event",
                )
        except (KeyError, jwt.InvalidTokenError) as exc:
            self.problems.append(f"token: {exc!r}")
            return web.Response(status=400)
        self.events.append(claims)
        if claims["event"] == "stop":
            self.stop_seen.set()
            if self.stop_failures > 0:
                self.stop_failures -= 1
                return web.Response(status=500)
            return web.Response(status=204)
        key = claims["key"]
        if key.startswith("good"):
            self.issued += 1
            return web.Response(headers={"stream-id": f"  sid-{self.issued}  "}, text="ok")
        if key == "nosid":
            return web.Response(text="ok")
        if key == "blank":
            return web.Response(headers={"stream-id": "   "})
        if key == "long":
            return web.Response(headers={"stream-id": "x" * 257})
        if key == "redirect":
            raise web.HTTPFound(self.url("/target"))
        if key == "slow":
            await self._stall()
            return web.Response(headers={"stream-id": "too-late"})
        if key == "endless":
            # Headers (with a stream id) go out, the declared body never finishes.
            response = web.StreamResponse(headers={"stream-id": "endless-1"})
            response.content_length = 1_000_000
            await response.prepare(request)
            await response.write(b"x" * 100)
            await self._stall()
            return response
        return web.Response(status=403, text="bad key")

    async def _stall(self) -> None:
        try:
            await asyncio.wait_for(self.release.wait(), 10)
        except TimeoutError:
            pass

    async def target(self, request: web.Request) -> web.Response:
        self.redirect_hits += 1
        return web.Response(headers={"stream-id": "via-redirect"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/cb", self.handle)
        app.router.add_route("*", "/target", self.target)
        return app

    async def serve(self, port: int | None = None) -> None:
        self.server = TestServer(self.app(), host="127.0.0.1", port=port)
        await self.server.start_server(shutdown_timeout=0.5)

    def claims_ok(self, claims: dict[str, Any], event: str, key: str) -> None:
        assert claims["sub"] == "rtmp_event"
        assert claims["event"] == event
        assert claims["channel"] == "chan"
        assert claims["key"] == key
        assert claims["client_ip"] == IP
        assert claims["rtmp_host"] == HOST
        assert claims["rtmp_port"] == PORT and type(claims["rtmp_port"]) is int
        assert 100 <= claims["exp"] - time.time() <= 121
        assert "iat" not in claims  # the Go server sets none


def config(url: str, timeout: float = 2.0) -> Any:
    return load(
        {
            "CALLBACK_URL": url,
            "JWT_SECRET": SECRET,
            "RTMP_HOST": HOST,
            "RTMP_PORT": str(PORT),
            "CALLBACK_TIMEOUT_SECONDS": str(timeout),
        },
        environ={},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    await rx.serve()
    yield rx
    rx.release.set()
    assert rx.server is not None
    await rx.server.close()
    assert rx.problems == []


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []

    def __call__(self, event: str, outcome: str, seconds: float) -> None:
        self.calls.append((event, outcome, seconds))

    @property
    def outcomes(self) -> list[tuple[str, str]]:
        return [(event, outcome) for event, outcome, _ in self.calls]


async def make(url: str, timeout: float = 2.0) -> tuple[PublishCallback, Recorder]:
    callback = PublishCallback(config(url, timeout))
    recorder = Recorder()
    callback.observers.append(recorder)
    return callback, recorder


# -- start ------------------------------------------------------------------------------


async def test_accepts_by_key_and_signs_every_claim(receiver: Receiver) -> None:
    callback, recorder = await make(receiver.url())
    try:
        with warnings.catch_warnings():
            # PyJWT would warn on every token signed with the short test secret.
            warnings.simplefilter("error", InsecureKeyLengthWarning)
            stream_id = await callback.start("chan", "good", IP)
    finally:
        await callback.close()
    assert stream_id == "sid-1"  # stripped
    [claims] = receiver.events
    receiver.claims_ok(claims, "start", "good")
    assert "stream_id" not in claims
    assert recorder.outcomes == [("start", "accepted")]
    assert 0 <= recorder.calls[0][2] < 2


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("wrong", "callback refused: HTTP 403"),
        ("nosid", "callback answered 200 without a stream-id header"),
        ("blank", "callback answered 200 without a stream-id header"),
        ("long", "callback answered 200 with an unusable stream-id header"),
        ("redirect", "callback redirected: 302"),
    ],
)
async def test_refusals(receiver: Receiver, key: str, reason: str, caplog: Any) -> None:
    callback, recorder = await make(receiver.url())
    try:
        with pytest.raises(PublishDenied) as denied:
            await callback.start("chan", key, IP)
    finally:
        await callback.close()
    assert str(denied.value) == reason
    receiver.claims_ok(receiver.events[0], "start", key)
    assert receiver.redirect_hits == 0
    assert recorder.outcomes == [("start", "refused")]
    lines = [r for r in caplog.records if r.name == "bridge.callback" and reason in r.message]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert key not in lines[0].message.replace(reason, "")  # the key is a secret


async def test_slow_backend_times_out(receiver: Receiver) -> None:
    callback, recorder = await make(receiver.url(), timeout=0.5)
    began = time.monotonic()
    try:
        with pytest.raises(PublishDenied, match=r"^callback timed out after 0\.5 s$"):
            await callback.start("chan", "slow", IP)
        elapsed = time.monotonic() - began
    finally:
        await callback.close()
    assert 0.45 <= elapsed < 0.8
    assert recorder.outcomes == [("start", "timeout")]


async def test_endless_body_is_not_waited_for(receiver: Receiver) -> None:
    callback, recorder = await make(receiver.url(), timeout=3.0)
    began = time.monotonic()
    try:
        assert await callback.start("chan", "endless", IP) == "endless-1"
        elapsed = time.monotonic() - began
    finally:
        await callback.close(timeout=1)
    assert elapsed < 1.0
    assert recorder.outcomes == [("start", "accepted")]


async def test_backend_down_is_refused_fast() -> None:
    callback, recorder = await make(f"http://127.0.0.1:{free_port()}/cb", timeout=5.0)
    began = time.monotonic()
    try:
        with pytest.raises(PublishDenied, match=r"^callback unreachable: "):
            await callback.start("chan", "good", IP)
    finally:
        await callback.close()
    assert time.monotonic() - began < 1.0
    assert recorder.outcomes == [("start", "failed")]


async def raw_server(reply: bytes, hang: bool) -> tuple[asyncio.Server, list[bytes]]:
    """A TCP server that answers every connection with ``reply``, then hangs or closes."""
    seen: list[bytes] = []
    stop = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.read(65536))
        writer.write(reply)
        await writer.drain()
        if hang:
            await stop.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    server.stop_event = stop  # type: ignore[attr-defined]
    return server, seen


@pytest.mark.parametrize(
    ("reply", "hang", "outcome", "reason"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", False, "failed", r"^callback failed: "),
        (b"\x00\xff\x10garbage" * 10, False, "failed", r"^callback failed: "),
        (b"", False, "failed", r"^callback failed: "),
        # The status line and part of the headers, then nothing: headers never complete.
        (b"HTTP/1.1 200 OK\r\nstream-id: x\r\n", True, "timeout", r"^callback timed out"),
    ],
)
async def test_garbage_and_stalled_headers(
    reply: bytes, hang: bool, outcome: str, reason: str
) -> None:
    server, seen = await raw_server(reply, hang)
    port = server.sockets[0].getsockname()[1]
    callback, recorder = await make(f"http://127.0.0.1:{port}/cb", timeout=0.5)
    began = time.monotonic()
    try:
        with pytest.raises(PublishDenied, match=reason):
            await callback.start("chan", "good", IP)
        assert time.monotonic() - began < 0.8
    finally:
        await callback.close()
        server.stop_event.set()  # type: ignore[attr-defined]
        server.close()
        await server.wait_closed()
    assert seen and seen[0].startswith(b"POST /cb HTTP/1.1\r\n")
    assert b"\r\nrtmp-event: " in seen[0].lower()
    assert recorder.outcomes == [("start", outcome)]


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (b"abc-123", "abc-123"),
        (b"caf\xc3\xa9", "caf\u00e9"),
        (b"a\x01b", None),  # control characters: aiohttp's own server will not send these
        (b"a\tb", None),
        (b"a\x7fb", None),
        (b"a\xffb", None),  # not UTF-8: arrives as a lone surrogate
    ],
)
async def test_stream_id_header_bytes(value: bytes, accepted: str | None) -> None:
    reply = b"HTTP/1.1 200 OK\r\nstream-id: " + value + b"\r\ncontent-length: 0\r\n\r\n"
    server, _ = await raw_server(reply, hang=False)
    port = server.sockets[0].getsockname()[1]
    callback, recorder = await make(f"http://127.0.0.1:{port}/cb")
    try:
        if accepted is None:
            with pytest.raises(PublishDenied, match="unusable stream-id"):
                await callback.start("chan", "good", IP)
        else:
            assert await callback.start("chan", "good", IP) == accepted
    finally:
        await callback.close()
        server.close()
        await server.wait_closed()
    assert recorder.outcomes == [("start", "refused" if accepted is None else "accepted")]


async def test_no_callback_url_makes_ids_and_sends_nothing() -> None:
    callback = PublishCallback(load({}, environ={}))
    recorder = Recorder()
    callback.observers.append(recorder)
    ids = {await callback.start("chan", "any", IP) for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    callback.stop("chan", "any", IP, next(iter(ids)))
    await callback.close()
    assert recorder.calls == []
    assert callback._session is None  # no HTTP client was ever made


async def test_start_after_close_is_refused(receiver: Receiver) -> None:
    callback, _ = await make(receiver.url())
    await callback.close()
    with pytest.raises(PublishDenied, match="^server shutting down$"):
        await callback.start("chan", "good", IP)
    assert receiver.events == []


async def test_observer_errors_do_not_break_the_callback(receiver: Receiver) -> None:
    callback, recorder = await make(receiver.url())

    def broken(event: str, outcome: str, seconds: float) -> None:
        raise RuntimeError("observer bug")

    callback.observers.insert(0, broken)
    try:
        assert await callback.start("chan", "good", IP) == "sid-1"
    finally:
        await callback.close()
    assert recorder.outcomes == [("start", "accepted")]


# -- stop -------------------------------------------------------------------------------


async def test_stop_is_sent_once_with_the_stream_id(receiver: Receiver) -> None:
    callback, recorder = await make(receiver.url())
    stream_id = await callback.start("chan", "good", IP)
    callback.stop("chan", "good", IP, stream_id)
    callback.stop("chan", "good", IP, stream_id)
    await asyncio.wait_for(receiver.stop_seen.wait(), 2)
    await asyncio.sleep(0.2)  # room for a duplicate to show up
    callback.stop("chan", "good", IP, stream_id)
    await callback.close()
    stops = [e for e in receiver.events if e["event"] == "stop"]
    assert len(stops) == 1
    receiver.claims_ok(stops[0], "stop", "good")
    assert stops[0]["stream_id"] == "sid-1"
    assert recorder.outcomes == [("start", "accepted"), ("stop", "sent")]


async def test_stop_is_retried_after_errors(receiver: Receiver, caplog: Any) -> None:
    receiver.stop_failures = 2
    callback, recorder = await make(receiver.url())
    callback.retry_delays = (0.1, 0.2)
    began = time.monotonic()
    callback.stop("chan", "good", IP, "sid-9")
    await callback.close()
    assert time.monotonic() - began >= 0.3
    stops = [e for e in receiver.events if e["event"] == "stop"]
    assert [s["stream_id"] for s in stops] == ["sid-9"] * 3
    assert recorder.outcomes == [("stop", "refused"), ("stop", "refused"), ("stop", "sent")]
    retries = [r for r in caplog.records if "retrying" in r.message]
    assert len(retries) == 2 and all(r.exc_info is None for r in retries)


async def test_stop_gives_up_after_three_attempts(receiver: Receiver, caplog: Any) -> None:
    receiver.stop_failures = 10
    callback, recorder = await make(receiver.url())
    began = time.monotonic()
    callback.stop("chan", "good", IP, "sid-9")  # default delays: 0.5 s then 1 s
    await callback.close()
    assert 1.4 <= time.monotonic() - began < 3
    assert recorder.outcomes == [("stop", "refused")] * 3
    assert receiver.stop_failures == 7
    assert any("not delivered after 3 attempts" in r.message for r in caplog.records)


async def test_stop_is_retried_after_connection_refused() -> None:
    port = free_port()
    rx = Receiver()
    callback, recorder = await make(f"http://127.0.0.1:{port}/cb")
    first_failure = asyncio.Event()
    callback.observers.append(lambda event, outcome, seconds: first_failure.set())
    callback.stop("chan", "good", IP, "sid-3")
    await asyncio.wait_for(first_failure.wait(), 2)
    await rx.serve(port)  # the backend comes up during the back-off
    try:
        await asyncio.wait_for(rx.stop_seen.wait(), 3)
        await callback.close()
    finally:
        assert rx.server is not None
        await rx.server.close()
    assert recorder.outcomes == [("stop", "failed"), ("stop", "sent")]
    [stop] = rx.events
    rx.claims_ok(stop, "stop", "good")
    assert stop["stream_id"] == "sid-3"
    assert rx.problems == []


async def test_close_waits_for_an_in_flight_stop(receiver: Receiver) -> None:
    receiver.stop_failures = 1  # the stop is in its back-off when close() is called
    callback, recorder = await make(receiver.url())
    callback.stop("chan", "good", IP, "sid-5")
    await asyncio.wait_for(receiver.stop_seen.wait(), 2)
    await callback.close(timeout=5)
    assert recorder.outcomes == [("stop", "refused"), ("stop", "sent")]
    assert [e["stream_id"] for e in receiver.events] == ["sid-5", "sid-5"]


async def test_close_is_bounded_and_drops_later_stops(receiver: Receiver, caplog: Any) -> None:
    receiver.stop_failures = 10
    callback, _ = await make(receiver.url())
    callback.retry_delays = (5.0, 5.0)
    callback.stop("chan", "good", IP, "sid-6")
    await asyncio.wait_for(receiver.stop_seen.wait(), 2)
    began = time.monotonic()
    await callback.close(timeout=0.3)
    assert time.monotonic() - began < 1.0
    assert any("not delivered: server shutting down" in r.message for r in caplog.records)
    callback.stop("chan", "good", IP, "sid-7")
    await asyncio.sleep(0.1)
    assert [e["stream_id"] for e in receiver.events] == ["sid-6"]
    assert any("sid-7" in r.message and "dropped" in r.message for r in caplog.records)


async def test_stop_timeout_counts_as_a_failed_attempt() -> None:
    server, seen = await raw_server(b"", hang=True)
    port = server.sockets[0].getsockname()[1]
    callback, recorder = await make(f"http://127.0.0.1:{port}/cb", timeout=0.2)
    callback.retry_delays = (0.05,)
    try:
        callback.stop("chan", "good", IP, "sid-8")
        await callback.close(timeout=2)
    finally:
        server.stop_event.set()  # type: ignore[attr-defined]
        server.close()
        await server.wait_closed()
    assert recorder.outcomes == [("stop", "timeout"), ("stop", "timeout")]
    assert len(seen) == 2
