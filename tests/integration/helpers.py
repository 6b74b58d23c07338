"""Helpers for integration tests with real clients (ffmpeg, rtmpdump) on loopback.

Everything here is plain Python on top of `subprocess`: starting and always stopping
processes, reading ffmpeg's `framemd5` output, parsing FLV tags as rtmpdump writes them,
and comparing a reader's packets with the source's.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.config import SETTINGS

REPO_ROOT = Path(__file__).resolve().parents[2]

# Settings of the contract: removed from the environment handed to the server, so a
# developer's shell (RTMP_PORT=..., REDIS_USE=YES...) cannot change what a test sees.
SETTING_ENV_NAMES = tuple(setting.name for setting in SETTINGS)

SERVER_READY_TIMEOUT = 10.0
SERVER_STOP_TIMEOUT = 5.0


# --------------------------------------------------------------------------- tools


def debian_ffmpeg() -> str:
    """Debian's ffmpeg (5.1: legacy FLV codecs only); BRIDGE_TEST_FFMPEG overrides."""
    override = os.environ.get("BRIDGE_TEST_FFMPEG")
    if override:
        return override
    if Path("/usr/bin/ffmpeg").exists():
        return "/usr/bin/ffmpeg"
    return shutil.which("ffmpeg") or "ffmpeg"


def modern_ffmpeg() -> str:
    """The ffmpeg shipped in the imageio-ffmpeg wheel (9.x: Enhanced RTMP, libx265)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def rtmpdump() -> str:
    return shutil.which("rtmpdump") or "rtmpdump"


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that were free on 127.0.0.1 a moment ago (one closed
    port is not handed out twice: all are held until all are picked)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def wait_for_port(port: int, timeout: float, alive: Callable[[], bool] = lambda: True) -> bool:
    """Poll-connect until 127.0.0.1:port accepts; False on timeout or when not alive()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            try:
                s.connect(("127.0.0.1", port))
                return True
            except OSError:
                pass
        time.sleep(0.05)
    return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
                if m:
                    inodes.add(m.group(1))
    return inodes


