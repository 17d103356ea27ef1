"""An account's owners must be able to act: a disabled user cannot sign in, so is never made
an owner, and the last owner who can sign in is not removed or demoted."""

from __future__ import annotations

import httpx

from identity.accounts.models import User
from identity.accounts.service import disable_user
from identity.clock import utcnow
from identity.permissions import repository
from identity.permissions.models import Account
from identity.runtime import Runtime
from tests.browser import add_user
from tests.integration.account_helpers import (
    SYSTEM,
    account_with_member,
    add_member,
    make_account,
    make_user,
    staff_headers,
    user_headers,
)
from tests.integration.test_pages_users import confirming, sign_in_at


async def _disable(runtime: Runtime, user: User) -> None:
    async with runtime.db.transaction() as session:
        await disable_user(session, SYSTEM, user.id, "Left the company", utcnow())


async def _is_owner(runtime: Runtime, account: Account, user: User) -> bool:
    async with runtime.db.transaction() as session:
        membership = await repository.get_membership(session, account.id, user.id)
    return membership is not None and membership.is_owner


def _refused_as_disabled(response: httpx.Response) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "disabled" in response.json()["detail"]


async def test_staff_cannot_make_a_disabled_member_an_owner(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, member, account = await account_with_member(runtime)
    await _disable(runtime, member)
    response = await client.patch(
        f"/api/v1/accounts/{account.id}/members/{member.id}",
        json={"owner": True},
        headers=await staff_headers(runtime),
    )
    _refused_as_disabled(response)
    assert not await _is_owner(runtime, account, member)


async def test_an_owner_cannot_hand_ownership_to_a_disabled_member(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, member, account = await account_with_member(runtime)
    await _disable(runtime, member)
    response = await client.post(
        f"/api/v1/accounts/{account.id}/ownership-transfer",
        json={"to_user_id": str(member.id)},
        headers=await user_headers(runtime, owner),
    )
    _refused_as_disabled(response)
    assert await _is_owner(runtime, account, owner)
    assert not await _is_owner(runtime, account, member)


async def test_a_disabled_user_is_not_added_as_an_owner(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, outsider = await make_user(runtime), await make_user(runtime)
    account = await make_account(runtime, owner)
    await _disable(runtime, outsider)
    headers = await staff_headers(runtime)
    as_owner = await client.post(
        f"/api/v1/accounts/{account.id}/members",
        json={"user_id": str(outsider.id), "owner": True},
        headers=headers,
    )
    _refused_as_disabled(as_owner)
    # As a plain member they may be added: they gain nothing while disabled.
    as_member = await client.post(
        f"/api/v1/accounts/{account.id}/members",
        json={"user_id": str(outsider.id)},
        headers=headers,
    )
    assert as_member.status_code == 201, as_member.text


async def test_an_account_is_not_created_for_a_disabled_owner(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await make_user(runtime)
    await _disable(runtime, user)
    response = await client.post(
        "/api/v1/accounts",
        json={"name": "Dormant Ltd", "owner_user_id": str(user.id)},
        headers=await staff_headers(runtime),
    )
    _refused_as_disabled(response)
    listed = await client.get("/api/v1/accounts", headers=await staff_headers(runtime))
    assert all(a["name"] != "Dormant Ltd" for a in listed.json())


async def _with_a_disabled_co_owner(runtime: Runtime) -> tuple[User, User, Account]:
    """An account whose owner has a co-owner that staff have disabled."""
    owner, dormant, account = await account_with_member(runtime, owner=True)
    await _disable(runtime, dormant)
    return owner, dormant, account


async def test_the_last_enabled_owner_cannot_step_down_beside_a_disabled_one(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, _, account = await _with_a_disabled_co_owner(runtime)
    response = await client.patch(
        f"/api/v1/accounts/{account.id}/members/{owner.id}",
        json={"owner": False},
        headers=await user_headers(runtime, owner),
    )
    assert response.status_code == 409, response.text
    assert "at least one owner" in response.json()["detail"]
    assert await _is_owner(runtime, account, owner)


async def test_the_last_enabled_owner_cannot_leave_beside_a_disabled_one(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, _, account = await _with_a_disabled_co_owner(runtime)
    response = await client.delete(
        f"/api/v1/accounts/{account.id}/members/{owner.id}",
        headers=await user_headers(runtime, owner),
    )
    assert response.status_code == 409, response.text
    assert await _is_owner(runtime, account, owner)


async def test_the_users_page_keeps_the_last_enabled_owner(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await add_user(runtime, "owner@example.com")
    dormant = await add_user(runtime, "dormant@example.com")
    account = await make_account(runtime, owner)
    await add_member(runtime, account, dormant, owner=True)
    await _disable(runtime, dormant)
    path = f"/accounts/{account.id}/users"
    csrf = await sign_in_at(client, path, "owner@example.com")

    response = await client.post(
        f"{path}/{owner.id}/remove", data=csrf | await confirming(runtime, account, owner)
    )

    assert response.status_code == 409
    assert "An account must keep at least one owner who can sign in" in response.text
    assert await _is_owner(runtime, account, owner)


async def test_a_disabled_owner_may_go_while_an_enabled_one_stays(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, dormant, account = await _with_a_disabled_co_owner(runtime)
    response = await client.delete(
        f"/api/v1/accounts/{account.id}/members/{dormant.id}",
        headers=await user_headers(runtime, owner),
    )
    assert response.status_code == 204, response.text


async def test_staff_may_disable_the_last_enabled_owner_and_then_appoint_another(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Disabling is how staff stop a taken-over user at once: it is not held back by the
    # accounts the user owns. Staff can give such an account a new owner afterwards.
    owner, member, account = await account_with_member(runtime)
    headers = await staff_headers(runtime)
    disabled = await client.post(
        f"/api/v1/users/{owner.id}/disable", json={"reason": "Account takeover"}, headers=headers
    )
    assert disabled.status_code == 200, disabled.text
    base = f"/api/v1/accounts/{account.id}/members"
    # The disabled owner stays until another owner who can sign in exists.
    early = await client.patch(f"{base}/{owner.id}", json={"owner": False}, headers=headers)
    assert early.status_code == 409, early.text
    promoted = await client.patch(f"{base}/{member.id}", json={"owner": True}, headers=headers)
    assert promoted.status_code == 200, promoted.text
    demoted = await client.patch(f"{base}/{owner.id}", json={"owner": False}, headers=headers)
    assert demoted.status_code == 200, demoted.text
