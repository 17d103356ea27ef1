"""Staff edit a user: PATCH /api/v1/users/{id} changes the name and the administrator flag,
audited with what changed, never leaving the service without an administrator."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import func, select

from identity.accounts.models import User
from identity.accounts.service import update_user
from identity.audit.models import AuditEvent
from identity.audit.service import Actor
from identity.errors import Conflict
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    make_user,
    problem_fields,
    staff_headers,
    user_headers,
)

STAFF_SCOPE = "identity:admin"


async def _patch(
    client: httpx.AsyncClient, user_id: object, headers: dict[str, str], **body: object
) -> httpx.Response:
    return await client.patch(f"/api/v1/users/{user_id}", json=body, headers=headers)


async def _updates(runtime: Runtime) -> list[AuditEvent]:
    async with runtime.db.transaction() as session:
        statement = select(AuditEvent).where(AuditEvent.action == "user.updated")
        return list((await session.scalars(statement.order_by(AuditEvent.id))).all())


async def _admins(runtime: Runtime) -> int:
    async with runtime.db.transaction() as session:
        return int(await session.scalar(select(func.count()).where(User.is_admin)) or 0)


async def test_a_rename_and_a_promotion_are_audited_with_the_old_and_new_values(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await make_user(runtime, name="Ana")
    admin = await make_user(runtime, is_admin=True)
    headers = await user_headers(runtime, admin, STAFF_SCOPE)

    renamed = await _patch(client, user.id, headers, name="  Ana Pérez ")
    promoted = await _patch(client, user.id, headers, name="Ana Pérez", is_admin=True)

    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Ana Pérez" and renamed.json()["is_admin"] is False
    assert promoted.status_code == 200 and promoted.json()["is_admin"] is True
    first, second = await _updates(runtime)
    assert first.actor_user_id == admin.id
    assert (first.target_type, first.target_id) == ("user", str(user.id))
    assert (first.details["old"], first.details["new"]) == ({"name": "Ana"}, {"name": "Ana Pérez"})
    assert (second.details["old"], second.details["new"]) == (
        {"is_admin": False},
        {"is_admin": True},
    )


async def test_a_change_to_nothing_new_records_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await make_user(runtime, name="Ana")
    headers = await staff_headers(runtime)
    for body in ({}, {"name": "Ana"}, {"name": " Ana "}, {"is_admin": False}):
        same = await _patch(client, user.id, headers, **body)
        assert same.status_code == 200, (body, same.text)
        assert same.json()["name"] == "Ana"
    assert await _updates(runtime) == []


async def test_bad_input_and_unknown_users_are_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await make_user(runtime, name="Ana")
    headers = await staff_headers(runtime)
    for name in ("Ana\nAdmin", "\u202eAna", "x" * 201):
        refused = await _patch(client, user.id, headers, name=name)
        assert refused.status_code in (400, 422), refused.text
        assert "name" in problem_fields(refused.json()), refused.text
    assert (await _patch(client, user.id, headers, name="Ana\nAdmin")).status_code == 422
    assert (await _patch(client, user.id, headers, email="x@example.com")).status_code == 400
    assert (await _patch(client, user.id, headers, is_admin="yes")).status_code == 400
    assert (await _patch(client, uuid.uuid4(), headers, name="Nobody")).status_code == 404
    assert await _updates(runtime) == []


async def test_only_staff_edit_users(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await make_user(runtime, name="Ana")
    assert (await _patch(client, user.id, {}, is_admin=True)).status_code == 401
    itself = await _patch(client, user.id, await user_headers(runtime, user), is_admin=True)
    assert itself.status_code == 403
    assert await _admins(runtime) == 0


async def test_an_administrator_may_step_down_while_another_remains(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    me, other = await make_user(runtime, is_admin=True), await make_user(runtime, is_admin=True)
    headers = await user_headers(runtime, me, STAFF_SCOPE)
    stepped_down = await _patch(client, me.id, headers, is_admin=False)
    assert stepped_down.status_code == 200 and stepped_down.json()["is_admin"] is False
    # Their token's staff right ended with the flag, and the last one stays.
    assert (await _patch(client, other.id, headers, name="Bo")).status_code == 403
    last = await _patch(
        client, other.id, await user_headers(runtime, other, STAFF_SCOPE), is_admin=False
    )
    assert last.status_code == 409, last.text
    assert "administrator" in last.json()["detail"]
    assert await _admins(runtime) == 1


async def test_a_disabled_administrator_does_not_count_as_the_one_that_remains(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    me = await make_user(runtime, is_admin=True)
    dormant = await make_user(runtime, is_admin=True)
    headers = await user_headers(runtime, me, STAFF_SCOPE)
    disabled = await client.post(
        f"/api/v1/users/{dormant.id}/disable", json={"reason": "Left"}, headers=headers
    )
    assert disabled.status_code == 200
    assert (await _patch(client, me.id, headers, is_admin=False)).status_code == 409


async def _demote(runtime: Runtime, by: User, whom: User) -> None:
    async with runtime.db.transaction() as session:
        await update_user(session, Actor(by.id), whom.id, name=None, is_admin=False)


async def test_two_administrators_demoting_each_other_at_once_leave_one(
    runtime: Runtime,
) -> None:
    first = await make_user(runtime, is_admin=True)
    second = await make_user(runtime, is_admin=True)
    results = await asyncio.gather(
        _demote(runtime, first, second), _demote(runtime, second, first), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], Conflict), results
    assert await _admins(runtime) == 1


async def test_administrators_demoted_all_at_once_through_the_api_leave_one(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    admins = [await make_user(runtime, is_admin=True) for _ in range(4)]
    headers = [await user_headers(runtime, a, STAFF_SCOPE) for a in admins]
    # Open the pool's connections first, or opening them would space the requests out.
    await asyncio.gather(*(client.get("/api/v1/users", headers=h) for h in headers))
    answers = await asyncio.gather(
        *(_patch(client, a.id, h, is_admin=False) for a, h in zip(admins, headers, strict=True))
    )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 409]
    assert await _admins(runtime) == 1
    assert len(await _updates(runtime)) == 3
