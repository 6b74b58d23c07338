"""`bridge probe URL` against a real server with only some listeners on.

The probe runs the RTMP handshake and `connect` over each transport and reports which work;
it exits 0 when any does and 1 when none does. Cases: rtmp and rtmpt on, rtmps port closed;
everything closed; a port that accepts TCP and then says nothing (bounded by --timeout);
RTMPS and RTMPTS with a self-signed certificate: refused when verified, fine with --insecure
or with the certificate as --cafile.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..certs import write_self_signed
from .helpers import REPO_ROOT, ProcGroup, Server, free_ports, launch_server, server_env

pytestmark = pytest.mark.timeout(60)

URL = "rtmp://127.0.0.1/live"
PROBE_TIMEOUT_S = 3


@dataclass(frozen=True)
class ProbeRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def rows(self) -> dict[str, dict]:
        """--json output by transport name."""
        try:
            rows = json.loads(self.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"probe --json printed no JSON ({exc}):\n{self}") from None
        return {row["transport"]: row for row in rows}

    def __str__(self) -> str:
        return f"exit {self.returncode} after {self.seconds:.1f} s\n{self.stdout}\n{self.stderr}"


def probe(*args: str, timeout_s: float = PROBE_TIMEOUT_S) -> ProbeRun:
    argv = [sys.executable, "-m", "bridge", "probe", *args, "--timeout", str(timeout_s)]
    start = time.monotonic()
    res = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=4 * timeout_s + 15,
        cwd=REPO_ROOT,
        env=server_env(),
        check=False,
    )
    return ProbeRun(res.returncode, res.stdout, res.stderr, time.monotonic() - start)


def port_args(rtmp: int, rtmps: int, rtmpt: int) -> list[str]:
    return ["--rtmp-port", str(rtmp), "--rtmps-port", str(rtmps), "--rtmpt-port", str(rtmpt)]


def text_line(run: ProbeRun, transport: str) -> str:
    """The human output's line for `transport` ("rtmps  127.0.0.1:PORT  ok ...")."""
    for line in run.stdout.splitlines():
        if line.split(maxsplit=1)[:1] == [transport]:
            return line
    raise AssertionError(f"no {transport} line in the probe's output\n{run}")


@pytest.fixture
def partial_server(procs: ProcGroup) -> Server:
    """RTMP and RTMPT (HTTP) on; RTMPS off (no certificate)."""
    return launch_server(procs, listeners=["--http-port"])


def test_reports_which_transports_work(partial_server: Server) -> None:
    closed = free_ports(1)[0]  # nothing listens there
    ports = port_args(partial_server.port, closed, partial_server.ports["--http-port"])

    text = probe(URL, *ports)
    assert text.returncode == 0, text
    assert " ok " in text_line(text, "rtmp"), text
    assert " ok " in text_line(text, "rtmpt"), text
    assert "FAILED" in text_line(text, "rtmps"), text

    run = probe(URL, *ports, "--json")
    assert run.returncode == 0, run
    rows = run.rows()
    assert set(rows) == {"rtmp", "rtmps", "rtmpt"}, run
    for name in ("rtmp", "rtmpt"):
        assert rows[name]["ok"] is True, rows[name]
        timings = rows[name]["timings_ms"]
        assert all(isinstance(timings[k], int | float) for k in ("handshake", "total")), timings
    assert rows["rtmps"]["ok"] is False and rows["rtmps"]["error"], rows["rtmps"]
    assert rows["rtmps"]["port"] == closed
    log = partial_server.stderr_text()
    assert "[rtmpt 127.0.0.1:" in log and "Traceback" not in log, log


def test_exit_1_when_nothing_listens() -> None:
    ports = port_args(*free_ports(3))
    run = probe(URL, *ports, "--json")
    assert run.returncode == 1, run
    assert [row["ok"] for row in run.rows().values()] == [False, False, False], run


def test_silent_server_is_bounded_by_timeout() -> None:
    """A listener that accepts (the kernel completes the TCP handshake) but never answers:
    every transport fails after about --timeout, not later."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        run = probe(URL, *port_args(port, port, port), "--json", timeout_s=1)
    assert run.returncode == 1, run
    assert run.seconds < 1 + 4, f"probe took {run.seconds:.1f} s with --timeout 1"
    for name, row in run.rows().items():
        assert row["ok"] is False and row["error"], (name, row)


@dataclass(frozen=True)
class TlsServer:
    server: Server
    cert: Path

    def args(self, *extra: str) -> list[str]:
        ports = self.server.ports
        return [
            URL,
            *port_args(self.server.port, ports["--ssl-port"], ports["--http-port"]),
            "--rtmpts",
            "--rtmpts-port",
            str(ports["--https-port"]),
            "--json",
            *extra,
        ]


@pytest.fixture
def tls_server(procs: ProcGroup, tmp_path: Path) -> TlsServer:
    cert, key = write_self_signed(tmp_path)
    server = launch_server(
        procs,
        "--ssl-cert", str(cert), "--ssl-key", str(key),
        listeners=["--ssl-port", "--http-port", "--https-port"],
    )  # fmt: skip
    return TlsServer(server, cert)


def test_rtmps_and_rtmpts_with_self_signed_certificate(tls_server: TlsServer) -> None:
    verified = probe(*tls_server.args())
    rows = verified.rows()
    assert verified.returncode == 0, verified  # rtmp and rtmpt still work
    for name in ("rtmps", "rtmpts"):
        assert rows[name]["ok"] is False, f"{name} accepted a self-signed certificate\n{verified}"
        assert "certificate" in rows[name]["error"].lower(), rows[name]

    for how in (["--insecure"], ["--cafile", str(tls_server.cert)]):
        run = probe(*tls_server.args(*how))
        assert run.returncode == 0, run
        rows = run.rows()
        for name in ("rtmp", "rtmps", "rtmpt", "rtmpts"):
            assert rows[name]["ok"] is True, f"{how}: {rows[name]}"
        assert rows["rtmps"]["tls_version"] in ("TLSv1.2", "TLSv1.3"), rows["rtmps"]
    assert "Traceback" not in tls_server.server.stderr_text()
