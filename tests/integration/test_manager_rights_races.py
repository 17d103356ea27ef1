"""A manager's change meeting a change of the rights it is judged by, where those rights come
through a role (of the account, or a template) or hang on the manager's user being enabled:
one waits for the other. A manager's change that arrives while their role loses `users`, or
their user is disabled, is judged by what that left (403); one already judged lands before
the role's change or the disable commits, never after it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User
from identity.accounts.service import disable_user
from identity.clock import utcnow
from identity.permissions import account_roles, members
from identity.permissions.grants import RoleGrant
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


@dataclass(frozen=True, slots=True)
class Team:
    """An account whose manager holds `users` and `tickets` only through a role (the
    account's own, or a template: ``role_account`` None), and a clerk holding nothing."""

    runtime: Runtime
    account: Account
    manager: User
    manager_headers: dict[str, str]
    clerk: User
    role_account: uuid.UUID | None
    role_id: uuid.UUID

    async def delete_role(self, session: AsyncSession) -> None:
        await account_roles.delete_role(session, SYSTEM, self.role_account, self.role_id, utcnow())

    async def narrow_role(self, session: AsyncSession) -> None:
        await account_roles.update_role(
            session,
            SYSTEM,
            self.role_account,
            self.role_id,
            permissions=["tickets"],
            catalogue=self.runtime.catalogue,
            now=utcnow(),
        )

    async def disable_manager(self, session: AsyncSession) -> None:
        await disable_user(session, SYSTEM, self.manager.id, "left the company", utcnow())


Change = Callable[[Team, AsyncSession], Awaitable[None]]

# Each takes `users` from the manager; a role's edit through the account's lock (an account
# role narrowed) is ordered with the manager's change by that lock already. (Whether the
# manager's role is a template matters only to the role's changes.)
TAKING_USERS: dict[str, tuple[bool, Change]] = {
    "account-role-deleted": (False, Team.delete_role),
    "template-narrowed": (True, Team.narrow_role),
    "template-deleted": (True, Team.delete_role),
    "manager-disabled": (False, Team.disable_manager),
}


async def _team(runtime: Runtime, template: bool) -> Team:
    owner, manager, clerk = [await make_user(runtime) for _ in range(3)]
    account = await make_account(runtime, owner)
    role_account = None if template else account.id
    async with runtime.db.transaction() as session:
        view = await account_roles.create_role(
            session,
            SYSTEM,
            role_account,
            name=f"Team leads {uuid.uuid4().hex[:8]}",
            permissions=["users", "tickets"],
            catalogue=runtime.catalogue,
            now=utcnow(),
        )
    await add_member(runtime, account, manager, roles=[RoleGrant(view.role.id)])
    await add_member(runtime, account, clerk)
    headers = await user_headers(runtime, manager)
    return Team(runtime, account, manager, headers, clerk, role_account, view.role.id)


async def _grant_tickets(client: httpx.AsyncClient, team: Team) -> httpx.Response:
    """The manager gives the clerk `tickets`, which they hold through the role."""
    return await client.post(
        f"/api/v1/accounts/{team.account.id}/members/{team.clerk.id}/permissions",
        json={"name": "tickets"},
        headers=team.manager_headers,
    )


def _waits_on(name: str) -> str:
    return "users" if name == "manager-disabled" else "roles"


@pytest.mark.parametrize("name", TAKING_USERS)
async def test_a_managers_edit_meeting_the_loss_of_users_in_progress_is_refused(
    client: httpx.AsyncClient, runtime: Runtime, name: str
) -> None:
    template, change = TAKING_USERS[name]
    team = await _team(runtime, template)
    async with runtime.db.transaction() as session:
        await change(team, session)
        granting = asyncio.create_task(_grant_tickets(client, team))
        await until_waiting_or_done(runtime, granting, _waits_on(name))
    answer = await granting
    assert answer.status_code == 403, answer.text
    assert await effective(runtime, team.clerk, team.account) == frozenset()


@pytest.mark.parametrize("name", TAKING_USERS)
async def test_the_loss_of_users_waits_for_a_managers_edit_in_progress(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The manager's grant has been judged by their rights when `users` is taken from them:
    that change must not commit before the grant does, or the grant would land after it."""
    template, change = TAKING_USERS[name]
    team = await _team(runtime, template)
    real_grant = members.grant_one
    taking: list[asyncio.Task[None]] = []
    committed_in_between: list[bool] = []

    async def take() -> None:
        async with runtime.db.transaction() as session:
            await change(team, session)

    async def grant_while_users_is_taken(*args: Any, **kwargs: Any) -> Any:
        taking.append(asyncio.create_task(take()))
        await until_waiting_or_done(runtime, taking[0], _waits_on(name))
        committed_in_between.append(taking[0].done())
        return await real_grant(*args, **kwargs)

    monkeypatch.setattr(members, "grant_one", grant_while_users_is_taken)
    granted = await _grant_tickets(client, team)
    assert committed_in_between == [False]
    assert granted.status_code == 201, granted.text
    await taking[0]
    assert await effective(runtime, team.clerk, team.account) == {"tickets"}
