"""An account always keeps at least one owner, also when owners are removed concurrently."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from identity.audit.service import Actor
from identity.clock import utcnow
from identity.errors import Conflict
from identity.permissions import members
from identity.permissions.models import Account, Membership
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    account_with_member,
    make_account,
    make_user,
    staff_headers,
    user_headers,
)


async def _owners(runtime: Runtime, account: Account) -> int:
    async with runtime.db.transaction() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.account_id == account.id, Membership.is_owner.is_(True))
        )
    return int(count or 0)


async def test_removing_the_last_owner_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    response = await client.delete(
        f"/api/v1/accounts/{account.id}/members/{owner.id}", headers=await staff_headers(runtime)
    )
    assert response.status_code == 409
    assert "at least one owner" in response.json()["detail"]
    assert response.json()["reason"] == "last_owner"
    assert await _owners(runtime, account) == 1


async def test_demoting_the_last_owner_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    response = await client.patch(
        f"/api/v1/accounts/{account.id}/members/{owner.id}",
        json={"owner": False},
        headers=await user_headers(runtime, owner),
    )
    assert response.status_code == 409
    assert response.json()["reason"] == "last_owner"
    assert await _owners(runtime, account) == 1


async def test_an_owner_may_step_down_once_another_owner_exists(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, _co_owner, account = await account_with_member(runtime, owner=True)
    response = await client.patch(
        f"/api/v1/accounts/{account.id}/members/{owner.id}",
        json={"owner": False},
        headers=await user_headers(runtime, owner),
    )
    assert response.status_code == 200, response.text
    assert response.json()["owner"] is False
    assert await _owners(runtime, account) == 1


async def _remove(runtime: Runtime, account: Account, by: uuid.UUID, whom: uuid.UUID) -> None:
    async with runtime.db.transaction() as session:
        await members.remove_member(session, Actor(by), account.id, whom, utcnow())


async def _demote(runtime: Runtime, account: Account, by: uuid.UUID, whom: uuid.UUID) -> None:
    async with runtime.db.transaction() as session:
        await members.set_owner(session, Actor(by), account.id, whom, False, utcnow())


@pytest.mark.parametrize("change", [_remove, _demote], ids=["remove", "demote"])
async def test_two_owners_removing_each_other_at_once_leave_one_owner(
    runtime: Runtime, change: object
) -> None:
    first, second, account = await account_with_member(runtime, owner=True)
    results = await asyncio.gather(
        change(runtime, account, first.id, second.id),  # type: ignore[operator]
        change(runtime, account, second.id, first.id),  # type: ignore[operator]
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1
    assert isinstance(refused[0], Conflict)
    assert await _owners(runtime, account) == 1
