"""Grants with an expiry ("tickets for 14 days") stop counting on their own, with no job."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import update

from identity.accounts.models import User
from identity.clock import utcnow
from identity.permissions import effective
from identity.permissions.grants import Grant, RoleGrant
from identity.permissions.models import Account, MembershipPermission
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    account_with_member,
    add_member,
    make_account,
    make_user,
    user_headers,
)


async def test_a_permission_counts_until_its_expiry_and_not_after(runtime: Runtime) -> None:
    now = utcnow()
    _, helper, account = await account_with_member(
        runtime, [Grant("tickets", now + timedelta(days=14))]
    )
    async with runtime.db.transaction() as session:
        today = await effective.effective_permissions(session, helper.id, account.id, now)
        day_13 = await effective.effective_permissions(
            session, helper.id, account.id, now + timedelta(days=13)
        )
        day_15 = await effective.effective_permissions(
            session, helper.id, account.id, now + timedelta(days=15)
        )
    assert (today, day_13, day_15) == ({"tickets"}, {"tickets"}, frozenset())


async def test_a_role_counts_until_its_expiry_and_not_after(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, helper = await make_user(runtime), await make_user(runtime)
    account = await make_account(runtime, owner)
    roles = await client.get("/api/v1/roles", headers=await user_headers(runtime, owner))
    support = next(r for r in roles.json() if r["key"] == "support")
    now = utcnow()
    await add_member(
        runtime,
        account,
        helper,
        roles=[RoleGrant(uuid.UUID(support["id"]), now + timedelta(days=1))],
    )
    async with runtime.db.transaction() as session:
        before = await effective.effective_permissions(session, helper.id, account.id, now)
        after = await effective.effective_permissions(
            session, helper.id, account.id, now + timedelta(days=2)
        )
    assert before == set(support["permissions"])
    assert after == frozenset()


async def test_batch_decisions_ignore_expired_grants(runtime: Runtime) -> None:
    now = utcnow()
    _, helper, account = await account_with_member(
        runtime, [Grant("tickets", now + timedelta(hours=1)), Grant("invoices")]
    )
    checks = [(helper.id, account.id, "tickets"), (helper.id, account.id, "invoices")]
    async with runtime.db.transaction() as session:
        soon = await effective.check_batch(session, checks, now)
        later = await effective.check_batch(session, checks, now + timedelta(hours=2))
    assert (soon, later) == ([True, True], [False, True])


async def test_the_api_grants_for_a_period_and_shows_when_a_grant_has_expired(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, helper, account = await account_with_member(runtime)
    headers = await user_headers(runtime, owner)
    until = (utcnow() + timedelta(days=14)).isoformat()
    granted = await client.post(
        f"/api/v1/accounts/{account.id}/members/{helper.id}/permissions",
        json={"name": "tickets", "expires_at": until},
        headers=headers,
    )
    assert granted.status_code == 201, granted.text
    grant = granted.json()["permissions"][0]
    assert (grant["name"], grant["expired"]) == ("tickets", False)
    assert granted.json()["effective_permissions"] == ["tickets"]


async def test_an_expiry_in_the_past_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, helper, account = await account_with_member(runtime)
    response = await client.post(
        f"/api/v1/accounts/{account.id}/members/{helper.id}/permissions",
        json={"name": "tickets", "expires_at": (utcnow() - timedelta(minutes=1)).isoformat()},
        headers=await user_headers(runtime, owner),
    )
    assert response.status_code == 422
    # The body's own field: a form showing the error beside it finds it.
    assert response.json()["errors"][0]["field"] == "expires_at"


async def test_a_single_grant_s_refusal_names_a_field_of_its_body(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, helper, account = await account_with_member(runtime)
    member = f"/api/v1/accounts/{account.id}/members/{helper.id}"
    headers = await user_headers(runtime, owner)
    refusals = {
        "name": await client.post(f"{member}/permissions", json={"name": "nope"}, headers=headers),
        "role_id": await client.post(
            f"{member}/roles", json={"role_id": str(uuid.uuid4())}, headers=headers
        ),
        "expires_at": await client.post(
            f"{member}/permissions",
            json={"name": "tickets", "expires_at": "9999-12-31T23:00:00Z"},
            headers=headers,
        ),
    }
    for field, response in refusals.items():
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field, response.text


async def _with_a_lapsed_grant(runtime: Runtime) -> tuple[User, User, Account]:
    """An account whose member holds "tickets" until an hour ago and "invoices" for good."""
    owner, helper, account = await account_with_member(
        runtime, [Grant("tickets", utcnow() + timedelta(days=1)), "invoices"]
    )
    async with runtime.db.transaction() as session:
        await session.execute(
            update(MembershipPermission)
            .where(MembershipPermission.permission == "tickets")
            .values(expires_at=utcnow() - timedelta(hours=1))
        )
    return owner, helper, account


async def test_editing_a_member_keeps_a_lapsed_grant_as_it_is_without_refusing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # The lapsed grant was checked again as if new: "An expiry date must be in the future."
    owner, helper, account = await _with_a_lapsed_grant(runtime)
    member = f"/api/v1/accounts/{account.id}/members/{helper.id}"
    headers = await user_headers(runtime, owner)
    roles_only = await client.patch(member, json={"roles": []}, headers=headers)
    assert roles_only.status_code == 200, roles_only.text
    listed = {g["name"]: g["expired"] for g in roles_only.json()["permissions"]}
    assert listed == {"tickets": True, "invoices": False}
    # A client that sends back the grants it read, lapsed one included, changes nothing.
    echoed = await client.patch(
        member,
        json={"permissions": [{"name": g["name"], "expires_at": g["expires_at"]}
                              for g in roles_only.json()["permissions"]]},
        headers=headers,
    )  # fmt: skip
    assert echoed.status_code == 200, echoed.text
    assert echoed.json()["permissions"] == roles_only.json()["permissions"]
    assert echoed.json()["effective_permissions"] == ["invoices"]


async def test_a_new_grant_that_has_lapsed_already_is_still_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, helper, account = await _with_a_lapsed_grant(runtime)
    lapsed = (utcnow() - timedelta(hours=2)).isoformat()
    response = await client.patch(
        f"/api/v1/accounts/{account.id}/members/{helper.id}",
        json={"permissions": [{"name": "domains", "expires_at": lapsed}]},
        headers=await user_headers(runtime, owner),
    )
    assert response.status_code == 422
    assert "in the future" in response.json()["detail"]
