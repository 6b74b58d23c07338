"""Tests for the sans-IO RTMP handshake (bridge/rtmp/handshake.py).

The digest maths is checked three ways: our server against our client, our server against
a C1 captured from FFmpeg 5.1 (`_FFMPEG_C1`, see below), and, when the Debian `ffmpeg`
binary is installed, our server against a live FFmpeg player that validates S1 and S2.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import random
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rtmp.errors import HandshakeError
from bridge.rtmp.handshake import (
    PACKET_SIZE,
    PLAYER_KEY,
    PLAYER_KEY_PARTIAL_LEN,
    SERVER_KEY,
    SERVER_KEY_PARTIAL_LEN,
    ClientHandshake,
    ServerHandshake,
    digest_offset,
    find_digest,
)

# --- independent oracles, written from the facts in reference/rtmp.md §2 --------------

SUFFIX_HEX = "f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae"


def hmac256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def expected_pos(packet: bytes, scheme: int) -> int:
    base = (8, 772)[scheme]
    return (
        packet[base] + packet[base + 1] + packet[base + 2] + packet[base + 3]
    ) % 728 + (base + 4)


def digest_valid(packet: bytes, scheme: int, key: bytes) -> bool:
    pos = expected_pos(packet, scheme)
    return packet[pos : pos + 32] == hmac256(key, packet[:pos] + packet[pos + 32 :])


def digest_at(packet: bytes, scheme: int) -> bytes:
    pos = expected_pos(packet, scheme)
    return packet[pos : pos + 32]


def signature_valid(packet: bytes, full_key: bytes, peer_digest: bytes) -> bool:
    return packet[1504:] == hmac256(hmac256(full_key, peer_digest), packet[:1504])


def rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


# --- helpers ------------------------------------------------------------------------


def feed(side: ServerHandshake | ClientHandshake, data: bytes, bytewise: bool) -> bytes:
    """Feed `data` whole or one byte at a time; return everything the side wants to send."""
    out = bytearray()
    pieces: Sequence[bytes] = (
        [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    )
    for piece in pieces:
        side.receive_data(piece)
        out += side.data_to_send()
    return bytes(out)


def run_pair(
    client: ClientHandshake, server: ServerHandshake, bytewise: bool, tail: bytes = b""
) -> tuple[bytes, bytes, bytes]:
    """Run a full exchange; return (C0C1, S0S1S2, C2). `tail` follows both last packets."""
    c0c1 = client.initial_data()
    s_out = feed(server, c0c1, bytewise)
    c2 = feed(client, s_out + tail, bytewise)
    assert feed(server, c2 + tail, bytewise) == b""
    return c0c1, s_out, c2


# --- constants ----------------------------------------------------------------------


def test_keys_match_published_bytes() -> None:
    assert PLAYER_KEY == b"Genuine Adobe Flash Player 001" + bytes.fromhex(SUFFIX_HEX)
    assert SERVER_KEY == b"Genuine Adobe Flash Media Server 001" + bytes.fromhex(
        SUFFIX_HEX
    )
    assert (len(PLAYER_KEY), len(SERVER_KEY)) == (62, 68)
    assert PLAYER_KEY[:PLAYER_KEY_PARTIAL_LEN] == b"Genuine Adobe Flash Player 001"
    assert (
        SERVER_KEY[:SERVER_KEY_PARTIAL_LEN] == b"Genuine Adobe Flash Media Server 001"
    )


@pytest.mark.parametrize(
    ("pos_bytes", "scheme", "offset"),
    [
        (b"\x00\x00\x00\x00", 0, 12),
        (b"\x00\x00\x00\x00", 1, 776),
        (b"\x01\x02\x03\x04", 0, 22),
        (b"\xff\xff\xff\xff", 0, 1020 % 728 + 12),
        (b"\xff\xff\xff\xff", 1, 1020 % 728 + 776),
        # Sum 727 gives the last offset: the digest ends at 771 (scheme 0) or 1536 (1).
        (b"\xff\xff\xd9\x00", 0, 12 + 727),
        (b"\xff\xff\xd9\x00", 1, 776 + 727),
        # Sum 728 wraps around.
        (b"\xff\xff\xda\x00", 0, 12),
    ],
)
def test_digest_offset_table(pos_bytes: bytes, scheme: int, offset: int) -> None:
    packet = bytearray(PACKET_SIZE)
    base = (8, 772)[scheme]
    packet[base : base + 4] = pos_bytes
    assert (
        digest_offset(bytes(packet), scheme)
        == offset
        == expected_pos(bytes(packet), scheme)
    )


@given(st.binary(min_size=PACKET_SIZE, max_size=PACKET_SIZE), st.sampled_from([0, 1]))
def test_digest_never_overlaps_its_position_bytes(packet: bytes, scheme: int) -> None:
    base = (8, 772)[scheme]
    pos = digest_offset(packet, scheme)
    assert base + 4 <= pos and pos + 32 <= (772 if scheme == 0 else PACKET_SIZE)


# --- server against our client --------------------------------------------------------


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize("scheme", [0, 1])
def test_digest_handshake(scheme: int, bytewise: bool) -> None:
    client = ClientHandshake(
        digest=True, scheme=scheme, random_bytes=rng(1), uptime_ms=77
    )
    server = ServerHandshake(random_bytes=rng(2), uptime_ms=0x1_0000_0005)  # wraps to 5
    c0c1, s_out, c2 = run_pair(client, server, bytewise, tail=b"\x02chunk")
    c1, s0, s1, s2 = c0c1[1:], s_out[0], s_out[1:1537], s_out[1537:]
    assert (len(s_out), len(c2)) == (1 + 2 * PACKET_SIZE, PACKET_SIZE)
    assert c1[:8] == bytes((0, 0, 0, 77, 9, 0, 124, 2))
    assert digest_valid(c1, scheme, PLAYER_KEY[:30])
    assert s0 == 3
    assert s1[:8] == bytes((0, 0, 0, 5, 0x0D, 0x0E, 0x0A, 0x0D))
    assert digest_valid(s1, scheme, SERVER_KEY[:36]), "S1 must answer with C1's scheme"
    assert signature_valid(s2, SERVER_KEY, digest_at(c1, scheme))
    assert signature_valid(c2, PLAYER_KEY, digest_at(s1, scheme))
    assert server.digest and server.scheme == scheme
    assert client.done and server.done
    assert (
        client.take_leftover() == b"\x02chunk"
        and server.take_leftover() == b"\x02chunk"
    )
    assert client.take_leftover() == b"" and server.take_leftover() == b""


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_simple_handshake(bytewise: bool) -> None:
    client = ClientHandshake(random_bytes=rng(3), uptime_ms=1000)
    server = ServerHandshake(random_bytes=rng(4), uptime_ms=2000)
    c0c1, s_out, c2 = run_pair(client, server, bytewise)
    c1, s1, s2 = c0c1[1:], s_out[1:1537], s_out[1537:]
    assert c0c1[:1] == b"\x03" and c1[:8] == (1000).to_bytes(4, "big") + bytes(4)
    assert s_out[:1] == b"\x03" and s1[:8] == (2000).to_bytes(4, "big") + bytes(4)
    assert s2 == c1, "OBS warns when S2 is not an exact echo of C1"
    assert c2 == s1
    assert not server.digest and server.scheme is None
    assert client.done and server.done
    assert client.take_leftover() == b"" and server.take_leftover() == b""


def test_server_output_appears_exactly_when_c1_completes() -> None:
    c0c1 = ClientHandshake(digest=True, random_bytes=rng(5)).initial_data()
    server = ServerHandshake(random_bytes=rng(6))
    server.receive_data(c0c1[:-1])
    assert server.data_to_send() == b"" and not server.done
    server.receive_data(c0c1[-1:])
    assert len(server.data_to_send()) == 1 + 2 * PACKET_SIZE
    assert server.data_to_send() == b""
    server.receive_data(bytes(PACKET_SIZE - 1))
    assert not server.done
    server.receive_data(b"\x00")
    assert server.done and server.data_to_send() == b""


def test_server_reads_c2_without_checking_it() -> None:
    server = ServerHandshake()
    server.receive_data(ClientHandshake(digest=True).initial_data())
    server.receive_data(b"\xaa" * PACKET_SIZE + b"rest")
    assert server.done and server.take_leftover() == b"rest"


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda c1: c1[:4] + bytes(4) + c1[8:], id="version-zero"),
        pytest.param(
            lambda c1: c1[:100] + bytes([c1[100] ^ 1]) + c1[101:], id="corrupt-body"
        ),
    ],
)
def test_server_falls_back_to_simple_form(mutate: Callable[[bytes], bytes]) -> None:
    c1 = ClientHandshake(digest=True, scheme=0, random_bytes=rng(7)).initial_data()[1:]
    c1 = mutate(c1)
    server = ServerHandshake(random_bytes=rng(8))
    server.receive_data(b"\x03" + c1)
    out = server.data_to_send()
    assert not server.digest
    assert out[5:9] == bytes(4) and out[1537:] == c1


def test_server_ignores_c1_signed_with_the_wrong_key() -> None:
    c1 = bytearray(rng(9)(PACKET_SIZE))
    c1[4:8] = bytes((9, 0, 124, 2))
    pos = expected_pos(bytes(c1), 1)
    c1[pos : pos + 32] = hmac256(SERVER_KEY[:36], bytes(c1[:pos] + c1[pos + 32 :]))
    server = ServerHandshake()
    server.receive_data(b"\x03" + bytes(c1))
    assert not server.digest and server.data_to_send()[1537:] == bytes(c1)


def test_bytes_after_done_go_to_leftover() -> None:
    server = ServerHandshake()
    server.receive_data(ClientHandshake().initial_data() + bytes(PACKET_SIZE) + b"ab")
    server.receive_data(b"cd")
    assert server.take_leftover() == b"abcd"
    server.receive_data(b"e")
    assert server.take_leftover() == b"e"


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from([False, True]),
    st.sampled_from([0, 1]),
    st.lists(st.integers(0, 2 * PACKET_SIZE + 1 + 20), max_size=8),
    st.binary(max_size=20),
)
def test_server_any_split_gives_same_result(
    digest: bool, scheme: int, cuts: list[int], tail: bytes
) -> None:
    client = ClientHandshake(digest=digest, scheme=scheme, random_bytes=rng(10))
    c0c1 = client.initial_data()
    whole = ServerHandshake(random_bytes=rng(11))
    whole.receive_data(c0c1)
    client.receive_data(whole.data_to_send())
    stream = c0c1 + client.data_to_send() + tail
    whole.receive_data(stream[len(c0c1) :])

    split = ServerHandshake(random_bytes=rng(11))
    out = bytearray()
    bounds = [0, *sorted(cuts), len(stream)]
    for a, b in itertools.pairwise(bounds):
        split.receive_data(stream[a:b])
        out += split.data_to_send()
    assert split.done and whole.done
    assert split.digest == whole.digest == digest
    assert split.take_leftover() == whole.take_leftover() == tail
    client2 = ClientHandshake(digest=digest, scheme=scheme, random_bytes=rng(10))
    whole2 = ServerHandshake(random_bytes=rng(11))
    whole2.receive_data(client2.initial_data())
    assert bytes(out) == whole2.data_to_send()


# --- client validation ----------------------------------------------------------------


def _server_reply(scheme: int) -> tuple[ClientHandshake, bytes]:
    client = ClientHandshake(digest=True, scheme=scheme, random_bytes=rng(12))
    server = ServerHandshake(random_bytes=rng(13))
    server.receive_data(client.initial_data())
    return client, server.data_to_send()


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize("scheme", [0, 1])
@pytest.mark.parametrize(
    "where", ["s1-digest", "s1-body", "s1-time", "s2-signature", "s2-body"]
)
def test_client_rejects_tampered_server_reply(scheme: int, where: str) -> None:
    client, reply = _server_reply(scheme)
    s1 = reply[1:1537]
    index = {
        "s1-digest": 1 + expected_pos(s1, scheme) + 5,
        "s1-body": 1 + (1400 if scheme == 0 else 300),
        "s1-time": 1,
        "s2-signature": 1537 + 1510,
        "s2-body": 1537 + 9,
    }[where]
    with pytest.raises(HandshakeError, match="signature mismatch"):
        client.receive_data(_flip(reply, index))
    assert not client.done
    with pytest.raises(HandshakeError):  # the failure sticks
        client.receive_data(b"\x00")


def test_client_rejects_tampered_s2_even_bytewise() -> None:
    client, reply = _server_reply(1)
    bad = _flip(reply, len(reply) - 1)
    with pytest.raises(HandshakeError, match="signature mismatch"):
        feed(client, bad, bytewise=True)


def test_client_sends_c2_before_s2_arrives() -> None:
    client, reply = _server_reply(0)
    client.receive_data(reply[:1537])
    c2 = client.data_to_send()
    assert len(c2) == PACKET_SIZE and not client.done
    assert signature_valid(c2, PLAYER_KEY, digest_at(reply[1:1537], 0))
    client.receive_data(reply[1537:])
    assert client.done


@pytest.mark.parametrize("version", [b"\x00\x00\x00\x00", b"\x02\xff\xff\xff"])
def test_digest_client_echoes_a_server_below_version_3(version: bytes) -> None:
    # FFmpeg only validates when S1 byte 4 >= 3; below that it echoes S1 and checks nothing.
    client = ClientHandshake(digest=True)
    client.initial_data()
    s1 = bytes(4) + version + rng(14)(PACKET_SIZE - 8)
    client.receive_data(b"\x03" + s1 + rng(15)(PACKET_SIZE) + b"x")
    assert client.data_to_send() == s1
    assert client.done and client.take_leftover() == b"x"


def test_simple_client_never_validates() -> None:
    client = ClientHandshake(digest=False)
    s1 = bytes(4) + bytes((0x0D, 0x0E, 0x0A, 0x0D)) + bytes(PACKET_SIZE - 8)
    client.receive_data(b"\x03" + s1 + bytes(PACKET_SIZE))
    assert client.data_to_send() == s1 and client.done


def test_client_initial_data_is_stable() -> None:
    client = ClientHandshake(digest=True, scheme=1, random_bytes=rng(16), uptime_ms=42)
    first = client.initial_data()
    assert first == client.initial_data()
    assert len(first) == 1 + PACKET_SIZE and first[:1] == b"\x03"
    assert digest_valid(first[1:], 1, PLAYER_KEY[:30])
    assert ClientHandshake().initial_data()[5:9] == bytes(4)


def test_client_rejects_bad_scheme() -> None:
    with pytest.raises(ValueError):
        ClientHandshake(scheme=2)


def test_client_rejects_bad_s0() -> None:
    with pytest.raises(HandshakeError):
        ClientHandshake().receive_data(b"\x06")


# --- bad first bytes ----------------------------------------------------------------


@pytest.mark.parametrize("c0", [6, 8, 9])
def test_rtmpe_is_refused(c0: int) -> None:
    server = ServerHandshake()
    with pytest.raises(
        HandshakeError, match=r"encrypted RTMP \(RTMPE\) is not supported"
    ):
        server.receive_data(bytes([c0]))  # refused at the first byte, not after C1


@pytest.mark.parametrize(
    "data",
    [
        b"GET /app/key HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello on the plain port
        b"\x00",
        b"\x02",
        b"\x04",
        b"\xff",
    ],
)
def test_other_versions_are_refused(data: bytes) -> None:
    server = ServerHandshake()
    with pytest.raises(HandshakeError, match="unsupported RTMP version"):
        server.receive_data(data)
    assert server.data_to_send() == b""
    with pytest.raises(HandshakeError):
        server.receive_data(b"\x03")


# --- fuzzing --------------------------------------------------------------------------

_valid_prefix = st.builds(
    lambda digest, scheme: ClientHandshake(digest=digest, scheme=scheme).initial_data(),
    st.booleans(),
    st.sampled_from([0, 1]),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.binary(min_size=1000, max_size=3200),
            st.binary(max_size=64).map(lambda b: b"\x03" + b),
            _valid_prefix,
        ),
        max_size=6,
    )
)
def test_server_garbage_raises_only_handshake_error(chunks: list[bytes]) -> None:
    server = ServerHandshake()
    total = 0
    for chunk in chunks:
        total += len(chunk)
        try:
            server.receive_data(chunk)
        except HandshakeError:
            continue
        out = server.data_to_send()
        assert len(out) in (0, 1 + 2 * PACKET_SIZE)
    if server.done:
        assert len(server.take_leftover()) == total - (1 + 2 * PACKET_SIZE)


@settings(max_examples=200, deadline=None)
@given(
    st.booleans(),
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.binary(min_size=1000, max_size=3200),
            st.binary(min_size=1, max_size=3200).map(
                lambda b: b"\x03\x00\x00\x00\x00\x05" + b
            ),
        ),
        max_size=6,
    ),
)
def test_client_garbage_raises_only_handshake_error(
    digest: bool, chunks: list[bytes]
) -> None:
    client = ClientHandshake(digest=digest)
    for chunk in chunks:
        try:
            client.receive_data(chunk)
        except HandshakeError:
            continue
        client.data_to_send()
        client.take_leftover()


# --- a C1 captured from FFmpeg 5.1 (Debian 5.1.9), playing rtmp://.../app/key ---------
# FFmpeg's player C1 is deterministic (uptime 0, random bytes from an LFG seeded with
# 0xDEADC0DE [FF `rtmp_handshake`]), so this is what that FFmpeg sends on every connect.
# It was read off the socket by a throwaway server; the hex is at the end of this file.


def test_ffmpeg_c1_known_answer() -> None:
    c1 = bytes.fromhex("".join(_FFMPEG_C1))
    assert len(c1) == PACKET_SIZE and c1[:8] == bytes((0, 0, 0, 0, 9, 0, 124, 2))
    assert digest_valid(c1, 0, PLAYER_KEY[:30]), (
        "FFmpeg signs an unencrypted C1 with scheme 0"
    )
    assert find_digest(c1, PLAYER_KEY[:PLAYER_KEY_PARTIAL_LEN]) == (0, digest_at(c1, 0))
    server = ServerHandshake(random_bytes=rng(17))
    server.receive_data(b"\x03" + c1)
    out = server.data_to_send()
    assert server.digest and server.scheme == 0
    assert digest_valid(out[1:1537], 0, SERVER_KEY[:36])
    assert signature_valid(out[1537:], SERVER_KEY, digest_at(c1, 0))


# --- a live FFmpeg player -------------------------------------------------------------

FFMPEG = shutil.which("ffmpeg") or (
    "/usr/bin/ffmpeg" if Path("/usr/bin/ffmpeg").exists() else None
)


@pytest.mark.skipif(FFMPEG is None, reason="the ffmpeg binary is not installed")
def test_ffmpeg_player_accepts_our_digest_reply() -> None:
    seen: dict[str, object] = {}

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        hs = ServerHandshake()
        try:
            while not hs.done:
                data = await reader.read(4096)
                if not data:
                    return
                hs.receive_data(data)
                writer.write(hs.data_to_send())
                await writer.drain()
            seen["digest"] = hs.digest
            after = hs.take_leftover()
            if not after:  # FFmpeg sends its connect command right after C2
                try:
                    after = await asyncio.wait_for(reader.read(4096), 2.0)
                except TimeoutError:
                    after = b""
            seen["after"] = after
        finally:
            writer.close()

    async def main() -> str:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            str(FFMPEG), "-nostdin", "-loglevel", "debug", "-rw_timeout", "3000000",
            "-i", f"rtmp://127.0.0.1:{port}/app/key", "-f", "null", "-",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            try:
                _, err = await asyncio.wait_for(proc.communicate(), 5.0)
            except TimeoutError:
                err = b""
            return err.decode("utf-8", "replace")
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            server.close()
            await server.wait_closed()

    stderr = asyncio.run(main())
    assert "Server version 13.14.10.13" in stderr  # so FFmpeg took the validating path
    assert "Signature mismatch" not in stderr
    assert "validating failed" not in stderr
    assert seen.get("digest") is True
    assert seen.get("after"), (
        "FFmpeg should have moved on to connect after the handshake"
    )


_FFMPEG_C1 = (
    "0000000009007c02f778551eceab8e1e362f07c5868a70b266d40220e5086118"
    "a22e3697d5fc2b6329c22ee7c7c9b0b5b345dfa8398fea3bc879208a1068425a"
    "a1174cb57258cfebe24da42ec4ff9da19c7b406f18c95bfdd04ee48b6f833214"
    "a47b8bf68eb05254e25ae9a9a8b496c5496f6e9cd7c68cb6bcc84169e67f3e37"
    "2ffe186da8513862c5afdeb5a1218a860baccdd869b253dbab8a0efb59a48c44"
    "2099875e55b74fd07a1b69af303e099873cb77e2d9e2c4741eb1f506a7f0b296"
    "2af91f5051c890a320994f4c8b36a01fa9c0f15f4b7cf7b6c3817da60918611d"
    "3b02ff7cc94038937537d3382e416bd57577834df9caf748352150ce92d0dbb4"
    "0e871fc364e18b7e3569e39876c1ae0cb79ff6d7ab32f9f011869c8da4191ef4"
    "6d3c1bc6b72d83812f2243d1752a412632d66a2075f5d302f45cdf2b98b802b7"
    "9805dc4837d84eded1cc42cba7eec3137bf86dd0b2d7f624d521a3ff655bcf0d"
    "f4101341d230e94651628e45a7abf8183101ce981e5e86a6faec5c79aa7ec718"
    "1ea459ed966e0c932a6f9e4bf554ab7b1c905cde054ed40d2fb89bbfc65752e5"
    "8cfde4f2a04dc3ad1e5ef4fc64d57b071c14146a451f6a043156d2880f5957d7"
    "8dfd3ff2b880f624ac70f27094f37734eaf1924f66ac3d648ae232930544a442"
    "0b65eed4696f7f50fe05fc948516650bfb9b65f953d848e3456965d0d76b627a"
    "84e35e9ddabd8b43f0fadaee458cdf59ebd773922e0ae507d5e64092e90ec67e"
    "d8439e8f221c753a9f9216f1cb85b5107bc7cc7c4fb2c3eed1afc709b192f50d"
    "e69c1ffca5650efb523b5fab5997cac4b7ef5af2bf5973e6293bae1fc1da499b"
    "e5515077de4ddb3f7fbcd741711c62b7d803b8d054cf578182714d1c445bd692"
    "ba1b839a09e7266fc85daa8fad433dabbd206cde1ea571770c6bfa7956c266ee"
    "8435eb01caa6f583c0d83c33eefcf3f97db917bdb299f8a89fb8860ab1cd644c"
    "1e82cce1323a9eb79d25f5dc570b70b40bb20061743353d0536ecdabd82f2277"
    "756228cb54fe6932c4c9bd130d2bfc700bf5d85da6946e96f82e0afd8e9c20cf"
    "eabf9a6a189bb17bbef539d1d9e73ee966fcb5d6bdbf98444de865be1605e340"
    "87b34cdf04e3aff55bd4137c522d2e3c7bf2634db326b22a474db7f8a0952ab3"
    "510de555396c18a378a8390b73bff7772fb2760fa5786a3b0459c45a1d1b0dff"
    "4cbbb65da0ed34f32116c3c2cc2b95825111bcfbb246c1505aa00c970d06d76c"
    "c950ce368b220db20487cba02bb1fc54b36567b42913d6b885062cd7795601d3"
    "1a4a8e6d56467fa5c52162676fd526122513c3e47f2e6d9d6a19c4f8795431a9"
    "4ced039221d27ac68a7a770e9305252271459b71d05505c4977b70e96851208b"
    "acdcdf7e682b3848840880f1fec2a32fb1406862bc83cad89adf729f3ba6ffd3"
    "fe808e8403e7c6a0f6dcda3211898f6f16505b078cc78b80db600ded2f200f25"
    "ff5dcb31d32cbe2056b8bdc31091631abbd2ac28d61fe32480ec5035bbf35f17"
    "3393f0d59a21d2300b2db4b59eaa63ffe0f93d65dc028516905f22a9c7dff387"
    "c4eb78c6300e7ebbb2a6663cfbe5a9977caf5764ba3f0aba57db4e6051e0aec6"
    "e05b1bdaa649a97875edbc40bcc4214bb7fef72730d4368acbd3e10ab4c7642a"
    "1c53f93ca26db9c766555be26fdff0e2a721425b95762b0b776fd3e3eb17313d"
    "53129c9f34003c99a5196a8c6aacb6d64b51dd98b27c5b59a70bd941a1ba0300"
    "fb744cfc499d997e6d93392d28a767d116dfbc2cb9eb40540d11eb304ad93223"
    "86fdc597d55d3d1c67bc54df35479afb19ea2cd204dd331efb49c1e172f6bb89"
    "fbf58207dcae6c12f8a7598bef1e872c0c35f22b4c29df10f9bb1add3aeb887a"
    "b5fb38c036b88346f761c42f295dfe0b437dfb4f30a71276ab7d409ce424963f"
    "9ebb4f1f47e52b18786f279b5a87226f66981dd6d0ad11f49af31055ff69710f"
    "da3457c4b7852db2e3936d0778bf879f1734ad3a24ffb1ae9584760b9cb0452a"
    "53ba0962ffe2f605af52830bd211a5488894cc0b052255048711cd198510a9e9"
    "43bf8b839198455fbd41073005d303990b88d9b63656d43cfec8ed83748f4b0f"
    "0fc5120216794b22a054e5bc58abd8c41096070884393453ce509694afbeabe0"
)
