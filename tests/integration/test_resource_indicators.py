"""RFC 8707: a token for a registered resource server names it in ``aud``."""

from __future__ import annotations

import httpx

from identity.runtime import Runtime
from tests.integration.oauth_helpers import (
    BILLING,
    make_client,
    refresh,
    signed_in_tokens,
    verify_with_jwks,
)


async def test_client_credentials_token_for_a_registered_resource(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(
        runtime, grant_types=["client_credentials"], redirect_uris=[], resources=[BILLING]
    )

    response = await client.post(
        "/token", data={"grant_type": "client_credentials", "resource": BILLING}, headers=app.basic
    )

    claims = (await verify_with_jwks(client, response.json()["access_token"])).claims
    assert claims["aud"] == BILLING


async def test_unregistered_or_malformed_resource_is_invalid_target(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(
        runtime, grant_types=["client_credentials"], redirect_uris=[], resources=[BILLING]
    )

    for resource in ("https://evil.example.com", "billing", BILLING + "#frag"):
        response = await client.post(
            "/token",
            data={"grant_type": "client_credentials", "resource": resource},
            headers=app.basic,
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_target"


async def test_code_with_resource_gives_a_token_for_it_and_refresh_keeps_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime, resources=[BILLING])
    tokens = await signed_in_tokens(client, runtime, app, resources=[BILLING])

    claims = (await verify_with_jwks(client, tokens["access_token"])).claims
    refreshed = (await refresh(client, app, tokens["refresh_token"], resource=BILLING)).json()

    assert claims["aud"] == BILLING
    assert (await verify_with_jwks(client, refreshed["access_token"])).claims["aud"] == BILLING


async def test_refresh_cannot_ask_for_a_resource_outside_the_grant(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    other = "https://other.example.com"
    app = await make_client(runtime, resources=[BILLING, other])
    tokens = await signed_in_tokens(client, runtime, app, resources=[BILLING])

    response = await refresh(client, app, tokens["refresh_token"], resource=other)

    assert response.json()["error"] == "invalid_target"


async def test_without_resource_the_audience_is_the_client(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime, resources=[BILLING])
    tokens = await signed_in_tokens(client, runtime, app)

    claims = (await verify_with_jwks(client, tokens["access_token"])).claims

    assert claims["aud"] == app.client_id
