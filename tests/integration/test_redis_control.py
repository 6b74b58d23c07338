"""Redis control commands against a real redis-server, with real ffmpeg and rtmpdump clients.

Commands go in the way an operator's backend sends them (PUBLISH on REDIS_CHANNEL, with
redis-py); what they do is seen from outside: client processes exiting, the server's log,
``/healthz``, ``/metrics`` and ``/api/v1/sessions``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ..redis_server import RedisServer
from .helpers import (
    Proc,
    ProcGroup,
    Server,
    SourceMedia,
    Tools,
    framemd5_argv,
    http,
    launch_server,
    publish_argv,
    rtmpdump_argv,
    video_packets,
    wait_until,
)

REDIS_CHANNEL = "bridge_test_commands"
KILL_BUDGET_S = 1.0  # from the PUBLISH to each client's exit


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as server:
        yield server


def redis_state(server: Server) -> str:
    _, health, _ = http(server, "GET", "/healthz")
    return str(health.get("redis"))


def start_bridge(procs: ProcGroup, redis_server: RedisServer, *flags: str) -> Server:
    server = launch_server(
        procs,
        "--redis-use", "YES",
        "--redis-host", redis_server.host,
        "--redis-port", str(redis_server.port),
        "--redis-channel", REDIS_CHANNEL,
        *flags,
        listeners=["--http-port"],
    )  # fmt: skip
    assert wait_until(lambda: redis_state(server) == "connected", 5), server.diagnostics()
    return server


def send(redis_server: RedisServer, command: str | bytes) -> tuple[int, float]:
    """PUBLISH a command; returns how many subscribers got it and when it was sent."""
    with redis.Redis(host=redis_server.host, port=redis_server.port) as client:
        sent = time.monotonic()
        return int(client.publish(REDIS_CHANNEL, command)), sent


def publish(procs: ProcGroup, tools: Tools, source: SourceMedia, url: str, name: str) -> Proc:
    return procs.start(name, publish_argv(tools.ffmpeg, source.path, url, "-stream_loop", "-1"))


def ffmpeg_reader(procs: ProcGroup, tools: Tools, source: SourceMedia, url: str, name: str) -> Proc:
    reader = procs.start(name, framemd5_argv(tools.ffmpeg, url))
    ok = wait_until(lambda: video_packets(reader, source) > 0 or not reader.running(), 10)
    assert ok and reader.running(), f"{name} got no video\n{reader.diagnostics()}"
    return reader


def rtmpdump_reader(procs: ProcGroup, url: str, name: str) -> Proc:
    reader = procs.start(name, rtmpdump_argv(url))
    ok = wait_until(lambda: len(reader.stdout_bytes()) > 50_000 or not reader.running(), 10)
    assert ok and reader.running(), f"{name} got no media\n{reader.diagnostics()}"
    return reader


def assert_keeps_receiving(reader: Proc, source: SourceMedia, seconds: float) -> None:
    """The reader's video grows in every half second of ``seconds`` (25 fps source)."""
    samples = [video_packets(reader, source)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
        samples.append(video_packets(reader, source))
    steps = [b - a for a, b in zip(samples, samples[1:], strict=False)]
    assert all(step >= 5 for step in steps), f"reader stalled: video packets {samples}"


def session_of(server: Server, channel: str, role: str) -> dict[str, Any]:
    status, body, _ = http(server, "GET", f"/api/v1/sessions?channel={channel}")
    assert status == 200, body
    found = [s for s in body["sessions"] if s["role"] == role]
    assert len(found) == 1, body
    return found[0]


def assert_ended_in_time(procs_: list[Proc], sent: float, server: Server) -> None:
    for proc in procs_:
        proc.wait(KILL_BUDGET_S + 2)
        took = proc.duration_after(sent)
        assert took is not None, f"{proc.name} still running\n{server.diagnostics()}"
        assert took <= KILL_BUDGET_S, f"{proc.name} ended {took:.2f} s after the command"


@pytest.mark.timeout(60)
def test_kill_session_ends_publisher_and_readers(
    tools: Tools,
    h264_source: SourceMedia,
    procs: ProcGroup,
    redis_server: RedisServer,
) -> None:
    server = start_bridge(procs, redis_server)
    url = server.url("chan", "secret")
    publisher = publish(procs, tools, h264_source, url, "publisher")
    dump = rtmpdump_reader(procs, url, "reader-rtmpdump")
    reader = ffmpeg_reader(procs, tools, h264_source, url, "reader-ffmpeg")

    receivers, sent = send(redis_server, "kill-session>chan")
    assert receivers == 1
    assert_ended_in_time([publisher, dump, reader], sent, server)
    assert wait_until(
        lambda: len(re.findall(r"chan\] closed: killed", server.stderr_text())) == 3, 1
    ), server.diagnostics()
    _, body, _ = http(server, "GET", "/api/v1/sessions")
    assert body["sessions"] == []
    assert "Traceback" not in server.stderr_text(), server.diagnostics()


@pytest.mark.timeout(60)
def test_close_stream_ends_only_that_publish_and_bad_commands_are_ignored(
    tools: Tools,
    h264_source: SourceMedia,
    procs: ProcGroup,
    redis_server: RedisServer,
) -> None:
    server = start_bridge(procs, redis_server)
    url_a, url_b = server.url("alpha", "ka"), server.url("beta", "kb")
    publisher_a = publish(procs, tools, h264_source, url_a, "publisher-alpha")
    publisher_b = publish(procs, tools, h264_source, url_b, "publisher-beta")
    reader_a = ffmpeg_reader(procs, tools, h264_source, url_a, "reader-alpha")
    reader_b = ffmpeg_reader(procs, tools, h264_source, url_b, "reader-beta")
    stream_id = session_of(server, "alpha", "publisher")["stream_id"]
    assert stream_id and f"publishing (stream id {stream_id})" in server.stderr_text()

    malformed: list[str | bytes] = [
        "kill-session",  # no '>'
        "kill-session>alpha>beta",  # two '>'
        "Kill-Session>alpha",  # names are case-sensitive
        "reboot>alpha",
        "kill-session>",
        "kill-session>al pha",
        "close-stream>alpha",  # no stream id
        "close-stream>alpha|",
        b"kill-session>\xff\xfe",
    ]
    for command in malformed:
        assert send(redis_server, command)[0] == 1
    # Well formed, but not this publish's stream id: nothing happens either.
    assert send(redis_server, f"close-stream>alpha|{stream_id}x")[0] == 1
    assert wait_until(
        lambda: server.stderr_text().count("ignored Redis command") == len(malformed), 2
    ), server.diagnostics()
    time.sleep(0.3)
    for proc in (publisher_a, publisher_b, reader_a, reader_b):
        assert proc.running(), f"{proc.name} ended by a command that was not for it"

    _, sent = send(redis_server, f"close-stream>alpha|{stream_id}")
    assert_ended_in_time([publisher_a], sent, server)
    assert "closed: closed by Redis command close-stream" in server.stderr_text()
    # Only that publish session: the reader of alpha is still connected, beta goes on.
    assert reader_a.running(), reader_a.diagnostics()
    assert session_of(server, "alpha", "player")
    assert publisher_b.running()
    assert_keeps_receiving(reader_b, h264_source, 1.5)
    assert session_of(server, "beta", "publisher")["stream_id"]
    assert "Traceback" not in server.stderr_text(), server.diagnostics()


@pytest.mark.timeout(60)
def test_redis_outage_leaves_media_alone_and_commands_come_back(
    tools: Tools,
    h264_source: SourceMedia,
    procs: ProcGroup,
    redis_server: RedisServer,
) -> None:
    server = start_bridge(procs, redis_server)
    url = server.url("chan", "secret")
    publisher = publish(procs, tools, h264_source, url, "publisher")
    reader = ffmpeg_reader(procs, tools, h264_source, url, "reader")
    _, metrics, _ = http(server, "GET", "/metrics")
    assert re.search(r"^bridge_redis_up 1(\.0)?$", metrics, re.MULTILINE), metrics

    redis_server.stop()
    assert_keeps_receiving(reader, h264_source, 3.0)
    assert redis_state(server) == "down"
    _, health, _ = http(server, "GET", "/healthz")
    assert health["redis_error"], health
    _, metrics, _ = http(server, "GET", "/metrics")
    assert re.search(r"^bridge_redis_up 0(\.0)?$", metrics, re.MULTILINE), metrics
    assert re.search(r"Redis at \S+ is down", server.stderr_text()), server.diagnostics()
    assert publisher.running() and reader.running()

    redis_server.start()
    assert wait_until(lambda: redis_state(server) == "connected", 5), server.diagnostics()
    receivers, sent = send(redis_server, "kill-session>chan")
    assert receivers == 1
    assert_ended_in_time([publisher, reader], sent, server)
    assert "is back: listening for commands again" in server.stderr_text()
    assert "Traceback" not in server.stderr_text(), server.diagnostics()
