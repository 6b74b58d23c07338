"""``bridge probe``: URL parsing, the sans-IO connect exchange, and whole probes against small
loopback servers built on the real ``ServerConnection`` (plain, TLS, RTMPT, RTMPTS)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import json
import secrets
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import probe
from bridge.rtmp import amf0
from bridge.rtmp.chunk import chunk_message
from bridge.rtmp.connection import ConnectionFailed, ConnectRequested, ServerConnection
from bridge.rtmp.errors import RtmpError
from bridge.rtmp.handshake import ServerHandshake

# ------------------------------------------------------------------------------ URL parsing

URL_CASES = [
    # text, scheme, host, port, app, path
    ("rtmp://h/app/key", "rtmp", "h", None, "app", "/app/key"),
    ("rtmp://h:1936/app", "rtmp", "h", 1936, "app", "/app"),
    ("rtmpt://h", "rtmpt", "h", None, "live", "/live"),
    ("rtmpts://h:8443/a/", "rtmpts", "h", 8443, "a", "/a"),
    ("rtmps://Example.COM/App?token=1", "rtmps", "example.com", None, "App", "/App?token=1"),
    ("RTMP://h/app", "rtmp", "h", None, "app", "/app"),
    ("example.com", "rtmp", "example.com", None, "live", "/live"),
    ("127.0.0.1:1936", "rtmp", "127.0.0.1", 1936, "live", "/live"),
    ("  host-1.example  ", "rtmp", "host-1.example", None, "live", "/live"),
    ("rtmp://[::1]:1935/live/x", "rtmp", "::1", 1935, "live", "/live/x"),
    ("::1", "rtmp", "::1", None, "live", "/live"),
]

BAD_URLS = [
    "",
    "   ",
    "http://h/app",
    "ftp://h",
    "rtmp://",
    "rtmp:///live",
    "rtmp://h:abc/live",
    "rtmp://h:99999/live",
    "rtmp://h:0/live",
    "rtmp://[::1/live",
    "not a url at all",
    "rtmp://bad host/live",
    "rtmp://a..b/live",
]


@pytest.mark.parametrize(("text", "scheme", "host", "port", "app", "path"), URL_CASES)
def test_parse_url(text: str, scheme: str, host: str, port: int | None, app: str, path: str):
    assert probe.parse_url(text) == probe.ProbeUrl(scheme, host, port, app, path)


@pytest.mark.parametrize("text", BAD_URLS)
def test_parse_url_refuses_garbage(text: str):
    with pytest.raises(probe.ProbeUrlError):
        probe.parse_url(text)


@given(st.text(max_size=60))
def test_parse_url_raises_only_its_own_error(text: str):
    try:
        url = probe.parse_url(text)
    except probe.ProbeUrlError:
        return
    assert url.scheme in probe.TRANSPORTS and url.host and url.path.startswith("/")


NO_PORTS: dict[str, int | None] = {}


@pytest.mark.parametrize(
    ("text", "ports", "rtmpts", "expected"),
    [
        ("h", NO_PORTS, False, [("rtmp", 1935), ("rtmps", 443), ("rtmpt", 80)]),
        ("rtmp://h:1936/a", NO_PORTS, False, [("rtmp", 1936), ("rtmps", 443), ("rtmpt", 80)]),
        ("rtmpt://h:8080/a", NO_PORTS, False, [("rtmp", 1935), ("rtmps", 443), ("rtmpt", 8080)]),
        (
            "rtmp://h:1936/a",
            {"rtmp": 2000, "rtmps": 8443, "rtmpt": None},
            False,
            [("rtmp", 2000), ("rtmps", 8443), ("rtmpt", 80)],
        ),
        ("h", NO_PORTS, True, [("rtmp", 1935), ("rtmps", 443), ("rtmpt", 80), ("rtmpts", 443)]),
        (
            "h",
            {"rtmpts": 8443},
            False,
            [("rtmp", 1935), ("rtmps", 443), ("rtmpt", 80), ("rtmpts", 8443)],
        ),
        (
            "rtmpts://h:9443",
            NO_PORTS,
            False,
            [("rtmp", 1935), ("rtmps", 443), ("rtmpt", 80), ("rtmpts", 9443)],
        ),
    ],
)
def test_plan_targets(text: str, ports: dict, rtmpts: bool, expected: list):
    targets = probe.plan_targets(probe.parse_url(text), ports, rtmpts=rtmpts)
    assert [(t.transport, t.port) for t in targets] == expected
    assert all(t.host == "h" for t in targets)


def test_target_urls_keep_the_stream_out_of_tc_url():
    (target, *_) = probe.plan_targets(probe.parse_url("rtmp://h/app/secret-key"), {})
    assert target.url == "rtmp://h:1935/app/secret-key"
    assert target.tc_url == "rtmp://h:1935/app"
    v6 = probe.plan_targets(probe.parse_url("rtmp://[::1]/app"), {})[0]
    assert v6.url == "rtmp://[::1]:1935/app"


# ------------------------------------------------------------------ the exchange, sans-IO


def _pump(exchange: probe.ConnectExchange, server: ServerConnection, *, bytewise: bool) -> list:
    """Move bytes both ways until neither side has anything to say."""
    events: list = []
    for _ in range(10):
        out = exchange.data_to_send()
        if not out:
            break
        pieces = [out[i : i + 1] for i in range(len(out))] if bytewise else [out]
        for piece in pieces:
            events += server.receive_data(piece)
        back = server.data_to_send()
        pieces = [back[i : i + 1] for i in range(len(back))] if bytewise else [back]
        for piece in pieces:
            exchange.receive_data(piece)
    return events


@pytest.mark.parametrize("bytewise", [False, True])
def test_exchange_against_the_server_core(bytewise: bool):
    exchange = probe.ConnectExchange("live", "rtmp://127.0.0.1:1935/live")
    server = ServerConnection(chunk_size=4096)
    events = _pump(exchange, server, bytewise=bytewise)
    assert exchange.handshake_done
    assert exchange.reply == probe.ConnectReply(
        True, "NetConnection.Connect.Success", "Connection succeeded."
    )
    (connect,) = [e for e in events if isinstance(e, ConnectRequested)]
    assert connect.app == "live"
    assert connect.tc_url == "rtmp://127.0.0.1:1935/live"
    assert not any(isinstance(e, ConnectionFailed) for e in events)


def _server_bytes_after_handshake(exchange: probe.ConnectExchange) -> None:
    server = ServerHandshake()
    server.receive_data(exchange.data_to_send())
    exchange.receive_data(server.data_to_send())
    assert exchange.handshake_done


def _status(code: str, description: str = "") -> dict[str, Any]:
    return {"level": "error", "code": code, "description": description}


@pytest.mark.parametrize(
    ("values", "reply"),
    [
        (
            ("_error", 1.0, None, _status("NetConnection.Connect.Rejected", "no")),
            probe.ConnectReply(False, "NetConnection.Connect.Rejected", "no"),
        ),
        (
            ("onStatus", 0.0, None, _status("NetConnection.Connect.InvalidApp")),
            probe.ConnectReply(False, "NetConnection.Connect.InvalidApp", ""),
        ),
        (
            ("_result", 1.0, {"fmsVer": "x"}, {"level": "status"}),
            probe.ConnectReply(False, "_result without a status code", ""),
        ),
        (
            ("_result", 1.0, None, {"code": "NetConnection.Connect.Success"}),
            probe.ConnectReply(True, "NetConnection.Connect.Success", ""),
        ),
        (("_result", 2.0, None, {"code": "NetConnection.Connect.Success"}), None),  # not ours
        (("onBWDone", 0.0, None), None),
    ],
)
@pytest.mark.parametrize("type_id", [20, 17])
def test_exchange_reads_replies(values: tuple, reply: probe.ConnectReply | None, type_id: int):
    exchange = probe.ConnectExchange("live", "rtmp://h/live")
    _server_bytes_after_handshake(exchange)
    sent = exchange.data_to_send()
    assert b"connect" in sent and b"rtmp://h/live" in sent  # C2 then the connect command
    payload = (b"\x00" if type_id == 17 else b"") + amf0.encode(*values)
    # After a Set Chunk Size of 64 the reply must be read in 64-byte chunks.
    data = chunk_message(2, 1, 0, 0, (64).to_bytes(4, "big"), 128)
    data += chunk_message(3, type_id, 0, 0, payload, 64)
    exchange.receive_data(data)
    assert exchange.reply == reply


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3200))
def test_exchange_raises_only_rtmp_errors_on_garbage(data: bytes):
    exchange = probe.ConnectExchange("live", "rtmp://h/live")
    try:
        exchange.receive_data(data)
    except RtmpError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(1, 64))
def test_exchange_after_handshake_raises_only_rtmp_errors(data: bytes, step: int):
    exchange = probe.ConnectExchange("live", "rtmp://h/live")
    _server_bytes_after_handshake(exchange)
    try:
        for i in range(0, len(data), step):
            exchange.receive_data(data[i : i + step])
    except RtmpError:
        pass


# ------------------------------------------------------------------------- fake servers


def _status_error(code: str) -> bytes:
    payload = amf0.encode("_error", 1.0, None, _status(code, "go away"))
    return chunk_message(3, 20, 0, 0, payload, 128)


class FakeRtmp:
    """asyncio.start_server around ServerConnection. Modes: ok, reject (answers connect with
    _error), silent (accepts, never answers), hangup (closes at once)."""

    def __init__(self, mode: str = "ok", tls: ssl.SSLContext | None = None) -> None:
        self.mode = mode
        self.tls = tls
        self.port = 0
        self.connects: list[ConnectRequested] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> FakeRtmp:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = ServerConnection()
        try:
            if self.mode == "hangup":  # read C0+C1 so the close is a FIN, not a reset
                await reader.readexactly(1537)
                return
            while data := await reader.read(65536):
                if self.mode == "silent":
                    continue
                events = conn.receive_data(data)
                out = conn.data_to_send()
                connects = [e for e in events if isinstance(e, ConnectRequested)]
                self.connects += connects
                if connects and self.mode == "reject":
                    out = _status_error("NetConnection.Connect.Rejected")
                writer.write(out)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


class FakeRtmpt:
    """A minimal RTMPT endpoint feeding ServerConnection. ``lazy`` holds the server's bytes
    back from /send replies so the client has to poll with /idle."""

    def __init__(self, *, lazy: bool = False) -> None:
        self.lazy = lazy
        self.sessions: dict[str, tuple[ServerConnection, bytearray]] = {}
        self.requests: list[tuple[str, str, bytes]] = []  # path, content type, body
        self.connects: list[ConnectRequested] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/open/1", self._open)
        app.router.add_post(r"/{kind:send|idle|close}/{sid}/{seq:\d+}", self._tunnel)
        return app

    async def _open(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, request.content_type, await request.read()))
        sid = secrets.token_hex(8)
        self.sessions[sid] = (ServerConnection(), bytearray())
        return web.Response(body=sid.encode() + b"\n", content_type="application/x-fcs")

    async def _tunnel(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((request.path, request.content_type, body))
        kind, sid = request.match_info["kind"], request.match_info["sid"]
        if sid not in self.sessions:
            raise web.HTTPNotFound()
        conn, pending = self.sessions[sid]
        if kind == "close":
            del self.sessions[sid]
            return web.Response(body=b"\x00", content_type="application/x-fcs")
        if kind == "send":
            events = conn.receive_data(body)
            self.connects += [e for e in events if isinstance(e, ConnectRequested)]
        pending += conn.data_to_send()
        out = b""
        if not (self.lazy and kind == "send"):
            out, pending[:] = bytes(pending), b""
        return web.Response(body=b"\x01" + out, content_type="application/x-fcs")


@pytest.fixture
async def rtmp_server() -> AsyncIterator[FakeRtmp]:
    server = await FakeRtmp().start()
    yield server
    await server.close()


async def _http_server(app: web.Application, tls: ssl.SSLContext | None = None) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=tls)
    return server


@pytest.fixture
async def rtmpt_server() -> AsyncIterator[tuple[FakeRtmpt, int]]:
    fake = FakeRtmpt()
    server = await _http_server(fake.app())
    yield fake, server.port
    await server.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bridge probe test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*certificate)
    return ctx


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bridge probe")
    probe.add_arguments(parser)
    return parser.parse_args(list(argv))


def _ports(rtmp: int, rtmps: int, rtmpt: int) -> list[str]:
    return ["--rtmp-port", str(rtmp), "--rtmps-port", str(rtmps), "--rtmpt-port", str(rtmpt)]


def _rows(out: str) -> dict[str, str]:
    lines = out.strip().splitlines()
    return {line.split()[0]: line for line in lines[:-1]} | {"summary": lines[-1]}


async def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict]]:
    code = await probe.run(_args(*argv, "--json"))
    return code, json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------------- whole probes


async def test_working_and_failing_transports(
    rtmp_server: FakeRtmp, rtmpt_server: tuple[FakeRtmpt, int], closed_port: int, capsys
):
    fake_t, rtmpt_port = rtmpt_server
    argv = ["rtmp://127.0.0.1/live/key", *_ports(rtmp_server.port, closed_port, rtmpt_port)]
    assert await probe.run(_args(*argv)) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["rtmp"].startswith(f"rtmp   127.0.0.1:{rtmp_server.port}")
    for name in ("rtmp", "rtmpt"):
        for word in (" ok ", "tcp ", "handshake ", "connect ", "total "):
            assert word in rows[name], rows[name]
    assert rows["rtmps"].endswith(f"127.0.0.1:{closed_port}  FAILED: connection refused")
    assert rows["summary"] == (
        f"2 of 3 transports work; use rtmp://127.0.0.1:{rtmp_server.port}/live/key"
    )
    assert [c.tc_url for c in rtmp_server.connects] == [f"rtmp://127.0.0.1:{rtmp_server.port}/live"]
    assert [c.tc_url for c in fake_t.connects] == [f"rtmpt://127.0.0.1:{rtmpt_port}/live"]


async def test_json_shape(rtmp_server: FakeRtmp, closed_port: int, capsys):
    code, rows = await _json(
        capsys, "rtmp://127.0.0.1/app", *_ports(rtmp_server.port, closed_port, closed_port)
    )
    assert code == 0
    assert [r["transport"] for r in rows] == ["rtmp", "rtmps", "rtmpt"]
    keys = {"transport", "host", "port", "ok", "error", "timings_ms", "tls_version"}
    assert all(set(r) == keys for r in rows)
    ok, *failed = rows
    assert ok["ok"] is True and ok["error"] is None and ok["port"] == rtmp_server.port
    timings = ok["timings_ms"]
    assert set(timings) == {"connect", "handshake", "command", "total"}
    assert all(isinstance(v, float) and v >= 0 for v in timings.values())
    assert timings["total"] >= timings["connect"] + timings["handshake"] + timings["command"]
    assert ok["tls_version"] is None
    for row in failed:
        assert row["ok"] is False and row["error"] == "connection refused"
        assert row["timings_ms"]["connect"] is None and row["timings_ms"]["total"] is None
    assert rtmp_server.connects[0].app == "app"


async def test_nothing_works_exits_1(closed_port: int, capsys):
    argv = ["127.0.0.1", *_ports(closed_port, closed_port, closed_port)]
    assert await probe.run(_args(*argv)) == 1
    out = capsys.readouterr().out
    assert out.count("FAILED: connection refused") == 3
    assert out.strip().endswith("0 of 3 transports work")


async def test_timeout(closed_port: int, capsys):
    server = await FakeRtmp("silent").start()
    try:
        started = time.monotonic()
        code, rows = await _json(
            capsys,
            "127.0.0.1",
            "--timeout",
            "0.5",
            *_ports(server.port, closed_port, closed_port),
        )
        elapsed = time.monotonic() - started
    finally:
        await server.close()
    assert code == 1
    assert rows[0]["error"] == "timed out after 0.5 s in the handshake"
    assert rows[0]["timings_ms"]["connect"] is not None
    assert rows[0]["timings_ms"]["handshake"] is None
    assert elapsed < 1.5


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("reject", "server refused connect: NetConnection.Connect.Rejected (go away)"),
        ("hangup", "the server closed the connection in the handshake"),
    ],
)
async def test_server_side_failures(mode: str, error: str, closed_port: int, capsys):
    server = await FakeRtmp(mode).start()
    try:
        code, rows = await _json(
            capsys, "127.0.0.1", *_ports(server.port, closed_port, closed_port)
        )
    finally:
        await server.close()
    assert code == 1
    assert rows[0]["error"] == error


async def test_garbage_from_the_server_is_a_handshake_failure(closed_port: int):
    async def http_speaker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http_speaker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await probe.probe_one(probe.ProbeTarget("rtmp", "127.0.0.1", port, "l", "/l"))
    finally:
        server.close()
    assert not result.ok
    assert result.error is not None and result.error.startswith("handshake failed: ")


async def test_rtmpt_request_sequence(closed_port: int):
    fake = FakeRtmpt(lazy=True)
    server = await _http_server(fake.app())
    try:
        target = probe.ProbeTarget("rtmpt", "127.0.0.1", server.port, "live", "/live")
        result = await probe.probe_one(target, timeout=5)
    finally:
        await server.close()
    assert result.ok, result.error
    assert result.timings.connect is not None and result.timings.command is not None
    paths = [path for path, _, _ in fake.requests]
    assert paths[0] == "/open/1"
    sid = paths[1].split("/")[2]
    kinds = [p.split("/")[1] for p in paths[1:]]
    seqs = [int(p.split("/")[3]) for p in paths[1:]]
    assert all(p.split("/")[2] == sid for p in paths[1:])
    assert seqs == list(range(len(seqs)))  # 0 after open, one more per request
    assert kinds[0] == "send" and "idle" in kinds and kinds[-1] == "close"
    assert kinds.count("send") == 2  # C0+C1, then C2+connect
    assert all(ctype == "application/x-fcs" for _, ctype, _ in fake.requests)
    assert all(body for _, _, body in fake.requests)  # never an empty POST
    assert len(fake.requests[1][2]) == 1537  # C0+C1
    assert not fake.sessions  # closed


async def test_rtmpt_server_that_never_answers(closed_port: int):
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    app = web.Application()
    app.router.add_post("/open/1", stall)
    server = await _http_server(app)
    try:
        target = probe.ProbeTarget("rtmpt", "127.0.0.1", server.port, "live", "/live")
        started = time.monotonic()
        result = await probe.probe_one(target, timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        await server.close()
    assert result.error == "timed out after 0.5 s opening the tunnel"
    assert elapsed < 1.5


async def test_rtmpt_idle_polls_are_paced():
    """A tunnel that never answers with data is polled with a pause, not in a busy loop."""
    count = 0

    async def open_(request: web.Request) -> web.Response:
        return web.Response(body=b"s\n")

    async def empty(request: web.Request) -> web.Response:
        nonlocal count
        count += 1
        return web.Response(body=b"\x01")

    app = web.Application()
    app.router.add_post("/open/1", open_)
    app.router.add_post("/{kind}/{sid}/{seq}", empty)
    server = await _http_server(app)
    try:
        target = probe.ProbeTarget("rtmpt", "127.0.0.1", server.port, "live", "/live")
        result = await probe.probe_one(target, timeout=0.3)
    finally:
        await server.close()
    assert result.error == "timed out after 0.3 s in the handshake"
    assert 2 <= count <= 0.3 / probe.IDLE_PAUSE + 2


@pytest.mark.parametrize(
    ("reply", "session_id"), [(b"abc\n", "abc"), (b"\x01abc\n", "abc"), (b"\n", None)]
)
async def test_rtmpt_session_id(reply: bytes, session_id: str | None):
    seen: list[str] = []

    async def open_(request: web.Request) -> web.Response:
        return web.Response(body=reply)

    async def other(request: web.Request) -> web.Response:
        seen.append(request.match_info["sid"])
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_post("/open/1", open_)
    app.router.add_post("/{kind}/{sid}/{seq}", other)
    server = await _http_server(app)
    try:
        target = probe.ProbeTarget("rtmpt", "127.0.0.1", server.port, "live", "/live")
        result = await probe.probe_one(target, timeout=2)
    finally:
        await server.close()
    if session_id is None:
        assert result.error == "no usable session id in the reply to /open/1"
    else:
        assert seen == [session_id]
        assert result.error == f"HTTP 404 Not Found on /send/{session_id}/0"


async def test_rtmpt_http_errors(closed_port: int, capsys):
    server = await _http_server(web.Application())  # 404 everywhere
    try:
        code, rows = await _json(capsys, "127.0.0.1", *_ports(closed_port, 1, server.port))
    finally:
        await server.close()
    assert code == 1
    assert rows[2]["error"] == "HTTP 404 Not Found on /open/1"


async def test_rtmps(server_tls: ssl.SSLContext, certificate, closed_port: int, capsys):
    server = await FakeRtmp(tls=server_tls).start()
    try:
        base = ["127.0.0.1", *_ports(closed_port, server.port, closed_port)]
        code, insecure = await _json(capsys, *base, "--insecure")
        assert code == 0
        code, verified = await _json(capsys, *base, "--cafile", str(certificate[0]))
        assert code == 0
        code, default = await _json(capsys, *base)
        assert code == 1
        # Plain RTMP to a TLS port: the server sees garbage, the probe fails cleanly.
        code, plain = await _json(capsys, "127.0.0.1", *_ports(server.port, 1, 1))
        assert code == 1
    finally:
        await server.close()
    for rows in (insecure, verified):
        assert rows[1]["ok"] is True
        assert rows[1]["tls_version"] in ("TLSv1.2", "TLSv1.3")
        assert rows[1]["timings_ms"]["handshake"] is not None
    assert default[1]["ok"] is False
    assert default[1]["error"].startswith("TLS: certificate verify failed: ")
    assert "self-signed" in default[1]["error"] or "self signed" in default[1]["error"]
    assert plain[0]["ok"] is False


async def test_rtmpts(server_tls: ssl.SSLContext, certificate, closed_port: int, capsys):
    fake = FakeRtmpt()
    server = await _http_server(fake.app(), server_tls)
    port = server.port
    try:
        base = ["127.0.0.1", *_ports(closed_port, closed_port, closed_port)]
        code, rows = await _json(capsys, *base, "--rtmpts-port", str(port), "--insecure")
        assert code == 0
        code, refused = await _json(capsys, *base, "--rtmpts-port", str(port))
        assert code == 1
        assert await probe.run(_args(*base, "--rtmpts-port", str(port), "--insecure")) == 0
        table = capsys.readouterr().out
    finally:
        await server.close()
    assert [r["transport"] for r in rows] == ["rtmp", "rtmps", "rtmpt", "rtmpts"]
    assert rows[3]["ok"] is True and rows[3]["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert rows[3]["timings_ms"]["connect"] is not None
    assert refused[3]["error"].startswith("TLS: certificate verify failed: ")
    line = _rows(table)["rtmpts"]
    assert " ok  tcp+tls " in line and line.endswith(rows[3]["tls_version"])
    assert _rows(table)["summary"].endswith(f"use rtmpts://127.0.0.1:{port}/live")


# -------------------------------------------------------------------------------- CLI


async def test_bad_url_exits_2(capsys):
    assert await probe.run(_args("http://example.com/live")) == 2
    assert "bad URL" in capsys.readouterr().err


async def test_unreadable_cafile_exits_2(tmp_path: Path, capsys):
    assert await probe.run(_args("h", "--cafile", str(tmp_path / "missing.pem"))) == 2
    assert "--cafile" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["h", "--rtmp-port", "0"],
        ["h", "--rtmpt-port", "65536"],
        ["h", "--rtmps-port", "x"],
        ["h", "--timeout", "0"],
        ["h", "--timeout", "nan"],
        [],
    ],
)
def test_bad_arguments_exit_2(argv: list[str]):
    with pytest.raises(SystemExit) as info:
        _args(*argv)
    assert info.value.code == 2


@pytest.fixture
def threaded_rtmp() -> Iterator[int]:
    """A FakeRtmp on its own loop in a thread, for the synchronous main()."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(FakeRtmp().start(), loop).result(5)
    yield server.port
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_main(threaded_rtmp: int, closed_port: int, capsys):
    argv = ["rtmp://127.0.0.1/live", *_ports(threaded_rtmp, closed_port, closed_port)]
    assert probe.main(_args(*argv)) == 0
    assert _rows(capsys.readouterr().out)["summary"].startswith("1 of 3 transports work")
    assert probe.main(_args("rtmp://127.0.0.1:0/live")) == 2


def test_table_format():
    results = [
        probe.ProbeResult(
            "rtmp", "127.0.0.1", 1935, True, None, probe.Timings(0.42, 1.2, 2.0, 3.64)
        ),
        probe.ProbeResult(
            "rtmps", "::1", 443, True, None, probe.Timings(3.1, 1.0, 1.0, 5.2), "TLSv1.3"
        ),
        probe.ProbeResult("rtmpt", "127.0.0.1", 80, False, "connection refused", probe.Timings()),
    ]
    assert probe.format_table(results).splitlines() == [
        "rtmp   127.0.0.1:1935  ok  tcp 0.4 ms  handshake 1.2 ms  connect 2.0 ms  total 3.6 ms",
        "rtmps  [::1]:443       ok  tcp+tls 3.1 ms  handshake 1.0 ms  connect 1.0 ms"
        "  total 5.2 ms  TLSv1.3",
        "rtmpt  127.0.0.1:80    FAILED: connection refused",
    ]
