"""The per-IP connection limit with raw sockets, and the HTTP API and metrics over real HTTP
against a server with a live ffmpeg publish and an rtmpdump reader."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .helpers import (
    Proc,
    ProcGroup,
    Server,
    SourceMedia,
    Tools,
    http,
    launch_server,
    publish_argv,
    rtmpdump_argv,
    wait_until,
)

LIMIT = 4


# --------------------------------------------------------------------------- per-IP limit


@contextlib.contextmanager
def held_connections() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    try:
        yield held
    finally:
        for sock in held:
            sock.close()


def connect(server: Server, into: list[socket.socket]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=2)
    into.append(sock)
    return sock


def open_sessions(server: Server) -> int:
    """Sessions the server logged as connected and not yet closed (the harness's readiness
    probe is one that comes and goes)."""
    log = server.stderr_text()
    return len(re.findall(r"\] connected$", log, re.MULTILINE)) - log.count("] closed: ")


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes (FIN or RST) the connection within ``within`` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.timeout(30)
def test_fifth_connection_from_one_address_is_refused(procs: ProcGroup) -> None:
    server = launch_server(
        procs, "--max-ip-concurrent-connections", str(LIMIT), listeners=["--http-port"]
    )
    assert wait_until(lambda: open_sessions(server) == 0, 2), server.diagnostics()
    with held_connections() as held:
        for n in range(1, LIMIT + 1):
            connect(server, held)
            assert wait_until(lambda n=n: open_sessions(server) == n, 2), server.diagnostics()
        fifth = connect(server, held)
        began = time.monotonic()
        assert closed_by_server(fifth, 1.0), "the fifth connection was not closed"
        assert time.monotonic() - began < 1.0
        assert wait_until(
            lambda: f"refused: more than {LIMIT} connections" in server.stderr_text(), 1
        ), server.diagnostics()
        # The four are untouched.
        for sock in held[:LIMIT]:
            assert not closed_by_server(sock, 0.05)

        # RTMPT counts against the same limit.
        status, body, _ = http(server, "POST", "/open/1")
        assert status == 429, (status, body)

        # Closing one frees a place.
        held[0].close()
        assert wait_until(lambda: open_sessions(server) == LIMIT - 1, 2), server.diagnostics()
        again = connect(server, held)
        assert not closed_by_server(again, 0.5), "a connection under the limit was closed"
        _, metrics, _ = http(server, "GET", "/metrics")
        refused = re.search(r"^bridge_connections_refused_total (\S+)$", metrics, re.MULTILINE)
        assert refused and float(refused.group(1)) == 2, metrics


@pytest.mark.timeout(30)
def test_whitelisted_address_is_not_limited(procs: ProcGroup) -> None:
    server = launch_server(
        procs,
        "--max-ip-concurrent-connections", str(LIMIT),
        "--concurrent-limit-whitelist", "127.0.0.1",
        listeners=["--http-port"],
    )  # fmt: skip
    assert wait_until(lambda: open_sessions(server) == 0, 2), server.diagnostics()
    with held_connections() as held:
        for _ in range(LIMIT + 2):
            connect(server, held)
        assert wait_until(lambda: open_sessions(server) == LIMIT + 2, 2), server.diagnostics()
        for sock in held:
            assert not closed_by_server(sock, 0.1)
        status, body, _ = http(server, "POST", "/open/1")
        assert status == 200, (status, body)
    assert "refused" not in server.stderr_text()


# --------------------------------------------------------------------------- API


def channel_view(server: Server, name: str) -> dict[str, Any]:
    status, body, _ = http(server, "GET", "/api/v1/channels")
    assert status == 200, body
    found = [c for c in body["channels"] if c["name"] == name]
    assert len(found) == 1, body
    return found[0]


def sessions_by_role(server: Server) -> dict[str, dict[str, Any]]:
    status, body, _ = http(server, "GET", "/api/v1/sessions")
    assert status == 200, body
    roles = {s["role"]: s for s in body["sessions"]}
    assert len(roles) == len(body["sessions"]), body
    return roles


def metric(text: str, name: str, labels: str = "") -> float | None:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else None


@pytest.mark.timeout(60)
def test_api_lists_kicks_and_ends_over_http(
    tools: Tools, h264_source: SourceMedia, procs: ProcGroup
) -> None:
    server = launch_server(procs, "--unpublish-grace-seconds", "1", listeners=["--http-port"])
    url = server.url("chan", "ckey")
    publisher = procs.start(
        "publisher", publish_argv(tools.ffmpeg, h264_source.path, url, "-stream_loop", "-1")
    )
    reader: Proc = procs.start("reader", rtmpdump_argv(url))
    assert wait_until(lambda: len(reader.stdout_bytes()) > 50_000 or not reader.running(), 10)
    assert reader.running(), reader.diagnostics()

    channel = channel_view(server, "chan")
    assert channel["live"] is True and channel["readers"] == 1, channel
    assert channel["bitrate_kbps"] > 0 and channel["uptime_seconds"] > 0, channel
    tracks = {t["kind"]: t for t in channel["tracks"]}
    assert tracks["video"]["codec"] == "h264", tracks
    assert (tracks["video"]["width"], tracks["video"]["height"]) == (640, 360), tracks
    assert tracks["audio"]["codec"] == "aac", tracks
    assert tracks["audio"]["sample_rate"] == 44100, tracks

    first = sessions_by_role(server)
    assert set(first) == {"publisher", "player"}, first
    for session in first.values():
        assert session["protocol"] == "rtmp" and session["channel"] == "chan", session
        assert session["address"] == "127.0.0.1", session
    assert channel["publisher"] == first["publisher"]["id"]
    assert channel["stream_id"] == first["publisher"]["stream_id"]
    time.sleep(0.5)
    second = sessions_by_role(server)
    assert second["publisher"]["bytes_in"] > first["publisher"]["bytes_in"], (first, second)
    assert second["player"]["bytes_out"] > first["player"]["bytes_out"], (first, second)

    _, metrics, _ = http(server, "GET", "/metrics")
    assert metric(metrics, "bridge_sessions", '{protocol="rtmp"}') == 2, metrics
    assert metric(metrics, "bridge_channel_readers", '{channel="chan"}') == 1, metrics

    # Unknown ids are a clear 404, not an error.
    status, body, _ = http(server, "DELETE", "/api/v1/sessions/rtmp-99999")
    assert status == 404 and "error" in body, body

    # Kick the reader: rtmpdump exits, the publish goes on.
    status, body, _ = http(server, "DELETE", f"/api/v1/sessions/{first['player']['id']}")
    assert status == 200 and body == {"ended": 1}, body
    assert reader.wait(3.0) is not None, f"kicked reader still running\n{reader.diagnostics()}"
    time.sleep(0.5)
    assert publisher.running(), publisher.diagnostics()
    channel = channel_view(server, "chan")
    assert channel["live"] is True and channel["readers"] == 0, channel
    assert set(sessions_by_role(server)) == {"publisher"}

    # End the channel: the publisher is gone.
    status, body, _ = http(server, "DELETE", "/api/v1/channels/chan")
    assert status == 200 and body == {"ended": 1}, body
    assert publisher.wait(3.0) is not None, f"publisher still running\n{publisher.diagnostics()}"
    assert wait_until(lambda: sessions_by_role(server) == {}, 2)
    log = server.stderr_text()
    assert log.count("closed: ended through the HTTP API") == 2, server.diagnostics()
    assert "Traceback" not in log, server.diagnostics()


@pytest.mark.timeout(30)
def test_api_token_is_required_when_set(procs: ProcGroup) -> None:
    token = "t0ken-for-the-tests"
    server = launch_server(procs, "--api-token", token, listeners=["--http-port"])
    status, body, headers = http(server, "GET", "/api/v1/channels")
    assert status == 401 and "error" in body, body
    assert headers.get("WWW-Authenticate", "").startswith("Bearer"), headers
    status, body, _ = http(server, "GET", "/api/v1/channels", token="wrong")
    assert status == 401 and "error" in body, body
    status, body, _ = http(server, "GET", "/api/v1/channels", token=token)
    assert status == 200 and body == {"channels": []}, body
    status, body, _ = http(server, "GET", "/api/v1/sessions", token=token)
    assert status == 200 and body == {"sessions": []}, body
