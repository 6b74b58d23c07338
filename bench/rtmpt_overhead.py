#!/usr/bin/env python3
"""RTMPT overhead benchmark: what a reader costs bridge over RTMPT against plain RTMP, and the
latency the tunnel adds, side by side, on 127.0.0.1.

One bridge server (RTMP and HTTP listeners) and one ffmpeg publisher (``-re -c copy``, the
looped ~4 Mbps 1080p30 source of rtmp_fanout.py). Then, in turn:

1. N ``rtmpdump`` readers over ``rtmp://``, then N over ``rtmpt://``: the server's CPU over a
   fixed window (utime + stime from /proc, as rtmp_fanout.py counts it) and the rate each
   reader delivers (bytes of FLV out of rtmpdump's stdout, read here through a pipe, and the
   server's TCP counters from ``ss``);
2. one reader of each kind at once (rtmpdump and ffmpeg, each over RTMP and RTMPT), timing
   every FLV tag as it comes out of each reader's pipe; tags are matched by (type, timestamp)
   and the differences of arrival times are the latency the tunnel adds.

    cd /work/main && python bench/rtmpt_overhead.py --readers 50 --window 20

See bench/README.md for what every figure means.
"""

from __future__ import annotations

import argparse
import collections
import fcntl
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import (  # bench/common.py, next to this script
    CHANNEL,
    CLK_TCK,
    FFMPEG,
    KEY,
    RTMPDUMP,
    SOURCE,
    BenchError,
    Procs,
    Server,
    Sock,
    all_cpu,
    cpu_seconds,
    cpu_split,
    describe,
    exit_on_signals,
    machine_times,
    make_source,
    profile,
    require_tools,
    rss_kb,
    server_sockets,
    start_bridge,
    wait_for,
)

STDBUF = shutil.which("stdbuf") or "/usr/bin/stdbuf"
FULL_RATE = 0.95  # a reader whose FLV rate is >= 95 % of the publisher's is "at full rate"
RTMPT_EXPIRY = 9.0  # bridge drops a tunnel session 8 s after its last request (tunnel.py)
MAX_TAGS = 100_000  # per timed reader: ~20 minutes of this source, far past any window
PIPE_SIZE = 1 << 20  # so a reader never blocks on its pipe while our thread is busy
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# librtmp's idle POST to 127.0.0.1:PORT with bridge's 24-character session id: 218 bytes of
# request line and headers + the 1-byte body (seen with strace); most POSTs are idles.
IDLE_POST_BYTES = 219


# ---------------------------------------------------------------- reading the readers


@dataclass(frozen=True)
class Tag:
    kind: int  # 8 audio, 9 video
    ts: int  # FLV timestamp, ms
    size: int  # body size
    arrival: float  # time.monotonic() when the tag's last byte came out of the pipe


