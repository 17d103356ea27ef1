"""Account claims in access tokens: ``account_id``, ``permissions``, ``account_owner``,
computed at every issue from the memberships, and the same through introspection."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from sqlalchemy import select

from identity.clock import utcnow
from identity.crypto import digest
from identity.permissions import members
from identity.runtime import Runtime
from identity.tokens.models import AuthorizationCode
from tests.integration.account_helpers import (
    SYSTEM,
    account_with_member,
    add_member,
    grant,
    make_account,
    signed_in_member,
)
from tests.integration.oauth_helpers import (
    fresh_code,
    make_client,
    make_user,
    refresh,
    signed_in_tokens,
    verify_with_jwks,
)
from tests.integration.recovery_helpers import until_waiting_or_done


async def test_a_members_access_token_names_the_account_and_its_permissions(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, clerk, account = await account_with_member(runtime, ["invoices", "tickets"])
    registered = await make_client(runtime)

    body = await signed_in_tokens(client, runtime, registered, user=clerk, account_id=account.id)

    claims = (await verify_with_jwks(client, body["access_token"])).claims
    assert claims["account_id"] == str(account.id)
    assert claims["permissions"] == ["invoices", "tickets"]
    assert claims["account_owner"] is False
    # The ID token describes the person, not what they may do in an account.
    id_claims = (await verify_with_jwks(client, body["id_token"])).claims
    assert "permissions" not in id_claims and "account_id" not in id_claims


async def test_an_owner_gets_every_permission_of_the_catalogue(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    registered = await make_client(runtime)

    body = await signed_in_tokens(client, runtime, registered, user=owner, account_id=account.id)

    claims = (await verify_with_jwks(client, body["access_token"])).claims
    assert claims["account_owner"] is True
    assert {"invoices", "users", "domains", "profile"} <= set(claims["permissions"])


async def test_a_token_without_an_account_has_no_account_claims(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    registered = await make_client(runtime)

    body = await signed_in_tokens(client, runtime, registered)

    claims = (await verify_with_jwks(client, body["access_token"])).claims
    assert not {"account_id", "permissions", "account_owner"} & set(claims)


async def test_a_refresh_recomputes_the_permissions(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    clerk, account, registered, body = await signed_in_member(client, runtime, ["invoices"])
    # A grant added later (a widening: refresh tokens stay valid) shows in the next token.
    await grant(runtime, account.id, clerk.id, "tickets")

    refreshed = await refresh(client, registered, body["refresh_token"])

    assert refreshed.status_code == 200, refreshed.text
    claims = (await verify_with_jwks(client, refreshed.json()["access_token"])).claims
    assert claims["account_id"] == str(account.id)
    assert claims["permissions"] == ["invoices", "tickets"]


async def test_removing_a_permission_ends_the_refresh_tokens_for_the_account(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    clerk, account, registered, body = await signed_in_member(
        client, runtime, ["invoices", "tickets"]
    )
    async with runtime.db.transaction() as session:
        await members.revoke_one(session, SYSTEM, account.id, clerk.id, "tickets", utcnow())

    refreshed = await refresh(client, registered, body["refresh_token"])

    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"
    # A new sign-in gets a token without the permission at once.
    body = await signed_in_tokens(client, runtime, registered, user=clerk, account_id=account.id)
    claims = (await verify_with_jwks(client, body["access_token"])).claims
    assert claims["permissions"] == ["invoices"]


async def test_a_removed_member_cannot_refresh_or_redeem_a_code_for_the_account(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    clerk, account, registered, body = await signed_in_member(client, runtime, ["invoices"])
    fresh = await fresh_code(runtime, registered, user=clerk, account_id=account.id)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account.id, clerk.id, utcnow())

    refreshed = await refresh(client, registered, body["refresh_token"])
    redeemed = await fresh.redeem(client)

    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    assert redeemed.status_code == 400 and redeemed.json()["error"] == "invalid_grant"


async def test_a_code_refused_for_a_removed_member_is_spent(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Adding the member back within the code's minute must not make a refused code good."""
    _, clerk, account = await account_with_member(runtime, ["invoices"])
    fresh = await fresh_code(runtime, user=clerk, account_id=account.id)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account.id, clerk.id, utcnow())

    refused = await fresh.redeem(client)
    await add_member(runtime, account, clerk, ["invoices"])
    again = await fresh.redeem(client)

    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


