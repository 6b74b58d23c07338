"""The RTMP handshake, sans-IO: C0/C1/C2 <-> S0/S1/S2 [SPEC §5.2].

Two forms exist. The *simple* one (S1 version 0, S2 = echo of C1) is what OBS and FFmpeg
publishers do. The *digest* ("complex", "FP9") one hides an HMAC-SHA256 digest in C1/S1 and
signs C2/S2 with keys derived from the peer's digest; Flash Player needs it, and FFmpeg as a
player validates it whenever S1 carries a version >= 3 [FF `rtmp_handshake`].

The server follows nginx-rtmp [NGX `ngx_rtmp_handshake_parse_challenge`]: answer with the
digest form only when C1 carries a version and a digest that validates (scheme 1 tried
first, then scheme 0), otherwise the simple form; C2 is read but not checked. Unlike nginx
(which always places S1's digest with scheme 0) we answer with the scheme C1 used, as SRS
does; FFmpeg and librtmp validate either.

Digest position in a 1536-byte C1/S1: sum the 4 bytes at ``base``, take it mod 728 and add
``base + 4``; base is 8 for scheme 0 and 772 for scheme 1 [FF `ff_rtmp_calc_digest_pos`;
LIBRTMP `GetDigestOffset1/2`; MTX gortmplib `pkg/handshake/c1s1.go`]. The digest is the
HMAC over the packet minus those 32 bytes, keyed with the first 30 bytes of the player key
(C1) or the first 36 of the server key (S1). S2/C2 end with HMAC(HMAC(full own key, peer's
digest), first 1504 bytes) [FF; NGX `ngx_rtmp_handshake_create_response`; MTX c2s2.go].

No IO, no clock: uptime and randomness are injected.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from enum import Enum, auto

from bridge.rtmp.errors import HandshakeError

__all__ = [
    "PACKET_SIZE",
    "PLAYER_KEY",
    "PLAYER_KEY_PARTIAL_LEN",
    "RTMP_VERSION",
    "SERVER_KEY",
    "SERVER_KEY_PARTIAL_LEN",
    "ClientHandshake",
    "ServerHandshake",
    "digest_offset",
    "find_digest",
]

RTMP_VERSION = 3
PACKET_SIZE = 1536  # C1, S1, C2, S2
DIGEST_SIZE = 32
SIGNED_SIZE = PACKET_SIZE - DIGEST_SIZE  # 1504 bytes covered by the S2/C2 signature

# The 32-byte tail shared by both keys. Same bytes in FFmpeg `rtmp_player_key` /
# `rtmp_server_key` (libavformat/rtmpproto.c), librtmp `GenuineFPKey` / `GenuineFMSKey`
# (librtmp/handshake.h), nginx-rtmp `ngx_rtmp_client_key` / `ngx_rtmp_server_key`
# (ngx_rtmp_handshake.c) and gortmplib `randomCrud` (pkg/handshake/c2s2.go).
_KEY_SUFFIX = bytes.fromhex(
    "f0eec24a8068bee82e00d0d1029e7e57"  # keep on two lines for comparison with the sources
    "6eec5d2d29806fab93b8e636cfeb31ae"
)
PLAYER_KEY = b"Genuine Adobe Flash Player 001" + _KEY_SUFFIX  # 62 bytes
SERVER_KEY = b"Genuine Adobe Flash Media Server 001" + _KEY_SUFFIX  # 68 bytes
PLAYER_KEY_PARTIAL_LEN = 30  # FFmpeg PLAYER_KEY_OPEN_PART_LEN: keys the C1 digest
SERVER_KEY_PARTIAL_LEN = 36  # FFmpeg SERVER_KEY_OPEN_PART_LEN: keys the S1 digest

# Scheme number -> base offset of the 4 position bytes. Validators try 1 then 0 [FF; NGX].
_SCHEME_BASE = {0: 8, 1: 772}
_VALIDATION_ORDER = (1, 0)

# nginx-rtmp's server version; any S1 byte 4 >= 3 makes FFmpeg players validate.
SERVER_VERSION = bytes((0x0D, 0x0E, 0x0A, 0x0D))
# What FFmpeg sends as a player: Flash 9.0.124.2 [FF rtmp.h RTMP_CLIENT_VER1..4].
CLIENT_VERSION = bytes((9, 0, 124, 2))

# C0 values that announce RTMPE (Adobe's DH + RC4 obfuscation) [LIBRTMP; MTX gortmplib].
_RTMPE_VERSIONS = frozenset({6, 8, 9})


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def digest_offset(packet: bytes | bytearray, scheme: int) -> int:
    """Where the 32-byte digest sits in a 1536-byte C1/S1 under `scheme` (0 or 1)."""
    base = _SCHEME_BASE[scheme]
    return sum(packet[base : base + 4]) % 728 + base + 4


def _packet_digest(packet: bytes, pos: int, key: bytes) -> bytes:
    return _hmac(key, packet[:pos] + packet[pos + DIGEST_SIZE :])


def find_digest(packet: bytes, key: bytes) -> tuple[int, bytes] | None:
    """Return (scheme, digest) if a C1/S1 digest keyed with `key` validates, else None."""
    if len(packet) != PACKET_SIZE:
        return None
    for scheme in _VALIDATION_ORDER:
        pos = digest_offset(packet, scheme)
        found = packet[pos : pos + DIGEST_SIZE]
        if hmac.compare_digest(found, _packet_digest(packet, pos, key)):
            return scheme, found
    return None


def _imprint_digest(packet: bytearray, scheme: int, key: bytes) -> bytes:
    """Write the digest into `packet` in place (the position bytes lie outside it)."""
    pos = digest_offset(packet, scheme)
    digest = _packet_digest(bytes(packet), pos, key)
    packet[pos : pos + DIGEST_SIZE] = digest
    return digest


def _signed_response(random: bytes, own_full_key: bytes, peer_digest: bytes) -> bytes:
    """An S2/C2: 1504 bytes followed by their HMAC keyed from the peer's digest."""
    body = random[:SIGNED_SIZE]
    return body + _hmac(_hmac(own_full_key, peer_digest), body)


