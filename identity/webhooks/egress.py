"""Connections to webhook consumers: only to public addresses, vetted as the connection is made.

A consumer's host name is resolved here, every address it resolves to is vetted, and the
connection is made to a vetted address by IP. Checking the name at subscription time alone
would not do: DNS can answer differently between a check and the connection (rebinding), or
name an internal address from the start.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import httpcore

from identity.webhooks import addresses

Resolver = Callable[[str], Awaitable[list[str]]]

# The system resolver blocks a thread for as long as a consumer's DNS takes to answer or
# give up (seconds per try). Run on asyncio's shared pool, a few hanging look-ups held every
# thread of it, and whatever else waited there (the database driver's own look-ups, signing
# keys being opened, .eml files written) waited too: a consumer's DNS outage stalled sign-ins.
# On their own threads they hold up only other webhook look-ups, and no more than this many.
_LOOKUPS = ThreadPoolExecutor(4, thread_name_prefix="webhook-dns")


async def resolve(host: str) -> list[str]:
    """The addresses ``host`` resolves to, in the order the system prefers them."""
    found = await asyncio.get_running_loop().run_in_executor(
        _LOOKUPS, partial(socket.getaddrinfo, host, None, type=socket.SOCK_STREAM)
    )
    return list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))


class EgressRefused(httpcore.ConnectError):
    """The host resolves to an address a webhook must not reach."""


class VettingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to vetted addresses of the host.

    TLS still checks the URL's host name: httpcore hands it to ``start_tls`` as
    ``server_hostname`` (for SNI and the certificate match) apart from the host given here.
    """

    def __init__(self, *, allow_loopback: bool, resolver: Resolver = resolve) -> None:
        self._allow_loopback = allow_loopback
        self._resolve = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # The connect timeout covers resolving too, or a slow resolver could hold a lease.
        try:
            async with asyncio.timeout(timeout):
                vetted = await self._vetted(host)
                return await self._connect(host, vetted, port, local_address, socket_options)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"No connection to {host} within {timeout} s.") from None

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    async def _vetted(self, host: str) -> list[str]:
        try:
            # "example.com." is "example.com" fully qualified: one host to the URL check and
            # one subscription (url_key), so one name to look up. The system resolver's hosts
            # file lookup knows no name with the dot ("localhost." did not resolve), and the
            # numeric "127.0.0.1." is then read as the address the URL check judged it to be.
            # A single label loses its dot's "no search domains": whatever a search domain
            # finds is vetted below all the same.
            found = await self._resolve(host.removesuffix("."))
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve: {exc}") from exc
        # Any internal address refuses the host, not just the one we would connect to: a name
        # with one public and one internal address is someone's attempt to reach the second.
        for text in found:
            address = addresses.parse(text)
            loopback_allowed = self._allow_loopback and address.is_loopback
            if addresses.is_internal(address) and not loopback_allowed:
                raise EgressRefused(
                    f"Refused: {host} resolves to {address}, "
                    "a private, loopback or link-local address."
                )
        return found

    async def _connect(
        self,
        host: str,
        vetted: list[str],
        port: int,
        local_address: str | None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
    ) -> httpcore.AsyncNetworkStream:
        error = httpcore.ConnectError(f"{host} resolves to no address.")
        for address in vetted:
            try:
                return await self._inner.connect_tcp(
                    address, port, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                # The next may answer: "localhost" is often ::1 and 127.0.0.1, one of them unused.
                error = exc
        raise error
