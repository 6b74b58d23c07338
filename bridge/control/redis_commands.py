"""Control commands from Redis pub/sub (REDIS_USE=YES): end sessions from an operator's backend.

Messages on REDIS_CHANNEL have the form ``COMMAND>ARG1|ARG2`` (../shared/CONTRACT.md):

- ``kill-session>CHANNEL`` ends every session of that channel (publisher and players);
- ``close-stream>CHANNEL|STREAM_ID`` ends that channel's publish session if its stream id is
  STREAM_ID (a stale command for an earlier publish of the channel does nothing).

The parsing follows the Go server this project grew from, AgustinSRG/rtmp-server
(``redis_cmds.go``, ``parseRedisCommand``), so existing backends keep working:

- the message is split on ``>`` and must give exactly two parts (a second ``>`` anywhere makes
  it invalid); the arguments are the second part split on ``|``;
- the command name is compared exactly: case-sensitive, no whitespace trimmed anywhere (so
  ``kill-session>chan\\n`` names the channel ``"chan\\n"``, which cannot exist);
- arguments beyond those a command uses are ignored (``kill-session>chan|x`` kills ``chan``);
- ``close-stream`` with fewer than two arguments is invalid.

Where we differ, on purpose: Go's ``kill-session`` closes only the publisher although its
README says "closes any sessions for that specific channel" (ours ends all of them, as the
contract says); Go looks up any channel text and silently finds nothing, we also check it with
``valid_id`` and log why a command was ignored (likewise an empty STREAM_ID: every publish
session of ours has one); Go sleeps 10 s after a Redis error, we retry
after 0.2 s doubling to 3 s. (The Rust port, AgustinSRG/rtmp-server-rs ``src/redis/command.rs``,
lower-cases the name and re-joins extra ``>``; we follow the Go server.)

The subscriber never stops media: Redis being down only changes ``state`` (shown in /healthz and
the metrics) and logs one line per outage. A Redis that dies without closing its socket is
noticed by our own PING: redis-py's pub/sub ``health_check_interval`` only sends a PING and
swallows the answer, so a silent server never produces an error; we count the silence instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bridge.auth.policy import valid_id

if TYPE_CHECKING:
    from bridge.config import Config
    from bridge.sessions import Session, SessionTable

log = logging.getLogger("bridge.redis")

_T = TypeVar("_T")

KILL_SESSION = "kill-session"
CLOSE_STREAM = "close-stream"

OFF = "off"
CONNECTING = "connecting"
CONNECTED = "connected"
DOWN = "down"

BACKOFF_FIRST = 0.2  # seconds before the first retry; doubles up to BACKOFF_MAX
BACKOFF_MAX = 3.0
SOCKET_TIMEOUT = 2.0  # connect, AUTH/HELLO, SUBSCRIBE
POLL = 0.5  # how long one read waits, so the silence check runs often enough
PING_EVERY = 1.0  # after this long without hearing from Redis, PING it
DEAD_AFTER = 3.0  # after this long without any answer, the connection is dead
CLOSE_TIMEOUT = 1.0
SHOWN_CHARS = 80  # of a command in a log line


class BadCommand(ValueError):
    """A message that is not a valid command; the text says why."""


@dataclass(frozen=True)
class Command:
    name: str  # KILL_SESSION or CLOSE_STREAM
    channel: str
    stream_id: str = ""  # CLOSE_STREAM only


def parse_command(text: str, id_max_length: int) -> Command:
    """Parse one message; raises ``BadCommand`` (and nothing else) when it is not valid."""
    # maxsplit bounds the work on a huge message; three parts means a second '>'.
    parts = text.split(">", 2)
    if len(parts) == 1:
        raise BadCommand("no '>' (expected COMMAND>ARGS)")
    if len(parts) == 3:
        raise BadCommand("more than one '>'")
    name, rest = parts
    if name not in (KILL_SESSION, CLOSE_STREAM):
        raise BadCommand("unknown command")
    args = rest.split("|", 2)
    channel = args[0]
    if not channel:
        raise BadCommand("missing CHANNEL")
    if not valid_id(channel, id_max_length):
        raise BadCommand("bad CHANNEL")
    if name == KILL_SESSION:
        return Command(name, channel)
    if len(args) < 2:
        raise BadCommand("missing STREAM_ID")
    if not args[1]:
        raise BadCommand("empty STREAM_ID")
    return Command(name, channel, args[1])


def _show(text: str) -> str:
    """A command for a log line: quoted (no raw newlines from the sender) and bounded."""
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return f"{text[:SHOWN_CHARS]!r}... ({len(text)} chars)"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, _Silent):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Silent(Exception):
    """Redis stopped answering without closing the connection."""


async def _bounded(awaitable: Awaitable[_T], seconds: float) -> _T:
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise _Silent(f"no answer from Redis within {seconds:g} s") from None


def _raise_if_cancelling() -> None:
    """Re-raise a cancellation that library code swallowed: the task stays marked as
    cancelling (``Task.cancelling``) even when the CancelledError itself was lost."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RedisCommands:
    """Subscribes to REDIS_CHANNEL and applies its commands to the session table."""

    def __init__(self, config: Config, sessions: SessionTable) -> None:
        self._config = config
        self._sessions = sessions
        self.state = CONNECTING if config.redis_use else OFF
        self.last_error = ""
        self.handled = 0
        self.ignored = 0
        self.connect_attempts = 0

    @property
    def where(self) -> str:
        tls = " (TLS)" if self._config.redis_tls else ""
        return f"{self._config.redis_host}:{self._config.redis_port}{tls}"

    # -- commands ----------------------------------------------------------------------------

    def handle_payload(self, data: bytes | str) -> None:
        """One pub/sub message as it arrives: bytes that must be UTF-8 text."""
        if isinstance(data, bytes):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self._ignore(repr(data[:SHOWN_CHARS]), "not UTF-8 text")
                return
        else:
            text = data
        self.handle(text)

    def handle(self, text: str) -> None:
        """Apply one command; a bad one is logged and counted. Never raises."""
        try:
            command = parse_command(text, self._config.id_max_length)
        except BadCommand as exc:
            self._ignore(_show(text), str(exc))
            return
        self.handled += 1
        sessions: list[Session]
        if command.name == KILL_SESSION:
            sessions = self._sessions.by_channel(command.channel)
            reason = "killed by Redis command kill-session"
        else:
            publisher = self._sessions.publisher(command.channel, command.stream_id)
            sessions = [publisher] if publisher is not None else []
            reason = "closed by Redis command close-stream"
        for session in sessions:
            try:
                session.kick(reason)
            except Exception:  # one broken session must not spare the others
                log.exception("Redis command %s: ending session %s failed", _show(text), session.id)
        log.info("Redis command %s: ended %d session(s)", _show(text), len(sessions))

    def _ignore(self, shown: str, reason: str) -> None:
        self.ignored += 1
        log.warning("ignored Redis command %s: %s", shown, reason)

    # -- connection --------------------------------------------------------------------------

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff; returns at once when off."""
        if not self._config.redis_use:
            self.state = OFF
            return
        delay = BACKOFF_FIRST
        while True:
            _raise_if_cancelling()
            try:
                await self._listen()
                raise _Silent("the subscription ended")  # _listen only returns by raising
            except Exception as exc:  # anything but cancellation: Redis is down, retry
                if self.state == CONNECTED:
                    delay = BACKOFF_FIRST
                self._down(exc)
            _raise_if_cancelling()
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _listen(self) -> None:
        config = self._config
        self.connect_attempts += 1
        client = aioredis.Redis(
            host=config.redis_host,
            port=config.redis_port,
            password=config.redis_password or None,
            ssl=config.redis_tls,
            socket_connect_timeout=SOCKET_TIMEOUT,
            # No socket_timeout: redis-py applies it to writes with asyncio.wait_for, which in
            # Python 3.11 can swallow our task's cancellation (cpython gh-86296). Every call
            # below is bounded by _bounded (asyncio.timeout) instead.
            socket_timeout=None,
            socket_keepalive=True,
            # We reconnect ourselves, so that an outage is seen (and logged) at once.
            retry=Retry(NoBackoff(), 0),
        )
        pubsub = client.pubsub()
        try:
            # Connect, AUTH/HELLO and SUBSCRIBE; its answer comes as the first message.
            await _bounded(pubsub.subscribe(config.redis_channel), SOCKET_TIMEOUT)
            loop = asyncio.get_running_loop()
            heard = pinged = loop.time()
            while True:
                _raise_if_cancelling()
                now = loop.time()
                if now - heard > DEAD_AFTER:
                    raise _Silent(f"no answer from Redis for {DEAD_AFTER:g} s")
                if now - heard >= PING_EVERY and now - pinged >= PING_EVERY:
                    await _bounded(pubsub.ping(), SOCKET_TIMEOUT)
                    pinged = now
                # redis-py may reconnect inside a read; the bound covers that too.
                message: dict[str, Any] | None = await _bounded(
                    pubsub.get_message(timeout=POLL), POLL + SOCKET_TIMEOUT
                )
                if message is None:
                    continue
                heard = loop.time()
                kind = message.get("type")
                if kind == "subscribe":
                    self._up()
                elif kind == "message":
                    self.handle_payload(message.get("data", b""))
        finally:
            await self._close(pubsub.aclose, client.aclose)

    @staticmethod
    async def _close(*closers: Callable[[], Awaitable[object]]) -> None:
        for closer in closers:
            try:
                # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation
                # that arrives as the awaited call finishes (cpython gh-86296).
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await closer()
            except Exception as exc:  # a dead server may not even let us close
                log.debug("closing the Redis connection: %s", _describe(exc))

    def _up(self) -> None:
        if self.state == DOWN:
            log.info("Redis at %s is back: listening for commands again", self.where)
        else:
            log.info(
                "listening for commands on Redis channel %r at %s",
                self._config.redis_channel,
                self.where,
            )
        self.state = CONNECTED
        self.last_error = ""

    def _down(self, exc: BaseException) -> None:
        self.last_error = _describe(exc)
        if self.state == DOWN:
            log.debug("Redis at %s still down: %s", self.where, self.last_error)
            return
        self.state = DOWN
        log.warning(
            "Redis at %s is down (%s); commands are off until it is back, media is not affected",
            self.where,
            self.last_error,
        )
