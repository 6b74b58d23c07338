"""Redis control commands: the parser, `handle` on a real SessionTable, and the subscriber
against a real redis-server (tests/redis_server.py) that is stopped, paused and restarted."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from bridge import config as config_module
from bridge.config import Config
from bridge.control import redis_commands
from bridge.control.redis_commands import (
    CLOSE_STREAM,
    KILL_SESSION,
    BadCommand,
    Command,
    RedisCommands,
    parse_command,
)
from bridge.sessions import PLAYER, PUBLISHER, SessionTable
from tests.redis_server import RedisServer

LOGGER = "bridge.redis"
CHANNEL = "rtmp_commands"


@dataclass
class FakeSession:
    id: str
    channel: str
    role: str = PLAYER
    stream_id: str = ""
    protocol: str = "rtmp"
    ip: str = "127.0.0.1"
    started_at: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    kicks: list[str] = field(default_factory=list)

    def kick(self, reason: str) -> None:
        self.kicks.append(reason)


class BrokenSession(FakeSession):
    def kick(self, reason: str) -> None:
        super().kick(reason)
        raise RuntimeError("already closed")


def make_config(**env: str) -> Config:
    return config_module.load({}, environ=env)


def redis_config(server: RedisServer, **env: str) -> Config:
    values = {"REDIS_USE": "YES", "REDIS_HOST": server.host, "REDIS_PORT": str(server.port)}
    if server.password:
        values["REDIS_PASSWORD"] = server.password
    values.update(env)
    return make_config(**values)


def table(*sessions: FakeSession) -> SessionTable:
    sessions_table = SessionTable(max_per_ip=1000, exempt=None)
    for session in sessions:
        sessions_table.add(session)
    return sessions_table


def lines(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == level and text in r.getMessage()
    ]


# -- the parser ----------------------------------------------------------------------------

GOOD = [
    ("kill-session>chan", Command(KILL_SESSION, "chan")),
    ("kill-session>Ch_1-x", Command(KILL_SESSION, "Ch_1-x")),
    # extra arguments are ignored, as in the Go server
    ("kill-session>chan|extra", Command(KILL_SESSION, "chan")),
    ("kill-session>chan|a|b|c", Command(KILL_SESSION, "chan")),
    ("close-stream>chan|sid-1", Command(CLOSE_STREAM, "chan", "sid-1")),
    ("close-stream>chan|sid|extra|more", Command(CLOSE_STREAM, "chan", "sid")),
    # a stream id is the backend's text, compared as is
    ("close-stream>chan| sid ", Command(CLOSE_STREAM, "chan", " sid ")),
    ("kill-session>" + "a" * 128, Command(KILL_SESSION, "a" * 128)),
]

NO_GT = "no '>' (expected COMMAND>ARGS)"

BAD = [
    ("", NO_GT),
    ("kill-session", NO_GT),
    ("kill-session|chan", NO_GT),
    ("kill-session>chan>x", "more than one '>'"),
    ("close-stream>chan|a>b", "more than one '>'"),
    (">chan", "unknown command"),
    ("reload>chan", "unknown command"),
    ("KILL-SESSION>chan", "unknown command"),  # case-sensitive, as in Go
    ("Kill-Session>chan", "unknown command"),
    (" kill-session>chan", "unknown command"),  # no trimming, as in Go
    ("kill-session >chan", "unknown command"),
    ("kill-session>", "missing CHANNEL"),
    ("kill-session>|chan", "missing CHANNEL"),
    ("close-stream>|sid", "missing CHANNEL"),
    ("kill-session> chan", "bad CHANNEL"),
    ("kill-session>chan ", "bad CHANNEL"),
    ("kill-session>chan\n", "bad CHANNEL"),
    ("kill-session>chan\r\n", "bad CHANNEL"),
    ("kill-session>ch/an", "bad CHANNEL"),
    ("kill-session>chän", "bad CHANNEL"),
    ("kill-session>chan\x00", "bad CHANNEL"),
    ("kill-session>" + "a" * 129, "bad CHANNEL"),
    ("close-stream>chan", "missing STREAM_ID"),
    ("close-stream>chan|", "empty STREAM_ID"),
    ("close-stream>chan||sid", "empty STREAM_ID"),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_parse_good(text: str, expected: Command) -> None:
    assert parse_command(text, 128) == expected


@pytest.mark.parametrize(("text", "reason"), BAD)
def test_parse_bad(text: str, reason: str) -> None:
    with pytest.raises(BadCommand) as raised:
        parse_command(text, 128)
    assert str(raised.value) == reason


def test_parse_honours_id_max_length() -> None:
    assert parse_command("kill-session>abcd", 4) == Command(KILL_SESSION, "abcd")
    with pytest.raises(BadCommand):
        parse_command("kill-session>abcde", 4)


ids = st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True)
stream_ids = st.text(min_size=1, max_size=200).filter(lambda s: "|" not in s and ">" not in s)


@given(ids)
def test_kill_session_round_trip(channel: str) -> None:
    assert parse_command(f"kill-session>{channel}", 128) == Command(KILL_SESSION, channel)


@given(ids, stream_ids)
def test_close_stream_round_trip(channel: str, stream_id: str) -> None:
    parsed = parse_command(f"close-stream>{channel}|{stream_id}", 128)
    assert parsed == Command(CLOSE_STREAM, channel, stream_id)


@given(st.text(max_size=300) | st.sampled_from([t for t, _ in GOOD + BAD]))
def test_parse_raises_only_bad_command(text: str) -> None:
    try:
        parse_command(text, 128)
    except BadCommand:
        pass


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_handle_never_raises_and_counts_every_message(data: bytes | str) -> None:
    commands = RedisCommands(make_config(), table(FakeSession("s1", "chan", PUBLISHER, "x")))
    commands.handle_payload(data)
    assert commands.handled + commands.ignored == 1


# -- handle() on a real SessionTable --------------------------------------------------------


def test_kill_session_ends_every_session_of_the_channel() -> None:
    pub = FakeSession("p", "chan", PUBLISHER, "sid")
    players = [FakeSession(f"r{i}", "chan", PLAYER) for i in range(3)]
    waiting = FakeSession("w", "chan", "")  # connected, neither publishing nor playing yet
    other = FakeSession("o", "other", PUBLISHER, "sid")
    commands = RedisCommands(make_config(), table(pub, *players, waiting, other))
    commands.handle("kill-session>chan")
    for session in (pub, *players, waiting):
        assert session.kicks == ["killed by Redis command kill-session"]
    assert other.kicks == []
    assert (commands.handled, commands.ignored) == (1, 0)


def test_close_stream_ends_only_the_named_publish_session() -> None:
    pub = FakeSession("p", "chan", PUBLISHER, "sid-2")
    player = FakeSession("r", "chan", PLAYER)
    other = FakeSession("o", "other", PUBLISHER, "sid-2")
    commands = RedisCommands(make_config(), table(pub, player, other))
    commands.handle("close-stream>chan|sid-1")  # a stale id: an earlier publish
    assert pub.kicks == []
    commands.handle("close-stream>chan|sid-2")
    assert pub.kicks == ["closed by Redis command close-stream"]
    assert player.kicks == [] and other.kicks == []
    assert (commands.handled, commands.ignored) == (2, 0)


def test_close_stream_does_not_end_a_player() -> None:
    player = FakeSession("r", "chan", PLAYER, stream_id="sid")
    commands = RedisCommands(make_config(), table(player))
    commands.handle("close-stream>chan|sid")
    assert player.kicks == []


def test_unknown_channel_is_handled_and_ends_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    commands = RedisCommands(make_config(), table(FakeSession("p", "chan", PUBLISHER, "s")))
    commands.handle("kill-session>nobody")
    assert (commands.handled, commands.ignored) == (1, 0)
    assert lines(caplog, logging.INFO, "ended 0 session(s)")


def test_a_failing_kick_spares_no_one(caplog: pytest.LogCaptureFixture) -> None:
    broken = BrokenSession("b", "chan", PUBLISHER, "sid")
    player = FakeSession("r", "chan", PLAYER)
    commands = RedisCommands(make_config(), table(broken, player))
    commands.handle("kill-session>chan")  # must not raise
    assert broken.kicks and player.kicks
    assert commands.handled == 1


def test_id_max_length_comes_from_the_config() -> None:
    session = FakeSession("p", "abcde", PUBLISHER, "s")
    commands = RedisCommands(make_config(ID_MAX_LENGTH="4"), table(session))
    commands.handle("kill-session>abcde")
    assert session.kicks == [] and commands.ignored == 1


@pytest.mark.parametrize(("text", "reason"), BAD)
def test_bad_command_is_one_log_line(
    caplog: pytest.LogCaptureFixture, text: str, reason: str
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    session = FakeSession("p", "chan", PUBLISHER, "sid")
    commands = RedisCommands(make_config(), table(session))
    commands.handle(text)
    assert session.kicks == []
    assert (commands.handled, commands.ignored) == (0, 1)
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1
    message = records[0].getMessage()
    assert message.startswith("ignored Redis command ") and message.endswith(": " + reason)
    assert "\n" not in message  # a sender's newline cannot forge log lines


@pytest.mark.parametrize("data", [b"\xff\xfe", b"kill-session>chan\xff", b"\x80" * 10_000])
def test_binary_garbage_is_ignored(caplog: pytest.LogCaptureFixture, data: bytes) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    session = FakeSession("p", "chan", PUBLISHER, "sid")
    commands = RedisCommands(make_config(), table(session))
    commands.handle_payload(data)
    assert session.kicks == [] and commands.ignored == 1
    (message,) = lines(caplog, logging.WARNING, "ignored Redis command")
    assert message.endswith(": not UTF-8 text") and len(message) < 500


def test_utf8_bytes_are_handled() -> None:
    session = FakeSession("p", "chan", PUBLISHER, "sid")
    commands = RedisCommands(make_config(), table(session))
    commands.handle_payload(b"kill-session>chan")
    assert session.kicks and commands.handled == 1


@pytest.mark.parametrize(
    "text",
    [
        "kill-session>" + "a" * 1_000_000,
        "close-stream>chan|" + "|" * 1_000_000,
        ">" * 1_000_000,
        "x" * 1_000_000,
    ],
)
def test_very_long_text_is_cheap_and_logged_short(
    caplog: pytest.LogCaptureFixture, text: str
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    commands = RedisCommands(make_config(), table(FakeSession("p", "chan", PUBLISHER, "sid")))
    start = time.perf_counter()
    commands.handle(text)
    assert time.perf_counter() - start < 0.5
    assert commands.ignored == 1
    (message,) = lines(caplog, logging.WARNING, "ignored Redis command")
    assert len(message) < 300 and "1000" in message  # the length is shown instead


def test_a_long_stream_id_still_matches() -> None:
    stream_id = "s" * 5000
    session = FakeSession("p", "chan", PUBLISHER, stream_id)
    commands = RedisCommands(make_config(), table(session))
    commands.handle(f"close-stream>chan|{stream_id}|extra")
    assert session.kicks


# -- the subscriber against a real redis-server ----------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path):
    with RedisServer(tmp_path) as server:
        yield server


async def wait_until(predicate: Callable[[], bool], timeout: float) -> float:
    """Seconds it took for ``predicate`` to hold; fails after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@asynccontextmanager
