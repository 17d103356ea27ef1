"""A manager hands out only what they hold, for no longer than they hold it: direct grants,
roles, invitations and the account's roles alike. Owners and staff are not limited."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from identity.audit.models import AuditEvent
from identity.clock import utcnow
from identity.permissions import account_roles, directory, members
from identity.permissions.grants import Grant, RoleGrant
from identity.permissions.models import Account
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    SYSTEM,
    add_member,
    effective,
    make_account,
    make_user,
    user_headers,
)
from tests.integration.recovery_helpers import until_waiting_or_done

BEYOND = "beyond_delegation"


class Desk:
    """An account whose manager holds `users` for a week, `tickets` for good and `domains`
    through the role "Desk"; a clerk with `invoices` (which the manager lacks); and the
    account's role "Billing" (`invoices`)."""

    def __init__(self, account: Account, ids: dict[str, str], users_until: datetime) -> None:
        self.account = account
        self.ids = ids
        self.users_until = users_until

    def path(self, tail: str) -> str:
        return f"/api/v1/accounts/{self.account.id}{tail.format(**self.ids)}"


async def _role(runtime: Runtime, account: Account, name: str, permissions: list[str]) -> str:
    async with runtime.db.transaction() as session:
        view = await account_roles.create_role(
            session,
            SYSTEM,
            account.id,
            name=name,
            permissions=permissions,
            catalogue=runtime.catalogue,
            now=utcnow(),
        )
    return str(view.role.id)


@pytest.fixture
async def desk(runtime: Runtime) -> Desk:
    owner, manager, clerk = [await make_user(runtime) for _ in range(3)]
    account = await make_account(runtime, owner)
    desk_role = await _role(runtime, account, "Desk", ["domains"])
    billing = await _role(runtime, account, "Billing", ["invoices"])
    users_until = utcnow() + timedelta(days=7)
    await add_member(
        runtime,
        account,
        manager,
        [Grant("users", users_until), "tickets"],
        roles=[RoleGrant(uuid.UUID(desk_role))],
    )
    await add_member(runtime, account, clerk, ["invoices"])
    ids = {
        "owner": str(owner.id),
        "manager": str(manager.id),
        "clerk": str(clerk.id),
        "desk": desk_role,
        "billing": billing,
    }
    return Desk(account, ids, users_until)


async def _as(runtime: Runtime, desk: Desk, who: str) -> dict[str, str]:
    async with runtime.db.transaction() as session:
        user = await directory.user(session, uuid.UUID(desk.ids[who]))
    return await user_headers(runtime, user)


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["reason"] == BEYOND


async def _clerk_holds(runtime: Runtime, desk: Desk) -> frozenset[str]:
    async with runtime.db.transaction() as session:
        clerk = await directory.user(session, uuid.UUID(desk.ids["clerk"]))
    return await effective(runtime, clerk, desk.account)


async def test_a_manager_grants_what_they_hold_directly_or_through_a_role_and_nothing_else(
    client: httpx.AsyncClient, runtime: Runtime, desk: Desk
) -> None:
    headers = await _as(runtime, desk, "manager")
    grant = desk.path("/members/{clerk}/permissions")
    for name in ("tickets", "domains"):
        response = await client.post(grant, json={"name": name}, headers=headers)
        assert response.status_code == 201, response.text
    _refused(await client.post(grant, json={"name": "quotes"}, headers=headers))
    _refused(
        await client.patch(
            desk.path("/members/{clerk}"),
            json={"permissions": [{"name": "invoices"}, {"name": "orders"}]},
            headers=headers,
        )
    )
    assert await _clerk_holds(runtime, desk) == {"invoices", "tickets", "domains"}


async def test_nor_for_longer_than_they_hold_it(
    client: httpx.AsyncClient, runtime: Runtime, desk: Desk
) -> None:
    headers = await _as(runtime, desk, "manager")
    grant = desk.path("/members/{clerk}/permissions")
    within = (desk.users_until - timedelta(days=1)).isoformat()
    beyond = (desk.users_until + timedelta(days=1)).isoformat()
    _refused(await client.post(grant, json={"name": "users"}, headers=headers))
    _refused(
        await client.post(grant, json={"name": "users", "expires_at": beyond}, headers=headers)
    )
    # Nor their own grant: an owner's end date on `users` must hold.
    _refused(
        await client.patch(
            desk.path("/members/{manager}"),
            json={"permissions": [{"name": "users"}, {"name": "tickets"}]},
            headers=headers,
        )
    )
    allowed = await client.post(
        grant, json={"name": "users", "expires_at": within}, headers=headers
    )
    assert allowed.status_code == 201, allowed.text


async def test_a_role_only_when_every_permission_in_it_is_held(
    client: httpx.AsyncClient, runtime: Runtime, desk: Desk
) -> None:
    headers = await _as(runtime, desk, "manager")
    roles = desk.path("/members/{clerk}/roles")
    _refused(await client.post(roles, json={"role_id": desk.ids["billing"]}, headers=headers))
    given = await client.post(roles, json={"role_id": desk.ids["desk"]}, headers=headers)
    assert given.status_code == 201, given.text


