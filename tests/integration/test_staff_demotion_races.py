"""An administrator's staff change meeting their demotion or disable by another: one waits
for the other. A change that arrives while its author is being demoted or disabled is
judged by what that left (403); one already judged lands before the demotion commits, never
after it. Two administrators taking each other's flag at once leave one of them an
administrator, and neither meets a deadlock."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User
from identity.accounts.repository import hold_for_demotion, hold_user, lock_administrators
from identity.accounts.service import disable_user, update_user
from identity.clock import utcnow
from identity.permissions import customer_accounts
from identity.permissions.access import hold_member_rights
from identity.permissions.models import Account
from identity.runtime import Runtime
from identity.web.api.auth import SCOPE_ADMIN
from tests.backends import TEST_DATABASE_URL
from tests.integration.account_helpers import SYSTEM, make_account, make_user, user_headers
from tests.integration.recovery_helpers import until_waiting_or_done


async def _administrator(runtime: Runtime) -> tuple[User, dict[str, str]]:
    admin = await make_user(runtime, is_admin=True)
    return admin, await user_headers(runtime, admin, SCOPE_ADMIN)


async def _demote(session: AsyncSession, user_id: uuid.UUID) -> None:
    await update_user(session, SYSTEM, user_id, name=None, is_admin=False)


async def _disable(session: AsyncSession, user_id: uuid.UUID) -> None:
    await disable_user(session, SYSTEM, user_id, "left the company", utcnow())


TAKING_STAFF: dict[str, Callable[[AsyncSession, uuid.UUID], Awaitable[None]]] = {
    "demoted": _demote,
    "disabled": _disable,
}


def _taking_over_api(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, user_id: uuid.UUID
) -> Awaitable[httpx.Response]:
    """Another administrator's demotion or disable of the user, through the API."""
    if name == "demoted":
        return client.patch(f"/api/v1/users/{user_id}", json={"is_admin": False}, headers=headers)
    return client.post(
        f"/api/v1/users/{user_id}/disable", json={"reason": "left the company"}, headers=headers
    )


async def _create_account(
    client: httpx.AsyncClient, headers: dict[str, str], owner: User, name: str
) -> httpx.Response:
    return await client.post(
        "/api/v1/accounts", json={"name": name, "owner_user_id": str(owner.id)}, headers=headers
    )


async def _accounts_named(runtime: Runtime, name: str) -> int:
    async with runtime.db.transaction() as session:
        found = await session.scalar(
            select(func.count()).select_from(Account).where(Account.name == name)
        )
    return int(found or 0)


async def _administrators(runtime: Runtime, *users: User) -> set[uuid.UUID]:
    """Which of ``users`` are still administrators who can act."""
    async with runtime.db.transaction() as session:
        found = await session.scalars(
            select(User.id).where(
                User.id.in_([u.id for u in users]),
                User.is_admin.is_(True),
                User.disabled.is_(False),
            )
        )
        return set(found)


@pytest.mark.parametrize("name", TAKING_STAFF)
async def test_a_staff_change_arriving_while_its_author_loses_staff_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, name: str
) -> None:
    await _administrator(runtime)  # the one who stays
    admin, headers = await _administrator(runtime)
    owner = await make_user(runtime)
    account_name = f"Acme {uuid.uuid4().hex[:8]}"
    async with runtime.db.transaction() as session:
        await TAKING_STAFF[name](session, admin.id)
        creating = asyncio.create_task(_create_account(client, headers, owner, account_name))
        await until_waiting_or_done(runtime, creating)
    answer = await creating
    assert answer.status_code == 403, answer.text
    assert await _accounts_named(runtime, account_name) == 0


