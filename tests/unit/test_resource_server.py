"""The resource server's life: what closing it does to fetches under way and to later calls."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from identity.resource import IssuerUnavailable, ResourceServer, ResourceServerConfig
from identity.resource.fetch import fetch_json
from tests.resource_issuer import (
    AUDIENCE,
    INTROSPECTION_CLIENT,
    LocalIssuer,
    issuer_fixture,  # noqa: F401 - the issuer fixture
)


@asynccontextmanager
async def silent_issuer() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """The URL of an issuer that takes requests and never answers, as one stuck behind a
    proxy does, and an event set once a request has reached it: a fetch is then under way."""
    asked = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.readuntil(b"\r\n\r\n")  # the request's head: it is waiting for us
        asked.set()
        await reader.read()  # until the client gives up and closes the connection

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", asked
    finally:
        server.close()
        for writer in held:
            writer.transport.abort()
        await server.wait_closed()


@pytest.mark.parametrize("shared", [False, True])
async def test_closing_ends_a_fetch_in_flight_and_refuses_later_calls(
    issuer: LocalIssuer, shared: bool
) -> None:
    # aclose() only closed an HTTP client of its own: with a shared one, the key fetch under
    # way ran on (a "Task was destroyed but it is pending" at exit) and the request waiting
    # on it waited out the HTTP timeout; with its own, that request was told of a read error
    # and the next one failed as a 500, on a client that was closed.
    async with silent_issuer() as (url, asked), httpx.AsyncClient(timeout=5) as http:
        await _close_during_a_fetch(
            ResourceServer(ResourceServerConfig(url, audience=AUDIENCE), http if shared else None),
            issuer,
            asked,
        )


async def _close_during_a_fetch(
    server: ResourceServer, issuer: LocalIssuer, asked: asyncio.Event
) -> None:
    waiting = asyncio.create_task(server.validate(issuer.token()))
    await asyncio.wait_for(asked.wait(), timeout=1)  # discovery waits on the issuer
    assert not waiting.done()
    await asyncio.wait_for(server.aclose(), timeout=1)
    with pytest.raises(IssuerUnavailable, match="closed"):
        await asyncio.wait_for(waiting, timeout=1)
    with pytest.raises(IssuerUnavailable, match="closed"):
        await asyncio.wait_for(server.validate(issuer.token()), timeout=1)
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.parametrize("shared", [False, True])
async def test_an_introspector_of_a_closed_server_is_refused_as_unavailable(
    issuer: LocalIssuer, shared: bool
) -> None:
    # With the server's own HTTP client, httpx refused the request with a RuntimeError (a 500
    # from every route asking); with a shared one, the closed server went on introspecting.
    issuer.introspection_answer = {"active": False}
    async with httpx.AsyncClient(timeout=5) as http:
        server = ResourceServer(
            ResourceServerConfig(issuer.issuer, audience=AUDIENCE), http if shared else None
        )
        introspector = server.introspector(*INTROSPECTION_CLIENT)
        await server.aclose()
        with pytest.raises(IssuerUnavailable, match="closed"):
            await introspector.introspect(issuer.token())
    assert not issuer.introspection_requests


async def test_a_request_on_a_client_closed_meanwhile_is_unavailable_not_a_runtime_error() -> None:
    # The server closed while an introspection waited for discovery: the request that
    # followed, on the closed client, raised httpx's RuntimeError, a 500 for the service.
    http = httpx.AsyncClient()
    await http.aclose()
    with pytest.raises(IssuerUnavailable, match="closed"):
        await fetch_json(http, "http://127.0.0.1:9/introspect", method="POST", data={})


@pytest.mark.parametrize("shared", [False, True])
async def test_closing_ends_an_introspection_in_flight(issuer: LocalIssuer, shared: bool) -> None:
    # aclose() left an introspection under way alone: on a shared client the issuer's answer,
    # arriving after the close, was returned as if nothing had happened; on the server's own
    # client, closed under it, the request failed with a ReadError.
    issuer.introspection_answer = {"active": True, "token_type": "Bearer"} | issuer.claims()
    issuer.introspection_answering.clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            async with httpx.AsyncClient(timeout=5) as http:
                server = ResourceServer(
                    ResourceServerConfig(issuer.issuer, audience=AUDIENCE), http if shared else None
                )
                introspecting = asyncio.create_task(
                    server.introspector(*INTROSPECTION_CLIENT).introspect(issuer.token())
                )
                while not issuer.introspection_requests:  # the issuer holds the request
                    assert not introspecting.done(), introspecting.result()
                    await asyncio.sleep(0.01)
                await asyncio.wait_for(server.aclose(), timeout=1)
                await server.aclose()  # again, as ``async with`` after an explicit close does
                issuer.introspection_answering.set()  # the answer comes, too late
                with pytest.raises(IssuerUnavailable, match="closed"):
                    await asyncio.wait_for(introspecting, timeout=1)
                assert asyncio.all_tasks() == {asyncio.current_task()}
                assert http.is_closed is False
            gc.collect()
        assert [str(warning.message) for warning in caught] == []
    finally:
        issuer.introspection_answering.set()
