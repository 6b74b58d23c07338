"""While a real reader (rtmpdump) plays a live ffmpeg publish, a battery of malformed and
stalled sessions hits the server. Each gets a refusal or a close; the reader is never
interrupted for more than 500 ms; the server logs no traceback."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest

from bridge.rtmp import amf0
from bridge.rtmp.chunk import chunk_message
from bridge.rtmp.handshake import ClientHandshake

from .helpers import ProcGroup, Server, SourceMedia, Tools, publish_argv, rtmpdump_argv, wait_until

pytestmark = pytest.mark.timeout(120)


class RawClient:
    """A hand-driven RTMP client on a plain socket, for sending exactly the bytes we want."""

    def __init__(self, port: int, *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5.0)
        self.sock.connect(("127.0.0.1", port))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def handshake(self) -> None:
        hs = ClientHandshake()
        self.send(hs.initial_data())
        while not hs.done:
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("server closed during the handshake")
            hs.receive_data(data)
            out = hs.data_to_send()
            if out:
                self.send(out)

    def message(self, type_id: int, payload: bytes, *, csid: int = 3, msid: int = 0) -> None:
        self.send(chunk_message(csid, type_id, msid, 0, payload, 128))

    def command(self, *values: object, msid: int = 0) -> None:
        self.message(20, amf0.encode(*values), msid=msid)

    def connect(self, app: str) -> None:
        self.handshake()
        self.command("connect", 1.0, {"app": app, "tcUrl": f"rtmp://127.0.0.1/{app}"})

    def closed_within(self, timeout: float) -> bool:
        """Read (and discard) until the server closes the connection or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except OSError:
                return True
        return False

    def close(self) -> None:
        self.sock.close()


def _header(fmt: int, csid: int, ts: int, length: int, type_id: int, msid: int) -> bytes:
    return (
        bytes([(fmt << 6) | csid])
        + ts.to_bytes(3, "big")
        + length.to_bytes(3, "big")
        + bytes([type_id])
        + struct.pack("<I", msid)
    )


def http_request(c: RawClient) -> None:
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def rtmpe(c: RawClient) -> None:
    c.send(b"\x06" + os.urandom(1536))


def bad_chunk_header(c: RawClient) -> None:
    c.handshake()
    c.send(b"\x44" + b"\x00" * 7)  # type-1 header on a chunk stream never started


def chunk_size_zero(c: RawClient) -> None:
    c.handshake()
    c.message(1, struct.pack(">I", 0), csid=2)


def chunk_size_top_bit(c: RawClient) -> None:
    c.handshake()
    c.message(1, struct.pack(">I", 0x80000000), csid=2)


def huge_message_length(c: RawClient) -> None:
    c.handshake()
    c.send(_header(0, 3, 0, 0xFFFFFF, 20, 0))


def half_sent_on_many_streams(c: RawClient) -> None:
    c.handshake()
    for csid in range(4, 63):
        c.send(_header(0, csid, 0, 4_000_000, 9, 1) + b"\0" * 128)


def amf_nested_deep(c: RawClient) -> None:
    c.handshake()
    payload = amf0.encode("connect", 1.0) + b"\x03\x00\x01a" * 50_000
    c.message(20, payload)


def lying_string_length(c: RawClient) -> None:
    c.handshake()
    c.message(20, b"\x02\xff\xffconnect")


def publish_before_connect(c: RawClient) -> None:
    c.handshake()
    c.command("publish", 5.0, None, "key", "live", msid=1)


def invalid_channel(c: RawClient) -> None:
    c.connect("bad.channel")
    c.command("createStream", 2.0, None)
    c.command("play", 3.0, None, "key", msid=1)


def wrong_key(c: RawClient) -> None:
    c.connect("chan")
    c.command("createStream", 2.0, None)
    c.command("play", 3.0, None, "not-the-key", msid=1)


def second_publisher(c: RawClient) -> None:
    c.connect("chan")
    c.command("createStream", 2.0, None)
    c.command("publish", 3.0, None, "key", "live", msid=1)


