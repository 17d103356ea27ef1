"""Ownership handed over while the receiver or the giver is being removed or demoted: the
account keeps an owner, and only an owner hands ownership over.

A request reads who is who when it checks the caller's rights, before it takes the
account's lock; these tests let another request commit in between, as a second process
would, and then let the first one finish.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from identity.audit.models import AuditEvent
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.errors import Conflict, Forbidden
from identity.permissions import members, repository
from identity.permissions.models import Account, Membership
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    account_with_member,
    add_member,
    make_account,
    make_user,
    user_headers,
)


async def _owners(runtime: Runtime, account: Account) -> set[uuid.UUID]:
    async with runtime.db.transaction() as session:
        found = await session.scalars(
            select(Membership.user_id).where(
                Membership.account_id == account.id, Membership.is_owner.is_(True)
            )
        )
        return set(found)


async def _hand_over(
    runtime: Runtime, account: Account, giver: uuid.UUID, receiver: uuid.UUID
) -> None:
    async with runtime.db.transaction() as session:
        await members.hand_over_ownership(
            session, Actor(giver), account.id, giver, receiver, utcnow()
        )


async def test_removing_the_receiver_of_a_hand_over_never_leaves_the_account_ownerless(
    runtime: Runtime,
) -> None:
    owner, receiver, account = await account_with_member(runtime)

    with pytest.raises(Conflict):
        async with runtime.db.transaction() as removal:
            # The removal checks its target (a plain member, as the API's handler does) ...
            assert not (await members.membership_of(removal, account.id, receiver.id)).is_owner
            # ... the owner hands the account over to that member meanwhile ...
            await _hand_over(runtime, account, owner.id, receiver.id)
            # ... and the removal must now find the account's last owner.
            await members.remove_member(removal, Actor(owner.id), account.id, receiver.id, utcnow())

    assert await _owners(runtime, account) == {receiver.id}


async def test_demoting_the_giver_of_a_hand_over_meanwhile_changes_nothing_more(
    runtime: Runtime,
) -> None:
    owner, partner, receiver = [await make_user(runtime) for _ in range(3)]
    account = await make_account(runtime, owner)
    await add_member(runtime, account, partner, owner=True)
    await add_member(runtime, account, receiver)

    async with runtime.db.transaction() as demotion:
        # The owner's demotion of the partner checks its target, and keeps it, as the API's
        # PATCH handler does ...
        target = await members.membership_of(demotion, account.id, partner.id)
        assert target.is_owner
        # ... the partner hands their ownership to the receiver meanwhile ...
        await _hand_over(runtime, account, partner.id, receiver.id)
        # ... and the demotion finds the partner a plain member already: nothing to change.
        await members.set_owner(demotion, Actor(owner.id), account.id, partner.id, False, utcnow())

    assert await _owners(runtime, account) == {owner.id, receiver.id}
    async with runtime.db.transaction() as session:
        demoted_by = await session.scalars(
            select(AuditEvent.actor_user_id).where(
                AuditEvent.action == "member.owner_changed",
                AuditEvent.target_id == str(partner.id),
            )
        )
        assert list(demoted_by) == [partner.id]


async def test_a_giver_demoted_meanwhile_hands_over_nothing(runtime: Runtime) -> None:
    giver, partner, receiver = [await make_user(runtime) for _ in range(3)]
    account = await make_account(runtime, giver)
    await add_member(runtime, account, partner, owner=True)
    await add_member(runtime, account, receiver)

    with pytest.raises(Forbidden):
        async with runtime.db.transaction() as hand_over:
            # The hand-over checks that its caller owns the account (the API's authorization) ...
            assert (await members.membership_of(hand_over, account.id, giver.id)).is_owner
            # ... the partner demotes the giver meanwhile ...
            async with runtime.db.transaction() as demotion:
                await members.set_owner(
                    demotion, Actor(partner.id), account.id, giver.id, False, utcnow()
                )
            # ... and the giver, no longer an owner, has no ownership to give.
            await members.hand_over_ownership(
                hand_over, Actor(giver.id), account.id, giver.id, receiver.id, utcnow()
            )

    assert await _owners(runtime, account) == {partner.id}


async def test_a_member_made_owner_meanwhile_is_not_removed_by_a_manager(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manager removes plain members only. The removal judged its target before taking
    the account's lock; an owner who promoted that member in between had their new
    co-owner removed by the manager."""
    owner, manager, clerk = [await make_user(runtime) for _ in range(3)]
    account = await make_account(runtime, owner)
    await add_member(runtime, account, manager, ["users"])
    await add_member(runtime, account, clerk)
    member_url = f"/api/v1/accounts/{account.id}/members/{clerk.id}"
    real_lock = repository.lock_account
    owner_headers = await user_headers(runtime, owner)
    manager_headers = await user_headers(runtime, manager)
    promotions: list[httpx.Response] = []
    first = True

    async def lock_after_a_promotion(*args: Any, **kwargs: Any) -> None:
        nonlocal first
        if first:  # the removal's lock; the promotion's own goes straight through
            first = False
            promotion = await client.patch(member_url, json={"owner": True}, headers=owner_headers)
            promotions.append(promotion)
        await real_lock(*args, **kwargs)

    monkeypatch.setattr(repository, "lock_account", lock_after_a_promotion)
    removal = await client.delete(member_url, headers=manager_headers)

    assert [p.status_code for p in promotions] == [200], promotions[0].text
    assert removal.status_code == 403, removal.text
    assert await _owners(runtime, account) == {owner.id, clerk.id}
