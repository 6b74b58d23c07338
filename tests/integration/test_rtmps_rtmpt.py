"""RTMPS, RTMPT and RTMPTS with real clients: the same packets as over plain RTMP.

One server with every listener on (rtmp, rtmps, HTTP for rtmpt, HTTPS for rtmpts) and a
self-signed certificate carries two publishes at once, so each transport is exercised in
both directions without a server per case:

- channel `overtls`: Debian's ffmpeg publishes over rtmps://; readers started 1.5 s in:
  ffmpeg over rtmpt:// and rtmpts://, rtmpdump over rtmps:// and rtmpt://;
- channel `overhttp`: ffmpeg publishes over rtmpt://; ffmpeg reads over rtmp:// and rtmps://.

Each reader's packets must be a contiguous run of the source from a keyframe to its end (the
assertions of test_rtmp_publish_play.py). Meanwhile bad TLS clients hit the secure ports
(plain bytes and an HTTP request while the readers play; clients that stall before, inside or
after the TLS handshake): one log line each, no traceback, and the readers above are not disturbed.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..certs import write_self_signed
from .helpers import (
    FrameMd5,
    Proc,
    ProcGroup,
    Server,
    SourceMedia,
    Tools,
    complete_flv_prefix,
    framemd5,
    framemd5_argv,
    insecure_tls_context,
    iter_flv_tags,
    launch_server,
    parse_framemd5,
    publish_argv,
    rtmpdump_argv,
    video_tag_info,
)
from .test_rtmp_publish_play import assert_late_reader

GRACE_S = 1.0
LATE_START_S = 1.5
END_BUDGET_S = GRACE_S + 4.0  # publisher gone -> readers ended (the tunnel polls: +1 s)
GARBAGE_AFTER_S = 1.0  # after the readers started
STALL_CLOSE_BUDGET_S = 15.0  # the server drops a client that never finishes TLS/RTMP setup
ALL_LISTENERS = ("--ssl-port", "--http-port", "--https-port")

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class ReaderSpec:
    name: str
    tool: str  # "ffmpeg" or "rtmpdump"
    channel: str
    scheme: str


PUBLISHES = {"overtls": "rtmps", "overhttp": "rtmpt"}
KEY = "s3cret_key"
READERS = [
    ReaderSpec("ffmpeg-rtmpt", "ffmpeg", "overtls", "rtmpt"),
    ReaderSpec("ffmpeg-rtmpts", "ffmpeg", "overtls", "rtmpts"),
    ReaderSpec("rtmpdump-rtmps", "rtmpdump", "overtls", "rtmps"),
    ReaderSpec("rtmpdump-rtmpt", "rtmpdump", "overtls", "rtmpt"),
    ReaderSpec("ffmpeg-rtmp", "ffmpeg", "overhttp", "rtmp"),
    ReaderSpec("ffmpeg-rtmps", "ffmpeg", "overhttp", "rtmps"),
]


# --------------------------------------------------------------------------- bad clients


@dataclass
class BadClient:
    """A misbehaving connection to a secure port, and what the server did with it."""

    what: str
    prefix: str  # how the server's log names it: "[rtmps 127.0.0.1:PORT"
    sock: socket.socket
    opened: float = field(default_factory=time.monotonic)
    closed_after: float | None = None  # seconds until the server closed it

    def wait_closed(self, deadline: float) -> None:
        """Read (and discard) until the server closes the connection or `deadline`."""
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                if not self.sock.recv(65536):
                    break
            else:
                return
        except (TimeoutError, BlockingIOError):
            return
        except (OSError, ssl.SSLError):
            pass  # a reset or a TLS alert: closed too
        self.closed_after = time.monotonic() - self.opened

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _track(into: list[BadClient], what: str, scheme: str, sock: socket.socket) -> socket.socket:
    into.append(BadClient(what, f"[{scheme} 127.0.0.1:{sock.getsockname()[1]}", sock))
    return sock


def open_stalled_clients(server: Server, into: list[BadClient]) -> None:
    """Clients that stall on the rtmps port: before TLS, inside the ClientHello, and after a
    completed TLS handshake (no RTMP handshake). The server's setup timeouts end them."""
    rtmps = server.ports["--ssl-port"]
    _track(into, "silent TCP on rtmps", "rtmps", _connect(rtmps))
    partial = _track(into, "half a ClientHello on rtmps", "rtmps", _connect(rtmps))
    partial.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # record + hello headers
    raw = _track(into, "TLS then silence on rtmps", "rtmps", _connect(rtmps))
    into[-1].sock = insecure_tls_context().wrap_socket(raw)


