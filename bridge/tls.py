"""TLS for RTMPS and HTTPS: one server context for the process, certificates reloaded in place.

How a reload reaches new connections (measured on OpenSSL 3.0, see tests/unit/test_tls.py):

* `load_cert_chain` again on a context that listeners already use does reach new handshakes,
  but OpenSSL keeps one certificate per key type in a context: after an RSA -> ECDSA
  change the old RSA certificate stays in it and is still served to clients that offer only
  RSA. A failed load can also leave a context with the new certificate and no key.
* So the live context (`CertificateReloader.context`, handed to every listener) is never
  reloaded. Its `sni_callback`, which OpenSSL (1.1.1 and later, the only ones Python 3.11
  supports) calls on every ClientHello, with or without SNI, moves the handshake onto the
  newest fully loaded context (`SSLObject.context = ...`, i.e. SSL_set_SSL_CTX). Live
  sessions keep the context they started with.

TLS 1.3 session tickets are off (`num_tickets = 0`): Debian's rtmpdump (librtmp over GnuTLS
3.7) negotiates TLS 1.3, then takes the NewSessionTicket the server sends after the handshake
for a read error and drops the connection ("RTMP_Connect1, handshake failed"). Without
tickets it works over 1.3; TLS 1.2 tickets travel inside the handshake and do no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

__all__ = ["CertificateError", "CertificateReloader", "load_context"]

# TLS 1.2 suites: the ECDHE part of Mozilla's "intermediate" server configuration
# (https://wiki.mozilla.org/Security/Server_Side_TLS). The DHE suites it also lists are left
# out: Python loads no DH parameters, so OpenSSL could not use them. GnuTLS "NORMAL" (librtmp's
# priority string) and FFmpeg's TLS backends all offer the AES-GCM ones. TLS 1.3 suites are
# OpenSSL's defaults (set_ciphers does not touch them).
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        # Level 2 whatever the system's openssl.cnf says: RSA/DH keys of 2048 bits or more,
        # ECC of 224 or more. A weaker certificate is refused at load time with a clear line.
        "@SECLEVEL=2",
    )
)

# A certificate chain is a few KiB; a bigger "PEM file" is a mistake, not something to hold.
MAX_PEM_BYTES = 1 << 20

_CERT_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_KEY_BLOCK = re.compile(
    rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL
)


class CertificateError(Exception):
    """A certificate/key pair that does not load. The message is one line naming the file."""


@dataclass(frozen=True)
class _Pair:
    """A pair that loaded: the context serving it and what to log about it."""

    context: ssl.SSLContext
    fingerprint: str  # SHA-256 of the leaf certificate's DER, lowercase hex
    summary: str  # "CN=..., expires YYYY-MM-DD"


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise CertificateError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_PEM_BYTES:
        raise CertificateError(f"{path}: larger than {MAX_PEM_BYTES} bytes, not a PEM file")
    return data


def _new_context() -> ssl.SSLContext:
    """A server context with our settings and no certificate yet."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # rtmpdump and old encoders: 1.2 is the floor
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.verify_mode = ssl.CERT_NONE  # no client certificates
    # Compression: CRIME. Renegotiation: a client could make us redo handshakes at will.
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.num_tickets = 0  # rtmpdump over TLS 1.3: see the module docstring
    return ctx


def _no_passphrase() -> bytes:
    # Without a password callback OpenSSL would prompt on the terminal for an encrypted key,
    # blocking the event loop. _parse refuses encrypted keys first; this is the backstop.
    raise CertificateError("the private key is encrypted (passphrases are not supported)")


