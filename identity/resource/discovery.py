"""OpenID Connect discovery of the issuer: where its JWKS and introspection endpoint are."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from identity.resource.errors import IssuerUnavailable
from identity.resource.fetch import fetch_json

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"


@dataclass(frozen=True, slots=True)
class IssuerMetadata:
    issuer: str
    jwks_uri: str
    introspection_endpoint: str | None


def discovery_url(issuer: str) -> str:
    # OpenID Connect Discovery §4: a terminating "/" of the issuer is removed before appending.
    return issuer.rstrip("/") + DISCOVERY_SUFFIX


async def discover(http: httpx.AsyncClient, issuer: str) -> IssuerMetadata:
    """Fetch and check the issuer's discovery document.

    OpenID Connect Discovery §4.3: the ``issuer`` it names must be exactly the one we were
    configured with, or a document served elsewhere could make us trust another issuer's keys.
    """
    document = (await fetch_json(http, discovery_url(issuer))).document
    if document.get("issuer") != issuer:
        raise IssuerUnavailable(
            f"the discovery document names issuer {document.get('issuer')!r}, not {issuer!r}"
        )
    jwks_uri = endpoint_url(document.get("jwks_uri"), issuer)
    if jwks_uri is None:
        raise IssuerUnavailable(
            f"the discovery document's jwks_uri is no URL: {document.get('jwks_uri')!r:.200}"
        )
    return IssuerMetadata(
        issuer=issuer,
        jwks_uri=jwks_uri,
        # Only the introspector needs it: one that is no URL must not stop tokens validating.
        introspection_endpoint=endpoint_url(document.get("introspection_endpoint"), issuer),
    )


def endpoint_url(value: object, issuer: str) -> str | None:
    """``value`` if it is an absolute http(s) URL httpx can send to, https when ``issuer``
    is, else ``None``.

    Checked once, here, because httpx refuses a malformed URL with InvalidURL, and a port
    out of range with an error from its connection pool, neither of them an HTTPError: they
    escaped every fetch as a 500 without naming the document that caused them. And keys
    fetched over plain HTTP for an issuer trusted over TLS are anyone's on the path.
    """
    if not isinstance(value, str):
        return None
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        return None
    port_ok = url.port is None or 0 < url.port < 65536
    schemes = ("https",) if issuer.lower().startswith("https:") else ("http", "https")
    usable = url.scheme in schemes and bool(url.host) and port_ok
    return value if usable else None


class Discovery:
    """The issuer's metadata, fetched on first use and kept for the life of the process.

    A failed fetch is not kept, so the next caller tries again.
    """

    def __init__(self, http: httpx.AsyncClient, issuer: str) -> None:
        self._http = http
        self._issuer = issuer
        self._metadata: IssuerMetadata | None = None
        self._lock = asyncio.Lock()

    async def metadata(self) -> IssuerMetadata:
        if self._metadata is None:
            async with self._lock:
                if self._metadata is None:
                    self._metadata = await discover(self._http, self._issuer)
        return self._metadata

    async def jwks_uri(self) -> str:
        return (await self.metadata()).jwks_uri

    async def introspection_endpoint(self) -> str:
        endpoint = (await self.metadata()).introspection_endpoint
        if endpoint is None:
            raise IssuerUnavailable("the issuer advertises no usable introspection_endpoint")
        return endpoint
