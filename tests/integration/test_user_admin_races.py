"""Staff acting on one user from two places at once: each change takes effect once, with
one audit entry and one event for consumers."""

from __future__ import annotations

import asyncio
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
