"""Helpers shared by the benchmarks in bench/: processes, /proc and ``ss`` readings, the
cached source, a bridge server, py-spy.

Imported as ``common`` by the scripts next to it (``python bench/NAME.py`` puts bench/ first
on ``sys.path``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FFMPEG = "/usr/bin/ffmpeg"
FFPROBE = "/usr/bin/ffprobe"
RTMPDUMP = shutil.which("rtmpdump") or "/usr/bin/rtmpdump"
REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
CHANNEL, KEY = "bench", "key"
SOURCE = Path(tempfile.gettempdir()) / "bridge-bench" / "src-1080p30-4M-20s.flv"


class BenchError(Exception):
    """A step failed; the message says which."""


# ---------------------------------------------------------------- processes


class Procs:
    """Every process the bench starts. Each runs in its own session, so a Ctrl-C reaches only
    us and we stop them in order; ``stop_all`` ends whatever is left (TERM, then KILL)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.extra_pids: set[int] = set()  # children of ours (nginx's worker) to reap too

    def start(
        self,
        argv: list[str],
        log: Path | None = None,
        cwd: Path | None = None,
        stdout_pipe: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv``; its output goes to ``log`` (or nowhere). With ``stdout_pipe`` its
        stdout is a pipe for the caller to read (and close) and only stderr goes to ``log``."""
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else out,
                stderr=out if stdout_pipe else subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        self.procs.append(proc)
        return proc

    def stop(self, procs: list[subprocess.Popen[bytes]], timeout: float = 5.0) -> None:
        for proc in procs:
            if proc.poll() is None:
                with quiet():
                    proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
        for proc in procs:
            with quiet():
                self.procs.remove(proc)

    def stop_all(self) -> None:
        self.stop(list(self.procs))
        for pid in self.extra_pids:  # e.g. an nginx worker whose master died first
            with quiet():
                os.kill(pid, signal.SIGKILL)
        self.extra_pids.clear()


class quiet:
    """Ignore a process or file that is already gone."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        return isinstance(
            exc, (ProcessLookupError, FileNotFoundError, ValueError, ChildProcessError)
        )


def raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def exit_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP end the run through its cleanup (``finally`` stops every
    process). A shell that starts us in the background leaves SIGINT ignored: take it back."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_exit)
    signal.signal(signal.SIGHUP, raise_exit)


def require_tools(parser: Any, *tools: str) -> None:
    """Stop with a usage error naming the first tool that is missing."""
    for tool in (*tools, shutil.which("ss") or "/usr/bin/ss"):
        if not os.path.exists(tool):
            parser.error(f"{tool} is missing (apt-get install ffmpeg rtmpdump iproute2)")


# ---------------------------------------------------------------- /proc readings


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from "state" on


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """(utime, stime) of these processes (all threads), in seconds; gone ones count 0."""
    user = system = 0
    for pid in pids:
        with quiet():
            fields = _stat_fields(pid)
            user, system = user + int(fields[11]), system + int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_split(pids))