def _established_inodes_to(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for row in f.readlines()[1:]:
                cols = row.split()
                if len(cols) > 9 and cols[3] == "01" and int(cols[2].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    return inodes


def is_connected(pid: int, port: int) -> bool:
    """Whether process `pid` has an established TCP connection to local `port` (Linux)."""
    return bool(_socket_inodes(pid) & _established_inodes_to(port))


def insecure_tls_context() -> ssl.SSLContext:
    """A TLS client context that accepts any certificate (the tests' are self-signed)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def served_certificate_sha256(port: int, timeout: float = 5.0) -> str:
    """SHA-256 (hex) of the certificate a new TLS connection to 127.0.0.1:port is given."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
        insecure_tls_context().wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der, f"no certificate from port {port}"
    return hashlib.sha256(der).hexdigest()


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- processes

_LIVE: weakref.WeakSet[Proc] = weakref.WeakSet()


class Proc:
    """A child process whose stdout/stderr go to files (never a full pipe), that records
    when it ended, and that is stopped on teardown whatever happened.

    With `stdout_pipe=True`, stdout is a pipe handed to `on_stdout(chunk, monotonic_time)`
    from a reader thread (used to time rtmpdump's first tag)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stdout_pipe: bool = False,
        on_stdout: Callable[[bytes, float], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        workdir.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self.stdout_path = workdir / f"{safe}.stdout"
        self.stderr_path = workdir / f"{safe}.stderr"
        self.returncode: int | None = None
        self.end_time: float | None = None
        self.exited = threading.Event()
        self._threads: list[threading.Thread] = []
        with open(self.stderr_path, "wb") as err:
            out = subprocess.PIPE if stdout_pipe else open(self.stdout_path, "wb")
            try:
                self.start_time = time.monotonic()
                self.popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=dict(env) if env is not None else None,
                    cwd=cwd,
                    start_new_session=True,  # own process group: we can kill it whole
                )
            finally:
                if not stdout_pipe:
                    out.close()
        _LIVE.add(self)
        if stdout_pipe:
            t = threading.Thread(target=self._pump, args=(on_stdout,), daemon=True)
            t.start()
            self._threads.append(t)
        waiter = threading.Thread(target=self._wait, daemon=True)
        waiter.start()
        self._threads.append(waiter)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _wait(self) -> None:
        rc = self.popen.wait()
        self.end_time = time.monotonic()
        self.returncode = rc
        self.exited.set()

    def _pump(self, on_stdout: Callable[[bytes, float], None] | None) -> None:
        fd = self.popen.stdout.fileno()
        with open(self.stdout_path, "wb") as sink:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                now = time.monotonic()
                if not chunk:
                    break
                sink.write(chunk)
                if on_stdout is not None:
                    on_stdout(chunk, now)
        self.popen.stdout.close()

    def running(self) -> bool:
        return not self.exited.is_set()

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        self.exited.wait(timeout)
        self.join_io()
        return self.returncode

    def join_io(self, timeout: float = 5.0) -> None:
        """After exit: wait until the stdout pump has written everything."""
        if self.exited.is_set():
            for t in self._threads:
                t.join(timeout)

    def send_signal(self, sig: int) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
        """`sig`, then SIGKILL after `timeout` s. Returns the exit code."""
        if self.running():
            self.send_signal(sig)
            if not self.exited.wait(timeout):
                self.send_signal(signal.SIGKILL)
                self.exited.wait(5.0)
        self.join_io()
        return self.returncode

    def duration_after(self, t0: float) -> float | None:
        """Seconds from monotonic time t0 to this process's exit (None: still running)."""
        return None if self.end_time is None else self.end_time - t0

    def stdout_bytes(self) -> bytes:
        return self.stdout_path.read_bytes() if self.stdout_path.exists() else b""

    def stdout_text(self) -> str:
        return self.stdout_bytes().decode("utf-8", "replace")

    def stderr_text(self) -> str:
        return self.stderr_path.read_bytes().decode("utf-8", "replace")

    def diagnostics(self, lines: int = 25) -> str:
        state = "running" if self.running() else f"exit {self.returncode}"
        return (
            f"--- {self.name} ({state}): {shlex.join(self.argv)}\n"
            f"{tail(self.stderr_text().replace(chr(13), chr(10)), lines)}"
        )


def _kill_leftovers() -> None:
    for p in list(_LIVE):
        with contextlib.suppress(Exception):
            p.stop(timeout=1.0, sig=signal.SIGKILL)


atexit.register(_kill_leftovers)


class ProcGroup:
    """Owns every process a test (or a module scenario) starts; `stop_all` on teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], **kw) -> Proc:
        p = Proc(name, argv, self.workdir, **kw)
        self.procs.append(p)
        return p

    def stop_all(self, timeout: float = SERVER_STOP_TIMEOUT) -> None:
        """SIGTERM to all at once (clients first), SIGKILL to whatever is left after
        `timeout`. (ffmpeg blocked on a silent socket ignores a first SIGTERM.)"""
        for p in reversed(self.procs):
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.exited.wait(max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            p.stop(timeout=0.0, sig=signal.SIGKILL)

    def diagnostics(self) -> str:
        return "\n".join(p.diagnostics() for p in self.procs)


# --------------------------------------------------------------------------- server


# Which `bridge serve` flag gives the port of each URL scheme (plain rtmp: `Server.port`).
SCHEME_PORT_FLAGS = {"rtmps": "--ssl-port", "rtmpt": "--http-port", "rtmpts": "--https-port"}


@dataclass
class Server:
    """A running `bridge serve`; its ProcGroup stops it (SIGTERM, SIGKILL after 5 s)."""

    port: int
    proc: Proc
    ports: dict[str, int] = field(default_factory=dict)  # listener flag -> port it was given

    def url(self, channel: str, key: str, scheme: str = "rtmp") -> str:
        """`SCHEME://127.0.0.1:PORT/CHANNEL/KEY` on the listener of that scheme."""
        port = self.port if scheme == "rtmp" else self.ports[SCHEME_PORT_FLAGS[scheme]]
        return f"{scheme}://127.0.0.1:{port}/{channel}/{key}"

    def stderr_text(self) -> str:
        return self.proc.stderr_text()

    def diagnostics(self) -> str:
        return self.proc.diagnostics(lines=60)


def server_command() -> list[str]:
    """How to run the server; BRIDGE_TEST_SERVER_CMD overrides (e.g. `bridge` to test the
    console script, or another RTMP server behind a wrapper accepting the same flags)."""
    override = os.environ.get("BRIDGE_TEST_SERVER_CMD")
    if override:
        return shlex.split(override)
    return [sys.executable, "-m", "bridge"]


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_ENV_NAMES}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def launch_server(
    group: ProcGroup,
    *flags: str,
    env: Mapping[str, str] | None = None,
    name: str = "server",
    ready_timeout: float = SERVER_READY_TIMEOUT,
    listeners: Sequence[str] = (),
) -> Server:
    """Start `bridge serve` on a free loopback port and wait until the port accepts.

    `listeners`: more port flags (`--ssl-port`, `--http-port`, `--https-port`), each given
    a free port of its own; the server is ready when all of them accept too. The ports are
    in `Server.ports`. Retries (twice) only when a port was taken between picking and binding."""
    for attempt in range(3):
        port, *others = free_ports(1 + len(listeners))
        extra = dict(zip(listeners, others, strict=True))
        argv = [
            *server_command(),
            "serve",
            "--rtmp-port",
            str(port),
            "--bind-address",
            "127.0.0.1",
            # The HTTP service (RTMPT) is on by default on 8080; tests that want it pass
            # their own --http-port.
            *([] if "--http-port" in (*flags, *extra) else ["--http-port", "0"]),
            # Every client of a test comes from 127.0.0.1: the default limit of 4 connections
            # per address would refuse them. Tests of the limit pass their own flags.
            *(
                []
                if {"--max-ip-concurrent-connections", "--concurrent-limit-whitelist"}
                & {*flags, *extra}
                else ["--concurrent-limit-whitelist", "*"]
            ),
            *(arg for flag, value in extra.items() for arg in (flag, str(value))),
            *flags,
        ]
        proc = group.start(
            f"{name}-{attempt}" if attempt else name, argv, env=server_env(env), cwd=REPO_ROOT
        )
        if all(
            wait_for_port(p, ready_timeout, alive=proc.running) for p in (port, *extra.values())
        ):
            return Server(port=port, proc=proc, ports=extra)
        proc.stop(timeout=2.0)
        err = proc.stderr_text()
        if not re.search(r"address already in use|errno 98", err, re.IGNORECASE):
            break
    raise AssertionError(
        f"server did not accept connections on port {port} within {ready_timeout} s\n"
        + proc.diagnostics(lines=60)
    )


# --------------------------------------------------------------------------- ffmpeg clients


def publish_argv(exe: str, source: Path, url: str, *extra_input: str) -> list[str]:
    """`ffmpeg -re -i SOURCE -c copy -f flv URL`, quiet and without stdin."""
    return [
        exe, "-hide_banner", "-nostdin", "-loglevel", "warning",
        "-re", *extra_input, "-i", str(source),
        "-map", "0:v:0", "-map", "0:a:0", "-c", "copy", "-f", "flv", url,
    ]  # fmt: skip


def framemd5_argv(exe: str, source: str | Path) -> list[str]:
    """`ffmpeg -i SOURCE -c copy -f framemd5 -`: one md5 line per packet on stdout."""
    return [
        exe, "-hide_banner", "-nostdin", "-loglevel", "warning",
        "-i", str(source), "-map", "0:v:0?", "-map", "0:a:0?",
        "-c", "copy", "-f", "framemd5", "-",
    ]  # fmt: skip


def rtmpdump_argv(url: str, output: str = "-", timeout_s: int = 10) -> list[str]:
    return [rtmpdump(), "-r", url, "--live", "-m", str(timeout_s), "-o", output]


# --------------------------------------------------------------------------- framemd5


@dataclass(frozen=True)
class Packet:
    dts: int | None
    pts: int | None
    size: int
    md5: str


@dataclass
class FrameMd5:
    """Parsed framemd5 output: per stream index, its codec, extradata md5 and packets."""

    codecs: dict[int, str] = field(default_factory=dict)
    extradata: dict[int, str] = field(default_factory=dict)
    packets: dict[int, list[Packet]] = field(default_factory=dict)

    def stream_of(self, codec: str) -> int | None:
        for index, name in self.codecs.items():
            if name == codec:
                return index
        return None

    def by_codec(self, codec: str) -> list[Packet]:
        index = self.stream_of(codec)
        return [] if index is None else self.packets.get(index, [])

    def md5s(self, codec: str) -> list[str]:
        return [p.md5 for p in self.by_codec(codec)]


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def parse_framemd5(text: str) -> FrameMd5:
    """Parse `-f framemd5` output (version 2). Side-data columns after the hash are ignored;
    a truncated last line (process killed mid-write) is dropped."""
    out = FrameMd5()
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = re.match(r"#codec_id (\d+): (\S+)", line)
            if m:
                out.codecs[int(m.group(1))] = m.group(2)
            m = re.match(r"#extradata (\d+),\s*(\d+),\s*([0-9a-f]{32})", line)
            if m:
                out.extradata[int(m.group(1))] = m.group(3)
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 6 or not re.fullmatch(r"[0-9a-f]{32}", fields[5]):
            continue
        stream, dts, pts, _duration, size, md5 = fields[:6]
        out.packets.setdefault(int(stream), []).append(
            Packet(_int_or_none(dts), _int_or_none(pts), int(size), md5)
        )
    return out


def framemd5(source: str | Path, exe: str, timeout: float = 60.0) -> FrameMd5:
    """Run ffmpeg's framemd5 on a file (or URL) to its end and parse the result."""
    res = subprocess.run(
        framemd5_argv(exe, source),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if res.returncode != 0:
        raise AssertionError(
            f"framemd5 of {source} failed ({res.returncode}): {res.stderr.decode(errors='replace')}"
        )
    return parse_framemd5(res.stdout.decode())


def keyframe_md5s(path: Path) -> dict[str, set[str]]:
    """md5 of every keyframe packet per codec name, read with PyAV (framemd5 carries no
    flags). PyAV and ffmpeg see the same packet bytes, so the md5s match framemd5's."""
    import av

    result: dict[str, set[str]] = {}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size == 0 or not packet.is_keyframe:
                continue
            name = packet.stream.codec_context.name
            result.setdefault(name, set()).add(hashlib.md5(bytes(packet)).hexdigest())
    return result


# --------------------------------------------------------------------------- media


@dataclass(frozen=True)
class Tools:
    ffmpeg: str  # Debian's: publishes/reads legacy FLV
    modern_ffmpeg: str  # imageio-ffmpeg's: Enhanced RTMP (HEVC)
    rtmpdump: str


@dataclass(frozen=True)
class SourceMedia:
    """A generated media file and what its packets are, as ffmpeg's framemd5 sees them."""

    path: Path
    frames: FrameMd5
    keyframes: dict[str, set[str]]  # codec name -> md5s of keyframe packets
    video_codec: str
    audio_codec: str

    def md5s(self, codec: str) -> list[str]:
        return self.frames.md5s(codec)

    def extradata(self, codec: str) -> str | None:
        index = self.frames.stream_of(codec)
        return None if index is None else self.frames.extradata.get(index)

    def packets_from(self, codec: str, media_ms: float) -> int:
        """How many packets of `codec` lie at or after `media_ms` into the file."""
        packets = self.frames.by_codec(codec)
        first = packets[0].dts
        return sum(1 for p in packets if p.dts - first >= media_ms)


# --------------------------------------------------------------------------- runs


def find_run(reader: Sequence[str], source: Sequence[str]) -> int | None:
    """Index in `source` where `reader` occurs as a contiguous run, or None.
    Tries every occurrence of reader[0] (md5s could repeat)."""
    if not reader:
        return None
    n = len(reader)
    for i, md5 in enumerate(source):
        if md5 == reader[0] and list(source[i : i + n]) == list(reader):
            return i
    return None


def is_contiguous_run(reader: Sequence[str], source: Sequence[str]) -> bool:
    """True when the reader's md5 list is a non-empty contiguous slice of the source's."""
    return find_run(reader, source) is not None


def split_runs(reader: Sequence[str], source: Sequence[str]) -> list[tuple[int, int]] | None:
    """Cut `reader` greedily into maximal contiguous runs of `source`: a list of
    (source_start, length). None when some reader packet is not in the source at all."""
    positions: dict[str, list[int]] = {}
    for i, md5 in enumerate(source):
        positions.setdefault(md5, []).append(i)
    runs: list[tuple[int, int]] = []
    k = 0
    while k < len(reader):
        best: tuple[int, int] | None = None
        for start in positions.get(reader[k], []):
            length = 0
            while (
                k + length < len(reader)
                and start + length < len(source)
                and source[start + length] == reader[k + length]
            ):
                length += 1
            if best is None or length > best[1]:
                best = (start, length)
        if best is None:
            return None
        runs.append(best)
        k += best[1]
    return runs


def explain_run(reader: Sequence[str], source: Sequence[str], what: str = "") -> str:
    """A human description of how `reader` deviates from being a run of `source`."""
    head = f"{what}: " if what else ""
    if not reader:
        return f"{head}reader got no packets (source has {len(source)})"
    runs = split_runs(reader, source)
    if runs is None:
        index = set(source)
        bad = next(k for k, m in enumerate(reader) if m not in index)
        return (
            f"{head}reader packet #{bad} (of {len(reader)}) is not in the source at all; "
            f"runs before it: {split_runs(reader[:bad], source)}"
        )
    return (
        f"{head}reader has {len(reader)} packets, source {len(source)}; "
        f"reader = source runs (start, length) {runs[:12]}{' ...' if len(runs) > 12 else ''}"
    )


# --------------------------------------------------------------------------- FLV tags


@dataclass(frozen=True)
class FlvTag:
    type: int  # 8 audio, 9 video, 18 script
    timestamp: int
    payload: bytes
    offset: int  # of the tag header in the stream


FLV_HEADER_LEN = 9 + 4  # header plus PreviousTagSize0


def iter_flv_tags(data: bytes) -> Iterator[FlvTag]:
    """Complete tags of an FLV byte stream; a truncated tail is ignored."""
    if len(data) < FLV_HEADER_LEN or data[:3] != b"FLV":
        return
    off = int.from_bytes(data[5:9], "big") + 4
    while off + 11 <= len(data):
        size = int.from_bytes(data[off + 1 : off + 4], "big")
        end = off + 11 + size + 4
        if end > len(data):
            return
        ts = int.from_bytes(data[off + 4 : off + 7], "big") | (data[off + 7] << 24)
        yield FlvTag(data[off] & 0x1F, ts, data[off + 11 : off + 11 + size], off)
        off = end


def complete_flv_prefix(data: bytes) -> bytes:
    """The longest prefix of `data` made of the FLV header and whole tags."""
    end = FLV_HEADER_LEN if data[:3] == b"FLV" else 0
    for tag in iter_flv_tags(data):
        end = tag.offset + 11 + len(tag.payload) + 4
    return data[:end]


@dataclass(frozen=True)
class VideoTagInfo:
    keyframe: bool
    sequence_header: bool
    coded_frame: bool
    codec: str  # "avc", legacy codec id, or the Enhanced RTMP FourCC


def video_tag_info(payload: bytes) -> VideoTagInfo | None:
    """Classify a video tag payload: legacy FLV (codec id 7 = AVC) or Enhanced RTMP."""
    if not payload:
        return None
    b0 = payload[0]
    frame_type = (b0 >> 4) & 0x07
    if b0 & 0x80:  # Enhanced RTMP: IsExHeader, PacketType in the low nibble, then a FourCC
        packet_type = b0 & 0x0F
        fourcc = payload[1:5].decode("latin-1")
        return VideoTagInfo(
            keyframe=frame_type == 1,
            sequence_header=packet_type == 0,
            coded_frame=packet_type in (1, 3),
            codec=fourcc,
        )
    codec_id = b0 & 0x0F
    if codec_id == 7:
        avc_type = payload[1] if len(payload) > 1 else -1
        return VideoTagInfo(frame_type == 1, avc_type == 0, avc_type == 1, "avc")
    return VideoTagInfo(frame_type == 1, False, frame_type != 5, str(codec_id))


class FlvStreamWatcher:
    """Fed chunks of a growing FLV stream with their arrival times; records when the first
    tag and the first coded video frame arrived (for time-to-first-frame)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.first_tag_time: float | None = None
        self.first_frame_time: float | None = None
        self.first_frame: VideoTagInfo | None = None
        self._scanned = 0  # offset of the next unscanned tag
        self._lock = threading.Lock()

    def feed(self, chunk: bytes, now: float) -> None:
        with self._lock:
            if self.first_frame_time is not None:
                return  # the rest of the stream is in the process's stdout file
            self.buffer += chunk
            data = bytes(self.buffer)
            if self._scanned == 0:
                if len(data) < FLV_HEADER_LEN:
                    return
                self._scanned = int.from_bytes(data[5:9], "big") + 4
            while self._scanned + 11 <= len(data):
                off = self._scanned
                size = int.from_bytes(data[off + 1 : off + 4], "big")
                if off + 11 + size + 4 > len(data):
                    return
                if self.first_tag_time is None:
                    self.first_tag_time = now
                if data[off] & 0x1F == 9:
                    info = video_tag_info(data[off + 11 : off + 11 + size])
                    if info is not None and info.coded_frame:
                        self.first_frame_time = now
                        self.first_frame = info
                        self.buffer = bytearray()
                        return
                self._scanned = off + 11 + size + 4


# --------------------------------------------------------------------------- shared by tests


def video_packets(reader: Proc, source: SourceMedia) -> int:
    """Video packets an ffmpeg framemd5 reader has written so far."""
    return len(parse_framemd5(reader.stdout_text()).by_codec(source.video_codec))


def wait_for_media(reader: Proc, source: SourceMedia, timeout: float = 10.0) -> None:
    """Until the reader has written video packets (ffmpeg writes nothing while it probes)."""
    ok = wait_until(lambda: video_packets(reader, source) > 0 or not reader.running(), timeout)
    assert ok and reader.running(), (
        f"reader got no video within {timeout} s\n{reader.diagnostics()}"
    )


def http(
    server: Server, method: str, path: str, token: str | None = None
) -> tuple[int, Any, dict[str, str]]:
    """One request to the server's HTTP service: status, JSON (or text) body, headers."""
    port = server.ports["--http-port"]
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = b"" if method == "POST" else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, body, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, body, got = exc.code, exc.read(), dict(exc.headers)
    if got.get("Content-Type", "").startswith("application/json"):
        return status, json.loads(body), got
    return status, body.decode(errors="replace"), got
