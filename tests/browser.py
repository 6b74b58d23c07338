"""A minimal Chrome DevTools Protocol driver for tests: headless Chromium, loopback pages only.

    async with Browser.launch(tmp_path) as browser:
        page = await browser.open("http://127.0.0.1:8080/play.html?channel=x")
        stats = await page.wait_for("window.bridgeStats && window.bridgeStats.playing && window.bridgeStats")
        assert not page.errors

One websocket to the browser endpoint carries every page as a flattened session
(``Target.attachToTarget`` with ``flatten``), so commands and events of all pages share one
reader task. Every wait is bounded; the browser's whole process group is killed at teardown,
also when the test fails or is cancelled, and by a finalizer if teardown never ran.

CDP methods used (https://chromedevtools.github.io/devtools-protocol/): Target.createTarget,
Target.attachToTarget, Target.closeTarget, Page.enable/navigate/loadEventFired,
Runtime.enable/evaluate/consoleAPICalled/exceptionThrown, Log.enable/entryAdded, Browser.close.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import os
import re
import signal
import weakref
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

CHROMIUM = Path(os.environ.get("BRIDGE_CHROMIUM", "/usr/bin/chromium"))

# The flags Chromium needs on these machines (root, no GPU, closed network: without the
# background-networking flags it keeps trying to reach Google's hosts).
BASE_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
    "--remote-debugging-port=0",
)

LAUNCH_TIMEOUT = 30.0
COMMAND_TIMEOUT = 10.0
NAVIGATE_TIMEOUT = 15.0
CLOSE_TIMEOUT = 5.0
MAX_ENTRIES = 1000  # console entries kept per page
STDERR_TAIL = 64 * 1024
MAX_MESSAGE = 32 * 1024 * 1024

_DEVTOOLS_LINE = re.compile(rb"DevTools listening on (ws://\S+)")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


class BrowserError(Exception):
    """The browser failed: did not start, crashed, closed the connection, refused a command."""


class BrowserTimeout(BrowserError, TimeoutError):
    """A bounded wait ran out."""


class JavaScriptError(BrowserError):
    """An evaluated expression threw (or its promise rejected)."""


@dataclass(frozen=True)
class ConsoleEntry:
    """One thing the page reported: a console call, an uncaught exception or a log entry
    (network failures such as a 404 arrive as log entries)."""

    source: str  # "console", "exception" or the Log domain's source ("network", ...)
    level: str  # "error", "warning", "info", "log", "debug", ...
    text: str
    url: str = ""

    @property
    def is_error(self) -> bool:
        return self.source == "exception" or self.level in ("error", "assert")

    def __str__(self) -> str:
        where = f" ({self.url})" if self.url else ""
        return f"[{self.source}:{self.level}] {self.text}{where}"


def chromium_available(executable: Path = CHROMIUM) -> bool:
    """Whether the browser is installed (tests skip otherwise)."""
    return executable.is_file() and os.access(executable, os.X_OK)


def check_loopback(url: str) -> None:
    """Refuse any URL but about:blank and http(s) on a loopback host."""
    if url == "about:blank":
        return
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"only loopback http(s) URLs may be opened, not {url!r}")
    if host in _LOOPBACK_NAMES:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"only loopback http(s) URLs may be opened, not {url!r}")


def _kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (Chromium's renderers and helpers with it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _remote_value(result: dict[str, Any]) -> Any:
    """A CDP RemoteObject, returned by value, as a Python value."""
    if "unserializableValue" in result:
        text = result["unserializableValue"]
        specials = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf, "-0": -0.0}
        if text in specials:
            return specials[text]
        if text.endswith("n"):  # BigInt
            with contextlib.suppress(ValueError):
                return int(text[:-1])
        return text
    return result.get("value")


def _describe(obj: dict[str, Any]) -> str:
    """A console argument as text: its value if it has one, else Chromium's description."""
    if "value" in obj:
        value = obj["value"]
        return value if isinstance(value, str) else json.dumps(value)
    preview = obj.get("preview")
    if isinstance(preview, dict) and preview.get("type") == "object":
        fields = ", ".join(
            f"{p.get('name')}: {p.get('value', p.get('type'))}"
            for p in preview.get("properties", [])
        )
        more = ", …" if preview.get("overflow") else ""
        brackets = "[]" if preview.get("subtype") == "array" else "{}"
        return f"{brackets[0]}{fields}{more}{brackets[1]}"
    return str(obj.get("unserializableValue") or obj.get("description") or obj.get("type", ""))