@pytest.mark.parametrize("name", TAKING_STAFF)
async def test_losing_staff_waits_for_a_staff_change_in_progress(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The administrator's change has been judged by their flag when another administrator
    takes it: that must not commit before the change does, or the change would land after."""
    _, other_headers = await _administrator(runtime)
    admin, headers = await _administrator(runtime)
    owner = await make_user(runtime)
    account_name = f"Acme {uuid.uuid4().hex[:8]}"
    real_create = customer_accounts.create_account
    taking: list[asyncio.Task[httpx.Response]] = []
    committed_in_between: list[bool] = []

    async def create_while_staff_is_taken(*args: Any, **kwargs: Any) -> Any:
        taking.append(asyncio.create_task(_taking_over_api(client, other_headers, name, admin.id)))
        await until_waiting_or_done(runtime, taking[0])
        committed_in_between.append(taking[0].done())
        return await real_create(*args, **kwargs)

    monkeypatch.setattr(customer_accounts, "create_account", create_while_staff_is_taken)
    created = await _create_account(client, headers, owner, account_name)
    assert committed_in_between == [False]
    assert created.status_code == 201, created.text
    taken = await taking[0]
    assert taken.status_code == 200, taken.text
    assert await _accounts_named(runtime, account_name) == 1


async def _at_once(
    runtime: Runtime, calls: list[Awaitable[httpx.Response]]
) -> list[httpx.Response]:
    """``calls`` let go together: each waits behind the administrators' lock held here
    until all have come that far (on SQLite, behind the write lock, for half a second)."""
    async with runtime.db.transaction() as session:
        await lock_administrators(session)
        everyone = asyncio.ensure_future(asyncio.gather(*calls))
        await until_waiting_or_done(runtime, everyone, table=None, waiters=len(calls))
    return list(await everyone)


@pytest.mark.parametrize("name", TAKING_STAFF)
async def test_two_administrators_taking_each_others_staff_at_once_leave_one(
    client: httpx.AsyncClient, runtime: Runtime, name: str
) -> None:
    await _administrator(runtime)  # so that neither is the last
    first, first_headers = await _administrator(runtime)
    second, second_headers = await _administrator(runtime)

    answers = await _at_once(
        runtime,
        [
            _taking_over_api(client, first_headers, name, second.id),
            _taking_over_api(client, second_headers, name, first.id),
        ],
    )

    assert Counter(a.status_code for a in answers) == {200: 1, 403: 1}, [a.text for a in answers]
    kept = first if answers[0].status_code == 200 else second
    assert await _administrators(runtime, first, second) == {kept.id}


@pytest.mark.parametrize("name", TAKING_STAFF)
async def test_two_administrators_taking_others_staff_at_once_both_succeed(
    client: httpx.AsyncClient, runtime: Runtime, name: str
) -> None:
    first, first_headers = await _administrator(runtime)
    second, second_headers = await _administrator(runtime)
    first_target, second_target = [await make_user(runtime, is_admin=True) for _ in range(2)]

    answers = await _at_once(
        runtime,
        [
            _taking_over_api(client, first_headers, name, first_target.id),
            _taking_over_api(client, second_headers, name, second_target.id),
        ],
    )

    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert await _administrators(runtime, first, second) == {first.id, second.id}


async def _updated_at(runtime: Runtime, *users: User) -> dict[uuid.UUID, Any]:
    async with runtime.db.transaction() as session:
        rows = await session.execute(
            select(User.id, User.updated_at).where(User.id.in_([u.id for u in users]))
        )
        return {user_id: at for user_id, at in rows}


async def test_staff_changes_leave_the_administrators_updated_at_alone(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The locks a staff change takes on administrators' rows change nothing in them: their
    ``updated_at`` (the ID token's claim) moves only when their own details do."""
    other = await make_user(runtime, is_admin=True)
    admin, headers = await _administrator(runtime)
    owner = await make_user(runtime)
    before = await _updated_at(runtime, admin, other)

    created = await _create_account(client, headers, owner, f"Acme {uuid.uuid4().hex[:8]}")
    assert created.status_code == 201, created.text
    renamed = await client.patch(
        f"/api/v1/users/{owner.id}", json={"name": "Renamed"}, headers=headers
    )
    assert renamed.status_code == 200, renamed.text

    assert await _updated_at(runtime, admin, other) == before


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="row locks: PostgreSQL (.ci/run)")
async def test_a_staff_change_in_progress_holds_up_none_of_its_authors_member_changes(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The acting administrator's own row is held FOR KEY SHARE: what their member changes
    elsewhere take on it (``hold_user``, FOR SHARE) goes on beside the staff change in
    progress. An exclusive hold made each wait for the other."""
    admin, headers = await _administrator(runtime)
    owner = await make_user(runtime)
    real_create = customer_accounts.create_account
    acting: list[asyncio.Task[None]] = []
    beside: list[bool] = []

    async def member_change() -> None:
        async with runtime.db.transaction() as session:
            await hold_user(session, admin.id)

    async def create_while_its_author_acts_as_member(*args: Any, **kwargs: Any) -> Any:
        acting.append(asyncio.create_task(member_change()))
        await until_waiting_or_done(runtime, acting[0])
        beside.append(acting[0].done())
        return await real_create(*args, **kwargs)

    monkeypatch.setattr(customer_accounts, "create_account", create_while_its_author_acts_as_member)
    created = await _create_account(client, headers, owner, f"Acme {uuid.uuid4().hex[:8]}")
    await acting[0]
    assert created.status_code == 201, created.text
    assert beside == [True]


@pytest.mark.skipif(TEST_DATABASE_URL is None, reason="row locks: PostgreSQL (.ci/run)")
async def test_a_staff_change_waiting_behind_an_administrators_member_change_meets_no_deadlock(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Administrator A renames an account with their staff token while its owner, also an
    administrator, changes it as its member (the hosted pages, an invitation they sent being
    accepted: ``hold_member_rights``), and B demotes A. When the administrators' lock was a
    write of every administrator's row, the member change, holding the account, waited for
    the owner's row; A waited for the account; B's demotion waited for A's row: a deadlock."""
    await _administrator(runtime)  # so that A is not the last
    admin, headers = await _administrator(runtime)
    owner = await make_user(runtime, is_admin=True)
    account = await make_account(runtime, owner)

    async def member_change() -> None:
        async with runtime.db.transaction() as session:
            await hold_member_rights(session, account.id, owner.id)

    async with runtime.db.transaction() as demotion:
        await lock_administrators(demotion)  # B's demotion of A, under way
        changing = asyncio.create_task(member_change())
        await until_waiting_or_done(runtime, changing)
        renaming = asyncio.ensure_future(
            client.patch(f"/api/v1/accounts/{account.id}", json={"name": "X"}, headers=headers)
        )
        await until_waiting_or_done(runtime, renaming, table="accounts", waiters=2)
        await hold_for_demotion(demotion, admin.id)
    await changing
    renamed = await renaming
    assert renamed.status_code in (200, 403), renamed.text
