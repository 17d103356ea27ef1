"""Which IP addresses a webhook may be posted to: public ones only."""

from __future__ import annotations

import ipaddress
import socket

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 6052 §2.1: the IPv4 address is the last 32 bits. The local-use 64:ff9b:1::/48 (RFC 8215) is
# left out on purpose: where its IPv4 address sits depends on the prefix length its operator
# chose, so it cannot be read, and it stays internal as part of the reserved ::/8.
WELL_KNOWN_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def parse(text: str) -> Address:
    """The address ``text`` spells (ValueError when it spells none).

    An IPv4-mapped IPv6 address comes back as its IPv4 address, since a connection to
    ``::ffff:10.0.0.1`` reaches 10.0.0.1 and must be judged as it.
    """
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = _legacy_ipv4(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _legacy_ipv4(text: str) -> ipaddress.IPv4Address:
    """The IPv4 address in a spelling ipaddress refuses: ``127.1``, ``0x7f.1``, ``0177.0.0.1``,
    ``2130706433``.

    The C library's resolver reads a numeric host with inet_aton's grammar (one to four parts,
    each decimal, octal or hex, the last filling the remaining bytes), so asking inet_aton itself
    reads every spelling a connection would, where a pattern of our own could miss one. It also
    reads "1" as 0.0.0.1, as the resolver does; and it ignores anything after whitespace, which
    no URL host that reaches a resolver contains, so at worst a malformed host is judged as the
    address before the space.
    """
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        raise ValueError(f"{text!r} does not spell an IP address") from None


def is_internal(address: Address) -> bool:
    """Loopback, private, link-local (cloud metadata), reserved, multicast or unspecified, or
    embedding such an IPv4 address (NAT64, 6to4, Teredo).

    An address that embeds IPv4 addresses is judged by them alone: a translator or relay carries
    the connection on to them, and the IPv6 ranges are no guide (Python files 64:ff9b::/96 under
    the reserved ::/8, and counts 2002::/16 as global or not depending on whether the patch
    release has the fix for CVE-2024-4032).
    """
    embedded = embedded_ipv4(address)
    if embedded:
        return any(_is_internal(ipv4) for ipv4 in embedded)
    return _is_internal(address)


def embedded_ipv4(address: Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses a connection to ``address`` is carried on to, if any; the last is
    the host's own (a Teredo client's, after its server's)."""
    if isinstance(address, ipaddress.IPv4Address):
        return ()
    if address in WELL_KNOWN_NAT64:
        return (ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF),)
    if address.sixtofour:  # RFC 3056: bits 16 to 47
        return (address.sixtofour,)
    # RFC 4380: the Teredo server's address, and the client's in the last 32 bits inverted;
    # the relay talks to both.
    return address.teredo or ()


def _is_internal(address: Address) -> bool:
    # is_global is False for loopback, private, link-local, unspecified and shared (100.64/10)
    # addresses, but True for multicast and for IPv6 reserved ranges such as ::/8. Neither
    # is_global nor is_reserved covers IPv6 site-local fec0::/10: deprecated (RFC 3879) and
    # reserved by the IETF, but still routed inside networks that kept it.
    site_local = isinstance(address, ipaddress.IPv6Address) and address.is_site_local
    return not address.is_global or address.is_multicast or address.is_reserved or site_local
