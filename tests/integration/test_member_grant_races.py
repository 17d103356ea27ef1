"""Two managers editing one member's grants at once: every request gets a clean answer, no
grant is stored twice, and the audit log tells the edits in an unbroken chain."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import select

from identity.audit.models import AuditEvent
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    account_with_member,
    effective,
    staff_headers,
)

BURST = 10


async def _grant_changes(runtime: Runtime) -> list[AuditEvent]:
    async with runtime.db.transaction() as session:
        found = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "member.grants_changed")
            .order_by(AuditEvent.id)
        )
        return list(found)


async def test_granting_one_permission_many_times_at_once_answers_each(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, member, account = await account_with_member(runtime, ["tickets"])
    headers = await staff_headers(runtime)
    url = f"/api/v1/accounts/{account.id}/members/{member.id}/permissions"

    # "tickets" is held already (replacing its expiry), "invoices" is new.
    responses = await asyncio.gather(
        *(
            client.post(url, json={"name": ("tickets", "invoices")[i % 2]}, headers=headers)
            for i in range(BURST)
        )
    )

    assert Counter(r.status_code for r in responses) == {201: BURST}, [
        r.text for r in responses if r.status_code != 201
    ]
    assert await effective(runtime, member, account) == {"tickets", "invoices"}


async def test_giving_one_role_many_times_at_once_answers_each(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, member, account = await account_with_member(runtime)
    headers = await staff_headers(runtime)
    base = f"/api/v1/accounts/{account.id}"
    role = await client.post(
        f"{base}/roles", json={"name": "Helpdesk", "permissions": ["tickets"]}, headers=headers
    )
    assert role.status_code == 201, role.text

    responses = await asyncio.gather(
        *(
            client.post(
                f"{base}/members/{member.id}/roles",
                json={"role_id": role.json()["id"]},
                headers=headers,
            )
            for _ in range(BURST)
        )
    )

    assert Counter(r.status_code for r in responses) == {201: BURST}
    assert await effective(runtime, member, account) == {"tickets"}


async def test_concurrent_edits_of_a_member_each_see_the_one_before(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, member, account = await account_with_member(runtime, ["tickets"])
    headers = await staff_headers(runtime)
    url = f"/api/v1/accounts/{account.id}/members/{member.id}"
    choices = ("quotes", "orders", "domains")

    responses = await asyncio.gather(
        *(
            client.patch(
                url,
                json={"permissions": [{"name": "tickets"}, {"name": choices[i % 3]}]},
                headers=headers,
            )
            for i in range(BURST)
        )
    )

    assert Counter(r.status_code for r in responses) == {200: BURST}
    changes = await _grant_changes(runtime)
    # An edit that found the member as it would leave them changed nothing, and is not
    # recorded; at least the first changed something.
    assert 1 <= len(changes) <= BURST
    # Each edit replaced what the previous one stored: no edit's "old" is a state that
    # another edit overwrote unseen, and the last "new" is what is stored now.
    for before, after in itertools.pairwise(changes):
        assert _names(after.details["old"]) == _names(before.details["new"])
    assert await effective(runtime, member, account) == _names(changes[-1].details["new"])


def _names(record: dict[str, Any]) -> set[str]:
    return {grant["name"] for grant in record["permissions"]}
