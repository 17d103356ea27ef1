"""RFC 7009 revocation: 200 for anything; refresh tokens take their family, access tokens
go on the deny list until they expire.
"""

from __future__ import annotations

import httpx

from identity.runtime import Runtime
from tests.integration.oauth_helpers import (
    RegisteredClient,
    assert_access_token_dead,
    expire_refresh_token,
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


async def test_an_expired_refresh_token_is_revoked_as_an_unknown_one_is(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Past its expiry a token is unknown to every reader, as once housekeeping deletes it:
    its family, which it can no longer extend, lives on whenever that run comes."""
    app = await make_client(runtime)
    other = await make_client(runtime)
    first = await signed_in_tokens(client, runtime, app)
    second = (await refresh(client, app, first["refresh_token"])).json()
    await expire_refresh_token(runtime, first["refresh_token"])

    assert (await revoke(client, other, first["refresh_token"])).status_code == 200
    assert (await revoke(client, app, first["refresh_token"])).status_code == 200

    assert (await refresh(client, app, second["refresh_token"])).status_code == 200


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


async def test_unknown_and_malformed_tokens_get_200(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 7009 §2.2: an invalid token is no error, the client could do nothing about it."""
    caller = await make_client(runtime)
    for token in ("never-issued", "a.b.c", "eyJhbGciOiJub25lIn0.e30."):
        response = await revoke(client, caller, token)
        assert response.status_code == 200, token
        assert response.content == b""


async def test_the_answer_is_200_with_no_content_and_no_content_type(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 7009 §2.2 gives the answer no body: a JSON content type over no bytes is JSON no
    parser accepts (node-oidc-provider answers with no content and no JSON type either).
    Known or not, the answer is the same, and no cache keeps it."""
    caller = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, caller)
    for token in (tokens["refresh_token"], tokens["access_token"], "never-issued"):
        response = await revoke(client, caller, token)
        assert response.status_code == 200
        assert response.content == b""
        assert "content-type" not in response.headers
        assert response.headers["content-length"] == "0"
        assert response.headers["cache-control"] == "no-store"


async def _assert_untouched(
    http: httpx.AsyncClient, owner: RegisteredClient, tokens: dict[str, str]
) -> None:
    assert await is_active(http, owner, tokens["access_token"])
    assert (await refresh(http, owner, tokens["refresh_token"])).status_code == 200


async def test_a_confidential_client_is_refused_another_client_s_tokens_and_revokes_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 7009 §2.1: the server verifies the token was issued to the requesting client and
    refuses the request otherwise (invalid_request, as node-oidc-provider and Keycloak do)."""
    owner = await make_client(runtime)
    other = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, owner)

    for kind in ("refresh_token", "access_token"):
        response = await revoke(client, other, tokens[kind])
        assert response.status_code == 400, kind
        assert response.json()["error"] == "invalid_request"
        assert response.headers["cache-control"] == "no-store"

    await _assert_untouched(client, owner, tokens)


async def test_a_public_client_gets_200_for_another_client_s_tokens_and_revokes_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Anyone can call as a public client, knowing only its client_id: an answer that told
    a live token of another client from a dead one would let anyone test stolen tokens."""
    owner = await make_client(runtime)
    other = await make_client(runtime, public=True)
    tokens = await signed_in_tokens(client, runtime, owner)

    for kind in ("refresh_token", "access_token"):
        response = await client.post(
            "/revoke", data={"token": tokens[kind], "client_id": other.client_id}
        )
        assert response.status_code == 200, kind

    await _assert_untouched(client, owner, tokens)


async def test_revocation_needs_client_authentication(client: httpx.AsyncClient) -> None:
    response = await client.post("/revoke", data={"token": "x"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