class Page:
    """One tab, attached as a flattened CDP session."""

    def __init__(self, browser: Browser, target_id: str, session_id: str) -> None:
        self._browser = browser
        self.target_id = target_id
        self.session_id = session_id
        self.console: deque[ConsoleEntry] = deque(maxlen=MAX_ENTRIES)
        self.closed = False
        self._load: asyncio.Future[None] | None = None

    @property
    def errors(self) -> list[ConsoleEntry]:
        """Console errors, uncaught exceptions and error-level log entries, oldest first."""
        return [entry for entry in self.console if entry.is_error]

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float = COMMAND_TIMEOUT
    ) -> dict[str, Any]:
        """A raw CDP command on this page's session."""
        if self.closed:
            raise BrowserError(f"page is closed (sending {method})")
        return await self._browser.send(method, params, session_id=self.session_id, timeout=timeout)

    async def navigate(self, url: str, *, timeout: float = NAVIGATE_TIMEOUT) -> None:
        """Go to ``url`` and wait for its load event, all within ``timeout``."""
        check_loopback(url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._load = loop.create_future()
        try:
            # Page.navigate itself answers only once the response headers arrived.
            reply = await self.send("Page.navigate", {"url": url}, timeout=timeout)
            if reply.get("errorText"):
                raise BrowserError(f"navigation to {url} failed: {reply['errorText']}")
            await asyncio.wait_for(self._load, max(0.0, deadline - loop.time()))
        except (BrowserTimeout, TimeoutError):
            with contextlib.suppress(BrowserError):
                await self.send("Page.stopLoading", timeout=2.0)
            raise BrowserTimeout(f"{url} did not finish loading within {timeout} s") from None
        finally:
            self._load = None

    async def evaluate(
        self, expression: str, *, timeout: float = COMMAND_TIMEOUT, await_promise: bool = True
    ) -> Any:
        """Evaluate a JS expression in the page and return its value as JSON-decoded Python
        (undefined is None). Promises are awaited. Raises JavaScriptError if it throws."""
        params = {
            "expression": expression,
            "returnByValue": True,
            "awaitPromise": await_promise,
            "userGesture": True,
            # V8 stops a synchronous busy loop itself, a little before our own wait gives up,
            # so the page stays usable; a promise that never settles is only abandoned.
            "timeout": max(1, int(timeout * 800)),
        }
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            reply = await self.send("Runtime.evaluate", params, timeout=timeout)
        except BrowserError as exc:
            if isinstance(exc, BrowserTimeout):
                raise BrowserTimeout(
                    f"{expression[:200]!r} gave no result within {timeout} s"
                ) from None
            # V8's own timeout surfaces as a bare "Internal error".
            if loop.time() - started < params["timeout"] / 1000:
                raise
            raise BrowserTimeout(f"{expression[:200]!r} ran longer than {timeout} s") from exc
        details = reply.get("exceptionDetails")
        if details is not None:
            exception = details.get("exception") or {}
            text = exception.get("description") or details.get("text") or "exception"
            raise JavaScriptError(f"{expression[:200]!r} threw: {text}")
        return _remote_value(reply.get("result", {}))

    async def wait_for(
        self, expression: str, *, timeout: float = NAVIGATE_TIMEOUT, interval: float = 0.1
    ) -> Any:
        """Evaluate ``expression`` every ``interval`` until it is truthy; return that value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        value: Any = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise BrowserTimeout(
                    f"{expression[:200]!r} still falsy after {timeout} s (last value {value!r})"
                )
            value = await self.evaluate(
                expression, timeout=max(0.5, min(remaining, COMMAND_TIMEOUT))
            )
            if value:
                return value
            await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))

    async def close(self) -> None:
        """Close the tab (idempotent)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(BrowserError):
            await self._browser.send(
                "Target.closeTarget", {"targetId": self.target_id}, timeout=CLOSE_TIMEOUT
            )
        self._browser._pages.pop(self.session_id, None)

    # ------------------------------------------------------------------ events

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired":
            if self._load is not None and not self._load.done():
                self._load.set_result(None)
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(_describe(arg) for arg in params.get("args", []))
            frames = (params.get("stackTrace") or {}).get("callFrames") or [{}]
            self.console.append(
                ConsoleEntry(
                    "console", str(params.get("type", "log")), text, frames[0].get("url", "")
                )
            )
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exception = details.get("exception") or {}
            text = exception.get("description") or details.get("text") or "exception"
            self.console.append(ConsoleEntry("exception", "error", text, details.get("url", "")))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            self.console.append(
                ConsoleEntry(
                    str(entry.get("source", "other")),
                    str(entry.get("level", "info")),
                    str(entry.get("text", "")),
                    str(entry.get("url", "")),
                )
            )
        elif method in ("Inspector.targetCrashed", "Inspector.detached"):
            self.console.append(ConsoleEntry("exception", "error", f"page {method}"))
            self._gone(BrowserError(f"page {method}"))

    def _gone(self, error: BrowserError) -> None:
        self.closed = True
        if self._load is not None and not self._load.done():
            self._load.set_exception(error)


class Browser:
    """A headless Chromium driven over CDP. Create with ``Browser.launch``."""

    def __init__(self, profile: Path, executable: Path, args: Sequence[str]) -> None:
        self.profile = profile
        self.executable = executable
        self.args = tuple(args)
        self.endpoint = ""
        self._process: asyncio.subprocess.Process | None = None
        self._stderr = bytearray()
        self._stderr_task: asyncio.Task[None] | None = None
        self._endpoint_found: asyncio.Future[str] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}
        self._next_id = 0
        self._finalizer: weakref.finalize | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(
        cls,
        tmp_path: Path,
        *,
        executable: Path = CHROMIUM,
        timeout: float = LAUNCH_TIMEOUT,
        args: Sequence[str] = (),
    ) -> AsyncIterator[Browser]:
        """Start Chromium with a new empty profile under ``tmp_path``; always stopped on exit."""
        profile = Path(tmp_path) / "chromium-profile"
        index = 0
        while profile.exists():  # several browsers in one test get one profile each
            index += 1
            profile = Path(tmp_path) / f"chromium-profile-{index}"
        profile.mkdir(parents=True)
        browser = cls(profile, Path(executable), args)
        try:
            await browser._start(timeout)
            yield browser
        finally:
            await browser.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def pages(self) -> list[Page]:
        return list(self._pages.values())

    def diagnostics(self) -> str:
        """The tail of Chromium's stderr and every page's console, for failure reports."""
        lines = [f"chromium pid {self.pid}, endpoint {self.endpoint or '-'}"]
        for page in self._pages.values():
            lines.append(f"-- console of page {page.target_id}")
            lines.extend(str(entry) for entry in page.console)
        lines.append("-- chromium stderr (tail)")
        lines.append(self._stderr.decode(errors="replace"))
        return "\n".join(lines)

    # ------------------------------------------------------------------ start and stop

    async def _start(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._endpoint_found = loop.create_future()
        command = [
            str(self.executable),
            *BASE_FLAGS,
            f"--user-data-dir={self.profile}",
            *self.args,
            "about:blank",
        ]
        try:
            self._process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, killed as one
            )
        except OSError as exc:
            raise BrowserError(f"cannot start {self.executable}: {exc}") from exc
        self._finalizer = weakref.finalize(self, _kill_group, self._process.pid)
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        exited = asyncio.create_task(self._process.wait())
        try:
            done, _ = await asyncio.wait(
                {self._endpoint_found, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            exited.cancel()
        if self._endpoint_found.done() and not self._endpoint_found.cancelled():
            self.endpoint = self._endpoint_found.result()
        elif exited in done:
            raise BrowserError(
                f"{self.executable} exited with code {self._process.returncode} before DevTools "
                f"listened: {self._stderr[-2000:].decode(errors='replace')}"
            )
        else:
            raise BrowserTimeout(
                f"{self.executable} printed no DevTools endpoint within {timeout} s"
            )
        check_loopback(self.endpoint.replace("ws://", "http://", 1))
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=timeout)
        )
        try:
            self._ws = await asyncio.wait_for(
                self._http.ws_connect(self.endpoint, max_msg_size=MAX_MESSAGE, autoping=True),
                timeout,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BrowserError(f"cannot connect to {self.endpoint}: {exc!r}") from exc
        self._reader = asyncio.create_task(self._read())

    async def _drain_stderr(self) -> None:
        """Keep reading stderr (a full pipe would stall Chromium); find the endpoint line."""
        assert self._process is not None and self._process.stderr is not None
        stream = self._process.stderr
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                return
            self._stderr += chunk
            found = self._endpoint_found
            if found is not None and not found.done():
                match = _DEVTOOLS_LINE.search(self._stderr)
                if match:
                    found.set_result(match.group(1).decode("ascii", errors="replace"))
            if len(self._stderr) > STDERR_TAIL:
                del self._stderr[: len(self._stderr) - STDERR_TAIL]

    async def close(self) -> None:
        """Close the browser and kill its process group. Safe to call more than once and after
        a failed start; bounded by CLOSE_TIMEOUT."""
        process = self._process
        if self._ws is not None and not self._ws.closed and process is not None:
            with contextlib.suppress(BrowserError, aiohttp.ClientError, OSError):
                await self.send("Browser.close", timeout=CLOSE_TIMEOUT / 2)
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), CLOSE_TIMEOUT / 2)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._http is not None:
            await self._http.close()
        if process is not None:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), CLOSE_TIMEOUT / 2)
                except TimeoutError:
                    pass
            # Helpers (zygote, renderers, GPU/utility processes) may outlive the leader.
            _kill_group(process.pid)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), CLOSE_TIMEOUT / 2)
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stderr_task
        if self._finalizer is not None:
            self._finalizer.detach()
        self._fail_all(BrowserError("browser closed"))
        self._ws = None
        self._http = None
        self._reader = None

    # ------------------------------------------------------------------ pages

    async def open(self, url: str = "about:blank", *, timeout: float = NAVIGATE_TIMEOUT) -> Page:
        """A new tab with console capture on, navigated to ``url`` (loaded when this returns)."""
        check_loopback(url)
        created = await self.send("Target.createTarget", {"url": "about:blank"})
        target_id = created["targetId"]
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target_id, "flatten": True}
        )
        page = Page(self, target_id, attached["sessionId"])
        self._pages[page.session_id] = page
        try:
            await page.send("Page.enable")
            await page.send("Runtime.enable")
            await page.send("Log.enable")
            if url != "about:blank":
                await page.navigate(url, timeout=timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await page.close()
            raise
        return page

    # ------------------------------------------------------------------ protocol

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> dict[str, Any]:
        """One CDP command; its result, or BrowserError with the browser's message."""
        ws = self._ws
        if ws is None or ws.closed:
            raise BrowserError(f"not connected to the browser (sending {method})")
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        try:
            await ws.send_str(json.dumps(message))
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BrowserTimeout(f"{method} got no reply within {timeout} s") from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise BrowserError(f"{method}: connection to the browser failed: {exc!r}") from exc
        finally:
            self._pending.pop(message["id"], None)

    async def _read(self) -> None:
        ws = self._ws
        assert ws is not None
        error = BrowserError("the browser closed the DevTools connection")
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(message.data)
                except ValueError:
                    continue
                self._dispatch(data)
        except Exception as exc:  # the reader must end in _fail_all, whatever happened
            error = BrowserError(f"DevTools connection failed: {exc!r}")
        finally:
            self._fail_all(error)

    def _dispatch(self, data: dict[str, Any]) -> None:
        if "id" in data:
            future = self._pending.get(data["id"])
            if future is None or future.done():
                return
            if "error" in data:
                error = data["error"]
                future.set_exception(
                    BrowserError(f"CDP error {error.get('code')}: {error.get('message')}")
                )
            else:
                future.set_result(data.get("result", {}))
            return
        method = data.get("method", "")
        params = data.get("params", {})
        if method == "Target.detachedFromTarget":
            page = self._pages.pop(params.get("sessionId", ""), None)
            if page is not None:
                page._gone(BrowserError("page detached"))
            return
        page = self._pages.get(data.get("sessionId", ""))
        if page is not None:
            page._on_event(method, params)

    def _fail_all(self, error: BrowserError) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        for page in self._pages.values():
            page._gone(error)