# Each of these must end with the server closing the connection promptly.
CLOSED_AT_ONCE: list[Callable[[RawClient], None]] = [
    http_request,
    rtmpe,
    bad_chunk_header,
    chunk_size_zero,
    chunk_size_top_bit,
    huge_message_length,
    half_sent_on_many_streams,
    amf_nested_deep,
    lying_string_length,
    publish_before_connect,
    invalid_channel,
    wrong_key,
    second_publisher,
]


def test_malformed_sessions_do_not_disturb_a_live_reader(
    start_server: Callable[..., Server], procs: ProcGroup, tools: Tools, h264_source: SourceMedia
) -> None:
    server = start_server()
    url = server.url("chan", "key")
    publisher = procs.start(
        "publisher", publish_argv(tools.ffmpeg, h264_source.path, url, "-stream_loop", "-1")
    )
    assert wait_until(lambda: "publishing" in server.stderr_text(), 10), server.diagnostics()

    arrivals: list[float] = []
    lock = threading.Lock()

    def on_stdout(chunk: bytes, now: float) -> None:
        with lock:
            arrivals.append(now)

    reader = procs.start(
        "rtmpdump", rtmpdump_argv(url, "-", timeout_s=30), stdout_pipe=True, on_stdout=on_stdout
    )
    assert wait_until(lambda: len(arrivals) > 20, 10), reader.diagnostics()

    # Sessions that stay open while the battery runs: silent, half a handshake, a player of a
    # channel nobody publishes, and a player that never reads (tiny receive buffer).
    silent = RawClient(server.port)
    half_handshake = RawClient(server.port)
    half_handshake.send(b"\x03" + b"\0" * 700)
    # Chunk size 2^31-1 is legal (it acts as 0xFFFFFF); then half a chunk, then nothing.
    big_chunks = RawClient(server.port)
    big_chunks.handshake()
    big_chunks.message(1, struct.pack(">I", 0x7FFFFFFF), csid=2)
    big_chunks.send(_header(0, 4, 0, 4_000_000, 9, 1) + b"\0" * 65536)
    waiting = RawClient(server.port)
    waiting.connect("nobody")
    waiting.command("createStream", 2.0, None)
    waiting.command("play", 3.0, None, "key", msid=1)
    stalled = RawClient(server.port, rcvbuf=4096)
    stalled.connect("chan")
    stalled.command("createStream", 2.0, None)
    stalled.command("play", 3.0, None, "key", msid=1)

    battery_start = time.monotonic()
    failures = []
    for attack in CLOSED_AT_ONCE:
        client = RawClient(server.port)
        try:
            attack(client)
        except OSError:
            pass  # the server may already have closed on us: that is the point
        if not client.closed_within(5.0):
            failures.append(attack.__name__)
        client.close()
    # The silent client and the half handshake are closed by the setup timeout (10 s).
    assert silent.closed_within(15.0), "a client that sends nothing was not closed"
    assert half_handshake.closed_within(5.0), "a stalled handshake was not closed"
    assert big_chunks.closed_within(5.0), "a client stalled inside a huge chunk was not closed"
    battery_end = time.monotonic()
    assert not waiting.closed_within(0.2), "a player waiting for a publisher was dropped"
    for client in (waiting, stalled):
        client.close()

    assert not failures, f"not closed by the server: {failures}\n{server.diagnostics()}"
    assert reader.running() and publisher.running(), procs.diagnostics()
    with lock:
        during = [t for t in arrivals if battery_start - 1 <= t <= battery_end + 0.5]
    gaps = [b - a for a, b in zip(during, during[1:], strict=False)]
    assert during and max(gaps) < 0.5, f"reader interrupted for {max(gaps):.3f} s"

    log = server.stderr_text()
    assert "Traceback" not in log, log
    assert log.count("closed: protocol error") >= 8, log
    assert "publish refused: already publishing" in log
    assert "play refused: wrong key" in log
    assert "play refused: invalid channel or key" in log
