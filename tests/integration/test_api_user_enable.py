"""Staff enable a disabled user again: POST /api/v1/users/{id}/enable, the mirror of disable."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from identity.accounts.service import authenticate
from identity.audit.models import AuditEvent
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    make_user,
    problem_fields,
    staff_headers,
    user_headers,
)
from tests.integration.page_helpers import link_in, mail_to, notice, post_form
from tests.integration.recovery_helpers import NEW_PASSWORD, PASSWORD, new_user

ANA = "ana@example.com"


async def _post(
    client: httpx.AsyncClient, user_id: object, action: str, headers: dict[str, str], reason: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1/users/{user_id}/{action}", json={"reason": reason}, headers=headers
    )


async def _events(runtime: Runtime, action: str) -> list[AuditEvent]:
    async with runtime.db.transaction() as session:
        statement = select(AuditEvent).where(AuditEvent.action == action)
        return list((await session.scalars(statement)).all())


async def test_an_enabled_user_signs_in_again_and_the_enable_is_audited_with_its_reason(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await new_user(runtime, ANA)
    admin = await make_user(runtime, is_admin=True)
    headers = await user_headers(runtime, admin, "identity:admin")
    assert (await _post(client, user.id, "disable", headers, "Unpaid invoice")).status_code == 200
    assert await authenticate(runtime.db, runtime.passwords, ANA, PASSWORD) is None

    enabled = await _post(client, user.id, "enable", headers, "Invoice paid, ticket 981")

    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["id"] == str(user.id) and enabled.json()["disabled"] is False
    assert await authenticate(runtime.db, runtime.passwords, ANA, PASSWORD) is not None
    (event,) = await _events(runtime, "user.enabled")
    assert event.actor_user_id == admin.id
    assert (event.target_type, event.target_id) == ("user", str(user.id))
    assert event.account_id is None
    assert event.details["reason"] == "Invoice paid, ticket 981"


async def test_enabling_an_enabled_user_changes_nothing_and_records_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await make_user(runtime)
    headers = await staff_headers(runtime)
    assert (await _post(client, user.id, "disable", headers, "Fraud report")).status_code == 200
    first = await _post(client, user.id, "enable", headers, "Cleared")
    again = await _post(client, user.id, "enable", headers, "Cleared twice")
    never_disabled = await make_user(runtime)
    untouched = await _post(client, never_disabled.id, "enable", headers, "Just in case")
    assert (first.status_code, again.status_code, untouched.status_code) == (200, 200, 200)
    assert again.json()["disabled"] is False and untouched.json()["disabled"] is False
    assert [e.details["reason"] for e in await _events(runtime, "user.enabled")] == ["Cleared"]


async def test_an_unknown_user_is_404_and_a_reason_is_required(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await staff_headers(runtime)
    unknown = await _post(client, uuid.uuid4(), "enable", headers, "Who?")
    assert unknown.status_code == 404
    user = await make_user(runtime)
    await _post(client, user.id, "disable", headers, "Fraud report")
    blank = await _post(client, user.id, "enable", headers, "   ")
    assert blank.status_code == 422 and "reason" in problem_fields(blank.json())
    missing = await client.post(f"/api/v1/users/{user.id}/enable", json={}, headers=headers)
    assert missing.status_code == 400 and "reason" in problem_fields(missing.json())
    assert await _events(runtime, "user.enabled") == []


async def test_only_staff_enable_users(client: httpx.AsyncClient, runtime: Runtime) -> None:
    user = await make_user(runtime)
    await _post(client, user.id, "disable", await staff_headers(runtime), "Fraud report")
    assert (await _post(client, user.id, "enable", {}, "Mine")).status_code == 401
    itself = await _post(client, user.id, "enable", await user_headers(runtime, user), "Mine")
    other = await _post(
        client, user.id, "enable", await user_headers(runtime, await make_user(runtime)), "X"
    )
    # A disabled user's own token is refused outright; anyone else's lacks the staff right.
    assert (itself.status_code, other.status_code) == (401, 403)


async def test_a_link_mailed_before_a_disable_stays_dead_after_the_enable(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Staff disable a user whose mailbox may be someone else's (the reason for the disable);
    enabling them again must not revive a link mailed there before, seven days long for a
    user created without a password."""
    headers = await staff_headers(runtime)
    created = await client.post("/api/v1/users", json={"email": ANA}, headers=headers)
    user_id = created.json()["id"]
    (message,) = await mail_to(runtime, ANA)
    link = link_in(message, "/reset-password")
    await _post(client, user_id, "disable", headers, "Wrong mailbox")
    assert (await _post(client, user_id, "enable", headers, "Mailbox checked")).status_code == 200
    form = await client.get(link)
    assert form.status_code == 400 and "has expired, has already been used" in notice(form)
    chosen = await post_form(
        client, form, "/reset-password", password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
    )
    assert chosen.status_code == 400
    assert await authenticate(runtime.db, runtime.passwords, ANA, NEW_PASSWORD) is None
