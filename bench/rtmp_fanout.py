#!/usr/bin/env python3
"""RTMP fan-out benchmark: bridge against nginx-rtmp, side by side, on 127.0.0.1.

One ffmpeg publisher (``-re -c copy``, a looped ~4 Mbps 1080p30 H.264+AAC FLV) and N
``rtmpdump`` readers per round; for each (server, N) it prints the server's CPU, RSS and the
bytes it delivered over a fixed window. See bench/README.md for what every figure means.

    cd /work/main && python bench/rtmp_fanout.py --readers 100,300 --window 20

Bytes are counted from the kernel's per-socket TCP counters (``ss -ti``: ``bytes_acked`` and
``bytes_received``), not from ``/proc/PID/io``: ``wchar`` only counts write()/writev(), and
asyncio sends with send(), so it reads 0 for bridge while it counts nginx's writev().
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
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
    free_port,
    listening,
    machine_times,
    make_source,
    process_tree,
    profile,
    require_tools,
    rss_kb,
    server_sockets,
    socket_mbps,
    start_bridge,
    wait_for,
)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_RTMP = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
FULL_RATE = 0.95  # a reader at >= 95 % of the publisher's rate is "at full rate"
TARGET_CPU_RATIO = 1.5  # issue 2: CPU per reader <= 1.5x nginx-rtmp
TARGET_KB_PER_READER = 100.0  # issue 2: under 100 KB per reader
NGINX_REFERENCE = 0.11  # reference/measured.md: nginx-rtmp milli-cores per reader per Mbps


# ---------------------------------------------------------------- set-up


def start_nginx(procs: Procs, work: Path, tag: str, max_readers: int) -> Server:
    if not os.path.exists(NGINX_RTMP):
        print(f"waiting for {NGINX_RTMP} (apt may still be installing it) ...", flush=True)
        wait_for(
            "libnginx-mod-rtmp installed",
            lambda: os.path.exists(NGINX_RTMP) and os.path.exists(NGINX),
            300,
        )
        time.sleep(2)  # let dpkg finish writing
    port, prefix, log = free_port(), work / tag, work / f"{tag}.log"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"load_module {NGINX_RTMP};\n"
        "daemon off;\nmaster_process on;\nworker_processes 1;\n"
        f"error_log stderr warn;\npid {prefix}/nginx.pid;\n"
        # The default 512 connections would refuse readers past ~500.
        f"events {{ worker_connections {max(1024, max_readers + 64)}; }}\n"
        f"rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n"
        f"  application {CHANNEL} {{ live on; }} }} }}\n"
    )
    argv = [NGINX, "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr"]
    server = Server("nginx", port, procs.start(argv, log), log)
    wait_for("nginx listening", lambda: listening(port), 30, server.proc)

    def with_worker() -> list[int] | None:
        tree = process_tree(server.proc.pid)
        return tree if len(tree) > 1 else None

    server.pids = wait_for("nginx worker", with_worker, 10, server.proc)  # type: ignore[assignment]
    procs.extra_pids.update(server.pids[1:])
    return server


# ---------------------------------------------------------------- one round


@dataclass
class Round:
    server: str
    readers: int
    window: float
    cpu_s: float = 0.0
    system_s: float = 0.0  # the kernel's share of cpu_s (socket sends, mostly)
    base_cores: float = 0.0  # server CPU with the publisher and no reader
    rss_kb: int = 0
    base_rss_kb: int = 0
    pub_mbps: float = 0.0
    reader_mbps: list[float] = field(default_factory=list)  # one per reader connection
    alive: int = 0
    idle_pct: float = 0.0
    busy_cores: float = 0.0  # the whole machine, every process
    irq_cores: float = 0.0  # interrupt + softirq time (loopback TCP receive work)
    others: str = ""  # the busiest processes that are not ours
    readers_cores: float = 0.0
    publisher_cores: float = 0.0
    profile: str = ""

    @property
    def cores(self) -> float:
        return self.cpu_s / self.window

    @property
    def mcores_per_reader(self) -> float:
        return 1000 * self.cores / self.readers

    @property
    def mean_mbps(self) -> float:
        return sum(self.reader_mbps) / self.readers

    @property
    def mcores_per_reader_mbps(self) -> float:
        return self.mcores_per_reader / self.mean_mbps if self.mean_mbps else float("inf")

    @property
    def added_mcores_per_reader(self) -> float:
        return 1000 * (self.cores - self.base_cores) / self.readers

    @property
    def kb_per_reader(self) -> float:
        return (self.rss_kb - self.base_rss_kb) / self.readers

    @property
    def other_cores(self) -> float:
        """Machine CPU not spent by the server, the readers or the publisher."""
        busy = self.busy_cores - self.irq_cores
        return busy - self.cores - self.readers_cores - self.publisher_cores

    @property
    def full_rate(self) -> int:
        return sum(1 for mbps in self.reader_mbps if mbps >= FULL_RATE * self.pub_mbps)


def run_round(
    procs: Procs, work: Path, args: argparse.Namespace, kind: str, n: int, source: Path
) -> Round:
    tag = f"{kind}-{n}"
    server = (
        start_bridge(procs, work, tag) if kind == "bridge" else start_nginx(procs, work, tag, n)
    )
    result = Round(kind, n, args.window)
    url = f"rtmp://127.0.0.1:{server.port}/{CHANNEL}/{KEY}"
    try:
        head = "-hide_banner -loglevel error -nostats -re -stream_loop -1 -i".split()
        argv = [FFMPEG, *head, str(source), "-c", "copy", "-f", "flv", url]
        publisher = procs.start(argv, work / f"publisher-{tag}.log")

        def publishing() -> str | None:  # live once the server has taken ~0.5 MB from it
            socks = server_sockets(server.port)
            return next((peer for peer, s in socks.items() if s.received > 500_000), None)

        time.sleep(2.0)
        pub_peer = wait_for("publisher live", publishing, 20, publisher)

        # Baseline: publisher only.
        base_s = min(5.0, args.window)
        cpu0 = cpu_seconds(server.pids)
        time.sleep(base_s)
        result.base_cores = (cpu_seconds(server.pids) - cpu0) / base_s
        result.base_rss_kb = rss_kb(server.pids)

        readers: list[subprocess.Popen[bytes]] = []
        for i in range(n):
            readers.append(procs.start([RTMPDUMP, "-r", url, "--live", "-q", "-o", os.devnull]))
            if i % 10 == 9:
                time.sleep(0.1)
        time.sleep(args.settle)
        started = sum(1 for r in readers if r.poll() is None)
        if started < n:
            print(f"  note: {n - started} of {n} readers exited while starting", flush=True)
        if publisher.poll() is not None:
            raise BenchError(f"the publisher exited ({publisher.returncode}); see {work}")

        # The window.
        reader_pids = [r.pid for r in readers]
        pub_pids = [publisher.pid]

        def snapshot() -> tuple[
            dict[str, Sock], tuple[float, float], float, float, tuple[int, int, int]
        ]:
            return (
                server_sockets(server.port),
                cpu_split(server.pids),
                cpu_seconds(reader_pids),
                cpu_seconds(pub_pids),
                machine_times(),
            )

        a0 = all_cpu()
        s0, c0, r0, p0, m0 = snapshot()
        t0 = time.monotonic()
        time.sleep(args.window)
        s1, c1, r1, p1, m1 = snapshot()
        elapsed = time.monotonic() - t0
        a1 = all_cpu()
        result.rss_kb = rss_kb(server.pids)
        result.window = elapsed
        result.cpu_s = sum(c1) - sum(c0)
        result.system_s = c1[1] - c0[1]
        result.readers_cores = (r1 - r0) / elapsed
        result.publisher_cores = (p1 - p0) / elapsed
        total = m1[2] - m0[2]
        result.idle_pct = 100.0 * (m1[0] - m0[0]) / total if total else 0.0
        result.busy_cores = (total - (m1[0] - m0[0])) / CLK_TCK / elapsed
        result.irq_cores = (m1[1] - m0[1]) / CLK_TCK / elapsed
        ours = {*server.pids, *reader_pids, *pub_pids}
        used = sorted(
            ((a1[pid][1] - a0[pid][1], a1[pid][0]) for pid in a1 if pid in a0 and pid not in ours),
            reverse=True,
        )
        result.others = ", ".join(
            f"{name} {ticks / CLK_TCK / elapsed:.2f}" for ticks, name in used[:4] if ticks > 0
        )
        result.alive = sum(1 for r in readers if r.poll() is None)
        pub_mbps, result.reader_mbps = socket_mbps(s0, s1, pub_peer, elapsed)
        if pub_mbps is not None:
            result.pub_mbps = pub_mbps
        if kind == "bridge" and args.profile > 0:
            result.profile = profile(procs, work, server.proc.pid, args.profile, tag)
        procs.stop(readers)
        procs.stop([publisher])
    finally:
        procs.stop([server.proc])
        procs.extra_pids.difference_update(server.pids)
    return result


# ---------------------------------------------------------------- report


def report(rounds: list[Round]) -> None:
    for n in sorted({r.readers for r in rounds}):
        by = {r.server: r for r in rounds if r.readers == n}
        names = list(by)
        print(f"\n=== {n} readers, window {next(iter(by.values())).window:.1f} s ===")
        rows: list[tuple[str, object]] = [
            ("server CPU, s", lambda r: f"{r.cpu_s:.2f}"),
            ("  of which system, s", lambda r: f"{r.system_s:.2f}"),
            ("server CPU, cores", lambda r: f"{r.cores:.3f}"),
            ("  with 0 readers, cores", lambda r: f"{r.base_cores:.3f}"),
            ("milli-cores / reader", lambda r: f"{r.mcores_per_reader:.3f}"),
            ("  above 0-reader CPU", lambda r: f"{r.added_mcores_per_reader:.3f}"),
            ("milli-cores / reader / Mbps", lambda r: f"{r.mcores_per_reader_mbps:.4f}"),
            ("server RSS, MB", lambda r: f"{r.rss_kb / 1024:.1f}"),
            ("  with 0 readers, MB", lambda r: f"{r.base_rss_kb / 1024:.1f}"),
            ("RSS / reader, KB", lambda r: f"{r.kb_per_reader:.1f}"),
            ("publisher in, Mbps", lambda r: f"{r.pub_mbps:.2f}"),
            ("delivered total, MB", lambda r: f"{sum(r.reader_mbps) * r.window / 8:.1f}"),
            ("per reader mean, Mbps", lambda r: f"{r.mean_mbps:.2f}"),
            ("per reader min/median", lambda r: "-" if not r.reader_mbps else
             f"{min(r.reader_mbps):.2f}/{statistics.median(r.reader_mbps):.2f}"),
            ("readers at full rate", lambda r: f"{r.full_rate}/{r.readers}"),
            ("readers alive at end", lambda r: f"{r.alive}/{r.readers}"),
            ("readers' CPU, cores", lambda r: f"{r.readers_cores:.2f}"),
            ("publisher CPU, cores", lambda r: f"{r.publisher_cores:.3f}"),
            ("machine idle, %", lambda r: f"{r.idle_pct:.1f}"),
            ("irq + softirq, cores", lambda r: f"{r.irq_cores:.2f}"),
            ("other processes, cores", lambda r: f"{r.other_cores:.2f}"),
        ]  # fmt: skip
        width = 30
        print(f"{'':{width}}" + "".join(f"{name:>14}" for name in names))
        for label, cell in rows:
            print(f"{label:{width}}" + "".join(f"{cell(by[name]):>14}" for name in names))  # type: ignore[operator]
        for name in names:
            if by[name].others:
                print(f"busiest other processes during {name}'s window (cores): {by[name].others}")
        bridge, nginx = by.get("bridge"), by.get("nginx")
        if bridge is None:
            continue
        print()
        if nginx is not None and nginx.cores > 0:
            ratio = bridge.mcores_per_reader / nginx.mcores_per_reader
            ratio_mbps = bridge.mcores_per_reader_mbps / nginx.mcores_per_reader_mbps
            rss_ratio = (
                bridge.kb_per_reader / nginx.kb_per_reader
                if nginx.kb_per_reader > 0
                else float("inf")
            )
            print(
                f"bridge/nginx CPU per reader: {ratio:.2f}x (per reader per Mbps: {ratio_mbps:.2f}x)"
            )
            print(f"bridge/nginx RSS per reader: {rss_ratio:.2f}x")
            verdict = "met" if ratio_mbps <= TARGET_CPU_RATIO else "NOT met"
            print(f"  target CPU/reader/Mbps <= {TARGET_CPU_RATIO}x nginx: {verdict}")
        else:
            print(
                f"(no nginx round; measured.md puts nginx-rtmp at ~{NGINX_REFERENCE} mcores/reader/Mbps)"
            )
        verdict = "met" if bridge.kb_per_reader < TARGET_KB_PER_READER else "NOT met"
        print(f"  target RSS/reader < {TARGET_KB_PER_READER:.0f} KB: {verdict}")
        every = bridge.full_rate == bridge.readers and bridge.alive == bridge.readers
        print(f"  target every reader at full rate: {'met' if every else 'NOT met'}")
        if bridge.idle_pct < 5:
            print(
                "  note: the machine was saturated (idle < 5 %); the readers compete with the server"
            )
    for r in rounds:
        if r.profile:
            print(f"\n--- bridge, {r.readers} readers ---\n{r.profile}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", default="100,300", help="reader counts, comma separated")
    parser.add_argument("--window", type=float, default=20.0, help="measuring window, seconds")
    parser.add_argument("--servers", default="bridge,nginx", help="bridge, nginx or both")
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
        help="py-spy bridge for this many seconds after each window",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work dir (logs, nginx prefix)"
    )
    args = parser.parse_args(argv)
    try:
        counts = [int(v) for v in args.readers.split(",") if v.strip()]
        servers = [v.strip() for v in args.servers.split(",") if v.strip()]
    except ValueError:
        parser.error("--readers takes numbers, e.g. 100,300")
    if not counts or any(not 1 <= c <= 5000 for c in counts):
        parser.error("--readers: each between 1 and 5000")
    if not servers or any(s not in ("bridge", "nginx") for s in servers):
        parser.error("--servers: bridge and/or nginx")
    if not 1 <= args.window <= 600 or not 0 <= args.settle <= 60 or not 0 <= args.profile <= 120:
        parser.error("--window 1..600, --settle 0..60, --profile 0..120")
    require_tools(parser, FFMPEG, RTMPDUMP)

    exit_on_signals()
    procs = Procs()
    work = Path(tempfile.mkdtemp(prefix="rtmp-fanout-"))
    rounds: list[Round] = []
    try:
        source = args.source or make_source(SOURCE, 20)
        print(
            f"source {source}: {describe(source)}; {os.cpu_count()} CPUs; work dir {work}",
            flush=True,
        )
        for n in counts:  # side by side: both servers at one N, then the next N
            for kind in servers:
                print(f"{kind}: {n} readers ...", flush=True)
                rounds.append(run_round(procs, work, args, kind, n, source))
                time.sleep(1.0)  # let TIME_WAIT sockets and the box calm down
    except BenchError as exc:
        print(f"error: {exc} (logs in {work})", file=sys.stderr)
        args.keep = True
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if rounds:
            report(rounds)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
