"""Refresh tokens rotate on every use; reuse of a rotated one revokes the family."""

from __future__ import annotations

import asyncio

import httpx

from identity.accounts.models import User
from identity.runtime import Runtime
from tests.integration.oauth_helpers import (
    expire_refresh_token,
    is_active,
    make_client,
    make_user,
    refresh,
    signed_in_tokens,
    verify_with_jwks,
)


async def test_refresh_rotates_the_token(client: httpx.AsyncClient, runtime: Runtime) -> None:
    app = await make_client(runtime)
    first = await signed_in_tokens(client, runtime, app)

    response = await refresh(client, app, first["refresh_token"])

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["refresh_token"] != first["refresh_token"]
    assert body["scope"] == "openid profile email"
    id_token = await verify_with_jwks(client, body["id_token"])
    assert "nonce" not in id_token.claims
    assert (await refresh(client, app, body["refresh_token"])).status_code == 200


async def test_reuse_of_a_rotated_token_revokes_the_family(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    first = await signed_in_tokens(client, runtime, app)
    second = (await refresh(client, app, first["refresh_token"])).json()

    reuse = await refresh(client, app, first["refresh_token"])

    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    assert (await refresh(client, app, second["refresh_token"])).json()["error"] == "invalid_grant"


async def test_reuse_of_a_rotated_token_revokes_the_familys_access_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 9700 §4.14.2: after a reuse nobody in the family may go on, with any token."""
    app = await make_client(runtime)
    first = await signed_in_tokens(client, runtime, app)
    second = (await refresh(client, app, first["refresh_token"])).json()

    assert (await refresh(client, app, first["refresh_token"])).status_code == 400

    assert not await is_active(client, app, first["access_token"])
    assert not await is_active(client, app, second["access_token"])


async def test_a_rotated_token_back_after_its_expiry_revokes_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Past its expiry a token is refused as unknown, whether or not housekeeping has
    deleted its row yet: its family, which it can no longer extend, lives on."""
    app = await make_client(runtime)
    first = await signed_in_tokens(client, runtime, app)
    second = (await refresh(client, app, first["refresh_token"])).json()
    await expire_refresh_token(runtime, first["refresh_token"])

    late = await refresh(client, app, first["refresh_token"])

    assert late.json()["error"] == "invalid_grant"
    assert await is_active(client, app, second["access_token"])
    assert (await refresh(client, app, second["refresh_token"])).status_code == 200


async def test_parallel_refreshes_of_one_token_give_one_success(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    first = await signed_in_tokens(client, runtime, app)

    responses = await asyncio.gather(
        *(refresh(client, app, first["refresh_token"]) for _ in range(10))
    )

    assert sorted(r.status_code for r in responses) == [200] + [400] * 9
    # The losers presented a replaced token: what the winner got is revoked too (README).
    (won,) = (r.json() for r in responses if r.status_code == 200)
    assert (await refresh(client, app, won["refresh_token"])).json()["error"] == "invalid_grant"
    assert not await is_active(client, app, won["access_token"])


async def test_another_clients_refresh_token_is_refused_and_left_alone(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_client(runtime)
    other = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, owner)

    stolen = await refresh(client, other, tokens["refresh_token"])

    assert stolen.json()["error"] == "invalid_grant"
    assert (await refresh(client, owner, tokens["refresh_token"])).status_code == 200


async def test_scope_may_narrow_but_not_widen(client: httpx.AsyncClient, runtime: Runtime) -> None:
    app = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, app, scope="openid email")

    wider = await refresh(client, app, tokens["refresh_token"], scope="openid email profile")
    narrower = await refresh(client, app, tokens["refresh_token"], scope="openid")

    assert wider.json()["error"] == "invalid_scope"
    assert narrower.status_code == 200
    body = narrower.json()
    assert body["scope"] == "openid"
    claims = (await verify_with_jwks(client, body["access_token"])).claims
    assert claims["scope"] == "openid"
    # The rotated refresh token keeps the full grant (RFC 6749 §6).
    again = await refresh(client, app, body["refresh_token"], scope="openid email")
    assert again.status_code == 200


async def test_a_blank_scope_is_malformed_and_an_empty_one_is_omitted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 6749 §3.2: a parameter sent without a value counts as omitted (the granted scope,
    §6); one made only of spaces holds no scope-token (§3.3), which said "scope exceeds what
    was granted". As node-oidc-provider: the empty one is left out, the blank one refused."""
    app = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, app, scope="openid email")

    for blank in (" ", "   "):
        refused = await refresh(client, app, tokens["refresh_token"], scope=blank)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_scope"
        assert refused.json()["error_description"] == (
            "scope is blank: name at least one scope, or leave the parameter out."
        )
    # Refused before anything was spent: the refresh token still works, and with scope=""
    # keeps the whole grant.
    empty = await refresh(client, app, tokens["refresh_token"], scope="")

    assert empty.status_code == 200, empty.text
    assert empty.json()["scope"] == "openid email"


async def test_unknown_refresh_token_is_invalid_grant(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)

    response = await refresh(client, app, "not-a-token")

    assert response.json()["error"] == "invalid_grant"


async def test_a_refresh_drops_the_admin_scope_of_a_user_no_longer_administrator(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # identity:admin is granted to administrators only, at every issue: a refresh token
    # obtained while one was an administrator does not carry it past that.
    app = await make_client(runtime, scope="openid identity:accounts identity:admin")
    admin = await make_user(runtime, is_admin=True)
    first = await signed_in_tokens(
        client, runtime, app, user=admin, scope="openid identity:accounts identity:admin"
    )
    assert first["scope"] == "openid identity:accounts identity:admin"
    async with runtime.db.transaction() as session:
        (await session.get(User, admin.id)).is_admin = False  # type: ignore[union-attr]

    refreshed = await refresh(client, app, first["refresh_token"])

    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["scope"] == "openid identity:accounts"
    claims = (await verify_with_jwks(client, refreshed.json()["access_token"])).claims
    assert claims["scope"] == "openid identity:accounts"
    # Nor can a later refresh ask for it back.
    again = await refresh(
        client, app, refreshed.json()["refresh_token"], scope="openid identity:admin"
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_scope"
