#!/usr/bin/env python3
"""WebRTC (WHEP) benchmark: what a WHEP viewer costs bridge, how many viewers 2 cores hold,
how soon a viewer has its first frame and how much latency bridge adds; printed next to the
issue's targets and to nginx-rtmp's CPU per RTMP reader of the same stream.

All on 127.0.0.1: one bridge (``--bind-address 127.0.0.1``, so ICE offers loopback only), one
ffmpeg encoding testsrc2 1280x720 at 30 fps and ~3 Mbps live into it over RTMP through a relay
here that times each frame's ingest, one RTMP reader, and viewers in their own processes:
aiortc (``tests/aiortc_peer.py --encoded``: frames are counted, not decoded) and a few headless
Chromium tabs (``tests/browser.py``). Black-box only: nothing is measured inside bridge. Parts:

1. joins: viewers join one at a time: POST to first frame, against the next keyframe;
2. baseline: the server with the publisher and the RTMP reader, no WebRTC viewer;
3. Chromium tabs on the play page (WebRTC only): server CPU per tab, frames decoded;
4. rounds of 1, 5, 10, 15, 20, 30, 40 aiortc viewers (added to those already there; it stops
   at the first round where a viewer got less than 95 % of the frames): server CPU per
   viewer, frames per viewer, latency from ingest to the server sending each frame (its
   abs-send-time), to the viewer having it, and to the RTMP reader having it;
5. nginx-rtmp with N rtmpdump readers of the same stream: CPU per RTMP reader.

    cd /work/main && .venv/bin/python bench/webrtc_bench.py           # about 5 minutes
    .venv/bin/python bench/webrtc_bench.py --quick                    # about 1.5 minutes

See bench/README.md for what every figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (  # bench/common.py, next to this script
    CHANNEL,
    CLK_TCK,
    FFMPEG,
    KEY,
    REPO,
    RTMPDUMP,
    BenchError,
    Procs,
    Server,
    all_cpu,
    cpu_seconds,
    cpu_split,
    exit_on_signals,
    free_port,
    listening,
    machine_times,
    process_tree,
    profile,
    require_tools,
    rss_kb,
    server_sockets,
    socket_mbps,
    wait_for,
)
from hls_bench import procs_start_env  # Popen with a given environment, tracked by Procs
from rtmp_fanout import NGINX, NGINX_RTMP, start_nginx
from rtmpt_overhead import STDBUF, PipeHub, Tag, TagClock, ts_offset  # timed FLV tags

sys.path.insert(0, str(REPO))  # tests.browser, bridge.config, bridge.rtmp.chunk
from bridge.rtmp.chunk import ChunkReader  # noqa: E402 - needs REPO on the path
from bridge.rtmp.errors import ChunkError  # noqa: E402

FPS = 30
GOP_SECONDS = 2.0
VIDEO_SIZE = "1280x720"
VIDEO_KBPS = 3000
AUDIO_KBPS = 128
FULL_RATE = 0.95  # a viewer with >= 95 % of the frames the RTMP reader got is at full rate
TARGET_MCORES = 10.0  # issue: at most 1 % of a core per viewer
TARGET_FIRST_MS = 150.0  # issue: first frame within 150 ms of the POST
TARGET_LATENCY_MS = 50.0  # issue: the server adds under 50 ms
JOIN_STAGGER = 0.7  # s between joins in part 1: 0.7 s steps land all over a 2 s GOP
JOIN_SECONDS = 3.0  # each part-1 viewer stays this long: long enough for the next keyframe
NGINX_REFERENCE = 0.11  # measured.md: nginx-rtmp milli-cores per RTMP reader per Mbps
MAX_FRAMES_PER_VIEWER = 100_000  # ~55 minutes at 30 fps: far past any run
U32 = 1 << 32


# ---------------------------------------------------------------- settings of a run


@dataclass(frozen=True)
class Plan:
    counts: tuple[int, ...]
    window: float
    settle: float
    baseline: float
    joins: int
    browsers: int
    nginx_readers: int
    budget: float  # seconds for the whole run; rounds that would not fit are skipped


FULL = Plan((1, 5, 10, 15, 20, 30, 40), 20.0, 5.0, 8.0, 10, 2, 20, 540.0)
QUICK = Plan((1, 5, 10), 8.0, 3.0, 5.0, 5, 1, 10, 150.0)


# ---------------------------------------------------------------- processes


def server_env() -> dict[str, str]:
    """The caller's environment without any bridge setting (API_TOKEN, CALLBACK_URL, ...
    would change what is measured)."""
    from bridge.config import SETTINGS

    names = {setting.name for setting in SETTINGS}
    return {k: v for k, v in os.environ.items() if k not in names}


def start_server(procs: Procs, work: Path) -> Server:
    """bridge with RTMP and HTTP (WHEP) on 127.0.0.1. ``--rtmp-write-merge-ms 0``: the RTMP
    reference reader gets each frame as soon as it came in (the default batches 20 ms)."""
    port, http_port, log = free_port(), free_port(), work / "bridge.log"
    argv = [
        sys.executable, "-m", "bridge", "serve", "--rtmp-port", str(port),
        "--http-port", str(http_port), "--bind-address", "127.0.0.1", "--log-requests", "NO",
        "--concurrent-limit-whitelist", "*", "--rtmp-write-merge-ms", "0",
        "--webrtc-max-sessions", "2000",
    ]  # fmt: skip
    proc = procs_start_env(procs, argv, log, server_env())
    server = Server("bridge", port, proc, log, http_port=http_port)
    wait_for("bridge listening", lambda: listening(port) and listening(http_port), 30, proc)
    server.pids = process_tree(proc.pid)
    return server


def start_publisher(
    procs: Procs, work: Path, port: int, url: str, seconds: float, tag: str
) -> tuple[subprocess.Popen[bytes], str]:
    """ffmpeg encoding testsrc2 720p30 + a tone live: ~3 Mbps H.264 without B-frames, a
    keyframe every 2 s, AAC. Returns the process and its connection's address."""
    argv = [
        FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size={VIDEO_SIZE}:rate={FPS}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(int(seconds)), "-pix_fmt", "yuv420p",
        "-c:v", "libx264", "-preset", "superfast", "-b:v", f"{VIDEO_KBPS}k",
        "-maxrate", f"{VIDEO_KBPS}k", "-bufsize", f"{2 * VIDEO_KBPS}k",
        "-g", str(int(GOP_SECONDS * FPS)), "-keyint_min", str(int(GOP_SECONDS * FPS)),
        "-sc_threshold", "0", "-bf", "0",
        "-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-f", "flv", url,
    ]  # fmt: skip
    publisher = procs.start(argv, work / f"publisher-{tag}.log")

    def publishing() -> str | None:  # live once the server has taken ~300 kB from it
        socks = server_sockets(port)
        return next((peer for peer, s in socks.items() if s.received > 300_000), None)

    peer = wait_for(f"{tag}: publisher live", publishing, 20, publisher)
    return publisher, str(peer)


