"""Certificate rotation without a restart (SSL_CHECK_RELOAD_SECONDS=1).

One scenario, in order, while Debian's ffmpeg publishes the H.264 fixture over plain RTMP and
an ffmpeg reader reads it over rtmps://:

1. new TLS connections (rtmps and https ports) are given the first certificate;
2. the cert/key files are replaced by a new self-signed pair: within RELOAD_BUDGET_S new
   connections get the new certificate;
3. the files are replaced by garbage: one error line, the second certificate still served;
4. a third good pair: served again (a failed reload does not stop later ones).

The rtmps reader, connected before the first swap, stays connected throughout and its packets
are one contiguous run of the source from a keyframe to the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..certs import fingerprint, write_self_signed
from .helpers import (
    Proc,
    ProcGroup,
    Server,
    SourceMedia,
    Tools,
    framemd5_argv,
    is_connected,
    launch_server,
    parse_framemd5,
    publish_argv,
    served_certificate_sha256,
    wait_until,
)
from .test_rtmp_publish_play import assert_late_reader

GRACE_S = 1.0
RELOAD_S = 1
RELOAD_BUDGET_S = 3.0  # files changed -> new connections see the new certificate
READER_START_S = 1.0
END_BUDGET_S = GRACE_S + 3.0
RELOAD_FAILED = "TLS certificate reload failed"


def replace_pair(cert: Path, key: Path, new_cert: bytes, new_key: bytes) -> None:
    """Swap both files by rename (as deploy tools do), so no check sees half a pair."""
    for path, data in ((cert, new_cert), (key, new_key)):
        staged = path.with_name(path.name + ".new")
        staged.write_bytes(data)
    os.replace(cert.with_name(cert.name + ".new"), cert)
    os.replace(key.with_name(key.name + ".new"), key)


def new_pair(workdir: Path, name: str) -> tuple[bytes, bytes, str]:
    """A fresh self-signed pair's PEM bytes and its fingerprint."""
    cert, key = write_self_signed(workdir, name)
    return cert.read_bytes(), key.read_bytes(), fingerprint(cert)


@dataclass
class Rotation:
    group: ProcGroup
    server: Server
    publisher: Proc
    reader: Proc
    fingerprints: dict[str, str]  # first, second, third: of the files written
    # (step, port flag) -> fingerprint a new connection got (None: none within the budget)
    seen: dict[tuple[str, str], str | None] = field(default_factory=dict)
    reader_connected: dict[str, bool] = field(default_factory=dict)  # at each step
    log_after_garbage: str = ""  # server stderr RELOAD_S * 3 after the garbage was written

    def diagnostics(self) -> str:
        return self.group.diagnostics()


PORT_FLAGS = ("--ssl-port", "--https-port")


@pytest.fixture(scope="module")
def rotation(
    tools: Tools, h264_source: SourceMedia, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rotation]:
    workdir = tmp_path_factory.mktemp("rotation")
    cert, key = write_self_signed(workdir)
    pairs = {name: new_pair(workdir, name) for name in ("second", "third")}
    fingerprints = {"first": fingerprint(cert)} | {n: p[2] for n, p in pairs.items()}
    group = ProcGroup(workdir)
    try:
        server = launch_server(
            group,
            "--ssl-cert", str(cert), "--ssl-key", str(key),
            "--ssl-check-reload-seconds", str(RELOAD_S),
            "--unpublish-grace-seconds", str(GRACE_S),
            listeners=PORT_FLAGS,
        )  # fmt: skip
        ssl_port = server.ports["--ssl-port"]
        url = server.url("rotate", "rot_key")
        publisher = group.start("publisher", publish_argv(tools.ffmpeg, h264_source.path, url))
        time.sleep(READER_START_S)
        reader = group.start(
            "reader-rtmps", framemd5_argv(tools.ffmpeg, server.url("rotate", "rot_key", "rtmps"))
        )
        run = Rotation(group, server, publisher, reader, fingerprints)

        def observe(step: str, expected: str) -> None:
            for flag in PORT_FLAGS:
                port = server.ports[flag]
                got: list[str] = []
                wait_until(
                    lambda port=port, got=got: (
                        got.append(served_certificate_sha256(port)) or got[-1] == expected
                    ),
                    RELOAD_BUDGET_S,
                    0.1,
                )
                run.seen[(step, flag)] = got[-1] if got else None
            run.reader_connected[step] = is_connected(reader.pid, ssl_port)

        wait_until(lambda: is_connected(reader.pid, ssl_port) or not reader.running(), 5)
        time.sleep(0.5)  # its handshake, connect and play
        observe("first", fingerprints["first"])
        replace_pair(cert, key, *pairs["second"][:2])
        observe("second", fingerprints["second"])
        replace_pair(cert, key, b"not a certificate\n", b"not a key either\n")
        time.sleep(RELOAD_S * 3)  # three checks: one error line, not three
        run.log_after_garbage = server.stderr_text()
        observe("garbage", fingerprints["second"])
        replace_pair(cert, key, *pairs["third"][:2])
        observe("third", fingerprints["third"])

        publisher.wait(30)
        reader.wait(END_BUDGET_S + 10)
        yield run
    finally:
        group.stop_all()


pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("flag", PORT_FLAGS)
@pytest.mark.parametrize(
    ("step", "expected"),
    [("first", "first"), ("second", "second"), ("garbage", "second"), ("third", "third")],
)
def test_new_connections_get_the_current_certificate(
    rotation: Rotation, flag: str, step: str, expected: str
) -> None:
    got = rotation.seen.get((step, flag))
    names = {fp: name for name, fp in rotation.fingerprints.items()}
    assert got == rotation.fingerprints[expected], (
        f"after the {step!r} files, a new connection to {flag} got "
        f"{names.get(got, got)!r} within {RELOAD_BUDGET_S} s, expected {expected!r}"
    )


def test_bad_pair_is_logged_once_and_the_old_one_kept(rotation: Rotation) -> None:
    failed = [line for line in rotation.log_after_garbage.splitlines() if RELOAD_FAILED in line]
    assert len(failed) == 1, f"expected one {RELOAD_FAILED!r} line, got {failed}"
    assert rotation.fingerprints["second"] in failed[0], failed[0]
    assert "Traceback" not in rotation.server.stderr_text()


def test_reader_stays_connected_across_the_swaps(rotation: Rotation) -> None:
    assert all(rotation.reader_connected.values()), (
        f"rtmps reader connected at each step: {rotation.reader_connected}\n"
        + rotation.reader.diagnostics()
    )
    gone = rotation.publisher.end_time
    assert rotation.publisher.returncode == 0, rotation.publisher.diagnostics()
    assert gone is not None and rotation.reader.end_time is not None
    assert rotation.reader.end_time >= gone, "the rtmps reader ended before the publisher"


def test_reader_gets_one_contiguous_run(rotation: Rotation, h264_source: SourceMedia) -> None:
    assert rotation.reader.returncode == 0, rotation.reader.diagnostics()
    result = parse_framemd5(rotation.reader.stdout_text())
    joined = rotation.reader.start_time - rotation.publisher.start_time
    assert_late_reader(result, h264_source, joined, "rtmps reader across certificate swaps")
