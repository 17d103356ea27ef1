"""RFC 7009 revocation: 200 for anything; refresh tokens take their family, access tokens
go on the deny list until they expire.
"""

from __future__ import annotations

import httpx

from identity.runtime import Runtime
from tests.integration.oauth_helpers import (
    RegisteredClient,
    assert_access_token_dead,
    is_active,
    make_client,
    refresh,
    signed_in_tokens,
)


async def revoke(http: httpx.AsyncClient, caller: RegisteredClient, token: str) -> httpx.Response:
    return await http.post("/revoke", data={"token": token}, headers=caller.basic)


async def test_revoked_access_token_is_inactive_and_refused_by_userinfo(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, app)

    response = await revoke(client, app, tokens["access_token"])

    assert response.status_code == 200
    await assert_access_token_dead(client, app, tokens["access_token"])


async def test_revoking_a_refresh_token_revokes_its_family(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    first = await signed_in_tokens(client, runtime, app)
    second = (await refresh(client, app, first["refresh_token"])).json()

    assert (await revoke(client, app, first["refresh_token"])).status_code == 200

    assert (await refresh(client, app, second["refresh_token"])).json()["error"] == "invalid_grant"


async def test_revoking_a_refresh_token_revokes_the_access_tokens_of_its_family(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 7009 §2.1: access tokens based on the same grant are invalidated as well."""
    app = await make_client(runtime)
    first = await signed_in_tokens(client, runtime, app)
    second = (await refresh(client, app, first["refresh_token"])).json()

    assert (await revoke(client, app, second["refresh_token"])).status_code == 200

    assert not await is_active(client, app, first["access_token"])
    assert not await is_active(client, app, second["access_token"])


async def test_public_client_revokes_its_own_refresh_token(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime, public=True)
    tokens = await signed_in_tokens(client, runtime, app)

    response = await client.post(
        "/revoke", data={"token": tokens["refresh_token"], "client_id": app.client_id}
    )

    assert response.status_code == 200
    again = await client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": app.client_id,
        },
    )
    assert again.json()["error"] == "invalid_grant"


async def test_unknown_tokens_and_other_clients_tokens_get_200_and_nothing_happens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_client(runtime)
    other = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, owner)

    assert (await revoke(client, other, "never-issued")).status_code == 200
    assert (await revoke(client, other, tokens["refresh_token"])).status_code == 200
    assert (await revoke(client, other, tokens["access_token"])).status_code == 200

    assert (await refresh(client, owner, tokens["refresh_token"])).status_code == 200


async def test_revocation_needs_client_authentication(client: httpx.AsyncClient) -> None:
    response = await client.post("/revoke", data={"token": "x"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
