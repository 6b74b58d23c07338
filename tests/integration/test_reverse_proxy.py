"""RTMPT behind a reverse proxy: Debian's nginx in front of the HTTP service.

nginx runs as an ordinary foreground process of the test (prefix, pid, temp paths in the test's
directory; error log on stderr) with the location block the README gives. Checks:

- ffmpeg publishes over rtmpt:// THROUGH nginx; a reader on plain rtmp:// and a reader over
  rtmpt:// through nginx get contiguous runs of the source from a keyframe;
- the client address: a client forges `X-Forwarded-For: 198.51.100.7, 203.0.113.9`; nginx
  appends its peer (127.0.0.1). A server with TRUSTED_PROXIES=127.0.0.1 names the session
  after the rightmost address that is not a trusted proxy, 203.0.113.9 (the forged left part
  is ignored); a server that trusts no proxy names it after its TCP peer, 127.0.0.1.
"""

from __future__ import annotations

import http.client
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import (
    ProcGroup,
    Server,
    SourceMedia,
    Tools,
    framemd5_argv,
    free_ports,
    launch_server,
    parse_framemd5,
    publish_argv,
    wait_for_port,
    wait_until,
)
from .test_rtmp_publish_play import assert_late_reader

GRACE_S = 1.0
LATE_START_S = 1.5
END_BUDGET_S = GRACE_S + 4.0
FORGED = "198.51.100.7, 203.0.113.9"

