"""bridge.tls: the server context, certificate hot reload, and what real TLS clients see.

Each test runs a TLS echo server on 127.0.0.1 (port 0) with the reloader's live context and
connects real clients by IP (so without SNI, as RTMP clients do)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from bridge import tls
from bridge.tls import CertificateError, CertificateReloader, load_context
from tests.certs import fingerprint, write_self_signed

LOGGER = "bridge.tls"
# A refused handshake: an alert (SSLError) or, as asyncio sometimes reports it, a reset.
REFUSED = (ssl.SSLError, ConnectionError)


# --- harness ---------------------------------------------------------------------------------


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @property
    def ssl_object(self) -> ssl.SSLObject:
        return self.writer.get_extra_info("ssl_object")

    @property
    def fingerprint(self) -> str:
        der = self.ssl_object.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()

    async def echo(self, data: bytes = b"ping") -> bytes:
        self.writer.write(data)
        await self.writer.drain()
        return await asyncio.wait_for(self.reader.readexactly(len(data)), 5)

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (OSError, ssl.SSLError, TimeoutError):
            pass


def client_context(
    version: ssl.TLSVersion | None = None, ciphers: str | None = None
) -> ssl.SSLContext:
    """No verification (self-signed); optionally pinned to one TLS version / TLS 1.2 suites."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


class EchoServer:
    def __init__(self, server: asyncio.Server) -> None:
        self.server = server
        self.port: int = server.sockets[0].getsockname()[1]
        self.clients: list[Client] = []

    async def connect(self, ctx: ssl.SSLContext | None = None) -> Client:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port, ssl=ctx or client_context()), 5
        )
        client = Client(reader, writer)
        self.clients.append(client)
        return client


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def serve() -> AsyncIterator:
    """serve(context) -> EchoServer; everything is closed at the end."""
    servers: list[EchoServer] = []

    async def start(context: ssl.SSLContext) -> EchoServer:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0, ssl=context)
        servers.append(EchoServer(server))
        return servers[-1]

    yield start
    for echo_server in servers:
        for client in echo_server.clients:
            await client.close()
        echo_server.server.close()
        await echo_server.server.wait_closed()


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return write_self_signed(tmp_path)


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]


def infos(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]


def reloader_for(cert: Path, key: Path, interval: float = 60) -> CertificateReloader:
    return CertificateReloader(str(cert), str(key), interval=interval)


# --- rotation on a live listener ---------------------------------------------------------------