def _make_c1s1(
    random_bytes: Callable[[int], bytes],
    uptime_ms: int,
    version: bytes,
) -> bytearray:
    packet = bytearray((uptime_ms & 0xFFFFFFFF).to_bytes(4, "big"))
    packet += version
    packet += _random(random_bytes, PACKET_SIZE - 8)
    return packet


def _random(random_bytes: Callable[[int], bytes], n: int) -> bytes:
    data = random_bytes(n)
    if len(data) != n:  # an injected source that lies would corrupt the packet silently
        raise ValueError(f"random_bytes({n}) returned {len(data)} bytes")
    return data


def _check_version(c0: int, who: str) -> None:
    if c0 == RTMP_VERSION:
        return
    if c0 in _RTMPE_VERSIONS:
        raise HandshakeError("encrypted RTMP (RTMPE) is not supported")
    hint = ""
    # A printable byte is usually a text protocol (an HTTP request) on the RTMP port.
    if 0x20 < c0 < 0x7F:
        hint = f" ({chr(c0)!r}; not an RTMP client?)"
    raise HandshakeError(f"unsupported RTMP version {c0} in {who}{hint}")


class _Stage(Enum):
    FIRST = auto()  # waiting for C0+C1 / S0+S1
    SECOND = auto()  # waiting for C2 / S2
    DONE = auto()
    FAILED = auto()