async def test_a_code_issued_before_a_removal_is_no_good_once_the_member_is_back(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The code was for the membership that ended: its redemption after the member was added
    back gave tokens (a refresh token going on for good) that no one granted the new one."""
    _, clerk, account = await account_with_member(runtime, ["invoices"])
    fresh = await fresh_code(runtime, user=clerk, account_id=account.id)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account.id, clerk.id, utcnow())
    await add_member(runtime, account, clerk, ["invoices"])

    redeemed = await fresh.redeem(client)

    assert redeemed.status_code == 400, redeemed.text
    assert redeemed.json()["error"] == "invalid_grant"


async def test_a_removal_leaves_the_members_codes_for_other_accounts_alone(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, clerk, account = await account_with_member(runtime, ["invoices"])
    other = await make_account(runtime, await make_user(runtime), name="Other")
    await add_member(runtime, other, clerk, ["tickets"])
    fresh = await fresh_code(runtime, user=clerk, account_id=other.id)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account.id, clerk.id, utcnow())

    redeemed = await fresh.redeem(client)

    assert redeemed.status_code == 200, redeemed.text


async def test_a_refresh_after_removal_fails_even_when_the_token_was_not_revoked(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # The membership is checked at every issue, not only through the revocation on removal.
    clerk, account, registered, body = await signed_in_member(client, runtime, ["invoices"])
    async with runtime.db.transaction() as session:
        membership = await members.membership_of(session, account.id, clerk.id)
        await session.delete(membership)

    refreshed = await refresh(client, registered, body["refresh_token"])

    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"


async def test_introspection_returns_the_account_claims(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, account, registered, body = await signed_in_member(client, runtime, ["domains"])

    answer = await client.post(
        "/introspect", data={"token": body["access_token"]}, headers=registered.basic
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["active"] is True
    assert answer.json()["account_id"] == str(account.id)
    assert answer.json()["permissions"] == ["domains"]
    assert answer.json()["account_owner"] is False


async def test_introspecting_the_refresh_token_names_its_account(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    registered = await make_client(runtime)
    body = await signed_in_tokens(client, runtime, registered, user=owner, account_id=account.id)

    answer = await client.post(
        "/introspect", data={"token": body["refresh_token"]}, headers=registered.basic
    )

    assert answer.json()["active"] is True
    assert answer.json()["account_id"] == str(account.id)


async def test_a_code_redeemed_while_a_removal_commits_issues_nothing_it_misses(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The removal's clock has passed the code's expiry; the redemption's, read as its
    request came in, has not. The removal passed over the code as dead, so the redemption
    did not wait for it: it read the membership before the removal committed and issued a
    token that the removal's deny list did not name, live again once the member is back."""
    _, clerk, account = await account_with_member(runtime, ["invoices"])
    fresh = await fresh_code(runtime, user=clerk, account_id=account.id)
    async with runtime.db.transaction() as session:
        expires_at = await session.scalar(
            select(AuthorizationCode.expires_at).where(
                AuthorizationCode.code_hash == digest(fresh.code)
            )
        )
        assert expires_at is not None
        later = expires_at + timedelta(seconds=1)
        await members.remove_member(session, SYSTEM, account.id, clerk.id, later)
        redeeming = asyncio.create_task(fresh.redeem(client))
        await until_waiting_or_done(runtime, redeeming, "authorization_codes")

    redeemed = await redeeming

    assert redeemed.status_code == 400, redeemed.text
    assert redeemed.json()["error"] == "invalid_grant"
