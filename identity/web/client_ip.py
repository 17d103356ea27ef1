"""The address of the browser behind a request, trusting X-Forwarded-For only from our proxies.

Each proxy appends the address it received the request from, so the list reads
``client, proxy1, proxy2`` and the direct peer is the last proxy. Only entries appended by a
trusted proxy can be believed: walking from the right, the first address that is not one of
ours is the client. Anything a client writes into the header itself sits further left and
is never reached; a peer that is not a trusted proxy has its header ignored entirely.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Any

from litestar import Request

from identity.settings import IpNetwork
from identity.webhooks.addresses import embedded_ipv4

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# Some proxies (Azure Application Gateway among them) write the client's port as well:
# ``a.b.c.d:port``, ``[v6]:port`` or ``[v6]``. Unbracketed, an IPv6 address's last group is
# part of the address, never a port.
_WITH_PORT = re.compile(
    r"\[(?P<v6>[^\]]+)\](?::(?P<port6>[0-9]{1,5}))?|(?P<v4>[^:]+):(?P<port4>[0-9]{1,5})"
)


def _ip(text: str, version: int | None = None) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return address if version in (None, address.version) else None


def _parse(value: str) -> IpAddress | None:
    entry = value.strip()
    ported = _WITH_PORT.fullmatch(entry)
    if ported is None:
        address = _ip(entry)
    elif int(ported["port6"] or ported["port4"] or 0) > 65535:
        return None
    else:
        address = _ip(ported["v6"], 6) if ported["v6"] else _ip(ported["v4"], 4)
    if address is None:
        return None
    # An IPv4 client reaching an IPv6 socket shows up as ::ffff:a.b.c.d; count it as IPv4.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: IpAddress, proxies: Sequence[IpNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def client_ip(
    peer: str | None, forwarded_for: Iterable[str], trusted_proxies: Sequence[IpNetwork]
) -> str:
    """The client address; ``forwarded_for`` holds every X-Forwarded-For header, in order."""
    nearest = _parse(peer or "")
    if nearest is None:
        return peer or "unknown"
    if not _trusted(nearest, trusted_proxies):
        return str(nearest)
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            # A trusted proxy would not write garbage; stop at the last hop we could believe.
            break
        nearest = address
        if not _trusted(address, trusted_proxies):
            break
    return str(nearest)


def of_request(request: Request[Any, Any, Any], trusted_proxies: Sequence[IpNetwork]) -> str:
    peer = request.client.host if request.client else None
    return client_ip(peer, request.headers.getall("x-forwarded-for", []), trusted_proxies)


def rate_subject(address: str) -> str:
    """What a per-client rate limit counts for ``address``: an IPv4 address whole, an IPv6
    address's /64. One subscriber's line is handed a whole /64 (RFC 6177) and picks addresses
    in it at will, so counted per address it would never meet a limit."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address  # no address at all ("unknown"): counted as it is
    if isinstance(parsed, ipaddress.IPv4Address):
        return str(parsed)
    # 6to4 gives one IPv4 address a /48 (65,536 /64s); Teredo puts every client of a server
    # in one /64, and a translator (NAT64/SIIT) every IPv4 client. Each embeds the client's
    # IPv4 address: that is the client.
    embedded = embedded_ipv4(parsed)
    if embedded:
        return str(embedded[-1])
    return str(ipaddress.IPv6Network((int(parsed) >> 64 << 64, 64)))
