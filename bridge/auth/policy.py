"""Pure policy checks: channel/key names and IP lists."""

from __future__ import annotations

import ipaddress
import re

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_ID = re.compile(r"[A-Za-z0-9_-]+")


def valid_id(text: str, max_length: int) -> bool:
    """Channel and key: letters, digits, '-' and '_', 1 to ``max_length`` characters."""
    return 0 < len(text) <= max_length and _ID.fullmatch(text) is not None


def parse_networks(text: str) -> tuple[Network, ...] | None:
    """A list of IPs/CIDRs (v4 and v6), separated by commas or spaces. ``*`` means every
    address and is returned as None."""
    items = [item for item in text.replace(",", " ").split() if item]
    if "*" in items:
        return None
    networks: list[Network] = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR range") from None
    return tuple(networks)


def parse_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as a socket reports it, or None. An IPv4-mapped IPv6 address becomes its
    IPv4 form, as dual-stack sockets report IPv4 peers that way; a zone id is dropped."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4-mapped loopback (::ffff:127.x)."""
    ip = parse_ip(address)
    return ip is not None and ip.is_loopback


def address_allowed(address: str, networks: tuple[Network, ...] | None) -> bool:
    """Whether ``address`` is in ``networks`` (None = everyone)."""
    if networks is None:
        return True
    ip = parse_ip(address)
    if ip is None:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


def client_address(
    peer: str, forwarded_for: str | None, trusted: tuple[Network, ...] | None
) -> str:
    """The client's address behind trusted reverse proxies.

    Only when ``peer`` (the socket's remote address) is a trusted proxy is X-Forwarded-For
    believed, and then read from the right: the first address that is not itself a trusted
    proxy is the client (anything left of it was written by the client and may be forged).
    ``trusted`` None means every address is trusted; an empty tuple, none.
    """
    if not forwarded_for or trusted == () or not address_allowed(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed header is ignored as a whole
        if not address_allowed(hop, trusted):
            return hop
    return hops[0] if hops else peer
