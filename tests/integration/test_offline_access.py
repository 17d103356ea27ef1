"""offline_access (OIDC Core §11), which client libraries such as MSAL always ask for: accepted
from any client and dropped, since a client's refresh_token grant alone decides refresh tokens."""

from __future__ import annotations

import httpx
import pytest

from identity.runtime import Runtime
from identity.tokens import consents
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
    async with runtime.db.transaction() as session:
        remembered = await consents.granted_scopes(session, user.id, CLIENT_ID)
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