class TagClock:
    """Arrival time of every audio and video tag of an FLV byte stream fed in pieces.

    Sequence headers and script tags are left out: a reader gets its own, stamped when it
    joined, so they do not match between readers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tags: list[Tag] = []
        self.error = ""
        self._buf = bytearray()
        self._skip = -1  # bytes of FLV header left to skip; -1 until the header is read

    def feed(self, data: bytes, now: float) -> None:
        if self.error:
            return
        buf = self._buf
        buf += data
        if self._skip < 0:
            if len(buf) < 9:
                return
            if buf[:3] != b"FLV":
                self.error = "output is not FLV"
                buf.clear()
                return
            self._skip = int.from_bytes(buf[5:9], "big") + 4  # header + PreviousTagSize0
        if self._skip:
            gone = min(self._skip, len(buf))
            del buf[:gone]
            self._skip -= gone
        off = 0
        while len(buf) - off >= 11:
            size = int.from_bytes(buf[off + 1 : off + 4], "big")
            end = off + 11 + size + 4
            if end > len(buf):
                break
            kind = buf[off] & 0x1F
            if kind in (8, 9) and size >= 2 and not _is_config(kind, buf[off + 11], buf[off + 12]):
                if len(self.tags) < MAX_TAGS:
                    ts = int.from_bytes(buf[off + 4 : off + 7], "big") | (buf[off + 7] << 24)
                    self.tags.append(Tag(kind, ts, size, now))
            off = end
        del buf[:off]


def _is_config(kind: int, b0: int, b1: int) -> bool:
    """An AVC or AAC sequence header (legacy FLV: the source is H.264 + AAC)."""
    if kind == 9:
        return (b0 & 0x0F) == 7 and b1 == 0
    return (b0 >> 4) == 10 and b1 == 0


class PipeHub:
    """One thread reads the stdout pipes of every reader: it counts each reader's bytes and,
    for readers with a ``TagClock``, times every tag."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._pending: list[tuple[subprocess.Popen[bytes], TagClock | None]] = []
        self._counts: dict[int, int] = {}  # pid -> bytes read so far
        self._buf = bytearray(1 << 18)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipe-hub", daemon=True)
        self._thread.start()

    def add(self, proc: subprocess.Popen[bytes], clock: TagClock | None = None) -> None:
        assert proc.stdout is not None
        try:  # a larger pipe: the reader must not stall on us
            fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        with self._lock:
            self._counts[proc.pid] = 0
            self._pending.append((proc, clock))

    def counts(self) -> dict[int, int]:
        with self._lock:
            return dict(self._counts)

    def _run(self) -> None:
        view = memoryview(self._buf)
        while not self._stop.is_set():
            with self._lock:
                pending, self._pending = self._pending, []
            for proc, clock in pending:
                self._sel.register(proc.stdout, selectors.EVENT_READ, (proc.pid, clock))  # type: ignore[arg-type]
            if not self._sel.get_map():
                time.sleep(0.05)
                continue
            for key, _ in self._sel.select(0.1):
                pid, clock = key.data
                try:
                    n = os.readv(key.fd, [self._buf])
                except OSError:
                    n = 0
                if n == 0:  # the reader exited
                    self._sel.unregister(key.fileobj)
                    key.fileobj.close()  # type: ignore[union-attr]
                    continue
                now = time.monotonic()
                with self._lock:
                    self._counts[pid] += n
                if clock is not None:
                    clock.feed(bytes(view[:n]), now)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        for key in list(self._sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._sel.close()
        with self._lock:
            for proc, _ in self._pending:
                proc.stdout.close()  # type: ignore[union-attr]
            self._pending.clear()


# ---------------------------------------------------------------- one CPU phase


@dataclass
class Phase:
    proto: str  # "rtmp" or "rtmpt"
    readers: int
    window: float
    cpu_s: float = 0.0
    system_s: float = 0.0
    base_cores: float = 0.0
    rss_kb: int = 0
    base_rss_kb: int = 0
    pub_mbps: float = 0.0
    flv_mbps: list[float] = field(default_factory=list)  # out of each rtmpdump, per reader
    wire_mbps: list[float] = field(default_factory=list)  # server -> reader TCP, per connection
    up_kbps: list[float] = field(default_factory=list)  # reader -> server TCP, per connection
    conns: tuple[int, int] = (0, 0)  # the readers' TCP connections at window start and end
    alive: int = 0
    readers_cores: float = 0.0
    publisher_cores: float = 0.0
    bench_cores: float = 0.0  # this script (its pipe-reading thread)
    idle_pct: float = 0.0
    busy_cores: float = 0.0
    irq_cores: float = 0.0
    others: str = ""
    profile: str = ""

    @property
    def cores(self) -> float:
        return self.cpu_s / self.window

    @property
    def mcores_per_reader(self) -> float:
        return 1000 * self.cores / self.readers

    @property
    def added_mcores_per_reader(self) -> float:
        return 1000 * (self.cores - self.base_cores) / self.readers

    @property
    def mean_flv_mbps(self) -> float:
        return sum(self.flv_mbps) / self.readers

    @property
    def mcores_per_reader_mbps(self) -> float:
        mbps = self.mean_flv_mbps
        return self.mcores_per_reader / mbps if mbps else float("inf")

    @property
    def kb_per_reader(self) -> float:
        return (self.rss_kb - self.base_rss_kb) / self.readers

    @property
    def full_rate(self) -> int:
        return sum(1 for mbps in self.flv_mbps if mbps >= FULL_RATE * self.pub_mbps)

    @property
    def other_cores(self) -> float:
        busy = self.busy_cores - self.irq_cores
        return busy - self.cores - self.readers_cores - self.publisher_cores - self.bench_cores


def url(server: Server, proto: str) -> str:
    if proto == "rtmpt":
        return f"rtmpt://127.0.0.1:{server.http_port}/{CHANNEL}/{KEY}"
    return f"rtmp://127.0.0.1:{server.port}/{CHANNEL}/{KEY}"


def run_phase(
    procs: Procs,
    hub: PipeHub,
    work: Path,
    args: argparse.Namespace,
    server: Server,
    publisher: subprocess.Popen[bytes],
    pub_peer: str,
    proto: str,
) -> Phase:
    n = args.readers
    result = Phase(proto, n, args.window)
    port = server.http_port if proto == "rtmpt" else server.port

    # Baseline: the publisher alone.
    base_s = min(5.0, args.window)
    cpu0 = cpu_seconds(server.pids)
    time.sleep(base_s)
    result.base_cores = (cpu_seconds(server.pids) - cpu0) / base_s
    result.base_rss_kb = rss_kb(server.pids)

    readers: list[subprocess.Popen[bytes]] = []
    try:
        argv = [RTMPDUMP, "-r", url(server, proto), "--live", "-q", "-o", "-"]
        for i in range(n):
            reader = procs.start(argv, work / f"readers-{proto}.log", stdout_pipe=True)
            readers.append(reader)
            hub.add(reader)
            if i % 10 == 9:
                time.sleep(0.1)
        time.sleep(args.settle)
        started = sum(1 for r in readers if r.poll() is None)
        if started < n:
            print(f"  note: {n - started} of {n} readers exited while starting", flush=True)
        if publisher.poll() is not None:
            raise BenchError(f"the publisher exited ({publisher.returncode}); see {work}")

        reader_pids = [r.pid for r in readers]
        me = [os.getpid()]

        def snapshot() -> tuple[
            dict[str, Sock], dict[str, Sock], dict[int, int], tuple[float, float], list[float]
        ]:
            return (
                server_sockets(port),
                server_sockets(server.port) if proto == "rtmpt" else {},
                hub.counts(),
                cpu_split(server.pids),
                [
                    cpu_seconds(reader_pids),
                    cpu_seconds([publisher.pid]),
                    cpu_seconds(me),
                    *machine_times(),
                ],
            )

        a0 = all_cpu()
        s0, p0, b0, c0, m0 = snapshot()
        t0 = time.monotonic()
        time.sleep(args.window)
        s1, p1, b1, c1, m1 = snapshot()
        elapsed = time.monotonic() - t0
        a1 = all_cpu()
        result.window = elapsed
        result.rss_kb = rss_kb(server.pids)
        result.cpu_s = sum(c1) - sum(c0)
        result.system_s = c1[1] - c0[1]
        result.readers_cores = (m1[0] - m0[0]) / elapsed
        result.publisher_cores = (m1[1] - m0[1]) / elapsed
        result.bench_cores = (m1[2] - m0[2]) / elapsed
        total = m1[5] - m0[5]
        result.idle_pct = 100.0 * (m1[3] - m0[3]) / total if total else 0.0
        result.busy_cores = (total - (m1[3] - m0[3])) / CLK_TCK / elapsed
        result.irq_cores = (m1[4] - m0[4]) / CLK_TCK / elapsed
        ours = {*server.pids, *reader_pids, publisher.pid, os.getpid()}
        used = sorted(
            ((a1[pid][1] - a0[pid][1], a1[pid][0]) for pid in a1 if pid in a0 and pid not in ours),
            reverse=True,
        )
        result.others = ", ".join(
            f"{name} {ticks / CLK_TCK / elapsed:.2f}" for ticks, name in used[:4] if ticks > 0
        )
        result.alive = sum(1 for r in readers if r.poll() is None)
        pub0, pub1 = (p0, p1) if proto == "rtmpt" else (s0, s1)
        if pub_peer in pub0 and pub_peer in pub1:
            result.pub_mbps = (
                8 * (pub1[pub_peer].received - pub0[pub_peer].received) / elapsed / 1e6
            )
        result.flv_mbps = [
            8 * (b1.get(pid, 0) - b0.get(pid, 0)) / elapsed / 1e6 for pid in reader_pids
        ]
        peers = [p for p in s1 if p != pub_peer and p in s0]
        result.wire_mbps = [8 * (s1[p].acked - s0[p].acked) / elapsed / 1e6 for p in peers]
        result.up_kbps = [8 * (s1[p].received - s0[p].received) / elapsed / 1e3 for p in peers]
        result.conns = (sum(1 for p in s0 if p != pub_peer), sum(1 for p in s1 if p != pub_peer))
        if args.profile > 0:
            result.profile = profile(procs, work, server.proc.pid, args.profile, proto)
            raw = work / f"{proto}.pyspy.txt"
            if raw.exists():
                result.profile += "\n" + breakdown(raw)
    finally:
        procs.stop(readers)
    return result


def _frame(frame: str) -> str:
    """``Func (some/dir/file.py:12)`` -> ``Func (file.py)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].rsplit('/', 1)[-1]})" if where else name


def _module(frame: str) -> str:
    """``Func (.../aiohttp/web_protocol.py:12)`` -> ``aiohttp/web_protocol.py``."""
    where = frame.partition(" (")[2].rsplit(":", 1)[0]
    return "/".join(where.split("/")[-2:]) if where else frame


def breakdown(raw: Path) -> str:
    """A py-spy raw profile grouped two ways: the event-loop callback each sample was under
    (inclusive), and the module of the innermost frame (self). Samples whose stack py-spy
    read half-way (--nonblocking races the interpreter) are counted apart."""
    callbacks: collections.Counter[str] = collections.Counter()
    modules: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        total += n
        modules[_module(frames[-1])] += n
        if not frames[0].startswith("_run_module_as_main"):
            callbacks["(stack read half-way)"] += n
            continue
        at = next((i for i, f in enumerate(frames) if f.startswith("Handle._run ")), -1)
        if at < 0:
            callbacks["(event loop: select, timers, scheduling)"] += n
        else:
            callbacks[_frame(frames[at + 1]) if at + 1 < len(frames) else "Handle._run"] += n
    lines = ["  by event-loop callback (inclusive):"]
    for name, n in callbacks.most_common(8):
        lines.append(f"    {100 * n / max(total, 1):5.1f}%  {name}")
    lines.append("  by module of the innermost frame (self):")
    for name, n in modules.most_common(10):
        lines.append(f"    {100 * n / max(total, 1):5.1f}%  {name}")
    return "\n".join(lines)


# ---------------------------------------------------------------- latency


@dataclass
class Delay:
    label: str
    matched: int = 0
    reference: int = 0  # tags of the reference reader in the window
    offset_ms: int = 0  # timestamp offset found between the two outputs
    deltas_ms: list[float] = field(default_factory=list)
    note: str = ""


def ts_offset(ref: list[Tag], other: list[Tag]) -> int:
    """How ``other``'s timestamps differ from ``ref``'s (0 when both keep the stream's):
    the commonest difference between video tags of equal size that arrived close together.
    A client that rebases timestamps (ffmpeg without -copyts) is still matched this way."""
    by_size: dict[int, list[Tag]] = collections.defaultdict(list)
    for tag in ref:
        if tag.kind == 9:
            by_size[tag.size].append(tag)
    votes: collections.Counter[int] = collections.Counter()
    for tag in other:
        if tag.kind == 9:
            for mate in by_size.get(tag.size, ()):
                if abs(mate.arrival - tag.arrival) < 3.0:
                    votes[tag.ts - mate.ts] += 1
    return votes.most_common(1)[0][0] if votes else 0


def tunnel_delay(label: str, ref: TagClock, other: TagClock, t0: float, t1: float) -> Delay:
    """other's arrival - ref's arrival, in ms, for every tag of ref's that came in [t0, t1]."""
    result = Delay(label)
    for clock in (ref, other):
        if clock.error or not clock.tags:
            result.note = f"{clock.name}: {clock.error or 'no tags'}"
            return result
    result.offset_ms = ts_offset(ref.tags, other.tags)
    seen: dict[tuple[int, int], float] = {}
    for tag in other.tags:
        seen.setdefault((tag.kind, tag.ts - result.offset_ms), tag.arrival)
    keys: set[tuple[int, int]] = set()
    for tag in ref.tags:
        key = (tag.kind, tag.ts)
        if not t0 <= tag.arrival <= t1 or key in keys:
            continue
        keys.add(key)
        result.reference += 1
        if key in seen:
            result.deltas_ms.append(1000 * (seen[key] - tag.arrival))
    result.matched = len(result.deltas_ms)
    return result


def run_latency(
    procs: Procs, hub: PipeHub, work: Path, args: argparse.Namespace, server: Server
) -> tuple[list[Delay], dict[str, float]]:
    """One reader of each kind at once; every tag timed as it leaves the reader's pipe."""
    # stdbuf -o0: rtmpdump writes with stdio, which would hold a tag's tail in its buffer
    # until the next tag comes. ffmpeg: -flush_packets 1 for the same reason, -copyts to keep
    # the stream's timestamps, -fflags nobuffer so it does not queue packets while probing.
    ffmpeg = [FFMPEG, *"-hide_banner -loglevel error -nostats -fflags nobuffer -i".split()]
    ffmpeg_out = "-map 0 -c copy -copyts -flush_packets 1 -f flv -".split()
    kinds = {
        "rtmpdump RTMP": [STDBUF, "-o0", RTMPDUMP, "-r", url(server, "rtmp"), "--live", "-q", "-o", "-"],
        "rtmpdump RTMPT": [STDBUF, "-o0", RTMPDUMP, "-r", url(server, "rtmpt"), "--live", "-q", "-o", "-"],
        "ffmpeg RTMP": [*ffmpeg, url(server, "rtmp"), *ffmpeg_out],
        "ffmpeg RTMPT": [*ffmpeg, url(server, "rtmpt"), *ffmpeg_out],
    }  # fmt: skip
    if args.no_ffmpeg_readers:
        kinds = {k: v for k, v in kinds.items() if k.startswith("rtmpdump")}
    clocks: dict[str, TagClock] = {}
    readers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, argv in kinds.items():
            clocks[name] = TagClock(name)
            log = work / f"latency-{name.replace(' ', '-')}.log"
            readers[name] = procs.start(argv, log, stdout_pipe=True)
            hub.add(readers[name], clocks[name])
        time.sleep(max(args.settle, 5.0))  # ffmpeg probes the stream for a few seconds
        t0 = time.monotonic()
        time.sleep(args.latency_window)
        t1 = time.monotonic()
        counts0 = {name: len(clock.tags) for name, clock in clocks.items()}
        rates = {}
        for name, clock in clocks.items():
            inside = [t for t in clock.tags[: counts0[name]] if t0 <= t.arrival <= t1]
            rates[name] = len(inside) / (t1 - t0)
            if readers[name].poll() is not None:
                clock.error = clock.error or f"exited ({readers[name].returncode})"
    finally:
        procs.stop(list(readers.values()))
    pairs = [
        ("rtmpdump: RTMPT - RTMP", "rtmpdump RTMP", "rtmpdump RTMPT"),
        ("ffmpeg: RTMPT - RTMP", "ffmpeg RTMP", "ffmpeg RTMPT"),
        ("RTMP: ffmpeg - rtmpdump (no tunnel)", "rtmpdump RTMP", "ffmpeg RTMP"),
    ]
    delays = [
        tunnel_delay(label, clocks[a], clocks[b], t0, t1)
        for label, a, b in pairs
        if a in clocks and b in clocks
    ]
    return delays, rates


# ---------------------------------------------------------------- report


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(
    phases: list[Phase], delays: list[Delay], rates: dict[str, float], window: float
) -> None:
    by = {p.proto: p for p in phases}
    if by:
        first = next(iter(by.values()))
        print(f"\n=== CPU: {first.readers} readers of one stream, window {first.window:.1f} s ===")
        rows: list[tuple[str, object]] = [
            ("server CPU, s", lambda r: f"{r.cpu_s:.2f}"),
            ("  of which system, s", lambda r: f"{r.system_s:.2f}"),
            ("server CPU, cores", lambda r: f"{r.cores:.3f}"),
            ("  with 0 readers, cores", lambda r: f"{r.base_cores:.3f}"),
            ("milli-cores / reader", lambda r: f"{r.mcores_per_reader:.2f}"),
            ("  above 0-reader CPU", lambda r: f"{r.added_mcores_per_reader:.2f}"),
            ("milli-cores / reader / Mbps", lambda r: f"{r.mcores_per_reader_mbps:.3f}"),
            ("server RSS, MB", lambda r: f"{r.rss_kb / 1024:.1f}"),
            ("  with 0 readers, MB", lambda r: f"{r.base_rss_kb / 1024:.1f}"),
            ("RSS / reader, KB", lambda r: f"{r.kb_per_reader:.1f}"),
            ("publisher in, Mbps", lambda r: f"{r.pub_mbps:.2f}"),
            ("FLV per reader mean, Mbps", lambda r: f"{r.mean_flv_mbps:.2f}"),
            ("  min/median", lambda r: "-" if not r.flv_mbps else
             f"{min(r.flv_mbps):.2f}/{statistics.median(r.flv_mbps):.2f}"),
            ("wire per reader mean, Mbps", lambda r: "-" if not r.wire_mbps else
             f"{statistics.fmean(r.wire_mbps):.2f}"),
            ("upstream per reader, kbit/s", lambda r: "-" if not r.up_kbps else
             f"{statistics.fmean(r.up_kbps):.1f}"),
            ("  = POSTs/s per reader, about", lambda r: "-" if r.proto != "rtmpt" or
             not r.up_kbps else f"{statistics.fmean(r.up_kbps) * 125 / IDLE_POST_BYTES:.0f}"),
            ("reader TCP conns start/end", lambda r: f"{r.conns[0]}/{r.conns[1]}"),
            ("readers at full rate", lambda r: f"{r.full_rate}/{r.readers}"),
            ("readers alive at end", lambda r: f"{r.alive}/{r.readers}"),
            ("readers' CPU, cores", lambda r: f"{r.readers_cores:.2f}"),
            ("  per reader, milli-cores", lambda r: f"{1000 * r.readers_cores / r.readers:.2f}"),
            ("publisher CPU, cores", lambda r: f"{r.publisher_cores:.3f}"),
            ("bench's pipe reading, cores", lambda r: f"{r.bench_cores:.3f}"),
            ("machine idle, %", lambda r: f"{r.idle_pct:.1f}"),
            ("irq + softirq, cores", lambda r: f"{r.irq_cores:.2f}"),
            ("other processes, cores", lambda r: f"{r.other_cores:.2f}"),
        ]  # fmt: skip
        width = 30
        print(f"{'':{width}}" + "".join(f"{p.upper():>12}" for p in by))
        for label, cell in rows:
            print(f"{label:{width}}" + "".join(f"{cell(by[p]):>12}" for p in by))  # type: ignore[operator]
        for p in by.values():
            if p.others:
                print(
                    f"busiest other processes during the {p.proto.upper()} window (cores): {p.others}"
                )
        rtmp, rtmpt = by.get("rtmp"), by.get("rtmpt")
        if rtmp and rtmpt and rtmp.cpu_s > 0:
            print(
                f"\nCPU per reader, RTMPT / RTMP: {rtmpt.mcores_per_reader / rtmp.mcores_per_reader:.2f}x"
            )
            if rtmp.added_mcores_per_reader > 0:
                ratio = rtmpt.added_mcores_per_reader / rtmp.added_mcores_per_reader
                print(f"  above the 0-reader CPU: {ratio:.2f}x")
            if rtmp.mcores_per_reader_mbps > 0:
                ratio = rtmpt.mcores_per_reader_mbps / rtmp.mcores_per_reader_mbps
                print(f"  per delivered Mbps: {ratio:.2f}x")
            if rtmp.readers_cores > 0:
                print(
                    f"  rtmpdump's own CPU, RTMPT / RTMP: {rtmpt.readers_cores / rtmp.readers_cores:.2f}x"
                )
        for p in by.values():
            if p.idle_pct < 5:
                print(
                    f"  note: the machine was saturated during {p.proto.upper()} (idle < 5 %);"
                    " the readers compete with the server"
                )
    if delays:
        print(f"\n=== latency: one reader of each kind at once, window {window:.1f} s ===")
        print("arrival of each tag at the second reader minus at the first, in ms")
        print(f"{'':38}{'tags':>11}{'median':>9}{'p95':>9}{'min':>9}{'max':>9}")
        for d in delays:
            if not d.deltas_ms:
                print(f"{d.label:38}{d.matched:>5}/{d.reference:<5}  {d.note or 'no tag matched'}")
                continue
            v = d.deltas_ms
            print(
                f"{d.label:38}{d.matched:>5}/{d.reference:<5}{statistics.median(v):9.1f}"
                f"{_pct(v, 0.95):9.1f}{min(v):9.1f}{max(v):9.1f}"
            )
        offsets = [f"{d.label}: {d.offset_ms} ms" for d in delays if d.offset_ms]
        if offsets:
            print("timestamp offsets found between outputs: " + "; ".join(offsets))
        if rates:
            print(
                "tags per second out of each reader: "
                + ", ".join(f"{name} {rate:.1f}" for name, rate in rates.items())
            )
    for p in phases:
        if p.profile:
            print(f"\n--- bridge, {p.readers} {p.proto.upper()} readers ---\n{p.profile}")


# ---------------------------------------------------------------- main


def start_publisher(
    procs: Procs, work: Path, server: Server, source: Path
) -> tuple[subprocess.Popen[bytes], str]:
    head = "-hide_banner -loglevel error -nostats -re -stream_loop -1 -i".split()
    argv = [FFMPEG, *head, str(source), "-c", "copy", "-f", "flv", url(server, "rtmp")]
    publisher = procs.start(argv, work / "publisher.log")

    def publishing() -> str | None:  # live once the server has taken ~0.5 MB from it
        socks = server_sockets(server.port)
        return next((peer for peer, s in socks.items() if s.received > 500_000), None)

    time.sleep(2.0)
    return publisher, wait_for("publisher live", publishing, 20, publisher)  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=50, help="readers of each kind")
    parser.add_argument("--window", type=float, default=20.0, help="CPU window, seconds")
    parser.add_argument(
        "--latency-window", type=float, default=20.0, help="latency window, seconds (0 = skip)"
    )
    parser.add_argument(
        "--protocols", default="rtmp,rtmpt", help="CPU phases to run: rtmp, rtmpt or both"
    )
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds between readers and window"
    )
    parser.add_argument(
        "--source", type=Path, default=None, help="FLV to publish (default: generated, cached)"
    )
    parser.add_argument(
        "--profile",
        type=float,
        default=0.0,
        help="py-spy bridge for this many seconds after each CPU window",
    )
    parser.add_argument(
        "--no-ffmpeg-readers",
        action="store_true",
        help="latency: rtmpdump readers only",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args(argv)
    protos = [p.strip() for p in args.protocols.split(",") if p.strip()]
    if not protos or any(p not in ("rtmp", "rtmpt") for p in protos):
        parser.error("--protocols: rtmp and/or rtmpt")
    if not 1 <= args.readers <= 2000:
        parser.error("--readers 1..2000")
    if not 1 <= args.window <= 600 or not 0 <= args.latency_window <= 600:
        parser.error("--window 1..600, --latency-window 0..600")
    if not 0 <= args.settle <= 60 or not 0 <= args.profile <= 120:
        parser.error("--settle 0..60, --profile 0..120")
    require_tools(parser, FFMPEG, RTMPDUMP, STDBUF)

    exit_on_signals()
    procs = Procs()
    hub = PipeHub()
    work = Path(tempfile.mkdtemp(prefix="rtmpt-overhead-"))
    phases: list[Phase] = []
    delays: list[Delay] = []
    rates: dict[str, float] = {}
    try:
        source = args.source or make_source(SOURCE, 20)
        print(
            f"source {source}: {describe(source)}; {os.cpu_count()} CPUs; work dir {work}",
            flush=True,
        )
        server = start_bridge(procs, work, "bridge", http=True)
        publisher, pub_peer = start_publisher(procs, work, server, source)
        for proto in protos:
            print(f"{proto.upper()}: {args.readers} readers ...", flush=True)
            phases.append(run_phase(procs, hub, work, args, server, publisher, pub_peer, proto))
            if proto == "rtmpt":  # let the tunnel sessions of the stopped readers expire
                time.sleep(RTMPT_EXPIRY)
            else:
                time.sleep(1.0)
        if args.latency_window > 0:
            print("latency: one rtmpdump and one ffmpeg reader over RTMP and RTMPT ...", flush=True)
            delays, rates = run_latency(procs, hub, work, args, server)
    except BenchError as exc:
        print(f"error: {exc} (logs in {work})", file=sys.stderr)
        args.keep = True
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        hub.close()
        if phases or delays:
            report(phases, delays, rates, args.latency_window)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
