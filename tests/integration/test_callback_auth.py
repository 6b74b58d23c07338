"""The publish auth callback against a real HTTP backend, with real ffmpeg publishers.

The backend is an aiohttp application run by the test on its own event loop in a thread. It
checks every request the server sends as a real backend would: the HS256 ``rtmp-event``
token (pyjwt, JWT_SECRET), every claim, and the empty body. It accepts the key ``good`` with
``stream-id: sid-<n>``, answers key ``slow`` after 10 s, and refuses every other key with 403.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web

from .helpers import (
    Proc,
    ProcGroup,
    Server,
    SourceMedia,
    Tools,
    framemd5_argv,
    launch_server,
    publish_argv,
    video_packets,
    wait_for_media,
    wait_until,
)

SECRET = "integration-test-secret-of-at-least-32-bytes"
SUBJECT = "bridge_test_subject"
RTMP_HOST = "media.example.test"
SLOW_ANSWER_S = 10.0
TOKEN_LIFETIME_MAX_S = 600  # the server says 120 s; anything sane passes


@dataclass
class CallbackRequest:
    """One request the backend received, with what was wrong with it (nothing, we hope)."""

    at: float  # monotonic time it arrived
    method: str
    path: str
    body: bytes
    claims: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    answer: int = 0
    stream_id: str = ""  # the stream-id the backend answered a start with

    @property
    def event(self) -> str:
        return str(self.claims.get("event", ""))


class CallbackBackend:
    """A publish-callback backend on 127.0.0.1, served by its own loop in a thread."""

    def __init__(self, secret: str = SECRET, subject: str = SUBJECT) -> None:
        self.secret = secret
        self.subject = subject
        self.rtmp_port: int | None = None  # set once the server's port is known
        self.requests: list[CallbackRequest] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self.url = ""

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/callback", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/callback"

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    async def _close(self) -> None:
        assert self._closing is not None
        self._closing.set()  # slow answers end now
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the backend ------------------------------------------------------------------------

    def _verify(self, request: web.Request, body: bytes) -> CallbackRequest:
        problems: list[str] = []
        claims: dict[str, Any] = {}
        token = request.headers.get("rtmp-event")
        if request.method != "POST":
            problems.append(f"method {request.method}, expected POST")
        if body:
            problems.append(f"body of {len(body)} bytes, expected none")
        if token is None:
            problems.append("no rtmp-event header")
        else:
            try:
                claims = jwt.decode(
                    token,
                    self.secret,
                    algorithms=["HS256"],
                    options={"require": ["exp", "sub", "event", "channel", "key"]},
                )
            except jwt.PyJWTError as exc:
                problems.append(f"token does not verify: {exc!r}")
            else:
                if jwt.get_unverified_header(token).get("alg") != "HS256":
                    problems.append("token is not HS256")
        record = CallbackRequest(
            time.monotonic(), request.method, request.path, body, claims, problems
        )
        if not claims:
            return record
        expect = {
            "sub": self.subject,
            "client_ip": "127.0.0.1",
            "rtmp_host": RTMP_HOST,
            "rtmp_port": self.rtmp_port,
        }
        for name, value in expect.items():
            if claims.get(name) != value or type(claims.get(name)) is not type(value):
                problems.append(f"claim {name}={claims.get(name)!r}, expected {value!r}")
        if not 0 < claims["exp"] - time.time() <= TOKEN_LIFETIME_MAX_S:
            problems.append(f"exp {claims['exp']} is not a little in the future")
        event = claims.get("event")
        if event == "start":
            if "stream_id" in claims:
                problems.append("start token carries a stream_id")
        elif event == "stop":
            sid = claims.get("stream_id")
            issued = {
                (r.claims.get("channel"), r.claims.get("key")): r.stream_id
                for r in self.snapshot()
                if r.event == "start" and r.stream_id
            }
            if not isinstance(sid, str) or sid not in issued.values():
                problems.append(f"stop for stream_id {sid!r}, never issued")
            elif issued.get((claims["channel"], claims["key"])) != sid:
                problems.append(f"stop for {sid!r} names another channel/key: {claims}")
        else:
            problems.append(f"event {event!r}, expected start or stop")
        return record

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        record = self._verify(request, body)
        with self._lock:
            self.requests.append(record)
        if record.problems:
            record.answer = 400
            return web.Response(status=400, text="; ".join(record.problems))
        if record.event == "stop":
            record.answer = 200
            return web.Response(status=200)
        key = record.claims["key"]
        if key == "good":
            record.stream_id = f"sid-{next(self._ids)}"
            record.answer = 200
            return web.Response(status=200, headers={"stream-id": record.stream_id})
        if key == "slow":
            assert self._closing is not None
            try:
                await asyncio.wait_for(self._closing.wait(), SLOW_ANSWER_S)
            except TimeoutError:
                pass
            record.stream_id = f"sid-{next(self._ids)}"
            record.answer = 200
            return web.Response(status=200, headers={"stream-id": record.stream_id})
        record.answer = 403
        return web.Response(status=403, text="forbidden key")

    # -- what the test reads ----------------------------------------------------------------

    def snapshot(self) -> list[CallbackRequest]:
        with self._lock:
            return list(self.requests)

    def events(self, event: str, channel: str | None = None) -> list[CallbackRequest]:
        return [
            r
            for r in self.snapshot()
            if r.event == event and (channel is None or r.claims.get("channel") == channel)
        ]

    def problems(self) -> list[str]:
        return [f"{r.claims or r.path}: {p}" for r in self.snapshot() for p in r.problems]

    def diagnostics(self) -> str:
        return "\n".join(
            f"{r.at:.3f} {r.method} {r.answer} {r.claims} {r.problems}" for r in self.snapshot()
        )


@pytest.fixture
def backend() -> Iterator[CallbackBackend]:
    server = CallbackBackend()
    server.start()
    try:
        yield server
    finally:
        server.close()


def start_bridge(procs: ProcGroup, backend: CallbackBackend, *flags: str) -> Server:
    server = launch_server(
        procs,
        "--callback-url", backend.url,
        "--jwt-secret", SECRET,
        "--custom-jwt-subject", SUBJECT,
        "--rtmp-host", RTMP_HOST,
        "--unpublish-grace-seconds", "1",
        *flags,
    )  # fmt: skip
    backend.rtmp_port = server.port
    return server


def looping_publisher(
    procs: ProcGroup, tools: Tools, source: SourceMedia, url: str, name: str
) -> Proc:
    return procs.start(name, publish_argv(tools.ffmpeg, source.path, url, "-stream_loop", "-1"))


@pytest.mark.timeout(60)
def test_good_key_publishes_bad_key_is_refused_and_stop_comes_once(
    tools: Tools, h264_source: SourceMedia, procs: ProcGroup, backend: CallbackBackend
) -> None:
    server = start_bridge(procs, backend)
    good_url = server.url("chan", "good")
    publisher = looping_publisher(procs, tools, h264_source, good_url, "publisher-good")
    bad = procs.start(
        "publisher-bad", publish_argv(tools.ffmpeg, h264_source.path, server.url("other", "bad"))
    )
    assert wait_until(lambda: bool(backend.events("start", "chan")), 10), backend.diagnostics()
    reader = procs.start("reader", framemd5_argv(tools.ffmpeg, good_url))
    wait_for_media(reader, h264_source)

    # The refused publisher: ffmpeg fails within a few seconds, the server says why.
    assert bad.wait(5.0) is not None, f"refused ffmpeg still running\n{bad.diagnostics()}"
    assert bad.returncode != 0, bad.diagnostics()
    # The refusal came as an onStatus error (ffmpeg prints its description), then the close.
    assert "callback refused: HTTP 403" in bad.stderr_text(), bad.diagnostics()
    assert wait_until(
        lambda: "publish refused: callback refused: HTTP 403" in server.stderr_text(), 2
    ), server.diagnostics()
    [refused] = backend.events("start", "other")
    assert refused.answer == 403 and refused.claims["key"] == "bad"

    [start] = backend.events("start", "chan")
    assert start.answer == 200 and start.stream_id == "sid-1"
    assert f"publishing (stream id {start.stream_id})" in server.stderr_text()
    assert not backend.events("stop"), "stop before the publish ended"

    # The publisher ends: exactly one stop, naming the stream id the backend gave.
    publisher.stop(timeout=5.0, sig=signal.SIGINT)
    assert wait_until(lambda: bool(backend.events("stop")), 5), (
        f"no stop event\n{backend.diagnostics()}\n{server.diagnostics()}"
    )
    time.sleep(1.0)  # a duplicate would come now (retries are 0.5 s apart)
    stops = backend.events("stop")
    assert len(stops) == 1, backend.diagnostics()
    assert stops[0].claims["stream_id"] == start.stream_id
    assert stops[0].claims["channel"] == "chan" and stops[0].claims["key"] == "good"

    reader.stop()
    server.proc.stop()
    assert len(backend.events("stop")) == 1, "a second stop came at shutdown"
    assert backend.problems() == []
    assert "Traceback" not in server.stderr_text(), server.diagnostics()


@pytest.mark.timeout(60)
def test_stop_is_sent_once_when_the_server_shuts_down(
    tools: Tools, h264_source: SourceMedia, procs: ProcGroup, backend: CallbackBackend
) -> None:
    server = start_bridge(procs, backend)
    url = server.url("chan", "good")
    looping_publisher(procs, tools, h264_source, url, "publisher")
    reader = procs.start("reader", framemd5_argv(tools.ffmpeg, url))
    wait_for_media(reader, h264_source)
    [start] = backend.events("start")
    assert not backend.events("stop")

    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10.0) == 0, server.diagnostics()
    exited = server.proc.end_time
    assert exited is not None
    assert wait_until(lambda: bool(backend.events("stop")), max(0.0, exited + 2 - time.monotonic()))
    stops = backend.events("stop")
    assert len(stops) == 1, backend.diagnostics()
    assert stops[0].claims["stream_id"] == start.stream_id
    assert stops[0].at <= exited + 2.0, f"stop came {stops[0].at - exited:.2f} s after exit"
    assert backend.problems() == []
    assert "Traceback" not in server.stderr_text(), server.diagnostics()


@pytest.mark.timeout(60)
def test_slow_backend_refuses_in_time_and_blocks_nobody(
    tools: Tools, h264_source: SourceMedia, procs: ProcGroup, backend: CallbackBackend
) -> None:
    server = start_bridge(procs, backend, "--callback-timeout-seconds", "1")
    url = server.url("steady", "good")
    looping_publisher(procs, tools, h264_source, url, "publisher-steady")
    reader = procs.start("reader-steady", framemd5_argv(tools.ffmpeg, url))
    wait_for_media(reader, h264_source)

    slow = procs.start(
        "publisher-slow",
        publish_argv(tools.ffmpeg, h264_source.path, server.url("slowchan", "slow")),
    )
    assert wait_until(lambda: bool(backend.events("start", "slowchan")), 5), backend.diagnostics()
    asked = backend.events("start", "slowchan")[0].at
    # While the backend sits on the slow request, the other channel's reader keeps receiving.
    samples = []
    while time.monotonic() < asked + 1.2:
        samples.append(video_packets(reader, h264_source))
        time.sleep(0.2)
    assert samples[-1] - samples[0] >= 15, f"steady reader stalled: {samples}"

    refused = re.compile(r"slowchan.*publish refused: callback timed out", re.IGNORECASE)
    in_time = max(0.0, asked + 1.5 - time.monotonic())
    assert wait_until(lambda: bool(refused.search(server.stderr_text())), in_time), (
        f"not refused within 1.5 s of asking\n{server.diagnostics()}"
    )
    assert slow.wait(3.0) is not None, f"slow publisher not refused\n{slow.diagnostics()}"
    assert slow.returncode != 0
    assert "callback timed out" in slow.stderr_text(), slow.diagnostics()
    took = slow.duration_after(asked)
    assert took is not None and took <= 1.5 + 0.5, f"refused {took:.2f} s after asking"
    assert reader.running(), reader.diagnostics()
    before = video_packets(reader, h264_source)
    time.sleep(0.5)
    assert video_packets(reader, h264_source) > before, "steady reader stopped after the refusal"
    assert not backend.events("stop", "slowchan"), "stop for a publish that never started"
    assert backend.problems() == []
    assert "Traceback" not in server.stderr_text(), server.diagnostics()