async def test_invitations_and_the_accounts_roles_are_held_to_the_same_rule(
    client: httpx.AsyncClient, runtime: Runtime, desk: Desk
) -> None:
    headers = await _as(runtime, desk, "manager")
    invite = desk.path("/invitations")
    _refused(
        await client.post(
            invite,
            json={"email": "alt@example.com", "permissions": [{"name": "invoices"}]},
            headers=headers,
        )
    )
    _refused(
        await client.post(
            invite,
            json={"email": "alt@example.com", "roles": [{"role_id": desk.ids["billing"]}]},
            headers=headers,
        )
    )
    invited = await client.post(
        invite,
        json={"email": "alt@example.com", "permissions": [{"name": "tickets"}]},
        headers=headers,
    )
    assert invited.status_code == 201, invited.text

    roles = desk.path("/roles")
    _refused(
        await client.post(
            roles, json={"name": "Sneaky", "permissions": ["tickets", "orders"]}, headers=headers
        )
    )
    # Added to a role, a permission reaches its holders for good: held with an end, it cannot.
    _refused(
        await client.post(roles, json={"name": "Admins", "permissions": ["users"]}, headers=headers)
    )
    _refused(
        await client.patch(
            desk.path("/roles/{desk}"),
            json={"permissions": ["domains", "invoices"]},
            headers=headers,
        )
    )
    made = await client.post(
        roles, json={"name": "Support", "permissions": ["tickets"]}, headers=headers
    )
    assert made.status_code == 201, made.text
    # Narrowing a role the manager does not fully hold is fine.
    narrowed = await client.patch(
        desk.path("/roles/{billing}"), json={"permissions": []}, headers=headers
    )
    assert narrowed.status_code == 200, narrowed.text


async def test_grants_the_manager_lacks_may_stay_or_go_but_not_come(
    client: httpx.AsyncClient, runtime: Runtime, desk: Desk
) -> None:
    headers = await _as(runtime, desk, "manager")
    member = desk.path("/members/{clerk}")
    kept = await client.patch(
        member,
        json={"permissions": [{"name": "invoices"}, {"name": "tickets"}]},
        headers=headers,
    )
    assert kept.status_code == 200, kept.text
    assert await _clerk_holds(runtime, desk) == {"invoices", "tickets"}
    dropped = await client.patch(member, json={"permissions": []}, headers=headers)
    assert dropped.status_code == 200, dropped.text
    _refused(
        await client.patch(member, json={"permissions": [{"name": "invoices"}]}, headers=headers)
    )
    assert await _clerk_holds(runtime, desk) == frozenset()


async def _grants_recorded(runtime: Runtime, desk: Desk) -> list[str]:
    async with runtime.db.transaction() as session:
        result = await session.scalars(
            select(AuditEvent.action).where(
                AuditEvent.account_id == desk.account.id,
                AuditEvent.action.in_(["member.permission_granted", "member.role_granted"]),
            )
        )
        return list(result.all())


async def test_a_grant_the_member_holds_already_sent_again_is_kept_whoever_sends_it(
    client: httpx.AsyncClient, runtime: Runtime, desk: Desk
) -> None:
    # Sent back in a PATCH it was kept, but POSTed alone it was refused as beyond the
    # manager's rights, though it changes nothing: delegation judges only what changes.
    owner = await _as(runtime, desk, "owner")
    given = await client.post(
        desk.path("/members/{clerk}/roles"), json={"role_id": desk.ids["billing"]}, headers=owner
    )
    assert given.status_code == 201, given.text
    recorded = await _grants_recorded(runtime, desk)
    headers = await _as(runtime, desk, "manager")

    permission = await client.post(
        desk.path("/members/{clerk}/permissions"), json={"name": "invoices"}, headers=headers
    )
    role = await client.post(
        desk.path("/members/{clerk}/roles"), json={"role_id": desk.ids["billing"]}, headers=headers
    )

    assert permission.status_code == 201, permission.text
    assert role.status_code == 201, role.text
    assert await _grants_recorded(runtime, desk) == recorded
    # With another expiry it is a change, judged as any.
    until = (utcnow() + timedelta(days=1)).isoformat()
    _refused(
        await client.post(
            desk.path("/members/{clerk}/permissions"),
            json={"name": "invoices", "expires_at": until},
            headers=headers,
        )
    )
    _refused(
        await client.post(
            desk.path("/members/{clerk}/roles"),
            json={"role_id": desk.ids["billing"], "expires_at": until},
            headers=headers,
        )
    )
    assert await _clerk_holds(runtime, desk) == {"invoices"}


