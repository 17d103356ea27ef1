"""HEAD is answered wherever GET is (RFC 9110 §9.3.2: a general-purpose server MUST support
both): the same status and headers, no body. Load balancers, uptime monitors and link
checkers send HEAD; a 405 for a page that exists reads as the page being broken."""

from __future__ import annotations

import httpx

from identity.runtime import Runtime
from tests.browser import add_oauth_client, authorize_params, flow_of

# What may differ between two answers to the same request, HEAD or not.
_PER_ANSWER = {"x-request-id", "date", "set-cookie"}


def _headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k not in _PER_ANSWER}


async def test_head_answers_as_get_does_without_the_body(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_oauth_client(runtime)
    started = await client.get("/authorize", params=authorize_params())
    login = f"/login?flow={flow_of(started)}"
    for path in (
        "/health/live",
        "/.well-known/openid-configuration",
        "/jwks.json",
        "/password/forgot",
        login,
        "/schema/openapi.json",
        "/no-such-page",
    ):
        got = await client.get(path)
        head = await client.head(path)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        assert _headers(head) == _headers(got), path
        assert int(head.headers.get("content-length", len(got.content))) == len(got.content)


async def test_head_is_refused_where_get_is(client: httpx.AsyncClient) -> None:
    head = await client.head("/token")
    got = await client.get("/token")
    assert head.status_code == got.status_code == 405
    assert head.content == b""


async def test_a_head_is_counted_under_its_route_in_the_metrics(client: httpx.AsyncClient) -> None:
    await client.head("/health/live")
    metrics = (await client.get("/metrics")).text
    assert 'method="HEAD",route="/health/live",status="200"' in metrics
