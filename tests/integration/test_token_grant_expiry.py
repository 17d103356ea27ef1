"""An access token never speaks for a grant past the grant's ``expires_at``: its ``exp`` (and
``expires_in``) end when the first grant its permissions come from ends, and a grant ending
within moments is left out rather than shortening the token to nothing."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx

from identity.clock import utcnow
from identity.permissions.grants import Grant, RoleGrant
from identity.runtime import Runtime
from tests.integration.account_helpers import signed_in_member, user_headers
from tests.integration.oauth_helpers import make_user, refresh, verify_with_jwks


async def _claims(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    return (await verify_with_jwks(http, body["access_token"])).claims


def _assert_ends_at(claims: dict[str, Any], body: dict[str, Any], end: datetime) -> None:
    # ``exp`` is whole seconds: never after the grant's end, and not more than a second before.
    assert int(end.timestamp()) - 1 <= claims["exp"] <= end.timestamp()
    assert abs(body["expires_in"] - (claims["exp"] - claims["iat"])) <= 1


async def test_a_token_ends_when_a_direct_grant_in_it_ends(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    end = utcnow() + timedelta(minutes=3)  # before the 10-minute access token TTL
    _, _, registered, body = await signed_in_member(
        client, runtime, [Grant("tickets", end), "invoices"]
    )
    claims = await _claims(client, body)
    assert claims["permissions"] == ["invoices", "tickets"]
    _assert_ends_at(claims, body, end)

    # A refresh issues through the same rule.
    refreshed = await refresh(client, registered, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    again = refreshed.json()
    again_claims = await _claims(client, again)
    assert again_claims["permissions"] == ["invoices", "tickets"]
    _assert_ends_at(again_claims, again, end)


async def test_a_token_ends_when_a_role_in_it_ends(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    viewer = await make_user(runtime)
    roles = await client.get("/api/v1/roles", headers=await user_headers(runtime, viewer))
    support = next(r for r in roles.json() if r["key"] == "support")
    end = utcnow() + timedelta(minutes=4)
    _, _, _, body = await signed_in_member(
        client, runtime, roles=[RoleGrant(uuid.UUID(support["id"]), end)]
    )
    claims = await _claims(client, body)
    assert claims["permissions"] == sorted(support["permissions"])
    _assert_ends_at(claims, body, end)


async def test_a_permission_held_longer_another_way_keeps_the_full_lifetime(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    viewer = await make_user(runtime)
    roles = await client.get("/api/v1/roles", headers=await user_headers(runtime, viewer))
    support = next(r for r in roles.json() if r["key"] == "support")
    soon = utcnow() + timedelta(minutes=2)
    # Each of the role's permissions also granted directly, soon ending; the role has no end.
    _, _, _, body = await signed_in_member(
        client,
        runtime,
        [Grant(name, soon) for name in support["permissions"]],
        roles=[RoleGrant(uuid.UUID(support["id"]))],
    )
    claims = await _claims(client, body)
    assert claims["exp"] - claims["iat"] == runtime.settings.access_token_ttl
    assert body["expires_in"] == runtime.settings.access_token_ttl


async def test_a_grant_ending_within_moments_is_left_out_of_the_token(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, _, _, body = await signed_in_member(
        client, runtime, [Grant("tickets", utcnow() + timedelta(seconds=20)), "invoices"]
    )
    claims = await _claims(client, body)
    assert claims["permissions"] == ["invoices"]
    assert claims["exp"] - claims["iat"] == runtime.settings.access_token_ttl
    assert body["expires_in"] == runtime.settings.access_token_ttl


async def test_an_owners_token_lives_the_full_lifetime(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, _, _, body = await signed_in_member(
        client, runtime, [Grant("tickets", utcnow() + timedelta(minutes=2))], owner=True
    )
    claims = await _claims(client, body)
    assert claims["account_owner"] is True
    assert claims["exp"] - claims["iat"] == runtime.settings.access_token_ttl
