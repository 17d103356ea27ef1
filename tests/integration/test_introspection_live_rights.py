"""Introspection answers for the member's rights now, not when the token was issued: it is how
a service sees a removal, a withdrawn permission or a disabled user at once (README, "Choosing
the account at sign-in"; ``identity.resource.Introspector``)."""

from __future__ import annotations

from datetime import timedelta

import httpx

from identity.accounts.models import User
from identity.accounts.service import disable_user, update_user
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.permissions import grants, members, repository
from identity.permissions.models import Account
from identity.runtime import Runtime
from tests.integration.account_helpers import SYSTEM, add_member, signed_in_member
from tests.integration.oauth_helpers import (
    RegisteredClient,
    make_client,
    make_user,
    signed_in_tokens,
)


async def _clerk_token(
    client: httpx.AsyncClient, runtime: Runtime, permissions: list[str | grants.Grant]
) -> tuple[RegisteredClient, Account, User, str]:
    clerk, account, app, body = await signed_in_member(client, runtime, permissions)
    return app, account, clerk, body["access_token"]


async def _introspect(
    client: httpx.AsyncClient, caller: RegisteredClient, token: str
) -> dict[str, object]:
    response = await client.post("/introspect", data={"token": token}, headers=caller.basic)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_removed_members_access_token_is_inactive(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app, account, clerk, token = await _clerk_token(client, runtime, ["invoices"])
    assert (await _introspect(client, app, token))["active"] is True
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account.id, clerk.id, utcnow())

    assert await _introspect(client, app, token) == {"active": False}


async def test_adding_a_removed_member_back_does_not_revive_their_earlier_token(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Removal ends the member's tokens for the account for good: once they are added back,
    only tokens issued since are active."""
    app, account, clerk, token = await _clerk_token(client, runtime, ["invoices"])
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account.id, clerk.id, utcnow())
    removed = await _introspect(client, app, token)
    later = utcnow() + timedelta(seconds=5)
    await add_member(runtime, account, clerk, ["invoices"], now=later)
    since = await signed_in_tokens(client, runtime, app, user=clerk, account_id=account.id)

    assert removed == {"active": False}
    assert await _introspect(client, app, token) == {"active": False}
    answer = await _introspect(client, app, since["access_token"])
    assert answer["active"] is True
    assert answer["permissions"] == ["invoices"]


async def test_a_token_issued_after_a_member_is_added_back_on_a_machine_ahead_is_active(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Machines' clocks may differ (README: up to 30 s). Compared with the membership's
    # start, a token this machine issued right after its adding through a machine 2 s ahead
    # read as older than the membership, and inactive for its whole life.
    app, account, clerk, _ = await _clerk_token(client, runtime, ["invoices"])
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account.id, clerk.id, utcnow())
    ahead = utcnow() + timedelta(seconds=2)
    await add_member(runtime, account, clerk, ["invoices"], now=ahead)
    since = await signed_in_tokens(client, runtime, app, user=clerk, account_id=account.id)

    answer = await _introspect(client, app, since["access_token"])
    assert answer["active"] is True


async def test_a_disabled_users_access_token_is_inactive(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app, _, clerk, token = await _clerk_token(client, runtime, ["invoices"])
    async with runtime.db.transaction() as session:
        await disable_user(session, SYSTEM, clerk.id, "left the company", utcnow())

    assert await _introspect(client, app, token) == {"active": False}


async def test_a_withdrawn_permission_leaves_the_introspected_claims(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app, account, clerk, token = await _clerk_token(client, runtime, ["invoices", "tickets"])
    async with runtime.db.transaction() as session:
        await members.revoke_one(session, SYSTEM, account.id, clerk.id, "tickets", utcnow())
        # A permission granted after the token was issued is not added to it.
        await members.grant_one(
            session,
            SYSTEM,
            account.id,
            clerk.id,
            grants.Grant("domains"),
            catalogue=runtime.catalogue,
            now=utcnow(),
        )

    answer = await _introspect(client, app, token)

    assert answer["active"] is True
    assert answer["permissions"] == ["invoices"]
    assert answer["account_owner"] is False


async def test_a_lapsed_grant_leaves_the_introspected_claims(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    soon = utcnow() + timedelta(minutes=5)
    app, account, clerk, token = await _clerk_token(
        client, runtime, ["invoices", grants.Grant("tickets", soon)]
    )
    async with runtime.db.transaction() as session:
        membership = await members.membership_of(session, account.id, clerk.id)
        for grant in await repository.permission_grants(session, [membership.id]):
            if grant.permission == "tickets":
                grant.expires_at = utcnow() - timedelta(seconds=1)

    assert (await _introspect(client, app, token))["permissions"] == ["invoices"]


async def test_a_demoted_owners_token_no_longer_says_owner(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    second, account, app, body = await signed_in_member(client, runtime, ["invoices"], owner=True)
    async with runtime.db.transaction() as session:
        await members.set_owner(session, SYSTEM, account.id, second.id, False, utcnow())

    answer = await _introspect(client, app, body["access_token"])

    assert answer["active"] is True
    assert answer["account_owner"] is False
    assert answer["permissions"] == ["invoices"]


async def _demoted_administrators_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> tuple[RegisteredClient, dict[str, str]]:
    """The tokens an administrator got with identity:admin, once staff took the flag away."""
    console = await make_client(runtime, scope="openid email identity:admin")
    admin = await make_user(runtime, is_admin=True)
    await make_user(runtime, is_admin=True)  # so that this one is not the last
    tokens = await signed_in_tokens(
        client, runtime, console, user=admin, scope="openid email identity:admin"
    )
    async with runtime.db.transaction() as session:
        await update_user(session, Actor(), admin.id, name=None, is_admin=False)
    return console, tokens


async def test_a_demoted_administrators_token_no_longer_says_identity_admin(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The management API stops treating the token as staff's at once; a service reading
    ``scope`` from introspection must not go on seeing identity:admin."""
    console, tokens = await _demoted_administrators_tokens(client, runtime)

    answer = await _introspect(client, console, tokens["access_token"])

    assert answer["active"] is True
    assert answer["scope"] == "openid email"


async def test_a_demoted_administrators_refresh_token_no_longer_says_identity_admin(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A refresh token introspects with the scope a refresh would issue now."""
    console, tokens = await _demoted_administrators_tokens(client, runtime)

    answer = await _introspect(client, console, tokens["refresh_token"])

    assert answer["active"] is True
    assert answer["scope"] == "openid email"
