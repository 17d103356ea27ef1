"""client_credentials: confidential clients only, their own scopes, no refresh token."""

from __future__ import annotations

import httpx

from identity.runtime import Runtime
from tests.integration.oauth_helpers import make_client, verify_with_jwks


async def test_client_gets_a_jwt_access_token_about_itself(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(
        runtime, grant_types=["client_credentials"], redirect_uris=[], scope="reports:read"
    )

    response = await client.post(
        "/token", data={"grant_type": "client_credentials"}, headers=app.basic
    )

    assert response.status_code == 200
    body = response.json()
    assert "refresh_token" not in body and "id_token" not in body
    token = await verify_with_jwks(client, body["access_token"])
    assert token.header["typ"] == "at+jwt"
    assert token.claims["sub"] == app.client_id
    assert token.claims["client_id"] == app.client_id
    assert token.claims["aud"] == app.client_id
    assert token.claims["scope"] == "reports:read"
    assert token.claims["exp"] - token.claims["iat"] == 600
    assert "auth_time" not in token.claims


async def test_scope_beyond_the_clients_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(
        runtime, grant_types=["client_credentials"], redirect_uris=[], scope="reports:read"
    )

    # A blank scope (RFC 6749 §3.3: no scope-token) was a token with no scope at all.
    for scope in ("reports:write", "openid", " "):
        response = await client.post(
            "/token", data={"grant_type": "client_credentials", "scope": scope}, headers=app.basic
        )
        assert response.json()["error"] == "invalid_scope"


async def test_client_without_the_grant_is_unauthorized(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)

    response = await client.post(
        "/token", data={"grant_type": "client_credentials"}, headers=app.basic
    )

    assert response.json()["error"] == "unauthorized_client"


async def test_unknown_grant_type_is_unsupported(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)

    for grant_type in ("password", "implicit", "urn:ietf:params:oauth:grant-type:device_code"):
        response = await client.post("/token", data={"grant_type": grant_type}, headers=app.basic)
        assert response.json()["error"] == "unsupported_grant_type"
