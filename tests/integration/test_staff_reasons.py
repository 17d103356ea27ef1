"""The reason staff give for a recovery or for switching a user off or on, which the audit
log keeps and other staff read, is held to the rules of every other text shown to people:
a NUL, a control character (a line break fakes a line of its own in whatever prints the log)
or a text direction override is a 422 naming the field, and nothing is done or recorded."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from identity.audit.models import AuditEvent
from identity.runtime import Runtime
from tests.integration.account_helpers import make_user, problem_fields, staff_headers

REASONS = ["Fraud\x00report", "Fraud\nreport", "\x1b[2J", "Ticket \u202e1144", " " * 3, "x" * 501]
ACTIONS = ["disable", "enable", "second-factor/reset", "email"]


async def _audit_events(runtime: Runtime) -> int:
    async with runtime.db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("reason", REASONS, ids=repr)
async def test_a_reason_that_cannot_be_shown_is_refused_naming_it(
    client: httpx.AsyncClient, runtime: Runtime, action: str, reason: str
) -> None:
    user = await make_user(runtime, email="customer@example.com")
    headers = await staff_headers(runtime)
    before = (await client.get(f"/api/v1/users/{user.id}", headers=headers)).json()
    events = await _audit_events(runtime)

    response = await client.post(
        f"/api/v1/users/{user.id}/{action}",
        json={"reason": reason} | ({"email": "new@example.com"} if action == "email" else {}),
        headers=headers,
    )

    assert response.status_code in (400, 422), response.text
    assert problem_fields(response.json()) == {"reason"}, response.json()
    assert (await client.get(f"/api/v1/users/{user.id}", headers=headers)).json() == before
    assert await _audit_events(runtime) == events


async def test_a_reason_is_kept_trimmed(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await make_user(runtime)
    response = await client.post(
        f"/api/v1/users/{user.id}/disable",
        json={"reason": "  Fraud report, ticket 4411 "},
        headers=await staff_headers(runtime),
    )
    assert response.status_code == 200, response.text
    async with runtime.db.transaction() as session:
        event = await session.scalar(select(AuditEvent).where(AuditEvent.action == "user.disabled"))
    assert event is not None and event.details["reason"] == "Fraud report, ticket 4411"
