"""The JWKS: public keys only, each with a kid; enough alone to verify our access tokens."""

from __future__ import annotations

import httpx

from identity.runtime import Runtime
from tests.integration.oauth_helpers import service_client, service_token, verify_with_jwks


async def test_jwks_publishes_public_keys_with_kid(client: httpx.AsyncClient) -> None:
    response = await client.get("/jwks.json")

    assert response.status_code == 200
    keys = response.json()["keys"]
    assert keys
    for key in keys:
        assert key["kid"] and key["use"] == "sig" and key["alg"] in ("RS256", "ES256")
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


async def test_access_token_validates_with_the_jwks_alone(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    token = await service_token(client, await service_client(runtime))

    verified = await verify_with_jwks(client, token)

    assert verified.header["kid"] in {
        k["kid"] for k in (await client.get("/jwks.json")).json()["keys"]
    }
    assert verified.claims["iss"] == "http://testserver.local"


async def test_jwks_answers_304_to_a_matching_etag(client: httpx.AsyncClient) -> None:
    first = await client.get("/jwks.json")

    again = await client.get("/jwks.json", headers={"If-None-Match": first.headers["etag"]})

    assert again.status_code == 304
    assert "max-age" in first.headers["cache-control"]
