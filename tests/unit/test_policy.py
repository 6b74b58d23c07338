"""Channel/key names and IP lists (bridge.auth.policy)."""

from __future__ import annotations

import ipaddress

import pytest

from bridge.auth.policy import address_allowed, parse_networks, valid_id


@pytest.mark.parametrize(
    ("text", "max_length", "ok"),
    [
        ("a", 128, True),
        ("live_Stream-01", 128, True),
        ("ABCxyz0123456789-_", 128, True),
        ("a" * 128, 128, True),
        ("a" * 129, 128, False),
        ("abc", 3, True),
        ("abcd", 3, False),
        ("", 128, False),
        ("é", 128, False),
        ("caf\u00e9", 128, False),
        ("ж", 128, False),
        ("\u0661\u0662", 128, False),  # Arabic-Indic digits are digits to str.isdigit
        ("a/b", 128, False),
        ("a.b", 128, False),
        ("..", 128, False),
        ("a?b=c", 128, False),
        ("a b", 128, False),
        ("a\n", 128, False),
        ("\na", 128, False),
        ("a\x00", 128, False),
        ("a%20", 128, False),
        ("a+b", 128, False),
    ],
)
def test_valid_id(text: str, max_length: int, ok: bool) -> None:
    assert valid_id(text, max_length) is ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*", None),
        ("10.0.0.1, *", None),
        ("10.0.0.0/8", ("10.0.0.0/8",)),
        ("10.0.0.1", ("10.0.0.1/32",)),
        ("10.1.2.3/8", ("10.0.0.0/8",)),  # host bits are allowed and dropped
        ("::1", ("::1/128",)),
        ("2001:db8::/32", ("2001:db8::/32",)),
        (
            " 10.0.0.0/8 ,192.168.1.0/24  2001:db8::/32,, ::1 ",
            ("10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32", "::1/128"),
        ),
        ("", ()),
    ],
)
def test_parse_networks(text: str, expected: tuple[str, ...] | None) -> None:
    result = parse_networks(text)
    if expected is None:
        assert result is None
    else:
        assert result == tuple(ipaddress.ip_network(item) for item in expected)


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.0/33",
        "2001:db8::/129",
        "host.example",
        "10.0.0.0/8, nope",
        "300.1.1.1",
        "1.2.3.4/-1",
        "**",
    ],
)
def test_parse_networks_refuses_bad_items_naming_them(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_networks(text)
    bad = [item for item in text.replace(",", " ").split() if item][-1]
    assert bad in str(info.value)


NETS = parse_networks("10.0.0.0/8 192.168.1.7 2001:db8::/32")


@pytest.mark.parametrize(
    ("address", "networks", "ok"),
    [
        ("10.1.2.3", NETS, True),
        ("192.168.1.7", NETS, True),
        ("192.168.1.8", NETS, False),
        ("11.0.0.1", NETS, False),
        # Dual-stack sockets report IPv4 peers as IPv4-mapped IPv6.
        ("::ffff:10.1.2.3", NETS, True),
        ("::ffff:11.1.2.3", NETS, False),
        ("2001:db8::1", NETS, True),
        ("2001:db8:ffff::1", NETS, True),
        ("2001:db9::1", NETS, False),
        ("fe80::1%eth0", parse_networks("fe80::/10"), True),
        ("::1", NETS, False),
        # An IPv4 list never matches an unrelated IPv6 address and vice versa.
        ("::a01:203", NETS, False),  # IPv4-compatible (not mapped) form of 10.1.2.3
        # Garbage never matches, never raises.
        ("", NETS, False),
        ("not an ip", NETS, False),
        ("10.1.2.3:1935", NETS, False),
        ("10.1.2", NETS, False),
        ("%", NETS, False),
        # None means everyone, even garbage (the check is then moot).
        ("10.1.2.3", None, True),
        ("::1", None, True),
        # An empty list allows nobody.
        ("10.1.2.3", (), False),
    ],
)
def test_address_allowed(address: str, networks, ok: bool) -> None:
    assert address_allowed(address, networks) is ok