async def test_owners_are_not_limited(
    client: httpx.AsyncClient, runtime: Runtime, desk: Desk
) -> None:
    granted = await client.post(
        desk.path("/members/{manager}/permissions"),
        json={"name": "quotes"},
        headers=await _as(runtime, desk, "owner"),
    )
    assert granted.status_code == 201, granted.text


async def test_an_all_permissions_manager_hands_out_any_single_permission_or_role(
    client: httpx.AsyncClient, runtime: Runtime, desk: Desk
) -> None:
    # They hold the whole catalogue, with no end: only "all permissions" itself (and
    # ownership) stays an owner's to give.
    boss = await make_user(runtime)
    await add_member(runtime, desk.account, boss, all_permissions=True)
    headers = await user_headers(runtime, boss)
    granted = await client.post(
        desk.path("/members/{clerk}/permissions"), json={"name": "quotes"}, headers=headers
    )
    assert granted.status_code == 201, granted.text
    given = await client.post(
        desk.path("/members/{clerk}/roles"), json={"role_id": desk.ids["billing"]}, headers=headers
    )
    assert given.status_code == 201, given.text
    invited = await client.post(
        desk.path("/invitations"),
        json={"email": "alt@example.com", "permissions": [{"name": "orders"}]},
        headers=headers,
    )
    assert invited.status_code == 201, invited.text
    made = await client.post(
        desk.path("/roles"), json={"name": "Sales", "permissions": ["quotes"]}, headers=headers
    )
    assert made.status_code == 201, made.text
    assert await _clerk_holds(runtime, desk) == {"invoices", "quotes"}
    refused = await client.patch(
        desk.path("/members/{clerk}"), json={"all_permissions": True}, headers=headers
    )
    assert refused.status_code == 403, refused.text


async def test_an_unknown_permission_is_named_as_unknown_whoever_edits_the_role(
    client: httpx.AsyncClient, runtime: Runtime, desk: Desk
) -> None:
    # As when a role is made: the permission does not exist (422), rather than a manager
    # being told they do not hold it.
    headers = await _as(runtime, desk, "manager")
    for response in (
        await client.post(
            desk.path("/roles"), json={"name": "Typo", "permissions": ["tickest"]}, headers=headers
        ),
        await client.patch(
            desk.path("/roles/{desk}"),
            json={"permissions": ["domains", "tickest"]},
            headers=headers,
        ),
    ):
        assert response.status_code == 422, response.text
        assert "Unknown permissions: tickest" in response.json()["detail"]


async def test_an_owner_taking_users_from_a_manager_waits_for_their_edit_in_progress(
    client: httpx.AsyncClient, runtime: Runtime, desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manager's grant has been judged by their rights when the owner takes `users` from
    them. The owner's change must not commit in between, or the grant would land after it on
    rights the manager no longer had: it waits, so the grant lands first and the revoke
    after it."""
    manager, owner = await _as(runtime, desk, "manager"), await _as(runtime, desk, "owner")
    real_grant = members.grant_one
    revoking: list[asyncio.Task[httpx.Response]] = []
    revoke_committed_in_between: list[bool] = []

    async def grant_during_a_revoke(*args: Any, **kwargs: Any) -> Any:
        take = client.delete(desk.path("/members/{manager}/permissions/users"), headers=owner)
        revoking.append(asyncio.create_task(take))
        await until_waiting_or_done(runtime, revoking[0], "accounts")
        revoke_committed_in_between.append(revoking[0].done())
        return await real_grant(*args, **kwargs)

    monkeypatch.setattr(members, "grant_one", grant_during_a_revoke)
    granted = await client.post(
        desk.path("/members/{clerk}/permissions"), json={"name": "tickets"}, headers=manager
    )
    assert revoke_committed_in_between == [False]
    assert granted.status_code == 201, granted.text
    assert (await revoking[0]).status_code == 204
    assert await _clerk_holds(runtime, desk) == {"invoices", "tickets"}
    monkeypatch.undo()
    again = await client.post(
        desk.path("/members/{clerk}/permissions"), json={"name": "quotes"}, headers=manager
    )
    assert again.status_code == 403, again.text


async def test_a_managers_edit_meeting_a_revoke_of_their_users_in_progress_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, desk: Desk
) -> None:
    """Staff have taken `users` from the manager, not yet committed, when the manager's
    edit comes: it waits for that change and is judged by the rights it left."""
    manager = await _as(runtime, desk, "manager")
    async with runtime.db.transaction() as session:
        await members.revoke_one(
            session, SYSTEM, desk.account.id, uuid.UUID(desk.ids["manager"]), "users", utcnow()
        )
        granting = asyncio.create_task(
            client.post(
                desk.path("/members/{clerk}/permissions"), json={"name": "tickets"}, headers=manager
            )
        )
        await until_waiting_or_done(runtime, granting, "memberships")
    answer = await granting
    assert answer.status_code == 403, answer.text
    assert await _clerk_holds(runtime, desk) == {"invoices"}