# The README's nginx location for RTMPT (BRIDGE_HTTP: the server's HTTP_PORT). Keep-alive to
# the server (upstream keepalive, HTTP/1.1, no Connection header) saves a TCP connect per
# poll; no buffering either way, or every reply waits for the proxy; bodies up to the
# server's own limit (4 MiB) so a large keyframe in one /send is not refused by nginx.
NGINX_LOCATION = """\
location ~ ^/(fcs/ident2|open/|send/|idle/|close/) {
    proxy_pass http://bridge_http;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_buffering off;
    proxy_request_buffering off;
    client_max_body_size 4m;
}"""
NGINX_UPSTREAM = """\
upstream bridge_http {
    server 127.0.0.1:BRIDGE_HTTP;
    keepalive 16;
}"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if not found:
        pytest.fail("this test needs nginx: `apt-get install nginx-light` (or run .ci/run)")
    return found


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line if line else line for line in text.splitlines())


def nginx_config(prefix: Path, backends: dict[int, int]) -> str:
    """A whole nginx.conf: for each (listen port -> bridge HTTP port) one upstream and one
    server with the README location, everything nginx writes kept under `prefix`."""
    blocks = []
    for i, (listen, backend) in enumerate(backends.items()):
        upstream = NGINX_UPSTREAM.replace("BRIDGE_HTTP", str(backend))
        location = NGINX_LOCATION
        if i:  # one upstream name per backend
            upstream = upstream.replace("bridge_http", f"bridge_http{i}")
            location = location.replace("bridge_http", f"bridge_http{i}")
        blocks.append(
            f"{_indent(upstream, 4)}\n"
            f"    server {{\n        listen 127.0.0.1:{listen};\n"
            f"{_indent(location, 8)}\n    }}"
        )
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\nerror_log stderr warn;\n"
        f"events {{\n    worker_connections 256;\n}}\n"
        f"http {{\n    access_log off;\n{temp}\n" + "\n".join(blocks) + "\n}\n"
    )


@dataclass
class Proxied:
    group: ProcGroup
    trusting: Server  # --trusted-proxies 127.0.0.1
    untrusting: Server  # no trusted proxies
    proxy_port: int  # nginx -> trusting
    proxy_port_untrusting: int  # nginx -> untrusting
    workdir: Path

    def diagnostics(self) -> str:
        return self.group.diagnostics()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    workdir = tmp_path_factory.mktemp("proxy")
    nginx = nginx_binary()
    group = ProcGroup(workdir)
    try:
        common = ("--unpublish-grace-seconds", str(GRACE_S))
        trusting = launch_server(
            group, *common, "--trusted-proxies", "127.0.0.1", listeners=["--http-port"]
        )
        untrusting = launch_server(
            group, *common, name="server-untrusting", listeners=["--http-port"]
        )
        prefix = workdir / "nginx"
        prefix.mkdir()
        for attempt in range(3):
            ports = free_ports(2)
            config = nginx_config(
                prefix,
                {
                    ports[0]: trusting.ports["--http-port"],
                    ports[1]: untrusting.ports["--http-port"],
                },
            )
            (prefix / "nginx.conf").write_text(config)
            proc = group.start(
                f"nginx-{attempt}",
                [nginx, "-p", str(prefix), "-e", "stderr", "-c", str(prefix / "nginx.conf")],
            )
            if all(wait_for_port(p, 10, alive=proc.running) for p in ports):
                break
            proc.stop(timeout=2)
        else:
            raise AssertionError(f"nginx did not start\n{group.diagnostics()}")
        yield Proxied(group, trusting, untrusting, ports[0], ports[1], workdir)
    finally:
        group.stop_all()


pytestmark = pytest.mark.timeout(90)


def test_ffmpeg_publishes_through_nginx(
    proxied: Proxied, tools: Tools, h264_source: SourceMedia, procs: ProcGroup
) -> None:
    server = proxied.trusting
    channel, key = "proxied", "through_nginx"
    via_nginx = f"rtmpt://127.0.0.1:{proxied.proxy_port}/{channel}/{key}"
    publisher = procs.start(
        "publisher-via-nginx", publish_argv(tools.ffmpeg, h264_source.path, via_nginx)
    )
    time.sleep(LATE_START_S)
    readers = {
        "rtmp reader (direct)": procs.start(
            "reader-rtmp-direct", framemd5_argv(tools.ffmpeg, server.url(channel, key))
        ),
        "rtmpt reader via nginx": procs.start(
            "reader-rtmpt-via-nginx", framemd5_argv(tools.ffmpeg, via_nginx)
        ),
    }
    assert publisher.wait(30) == 0, publisher.diagnostics()
    for who, reader in readers.items():
        assert reader.wait(END_BUDGET_S + 10) == 0, reader.diagnostics()
        result = parse_framemd5(reader.stdout_text())
        assert_late_reader(result, h264_source, reader.start_time - publisher.start_time, who)
    log = server.stderr_text()
    assert re.search(rf"\[rtmpt 127\.0\.0\.1:\d+ {channel}\] publishing", log), log
    assert "Traceback" not in log, log


def _open_and_close(port: int, forwarded_for: str) -> str:
    """RTMPT open then close through nginx with a client-supplied X-Forwarded-For; the id."""
    headers = {"Content-Type": "application/x-fcs", "X-Forwarded-For": forwarded_for}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/open/1", body=b"\x00", headers=headers)
        reply = conn.getresponse()
        body = reply.read()
        assert reply.status == 200, (reply.status, body)
        session_id = body.decode().rstrip("\n")
        assert session_id and "/" not in session_id, body
        conn.request("POST", f"/close/{session_id}/0", body=b"\x00", headers=headers)
        reply = conn.getresponse()
        assert (reply.status, reply.read()) == (200, b"\x00")
        return session_id
    finally:
        conn.close()


def test_trusted_proxy_forwarded_for_names_the_client(proxied: Proxied) -> None:
    _open_and_close(proxied.proxy_port, FORGED)
    server = proxied.trusting
    assert wait_until(lambda: "[rtmpt 203.0.113.9:" in server.stderr_text(), 3), (
        f"no session logged as 203.0.113.9\n{server.stderr_text()}"
    )
    log = server.stderr_text()
    assert "198.51.100.7" not in log, f"the forged left part of X-Forwarded-For was believed\n{log}"
    assert re.search(r"\[rtmpt 203\.0\.113\.9:\d+\] closed: client closed the tunnel", log), log


def test_untrusted_proxy_forwarded_for_is_ignored(proxied: Proxied) -> None:
    _open_and_close(proxied.proxy_port_untrusting, FORGED)
    server = proxied.untrusting
    closed = r"\[rtmpt 127\.0\.0\.1:\d+\] closed: client closed the tunnel"
    assert wait_until(lambda: re.search(closed, server.stderr_text()) is not None, 3), (
        server.stderr_text()
    )
    log = server.stderr_text()
    assert "203.0.113.9" not in log and "198.51.100.7" not in log, log