async def test_rotation_new_connections_get_new_cert_live_ones_keep_working(
    tmp_path: Path, pair: tuple[Path, Path], serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    cert, key = pair
    reloader = reloader_for(cert, key)
    live = reloader.context
    fp_a = fingerprint(cert)
    assert reloader.fingerprint == fp_a
    server = await serve(reloader.context)

    old = await server.connect()
    assert old.fingerprint == fp_a
    assert await old.echo() == b"ping"

    write_self_signed(tmp_path)  # the same paths, a new key and certificate
    fp_b = fingerprint(cert)
    assert fp_b != fp_a
    caplog.clear()
    assert reloader.check() is True
    assert reloader.fingerprint == fp_b
    assert reloader.context is live  # listeners keep the object they were given
    [line] = infos(caplog)
    assert fp_b in line.getMessage() and "\n" not in line.getMessage()

    new = await server.connect()
    assert new.fingerprint == fp_b
    assert await new.echo(b"new") == b"new"
    assert await old.echo(b"still here") == b"still here"  # the live session is untouched
    assert old.fingerprint == fp_a


async def test_rotation_twice_and_back(tmp_path: Path, pair: tuple[Path, Path], serve) -> None:
    cert, key = pair
    reloader = reloader_for(cert, key)
    server = await serve(reloader.context)
    original = (cert.read_bytes(), key.read_bytes())
    seen = [fingerprint(cert)]
    for _ in range(2):
        write_self_signed(tmp_path)
        assert reloader.check() is True
        seen.append(fingerprint(cert))
        assert (await server.connect()).fingerprint == seen[-1]
    cert.write_bytes(original[0])
    key.write_bytes(original[1])
    assert reloader.check() is True
    assert (await server.connect()).fingerprint == seen[0]
    assert len(set(seen)) == 3


async def test_openssl_keeps_one_cert_per_key_type_so_reloading_in_place_is_not_enough(
    tmp_path: Path, serve
) -> None:
    """Why the reloader switches contexts instead of calling load_cert_chain on the live one:
    after RSA -> ECDSA in place, an RSA-only client is still served the OLD RSA certificate."""
    rsa_cert, rsa_key = write_self_signed(tmp_path, "rsa")
    ec_cert, ec_key = write_self_signed(tmp_path, "ec", key_type="ec")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(rsa_cert, rsa_key)
    server = await serve(ctx)
    ctx.load_cert_chain(ec_cert, ec_key)
    assert (await server.connect()).fingerprint == fingerprint(ec_cert)
    rsa_only = client_context(ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256")
    assert (await server.connect(rsa_only)).fingerprint == fingerprint(rsa_cert)  # stale


async def test_rotation_to_another_key_type_drops_the_old_certificate(
    tmp_path: Path, serve
) -> None:
    cert, key = write_self_signed(tmp_path)  # RSA
    reloader = reloader_for(cert, key)
    server = await serve(reloader.context)
    old = await server.connect()
    rsa_only = client_context(ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256")
    assert (await server.connect(rsa_only)).fingerprint == fingerprint(cert)

    write_self_signed(tmp_path, key_type="ec")
    assert reloader.check() is True
    assert (await server.connect()).fingerprint == fingerprint(cert)
    ecdsa_12 = client_context(ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert (await server.connect(ecdsa_12)).fingerprint == fingerprint(cert)
    with pytest.raises(REFUSED):  # no RSA certificate any more: nothing stale served
        await server.connect(rsa_only)
    assert await old.echo() == b"ping"


# --- protocol versions and suites ------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "version", "cipher_prefix"),
    [
        ("rsa", ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-"),
        ("rsa", ssl.TLSVersion.TLSv1_3, "TLS_"),
        ("ec", ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-"),
        ("ec", ssl.TLSVersion.TLSv1_3, "TLS_"),
    ],
)
async def test_tls12_and_tls13_clients_connect(
    tmp_path: Path, serve, key_type: str, version: ssl.TLSVersion, cipher_prefix: str
) -> None:
    cert, key = write_self_signed(tmp_path, key_type=key_type)  # type: ignore[arg-type]
    server = await serve(load_context(str(cert), str(key)))
    client = await server.connect(client_context(version))
    assert client.ssl_object.version() == version.name.replace("v1_", "v1.")
    cipher = client.ssl_object.cipher()
    assert cipher is not None and cipher[0].startswith(cipher_prefix)
    if version is ssl.TLSVersion.TLSv1_2:
        assert "GCM" in cipher[0] or "CHACHA20" in cipher[0]  # AEAD only
    assert client.fingerprint == fingerprint(cert)
    assert await client.echo() == b"ping"


async def test_default_client_gets_tls13(pair: tuple[Path, Path], serve) -> None:
    server = await serve(load_context(*map(str, pair)))
    assert (await server.connect()).ssl_object.version() == "TLSv1.3"


@pytest.mark.parametrize("ciphers", ["AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA"])
async def test_tls12_suites_outside_the_list_are_refused(
    pair: tuple[Path, Path], serve, ciphers: str
) -> None:
    """No static-RSA key exchange, no CBC/SHA-1 suites."""
    server = await serve(load_context(*map(str, pair)))
    with pytest.raises(REFUSED):
        await server.connect(client_context(ssl.TLSVersion.TLSv1_2, ciphers + ":@SECLEVEL=0"))


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
async def test_tls11_is_refused(pair: tuple[Path, Path], serve) -> None:
    server = await serve(load_context(*map(str, pair)))
    with pytest.raises(REFUSED):
        await server.connect(client_context(ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0"))


def test_context_settings(pair: tuple[Path, Path]) -> None:
    ctx = load_context(*map(str, pair))
    assert ctx.protocol == ssl.PROTOCOL_TLS_SERVER
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.MAXIMUM_SUPPORTED
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    assert ctx.num_tickets == 0
    names = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert {"ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"} <= names
    assert all(n.startswith("ECDHE-") for n in names)


def test_load_context_returns_a_fresh_context_each_time(pair: tuple[Path, Path]) -> None:
    assert load_context(*map(str, pair)) is not load_context(*map(str, pair))


# --- bad pairs --------------------------------------------------------------------------------


def _garbage(cert: Path, key: Path, tmp: Path) -> Path:
    cert.write_bytes(b"not a certificate\n")
    return cert


def _garbage_key(cert: Path, key: Path, tmp: Path) -> Path:
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    return key


def _corrupt_cert(cert: Path, key: Path, tmp: Path) -> Path:
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    return cert


def _other_key(cert: Path, key: Path, tmp: Path) -> Path:
    _, other_key = write_self_signed(tmp, "other")
    key.write_bytes(other_key.read_bytes())
    return key


def _new_cert_old_key(cert: Path, key: Path, tmp: Path) -> Path:
    other_cert, _ = write_self_signed(tmp, "other")
    cert.write_bytes(other_cert.read_bytes())
    return key


def _missing_cert(cert: Path, key: Path, tmp: Path) -> Path:
    cert.unlink()
    return cert


def _missing_key(cert: Path, key: Path, tmp: Path) -> Path:
    key.unlink()
    return key


def _swapped(cert: Path, key: Path, tmp: Path) -> Path:
    cert_pem, key_pem = cert.read_bytes(), key.read_bytes()
    cert.write_bytes(key_pem)
    key.write_bytes(cert_pem)
    return cert


def _encrypted(cert: Path, key: Path, tmp: Path) -> Path:
    write_self_signed(cert.parent, cert.stem, passphrase=b"secret")
    return key


def _weak_rsa(cert: Path, key: Path, tmp: Path) -> Path:
    write_self_signed(cert.parent, cert.stem, rsa_bits=1024)
    return cert


def _empty(cert: Path, key: Path, tmp: Path) -> Path:
    cert.write_bytes(b"")
    return cert


def _huge(cert: Path, key: Path, tmp: Path) -> Path:
    cert.write_bytes(cert.read_bytes() + b"\n" * (tls.MAX_PEM_BYTES + 1))
    return cert


def _directory(cert: Path, key: Path, tmp: Path) -> Path:
    key.unlink()
    key.mkdir()
    return key


BREAKERS = {
    "garbage cert": (_garbage, "no PEM certificate"),
    "garbage key": (_garbage_key, "malformed"),
    "corrupt cert": (_corrupt_cert, "malformed PEM certificate"),
    "key of another cert": (_other_key, "does not match"),
    "cert of another key": (_new_cert_old_key, "does not match"),
    "missing cert": (_missing_cert, "No such file"),
    "missing key": (_missing_key, "No such file"),
    "cert and key swapped": (_swapped, "swapped"),
    "encrypted key": (_encrypted, "encrypted"),
    "1024-bit RSA": (_weak_rsa, "too small"),
    "empty cert": (_empty, "no PEM certificate"),
    "huge cert": (_huge, "larger than"),
    "key is a directory": (_directory, "directory"),
}


@pytest.mark.parametrize("case", BREAKERS, ids=list(BREAKERS))
async def test_bad_new_pair_is_logged_once_and_the_old_one_kept(
    tmp_path: Path, serve, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    breaker, reason = BREAKERS[case]
    certs = tmp_path / "certs"
    certs.mkdir()
    cert, key = write_self_signed(certs)
    fp = fingerprint(cert)
    reloader = reloader_for(cert, key)
    server = await serve(reloader.context)
    live = await server.connect()

    caplog.set_level(logging.INFO, logger=LOGGER)
    caplog.clear()
    named = breaker(cert, key, tmp_path)
    assert reloader.check() is False
    [line] = errors(caplog)
    message = line.getMessage()
    assert str(named) in message and reason in message, message
    assert "\n" not in message
    assert infos(caplog) == []
    assert reloader.fingerprint == fp
    assert (await server.connect()).fingerprint == fp
    assert await live.echo() == b"ping"

    # The same broken contents: not reloaded, not logged again.
    caplog.clear()
    assert reloader.check() is False
    assert reloader.check() is False
    assert caplog.records == []

    # Fixed: served at the next check.
    if key.is_dir():
        key.rmdir()
    write_self_signed(certs)
    assert reloader.check() is True
    assert reloader.fingerprint == fingerprint(cert) != fp
    assert (await server.connect()).fingerprint == reloader.fingerprint
    assert len(infos(caplog)) == 1 and errors(caplog) == []


@pytest.mark.parametrize("case", BREAKERS, ids=list(BREAKERS))
def test_initial_bad_pair_raises_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    breaker, reason = BREAKERS[case]
    certs = tmp_path / "certs"
    certs.mkdir()
    cert, key = write_self_signed(certs)
    named = breaker(cert, key, tmp_path)
    for make in (
        lambda: load_context(str(cert), str(key)),
        lambda: CertificateReloader(str(cert), str(key), interval=1),
    ):
        with pytest.raises(CertificateError) as info:
            make()
        message = str(info.value)
        assert message.startswith(f"{named}: "), message
        assert reason in message and "\n" not in message


def test_a_different_bad_pair_is_logged_again(
    tmp_path: Path, pair: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = pair
    reloader = reloader_for(cert, key)
    caplog.set_level(logging.INFO, logger=LOGGER)
    cert.write_bytes(b"garbage one")
    assert reloader.check() is False
    cert.write_bytes(b"garbage two")
    assert reloader.check() is False
    cert.unlink()
    assert reloader.check() is False
    assert reloader.check() is False
    assert len(errors(caplog)) == 3


def test_check_never_raises(
    pair: tuple[Path, Path], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = pair
    reloader = reloader_for(cert, key)
    fp = reloader.fingerprint

    def boom(*args: object) -> None:
        raise RuntimeError("unforeseen\nmultiline")

    monkeypatch.setattr(tls, "_load", boom)
    cert.write_bytes(cert.read_bytes() + b"\n")
    assert reloader.check() is False
    [line] = errors(caplog)
    assert "unforeseen" in line.getMessage() and "\n" not in line.getMessage()
    assert reloader.fingerprint == fp


# --- change detection -------------------------------------------------------------------------


def test_unchanged_files_are_not_reloaded(
    pair: tuple[Path, Path], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = pair
    reloader = reloader_for(cert, key)
    loads: list[str] = []
    real_load = tls._load
    monkeypatch.setattr(tls, "_load", lambda *a: loads.append("load") or real_load(*a))
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    assert reloader.check() is False
    os.utime(cert)  # touched, same contents (e.g. a renewal script that rewrote the same files)
    os.utime(key, ns=(1, 1))
    assert reloader.check() is False
    assert loads == [] and caplog.records == []


def test_new_contents_seen_even_when_mtime_and_size_are_unchanged(
    tmp_path: Path, pair: tuple[Path, Path]
) -> None:
    cert, key = pair
    reloader = reloader_for(cert, key)
    fp = reloader.fingerprint
    stats = [(p.stat().st_atime_ns, p.stat().st_mtime_ns) for p in pair]
    cert_pem = cert.read_bytes()
    # Another certificate for the same key, padded to the same size, old mtimes put back.
    other = tmp_path / "resigned"
    other.mkdir()
    shutil.copy(key, other / "server.key")
    old = x509.load_pem_x509_certificate(cert_pem)
    signing_key = serialization.load_pem_private_key(key.read_bytes(), None)
    resigned = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.issuer)
        .public_key(old.public_key())
        .serial_number(old.serial_number + 1)
        .not_valid_before(old.not_valid_before_utc)
        .not_valid_after(old.not_valid_after_utc)
        .sign(signing_key, hashes.SHA256())  # type: ignore[arg-type]
        .public_bytes(serialization.Encoding.PEM)
    )
    assert len(resigned) <= len(cert_pem)
    cert.write_bytes(resigned + b"\n" * (len(cert_pem) - len(resigned)))
    for path, ns in zip(pair, stats, strict=True):
        os.utime(path, ns=ns)
    assert cert.stat().st_size == len(cert_pem)
    assert reloader.check() is True
    assert reloader.fingerprint == fingerprint(cert) != fp


async def test_combined_pem_and_chain_file(tmp_path: Path, serve) -> None:
    """One file holding certificate, an extra chain certificate and key, given as both
    SSL_CERT and SSL_KEY (a common layout); the fingerprint is the leaf's."""
    leaf_cert, leaf_key = write_self_signed(tmp_path, "leaf")
    extra_cert, _ = write_self_signed(tmp_path, "extra", cn="intermediate")
    combined = tmp_path / "combined.pem"
    combined.write_bytes(
        b"Bag Attributes: junk text\n"
        + leaf_cert.read_bytes()
        + extra_cert.read_bytes()
        + leaf_key.read_bytes()
    )
    reloader = reloader_for(combined, combined)
    assert reloader.fingerprint == fingerprint(leaf_cert)
    client = await (await serve(reloader.context)).connect()
    assert client.fingerprint == fingerprint(leaf_cert)


# --- run() ------------------------------------------------------------------------------------


async def test_run_checks_every_interval_and_cancels(
    tmp_path: Path, pair: tuple[Path, Path], serve
) -> None:
    cert, key = pair
    reloader = reloader_for(cert, key, interval=0.05)
    server = await serve(reloader.context)
    task = asyncio.create_task(reloader.run())
    write_self_signed(tmp_path)
    expected = fingerprint(cert)
    for _ in range(200):
        if reloader.fingerprint == expected:
            break
        await asyncio.sleep(0.025)
    assert reloader.fingerprint == expected
    assert (await server.connect()).fingerprint == expected
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_run_with_zero_interval_never_checks(tmp_path: Path, pair: tuple[Path, Path]) -> None:
    cert, key = pair
    reloader = reloader_for(cert, key, interval=0)
    fp = reloader.fingerprint
    task = asyncio.create_task(reloader.run())
    write_self_signed(tmp_path)
    await asyncio.sleep(0.2)
    assert not task.done()
    assert reloader.fingerprint == fp
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- other TLS implementations ----------------------------------------------------------------


async def _rtmp_handshake_server(
    context: ssl.SSLContext, seen: list[str]
) -> tuple[asyncio.Server, int]:
    """Plays the server side of the plain RTMP handshake (S0 S1 S2), then records the first
    chunk the client sends (its `connect`)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen.append(writer.get_extra_info("ssl_object").version())
            c0c1 = await reader.readexactly(1537)
            writer.write(b"\x03" + bytes(8) + os.urandom(1528) + c0c1[1:])
            await writer.drain()
            await reader.readexactly(1536)  # C2
            first = await asyncio.wait_for(reader.read(4096), 5)
            seen.append("connect" if b"connect" in first else f"unexpected {first[:20]!r}")
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError) as exc:
            seen.append(f"failed: {exc!r}")
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.skipif(shutil.which("rtmpdump") is None, reason="rtmpdump not installed")
@pytest.mark.parametrize("max_version", [None, ssl.TLSVersion.TLSv1_2], ids=["default", "1.2"])
async def test_rtmpdump_gets_through_tls_and_the_rtmp_handshake(
    pair: tuple[Path, Path], max_version: ssl.TLSVersion | None
) -> None:
    """librtmp (GnuTLS on Debian) offers TLS 1.3; it only gets past the RTMP handshake over 1.3
    because the context sends no session tickets."""
    reloader = reloader_for(*pair)
    context = reloader.context
    if max_version is not None:
        context = load_context(*map(str, pair))
        context.maximum_version = max_version
    seen: list[str] = []
    server, port = await _rtmp_handshake_server(context, seen)
    try:
        proc = await asyncio.create_subprocess_exec(
            "rtmpdump", "-r", f"rtmps://127.0.0.1:{port}/app/stream", "-o", os.devnull,
            "-m", "5",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        server.close()
        await server.wait_closed()
    expected = "TLSv1.2" if max_version else "TLSv1.3"
    assert seen == [expected, "connect"], stderr.decode(errors="replace")[-500:]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl binary not installed")
@pytest.mark.parametrize(
    ("flags", "protocol"),
    [
        (["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"], "TLSv1.2"),
        (["-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"], "TLSv1.2"),
        (["-tls1_3"], "TLSv1.3"),
    ],
)
async def test_openssl_s_client(
    pair: tuple[Path, Path], serve, flags: list[str], protocol: str
) -> None:
    server = await serve(reloader_for(*pair).context)
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", *flags,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    text = out.decode(errors="replace")
    assert f"Protocol  : {protocol}" in text or f"New, {protocol}" in text, text[-1500:]
    assert "CN = localhost" in text


def test_without_memfd_the_pem_copy_is_a_private_temp_file_removed_after(
    pair: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tls.tempfile, "tempdir", str(scratch))
    monkeypatch.delattr(tls.os, "memfd_create")
    modes: list[int] = []
    real_mkstemp = tls.tempfile.mkstemp

    def spy(*args: object, **kwargs: object) -> tuple[int, str]:
        fd, path = real_mkstemp(*args, **kwargs)  # type: ignore[arg-type]
        modes.append(os.stat(path).st_mode & 0o777)
        return fd, path

    monkeypatch.setattr(tls.tempfile, "mkstemp", spy)
    reloader = reloader_for(*pair)
    assert reloader.fingerprint == fingerprint(pair[0])
    assert modes == [0o600]
    assert list(scratch.iterdir()) == []