def all_cpu() -> dict[int, tuple[str, int]]:
    """Every process on the machine: pid -> (name, utime + stime ticks)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with quiet():
                text = Path(f"/proc/{entry}/stat").read_text()
                fields = text[text.rindex(")") + 2 :].split()
                name = text[text.index("(") + 1 : text.rindex(")")]
                table[int(entry)] = (name, int(fields[11]) + int(fields[12]))
    return table


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with quiet():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def process_tree(root: int) -> list[int]:
    """The root and its descendants (nginx: master + worker)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with quiet():
                parents.setdefault(int(_stat_fields(int(entry))[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo and len(tree) < 10_000:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def machine_times() -> tuple[int, int, int]:
    """(idle + iowait, irq + softirq, total) jiffies from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return values[3] + values[4], values[5] + values[6], sum(values[:8])


@dataclass
class Sock:
    acked: int = 0  # bytes the server sent that the peer acknowledged
    received: int = 0  # bytes the server received


_SS_ADDR = re.compile(r"^\S+\s+\S+\s+(\S+)\s+(\S+)\s*$")


def socket_mbps(
    before: dict[str, Sock], after: dict[str, Sock], publisher: str, seconds: float
) -> tuple[float | None, list[float]]:
    """Between two ``server_sockets`` readings: what the publisher's connection brought in,
    and what each reader's connection had acknowledged, in Mbit/s."""
    pub = None
    if publisher in before and publisher in after:
        pub = 8 * (after[publisher].received - before[publisher].received) / seconds / 1e6
    readers = [
        8 * (after[peer].acked - before[peer].acked) / seconds / 1e6
        for peer in after
        if peer != publisher and peer in before
    ]
    return pub, readers


def server_sockets(port: int) -> dict[str, Sock]:
    """The server side of every established TCP connection on ``port``, by peer address."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", "(", "sport", "=", f":{port}", ")"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    socks: dict[str, Sock] = {}
    peer = None
    for line in out.splitlines():
        match = _SS_ADDR.match(line)
        if match and not line[:1].isspace():
            peer = match.group(2)
            socks[peer] = Sock()
        elif peer is not None:
            for name, value in re.findall(r"\b(bytes_acked|bytes_received):(\d+)", line):
                setattr(socks[peer], "acked" if name == "bytes_acked" else "received", int(value))
    return socks


# ---------------------------------------------------------------- set-up


def make_source(path: Path, seconds: int) -> Path:
    """A ~4 Mbps 1080p30 H.264 (no B-frames, 2 s GOP) + AAC FLV, made once and cached."""
    if path.exists() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part.flv")
    print(f"generating {path} ({seconds} s of 1080p30, this takes a minute) ...", flush=True)
    argv = [
        FFMPEG, "-hide_banner", "-loglevel", "error", "-nostats", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(seconds), "-pix_fmt", "yuv420p",
        "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M", "-maxrate", "4M",
        "-bufsize", "8M", "-g", "60", "-bf", "0",
        "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(part),
    ]  # fmt: skip
    try:
        subprocess.run(argv, check=True, timeout=900)
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"ffmpeg could not make the source: exit {exc.returncode}") from exc
    part.rename(path)
    return path


def describe(source: Path) -> str:
    """Duration and average bitrate, from ffprobe."""
    try:
        out = subprocess.run(
            [FFPROBE, *"-v error -show_entries format=duration -of csv=p=0".split(), str(source)],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        seconds = float(out.strip())
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return "duration unknown"
    return f"{seconds:.1f} s, {source.stat().st_size * 8 / seconds / 1e6:.2f} Mbps"


def wait_for(
    what: str, ready: object, timeout: float, alive: subprocess.Popen[bytes] | None = None
) -> object:
    """Poll ``ready()`` until it returns something truthy; bounded in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = ready()  # type: ignore[operator]
        if result:
            return result
        if alive is not None and alive.poll() is not None:
            raise BenchError(f"{what}: the process exited ({alive.returncode})")
        time.sleep(0.1)
    raise BenchError(f"{what}: not within {timeout:.0f} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    pids: list[int] = field(default_factory=list)
    http_port: int = 0  # bridge's HTTP service (RTMPT), 0 = off


def start_bridge(procs: Procs, work: Path, tag: str, http: bool = False) -> Server:
    """``python -m bridge serve`` on 127.0.0.1 with free ports: RTMP, and HTTP if ``http``
    (otherwise the HTTP service stays off)."""
    port, log = free_port(), work / f"{tag}.log"
    http_port = free_port() if http else 0
    flags = (
        f"--rtmp-port {port} --http-port {http_port} --bind-address 127.0.0.1 --log-requests NO"
        " --concurrent-limit-whitelist *"  # every bench reader comes from 127.0.0.1
    )
    argv = [sys.executable, "-m", "bridge", "serve", *flags.split()]
    server = Server("bridge", port, procs.start(argv, log, cwd=REPO), log, http_port=http_port)
    wait_for("bridge listening", lambda: listening(port), 30, server.proc)
    if http_port:
        wait_for("bridge HTTP listening", lambda: listening(http_port), 30, server.proc)
    server.pids = process_tree(server.proc.pid)
    return server


def profile(procs: Procs, work: Path, pid: int, seconds: float, tag: str) -> str:
    """py-spy samples bridge after the window (it would disturb the window's figures)."""
    spy = shutil.which("py-spy")
    if spy is None:
        return "py-spy not installed (pip install py-spy)"
    out = work / f"{tag}.pyspy.txt"
    proc = procs.start(
        [
            spy,
            *f"record -d {int(seconds)} -r 100 --nonblocking -f raw --pid {pid} -o".split(),
            str(out),
        ],
        work / "py-spy.log",
    )
    try:
        proc.wait(seconds + 30)
    except subprocess.TimeoutExpired:
        pass
    procs.stop([proc])
    if not out.exists():
        return f"py-spy wrote nothing; see {work / 'py-spy.log'}"
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    samples = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [re.sub(r" \((.*/)?([^/]+)\)$", r" (\2)", f) for f in stack.split(";")]
        samples += int(count)
        own[frames[-1]] = own.get(frames[-1], 0) + int(count)
        for frame in set(frames):
            incl[frame] = incl.get(frame, 0) + int(count)
    lines = [
        f"py-spy, {seconds:.0f} s at 100 Hz, {samples} busy samples "
        f"(~{samples / seconds / 100:.2f} cores of Python):"
    ]
    # Frames in (nearly) every sample (runpy, run_forever, ...) say nothing: leave them out.
    incl = {frame: count for frame, count in incl.items() if count < 0.97 * samples}
    for title, table in (("self", own), ("inclusive, below the event loop", incl)):
        lines.append(f"  top {title}:")
        for frame, count in sorted(table.items(), key=lambda kv: -kv[1])[:12]:
            lines.append(f"    {100 * count / max(samples, 1):5.1f}%  {frame}")
    return "\n".join(lines)
