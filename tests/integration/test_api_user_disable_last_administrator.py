"""Staff disable a user: POST /api/v1/users/{id}/disable never switches off the last enabled
administrator, by the rule and the lock that keep PATCH from taking the last one's flag."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from identity.accounts.models import User
from identity.accounts.service import disable_user
from identity.audit.models import AuditEvent
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.errors import Conflict
from identity.runtime import Runtime
from identity.web.problems import PROBLEM_JSON
from identity.webhooks.models import WebhookEvent
from tests.integration.account_helpers import bearer, make_user, mint, user_headers

STAFF_SCOPE = "identity:admin"


async def _disable(
    client: httpx.AsyncClient, user: User, headers: dict[str, str]
) -> httpx.Response:
    return await client.post(
        f"/api/v1/users/{user.id}/disable", json={"reason": "Left the company"}, headers=headers
    )


async def _console_headers(runtime: Runtime) -> dict[str, str]:
    """A staff console acting for itself: its token stays good whichever users are disabled."""
    return bearer(await mint(runtime, sub="console", scope=STAFF_SCOPE, client_id="console"))


async def _count(runtime: Runtime, statement: object) -> int:
    async with runtime.db.transaction() as session:
        return int(await session.scalar(statement) or 0)  # type: ignore[call-overload]


async def _enabled_admins(runtime: Runtime) -> int:
    return await _count(
        runtime, select(func.count()).where(User.is_admin, User.disabled.is_(False))
    )


async def test_the_last_enabled_administrator_cannot_be_disabled(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    me = await make_user(runtime, is_admin=True)
    headers = await user_headers(runtime, me, STAFF_SCOPE)

    refused = await _disable(client, me, headers)
    by_a_console = await _disable(client, me, await _console_headers(runtime))

    for answer in (refused, by_a_console):
        assert answer.status_code == 409, answer.text
        assert answer.headers["content-type"] == PROBLEM_JSON
        assert "at least one administrator" in answer.json()["detail"]
    assert await _enabled_admins(runtime) == 1
    # Nothing of the disable happened: no audit entry, no event for consumers.
    audited = select(func.count()).where(AuditEvent.action == "user.disabled")
    told = select(func.count()).where(WebhookEvent.type == "user.disabled")
    assert (await _count(runtime, audited), await _count(runtime, told)) == (0, 0)
    assert (await client.get("/api/v1/users", headers=headers)).status_code == 200


async def test_an_administrator_is_disabled_while_another_enabled_one_remains(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    me, other = await make_user(runtime, is_admin=True), await make_user(runtime, is_admin=True)
    headers = await user_headers(runtime, me, STAFF_SCOPE)

    disabled = await _disable(client, other, headers)

    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["disabled"] is True and disabled.json()["is_admin"] is True
    # The disabled one no longer counts: I am now the last, and a second disable of them,
    # which changes nothing, is no refusal.
    assert (await _disable(client, me, headers)).status_code == 409
    assert (await _disable(client, other, headers)).status_code == 200
    assert await _enabled_admins(runtime) == 1


async def _disable_as(runtime: Runtime, by: User, whom: User) -> None:
    async with runtime.db.transaction() as session:
        await disable_user(session, Actor(by.id), whom.id, "Left the company", utcnow())


async def test_two_administrators_disabling_each_other_at_once_leave_one(
    runtime: Runtime,
) -> None:
    first = await make_user(runtime, is_admin=True)
    second = await make_user(runtime, is_admin=True)
    results = await asyncio.gather(
        _disable_as(runtime, first, second),
        _disable_as(runtime, second, first),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], Conflict), results
    assert await _enabled_admins(runtime) == 1


async def test_administrators_disabled_all_at_once_through_the_api_leave_one(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    admins = [await make_user(runtime, is_admin=True) for _ in range(4)]
    headers = await _console_headers(runtime)
    # Open the pool's connections first, or opening them would space the requests out.
    await asyncio.gather(*(client.get("/api/v1/users", headers=headers) for _ in admins))
    answers = await asyncio.gather(*(_disable(client, admin, headers) for admin in admins))
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 409]
    assert await _enabled_admins(runtime) == 1
    audited = select(func.count()).where(AuditEvent.action == "user.disabled")
    assert await _count(runtime, audited) == 3


async def test_a_demotion_and_a_disable_at_once_leave_one_administrator(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    first = await make_user(runtime, is_admin=True)
    second = await make_user(runtime, is_admin=True)
    headers = await _console_headers(runtime)
    await asyncio.gather(*(client.get("/api/v1/users", headers=headers) for _ in range(2)))
    demoted, disabled = await asyncio.gather(
        client.patch(f"/api/v1/users/{first.id}", json={"is_admin": False}, headers=headers),
        _disable(client, second, headers),
    )
    assert sorted((demoted.status_code, disabled.status_code)) == [200, 409]
    assert await _enabled_admins(runtime) == 1
