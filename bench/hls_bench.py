#!/usr/bin/env python3
"""HLS benchmark: bridge against nginx-rtmp's HLS, side by side, on 127.0.0.1.

Three parts (see bench/README.md for every figure):

1. CPU per HLS channel: N looped publishers of a ~4 Mbps 1080p30 H.264+AAC FLV; each server
   is measured with HLS off and on, and the difference divided by N is what HLS costs per
   channel (bridge: ``--http-port 0`` turns HLS off; nginx-rtmp: ``hls off``/``hls on``).
2. Time from publish start to the first playable playlist (one with a segment), polled.
3. Player latency: hls.js in headless Chromium on bridge's own play page, for classic HLS
   (``HLS_PART_SECONDS=0``) and LL-HLS, and for nginx-rtmp's playlist (hls.js's live-edge
   figure only: nginx writes no PROGRAM-DATE-TIME).

    cd /work/main && python bench/hls_bench.py --channels 5 --window 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from common import (  # bench/common.py, next to this script
    FFMPEG,
    REPO,
    SOURCE,
    BenchError,
    Procs,
    Server,
    all_cpu,
    cpu_seconds,
    describe,
    exit_on_signals,
    free_port,
    listening,
    machine_times,
    make_source,
    process_tree,
    profile,
    rss_kb,
    server_sockets,
    wait_for,
)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_RTMP = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
APP, KEY = "bench", "key"
TARGET_LL_LATENCY = 2.0  # issue 5: LL-HLS player latency at most 2 s
POLL = 0.05  # playlist polling interval for time-to-first-playlist
FULL_SEGMENT = 1.0  # s: a segment at least this long is a real one (not a stub)


# ---------------------------------------------------------------- servers


@dataclass
class HlsServer(Server):
    hls_on: bool = False

    def playlist_path(self, channel: str) -> str:
        """The playlist a player opens (bridge: the media playlist; nginx: its only one)."""
        return f"/hls/{channel}/stream.m3u8" if self.name == "bridge" else f"/hls/{channel}.m3u8"

    def player_path(self, channel: str) -> str:
        return f"/hls/{channel}/index.m3u8" if self.name == "bridge" else f"/hls/{channel}.m3u8"

    def publish_url(self, channel: str) -> str:
        if self.name == "bridge":
            return f"rtmp://127.0.0.1:{self.port}/{channel}/{KEY}"
        return f"rtmp://127.0.0.1:{self.port}/{APP}/{channel}"


def start_bridge_hls(
    procs: Procs, work: Path, tag: str, hls: bool, part_seconds: float | None = None
) -> HlsServer:
    """``python -m bridge serve`` with HLS at its defaults (mpegts, 2 s segments, window 6,
    0.2 s parts) when ``hls``, else with the HTTP service off and no HLS muxing."""
    port, log = free_port(), work / f"{tag}.log"
    http_port = free_port() if hls else 0
    argv = [
        sys.executable, "-m", "bridge", "serve", "--rtmp-port", str(port),
        "--http-port", str(http_port), "--bind-address", "127.0.0.1", "--log-requests", "NO",
        "--concurrent-limit-whitelist", "*",
    ]  # fmt: skip
    if part_seconds is not None:
        argv += ["--hls-part-seconds", str(part_seconds)]
    env_clean = {k: v for k, v in os.environ.items() if not k.startswith("HLS_")}
    proc = procs_start_env(procs, argv, log, env_clean)
    server = HlsServer("bridge", port, proc, log, http_port=http_port, hls_on=hls)
    wait_for("bridge listening", lambda: listening(port), 30, proc)
    if http_port:
        wait_for("bridge HTTP listening", lambda: listening(http_port), 30, proc)
    server.pids = process_tree(proc.pid)
    return server


def procs_start_env(
    procs: Procs, argv: list[str], log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Procs.start with a given environment (HLS_* of the caller's shell left out)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
    procs.procs.append(proc)
    return proc


def start_nginx_hls(procs: Procs, work: Path, tag: str, hls: bool) -> HlsServer:
    """nginx with libnginx-mod-rtmp: one worker, ``application bench { live on; hls on;
    hls_path ...; hls_fragment 2s; }`` and its http serving the files with CORS."""
    if not os.path.exists(NGINX_RTMP) or not os.path.exists(NGINX):
        raise BenchError(f"{NGINX_RTMP} missing: apt-get install nginx libnginx-mod-rtmp")
    port, http_port = free_port(), free_port()
    prefix, log = work / tag, work / f"{tag}.log"
    hls_dir = prefix / "hls"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    hls_dir.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    hls_conf = f"hls on; hls_path {hls_dir}; hls_fragment 2s;" if hls else "hls off;"
    conf.write_text(
        f"load_module {NGINX_RTMP};\n"
        # The worker writes the fragments: as root it would otherwise run as nobody.
        + ("user root;\n" if os.geteuid() == 0 else "")
        + "daemon off;\nmaster_process on;\nworker_processes 1;\n"
        f"error_log stderr warn;\npid {prefix}/nginx.pid;\n"
        "events { worker_connections 1024; }\n"
        f"rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n"
        f"  application {APP} {{ live on; {hls_conf} }} }} }}\n"
        "http { access_log off; sendfile on;\n"
        f"  client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp;\n"
        f"  fastcgi_temp_path {prefix}/tmp; uwsgi_temp_path {prefix}/tmp;"
        f" scgi_temp_path {prefix}/tmp;\n"
        "  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }\n"
        f"  server {{ listen 127.0.0.1:{http_port};\n"
        f"    location /hls/ {{ alias {hls_dir}/; add_header Cache-Control no-cache;"
        " add_header Access-Control-Allow-Origin *; } } }\n"
    )
    argv = [NGINX, "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr"]
    proc = procs.start(argv, log)
    server = HlsServer("nginx", port, proc, log, http_port=http_port, hls_on=hls)
    wait_for("nginx listening", lambda: listening(port) and listening(http_port), 30, proc)

    def with_worker() -> list[int] | None:
        tree = process_tree(proc.pid)
        return tree if len(tree) > 1 else None

    server.pids = wait_for("nginx worker", with_worker, 10, proc)  # type: ignore[assignment]
    procs.extra_pids.update(server.pids[1:])
    return server


def start_server(
    procs: Procs, work: Path, name: str, hls: bool, tag: str, part: float | None = None
) -> HlsServer:
    if name == "bridge":
        return start_bridge_hls(procs, work, tag, hls, part)
    return start_nginx_hls(procs, work, tag, hls)


def publish(
    procs: Procs, work: Path, server: HlsServer, channel: str, source: Path
) -> subprocess.Popen[bytes]:
    argv = [
        FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "warning", "-re", "-stream_loop", "-1",
        "-i", str(source), "-c", "copy", "-f", "flv", server.publish_url(channel),
    ]  # fmt: skip
    return procs.start(argv, work / f"pub-{server.name}-{channel}.log")


def fetch(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (OSError, urllib.error.URLError):
        return 0, ""


def segments_in(text: str) -> int:
    return text.count("#EXTINF:") if text.startswith("#EXTM3U") else 0


# ---------------------------------------------------------------- 1. CPU per channel


@dataclass
class CpuRound:
    server: str
    hls: bool
    channels: int
    window: float
    cpu_s: float = 0.0
    rss_kb: int = 0
    publishers_cores: float = 0.0
    idle_pct: float = 0.0
    others: str = ""
    playlists: int = 0  # channels with a playlist listing segments at the end
    in_mbps: float = 0.0
    profile: str = ""

    @property
    def cores(self) -> float:
        return self.cpu_s / self.window


def cpu_round(
    procs: Procs, work: Path, source: Path, name: str, hls: bool, args: argparse.Namespace
) -> CpuRound:
    tag = f"{name}-{'hls' if hls else 'nohls'}"
    print(f"CPU: {tag}, {args.channels} channels ...", flush=True)
    server = start_server(procs, work, name, hls, tag)
    channels = [f"c{i}" for i in range(args.channels)]
    pubs = [publish(procs, work, server, channel, source) for channel in channels]

    def all_live() -> bool:
        socks = server_sockets(server.port)
        return sum(1 for s in socks.values() if s.received > 300_000) >= len(channels)

    wait_for(f"{tag}: {len(channels)} publishers live", all_live, 30)
    time.sleep(args.settle)
    result = CpuRound(name, hls, len(channels), args.window)
    ours = set(server.pids) | {p.pid for p in pubs}
    before_cpu = all_cpu()
    socks0 = server_sockets(server.port)
    c0, p0, m0 = cpu_seconds(server.pids), cpu_seconds([p.pid for p in pubs]), machine_times()
    time.sleep(args.window)
    c1, p1, m1 = cpu_seconds(server.pids), cpu_seconds([p.pid for p in pubs]), machine_times()
    socks1 = server_sockets(server.port)
    after_cpu = all_cpu()
    result.cpu_s = c1 - c0
    result.publishers_cores = (p1 - p0) / args.window
    result.rss_kb = rss_kb(server.pids)
    idle, total = m1[0] - m0[0], m1[2] - m0[2]
    result.idle_pct = 100 * idle / total if total else 0.0
    received = sum(
        socks1[peer].received - socks0[peer].received for peer in socks1 if peer in socks0
    )
    result.in_mbps = received * 8 / args.window / 1e6
    busiest = sorted(
        (
            (ticks - before_cpu[pid][1], f"{pname}({pid})")
            for pid, (pname, ticks) in after_cpu.items()
            if pid in before_cpu and pid not in ours and ticks > before_cpu[pid][1]
        ),
        reverse=True,
    )[:3]
    clk = os.sysconf("SC_CLK_TCK")
    result.others = ", ".join(f"{who} {t / clk / args.window:.2f}" for t, who in busiest)
    if hls:
        result.playlists = sum(
            1
            for channel in channels
            if segments_in(fetch(server.http_port, server.playlist_path(channel))[1]) > 0
        )
    if args.profile and name == "bridge":
        result.profile = profile(procs, work, server.proc.pid, args.profile, tag)
    procs.stop([*pubs, server.proc])
    procs.extra_pids.difference_update(server.pids)
    time.sleep(1.0)
    return result


# ---------------------------------------------------------------- 2. first playlist


@dataclass
class FirstPlaylist:
    label: str
    segment_s: list[float] = field(default_factory=list)  # first playlist with a segment
    part_s: list[float] = field(default_factory=list)  # first with an EXT-X-PART (LL only)
    extinf: list[float] = field(default_factory=list)  # that first segment's EXTINF
    full_s: list[float] = field(default_factory=list)  # first with a segment >= FULL_SEGMENT


def first_playlist(
    procs: Procs, work: Path, source: Path, name: str, repeats: int
) -> FirstPlaylist:
    print(f"first playlist: {name}, {repeats} publishes ...", flush=True)
    server = start_server(procs, work, name, True, f"{name}-first")
    out = FirstPlaylist(name)
    try:
        for attempt in range(repeats):
            channel = f"first{attempt}"
            path = server.playlist_path(channel)
            started = time.monotonic()
            pub = publish(procs, work, server, channel, source)
            deadline = started + 20
            while time.monotonic() < deadline:
                status, text = fetch(server.http_port, path, timeout=2)
                now = time.monotonic() - started
                ok = status == 200 and text.startswith("#EXTM3U")
                if ok and "#EXT-X-PART:" in text and len(out.part_s) <= attempt:
                    out.part_s.append(now)
                durations = [float(d) for d in re.findall(r"#EXTINF:([0-9.]+)", text)] if ok else []
                if durations and len(out.segment_s) <= attempt:
                    out.segment_s.append(now)
                    out.extinf.append(durations[0])
                if any(d >= FULL_SEGMENT for d in durations):
                    out.full_s.append(now)
                    break
                time.sleep(POLL)
            else:
                raise BenchError(f"{name}: no playlist with a full segment within 20 s")
            procs.stop([pub])
            time.sleep(0.5)
    finally:
        procs.stop([server.proc])
        procs.extra_pids.difference_update(server.pids)
    return out


# ---------------------------------------------------------------- 3. player latency


@dataclass
class Latency:
    label: str
    pdt: list[float] = field(default_factory=list)  # PROGRAM-DATE-TIME based, s
    edge: list[float] = field(default_factory=list)  # hls.js's distance to the live edge, s
    started_s: float | None = None  # page opened -> playing
    advanced_s: float = 0.0  # currentTime advance over the window
    errors: int = 0
    error_text: str = ""
    target: float | None = None
    stalls: int = 0  # samples where the video was not playing


async def watch(url: str, seconds: float, tmp: Path, out: Latency) -> None:
    sys.path.insert(0, str(REPO))
    from tests.browser import Browser  # the project's CDP driver

    async with Browser.launch(tmp) as browser:
        page = await browser.open(url)
        opened = time.monotonic()
        await page.wait_for("window.bridgeStats && window.bridgeStats.playing", timeout=20)
        out.started_s = time.monotonic() - opened
        await asyncio.sleep(2.0)  # let hls.js settle on its target
        first = await page.evaluate("window.bridgeStats.currentTime")
        for _ in range(int(seconds / 0.25)):
            await asyncio.sleep(0.25)
            stats = await page.evaluate(
                "({p: bridgeStats.pdtLatency, e: bridgeStats.edgeLatency, "
                "ok: bridgeStats.playing, t: bridgeStats.targetLatency})"
            )
            if isinstance(stats.get("p"), (int, float)):
                out.pdt.append(float(stats["p"]))
            if isinstance(stats.get("e"), (int, float)):
                out.edge.append(float(stats["e"]))
            out.stalls += 0 if stats.get("ok") else 1
            out.target = stats.get("t")
        final = await page.evaluate("window.bridgeStats")
        out.advanced_s = final["currentTime"] - first
        out.errors = len(final["errors"])
        out.error_text = "; ".join(
            f"{e.get('type')}/{e.get('details')} {e.get('message', '')[:80]}"
            for e in final["errors"][:3]
        )


def player_latency(
    procs: Procs, work: Path, source: Path, name: str, part: float | None, args: argparse.Namespace
) -> Latency:
    label = f"{name} " + ("LL-HLS" if part is None else "classic") if name == "bridge" else name
    print(f"latency: {label}, {args.latency_window:.0f} s of playback ...", flush=True)
    server = start_server(procs, work, name, True, f"{name}-latency-{part}", part)
    pub = publish(procs, work, server, "live", source)
    out = Latency(label)
    try:
        wait_for(
            f"{label}: playlist",
            lambda: segments_in(fetch(server.http_port, server.playlist_path("live"))[1]) > 0,
            30,
            pub,
        )
        if name == "bridge":
            page = f"/play.html?channel=live{'&ll=0' if part == 0 else ''}"
            url = f"http://127.0.0.1:{server.http_port}{page}"
        else:
            # bridge's play page plays any URL (?src=); nginx's answers with CORS.
            player = start_bridge_hls(procs, work, "page-server", True)
            src = f"http://127.0.0.1:{server.http_port}{server.player_path('live')}"
            url = f"http://127.0.0.1:{player.http_port}/play.html?src={src}"
        asyncio.run(watch(url, args.latency_window, work / f"chromium-{name}-{part}", out))
    finally:
        procs.stop(list(procs.procs))
        procs.extra_pids.difference_update(server.pids)
    return out


# ---------------------------------------------------------------- report


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(
    cpu: list[CpuRound], first: list[FirstPlaylist], latency: list[Latency], channels: int
) -> None:
    if cpu:
        print(f"\nCPU, {channels} publishing channels (~4.2 Mbps 1080p30 each):")
        cols = [(r.server, r.hls) for r in cpu]
        by = {(r.server, r.hls): r for r in cpu}
        width = 34
        print(f"{'':{width}}" + "".join(f"{s + (' HLS' if h else ' no HLS'):>16}" for s, h in cols))
        rows = [
            ("server CPU, cores", lambda r: fmt(r.cores, 3)),
            ("server RSS, MB", lambda r: fmt(r.rss_kb / 1024, 1)),
            ("publishers in, Mbps", lambda r: fmt(r.in_mbps, 1)),
            ("channels with a playlist", lambda r: str(r.playlists) if r.hls else "-"),
            ("publishers' CPU, cores", lambda r: fmt(r.publishers_cores, 3)),
            ("machine idle, %", lambda r: fmt(r.idle_pct, 0)),
        ]
        for label, cell in rows:
            print(f"{label:{width}}" + "".join(f"{cell(by[c]):>16}" for c in cols))
        for r in cpu:
            if r.others:
                print(
                    f"  busiest other processes during {r.server} {'HLS' if r.hls else 'no HLS'}: {r.others}"
                )
        per: dict[str, float] = {}
        for server in ("bridge", "nginx"):
            on, off = by.get((server, True)), by.get((server, False))
            if on and off:
                per[server] = 1000 * (on.cores - off.cores) / channels
                print(
                    f"HLS per channel, {server}: {per[server]:.1f} milli-cores "
                    f"({on.cores:.3f} - {off.cores:.3f} cores, / {channels})"
                )
        if "bridge" in per and "nginx" in per and per["nginx"] > 0:
            ratio = per["bridge"] / per["nginx"]
            verdict = "met" if per["bridge"] <= per["nginx"] else "NOT met"
            print(
                f"bridge / nginx-rtmp HLS CPU per channel: {ratio:.2f}x (target <= 1x: {verdict})"
            )
        for r in cpu:
            if r.profile:
                print(f"bridge {'HLS' if r.hls else 'no HLS'}, {r.profile}")
        for server in ("bridge", "nginx"):
            on = by.get((server, True))
            if on:
                print(
                    f"whole server with HLS, per channel, {server}: {1000 * on.cores / channels:.1f} milli-cores"
                )

    if first:
        print("\nPublish start -> first playable playlist (seconds from the ffmpeg launch to the")
        print(f"first poll, every {POLL * 1000:.0f} ms, whose playlist lists a segment):")
        for f in first:
            print(
                f"  {f.label:8} any segment: median {fmt(median(f.segment_s))} "
                f"(EXTINF {', '.join(fmt(v, 3) for v in f.extinf)}); a segment >= "
                f"{FULL_SEGMENT:.0f} s: median {fmt(median(f.full_s))} "
                f"(all {', '.join(fmt(v) for v in f.full_s)})"
                + (f"; first part: median {fmt(median(f.part_s))}" if f.part_s else "")
            )

    if latency:
        print(
            "\nPlayer latency, hls.js 1.7.x in headless Chromium on bridge's play page (seconds):"
        )
        width = 34
        print(f"{'':{width}}" + "".join(f"{x.label:>16}" for x in latency))
        rows = [
            ("latency (PDT), median", lambda x: fmt(median(x.pdt))),
            ("latency (PDT), p90", lambda x: fmt(pct(x.pdt, 0.9))),
            (
                "latency (PDT), min / max",
                lambda x: f"{fmt(min(x.pdt, default=None))}/{fmt(max(x.pdt, default=None))}",
            ),
            ("hls.js live-edge latency, median", lambda x: fmt(median(x.edge))),
            ("hls.js target latency", lambda x: fmt(x.target)),
            ("opened -> playing, s", lambda x: fmt(x.started_s, 1)),
            ("currentTime advance / window", lambda x: fmt(x.advanced_s, 1)),
            ("samples not playing", lambda x: str(x.stalls)),
            ("fatal player errors", lambda x: str(x.errors)),
        ]
        for label, cell in rows:
            print(f"{label:{width}}" + "".join(f"{cell(x):>16}" for x in latency))
        print(
            "  (nginx writes no PROGRAM-DATE-TIME: only hls.js's distance to the playlist's edge,"
            " which leaves out the time a segment takes to be listed)"
        )
        for x in latency:
            if x.error_text:
                print(f"  {x.label} player errors: {x.error_text}")
        ll = next((x for x in latency if x.label == "bridge LL-HLS"), None)
        if ll and ll.pdt:
            value = median(ll.pdt) or 0.0
            verdict = "met" if value <= TARGET_LL_LATENCY else "NOT met"
            print(f"LL-HLS latency target <= {TARGET_LL_LATENCY:.0f} s: {verdict} ({value:.2f} s)")


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=5, help="publishing channels (CPU)")
    parser.add_argument("--window", type=float, default=20.0, help="CPU window, seconds")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before the window")
    parser.add_argument("--servers", default="bridge,nginx", help="bridge and/or nginx")
    parser.add_argument("--repeats", type=int, default=3, help="publishes for first playlist")
    parser.add_argument(
        "--latency-window", type=float, default=15.0, help="seconds of playback (0 = skip)"
    )
    parser.add_argument(
        "--parts", default="cpu,first,latency", help="which parts: cpu, first, latency"
    )
    parser.add_argument(
        "--profile", type=float, default=0.0, help="py-spy bridge this long after each CPU window"
    )
    parser.add_argument("--source", type=Path, default=None, help="FLV to publish")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args(argv)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not servers or any(s not in ("bridge", "nginx") for s in servers):
        parser.error("--servers: bridge and/or nginx")
    if not parts <= {"cpu", "first", "latency"}:
        parser.error("--parts: cpu, first, latency")
    if not 1 <= args.channels <= 50 or not 1 <= args.window <= 600:
        parser.error("--channels 1..50, --window 1..600")
    if not 0 <= args.profile <= 120:
        parser.error("--profile 0..120")
    if not 1 <= args.repeats <= 20 or not 0 <= args.latency_window <= 600:
        parser.error("--repeats 1..20, --latency-window 0..600")

    exit_on_signals()
    procs = Procs()
    work = Path(tempfile.mkdtemp(prefix="hls-bench-"))
    cpu: list[CpuRound] = []
    first: list[FirstPlaylist] = []
    latency: list[Latency] = []
    try:
        source = args.source or make_source(SOURCE, 20)
        print(f"source {source}: {describe(source)}; {os.cpu_count()} CPUs; work dir {work}")
        if "cpu" in parts:
            for name in servers:
                for hls in (False, True):
                    cpu.append(cpu_round(procs, work, source, name, hls, args))
        if "first" in parts:
            for name in servers:
                first.append(first_playlist(procs, work, source, name, args.repeats))
        if "latency" in parts and args.latency_window > 0:
            if "bridge" in servers:
                latency.append(player_latency(procs, work, source, "bridge", 0, args))
                latency.append(player_latency(procs, work, source, "bridge", None, args))
            if "nginx" in servers:
                latency.append(player_latency(procs, work, source, "nginx", None, args))
    except BenchError as exc:
        print(f"error: {exc} (logs in {work})", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        procs.stop_all()
        report(cpu, first, latency, args.channels)
        if args.keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
