"""The publish auth callback: a signed POST to CALLBACK_URL before a publish starts and
after it stops (/work/shared/CONTRACT.md, "Publish auth callback").

Wire shape, matched to the Go server this project follows so existing backends keep
working (AgustinSRG/rtmp-server ``rtmp_callback.go``: ``SendStartCallback`` and
``SendStopCallback``; ``rtmp_server.go`` for the field types):

- ``POST CALLBACK_URL`` with an empty body (Go passes a nil body, so Content-Length 0) and
  one header ``rtmp-event``: an HS256 JWT signed with JWT_SECRET.
- Claims: ``sub`` (CUSTOM_JWT_SUBJECT, default ``rtmp_event``), ``event`` (``start`` or
  ``stop``), ``channel``, ``key``, ``client_ip``, ``rtmp_host`` (a string: RTMP_HOST, empty
  when unset), ``rtmp_port`` (a JSON number: Go's ``port int``, the plain RTMP port), and
  ``exp`` = now + 120 s (Go's ``JWT_EXPIRATION_TIME_SECONDS``). Go sets no ``iat``; neither
  do we, so a backend whose clock runs behind ours never sees a token "issued in the
  future". ``stop`` adds ``stream_id``. Go's ``stop`` token leaves out rtmp_host/rtmp_port;
  its Rust port (AgustinSRG/rtmp-server-rs ``src/callback/token.rs``) puts them on both
  events, and so do we: JWT consumers ignore claims they do not read.
- ``start`` is accepted on status exactly 200 (Go compares ``StatusCode != 200``), and
  the session's stream id is the ``stream-id`` response header (Go: ``Header.Get``, so
  case-insensitive, first value).

Where we differ from Go, on purpose (it would hang or be fooled):

- Go's ``http.Client{}`` has no timeout; here the whole exchange is bounded by
  CALLBACK_TIMEOUT_SECONDS (``aiohttp.ClientTimeout(total=...)`` plus an
  ``asyncio.timeout`` around it), so a slow, silent or stalling backend refuses the
  publish in time.
- Go follows redirects (its default policy); we do not: any 3xx refuses, and the target is
  never contacted, so a token cannot be bounced to another host.
- Go accepts a 200 with no ``stream-id`` (the stream id is then empty); we refuse it, and
  a value over 256 characters or with control characters, because the id names the
  session in Redis commands, the API and the ``stop`` token.
- We need the status line and headers only. The body is never read: the response is
  closed as soon as the headers are in, so a 200 with a ``stream-id`` whose body never
  ends is accepted at once, and nothing is buffered. (Each response closes its
  connection; callbacks are rare, and no keep-alive connection can go stale under us.)
- ``stop`` counts any 2xx as delivered (Go wants 200 and never retries), is sent at most
  once per stream id, and is retried after a network error, a timeout or a non-2xx answer
  (3 attempts, 0.5 s then 1 s apart).

Without CALLBACK_URL every publish is accepted with a fresh uuid4 hex stream id (Go leaves
it empty; the Rust port reuses the key) and ``stop`` does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
from jwt.warnings import InsecureKeyLengthWarning

from bridge.config import Config

log = logging.getLogger("bridge.callback")

TOKEN_LIFETIME_SECONDS = 120  # Go's JWT_EXPIRATION_TIME_SECONDS
STREAM_ID_MAX_LENGTH = 256
STOP_RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0)  # 3 attempts in all
# How many delivered stop ids are remembered to drop duplicates: a repeat comes within
# seconds of the first call, and the memory stays bounded on a long-running server.
REMEMBERED_STOPS = 65536
_REASON_MAX = 200

Observer = Callable[[str, str, float], None]


class PublishDenied(Exception):
    """The callback did not accept the publish; ``str(exc)`` is a short reason."""


class _Failure(Exception):
    """An attempt that got no usable HTTP answer; ``outcome`` is "timeout" or "failed"."""

    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


def _describe(exc: BaseException) -> str:
    """One short line about a network error, never a traceback."""
    if isinstance(exc, aiohttp.ClientConnectorError) and exc.os_error.strerror:
        text = exc.os_error.strerror
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 3] + "..."


def _unusable(stream_id: str) -> bool:
    if len(stream_id) > STREAM_ID_MAX_LENGTH:
        return True
    # Cc: control characters (CR/LF would split log lines and Redis commands);
    # Cs: lone surrogates, which is how undecodable header bytes arrive.
    return any(unicodedata.category(char) in ("Cc", "Cs") for char in stream_id)


class PublishCallback:
    """Asks CALLBACK_URL whether a publish may start and tells it when one stops.

    One instance per server. ``observers`` (event, outcome, seconds) are called after every
    HTTP attempt: event "start" or "stop"; outcome "accepted" or "refused" (start),
    "sent" or "refused" (stop), "failed" (network or protocol error), "timeout".
    """

    def __init__(self, config: Config) -> None:
        self._url = config.callback_url
        self._secret = config.jwt_secret
        self._subject = config.custom_jwt_subject
        self._host = config.rtmp_host
        self._port = config.rtmp_port
        self._timeout = config.callback_timeout_seconds
        self.observers: list[Observer] = []
        self.retry_delays: tuple[float, ...] = STOP_RETRY_DELAYS
        self._session: aiohttp.ClientSession | None = None
        self._stop_tasks: set[asyncio.Task[None]] = set()
        self._starts: set[asyncio.Future[None]] = set()
        self._stopped: OrderedDict[str, None] = OrderedDict()
        self._closing = False
        self._closed = False
        if self._url and len(self._secret.encode()) < 32:
            # PyJWT warns on every token signed with a short HMAC key; say it once instead.
            log.warning("JWT_SECRET is shorter than 32 bytes: callback tokens are easier to forge")

    # -- start --------------------------------------------------------------------------

    async def start(self, channel: str, key: str, client_ip: str) -> str:
        """Ask the backend; return the stream id or raise ``PublishDenied``."""
        if self._closing:
            raise PublishDenied("server shutting down")
        if not self._url:
            return uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        # close() waits for these, so the session is not closed under a running start.
        done: asyncio.Future[None] = loop.create_future()
        self._starts.add(done)
        begun = loop.time()
        try:
            status, header = await self._exchange(self._claims("start", channel, key, client_ip))
        except _Failure as exc:
            self._notify("start", exc.outcome, loop.time() - begun)
            raise self._deny(channel, client_ip, exc.reason) from None
        finally:
            self._starts.discard(done)
            done.set_result(None)
        elapsed = loop.time() - begun
        reason = self._refusal(status)
        stream_id = (header or "").strip()
        if reason is None and not stream_id:
            reason = "callback answered 200 without a stream-id header"
        elif reason is None and _unusable(stream_id):
            reason = "callback answered 200 with an unusable stream-id header"
        if reason is not None:
            self._notify("start", "refused", elapsed)
            raise self._deny(channel, client_ip, reason)
        self._notify("start", "accepted", elapsed)
        return stream_id

    @staticmethod
    def _refusal(status: int) -> str | None:
        if 300 <= status < 400:
            return f"callback redirected: {status}"
        if status != 200:
            return f"callback refused: HTTP {status}"
        return None

    def _deny(self, channel: str, client_ip: str, reason: str) -> PublishDenied:
        log.warning("publish of %s from %s refused: %s", channel, client_ip, reason)
        return PublishDenied(reason)

    # -- stop ---------------------------------------------------------------------------

    def stop(self, channel: str, key: str, client_ip: str, stream_id: str) -> None:
        """Tell the backend a publish ended: in the background, once per stream id."""
        if not self._url:
            return
        if stream_id in self._stopped:
            log.debug("stop for stream %s already sent", stream_id)
            return
        self._stopped[stream_id] = None
        while len(self._stopped) > REMEMBERED_STOPS:
            self._stopped.popitem(last=False)
        if self._closed:
            log.warning(
                "stop for stream %s (channel %s) dropped: the callback client is closed",
                stream_id,
                channel,
            )
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.warning(
                "stop for stream %s (channel %s) dropped: no event loop", stream_id, channel
            )
            return
        task = loop.create_task(
            self._deliver_stop(channel, key, client_ip, stream_id), name=f"stop-{stream_id}"
        )
        self._stop_tasks.add(task)
        task.add_done_callback(self._stop_tasks.discard)

    async def _deliver_stop(self, channel: str, key: str, client_ip: str, stream_id: str) -> None:
        loop = asyncio.get_running_loop()
        attempts = len(self.retry_delays) + 1
        for attempt in range(1, attempts + 1):
            begun = loop.time()
            claims = self._claims("stop", channel, key, client_ip, stream_id)
            try:
                status, _ = await self._exchange(claims)
            except _Failure as exc:
                outcome, reason = exc.outcome, exc.reason
            else:
                if 200 <= status < 300:
                    self._notify("stop", "sent", loop.time() - begun)
                    return
                outcome = "refused"
                reason = self._refusal(status) or f"callback refused: HTTP {status}"
            self._notify("stop", outcome, loop.time() - begun)
            if attempt == attempts:
                log.warning(
                    "stop for stream %s (channel %s) not delivered after %d attempts: %s",
                    stream_id,
                    channel,
                    attempts,
                    reason,
                )
                return
            delay = self.retry_delays[attempt - 1]
            log.warning(
                "stop for stream %s (channel %s), attempt %d/%d: %s; retrying in %.1f s",
                stream_id,
                channel,
                attempt,
                attempts,
                reason,
                delay,
            )
            await asyncio.sleep(delay)

    # -- shutdown -----------------------------------------------------------------------

    async def close(self, timeout: float = 5.0) -> None:
        """Refuse new publishes, wait (bounded) for pending stops, close the HTTP client."""
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # A stop scheduled while we wait (a publisher ending during shutdown) counts too.
            pending: set[asyncio.Future[Any]] = {*self._stop_tasks, *self._starts}
            remaining = deadline - loop.time()
            if not pending or remaining <= 0:
                break
            await asyncio.wait(pending, timeout=remaining)
        leftovers = set(self._stop_tasks)
        if leftovers:
            log.warning("%d stop callback(s) not delivered: server shutting down", len(leftovers))
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # -- one HTTP attempt ---------------------------------------------------------------

    def _claims(
        self, event: str, channel: str, key: str, client_ip: str, stream_id: str | None = None
    ) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "sub": self._subject,
            "event": event,
            "channel": channel,
            "key": key,
            "client_ip": client_ip,
            "rtmp_host": self._host,
            "rtmp_port": self._port,
            "exp": int(time.time()) + TOKEN_LIFETIME_SECONDS,
        }
        if stream_id is not None:
            claims["stream_id"] = stream_id
        return claims

    def _token(self, claims: dict[str, Any]) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            return jwt.encode(claims, self._secret, algorithm="HS256")

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise _Failure("failed", "server shutting down")
        if self._session is None:
            # Created here, inside the running loop; force_close: see the module docstring.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(force_close=True),
            )
        return self._session

    async def _exchange(self, claims: dict[str, Any]) -> tuple[int, str | None]:
        """POST one event; return the status and the ``stream-id`` header, or raise
        ``_Failure``. Only the headers are awaited: the body is dropped unread."""
        session = self._client()
        headers = {"rtmp-event": self._token(claims)}
        try:
            async with asyncio.timeout(self._timeout):
                response = await session.post(self._url, headers=headers, allow_redirects=False)
                try:
                    return response.status, response.headers.get("stream-id")
                finally:
                    response.close()
        except TimeoutError:
            raise _Failure("timeout", f"callback timed out after {self._timeout} s") from None
        except aiohttp.ClientConnectorError as exc:
            raise _Failure("failed", f"callback unreachable: {_describe(exc)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _Failure("failed", f"callback failed: {_describe(exc)}") from None

    def _notify(self, event: str, outcome: str, seconds: float) -> None:
        for observer in list(self.observers):
            try:
                observer(event, outcome, seconds)
            except Exception:
                log.exception("callback observer %r failed", observer)
