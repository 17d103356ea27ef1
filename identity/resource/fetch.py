"""Every request the kit makes of the issuer, bounded in size and in time.

Discovery, the JWKS and introspection answers alike: a cap keeps a misbehaving or hostile
issuer, or a proxy in between, from filling the service's memory, and a deadline from holding
its requests for as long as an answer trickles in.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx

from identity.resource.errors import IssuerUnavailable

# Our discovery document, JWKS and introspection answers are a few kilobytes.
MAX_DOCUMENT_BYTES = 512 * 1024
# The HTTP client's timeouts bound each wait for a packet, not the whole answer: one that
# trickles in, each byte in time, kept every request lacking a key waiting on it.
FETCH_DEADLINE_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class FetchedJSON:
    document: dict[str, Any]
    cache_control: str | None


async def fetch_json(
    http: httpx.AsyncClient,
    url: str,
    *,
    method: str = "GET",
    data: dict[str, str] | None = None,
    auth: httpx.Auth | None = None,
) -> FetchedJSON:
    """Request a JSON object, refusing redirects, errors, bodies over ``MAX_DOCUMENT_BYTES``,
    and answers that take more than ``FETCH_DEADLINE_SECONDS`` in all."""
    try:
        async with asyncio.timeout(FETCH_DEADLINE_SECONDS):
            return await _request_json(http, method, url, data, auth)
    except TimeoutError:
        raise IssuerUnavailable(
            f"{method} {url} took more than {FETCH_DEADLINE_SECONDS} seconds"
        ) from None


async def _request_json(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    data: dict[str, str] | None,
    auth: httpx.Auth | None,
) -> FetchedJSON:
    request = f"{method} {url}"
    if http.is_closed:
        # Closed with the resource server while this request waited (for discovery, say):
        # httpx would raise a RuntimeError, a 500 for the service.
        raise IssuerUnavailable(f"{request}: the resource server is closed")
    try:
        # Never followed, whatever the client passed in does by default: a redirect could take
        # the keys of an https issuer to plain http, or re-post an introspection (the token
        # and the client secret) to wherever its Location points.
        async with http.stream(
            method,
            url,
            data=data,
            auth=auth,
            headers={"accept": "application/json"},
            follow_redirects=False,
        ) as response:
            if response.status_code != 200:
                raise IssuerUnavailable(f"{request} answered {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise IssuerUnavailable(f"{request} answered more than {MAX_DOCUMENT_BYTES} B")
            cache_control = response.headers.get("cache-control")
    except httpx.HTTPError as exc:
        raise IssuerUnavailable(f"{request} failed: {exc!r}") from exc
    try:
        document = json.loads(body)
    # A few KB of nested brackets exhaust the parser's depth: RecursionError, no ValueError.
    except (ValueError, RecursionError) as exc:
        raise IssuerUnavailable(f"{request} answered something that is not JSON") from exc
    if not isinstance(document, dict):
        raise IssuerUnavailable(f"{request} answered JSON that is not an object")
    return FetchedJSON(document, cache_control)
