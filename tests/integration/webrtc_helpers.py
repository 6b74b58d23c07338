"""What the WebRTC tests share: a live ffmpeg publisher, the aiortc peer, HTTP calls."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from .helpers import REPO_ROOT, Proc, ProcGroup, Server, Tools, launch_server

FPS = 30


def webrtc_server(procs: ProcGroup, *flags: str) -> Server:
    """A server with the HTTP service on (WHIP/WHEP); ICE on 127.0.0.1 only (the test
    launcher binds every listener there, and ICE follows BIND_ADDRESS)."""
    return launch_server(
        procs, "--unpublish-grace-seconds", "1", *flags, listeners=("--http-port",)
    )


def base_url(server: Server) -> str:
    return f"http://127.0.0.1:{server.ports['--http-port']}"


def live_publisher(
    procs: ProcGroup,
    tools: Tools,
    url: str,
    *,
    bframes: int = 0,
    size: str = "640x360",
    name: str = "publisher",
    seconds: int = 60,
) -> Proc:
    """ffmpeg encoding a test pattern and a tone live (-re) at 30 fps, 2 s GOP, to ``url``.

    Encoding live (not looping a file) keeps timestamps seamless however long a test runs.
    """
    argv = [
        tools.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={FPS}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-g", str(2 * FPS), "-keyint_min", str(2 * FPS), "-sc_threshold", "0",
        "-bf", str(bframes), "-b:v", "1500k",
        "-c:a", "aac", "-b:a", "96k", "-f", "flv", url,
    ]  # fmt: skip
    return procs.start(name, argv)


def peer_argv(mode: str, url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "tests.aiortc_peer", mode, url, *args]


def run_peer(mode: str, url: str, *args: str, timeout: float = 60.0) -> dict[str, Any]:
    """Run the aiortc peer in its own process and return what it printed."""
    result = subprocess.run(
        peer_argv(mode, url, *args),
        capture_output=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        check=False,
    )
    out = result.stdout.decode(errors="replace").strip().splitlines()
    if result.returncode != 0 or not out:
        raise AssertionError(
            f"aiortc peer failed ({result.returncode})\n{result.stderr.decode(errors='replace')}"
        )
    parsed: dict[str, Any] = json.loads(out[-1])
    return parsed


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def request(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> Reply:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return Reply(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read(), dict(exc.headers))


def api_channel(server: Server, channel: str) -> dict[str, Any]:
    reply = request(f"{base_url(server)}/api/v1/channels/{channel}")
    assert reply.status == 200, reply.text
    parsed: dict[str, Any] = json.loads(reply.body)
    return parsed


def api_sessions(server: Server) -> list[dict[str, Any]]:
    reply = request(f"{base_url(server)}/api/v1/sessions")
    assert reply.status == 200, reply.text
    sessions: list[dict[str, Any]] = json.loads(reply.body)["sessions"]
    return sessions
