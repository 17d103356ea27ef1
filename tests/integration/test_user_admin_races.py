"""Staff acting on one user from two places at once: each change takes effect once, with
one audit entry and one event for consumers."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import httpx
from sqlalchemy import func, select

from identity.audit.models import AuditEvent
from identity.runtime import Runtime
from identity.webhooks.models import WebhookEvent
from tests.integration.account_helpers import make_user, staff_headers

BURST = 10


async def _count(runtime: Runtime, statement: object) -> int:
    async with runtime.db.transaction() as session:
        return int(await session.scalar(statement) or 0)  # type: ignore[call-overload]


async def test_a_user_disabled_many_times_at_once_is_disabled_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await make_user(runtime)
    headers = await staff_headers(runtime)
    url = f"/api/v1/users/{user.id}/disable"
    # Open the pool's connections first, or opening them would space the requests out.
    await asyncio.gather(
        *(client.get(f"/api/v1/users/{user.id}", headers=headers) for _ in range(BURST))
    )

    responses = await asyncio.gather(
        *(client.post(url, json={"reason": "fraud report"}, headers=headers) for _ in range(BURST))
    )

    assert Counter(r.status_code for r in responses) == {200: BURST}
    assert all(r.json()["disabled"] for r in responses)
    audited = (
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "user.disabled")
    )
    assert await _count(runtime, audited) == 1
    told = (
        select(func.count()).select_from(WebhookEvent).where(WebhookEvent.type == "user.disabled")
    )
    assert await _count(runtime, told) == 1


async def test_a_user_enabled_many_times_at_once_is_enabled_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await make_user(runtime)
    headers = await staff_headers(runtime)
    disabled = await client.post(
        f"/api/v1/users/{user.id}/disable", json={"reason": "fraud report"}, headers=headers
    )
    assert disabled.status_code == 200
    url = f"/api/v1/users/{user.id}/enable"
    await asyncio.gather(
        *(client.get(f"/api/v1/users/{user.id}", headers=headers) for _ in range(BURST))
    )

    responses = await asyncio.gather(
        *(client.post(url, json={"reason": "cleared"}, headers=headers) for _ in range(BURST))
    )

    assert Counter(r.status_code for r in responses) == {200: BURST}
    assert not any(r.json()["disabled"] for r in responses)
    audited = (
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "user.enabled")
    )
    assert await _count(runtime, audited) == 1
    told = select(func.count()).select_from(WebhookEvent).where(WebhookEvent.type == "user.enabled")
    assert await _count(runtime, told) == 1


async def test_a_user_moved_to_several_addresses_at_once_has_each_move_audited_from_the_last(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await make_user(runtime)
    headers = await staff_headers(runtime)
    url = f"/api/v1/users/{user.id}/email"
    reads = (client.get(f"/api/v1/users/{user.id}", headers=headers) for _ in range(BURST))
    await asyncio.gather(*reads)

    responses = await asyncio.gather(
        *(
            client.post(
                url,
                json={"email": f"new-{i}@example.com", "reason": "lost mailbox"},
                headers=headers,
            )
            for i in range(BURST)
        )
    )

    assert Counter(r.status_code for r in responses) == {200: BURST}
    async with runtime.db.transaction() as session:
        moves = list(
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "user.email_changed_by_staff")
                .order_by(AuditEvent.id)
            )
        )
    assert moves[0].details["old"] == user.email
    for before, after in itertools.pairwise(moves):
        assert after.details["old"] == before.details["new"]
    current = await client.get(f"/api/v1/users/{user.id}", headers=headers)
    assert current.json()["email"] == moves[-1].details["new"]