class _Base:
    """Byte accounting shared by both sides: fixed-size reads, leftover, failure latch."""

    _first_name = "C0"  # what the peer's version byte is called, for error messages

    def __init__(self) -> None:
        self._stage = _Stage.FIRST
        # Only the packet being read lives here, so never more than 1537 bytes.
        self._buf = bytearray()
        self._out = bytearray()
        self._leftover = bytearray()

    @property
    def done(self) -> bool:
        """True once the peer's last handshake packet (C2 or S2) has been fully received."""
        return self._stage is _Stage.DONE

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (empty if there are none)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def take_leftover(self) -> bytes:
        """Bytes received after the handshake; they belong to the chunk stream."""
        out = bytes(self._leftover)
        self._leftover.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer. Raises HandshakeError on a handshake we refuse."""
        if self._stage is _Stage.FAILED:
            raise HandshakeError("handshake already failed")
        view = memoryview(data)
        try:
            while view:
                if self._stage is _Stage.DONE:
                    # Anything past the last packet is chunk-stream data, kept whole so
                    # any split of the input gives the same result.
                    self._leftover += view
                    return
                if not self._buf:
                    self._peek_first_byte(view[0])
                need = self._expected() - len(self._buf)
                self._buf += view[:need]
                view = view[need:]
                if len(self._buf) == self._expected():
                    packet = bytes(self._buf)
                    self._buf.clear()
                    self._on_packet(packet)
        except HandshakeError:
            self._stage = _Stage.FAILED
            self._buf.clear()
            raise

    def _expected(self) -> int:
        return PACKET_SIZE + 1 if self._stage is _Stage.FIRST else PACKET_SIZE

    def _peek_first_byte(self, byte: int) -> None:
        """Fail on a bad C0/S0 at its first byte, not 1536 bytes later."""
        if self._stage is _Stage.FIRST:
            _check_version(byte, self._first_name)

    def _on_packet(self, packet: bytes) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class ServerHandshake(_Base):
    """Server side: reads C0+C1, answers S0+S1+S2 at once, then reads C2 (unchecked)."""

    _first_name = "C0"

    def __init__(
        self,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        uptime_ms: int = 0,
    ) -> None:
        super().__init__()
        self._random_bytes = random_bytes
        self._uptime_ms = uptime_ms
        self._scheme: int | None = None

    @property
    def digest(self) -> bool:
        """True when the client's C1 carried a valid digest and we answered in kind."""
        return self._scheme is not None

    @property
    def scheme(self) -> int | None:
        """The digest scheme (0 or 1) the client used and we answered with, if any."""
        return self._scheme

    def _on_packet(self, packet: bytes) -> None:
        if self._stage is _Stage.FIRST:
            self._answer(packet[1:])
            self._stage = _Stage.SECOND
        else:
            # C2 should echo S1 (simple) or be signed (digest); nginx checks neither and
            # some encoders get it wrong, so we don't either.
            self._stage = _Stage.DONE

    def _answer(self, c1: bytes) -> None:
        found = None
        if c1[4:8] != b"\x00\x00\x00\x00":
            found = find_digest(c1, PLAYER_KEY[:PLAYER_KEY_PARTIAL_LEN])
        if found is None:
            # Simple form: S1 version 0 and S2 = C1 byte for byte (OBS warns otherwise).
            s1 = _make_c1s1(self._random_bytes, self._uptime_ms, b"\x00\x00\x00\x00")
            s2 = c1
        else:
            self._scheme, c1_digest = found
            s1 = _make_c1s1(self._random_bytes, self._uptime_ms, SERVER_VERSION)
            _imprint_digest(s1, self._scheme, SERVER_KEY[:SERVER_KEY_PARTIAL_LEN])
            s2 = _signed_response(_random(self._random_bytes, SIGNED_SIZE), SERVER_KEY, c1_digest)
        self._out += bytes((RTMP_VERSION,)) + s1 + s2


class ClientHandshake(_Base):
    """Client side: sends C0+C1, reads S0+S1, sends C2, reads S2.

    With ``digest=True`` it behaves like FFmpeg's player: C1 carries Flash version
    9.0.124.2 and a digest, and when S1's major version is >= 3 it validates the S1
    digest (scheme 1, then 0) and the S2 signature, and signs C2. Otherwise it echoes S1.
    """

    _first_name = "S0"

    def __init__(
        self,
        *,
        digest: bool = False,
        scheme: int = 1,
        random_bytes: Callable[[int], bytes] = os.urandom,
        uptime_ms: int = 0,
    ) -> None:
        super().__init__()
        if scheme not in _SCHEME_BASE:
            raise ValueError(f"scheme must be 0 or 1, not {scheme!r}")
        self._random_bytes = random_bytes
        self._use_digest = digest
        version = CLIENT_VERSION if digest else b"\x00\x00\x00\x00"
        c1 = _make_c1s1(random_bytes, uptime_ms, version)
        self._c1_digest: bytes | None = None
        if digest:
            self._c1_digest = _imprint_digest(c1, scheme, PLAYER_KEY[:PLAYER_KEY_PARTIAL_LEN])
        self._c1 = bytes(c1)
        self._validate_s2 = False

    def initial_data(self) -> bytes:
        """C0+C1, to be written first (the same bytes on every call)."""
        return bytes((RTMP_VERSION,)) + self._c1

    def _on_packet(self, packet: bytes) -> None:
        if self._stage is _Stage.FIRST:
            self._answer(packet[1:])
            self._stage = _Stage.SECOND
        else:
            if self._validate_s2:
                self._check_s2(packet)
            self._stage = _Stage.DONE

    def _answer(self, s1: bytes) -> None:
        if not (self._use_digest and s1[4] >= 3):
            # FFmpeg's rule: a server major version < 3 gets a plain echo, unchecked.
            self._out += s1
            return
        found = find_digest(s1, SERVER_KEY[:SERVER_KEY_PARTIAL_LEN])
        if found is None:
            raise HandshakeError("signature mismatch: S1 digest does not validate")
        _, s1_digest = found
        self._validate_s2 = True
        self._out += _signed_response(
            _random(self._random_bytes, SIGNED_SIZE), PLAYER_KEY, s1_digest
        )

    def _check_s2(self, s2: bytes) -> None:
        assert self._c1_digest is not None  # set whenever _validate_s2 is
        expected = _signed_response(s2, SERVER_KEY, self._c1_digest)
        if not hmac.compare_digest(expected, s2):
            raise HandshakeError("signature mismatch: S2 signature does not validate")
