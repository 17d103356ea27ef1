"""Which IP addresses a webhook may be posted to: public ones only."""

from __future__ import annotations

import ipaddress

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse(text: str) -> Address:
    """The address ``text`` spells (ValueError when it spells none).

    An IPv4-mapped IPv6 address comes back as its IPv4 address, since a connection to
    ``::ffff:10.0.0.1`` reaches 10.0.0.1 and must be judged as it.
    """
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def is_internal(address: Address) -> bool:
    """Loopback, private, link-local (cloud metadata), reserved, multicast or unspecified."""
    # is_global is False for loopback, private, link-local, unspecified and shared (100.64/10)
    # addresses, but True for multicast and for IPv6 reserved ranges such as ::/8.
    return not address.is_global or address.is_multicast or address.is_reserved
