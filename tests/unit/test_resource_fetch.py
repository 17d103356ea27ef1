"""What the kit does with an answer from the issuer (or a proxy in its place) it must not use."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from identity.resource import IssuerUnavailable
from identity.resource.fetch import fetch_json


@asynccontextmanager
async def answering(*answers: bytes) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A real HTTP server on loopback giving each request the next raw answer in turn, and
    the list of the request heads it read."""
    heads: list[bytes] = []
    pending = list(answers)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(pending.pop(0))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", heads
    finally:
        server.close()
        await server.wait_closed()


def ok(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
    return head.encode() + b"\r\nconnection: close\r\n\r\n" + body


async def test_a_redirect_is_refused_even_by_a_shared_client_that_follows_them() -> None:
    # A service's own client often follows redirects; the kit must not: a jwks_uri bounced
    # to plain http (keys anyone on the path may swap) or an introspection, token and client
    # secret included, re-posted by a 307 to wherever the Location says.
    moved = b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n"
    async with (
        answering(moved, ok(b'{"active": true}')) as (url, heads),
        httpx.AsyncClient(follow_redirects=True) as http,
    ):
        with pytest.raises(IssuerUnavailable, match="answered 307"):
            await fetch_json(http, url + "/introspect", method="POST", data={"token": "t"})
    assert len(heads) == 1, heads


async def test_json_nested_past_the_parsers_depth_is_the_issuer_unavailable() -> None:
    # 2 KB, far under the size cap: json.loads raises RecursionError, no ValueError, which
    # escaped every fetch as a 500 of the service (and, for the JWKS, of every waiting request).
    nested = b'{"keys":' + b"[" * 5000 + b"]" * 5000 + b"}"
    async with answering(ok(nested)) as (url, _), httpx.AsyncClient() as http:
        with pytest.raises(IssuerUnavailable, match="not JSON"):
            await fetch_json(http, url + "/jwks")
