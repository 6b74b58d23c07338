"""The CDP test driver (tests/browser.py) against small aiohttp pages, and the web player
(web/play.html) loading in headless Chromium from a static server, offline."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from tests.browser import (
    CHROMIUM,
    Browser,
    BrowserError,
    BrowserTimeout,
    JavaScriptError,
    check_loopback,
    chromium_available,
)

WEB = Path(__file__).resolve().parents[2] / "bridge" / "web"
HLS_JS_VERSION = "1.7.4"

needs_chromium = pytest.mark.skipif(
    not chromium_available(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run's apt line)",
)

Serve = Callable[[web.Application], Awaitable[str]]


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an aiohttp app on 127.0.0.1 (a free port); returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    async with Browser.launch(tmp_path) as launched:
        yield launched


def html(body: str) -> web.Response:
    # The data: icon keeps Chromium from asking for /favicon.ico (a 404 it would log).
    page = f'<!doctype html><html><head><link rel="icon" href="data:,"></head><body>{body}</body></html>'
    return web.Response(text=page, content_type="text/html")


def pages(routes: dict[str, str]) -> web.Application:
    app = web.Application()
    for path, body in routes.items():

        async def handler(request: web.Request, body: str = body) -> web.Response:
            return html(body)

        app.router.add_get(path, handler)
    return app


async def not_found(request: web.Request) -> web.Response:
    return web.Response(status=404)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB / "index.html")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are still running (zombies don't count)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


async def assert_group_gone(pgid: int) -> None:
    for _ in range(50):
        if not live_members(pgid):
            return
        await asyncio.sleep(0.1)
    members = live_members(pgid)
    for pid in members:  # don't leave them behind for the next test
        os.kill(pid, signal.SIGKILL)
    pytest.fail(f"processes of group {pgid} still running after teardown: {members}")


# ---------------------------------------------------------------------------- no browser needed


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("about:blank", True),
        ("http://127.0.0.1:8080/play.html", True),
        ("https://127.0.0.2/", True),
        ("http://[::1]:9/x", True),
        ("http://localhost:1/", True),
        ("http://example.com/", False),
        ("http://10.0.0.1/", False),
        ("http://127.0.0.1.nip.io/", False),
        ("http://[::ffff:8.8.8.8]/", False),
        ("file:///etc/passwd", False),
        ("javascript:alert(1)", False),
        ("data:text/html,hi", False),
        ("ws://127.0.0.1/", False),
        ("http:///nohost", False),
    ],
)
def test_only_loopback_urls_are_opened(url: str, allowed: bool) -> None:
    if allowed:
        check_loopback(url)
    else:
        with pytest.raises(ValueError):
            check_loopback(url)


def fake_browser(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "fake-chromium"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return path


async def test_launch_times_out_and_kills_a_silent_browser(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    # A child in the same group, as Chromium's helpers are: teardown must take it too.
    executable = fake_browser(tmp_path, f"sleep 60 & echo $$ > {pid_file}; wait")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(BrowserTimeout, match="no DevTools endpoint"):
        async with Browser.launch(tmp_path, executable=executable, timeout=1.0):
            pytest.fail("launch should not succeed")
    assert loop.time() - started < 8
    await assert_group_gone(int(pid_file.read_text()))


async def test_launch_reports_a_browser_that_exits(tmp_path: Path) -> None:
    executable = fake_browser(tmp_path, "echo 'cannot open display' >&2; exit 3")
    with pytest.raises(BrowserError, match=r"exited with code 3.*cannot open display"):
        async with Browser.launch(tmp_path, executable=executable, timeout=10.0):
            pytest.fail("launch should not succeed")


async def test_launch_reports_a_missing_executable(tmp_path: Path) -> None:
    with pytest.raises(BrowserError, match="cannot start"):
        async with Browser.launch(tmp_path, executable=tmp_path / "nothing", timeout=5.0):
            pytest.fail("launch should not succeed")


# ---------------------------------------------------------------------------- the driver


@needs_chromium
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 1", 2),
        ("'text'", "text"),
        ("({a: [1, null, true], b: {c: 'd'}})", {"a": [1, None, True], "b": {"c": "d"}}),
        ("undefined", None),
        ("null", None),
        ("Promise.resolve(7)", 7),
        ("new Promise(resolve => setTimeout(() => resolve('late'), 50))", "late"),
        ("2n ** 70n", 2**70),
        ("Infinity", math.inf),
        ("document.title", "driver test"),
    ],
)
async def test_evaluate_returns_json_values(
    browser: Browser, serve: Serve, expression: str, expected: object
) -> None:
    base = await serve(pages({"/": "<script>document.title = 'driver test'</script>"}))
    page = await browser.open(base + "/")
    assert await page.evaluate(expression) == expected


@needs_chromium
async def test_evaluate_nan(browser: Browser) -> None:
    page = await browser.open()
    assert math.isnan(await page.evaluate("NaN"))


@needs_chromium
async def test_console_errors_and_exceptions_are_collected(browser: Browser, serve: Serve) -> None:
    body = """<script>
      console.log('just saying');
      console.error('bad thing', 42, {code: 7});
      setTimeout(() => { throw new Error('thrown later'); }, 0);
    </script>"""
    base = await serve(pages({"/": body}))
    page = await browser.open(base + "/")
    await page.wait_for("new Promise(r => setTimeout(() => r(true), 100))")
    texts = [entry.text for entry in page.errors]
    assert any("bad thing 42 {code: 7}" in text for text in texts), texts
    assert any("thrown later" in text for text in texts), texts
    assert "just saying" in [entry.text for entry in page.console]
    assert "just saying" not in texts
    assert {entry.source for entry in page.errors} == {"console", "exception"}


@needs_chromium
async def test_failed_requests_are_logged_as_errors(browser: Browser, serve: Serve) -> None:
    base = await serve(pages({"/": "<img src='/missing.png'>"}))
    page = await browser.open(base + "/")
    await page.wait_for("document.readyState === 'complete'")
    await page.wait_for("true")  # give the log event a turn to arrive
    network = [entry for entry in page.errors if entry.source == "network"]
    assert network and "404" in network[0].text and network[0].url.endswith("/missing.png")


@needs_chromium
async def test_a_page_that_throws_while_loading(browser: Browser, serve: Serve) -> None:
    base = await serve(pages({"/": "<script>null.property;</script><p id=after>after</p>"}))
    page = await browser.open(base + "/")
    assert await page.evaluate("document.getElementById('after').textContent") == "after"
    assert [entry.source for entry in page.errors] == ["exception"]
    assert "TypeError" in page.errors[0].text


@needs_chromium
@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("null.property", "TypeError"),
        ("throw new RangeError('out of range')", "out of range"),
        ("Promise.reject(new Error('rejected'))", "rejected"),
        ("syntax error here", "SyntaxError"),
    ],
)
async def test_evaluate_raises_what_the_page_throws(
    browser: Browser, expression: str, message: str
) -> None:
    page = await browser.open()
    with pytest.raises(JavaScriptError, match=message):
        await page.evaluate(expression)
    assert await page.evaluate("'still usable'") == "still usable"


@needs_chromium
@pytest.mark.parametrize(
    "expression", ["new Promise(() => {})", "(() => { for (;;) {} })()"], ids=["pending", "busy"]
)
async def test_evaluate_is_bounded(browser: Browser, expression: str) -> None:
    page = await browser.open()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(BrowserTimeout):
        await page.evaluate(expression, timeout=1.0)
    assert loop.time() - started < 3
    assert await page.evaluate("1 + 1") == 2


@needs_chromium
async def test_wait_for(browser: Browser) -> None:
    page = await browser.open()
    await page.evaluate("setTimeout(() => { window.ready = {n: 3}; }, 300)")
    assert await page.wait_for("window.ready", timeout=5) == {"n": 3}
    with pytest.raises(BrowserTimeout, match="still falsy"):
        await page.wait_for("window.never", timeout=0.5)


@needs_chromium
async def test_navigation_is_bounded(browser: Browser, serve: Serve) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return html("too late")

    app = web.Application()
    app.router.add_get("/slow", slow)
    base = await serve(app)
    with pytest.raises(BrowserTimeout, match="did not finish loading"):
        await browser.open(base + "/slow", timeout=1.0)
    page = await browser.open()  # the browser is still fine
    assert await page.evaluate("1") == 1


@needs_chromium
async def test_navigation_error_is_raised(browser: Browser, serve: Serve) -> None:
    base = await serve(web.Application())
    await browser.open(base + "/")  # a 404 page still loads
    with pytest.raises(BrowserError, match="ERR_CONNECTION_REFUSED"):
        await browser.open(f"http://127.0.0.1:{free_port()}/")


@needs_chromium
async def test_open_refuses_non_loopback(browser: Browser) -> None:
    with pytest.raises(ValueError):
        await browser.open("http://example.com/")
    page = await browser.open()
    with pytest.raises(ValueError):
        await page.navigate("file:///etc/passwd")


@needs_chromium
async def test_teardown_kills_the_browser_also_on_failure(tmp_path: Path, serve: Serve) -> None:
    base = await serve(pages({"/": "<p>hi</p>"}))
    with pytest.raises(RuntimeError, match="test failed"):
        async with Browser.launch(tmp_path) as launched:
            pid = launched.pid
            assert pid is not None
            await launched.open(base + "/")
            assert live_members(pid)  # browser, renderer, helpers
            raise RuntimeError("test failed")
    await assert_group_gone(pid)


@needs_chromium
async def test_a_crashed_browser_fails_pending_commands(tmp_path: Path) -> None:
    async with Browser.launch(tmp_path) as launched:
        page = await launched.open()
        pending = asyncio.create_task(page.evaluate("new Promise(() => {})", timeout=20))
        await asyncio.sleep(0.2)
        assert launched.pid is not None
        os.killpg(launched.pid, signal.SIGKILL)
        with pytest.raises(BrowserError):
            await asyncio.wait_for(pending, 10)
        with pytest.raises(BrowserError):
            await page.evaluate("1")


# ---------------------------------------------------------------------------- web/play.html


def web_app(hls_dir: Path | None = None) -> tuple[web.Application, list[str]]:
    """web/ at /, and /hls/ from ``hls_dir`` (or 404 for everything); records request paths."""
    requested: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        requested.append(request.path)
        return await handler(request)

    app = web.Application(middlewares=[record])
    if hls_dir is not None:
        app.router.add_static("/hls/", hls_dir)
    else:
        app.router.add_get("/hls/{tail:.*}", not_found)
    app.router.add_get("/", index)
    app.router.add_static("/", WEB)
    return app, requested


@needs_chromium
async def test_play_page_shows_an_error_for_a_missing_playlist(
    browser: Browser, serve: Serve
) -> None:
    app, requested = web_app()
    base = await serve(app)
    page = await browser.open(base + "/play.html?channel=nobody")
    assert await page.evaluate("typeof window.Hls") == "function"
    assert await page.evaluate("Hls.version") == HLS_JS_VERSION
    assert await page.evaluate("Hls.isSupported()") is True
    errors = await page.wait_for("window.bridgeStats.errors.length && window.bridgeStats.errors")
    assert errors[0]["fatal"] and errors[0]["details"] == "manifestLoadError", errors
    assert "/hls/nobody/index.m3u8" in errors[0]["message"]
    stats = await page.evaluate("window.bridgeStats")
    assert stats["playing"] is False and stats["latency"] is None and stats["mode"] == "hls.js"
    shown = await page.evaluate("document.getElementById('errors').textContent")
    assert "manifestLoadError" in shown
    # The page itself did not break: the only errors are the playlist's 404s.
    assert [e for e in page.errors if e.source != "network"] == [], page.errors
    assert f"/vendor/hls.js-{HLS_JS_VERSION}/hls.min.js" in requested
    assert "/hls/nobody/index.m3u8" in requested


@needs_chromium
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "no channel"),
        ("?channel=../../etc", "letters, digits"),
        ("?channel=" + "a" * 129, "letters, digits"),
        ("?src=javascript:alert(1)", "http(s)"),
    ],
)
async def test_play_page_refuses_bad_parameters(
    browser: Browser, serve: Serve, query: str, message: str
) -> None:
    app, requested = web_app()
    base = await serve(app)
    page = await browser.open(base + "/play.html" + query)
    errors = await page.evaluate("window.bridgeStats.errors")
    assert len(errors) == 1 and message in errors[0]["message"], errors
    assert message in await page.evaluate("document.getElementById('status').textContent")
    assert not [path for path in requested if path.startswith("/hls/")]
    assert page.errors == []


@needs_chromium
async def test_index_page_links_to_the_player(browser: Browser, serve: Serve) -> None:
    app, _ = web_app()
    base = await serve(app)
    page = await browser.open(base + "/")
    note = await page.wait_for(
        "document.getElementById('channels-note').textContent.includes('not available')"
        " && document.getElementById('channels-note').textContent"
    )
    assert "HTTP 404" in note
    assert (
        await page.evaluate("document.querySelector('form').getAttribute('action')") == "play.html"
    )
    assert await page.evaluate("[...document.links].some(a => a.pathname === '/play.html')")


def ffmpeg_executable() -> str | None:
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture
def ffmpeg() -> str:
    found = ffmpeg_executable()
    if found is None:
        pytest.skip("no ffmpeg to make a live playlist")
    return found


@contextlib.asynccontextmanager
async def live_hls(ffmpeg: str, channel: Path, seconds: float) -> AsyncIterator[subprocess.Popen]:
    """ffmpeg writing a live HLS channel (1 s segments, PROGRAM-DATE-TIME) in real time for
    ``seconds``, then EXT-X-ENDLIST; yields once two segments are listed; killed at exit."""
    channel.mkdir(parents=True, exist_ok=True)
    for old in channel.iterdir():
        old.unlink()
    playlist = channel / "index.m3u8"
    command = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
        "-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
        "-hls_flags", "delete_segments+program_date_time",
        str(playlist),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            if playlist.exists() and playlist.read_text().count("#EXTINF") >= 2:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("ffmpeg wrote no playlist")
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@needs_chromium
@pytest.mark.timeout(90)
async def test_play_page_plays_a_live_playlist(
    browser: Browser, serve: Serve, tmp_path: Path, ffmpeg: str
) -> None:
    """hls.js from the vendored file plays H.264/AAC in this Chromium, offline: currentTime
    advances, no errors, and the latency figure is a number (PROGRAM-DATE-TIME based)."""
    async with live_hls(ffmpeg, tmp_path / "hls" / "live", 60):
        app, requested = web_app(tmp_path / "hls")
        base = await serve(app)
        page = await browser.open(base + "/play.html?channel=live&player=hls")
        first = await page.wait_for(
            "window.bridgeStats.playing && window.bridgeStats.currentTime > 0.5 && window.bridgeStats",
            timeout=20,
        )
        later = await page.wait_for(
            f"window.bridgeStats.currentTime > {first['currentTime'] + 1.5} && window.bridgeStats",
            timeout=10,
        )
        assert later["errors"] == [], later["errors"]
        assert later["mode"] == "hls.js" and later["playing"] is True
        assert later["latencySource"] == "pdt"
        assert 0 < later["latency"] < 15, later
        assert 0 < later["edgeLatency"] < 15, later
        shown = await page.evaluate("document.getElementById('latency').textContent")
        assert shown.endswith(" s") and float(shown[:-2]) == pytest.approx(later["latency"], abs=1)
        assert page.errors == []
        assert any(path.endswith(".ts") for path in requested)


@needs_chromium
@pytest.mark.timeout(90)
async def test_play_page_waits_for_an_ended_stream_to_return(
    browser: Browser, serve: Serve, tmp_path: Path, ffmpeg: str
) -> None:
    """EXT-X-ENDLIST ends playback without replaying the window; when the channel is live
    again the page plays it, with no errors on the way."""
    channel = tmp_path / "hls" / "back"
    channel.mkdir(parents=True)
    app, _ = web_app(tmp_path / "hls")
    base = await serve(app)
    async with live_hls(ffmpeg, channel, 4) as first_publish:
        page = await browser.open(base + "/play.html?channel=back&player=hls")
        await page.wait_for("window.bridgeStats.playing", timeout=20)
        await asyncio.to_thread(first_publish.wait, 20)
    assert "#EXT-X-ENDLIST" in (channel / "index.m3u8").read_text()
    await page.wait_for("window.bridgeStats.ended", timeout=20)
    status = await page.evaluate("document.getElementById('status').textContent")
    assert "waiting for it to come back" in status
    await asyncio.sleep(2.5)  # at least one poll of the ended playlist: no replay
    stats = await page.evaluate("window.bridgeStats")
    assert stats["ended"] is True and stats["playing"] is False
    async with live_hls(ffmpeg, channel, 60):
        back = await page.wait_for(
            "!window.bridgeStats.ended && window.bridgeStats.playing && window.bridgeStats",
            timeout=20,
        )
    assert back["errors"] == [] and back["restarts"] == 0, back
    assert page.errors == []
