"""The control API over real HTTP: a real Registry and SessionTable, streams fed with real
MediaUnits, fake sessions that record their kicks; the token and loopback rules; schemathesis
against the served OpenAPI document."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, settings

from bridge.api import ControlApi
from bridge.api.routes import rfc3339
from bridge.auth.policy import is_loopback
from bridge.bus.reader import Reader
from bridge.bus.registry import Registry
from bridge.bus.stream import Stream
from bridge.config import Config, load
from bridge.media.units import AUDIO, VIDEO, MediaUnit, Track
from bridge.sessions import PLAYER, PUBLISHER, SessionTable

TOKEN = "s3cret-token"
T0 = 1_700_000_000.25  # 2023-11-14T22:13:20.250Z, the fake sessions' start time

# ------------------------------------------------------------------------------ fakes


class NullSink:
    """A ReaderSink for a player that never takes anything (its queue only grows)."""

    def on_ready(self) -> None:
        pass

    def on_publish_start(self) -> None:
        pass

    def on_publish_end(self) -> None:
        pass

    def on_refused(self, reason: str) -> None:
        pass


@dataclass(eq=False)
class FakeSession:
    """A session with the fields of ``bridge.sessions.Session``; ``kick`` records the reason and
    then runs ``on_kick`` (the world ends the session as a real one would)."""

    id: str
    protocol: str
    ip: str
    channel: str = ""
    role: str = ""
    stream_id: str = ""
    started_at: float = T0
    bytes_in: int = 0
    bytes_out: int = 0
    kicked: list[str] = field(default_factory=list)
    on_kick: Callable[[FakeSession], None] = lambda session: None

    def kick(self, reason: str) -> None:
        self.kicked.append(reason)
        self.on_kick(self)


VIDEO_TRACK = Track(VIDEO, "h264", b"avcC", width=1280, height=720)
AUDIO_TRACK = Track(AUDIO, "aac", b"\x12\x10", sample_rate=44100, channels=2)


class World:
    """A bus and a session table with a controllable clock, and helpers that publish and play
    through the real Registry."""

    def __init__(self, *, max_units: int = 2048) -> None:
        self.now = 100.0
        self.registry = Registry(gop_cache_bytes=1 << 20, unpublish_grace=0, clock=self.clock)
        self.sessions = SessionTable(max_per_ip=100, exempt=())
        self.streams: dict[str, Stream] = {}
        self.readers: dict[str, Reader] = {}
        self._max_units = max_units

    def clock(self) -> float:
        return self.now

    def _add(self, session: FakeSession) -> FakeSession:
        session.on_kick = self._end
        assert self.sessions.admit(session.ip)
        self.sessions.add(session)
        return session

    def publish(
        self, channel: str, *, stream_id: str = "", ip: str = "198.51.100.7"
    ) -> FakeSession:
        session = self._add(
            FakeSession(
                self.sessions.new_id("rtmp"),
                "rtmp",
                ip,
                channel=channel,
                role=PUBLISHER,
                stream_id=stream_id,
            )
        )
        self.streams[session.id] = self.registry.start_publish(channel, "key", session)
        return session

    def play(
        self, channel: str, *, protocol: str = "rtmps", ip: str = "203.0.113.9"
    ) -> FakeSession:
        session = self._add(
            FakeSession(self.sessions.new_id(protocol), protocol, ip, channel=channel, role=PLAYER)
        )
        reader = self.registry.attach(channel, NullSink(), "key")
        assert reader is not None
        reader.max_units = self._max_units
        self.readers[session.id] = reader
        return session

    def push(self, publisher: FakeSession, units: list[MediaUnit]) -> None:
        stream = self.streams[publisher.id]
        for unit in units:
            stream.push(unit)
        publisher.bytes_in += sum(unit.size + 11 for unit in units)  # FLV tag overhead

    def _end(self, session: FakeSession) -> None:
        if session.id in self.streams:
            self.registry.end_publish(self.streams.pop(session.id), session)
        if session.id in self.readers:
            self.registry.detach(self.readers.pop(session.id))
        self.sessions.remove(session)


def gop(start_ms: int, *, frames: int = 4, size: int = 1000) -> list[MediaUnit]:
    """A keyframe and ``frames - 1`` delta frames, 40 ms apart, plus one audio frame each."""
    units: list[MediaUnit] = []
    for i in range(frames):
        dts = start_ms + 40 * i
        units.append(MediaUnit(VIDEO_TRACK, dts, dts, i == 0, bytes(size)))
        units.append(MediaUnit(AUDIO_TRACK, dts, dts, True, bytes(size // 10)))
    return units


def config(**settings_: str) -> Config:
    return load({}, environ=settings_)


def build_app(world: World, cfg: Config, **kwargs: Any) -> tuple[ControlApi, web.Application]:
    kwargs.setdefault("health", lambda: {"status": "ok", "listeners": ["rtmp://0.0.0.0:1935"]})
    api = ControlApi(cfg, world.registry, world.sessions, clock=world.clock, **kwargs)
    app = web.Application()
    api.register(app)
    return api, app


def populated_world() -> World:
    """``live``: a publisher with video and audio pushed over 10 s, two players (one so slow
    that it drops); ``waiting``: a player waiting for a publisher; a session on no channel."""
    world = World(max_units=4)
    publisher = world.publish("live", stream_id="sid-42")
    world.play("live", protocol="rtmp", ip="::ffff:203.0.113.9")
    world.play("live", protocol="rtmpt")
    world.push(publisher, gop(0) + gop(160) + gop(320))  # 12 video + 12 audio units
    world.now += 10.0
    world.play("waiting")
    world._add(FakeSession(world.sessions.new_id("rtmp"), "rtmp", "192.0.2.1"))
    return world


@pytest.fixture
def world() -> World:
    return populated_world()


@pytest.fixture
async def client(world: World) -> AsyncIterator[TestClient]:
    _, app = build_app(world, config())
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def token_client(world: World) -> AsyncIterator[TestClient]:
    _, app = build_app(world, config(API_TOKEN=TOKEN))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def get_json(client: TestClient, path: str, status: int = 200, **kw: Any) -> Any:
    response = await client.get(path, **kw)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


# ------------------------------------------------------------------------------ channels


async def test_channel_list_and_object(client: TestClient, world: World) -> None:
    body = await get_json(client, "/api/v1/channels")
    assert [c["name"] for c in body["channels"]] == ["live", "waiting"]
    live = await get_json(client, "/api/v1/channels/live")
    assert body["channels"][0] == live
    publisher = world.sessions.publisher("live")
    assert publisher is not None
    stream = world.registry.streams["live"]
    dropped = sum(reader.dropped for reader in stream.readers)
    assert dropped > 0  # the readers hold at most 4 units: the slow ones dropped
    assert live == {
        "name": "live",
        "live": True,
        "publisher": publisher.id,
        "stream_id": "sid-42",
        "tracks": [
            {
                "kind": "video",
                "codec": "h264",
                "width": 1280,
                "height": 720,
                "sample_rate": 0,
                "channels": 0,
            },
            {
                "kind": "audio",
                "codec": "aac",
                "width": 0,
                "height": 0,
                "sample_rate": 44100,
                "channels": 2,
            },
        ],
        # 12 * 1000 + 12 * 100 bytes over 10 s
        "bitrate_kbps": 10.56,
        "readers": 2,
        "dropped": dropped,
        "uptime_seconds": 10.0,
        "webrtc": None,
    }


async def test_channel_without_publisher(client: TestClient) -> None:
    waiting = await get_json(client, "/api/v1/channels/waiting")
    assert waiting == {
        "name": "waiting",
        "live": False,
        "publisher": None,
        "stream_id": None,
        "tracks": [],
        "bitrate_kbps": 0,
        "readers": 1,
        "dropped": 0,
        "uptime_seconds": 0,
        "webrtc": None,
    }


async def test_channel_after_publisher_left_keeps_readers(client: TestClient, world: World) -> None:
    publisher = world.sessions.publisher("live")
    assert publisher is not None
    publisher.kick("gone")
    live = await get_json(client, "/api/v1/channels/live")
    assert (live["live"], live["publisher"], live["tracks"], live["readers"]) == (
        False,
        None,
        [],
        2,
    )
    assert (live["bitrate_kbps"], live["uptime_seconds"]) == (0, 0)


async def test_publisher_session_without_stream_id(world: World) -> None:
    world.publish("fresh")  # the callback has not named it yet
    _, app = build_app(world, config())
    async with TestClient(TestServer(app)) as c:
        fresh = await get_json(c, "/api/v1/channels/fresh")
    assert fresh["live"] and fresh["publisher"] and fresh["stream_id"] is None
    assert fresh["uptime_seconds"] == 0 and fresh["bitrate_kbps"] == 0


async def test_publisher_that_is_not_a_session(world: World) -> None:
    # An internal input (no session, no id): live, with no publisher or stream id to name.
    stream = world.registry.start_publish("inner", "key", object())
    stream.push(MediaUnit(VIDEO_TRACK, 0, 0, True, bytes(500)))
    world.now += 2
    _, app = build_app(world, config())
    async with TestClient(TestServer(app)) as c:
        inner = await get_json(c, "/api/v1/channels/inner")
    assert (inner["live"], inner["publisher"], inner["stream_id"]) == (True, None, None)
    assert (inner["bitrate_kbps"], inner["uptime_seconds"]) == (2.0, 2.0)


@pytest.mark.parametrize(
    "path, status",
    [
        ("/api/v1/channels/nothing", 404),
        ("/api/v1/channels/" + "a" * 129, 400),  # longer than ID_MAX_LENGTH
        ("/api/v1/channels/bad%20name", 400),
        ("/api/v1/channels/caf%C3%A9", 400),
        ("/api/v1/channels/live/extra", 404),
        ("/api/v1/channel", 404),
        ("/api/v1", 404),
        ("/api/v1/", 404),
    ],
)
async def test_channel_errors(client: TestClient, path: str, status: int) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(method, path)
        assert response.status == status, (method, path)
        body = await response.json()
        assert set(body) == {"error"} and body["error"]


async def test_end_channel_kicks_every_session_of_it(client: TestClient, world: World) -> None:
    kicked = [s for s in world.sessions if isinstance(s, FakeSession) and s.channel == "live"]
    others = [s for s in world.sessions if isinstance(s, FakeSession) and s.channel != "live"]
    assert (len(kicked), len(others)) == (3, 2)
    response = await client.delete("/api/v1/channels/live", data=b"{not json: ignored")
    assert response.status == 200
    assert await response.json() == {"ended": 3}
    assert all(s.kicked == ["ended through the HTTP API"] for s in kicked)
    assert all(not s.kicked for s in others)
    # The fake sessions end at once, so the channel is gone (real ones close a moment later).
    await get_json(client, "/api/v1/channels/live", status=404)
    assert (await (await client.delete("/api/v1/channels/live")).json())["error"]


async def test_end_channel_with_only_internal_readers(world: World) -> None:
    # A reader without a session (an internal output such as HLS) keeps the channel known.
    assert world.registry.attach("internal", NullSink(), None) is not None
    _, app = build_app(world, config())
    async with TestClient(TestServer(app)) as c:
        response = await c.delete("/api/v1/channels/internal")
        assert (response.status, await response.json()) == (200, {"ended": 0})


# ------------------------------------------------------------------------------ sessions


async def test_session_list_and_object(client: TestClient, world: World) -> None:
    body = await get_json(client, "/api/v1/sessions")
    ids = [s.id for s in world.sessions]
    assert [s["id"] for s in body["sessions"]] == ids
    publisher = world.sessions.publisher("live")
    assert publisher is not None
    one = await get_json(client, f"/api/v1/sessions/{publisher.id}")
    assert one == body["sessions"][0]
    assert one == {
        "id": publisher.id,
        "protocol": "rtmp",
        "address": "198.51.100.7",
        "channel": "live",
        "role": "publisher",
        "stream_id": "sid-42",
        "bytes_in": 13200 + 24 * 11,
        "bytes_out": 0,
        "started_at": "2023-11-14T22:13:20.250Z",
    }
    lone = body["sessions"][-1]
    assert (lone["channel"], lone["role"], lone["stream_id"]) == (None, None, None)


async def test_session_filter_by_channel(client: TestClient, world: World) -> None:
    body = await get_json(client, "/api/v1/sessions", params={"channel": "live", "junk": "1"})
    assert [s["id"] for s in body["sessions"]] == [s.id for s in world.sessions.by_channel("live")]
    assert len(body["sessions"]) == 3
    assert (await get_json(client, "/api/v1/sessions?channel=nobody"))["sessions"] == []
    for bad in ("", "a b", "x" * 129):
        body = await get_json(client, "/api/v1/sessions", 400, params={"channel": bad})
        assert "channel name" in body["error"]


async def test_end_session(client: TestClient, world: World) -> None:
    player = world.sessions.by_channel("waiting")[0]
    assert isinstance(player, FakeSession)
    response = await client.delete(f"/api/v1/sessions/{player.id}", data=b"\xff\x00garbage")
    assert (response.status, await response.json()) == (200, {"ended": 1})
    assert player.kicked == ["ended through the HTTP API"]
    await get_json(client, f"/api/v1/sessions/{player.id}", status=404)
    response = await client.delete(f"/api/v1/sessions/{player.id}")
    assert response.status == 404
    assert await response.json() == {"error": "no session with that id"}


@pytest.mark.parametrize("session_id", ["rtmp-999", "nope", "%00", "..", "a" * 2000])
async def test_unknown_sessions(client: TestClient, session_id: str) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/api/v1/sessions/{session_id}")
        assert response.status == 404
        assert "error" in await response.json()


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("POST", "/api/v1/channels", "GET,HEAD"),
        ("PUT", "/api/v1/channels/live", "DELETE,GET,HEAD"),
        ("PATCH", "/api/v1/sessions", "GET,HEAD"),
        ("POST", "/api/v1/sessions/rtmp-1", "DELETE,GET,HEAD"),
        ("DELETE", "/api/v1/openapi.json", "GET,HEAD"),
    ],
)
async def test_method_not_allowed(client: TestClient, method: str, path: str, allow: str) -> None:
    response = await client.request(method, path, data=b"{")
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) == set(allow.split(","))
    assert (await response.json())["error"] == f"{method} is not allowed on {path}"


# ------------------------------------------------------------------------------ auth


@pytest.mark.parametrize(
    "headers, challenge",
    [
        ({}, 'Bearer realm="bridge"'),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 'Bearer realm="bridge"'),
        ({"Authorization": "Bearer"}, 'Bearer realm="bridge"'),
        ({"Authorization": f"Bearer {TOKEN}x"}, 'Bearer realm="bridge", error="invalid_token"'),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 'Bearer realm="bridge", error="invalid_token"'),
        ({"Authorization": "Bearer caf\u00e9"}, 'Bearer realm="bridge", error="invalid_token"'),
    ],
)
async def test_token_required(
    token_client: TestClient, headers: dict[str, str], challenge: str
) -> None:
    for method, path in [
        ("GET", "/api/v1/channels"),
        ("DELETE", "/api/v1/channels/live"),
        ("GET", "/api/v1/sessions/nope"),
        ("GET", "/api/v1/no-such-endpoint"),  # auth first: the API's shape is not revealed
        ("POST", "/api/v1/sessions"),
    ]:
        response = await token_client.request(method, path, headers=headers)
        assert response.status == 401, (method, path)
        assert response.headers["WWW-Authenticate"] == challenge
        assert (await response.json())["error"]


async def test_token_accepted(token_client: TestClient, world: World) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        headers = {"Authorization": f"{scheme}  {TOKEN} "}
        assert (
            len((await get_json(token_client, "/api/v1/channels", headers=headers))["channels"])
            == 2
        )
    assert (await token_client.delete("/api/v1/channels/live", headers=AUTH)).status == 200
    assert not world.sessions.by_channel("live")


async def test_openapi_served_without_auth(token_client: TestClient) -> None:
    document = await get_json(token_client, "/api/v1/openapi.json")
    assert document["openapi"].startswith("3.1")
    assert document["paths"]["/api/v1/openapi.json"]["get"]["security"] == []
    assert "without" in document["paths"]["/api/v1/openapi.json"]["get"]["summary"]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_token_applies_to_loopback_too(token_client: TestClient) -> None:
    # The test client is on 127.0.0.1: with a token set, loopback is no exemption.
    assert (await token_client.get("/api/v1/sessions")).status == 401


async def test_loopback_answered_without_token(client: TestClient) -> None:
    # No API_TOKEN; X-Forwarded-For is not believed without TRUSTED_PROXIES.
    await get_json(client, "/api/v1/channels")
    await get_json(client, "/api/v1/channels", headers={"X-Forwarded-For": "203.0.113.5"})


@pytest.mark.parametrize(
    "forwarded, status",
    [
        ("203.0.113.5", 403),
        ("127.0.0.1, 203.0.113.5", 403),  # a forged left part does not help
        ("127.0.0.1", 200),  # a local client behind the local proxy
        ("::1", 200),
        ("not-an-ip", 200),  # malformed: ignored as a whole, the peer (loopback) counts
    ],
)
async def test_remote_client_behind_trusted_proxy(
    world: World, forwarded: str, status: int
) -> None:
    _, app = build_app(world, config(TRUSTED_PROXIES="127.0.0.1"))
    async with TestClient(TestServer(app)) as c:
        response = await c.get("/api/v1/channels", headers={"X-Forwarded-For": forwarded})
        assert response.status == status
        if status == 403:
            assert "loopback" in (await response.json())["error"]
            assert "WWW-Authenticate" not in response.headers
        # the document stays readable, and a token set later opens the API to remote clients
        assert (
            await c.get("/api/v1/openapi.json", headers={"X-Forwarded-For": forwarded})
        ).status == 200
    _, app = build_app(world, config(TRUSTED_PROXIES="127.0.0.1", API_TOKEN=TOKEN))
    async with TestClient(TestServer(app)) as c:
        headers = {"X-Forwarded-For": forwarded, **AUTH}
        assert (await c.get("/api/v1/channels", headers=headers)).status == 200


def _non_loopback_address() -> str | None:
    """An address of this host that is not loopback (connecting a UDP socket sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.123", 9))
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if is_loopback(address) else address


@pytest.mark.parametrize("trusted", ["", "*"])
async def test_real_non_loopback_peer_refused(world: World, trusted: str) -> None:
    """A real connection to this host's own non-loopback address: the peer is not loopback.
    Even when every proxy is trusted, naming oneself 127.0.0.1 does not open the API."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this host")
    _, app = build_app(world, config(TRUSTED_PROXIES=trusted))
    server = TestServer(app, host=address)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://{address}:{server.port}/api/v1/channels"
            for headers in ({}, {"X-Forwarded-For": "127.0.0.1"}):
                async with http.get(url, headers=headers) as response:
                    assert response.status == 403
            async with http.get(f"http://{address}:{server.port}/api/v1/openapi.json") as response:
                assert response.status == 200
    finally:
        await server.close()


async def test_ipv6_loopback_answered(world: World) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    _, app = build_app(world, config())
    server = TestServer(app, host="::1")
    try:
        await server.start_server()
    except OSError:
        pytest.skip("cannot bind ::1")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://[::1]:{server.port}/api/v1/channels") as response:
                assert response.status == 200
    finally:
        await server.close()


@pytest.mark.parametrize(
    "address, expected",
    [
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", False),
        ("10.0.0.1", False),
        ("::", False),
        ("0.0.0.0", False),
        ("fe80::1%eth0", False),
        ("", False),
        ("localhost", False),
    ],
)
def test_is_loopback(address: str, expected: bool) -> None:
    assert is_loopback(address) is expected


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(T0) == "2023-11-14T22:13:20.250Z"


# ------------------------------------------------------------------------------ health


@pytest.mark.parametrize(
    "report, status",
    [
        ({"status": "ok", "redis": "connected"}, 200),
        ({"status": "degraded", "redis": "down: connection refused"}, 503),
        ({}, 503),
    ],
)
async def test_healthz(world: World, report: dict[str, Any], status: int) -> None:
    _, app = build_app(world, config(API_TOKEN=TOKEN), health=lambda: dict(report))
    async with TestClient(TestServer(app)) as c:
        body = await get_json(c, "/healthz", status=status)
    assert body == {**report, "sessions": 5, "channels": 2}


async def test_healthz_when_the_check_itself_fails(world: World) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    _, app = build_app(world, config(), health=broken)
    async with TestClient(TestServer(app)) as c:
        body = await get_json(c, "/healthz", status=503)
    assert body["status"] == "error" and "boom" not in body["error"]


async def test_handler_crash_is_a_json_500_without_traceback(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        id, protocol, ip, channel, role, stream_id = "odd-1", "rtmp", "127.0.0.1", "", "", ""
        started_at = T0
        bytes_in = 0

        @property
        def bytes_out(self) -> int:
            raise RuntimeError("secret internals")

        def kick(self, reason: str) -> None:
            pass

    world.sessions.add(Broken())
    _, app = build_app(world, config())
    async with TestClient(TestServer(app)) as c:
        body = await get_json(c, "/api/v1/sessions", status=500)
    assert "secret" not in body["error"] and "Traceback" not in body["error"]
    assert "secret internals" in caplog.text


# ------------------------------------------------------------------------------ schemathesis


class ThreadedServer:
    """The app on a real port, its loop in a thread, for schemathesis' blocking client."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-under-test", daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(self._app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def served() -> Iterator[ThreadedServer]:
    world = populated_world()
    _, app = build_app(world, config(API_TOKEN=TOKEN))
    with ThreadedServer(app) as server:
        yield server


@pytest.fixture(scope="module")
def served_schema(served: ThreadedServer) -> Any:
    schema = schemathesis.openapi.from_url(f"{served.url}/api/v1/openapi.json")
    schema.config.update(base_url=served.url, headers=AUTH)
    return schema


api_schema = schemathesis.pytest.from_fixture("served_schema")


@api_schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis(case: Any, served: ThreadedServer) -> None:
    """Every response conforms to the document: status codes, content types, schemas (with
    additionalProperties false), headers, auth enforced (probed without and with a wrong
    token), negative data rejected, unsupported methods 405."""
    case.call_and_validate(base_url=served.url, headers=AUTH)