async def running(commands: RedisCommands) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(commands.run())
    try:
        yield task
        assert not task.done(), "run() ended by itself"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def publish(server: RedisServer, message: str | bytes) -> int:
    client = aioredis.Redis(host=server.host, port=server.port, password=server.password)
    try:
        return int(await client.publish(CHANNEL, message))
    finally:
        await client.aclose()


async def test_off_does_nothing() -> None:
    commands = RedisCommands(make_config(REDIS_USE="NO"), table())
    assert commands.state == "off"
    await asyncio.wait_for(commands.run(), 1)
    assert commands.state == "off" and commands.connect_attempts == 0


async def test_commands_over_redis(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    pub = FakeSession("p", "chan", PUBLISHER, "sid")
    player = FakeSession("r", "chan", PLAYER)
    pub2 = FakeSession("p2", "two", PUBLISHER, "sid-2")
    commands = RedisCommands(redis_config(redis_server), table(pub, player, pub2))
    assert commands.state == "connecting"
    async with running(commands):
        await wait_until(lambda: commands.state == "connected", 2)
        assert commands.last_error == ""
        assert lines(caplog, logging.INFO, f"listening for commands on Redis channel '{CHANNEL}'")

        assert await publish(redis_server, b"\xff garbage \x00") == 1
        assert await publish(redis_server, "kill-session") == 1
        await wait_until(lambda: commands.ignored == 2, 1)

        assert await publish(redis_server, "kill-session>chan") == 1
        await wait_until(lambda: bool(pub.kicks and player.kicks), 1)
        assert pub2.kicks == []

        assert await publish(redis_server, "close-stream>two|other") == 1
        assert await publish(redis_server, "close-stream>two|sid-2") == 1
        await wait_until(lambda: bool(pub2.kicks), 1)
        assert pub2.kicks == ["closed by Redis command close-stream"]
        assert (commands.handled, commands.ignored) == (3, 2)
    assert not lines(caplog, logging.WARNING, "is down")


async def test_other_channels_are_not_listened_to(redis_server: RedisServer) -> None:
    pub = FakeSession("p", "chan", PUBLISHER, "sid")
    commands = RedisCommands(redis_config(redis_server, REDIS_CHANNEL="mine"), table(pub))
    async with running(commands):
        await wait_until(lambda: commands.state == "connected", 2)
        assert await publish(redis_server, "kill-session>chan") == 0  # on rtmp_commands
        await asyncio.sleep(0.2)
        assert pub.kicks == [] and commands.handled == 0


async def test_redis_goes_away_and_comes_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    pub = FakeSession("p", "chan", PUBLISHER, "sid")
    commands = RedisCommands(redis_config(redis_server), table(pub))
    async with running(commands):
        await wait_until(lambda: commands.state == "connected", 2)

        redis_server.stop()
        assert await wait_until(lambda: commands.state == "down", 3) < 3
        assert commands.last_error
        attempts = commands.connect_attempts
        await asyncio.sleep(1.0)
        assert commands.connect_attempts >= attempts + 2  # it keeps retrying ...
        assert len(lines(caplog, logging.WARNING, "is down")) == 1  # ... quietly

        redis_server.start()
        assert await wait_until(lambda: commands.state == "connected", 5) < 5
        assert commands.last_error == ""
        assert len(lines(caplog, logging.INFO, "is back")) == 1
        assert await publish(redis_server, "kill-session>chan") == 1
        await wait_until(lambda: bool(pub.kicks), 1)


async def test_redis_down_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    server = RedisServer(tmp_path, start=False)
    try:
        pub = FakeSession("p", "chan", PUBLISHER, "sid")
        commands = RedisCommands(redis_config(server), table(pub))
        async with running(commands):
            await wait_until(lambda: commands.state == "down", 2)
            assert "Connect" in commands.last_error or "111" in commands.last_error
            server.start()
            assert await wait_until(lambda: commands.state == "connected", 5) < 5
            assert await publish(server, "kill-session>chan") == 1
            await wait_until(lambda: bool(pub.kicks), 1)
        assert len(lines(caplog, logging.WARNING, "is down")) == 1
    finally:
        server.close()


async def test_redis_that_goes_silent_is_noticed(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    pub = FakeSession("p", "chan", PUBLISHER, "sid")
    commands = RedisCommands(redis_config(redis_server), table(pub))
    async with running(commands):
        await wait_until(lambda: commands.state == "connected", 2)
        redis_server.pause()  # sockets stay open, nothing answers
        try:
            took = await wait_until(lambda: commands.state == "down", 5)
            assert took > redis_commands.PING_EVERY  # noticed by silence, not by an error
            assert "no answer" in commands.last_error
        finally:
            redis_server.resume()
        assert await wait_until(lambda: commands.state == "connected", 5) < 5
        assert await publish(redis_server, "kill-session>chan") == 1
        await wait_until(lambda: bool(pub.kicks), 1)
    assert len(lines(caplog, logging.WARNING, "is down")) == 1


async def test_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    with RedisServer(tmp_path, password="s3cret-pass") as server:
        pub = FakeSession("p", "chan", PUBLISHER, "sid")
        good = RedisCommands(redis_config(server), table(pub))
        async with running(good):
            await wait_until(lambda: good.state == "connected", 2)
            assert await publish(server, "kill-session>chan") == 1
            await wait_until(lambda: bool(pub.kicks), 1)

        for password in ("wrong", ""):
            caplog.clear()
            bad = RedisCommands(redis_config(server, REDIS_PASSWORD=password), table())
            async with running(bad):
                await wait_until(lambda b=bad: b.state == "down", 2)
                assert "auth" in bad.last_error.lower()
                await wait_until(lambda b=bad: b.connect_attempts >= 3, 2)
                assert bad.state == "down"
            warnings = lines(caplog, logging.WARNING, "is down")
            assert len(warnings) == 1
            assert "s3cret" not in caplog.text and "wrong" not in warnings[0]


async def test_cancel_at_any_moment_ends_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancellation must not get lost inside redis-py (Python 3.11's wait_for swallows a
    cancel that races with the awaited call finishing); retry fast to hit every await."""
    monkeypatch.setattr(redis_commands, "BACKOFF_FIRST", 0.001)
    monkeypatch.setattr(redis_commands, "BACKOFF_MAX", 0.001)
    rng = random.Random(4)
    with RedisServer(tmp_path, password="right") as server:
        for password in ("wrong", "right"):
            config = redis_config(server, REDIS_PASSWORD=password)
            for _ in range(60):
                commands = RedisCommands(config, table())
                task = asyncio.create_task(commands.run())
                await asyncio.sleep(rng.random() * 0.02)
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=2)
                assert done, f"run() survived its cancellation (password {password!r})"
                assert task.cancelled()
