"""RTMPT (bridge.rtmp.tunnel): the HTTP endpoints, SEQ ordering, the polling byte, long-poll
idles, expiry, close, back-pressure, shutdown and X-Forwarded-For, driven through aiohttp's
TestServer/TestClient with the project's sans-IO RTMP client pieces (tests/unit/rtmpt_client.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge import config as config_module
from bridge.bus.registry import Registry
from bridge.control.callback import PublishCallback
from bridge.rtmp import tunnel
from bridge.rtmp.merge import MergedWrites
from bridge.rtmp.session import WRITE_HIGH, WRITE_LOW
from bridge.rtmp.tunnel import MAX_BODY, RtmptService
from bridge.services import Services
from bridge.sessions import SessionTable

from .rtmpt_client import AVC_SEQUENCE_HEADER, Reply, Tunnel, avc_frame

ID_RE = re.compile(r"[A-Za-z0-9_-]{24}")


@dataclass
class Env:
    service: RtmptService
    registry: Registry
    merger: MergedWrites
    http: TestClient

    def tunnel(self) -> Tunnel:
        return Tunnel(self.http)


Factory = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Factory]:
    """Build the app as bridge/app.py does; ``await make_env(FLAG="value", ...)``."""
    envs: list[Env] = []

    async def factory(**flags: str) -> Env:
        config = config_module.load(
            {"UNPUBLISH_GRACE_SECONDS": "0", "CONCURRENT_LIMIT_WHITELIST": "*", **flags},
            environ={},
        )
        registry = Registry(
            gop_cache_bytes=config.gop_cache_size_mb * 1024 * 1024,
            unpublish_grace=config.unpublish_grace_seconds,
        )
        sessions = SessionTable(
            max_per_ip=config.max_ip_concurrent_connections,
            exempt=config.concurrent_limit_whitelist,
        )
        services = Services(config, registry, sessions, PublishCallback(config))
        merger = MergedWrites(0.02)
        service = RtmptService(services, merger)
        app = web.Application(client_max_size=MAX_BODY)
        service.register(app)
        await service.start()
        http = TestClient(TestServer(app))
        await http.start_server()
        env = Env(service, registry, merger, http)
        envs.append(env)
        return env

    yield factory
    # Shutdown waits IDLE_HOLD*3 for clients to poll their close; no client polls here.
    monkeypatch.setattr(tunnel, "IDLE_HOLD", 0.0)
    for env in envs:
        await env.service.close()
        await env.http.close()
        env.merger.close()
        env.registry.close()
    # Collect the cycles aiohttp and asyncio leave now, not inside a later import: without
    # this, CPython 3.11.7 raised "AST constructor recursion depth mismatch" when hypothesis'
    # plugin imported its modules at exit (a collection running finalizers mid ast.parse).
    gc.collect()


@pytest.fixture
async def env(make_env: Factory) -> Env:
    return await make_env()


def assert_fcs_headers(reply: Reply) -> None:
    assert reply.status == 200
    assert reply.version == (1, 1)  # librtmp insists on "HTTP/1.1 200 "
    assert reply.headers["Content-Type"] == "application/x-fcs"
    assert reply.headers["Content-Length"] == str(len(reply.body))
    assert "Transfer-Encoding" not in reply.headers
    assert reply.headers["Cache-Control"] == "no-cache"


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert record.levelno < logging.ERROR, record.getMessage()


# ------------------------------------------------------------------------------- endpoints


async def test_ident2_is_an_empty_fcs_reply(env: Env) -> None:
    reply = await env.tunnel().post("/fcs/ident2")
    assert_fcs_headers(reply)
    assert reply.body == b""


async def test_open_returns_an_unguessable_id_and_one_newline(env: Env) -> None:
    a, b = env.tunnel(), env.tunnel()
    reply = await a.open()
    assert_fcs_headers(reply)
    assert reply.body == a.id.encode() + b"\n"
    assert ID_RE.fullmatch(a.id) and "/" not in a.id
    await b.open()
    assert ID_RE.fullmatch(b.id) and b.id != a.id
    assert set(env.service.sessions) == {a.id, b.id}
    assert len(env.service.rtmp_sessions) == 2


async def test_send_and_idle_replies_are_fcs_with_content_length(env: Env) -> None:
    t = env.tunnel()
    await t.open()
    send = await t.send(t.handshake.initial_data())
    assert_fcs_headers(send)
    idle = await t.idle()
    assert_fcs_headers(idle)
    closed = await t.request("close")
    assert_fcs_headers(closed)


async def test_reply_does_not_promise_keep_alive_on_a_closing_connection(env: Env) -> None:
    t = env.tunnel()
    reply = await t.post("/open/1", Connection="close")
    assert reply.status == 200
    # aiohttp closes this connection after the reply (RFC 9112 9.6: it SHOULD say so).
    assert reply.headers.get("Connection", "").lower() != "keep-alive"


async def test_sessions_are_capped(env: Env, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setattr(tunnel, "MAX_SESSIONS", 2)
    a, b, c = env.tunnel(), env.tunnel(), env.tunnel()
    await a.open()
    await b.open()
    assert (await c.post("/open/1")).status == 503
    assert len(env.service.sessions) == len(env.service.rtmp_sessions) == 2
    assert (await a.request("close")).status == 200
    await c.open()  # a closed session frees its place
    assert set(env.service.sessions) == {b.id, c.id}
    assert "2 sessions open" in caplog.text


async def test_protocol_error_closes_the_tunnel_session(env: Env) -> None:
    t = env.tunnel()
    await t.open()
    rtmp = env.service.sessions[t.id].protocol
    reply = await t.request("send", b"\x09" + b"\x00" * 1536)  # RTMP version 9: refused
    assert reply.status == 200
    assert reply.body == b"\x00"  # polling byte 0: the session is over, nothing follows
    assert t.id not in env.service.sessions
    assert rtmp not in env.service.rtmp_sessions
    assert (await t.idle()).status == 404


# ------------------------------------------------------------------- publish and play


async def test_publish_and_play_through_the_tunnel(env: Env) -> None:
    pub = env.tunnel()
    await pub.open()
    first = await pub.send(pub.handshake.initial_data())
    # S0+S1+S2 come back in the reply to C0+C1, after the polling byte.
    assert first.status == 200
    assert first.body[0] == 1 and len(first.body) == 1 + 1 + 1536 + 1536
    assert first.body[1] == 3 and pub.handshake.done
    c2 = pub.handshake.data_to_send()
    assert len(c2) == 1536
    reply = await pub.send(
        c2
        + pub.connect_bytes("chan")
        + pub.command("createStream", 2.0, None)
        + pub.command("publish", 3.0, None, "key", "live", msid=1)
    )
    assert reply.status == 200 and reply.body[0] == 1
    results = pub.results()
    assert [r[1] for r in results] == [1.0, 2.0]
    assert results[0][3]["code"] == "NetConnection.Connect.Success"
    assert results[1][3] == 1.0
    # The publish decision (the callback, when configured) is asynchronous: Publish.Start
    # comes with a following reply.
    await pub.poll_until(lambda: "NetStream.Publish.Start" in pub.statuses())
    assert pub.statuses() == ["NetStream.Publish.Start"]

    header = AVC_SEQUENCE_HEADER
    gop = [avc_frame(True, b"\x88" * 40), avc_frame(False, b"\x9a" * 30)]
    reply = await pub.send(pub.big_chunks() + pub.media([header, *gop]))
    assert reply.status == 200
    stream = env.registry.get("chan")
    assert stream is not None and stream.live
    assert stream.units_in == 2
    assert stream.tracks["video"].codec == "h264"

    player = env.tunnel()
    await player.play()
    await player.poll_until(lambda: len(player.video()) >= 3)
    assert player.statuses() == ["NetStream.Play.Reset", "NetStream.Play.Start"]
    # The sequence header and the cached GOP, byte for byte as the publisher sent them.
    assert player.video() == [header, *gop]

    more = [avc_frame(False, b"\x11" * 20), avc_frame(True, b"\x22" * 50)]
    await pub.send(pub.media(more, ts=66))
    assert stream.units_in == 4
    await player.poll_until(lambda: len(player.video()) >= 5)
    assert player.video() == [header, *gop, *more]
    assert all(m.stream_id == 1 for m in player.messages if m.type_id == 9)
    assert pub.seq == len(pub.polling) and set(pub.polling) == {1}  # every reply carried data


# --------------------------------------------------------------------------- SEQ rules


async def test_replayed_seq_is_refused_and_the_session_goes_on(env: Env, caplog) -> None:
    t = env.tunnel()
    await t.open()
    assert (await t.request("idle", seq=0)).status == 200
    replay = await t.request("idle", seq=0)
    assert replay.status == 400
    assert b"already used" in replay.body
    assert (await t.request("send", t.handshake.initial_data(), seq=1)).status == 200
    assert (await t.request("send", b"x", seq=1)).status == 400
    assert (await t.request("idle", seq=2)).status == 200
    no_tracebacks(caplog)


async def test_seq_far_ahead_is_refused_at_once(env: Env) -> None:
    t = env.tunnel()
    await t.open()
    started = time.monotonic()
    reply = await t.request("idle", seq=tunnel.MAX_AHEAD + 1)
    assert reply.status == 400 and b"too far ahead" in reply.body
    assert time.monotonic() - started < 0.5
    assert (await t.request("idle", seq=0)).status == 200
    assert (await t.request("idle", seq=1 + tunnel.MAX_AHEAD + 1)).status == 400


async def test_early_request_waits_for_its_predecessor(env: Env) -> None:
    t = env.tunnel()
    await t.open()
    c2 = await t.do_handshake()  # seq 0
    connect = t.connect_bytes("chan")
    # Neither half is valid on its own at the start of the chunk stream: the result proves
    # the bodies were applied in SEQ order, not arrival order.
    part1, part2 = c2 + connect[:5], connect[5:]
    second = asyncio.create_task(t.request("send", part2, seq=2))
    await asyncio.sleep(0.1)
    assert not second.done()  # held until seq 1 comes
    first = await t.request("send", part1, seq=1)
    reply2 = await second
    assert first.status == 200 and reply2.status == 200
    assert first.body == b"\x01"  # nothing to answer yet: half a message
    assert [r[3]["code"] for r in t.results()] == ["NetConnection.Connect.Success"]
    assert env.service.sessions[t.id].next_seq == 3


async def test_early_request_whose_predecessor_never_comes_is_refused(env: Env, caplog) -> None:
    t = env.tunnel()
    await t.open()
    started = time.monotonic()
    # The farthest SEQ allowed ahead is accepted and waits ORDER_WAIT for seq 0..15.
    reply = await t.request("idle", seq=tunnel.MAX_AHEAD)
    elapsed = time.monotonic() - started
    assert reply.status == 400 and b"never came" in reply.body
    assert tunnel.ORDER_WAIT - 0.1 <= elapsed < tunnel.ORDER_WAIT + 1.0
    session = env.service.sessions[t.id]
    assert session.next_seq == 0 and session.busy == 0
    assert (await t.request("idle", seq=0)).status == 200  # the session is unharmed
    no_tracebacks(caplog)


@pytest.mark.parametrize("kind", ["idle", "send"])
async def test_concurrent_requests_with_the_same_seq(env: Env, kind: str) -> None:
    t = env.tunnel()
    await t.open()
    body = t.handshake.initial_data() if kind == "send" else b"\x00"
    started = time.monotonic()
    replies = await asyncio.gather(t.request(kind, body, seq=0), t.request(kind, body, seq=0))
    assert sorted(r.status for r in replies) == [200, 400]
    # The handshake bytes were applied once: the server answered exactly one S0+S1+S2.
    ok = next(r for r in replies if r.status == 200)
    assert len(ok.body) == (1 + 3073 if kind == "send" else 1)
    assert env.service.sessions[t.id].protocol.conn.bytes_received == len(body) * (kind == "send")
    assert time.monotonic() - started < tunnel.ORDER_WAIT + 1.0


async def test_duplicates_of_a_waiting_seq_are_refused_at_once(env: Env) -> None:
    t = env.tunnel()
    await t.open()
    body = b"\x00" * 1024
    waiting = [asyncio.create_task(t.request("send", body, seq=1)) for _ in range(20)]
    try:
        await asyncio.sleep(0.3)
        session = env.service.sessions[t.id]
        # seq 0 has not come: one request for seq 1 may wait, the other 19 have no reason to.
        assert session.busy <= 1
        assert sum(task.done() for task in waiting) >= 19
        assert (await t.request("idle", seq=0)).status == 200
        statuses = sorted([(await task).status for task in waiting])
        assert statuses == [200] + [400] * 19
    finally:
        for task in waiting:
            task.cancel()


# ---------------------------------------------------------------------------- bad input


async def test_unknown_session_is_404(env: Env, caplog) -> None:
    t = env.tunnel()
    await t.open()
    for kind in ("send", "idle", "close"):
        reply = await t.post(f"/{kind}/{'A' * 24}/0")
        assert reply.status == 404, kind
    assert (await t.post("/idle/nope/abc")).status == 404  # the id is looked up first
    assert (await t.request("idle")).status == 200
    no_tracebacks(caplog)


async def test_get_on_open_is_405_and_unknown_path_404(env: Env, caplog) -> None:
    async with env.http.get("/open/1") as resp:
        assert resp.status == 405
        assert "POST" in resp.headers["Allow"]
    async with env.http.get("/idle/x/0") as resp:
        assert resp.status == 405
    t = env.tunnel()
    for path in ("/open/2", "/fcs/ident", "/send/x", "/send/a/b/c", "/"):
        assert (await t.post(path)).status == 404, path
    assert env.service.sessions == {}
    no_tracebacks(caplog)


async def test_body_over_max_body_is_413(env: Env, caplog) -> None:
    t = env.tunnel()
    await t.open()
    big = b"\x00" * (MAX_BODY + 1)
    assert (await t.request("send", big, seq=0)).status == 413
    assert (await t.post("/open/1", big)).status == 413
    assert len(env.service.sessions) == 1
    # Nothing was applied and SEQ 0 is still free.
    assert env.service.sessions[t.id].protocol.conn.bytes_received == 0
    assert (await t.request("send", t.handshake.initial_data(), seq=0)).status == 200
    # Exactly MAX_BODY is fine.
    assert (await t.request("idle", b"\x00" * MAX_BODY, seq=1)).status == 200
    no_tracebacks(caplog)


@pytest.mark.parametrize("seq", ["abc", "-1", "1e3", "%C2%B2", "0x1", "1234567890123"])
async def test_non_numeric_seq_is_400(env: Env, caplog, seq: str) -> None:
    t = env.tunnel()
    await t.open()
    reply = await t.post(f"/idle/{t.id}/{seq}")
    assert reply.status == 400
    assert b"bad sequence number" in reply.body
    assert (await t.request("idle", seq=0)).status == 200
    no_tracebacks(caplog)


# ------------------------------------------------------------------------ polling byte


async def test_polling_byte_ladder(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tunnel, "IDLE_HOLD", 0.0)
    t = env.tunnel()
    await t.open()
    for _ in range(75):
        assert (await t.idle()).status == 200
    # Red5's ladder: the delay doubles after every 10 empty replies, 0 -> 1 -> 2 ... -> 32.
    expected = [1] * 9 + [2] * 10 + [3] * 10 + [5] * 10 + [9] * 10 + [17] * 10 + [0x21] * 16
    assert t.polling == expected
    # Data resets it to 1; the count of empty replies starts again.
    await t.send(t.handshake.initial_data())
    assert t.polling[-1] == 1
    for _ in range(10):
        await t.idle()
    assert t.polling[-10:] == [1] * 9 + [2]


async def test_idle_with_nothing_is_held_then_answered_when_data_comes(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tunnel, "IDLE_HOLD", 0.3)
    player = env.tunnel()
    await player.play()  # nobody publishes yet: nothing to send
    started = time.monotonic()
    reply = await player.idle()
    held = time.monotonic() - started
    assert reply.body == b"\x01"
    assert 0.25 <= held < 0.9

    monkeypatch.setattr(tunnel, "IDLE_HOLD", 5.0)
    started = time.monotonic()
    waiting = asyncio.create_task(player.idle())
    await asyncio.sleep(0.1)
    assert not waiting.done()
    pub = env.tunnel()
    await pub.publish()
    reply = await waiting
    assert time.monotonic() - started < 1.5  # answered by the data, not by the hold
    assert reply.body[0] == 1 and len(reply.body) > 1
    assert "NetStream.Play.Start" in player.statuses()


# ----------------------------------------------------------------------- expiry, close


async def test_a_publisher_that_stops_polling_expires(
    make_env: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tunnel, "EXPIRY", 0.3)
    monkeypatch.setattr(tunnel, "SWEEP_INTERVAL", 0.1)
    monkeypatch.setattr(tunnel, "IDLE_HOLD", 0.05)
    env = await make_env()
    pub, other = env.tunnel(), env.tunnel()
    await pub.publish()
    await other.open()
    await pub.send(pub.media([AVC_SEQUENCE_HEADER, avc_frame(True, b"\x01" * 10)]))
    stream = env.registry.get("chan")
    assert stream is not None and stream.live
    rtmp = env.service.sessions[pub.id].protocol
    # The other session keeps polling and stays; the publisher is silent.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert (await other.idle()).status == 200
    assert pub.id not in env.service.sessions
    assert other.id in env.service.sessions
    assert not stream.live and env.registry.get("chan") is None
    assert rtmp not in env.service.rtmp_sessions
    assert (await pub.idle()).status == 404
    assert (await pub.send(b"x")).status == 404


async def test_close_ends_the_session_and_its_publish(env: Env) -> None:
    pub = env.tunnel()
    await pub.publish()
    rtmp = env.service.sessions[pub.id].protocol
    assert env.registry.get("chan") is not None
    reply = await pub.request("close")
    assert_fcs_headers(reply)
    assert reply.body == b"\x00"
    assert pub.id not in env.service.sessions
    assert rtmp not in env.service.rtmp_sessions
    assert env.registry.get("chan") is None
    assert (await pub.idle()).status == 404


async def test_close_must_also_come_in_order(env: Env) -> None:
    t = env.tunnel()
    await t.open()
    assert (await t.request("close", seq=0)).body == b"\x00"
    assert (await t.request("close", seq=1)).status == 404


# ------------------------------------------------------------------------ back-pressure


async def test_a_player_that_never_polls_holds_bounded_memory(env: Env) -> None:
    pub, player = env.tunnel(), env.tunnel()
    await pub.publish()
    await pub.send(pub.media([AVC_SEQUENCE_HEADER]))
    await player.play()
    await player.poll_until(lambda: "NetStream.Play.Start" in player.statuses())
    session = env.service.sessions[player.id]
    transport = session.transport
    peak = 0
    write = transport.write

    def recording_write(data: bytes) -> None:
        nonlocal peak
        write(data)
        peak = max(peak, transport.get_write_buffer_size())

    transport.write = recording_write  # type: ignore[method-assign]
    # 3 MiB of big keyframes, then more small ones than a reader's queue holds.
    big = avc_frame(True, b"\x55" * (64 * 1024))
    ts = 0
    for _ in range(4):
        await pub.send(pub.media([big] * 12, ts=ts))
        ts += 12 * 33
        await asyncio.sleep(0.05)  # let the merged writes run
    small = avc_frame(True, b"\x66" * 8)
    for _ in range(3):
        await pub.send(pub.media([small] * 1000, ts=ts))
        ts += 1000 * 33
        await asyncio.sleep(0.05)
    sent = 48 * len(big) + 3000 * len(small)
    assert sent > 3 * 1024 * 1024
    assert session.protocol.paused_since is not None
    assert WRITE_HIGH <= peak <= WRITE_HIGH + WRITE_LOW + len(big) + 4096
    reader = session.protocol.players[1].reader
    assert reader is not None and reader.dropped > 0
    assert len(reader.queue) <= reader.max_units
    # Polling again takes what is buffered and lets writing resume.
    buffered = transport.get_write_buffer_size()
    reply = await player.idle()
    assert reply.body[0] == 1 and len(reply.body) == 1 + buffered
    assert session.protocol.paused_since is None


# ----------------------------------------------------------------------------- shutdown


async def test_shutdown_tells_players_and_forgets_every_session(make_env: Factory) -> None:
    # With a grace period the publisher's own end tells the player nothing yet: what the
    # player gets is the shutdown's notice.
    env = await make_env(UNPUBLISH_GRACE_SECONDS="5")
    pub, player = env.tunnel(), env.tunnel()
    await pub.publish()
    await pub.send(pub.media([AVC_SEQUENCE_HEADER, avc_frame(True, b"\x01" * 10)]))
    await player.play()
    await player.poll_until(lambda: "NetStream.Play.Start" in player.statuses())
    closing = asyncio.create_task(env.service.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # waiting for clients to poll their close
    reply = await player.idle()
    assert reply.status == 200
    assert reply.body[0] == 0  # the session is closing
    _, status = player.commands()[-1]
    assert status[0] == "onStatus"
    assert status[3]["code"] == "NetStream.Play.UnpublishNotify"
    assert status[3]["description"] == "The server is shutting down."
    assert (await env.tunnel().post("/open/1")).status == 503
    await closing
    assert env.service.sessions == {}
    assert env.service.rtmp_sessions == set()
    stream = env.registry.get("chan")
    assert stream is not None and not stream.live and not stream.readers
    assert (await player.idle()).status == 404
    assert (await pub.idle()).status == 404


# ------------------------------------------------------------------------ X-Forwarded-For


async def test_forwarded_for_is_believed_from_a_trusted_proxy(make_env: Factory) -> None:
    env = await make_env(TRUSTED_PROXIES="127.0.0.1")
    t = env.tunnel()
    await t.open(**{"X-Forwarded-For": "203.0.113.7"})
    (rtmp,) = env.service.rtmp_sessions
    assert rtmp is env.service.sessions[t.id].protocol
    assert rtmp.ip == "203.0.113.7"


async def test_forwarded_for_is_ignored_without_trusted_proxies(env: Env) -> None:
    t = env.tunnel()
    await t.open(**{"X-Forwarded-For": "203.0.113.7"})
    (rtmp,) = env.service.rtmp_sessions
    assert rtmp.ip == "127.0.0.1"


async def test_play_whitelist_sees_the_forwarded_address(make_env: Factory) -> None:
    env = await make_env(TRUSTED_PROXIES="127.0.0.1", RTMP_PLAY_WHITELIST="10.0.0.0/8")
    allowed, direct, outside = env.tunnel(), env.tunnel(), env.tunnel()
    reply = await allowed.play(**{"X-Forwarded-For": "10.1.2.3"})
    assert reply.body[0] == 1 and allowed.statuses() == []  # waiting for a publisher
    assert allowed.id in env.service.sessions
    for refused, headers in ((direct, {}), (outside, {"X-Forwarded-For": "203.0.113.7"})):
        reply = await refused.play(**headers)
        assert refused.statuses() == ["NetStream.Play.Failed"]
        assert reply.body[0] == 0  # refused, then closed
        assert refused.id not in env.service.sessions