def peer_argv(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "tests.aiortc_peer", "whep", url, "--encoded", *args]


def fetch_json(url: str, timeout: float = 5.0) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return json.loads(reply.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None


def whep_sessions(server: Server) -> int | None:
    body = fetch_json(f"http://127.0.0.1:{server.http_port}/api/v1/sessions")
    if not isinstance(body, dict):
        return None
    return sum(1 for s in body.get("sessions", []) if s.get("protocol") == "whep")


def wait_no_viewers(server: Server, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and whep_sessions(server) != 0:
        time.sleep(0.2)


# ---------------------------------------------------------------- the server's ingest, timed


class RtmpTap:
    """A TCP relay between the publisher and the server that times every audio and video
    message as its last byte is handed to the server's socket: when the server got each frame,
    seen from outside. Relays one connection; bounded in tags; every wait has a timeout."""

    HANDSHAKE = 1 + 1536 + 1536  # C0, C1, C2: then the chunk stream
    MAX_TAGS = 100_000

    def __init__(self, server_port: int) -> None:
        self.server_port = server_port
        self.tags: list[Tag] = []
        self.error = ""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.5)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, name="rtmp-tap", daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.server_port), timeout=5)
            except OSError as exc:
                self.error = f"cannot reach the server: {exc}"
                client.close()
                return
            for sock in (client, upstream):
                sock.settimeout(0.5)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sockets.append(sock)
            back = threading.Thread(
                target=self._pipe, args=(upstream, client, False), name="rtmp-tap-back", daemon=True
            )
            self._threads.append(back)
            back.start()
            self._pipe(client, upstream, True)
            return  # one publisher

    def _pipe(self, src: socket.socket, dst: socket.socket, timed: bool) -> None:
        reader = ChunkReader()
        skip = self.HANDSHAKE
        while not self._stop.is_set():
            try:
                data = src.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
            if not timed or self.error:
                continue
            now = time.monotonic()
            if skip:
                cut = min(skip, len(data))
                data, skip = data[cut:], skip - cut
            try:
                messages = reader.feed(data)
            except ChunkError as exc:
                self.error = f"chunk stream: {exc}"
                continue
            for m in messages:
                body = m.payload
                if m.type_id in (8, 9) and len(body) >= 2 and len(self.tags) < self.MAX_TAGS:
                    config = (m.type_id == 9 and body[0] & 0x0F == 7 and body[1] == 0) or (
                        m.type_id == 8 and body[0] >> 4 == 10 and body[1] == 0
                    )
                    if not config:
                        self.tags.append(Tag(m.type_id, m.timestamp, len(body), now))
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(5.0)


# ---------------------------------------------------------------- the viewers' frame logs


@dataclass
class Viewer:
    """One aiortc viewer, from its process's ``--frame-log`` (times: time.monotonic())."""

    key: str
    post: float | None = None
    answer: float | None = None
    status: int = 0
    connected: float | None = None
    frames: list[float] = field(default_factory=list)  # recv() returned a video frame
    # (first packet in, last packet in, RTP timestamp, Annex-B bytes, keyframe, sent): "sent"
    # is the server's abs-send-time of the last packet, on the same clock (0.0 if none)
    rtp: list[tuple[float, float, int, int, bool, float]] = field(default_factory=list)
    offset: int | None = None  # RTP timestamp - 90 x FLV timestamp of the same frame

    def first_key(self, nth: int = 0) -> float | None:
        """When the viewer had its ``nth`` complete keyframe (its last packet in)."""
        keys = [r[1] for r in self.rtp if r[4]]
        return keys[nth] if len(keys) > nth else None


class FrameLogs:
    """Reads the viewers' frame logs as they grow (complete lines only)."""

    def __init__(self) -> None:
        self.viewers: dict[str, Viewer] = {}
        self._offsets: dict[Path, int] = {}

    def watch(self, path: Path) -> None:
        self._offsets.setdefault(path, 0)

    def poll(self) -> None:
        for path, offset in self._offsets.items():
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1
            self._offsets[path] = offset + end
            for line in data[:end].decode("ascii", "replace").splitlines():
                self._line(path.name, line.split())

    def _line(self, name: str, parts: list[str]) -> None:
        if len(parts) < 3:
            return
        viewer = self.viewers.setdefault(f"{name}:{parts[1]}", Viewer(f"{name}:{parts[1]}"))
        kind, at = parts[0], float(parts[2])
        if kind == "frame" and len(viewer.frames) < MAX_FRAMES_PER_VIEWER:
            viewer.frames.append(at)
        elif kind == "rtp" and len(parts) >= 7 and len(viewer.rtp) < MAX_FRAMES_PER_VIEWER:
            sent = float(parts[7]) if len(parts) > 7 and parts[7] != "-" else 0.0
            viewer.rtp.append(
                (at, float(parts[3]), int(parts[4]), int(parts[5]), parts[6] == "1", sent)
            )
        elif kind == "post":
            viewer.post = at
        elif kind == "answer":
            viewer.answer, viewer.status = at, int(parts[3]) if len(parts) > 3 else 0
        elif kind == "connected":
            viewer.connected = at

    def of(self, names: set[str]) -> list[Viewer]:
        return [v for key, v in self.viewers.items() if key.split(":")[0] in names]


def rtp_offset(viewer: Viewer, tags: list[Tag]) -> int | None:
    """The commonest ``RTP timestamp - 90 x FLV timestamp`` over frames of equal size (a
    delta frame's Annex-B size is its FLV body less the 5-byte AVC header: start codes and
    4-byte lengths are the same size) that arrived within 3 s of each other."""
    by_size: dict[int, list[Tag]] = collections.defaultdict(list)
    for tag in tags:
        if tag.kind == 9:
            by_size[tag.size - 5].append(tag)
    votes: collections.Counter[int] = collections.Counter()
    for _, last, ts, size, key, _ in viewer.rtp[:600]:
        if key:
            continue  # IDRs carry SPS/PPS in front over WebRTC, not in FLV
        for tag in by_size.get(size, ()):
            if abs(tag.arrival - last) < 3.0:
                votes[(ts - 90 * tag.ts) % U32] += 1
    if not votes:
        return None
    offset, count = votes.most_common(1)[0]
    return offset if count >= 5 else None


