"""offline_access (OIDC Core §11), which client libraries such as MSAL always ask for: accepted
from any client and dropped, since a client's refresh_token grant alone decides refresh tokens."""

from __future__ import annotations

import httpx
import pytest

from identity.runtime import Runtime
from tests.browser import (
    CLIENT_ID,
    REDIRECT_URI,
    add_oauth_client,
    add_user,
    authorize_params,
    form_fields,
    pkce_pair,
    redirected_to_client,
    sign_in,
)
from tests.integration.oauth_helpers import (
    consented_scopes,
    make_client,
    refresh,
    signed_in_tokens,
    verify_with_jwks,
)

MSAL_SCOPE = "openid profile offline_access"


@pytest.mark.parametrize("has_refresh_grant", [True, False])
async def test_offline_access_is_accepted_and_dropped_from_what_is_granted(
    client: httpx.AsyncClient, runtime: Runtime, has_refresh_grant: bool
) -> None:
    user = await add_user(runtime)
    grants = ["authorization_code"] + (["refresh_token"] if has_refresh_grant else [])
    await add_oauth_client(runtime, grant_types=grants)
    verifier, challenge = pkce_pair()
    asked = authorize_params(scope=MSAL_SCOPE, code_challenge=challenge)

    signed_in = await sign_in(client, asked)
    assert signed_in.status_code == 303, signed_in.text
    consent = signed_in.headers["location"]
    assert consent.startswith("/consent?flow="), consent
    page = await client.get(consent)
    assert "Know who you are" in page.text
    assert "offline_access" not in page.text
    allowed = await client.post("/consent", data=form_fields(page.text) | {"decision": "allow"})
    code = redirected_to_client(allowed)["code"]

    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        "client_id": CLIENT_ID,
    }
    tokens = await client.post("/token", data=exchange)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["scope"] == "openid profile"
    assert ("refresh_token" in tokens.json()) is has_refresh_grant
    remembered = await consented_scopes(runtime, user.id, CLIENT_ID)
    assert remembered == {"openid", "profile"}


async def test_any_other_scope_outside_the_registration_is_still_invalid(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_user(runtime)
    await add_oauth_client(runtime)
    response = await client.get(
        "/authorize", params=authorize_params(scope="openid offline_access admin")
    )
    assert redirected_to_client(response)["error"] == "invalid_scope"


async def test_a_refresh_asking_for_offline_access_drops_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """MSAL sends its scopes, offline_access among them, with every refresh: dropped as at
    /authorize; alone it leaves nothing, which counts as omitted (the granted scope), as
    ``scope=`` does."""
    app = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, app, scope="openid email")

    narrowed = await refresh(client, app, tokens["refresh_token"], scope="openid offline_access")
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["scope"] == "openid"
    alone = await refresh(client, app, narrowed.json()["refresh_token"], scope="offline_access")
    assert alone.status_code == 200, alone.text
    assert alone.json()["scope"] == "openid email"
    wider = await refresh(
        client, app, alone.json()["refresh_token"], scope="openid profile offline_access"
    )
    assert wider.json()["error"] == "invalid_scope"


async def test_client_credentials_asking_for_offline_access_drops_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(
        runtime, grant_types=["client_credentials"], redirect_uris=[], scope="reports:read"
    )
    for scope in ("reports:read offline_access", "offline_access"):
        response = await client.post(
            "/token", data={"grant_type": "client_credentials", "scope": scope}, headers=app.basic
        )
        assert response.status_code == 200, response.text
        assert response.json()["scope"] == "reports:read"
        assert "refresh_token" not in response.json()


@pytest.mark.parametrize("scope", [None, "reports:read", "offline_access"])
async def test_client_credentials_never_grant_offline_access_the_client_is_registered_for(
    client: httpx.AsyncClient, runtime: Runtime, scope: str | None
) -> None:
    # There is no user to be offline for and no refresh token: registered with it (for its
    # users' sign-ins), the client's own tokens still leave it out, asked for or not.
    app = await make_client(
        runtime,
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
        scope="openid offline_access reports:read",
    )
    data = {"grant_type": "client_credentials"} | ({"scope": scope} if scope else {})
    response = await client.post("/token", data=data, headers=app.basic)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "reports:read"
    token = await verify_with_jwks(client, response.json()["access_token"])
    assert token.claims["scope"] == "reports:read"
