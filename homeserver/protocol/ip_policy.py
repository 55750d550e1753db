"""Which IP addresses outbound requests may connect to.

A federation destination is any name another server or user hands us, so
without a check a remote party could make us talk to our own network: the
router's admin page, a cloud metadata service (169.254.169.254), a database on
localhost. Every address we would connect to is therefore checked against the
non-public ranges below, including the IPv6 forms that carry an IPv4 address
(IPv4-mapped, IPv4-compatible, 6to4, NAT64, Teredo), unless the admin allows a
range explicitly. The same policy as ``media/safe_fetch.py`` (URL previews),
as plain data so that both can share it.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges that are not the public Internet (IANA special-purpose address registries).
DENIED_RANGES: tuple[str, ...] = (
    "0.0.0.0/8",          # "this network"
    "10.0.0.0/8",         # private
    "100.64.0.0/10",      # carrier-grade NAT
    "127.0.0.0/8",        # loopback
    "169.254.0.0/16",     # link-local, cloud metadata services
    "172.16.0.0/12",      # private
    "192.0.0.0/24",       # IETF protocol assignments
    "192.0.2.0/24",       # documentation
    "192.88.99.0/24",     # 6to4 relay anycast
    "192.168.0.0/16",     # private
    "198.18.0.0/15",      # benchmarking
    "198.51.100.0/24",    # documentation
    "203.0.113.0/24",     # documentation
    "224.0.0.0/4",        # multicast
    "240.0.0.0/4",        # reserved, broadcast
    "::/128",             # unspecified
    "::1/128",            # loopback
    "::/96",              # IPv4-compatible (deprecated)
    "::ffff:0:0/96",      # IPv4-mapped
    "64:ff9b::/96",       # NAT64
    "64:ff9b:1::/48",     # local-use NAT64
    "100::/64",           # discard
    "2001::/23",          # IETF protocol assignments, Teredo
    "2001:db8::/32",      # documentation
    "2002::/16",          # 6to4
    "fc00::/7",           # unique local
    "fe80::/10",          # link-local
    "fec0::/10",          # site-local (deprecated)
    "ff00::/8",           # multicast
)

_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition form carries, which is where it really goes."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    packed = address.packed
    if packed[:12] == bytes(12) and packed[12:] not in (bytes(4), b"\x00\x00\x00\x01"):
        return ipaddress.IPv4Address(packed[12:])  # IPv4-compatible ::a.b.c.d
    if address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(packed[12:])
    return None


def parse_address(text: str) -> IPAddress | None:
    """The address an IP literal names (``[v6]`` brackets allowed), or None for a host name."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class AddressPolicy:
    """Everything public may be reached, plus the ranges the admin allows; the
    admin's extra denied ranges never."""

    def __init__(self, allowed: Iterable[str] = (), extra_denied: Iterable[str] = ()):
        self.allowed = tuple(ipaddress.ip_network(net, strict=False) for net in allowed)
        self.extra_denied = tuple(ipaddress.ip_network(net, strict=False) for net in extra_denied)
        self.denied = tuple(ipaddress.ip_network(net, strict=False) for net in DENIED_RANGES)

    @staticmethod
    def _in(address: IPAddress, networks: tuple) -> bool:
        return any(address in net for net in networks if net.version == address.version)

    def is_allowed(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            address = ipaddress.IPv6Address(int(address))  # fe80::1%eth0 is still fe80::1
        # An explicit deny wins over an allowance: it is the admin's last word.
        if self._in(address, self.extra_denied):
            return False
        # The allow list matches the address as written: allowing 127.0.0.1 does
        # not allow ::ffff:127.0.0.1 (list that form too if it is really wanted).
        if self._in(address, self.allowed):
            return True
        if self._in(address, self.denied):
            return False
        if isinstance(address, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None and not self.is_allowed(embedded):
                return False
        return True