def latencies(
    viewer: Viewer, video: dict[int, float], tags: list[Tag], t0: float, t1: float
) -> tuple[list[float], list[float]]:
    """For the viewer's frames complete in [t0, t1], in ms: arrival at the viewer - arrival
    at the RTMP reader (each frame complete: its last RTP packet, the FLV tag's last byte),
    and the server's send time of the last packet (abs-send-time) - arrival at the reader."""
    if viewer.offset is None:
        viewer.offset = rtp_offset(viewer, tags)
        if viewer.offset is None:
            return [], []
    arrived, sent = [], []
    for _, last, ts, _, _, stamped in viewer.rtp:
        if t0 <= last <= t1:
            delta = (ts - viewer.offset) % U32
            at = video.get(delta // 90) if delta % 90 == 0 else None
            if at is not None:
                arrived.append(1000 * (last - at))
                if stamped:
                    sent.append(1000 * (stamped - at))
    return arrived, sent


# ---------------------------------------------------------------- machine readings


@dataclass
class Usage:
    """CPU of the server and of everything else over one window."""

    seconds: float = 0.0
    server_cores: float = 0.0
    system_cores: float = 0.0
    rss_kb: int = 0
    groups: dict[str, float] = field(default_factory=dict)  # name -> cores
    idle_pct: float = 0.0
    busy_cores: float = 0.0
    irq_cores: float = 0.0
    others: str = ""

    @property
    def other_cores(self) -> float:
        return self.busy_cores - self.irq_cores - self.server_cores - sum(self.groups.values())


class Meter:
    """Readings at the start and end of a window; ``groups`` name the processes measured
    besides the server (their pids read at both ends)."""

    def __init__(self, server_pids: list[int], groups: dict[str, Callable[[], list[int]]]) -> None:
        self.server_pids = server_pids
        self.groups = groups
        self.pids0 = {name: pids() for name, pids in groups.items()}
        self.all0 = all_cpu()
        self.server0 = cpu_split(server_pids)
        self.group0 = {name: cpu_seconds(pids) for name, pids in self.pids0.items()}
        self.bench0 = _self_cpu()
        self.machine0 = machine_times()
        self.t0 = time.monotonic()

    def stop(self) -> Usage:
        machine1 = machine_times()
        server1 = cpu_split(self.server_pids)
        group1 = {name: cpu_seconds(pids) for name, pids in self.pids0.items()}
        bench1 = _self_cpu()
        t1 = time.monotonic()
        all1 = all_cpu()
        span = t1 - self.t0
        out = Usage(seconds=span, rss_kb=rss_kb(self.server_pids))
        out.server_cores = (sum(server1) - sum(self.server0)) / span
        out.system_cores = (server1[1] - self.server0[1]) / span
        out.groups = {name: (group1[name] - self.group0[name]) / span for name in group1}
        out.groups["this script"] = (bench1 - self.bench0) / span
        total = machine1[2] - self.machine0[2]
        out.idle_pct = 100.0 * (machine1[0] - self.machine0[0]) / total if total else 0.0
        out.busy_cores = (total - (machine1[0] - self.machine0[0])) / CLK_TCK / span
        out.irq_cores = (machine1[1] - self.machine0[1]) / CLK_TCK / span
        ours = {*self.server_pids, os.getpid(), *(p for ps in self.pids0.values() for p in ps)}
        # By name, processes born during the window included (a test suite elsewhere on the
        # box starts many short ones; those that also ended in it are not seen at all).
        by_name: collections.Counter[str] = collections.Counter()
        for pid, (name, ticks) in all1.items():
            if pid not in ours:
                by_name[name] += ticks - self.all0.get(pid, (name, 0))[1]
        out.others = ", ".join(
            f"{name} {ticks / CLK_TCK / span:.2f}"
            for name, ticks in by_name.most_common(4)
            if ticks > 0
        )
        return out


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def alive_pids(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    return [p.pid for p in procs if p.poll() is None]


# ---------------------------------------------------------------- 1. joins


@dataclass
class Join:
    status: int
    answer_ms: float | None = None  # POST -> 201 with the answer
    connected_ms: float | None = None  # POST -> ICE and DTLS up
    first_ms: float | None = None  # POST -> first keyframe complete at the viewer
    recv_ms: float | None = None  # POST -> aiortc's recv() returned it
    next_key_ms: float | None = None  # POST -> the next keyframe complete (no GOP cache)


def join_of(viewer: Viewer) -> Join:
    post = viewer.post or 0.0

    def since(at: float | None) -> float | None:
        return None if at is None or viewer.post is None else 1000 * (at - post)

    return Join(
        viewer.status,
        since(viewer.answer),
        since(viewer.connected),
        since(viewer.first_key(0)),
        since(viewer.frames[0] if viewer.frames else None),
        since(viewer.first_key(1)),
    )


def joins_part(procs: Procs, work: Path, whep: str, count: int, logs: FrameLogs) -> list[Join]:
    print(f"joins: {count} viewers, one every {JOIN_STAGGER} s ...", flush=True)
    path = work / "joins.frames"
    logs.watch(path)
    argv = peer_argv(
        whep, "--viewers", str(count), "--stagger", str(JOIN_STAGGER),
        "--seconds", str(JOIN_SECONDS), "--frame-log", str(path),
    )  # fmt: skip
    proc = procs.start(argv, work / "joins.log", cwd=REPO)
    try:
        proc.wait(count * JOIN_STAGGER + JOIN_SECONDS + 40)
    except subprocess.TimeoutExpired:
        print("  note: the joining viewers did not finish in time", flush=True)
    procs.stop([proc])
    logs.poll()
    return [join_of(v) for v in logs.of({path.name})]


# ---------------------------------------------------------------- 3. Chromium tabs

TAB_STATS = """(() => { const s = window.bridgeStats; return {mode: s.mode, playing: s.playing,
  frames: s.framesDecoded, freezes: s.freezeCount, first: s.firstFrameMs, width: s.frameWidth,
  jitter: s.jitterBufferDelayMs, dropped: s.framesDropped}; })()"""


@dataclass
class Tabs:
    tabs: int
    usage: Usage | None = None
    fps: list[float] = field(default_factory=list)
    freezes: list[int] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    jitter_ms: list[float] = field(default_factory=list)
    width: int = 0
    error: str = ""


async def _watch_tabs(server: Server, plan: Plan, work: Path, meter_groups: Any, out: Tabs) -> None:
    from tests.browser import Browser

    page_url = f"http://127.0.0.1:{server.http_port}/play.html?channel={CHANNEL}&player=webrtc"
    async with Browser.launch(work / "chromium") as browser:
        pages = [await browser.open(page_url) for _ in range(out.tabs)]
        for page in pages:
            await page.wait_for(
                "window.bridgeStats && window.bridgeStats.mode === 'webrtc' "
                "&& window.bridgeStats.playing",
                timeout=20,
            )
        await asyncio.sleep(plan.settle)
        tree = process_tree(browser.pid or 0)
        before = [await page.evaluate(TAB_STATS) for page in pages]
        meter = Meter(server.pids, {**meter_groups, "Chromium": lambda: tree})
        await asyncio.sleep(plan.window)
        out.usage = meter.stop()
        after = [await page.evaluate(TAB_STATS) for page in pages]
        for a, b in zip(before, after, strict=True):
            out.fps.append(((b["frames"] or 0) - (a["frames"] or 0)) / out.usage.seconds)
            out.freezes.append((b["freezes"] or 0) - (a["freezes"] or 0))
            if b["first"] is not None:
                out.first_ms.append(float(b["first"]))
            if b["jitter"] is not None:
                out.jitter_ms.append(float(b["jitter"]))
            out.width = b["width"] or 0
        for page in pages:  # the page's pagehide DELETEs its session
            await page.navigate("about:blank")


def tabs_part(
    server: Server, plan: Plan, work: Path, groups: dict[str, Callable[[], list[int]]]
) -> Tabs:
    out = Tabs(plan.browsers)
    print(f"Chromium: {plan.browsers} tab(s) on the play page ...", flush=True)
    try:
        asyncio.run(asyncio.wait_for(_watch_tabs(server, plan, work, groups, out), 120))
    except Exception as exc:  # the browser part is optional: report and go on
        out.error = f"{type(exc).__name__}: {exc}"[:300]
    wait_no_viewers(server)
    return out


# ---------------------------------------------------------------- 4. rounds of aiortc viewers


@dataclass
class Round:
    viewers: int
    usage: Usage
    reader_fps: float  # video frames per second the RTMP reader got
    ingest_fps: float  # video frames per second the server took from the publisher
    fps: list[float]  # one per viewer
    mbps: list[float]
    max_gap_ms: float
    reference: str  # what the latencies are measured from: "ingest" or "RTMP reader"
    latency_ms: list[float]  # reference -> the frame complete at the viewer
    sent_ms: list[float]  # reference -> the server sent its last packet (abs-send-time)
    reader_ms: list[float]  # reference -> the frame complete at the RTMP reader
    latency_viewers: int
    joins: list[Join]
    refused: int
    profile: str = ""

    @property
    def full_rate(self) -> int:
        # Of the frames the publisher sends (30/s): a server that falls behind slows the
        # publisher down through TCP, and its readers then get fewer frames too.
        return sum(1 for f in self.fps if f >= FULL_RATE * FPS)

    @property
    def in_time(self) -> bool:
        """Every viewer at full rate and the median frame complete at a viewer within the
        latency target."""
        return self.full_rate == self.viewers and (med(self.latency_ms) or 0) < TARGET_LATENCY_MS


def add_viewers(
    procs: Procs, work: Path, whep: str, add: int, per_process: int, seconds: float, tag: str
) -> tuple[list[subprocess.Popen[bytes]], set[str]]:
    """``add`` more viewers, at most ``per_process`` in one process, joining 0.2 s apart
    within a process."""
    started: list[subprocess.Popen[bytes]] = []
    names: set[str] = set()
    count = -(-add // per_process)
    for i in range(count):
        k = add // count + (1 if i < add % count else 0)
        path = work / f"{tag}-{i}.frames"
        argv = peer_argv(
            whep, "--viewers", str(k), "--stagger", "0.2", "--seconds", str(int(seconds)),
            "--frame-log", str(path),
        )  # fmt: skip
        started.append(procs.start(argv, work / f"{tag}-{i}.log", cwd=REPO))
        names.add(path.name)
    return started, names


def run_round(
    procs: Procs,
    work: Path,
    args: argparse.Namespace,
    plan: Plan,
    server: Server,
    whep: str,
    state: dict[str, Any],
    n: int,
    seconds_left: float,
) -> Round:
    logs: FrameLogs = state["logs"]
    clock: TagClock = state["clock"]
    tap: RtmpTap = state["tap"]
    add = n - state["viewers"]
    new, names = add_viewers(
        procs, work, whep, add, args.per_process, seconds_left + 60, f"round{n}"
    )
    for name in names:
        logs.watch(work / name)
    state["procs"] += new
    state["names"] |= names
    state["viewers"] = n

    def joined() -> bool:
        logs.poll()
        mine = logs.of(names)
        done = [v for v in mine if v.connected is not None or (v.status and v.status != 201)]
        return len(done) >= add or all(p.poll() is not None for p in new)

    try:
        wait_for(f"{n} viewers joined", joined, 30 + add * 0.2)
    except BenchError:
        print(f"  note: not every new viewer connected within {30 + add * 0.2:.0f} s", flush=True)
    time.sleep(plan.settle)
    meter = Meter(server.pids, state["groups"])
    time.sleep(plan.window)
    usage = meter.stop()
    t0, t1 = meter.t0, meter.t0 + usage.seconds
    time.sleep(0.7)  # the viewers flush their logs every 0.5 s
    logs.poll()
    reader_tags = list(clock.tags)

    def rate(tags: list[Tag]) -> float:
        return sum(1 for tag in tags if tag.kind == 9 and t0 <= tag.arrival <= t1) / usage.seconds

    # Latency from the server's ingest (the tap), else from the RTMP reader.
    tags, reference = (list(tap.tags), "ingest") if tap.tags else (reader_tags, "RTMP reader")
    video = {tag.ts: tag.arrival for tag in tags if tag.kind == 9}
    reader_ms: list[float] = []
    if reference == "ingest":
        shift = ts_offset(tags, reader_tags)
        for tag in reader_tags:
            at = video.get(tag.ts - shift) if tag.kind == 9 else None
            if at is not None and t0 <= tag.arrival <= t1:
                reader_ms.append(1000 * (tag.arrival - at))
    viewers = logs.of(state["names"])
    fps, mbps, gaps, lat, sent = [], [], [0.0], [], []
    matched = 0
    for viewer in viewers:
        if viewer.status != 201:
            continue
        inside = [t for t in viewer.frames if t0 <= t <= t1]
        fps.append(len(inside) / usage.seconds)
        gaps.extend(1000 * (b - a) for a, b in zip(inside, inside[1:], strict=False))
        if inside:
            gaps.append(1000 * (inside[0] - t0))
            gaps.append(1000 * (t1 - inside[-1]))
        size = sum(r[3] for r in viewer.rtp if t0 <= r[1] <= t1)
        mbps.append(8 * size / usage.seconds / 1e6)
        arrived, stamped = latencies(viewer, video, tags, t0, t1)
        matched += 1 if arrived else 0
        lat.extend(arrived)
        sent.extend(stamped)
    fps += [0.0] * max(0, n - len(fps))  # refused or never logged: no frames
    mbps += [0.0] * max(0, n - len(mbps))
    new_viewers = logs.of(names)
    return Round(
        viewers=n,
        usage=usage,
        reader_fps=rate(reader_tags),
        ingest_fps=rate(list(tap.tags)),
        fps=fps,
        mbps=mbps,
        max_gap_ms=max(gaps),
        reference=reference,
        latency_ms=lat,
        sent_ms=sent,
        reader_ms=reader_ms,
        latency_viewers=matched,
        joins=[join_of(v) for v in new_viewers if v.status == 201],
        refused=sum(1 for v in new_viewers if v.status != 201) + max(0, add - len(new_viewers)),
    )


# ---------------------------------------------------------------- 5. nginx-rtmp


@dataclass
class NginxRound:
    readers: int
    base_cores: float = 0.0
    usage: Usage | None = None
    pub_mbps: float = 0.0
    reader_mbps: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def mcores_per_reader(self) -> float:
        cores = self.usage.server_cores if self.usage else 0.0
        return 1000 * (cores - self.base_cores) / self.readers

    @property
    def mean_mbps(self) -> float:
        return sum(self.reader_mbps) / self.readers if self.readers else 0.0


def nginx_part(procs: Procs, work: Path, plan: Plan) -> NginxRound:
    out = NginxRound(plan.nginx_readers)
    if not os.path.exists(NGINX_RTMP) or not os.path.exists(NGINX):
        out.error = f"{NGINX_RTMP} missing (apt-get install nginx libnginx-mod-rtmp)"
        return out
    print(f"nginx-rtmp: {out.readers} rtmpdump readers of the same stream ...", flush=True)
    server = start_nginx(procs, work, "nginx", out.readers)
    url = f"rtmp://127.0.0.1:{server.port}/{CHANNEL}/{KEY}"
    readers: list[subprocess.Popen[bytes]] = []
    try:
        publisher, pub_peer = start_publisher(
            procs, work, server.port, url, plan.window * 3 + 60, "nginx"
        )
        time.sleep(1.0)
        cpu0 = cpu_seconds(server.pids)
        time.sleep(plan.baseline)
        out.base_cores = (cpu_seconds(server.pids) - cpu0) / plan.baseline
        for i in range(out.readers):
            readers.append(procs.start([RTMPDUMP, "-r", url, "--live", "-q", "-o", os.devnull]))
            if i % 10 == 9:
                time.sleep(0.1)
        time.sleep(plan.settle)
        socks0 = server_sockets(server.port)
        meter = Meter(
            server.pids,
            {"readers": lambda: alive_pids(readers), "publisher": lambda: [publisher.pid]},
        )
        time.sleep(plan.window)
        out.usage = meter.stop()
        socks1 = server_sockets(server.port)
        span = out.usage.seconds
        pub_mbps, out.reader_mbps = socket_mbps(socks0, socks1, pub_peer, span)
        if pub_mbps is not None:
            out.pub_mbps = pub_mbps
    finally:
        procs.stop([*readers, server.proc])
        procs.extra_pids.difference_update(server.pids)
    return out


# ---------------------------------------------------------------- report


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def present(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def versions() -> str:
    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        text = (done.stdout or done.stderr).strip().splitlines()
        return text[0] if text else "?"

    def package(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    rev = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    try:  # git diff only reads: the tree may hold work not committed yet
        changed = subprocess.run(
            ["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", "bridge"], timeout=20
        ).returncode
    except (OSError, subprocess.TimeoutExpired):
        changed = 0
    if changed == 1:
        rev += " + uncommitted changes to bridge/"
    chromium = first_line(["/usr/bin/chromium", "--version"])
    ffmpeg = " ".join(first_line([FFMPEG, "-version"]).split()[:3])
    nginx = first_line([NGINX, "-v"]).replace("nginx version: ", "")
    return (
        f"bridge {rev}, Python {platform.python_version()}, aiortc {package('aiortc')}, "
        f"av {package('av')}, {ffmpeg}, {nginx}, {chromium}"
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


@dataclass
class Results:
    started: str = ""
    setup: str = ""
    pub_mbps: float = 0.0
    joins: list[Join] = field(default_factory=list)
    base: Usage | None = None
    tabs: Tabs | None = None
    rounds: list[Round] = field(default_factory=list)
    stopped_because: str = ""
    nginx: NginxRound | None = None
    load: str = ""


def report(res: Results, plan: Plan) -> None:
    print(f"\n=== WebRTC (WHEP) benchmark, {res.started} ===")
    print(res.setup)
    if res.load:
        print(f"load average at start / end: {res.load}")
    base = res.base.server_cores if res.base else 0.0

    if res.joins:
        first = present([j.first_ms for j in res.joins])
        print(f"\n1. Joins, one viewer at a time ({len(res.joins)}, {JOIN_STAGGER} s apart), ms:")
        rows = [
            ("POST -> answer (201)", present([j.answer_ms for j in res.joins])),
            ("POST -> connected (ICE + DTLS)", present([j.connected_ms for j in res.joins])),
            ("POST -> first frame (keyframe in)", first),
            ("POST -> aiortc recv() returns it", present([j.recv_ms for j in res.joins])),
            ("POST -> next keyframe in", present([j.next_key_ms for j in res.joins])),
        ]
        print(f"  {'':36}{'median':>9}{'p90':>9}{'min':>9}{'max':>9}")
        for label, values in rows:
            print(
                f"  {label:36}{fmt(med(values), 0):>9}{fmt(pct(values, 0.9), 0):>9}"
                f"{fmt(min(values, default=None), 0):>9}{fmt(max(values, default=None), 0):>9}"
            )
        refused = sum(1 for j in res.joins if j.status != 201)
        if refused:
            print(f"  {refused} join(s) refused")

    if res.base:
        b = res.base
        print(
            f"\n2. Baseline (publisher and the RTMP reference reader, no WebRTC viewer): server "
            f"{b.server_cores:.3f} cores, RSS {b.rss_kb / 1024:.0f} MB, machine idle "
            f"{b.idle_pct:.0f} %"
        )

    if res.tabs:
        t = res.tabs
        print(f"\n3. Chromium, {t.tabs} tab(s) of the play page (WebRTC):")
        if t.error:
            print(f"  not measured: {t.error}")
        if t.usage:
            u = t.usage
            per = 1000 * (u.server_cores - base) / t.tabs
            print(
                f"  server {u.server_cores:.3f} cores = {per:.1f} milli-cores per tab above the "
                f"baseline (the channel's fixed WebRTC cost included, as in the 1-viewer round "
                f"below); Chromium {u.groups.get('Chromium', 0):.2f} cores; machine idle "
                f"{u.idle_pct:.0f} %"
            )
            print(
                f"  frames decoded per tab, fps: {', '.join(fmt(f) for f in t.fps)} "
                f"(width {t.width}); freezes: {', '.join(str(f) for f in t.freezes)}"
            )
            print(
                f"  first frame (play page: POST -> first frame composited), ms: "
                f"{', '.join(fmt(f, 0) for f in t.first_ms)}; Chromium's jitter buffer delay, ms: "
                f"{', '.join(fmt(f, 0) for f in t.jitter_ms)}"
            )

    if res.rounds:
        print(
            "\n4. aiortc viewers (own processes, frames counted, not decoded), window "
            f"{res.rounds[0].usage.seconds:.1f} s:"
        )
        cols = res.rounds
        width = 42
        print(f"  {'viewers':{width}}" + "".join(f"{r.viewers:>10}" for r in cols))
        prev: dict[int, Round] = {}
        for a, b_ in zip(cols, cols[1:], strict=False):
            prev[b_.viewers] = a

        def incr(r: Round) -> str:
            p = prev.get(r.viewers)
            if p is None:
                return "-"
            return fmt(
                1000 * (r.usage.server_cores - p.usage.server_cores) / (r.viewers - p.viewers)
            )

        rows2: list[tuple[str, Callable[[Round], str]]] = [
            ("server CPU, cores", lambda r: fmt(r.usage.server_cores, 3)),
            ("  of which system", lambda r: fmt(r.usage.system_cores, 3)),
            ("milli-cores / viewer above baseline", lambda r: fmt(1000 * (r.usage.server_cores - base) / r.viewers)),
            ("milli-cores / viewer, added viewers", incr),
            ("milli-cores / viewer / Mbps", lambda r: fmt(1000 * (r.usage.server_cores - base) / r.viewers / max(statistics.mean(r.mbps), 1e-9), 2)),
            ("viewers at full rate (>= 95 %)", lambda r: f"{r.full_rate}/{r.viewers}"),
            ("frames/s per viewer, min", lambda r: fmt(min(r.fps))),
            ("frames/s per viewer, median", lambda r: fmt(statistics.median(r.fps))),
            ("frames/s into the server (ingest)", lambda r: fmt(r.ingest_fps)),
            ("frames/s at the RTMP reader", lambda r: fmt(r.reader_fps)),
            ("longest gap between frames, ms", lambda r: fmt(r.max_gap_ms, 0)),
            ("video per viewer, Mbps (mean)", lambda r: fmt(statistics.mean(r.mbps), 2)),
            ("latency from: ", lambda r: r.reference),
            ("  -> WHEP viewer has it, median ms", lambda r: fmt(med(r.latency_ms))),
            ("    p90 ms", lambda r: fmt(pct(r.latency_ms, 0.9))),
            ("  -> server sent it (abs-send-time), median", lambda r: fmt(med(r.sent_ms))),
            ("    p90 ms", lambda r: fmt(pct(r.sent_ms, 0.9))),
            ("  -> RTMP reader has it, median ms", lambda r: fmt(med(r.reader_ms))),
            ("    p90 ms", lambda r: fmt(pct(r.reader_ms, 0.9))),
            ("  WHEP viewers matched / frames", lambda r: f"{r.latency_viewers}/{len(r.latency_ms)}"),
            ("joins: POST -> first frame, median", lambda r: fmt(med(present([j.first_ms for j in r.joins])), 0)),
            ("joins: POST -> first frame, max", lambda r: fmt(max(present([j.first_ms for j in r.joins]), default=None), 0)),
            ("joins refused or not connected", lambda r: str(r.refused)),
            ("server RSS, MB", lambda r: fmt(r.usage.rss_kb / 1024, 0)),
            ("viewer processes' CPU, cores", lambda r: fmt(r.usage.groups.get("viewers", 0), 2)),
            ("  per viewer, milli-cores", lambda r: fmt(1000 * r.usage.groups.get("viewers", 0) / r.viewers)),
            ("publisher CPU, cores", lambda r: fmt(r.usage.groups.get("publisher", 0), 2)),
            ("RTMP reader + this script, cores", lambda r: fmt(r.usage.groups.get("RTMP reader", 0) + r.usage.groups.get("this script", 0), 2)),
            ("machine idle, %", lambda r: fmt(r.usage.idle_pct, 0)),
            ("irq + softirq, cores", lambda r: fmt(r.usage.irq_cores, 2)),
            ("other processes, cores", lambda r: fmt(r.usage.other_cores, 2)),
        ]  # fmt: skip
        for label, cell in rows2:
            print(f"  {label:{width}}" + "".join(f"{cell(r):>10}" for r in cols))
        for r in cols:
            if r.usage.others:
                print(f"  busiest other processes, {r.viewers} viewers: {r.usage.others}")
        if res.stopped_because:
            print(f"  stopped: {res.stopped_because}")
        for r in cols:
            if r.profile:
                print(f"\n  bridge with {r.viewers} viewers, {r.profile}")

    nx = res.nginx
    if nx:
        print(f"\n5. nginx-rtmp, {nx.readers} rtmpdump readers of the same live stream:")
        if nx.error:
            print(f"  not measured: {nx.error}")
        elif nx.usage:
            full = sum(1 for m in nx.reader_mbps if m >= FULL_RATE * nx.pub_mbps)
            print(
                f"  nginx {nx.usage.server_cores:.3f} cores ({nx.base_cores:.3f} with 0 readers): "
                f"{nx.mcores_per_reader:.2f} milli-cores per reader above 0 readers, "
                f"{nx.mcores_per_reader / max(nx.mean_mbps, 1e-9):.3f} per reader per Mbps; "
                f"publisher in {nx.pub_mbps:.2f} Mbps, per reader {nx.mean_mbps:.2f} Mbps, "
                f"{full}/{nx.readers} at full rate; machine idle {nx.usage.idle_pct:.0f} %"
            )

    summary(res, plan, base)


def fit(rounds: list[Round]) -> tuple[float, float] | None:
    """Least squares of server cores against viewers: (cores per viewer, cores at 0)."""
    if len(rounds) < 2:
        return None
    xs = [float(r.viewers) for r in rounds]
    ys = [r.usage.server_cores for r in rounds]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope, my - slope * mx


def summary(res: Results, plan: Plan, base: float) -> None:
    print("\nSummary against the issue's targets (2 cores, everything on this machine):")
    width = 44
    print(f"  {'':{width}}{'bridge WHEP':>16}{'target':>10}{'nginx-rtmp':>14}")
    good = [r for r in res.rounds if r.full_rate == r.viewers]
    in_time = [r for r in good if r.in_time]
    nx = res.nginx if res.nginx and res.nginx.usage else None
    target = f"<= {TARGET_MCORES:.0f}"
    if res.rounds:
        # The headline: the most viewers the box served in time (a starved server's figures
        # are distorted: it batches more per wake-up while everything waits).
        last = in_time[-1] if in_time else good[-1] if good else res.rounds[0]
        per = 1000 * (last.usage.server_cores - base) / last.viewers
        ref = f"~{NGINX_REFERENCE * res.pub_mbps:.2f} (ref)" if res.pub_mbps else "-"
        nginx_per = f"{nx.mcores_per_reader:.2f}" if nx else ref
        label = f"CPU per viewer, milli-cores ({last.viewers} viewers)"
        print(f"  {label:{width}}{per:>16.1f}{target:>10}{nginx_per:>14}")
        line = fit(good)
        if line is not None:
            slope, at_zero = line
            label = f"  each added viewer (fit, {good[0].viewers}-{good[-1].viewers})"
            print(f"  {label:{width}}{1000 * slope:>16.1f}{target:>10}")
            label = "  the channel's fixed WebRTC cost (fit)"
            print(f"  {label:{width}}{1000 * (at_zero - base):>16.1f}")
        most = str(good[-1].viewers) if good else "0"
        if good and good[-1] is res.rounds[-1]:
            most = f">= {most}"
        print(f"  {'most viewers at full rate, 2 cores (this box)':{width}}{most:>16}")
        most = str(in_time[-1].viewers) if in_time else "0"
        if in_time and in_time[-1] is res.rounds[-1]:
            most = f">= {most}"
        label = f"  and median latency < {TARGET_LATENCY_MS:.0f} ms"
        print(f"  {label:{width}}{most:>16}")
        if line is not None and line[0] > 0:
            one_core = (1.0 - line[1]) / line[0]
            label = "  server alone, one core (extrapolated)"
            print(f"  {label:{width}}{one_core:>16.0f}")
    first = present([j.first_ms for j in res.joins])
    if first:
        cell = f"{fmt(med(first), 0)} / {fmt(pct(first, 0.9), 0)}"
        label = "POST -> first frame, ms, median / p90"
        print(f"  {label:{width}}{cell:>16}{'<= ' + fmt(TARGET_FIRST_MS, 0):>10}")
        nxt = present([j.next_key_ms for j in res.joins])
        conn = present([j.connected_ms for j in res.joins])
        if nxt:
            cell = f"{fmt(med(nxt), 0)} / {fmt(pct(nxt, 0.9), 0)}"
            print(f"  {'  waiting for the next keyframe instead':{width}}{cell:>16}")
        if conn:
            expect = (med(conn) or 0) + 1000 * GOP_SECONDS / 2
            print(f"  {'  = connected + GOP/2 on average':{width}}{expect:>16.0f}")
    if res.rounds:
        r0 = res.rounds[0]
        limit = f"< {TARGET_LATENCY_MS:.0f}"
        shown = [r0] + ([good[-1]] if good and good[-1] is not r0 else [])
        for r in shown:
            who = f"{r.viewers} viewer{'s' if r.viewers > 1 else ''}"
            rows = (
                (f"latency, ms, median / p90, {who}: from {r.reference}", None, ""),
                ("  to the server sending it (WHEP)", r.sent_ms, limit),
                ("  to the WHEP viewer having it", r.latency_ms, limit),
                ("  to the RTMP reader having it", r.reader_ms, ""),
            )
            for label, values, aim in rows:
                if values is None:
                    print(f"  {label}")
                    continue
                cell = f"{fmt(med(values))} / {fmt(pct(values, 0.9))}"
                print(f"  {label:{width}}{cell:>16}{aim:>10}")
    print(
        "\nLatency, all on one machine and one clock (CLOCK_MONOTONIC; abs-send-time on the wall"
        " clock,\nconverted where it is read). Ingest: the publisher reaches bridge through a"
        " relay in this script,\nwhich notes when the last byte of each RTMP message has been"
        " handed to bridge's socket. The server\nsending it: the abs-send-time header extension"
        " aiortc writes into each RTP packet as it sends it,\nread by the viewer (the frame's"
        " last packet). The WHEP viewer having it: the aiortc viewer's\nreceiver got the"
        " frame's last RTP packet (after SRTP, before aiortc's jitter buffer, which holds a\n"
        "frame until the next one starts). The RTMP reader having it: one rtmpdump (stdbuf -o0)"
        " whose FLV\ntags this script times as they leave its stdout, RTMP_WRITE_MERGE_MS=0"
        " (the default 20 would hold\nRTMP players up to 20 ms more). Frames are paired by"
        " timestamp: RTP = origin + 90 x FLV ms, the\norigin found from delta frames of equal"
        " size. 'server sending it' is what bridge adds; 'viewer\nhaving it' adds loopback UDP"
        " and the viewer's own stack, small when idle, not on a saturated box."
    )
    print(
        "CPU per viewer: server CPU (utime + stime of its process, /proc) over the window minus"
        " the baseline,\n/ viewers; 'each added viewer' is the slope of a straight line through"
        " the rounds at full rate,\nwhich leaves out the channel's fixed WebRTC cost (its bus"
        " reader, the AAC -> Opus encoder). The\nviewers, the publisher and Chromium share the"
        " 2 cores with the server: 'most viewers' is a bound of\nthis box, not of the server"
        " alone; bridge's WebRTC sending runs on its one event-loop thread."
    )


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 1.5 minutes: 1,5,10 viewers")
    parser.add_argument("--viewers", default=None, help="viewer counts, e.g. 1,5,10,15,20,30,40")
    parser.add_argument("--window", type=float, default=None, help="seconds measured per round")
    parser.add_argument("--settle", type=float, default=None, help="seconds before a window")
    parser.add_argument("--joins", type=int, default=None, help="one-at-a-time joins (part 1)")
    parser.add_argument("--browsers", type=int, default=None, help="Chromium tabs (0 = skip)")
    parser.add_argument(
        "--nginx-readers", type=int, default=None, help="RTMP readers of nginx-rtmp (0 = skip)"
    )
    parser.add_argument(
        "--per-process", type=int, default=5, help="aiortc viewers per viewer process"
    )
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole run")
    parser.add_argument(
        "--profile", type=float, default=0.0, help="py-spy bridge this long after the last round"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    try:
        counts = (
            tuple(int(v) for v in args.viewers.split(",") if v.strip())
            if args.viewers
            else base.counts
        )
    except ValueError:
        parser.error("--viewers takes numbers, e.g. 1,5,10")
    plan = Plan(
        counts=tuple(sorted(set(counts))),
        window=args.window if args.window is not None else base.window,
        settle=args.settle if args.settle is not None else base.settle,
        baseline=base.baseline,
        joins=args.joins if args.joins is not None else base.joins,
        browsers=args.browsers if args.browsers is not None else base.browsers,
        nginx_readers=args.nginx_readers if args.nginx_readers is not None else base.nginx_readers,
        budget=args.budget if args.budget is not None else base.budget,
    )
    if not plan.counts or any(not 1 <= c <= 500 for c in plan.counts):
        parser.error("--viewers: each between 1 and 500")
    if not 2 <= plan.window <= 300 or not 0 <= plan.settle <= 60:
        parser.error("--window 2..300, --settle 0..60")
    if not 0 <= plan.joins <= 50 or not 0 <= plan.browsers <= 8:
        parser.error("--joins 0..50, --browsers 0..8")
    if not 0 <= plan.nginx_readers <= 1000 or not 1 <= args.per_process <= 50:
        parser.error("--nginx-readers 0..1000, --per-process 1..50")
    if not 30 <= plan.budget <= 3600 or not 0 <= args.profile <= 60:
        parser.error("--budget 30..3600, --profile 0..60")
    require_tools(parser, FFMPEG, RTMPDUMP, STDBUF)

    exit_on_signals()
    started = time.monotonic()
    deadline = started + plan.budget
    procs = Procs()
    hub = PipeHub()
    tap: RtmpTap | None = None
    work = Path(tempfile.mkdtemp(prefix="webrtc-bench-"))
    res = Results(started=time.strftime("%Y-%m-%d %H:%M"))
    load0 = os.getloadavg()
    status = 0
    try:
        res.setup = (
            f"{os.cpu_count()} CPUs ({cpu_model()}); {versions()}\n"
            f"publisher: ffmpeg testsrc2 {VIDEO_SIZE} {FPS} fps, libx264 superfast "
            f"{VIDEO_KBPS} kb/s (maxrate), GOP {int(GOP_SECONDS * FPS)}, no B-frames, AAC "
            f"{AUDIO_KBPS} kb/s, -re, over RTMP; work dir {work}"
        )
        print(res.setup, flush=True)
        server = start_server(procs, work)
        rtmp_url = f"rtmp://127.0.0.1:{server.port}/{CHANNEL}/{KEY}"
        whep = f"http://127.0.0.1:{server.http_port}/whep/{CHANNEL}"
        tap = RtmpTap(server.port)  # the publisher goes through it: ingest times
        publisher, pub_peer = start_publisher(
            procs,
            work,
            server.port,
            f"rtmp://127.0.0.1:{tap.port}/{CHANNEL}/{KEY}",
            plan.budget + 120,
            "bridge",
        )
        clock = TagClock("RTMP reader")
        reader_argv = [STDBUF, "-o0", RTMPDUMP, "-r", rtmp_url, "--live", "-q", "-o", "-"]
        reader = procs.start(reader_argv, work / "rtmp-reader.log", stdout_pipe=True)
        hub.add(reader, clock)
        time.sleep(2.0)
        logs = FrameLogs()

        if plan.joins:
            res.joins = joins_part(procs, work, whep, plan.joins, logs)
            wait_no_viewers(server)
            time.sleep(1.0)

        groups: dict[str, Callable[[], list[int]]] = {
            "publisher": lambda: [publisher.pid],
            "RTMP reader": lambda: [reader.pid],
        }
        print(f"baseline: {plan.baseline:.0f} s without viewers ...", flush=True)
        socks0 = server_sockets(server.port)
        meter = Meter(server.pids, groups)
        time.sleep(plan.baseline)
        res.base = meter.stop()
        socks1 = server_sockets(server.port)
        if pub_peer in socks0 and pub_peer in socks1:
            received = socks1[pub_peer].received - socks0[pub_peer].received
            res.pub_mbps = 8 * received / res.base.seconds / 1e6
            print(f"  publisher in: {res.pub_mbps:.2f} Mbps", flush=True)

        if plan.browsers:
            res.tabs = tabs_part(server, plan, work, groups)

        state: dict[str, Any] = {
            "logs": logs,
            "clock": clock,
            "tap": tap,
            "viewers": 0,
            "procs": [],
            "names": set(),
        }
        state["groups"] = {**groups, "viewers": lambda: alive_pids(state["procs"])}
        nginx_reserve = plan.window + plan.settle + plan.baseline + 15 if plan.nginx_readers else 0
        for n in plan.counts:
            add = n - state["viewers"]
            need = plan.settle + plan.window + 10 + add * 0.25 + args.profile
            left = deadline - time.monotonic()
            if need + nginx_reserve > left:
                res.stopped_because = (
                    f"{n} viewers would not fit in the --budget of {plan.budget:.0f} s"
                )
                break
            print(f"round: {n} viewers ...", flush=True)
            done = run_round(procs, work, args, plan, server, whep, state, n, left)
            res.rounds.append(done)
            print(
                f"  server {done.usage.server_cores:.3f} cores, {done.full_rate}/{n} viewers at "
                f"full rate, {done.reference} -> viewer median {fmt(med(done.latency_ms))} ms, "
                f"machine idle {done.usage.idle_pct:.0f} %",
                flush=True,
            )
            if publisher.poll() is not None:
                raise BenchError(f"the publisher exited ({publisher.returncode})")
            if done.full_rate < n:
                short = n - done.full_rate
                res.stopped_because = (
                    f"at {n} viewers {short} got less than {FULL_RATE:.0%} of the frames"
                )
                break
        if args.profile > 0 and res.rounds:  # after the windows: py-spy disturbs what it samples
            last = res.rounds[-1]
            last.profile = profile(
                procs, work, server.proc.pid, args.profile, f"bridge-{last.viewers}"
            )
        procs.stop([*state["procs"], reader, publisher, server.proc])
        tap.close()
        if tap.error:
            print(f"  note: the ingest tap: {tap.error}", flush=True)

        if plan.nginx_readers:
            res.nginx = nginx_part(procs, work, plan)
    except BenchError as exc:
        print(f"error: {exc} (logs in {work})", file=sys.stderr)
        args.keep = True
        status = 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        status = 130
    finally:
        procs.stop_all()
        hub.close()
        if tap is not None:
            tap.close()
        load1 = os.getloadavg()
        res.load = f"{load0[0]:.2f} / {load1[0]:.2f}"
        report(res, plan)
        print(f"\nrun took {time.monotonic() - started:.0f} s")
        if args.keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
