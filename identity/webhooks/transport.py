"""The httpx transport webhook deliveries go through: httpcore over the vetting backend.

httpx's own transport cannot be given a network backend, so this one builds the httpcore
pool itself and maps requests and responses as httpx's does. It has no proxy: one from the
environment would make the connection for us and skip the vetting.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable

import httpcore
import httpx

# Private, but the only way to raise exactly the httpx errors httpx's own transport raises
# (while connecting and while reading the body); an httpx that moves them fails at import.
from httpx._transports.default import AsyncResponseStream, map_httpcore_exceptions

from identity.webhooks.egress import Resolver, VettingBackend, resolve


class VettedTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        allow_loopback: bool,
        ssl_context: ssl.SSLContext | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        limits = httpx.Limits()  # httpx's defaults, as its own transport would use
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=VettingBackend(allow_loopback=allow_loopback, resolver=resolver),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            # httpcore would check the certificate for the host as written, but SNI and
            # certificates name a host without a trailing dot (RFC 6066 §3): with one, no
            # consumer's certificate would pass, though the dot names the same host.
            extensions={
                **request.extensions,
                "sni_hostname": request.url.raw_host.decode("ascii").removesuffix("."),
            },
        )
        with map_httpcore_exceptions():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)  # an async pool streams asynchronously
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=AsyncResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