def send_garbage(server: Server, into: list[BadClient]) -> None:
    """Plain bytes where a TLS ClientHello belongs, on the rtmps and https ports."""
    rtmps, https = server.ports["--ssl-port"], server.ports["--https-port"]
    for what, port, scheme, data in (
        ("HTTP request to rtmps", rtmps, "rtmps", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("binary garbage to rtmps", rtmps, "rtmps", bytes(range(256)) * 8),
        ("binary garbage to https", https, "https", bytes(range(255, -1, -1)) * 8),
    ):
        _track(into, what, scheme, _connect(port)).sendall(data)


# --------------------------------------------------------------------------- scenario


@dataclass
class Transports:
    group: ProcGroup
    server: Server
    source: SourceMedia
    publishers: dict[str, Proc]  # channel -> publisher
    readers: dict[str, Proc]  # ReaderSpec.name -> reader
    bad: list[BadClient]
    workdir: Path

    def diagnostics(self) -> str:
        return self.group.diagnostics()


@pytest.fixture(scope="module")
def transports(
    tools: Tools, h264_source: SourceMedia, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Transports]:
    workdir = tmp_path_factory.mktemp("transports")
    cert, key = write_self_signed(workdir)
    group = ProcGroup(workdir)
    bad: list[BadClient] = []
    try:
        server = launch_server(
            group,
            "--ssl-cert", str(cert), "--ssl-key", str(key),
            "--unpublish-grace-seconds", str(GRACE_S),
            listeners=ALL_LISTENERS,
        )  # fmt: skip
        open_stalled_clients(server, bad)
        publishers = {
            channel: group.start(
                f"publisher-{scheme}",
                publish_argv(tools.ffmpeg, h264_source.path, server.url(channel, KEY, scheme)),
            )
            for channel, scheme in PUBLISHES.items()
        }
        time.sleep(LATE_START_S)
        readers = {}
        for spec in READERS:
            url = server.url(spec.channel, KEY, spec.scheme)
            argv = framemd5_argv(tools.ffmpeg, url) if spec.tool == "ffmpeg" else rtmpdump_argv(url)
            readers[spec.name] = group.start(f"reader-{spec.name}", argv)
        time.sleep(GARBAGE_AFTER_S)  # readers are playing: garbage must not disturb them
        send_garbage(server, bad)
        for publisher in publishers.values():
            publisher.wait(30)
        for reader in readers.values():
            reader.wait(END_BUDGET_S + 10)
        for client in bad:
            client.wait_closed(client.opened + STALL_CLOSE_BUDGET_S)
        yield Transports(group, server, h264_source, publishers, readers, bad, workdir)
    finally:
        for client in bad:
            client.close()
        group.stop_all()


def reader_result(run: Transports, spec: ReaderSpec, ffmpeg: str) -> FrameMd5:
    """The reader's packets as framemd5 sees them (rtmpdump's FLV goes through ffmpeg)."""
    proc = run.readers[spec.name]
    if spec.tool == "ffmpeg":
        assert proc.returncode == 0, proc.diagnostics()
        return parse_framemd5(proc.stdout_text())
    data = complete_flv_prefix(proc.stdout_bytes())
    assert data, f"rtmpdump wrote no FLV\n{proc.diagnostics()}"
    first_video = next(
        (info for tag in iter_flv_tags(data) if tag.type == 9
         if (info := video_tag_info(tag.payload)) and info.coded_frame),
        None,
    )  # fmt: skip
    assert first_video is not None and first_video.keyframe, f"first coded video: {first_video}"
    flv = run.workdir / f"{spec.name}.flv"
    flv.write_bytes(data)
    return framemd5(flv, ffmpeg)


# --------------------------------------------------------------------------- tests


def test_ffmpeg_publishes_over_rtmps_and_rtmpt(transports: Transports) -> None:
    for channel, publisher in transports.publishers.items():
        assert publisher.returncode == 0, f"{channel}: {publisher.diagnostics()}"


@pytest.mark.parametrize("spec", READERS, ids=[f"{s.name}-of-{s.channel}" for s in READERS])
def test_reader_gets_contiguous_run_from_keyframe(
    transports: Transports, tools: Tools, spec: ReaderSpec
) -> None:
    """Published over one transport, read over another: the source's own packets, a
    contiguous run from a keyframe to the end, with the source's sequence headers."""
    result = reader_result(transports, spec, tools.ffmpeg)
    joined = (
        transports.readers[spec.name].start_time - transports.publishers[spec.channel].start_time
    )
    assert_late_reader(result, transports.source, joined, spec.name)


def test_readers_end_soon_after_the_publisher(transports: Transports) -> None:
    for spec in READERS:
        reader = transports.readers[spec.name]
        gone = transports.publishers[spec.channel].end_time
        assert gone is not None
        after = reader.duration_after(gone)
        assert after is not None and after <= END_BUDGET_S, (
            f"{spec.name} ended {after} s after its publisher (budget {END_BUDGET_S} s)"
        )


def test_sessions_are_logged_with_their_transport(transports: Transports) -> None:
    """The server saw each client on the transport it was given (no silent fallback)."""
    log = transports.server.stderr_text()
    expected = [
        r"\[rtmps 127\.0\.0\.1:\d+ overtls\] publishing",
        r"\[rtmpt 127\.0\.0\.1:\d+ overhttp\] publishing",
        r"\[rtmpts 127\.0\.0\.1:\d+ overtls\] playing",
        r"\[rtmpt 127\.0\.0\.1:\d+ overtls\] playing",
        r"\[rtmps 127\.0\.0\.1:\d+ overhttp\] playing",
        r"\[rtmp 127\.0\.0\.1:\d+ overhttp\] playing",
    ]
    missing = [p for p in expected if not re.search(p, log)]
    assert not missing, f"no log line matching {missing}\n{log}"


@pytest.mark.parametrize("port_flag", ["--ssl-port", "--https-port"])
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_12_and_13_are_offered(
    transports: Transports, port_flag: str, version: ssl.TLSVersion
) -> None:
    """Debian's rtmpdump (GnuTLS) may stop at TLS 1.2; modern clients use 1.3."""
    ctx = insecure_tls_context()
    ctx.minimum_version = ctx.maximum_version = version
    with _connect(transports.server.ports[port_flag]) as raw, ctx.wrap_socket(raw) as tls:
        assert tls.version() == version.name.replace("v1_", "v1.")


def test_bad_tls_clients_cost_one_line_each(transports: Transports) -> None:
    """Plain bytes on a TLS port, a client that stalls before or after the TLS handshake:
    each is closed by the server within its setup timeout with one `closed:` line (a client
    that got through TLS may also have its `connected` line), and nothing else is logged."""
    log = transports.server.stderr_text().splitlines()
    for client in transports.bad:
        assert client.closed_after is not None, (
            f"{client.what}: still open {STALL_CLOSE_BUDGET_S} s after it connected"
        )
        lines = [line for line in log if client.prefix + "]" in line or client.prefix + " " in line]
        closes = [line for line in lines if "closed:" in line]
        others = [line for line in lines if "closed:" not in line and "connected" not in line]
        assert len(closes) == 1 and not others and len(lines) <= 2, (
            f"{client.what}: expected one close line, got\n" + "\n".join(lines)
        )


def test_no_traceback_in_server_log(transports: Transports) -> None:
    log = transports.server.stderr_text()
    assert "Traceback" not in log, log