@contextlib.contextmanager
def _pem_path(data: bytes) -> Iterator[str]:
    """A path holding exactly `data`: the bytes we checked are the bytes OpenSSL loads, even if
    the files change meanwhile. Memory-only where the OS allows (no key copy on disk)."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("bridge-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(prefix="bridge-tls-", suffix=".pem")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        os.unlink(path)


def _parse(
    cert_path: str, cert_pem: bytes, key_path: str, key_pem: bytes
) -> tuple[bytes, str, str]:
    """Check the pair with precise one-line reasons; returns (PEM to load, fingerprint,
    summary). The PEM holds only the certificate blocks, in order, then the one key block."""
    cert_blocks = _CERT_BLOCK.findall(cert_pem)
    if not cert_blocks:
        hint = (
            " (it holds a private key: certificate and key swapped?)"
            if _KEY_BLOCK.search(cert_pem)
            else ""
        )
        raise CertificateError(f"{cert_path}: no PEM certificate found{hint}")
    try:
        chain = [x509.load_pem_x509_certificate(block) for block in cert_blocks]
    except ValueError:
        raise CertificateError(f"{cert_path}: malformed PEM certificate") from None
    key_match = _KEY_BLOCK.search(key_pem)
    if key_match is None:
        hint = (
            " (it holds a certificate: certificate and key swapped?)"
            if _CERT_BLOCK.search(key_pem)
            else ""
        )
        raise CertificateError(f"{key_path}: no PEM private key found{hint}")
    try:
        key = serialization.load_pem_private_key(key_match.group(0), password=None)
    except TypeError:  # cryptography's way of saying "encrypted, and no password given"
        raise CertificateError(
            f"{key_path}: the private key is encrypted (passphrases are not supported)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError(f"{key_path}: malformed or unsupported PEM private key") from None
    leaf = chain[0]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise CertificateError(f"{key_path}: the key does not match the certificate in {cert_path}")
    fingerprint = leaf.fingerprint(hashes.SHA256()).hex()
    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(names[0].value) if names else leaf.subject.rfc4514_string() or "(no subject)"
    summary = f"CN={cn}, expires {leaf.not_valid_after_utc:%Y-%m-%d}"
    return b"\n".join(cert_blocks) + b"\n" + key_match.group(0) + b"\n", fingerprint, summary


def _load(cert_path: str, cert_pem: bytes, key_path: str, key_pem: bytes) -> _Pair:
    """Parse the pair and load it into a fresh context, or raise CertificateError."""
    pem, fingerprint, summary = _parse(cert_path, cert_pem, key_path, key_pem)
    ctx = _new_context()
    try:
        with _pem_path(pem) as path:
            ctx.load_cert_chain(path, password=_no_passphrase)
    except CertificateError as exc:  # from _no_passphrase
        raise CertificateError(f"{key_path}: {exc}") from None
    except ssl.SSLError as exc:  # e.g. "ee key too small" (OpenSSL security level)
        reason = (exc.reason or str(exc)).lower().replace("_", " ")
        raise CertificateError(f"{cert_path}: refused by OpenSSL: {reason}") from None
    except OSError as exc:
        raise CertificateError(f"{cert_path}: cannot load: {exc}") from None
    return _Pair(ctx, fingerprint, summary)


def load_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """A TLS 1.2+ server context serving the PEM pair; CertificateError if it does not load."""
    return _load(cert_path, _read(cert_path), key_path, _read(key_path)).context


def _snapshot(
    cert_path: str, key_path: str
) -> tuple[bytes, bytes | CertificateError, bytes | CertificateError]:
    """Both files' contents (or why they could not be read) and a digest of it all: the digest
    changes with any change of contents, however quick (mtime and size can stay the same), and
    stays put while the same error persists, so that error is logged once."""
    h = hashlib.sha256()
    found: list[bytes | CertificateError] = []
    for path in (cert_path, key_path):
        try:
            data = _read(path)
        except CertificateError as exc:
            found.append(exc)
            data = b"error: " + str(exc).encode()
        else:
            found.append(data)
        h.update(b"%d:" % len(data) + data)
    return h.digest(), found[0], found[1]


def _load_snapshot(
    cert_path: str,
    cert: bytes | CertificateError,
    key_path: str,
    key: bytes | CertificateError,
) -> _Pair:
    if isinstance(cert, CertificateError):
        raise cert
    if isinstance(key, CertificateError):
        raise key
    return _load(cert_path, cert, key_path, key)


class CertificateReloader:
    """The process's TLS server context, with certificates reloaded when the files change.

    `context` is the one object to give every listener; it stays the same for the process
    lifetime. `check()` (called by `run()` every `interval` seconds) loads a changed pair into
    a fresh context and, if it loads, switches new handshakes to it; a bad pair is logged once
    and the old one kept. The reloader owns `context.sni_callback`.
    """

    def __init__(
        self,
        cert_path: str,
        key_path: str,
        *,
        interval: float,
        log: logging.Logger | None = None,
    ) -> None:
        self.cert_path = str(cert_path)
        self.key_path = str(key_path)
        self.interval = interval
        self._log = log or logging.getLogger("bridge.tls")
        digest, cert, key = _snapshot(self.cert_path, self.key_path)
        pair = _load_snapshot(self.cert_path, cert, self.key_path, key)
        self._digest = digest  # contents last looked at, good or bad
        self._current = pair.context
        self.context: ssl.SSLContext = pair.context
        self.context.sni_callback = self._select
        self.fingerprint: str = pair.fingerprint
        self._log.info(
            "TLS certificate %s: sha256 %s (%s)", self.cert_path, self.fingerprint, pair.summary
        )

    def _select(self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        # Runs inside OpenSSL's ClientHello processing for every handshake: keep it trivial.
        current = self._current
        if current is not ctx:
            sslobj.context = current

    def check(self) -> bool:
        """Reload if the files' contents changed; True if a new pair is now served. Never
        raises: a bad pair is logged (once per distinct contents) and the old one kept."""
        try:
            digest, cert, key = _snapshot(self.cert_path, self.key_path)
            if digest == self._digest:
                return False
            self._digest = digest
            pair = _load_snapshot(self.cert_path, cert, self.key_path, key)
        except Exception as exc:  # CertificateError, or anything unforeseen: keep serving
            reason = str(exc) if isinstance(exc, CertificateError) else repr(exc)
            self._log.error(
                "TLS certificate reload failed, still serving sha256 %s: %s",
                self.fingerprint,
                reason.replace("\n", " "),
            )
            return False
        self._current = pair.context
        self.fingerprint = pair.fingerprint
        self._log.info(
            "TLS certificate reloaded %s: sha256 %s (%s)",
            self.cert_path,
            self.fingerprint,
            pair.summary,
        )
        return True

    async def run(self) -> None:
        """Check every `interval` seconds until cancelled; interval <= 0: never check (but
        still run until cancelled, like any other service task)."""
        if self.interval <= 0:
            await asyncio.Event().wait()
        while True:
            await asyncio.sleep(self.interval)
            # A thread: certificate files can sit on a slow or hung network mount.
            await asyncio.to_thread(self.check)
