"""Two edits of one role at once: clean answers and an unbroken audit chain."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import httpx
from sqlalchemy import select

from identity.audit.models import AuditEvent
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    make_account,
    make_user,
    staff_headers,
)

BURST = 10


async def _role(client: httpx.AsyncClient, base: str, headers: dict[str, str]) -> str:
    created = await client.post(
        f"{base}/roles", json={"name": "Helpdesk", "permissions": ["tickets"]}, headers=headers
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_concurrent_edits_of_one_role_each_see_the_one_before(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    headers = await staff_headers(runtime)
    base = f"/api/v1/accounts/{account.id}"
    role_id = await _role(client, base, headers)
    choices = ("quotes", "orders", "domains")

    responses = await asyncio.gather(
        *(
            client.patch(
                f"{base}/roles/{role_id}",
                json={"permissions": ["tickets", choices[i % 3]]},
                headers=headers,
            )
            for i in range(BURST)
        )
    )

    assert Counter(r.status_code for r in responses) == {200: BURST}, [
        r.text for r in responses if r.status_code != 200
    ]
    async with runtime.db.transaction() as session:
        updates = list(
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "role.updated")
                .order_by(AuditEvent.id)
            )
        )
    assert len(updates) == BURST
    for before, after in itertools.pairwise(updates):
        assert after.details["old"]["permissions"] == before.details["new"]["permissions"]
    current = await client.get(f"{base}/roles/{role_id}", headers=headers)
    assert current.json()["permissions"] == updates[-1].details["new"]["permissions"]
