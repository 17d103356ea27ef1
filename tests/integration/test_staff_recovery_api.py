"""Staff recovery through the admin API: second-factor reset and assisted email change."""

from __future__ import annotations

import httpx
import pyotp
import pytest
from sqlalchemy import select

from identity.accounts.models import PasswordResetToken, User
from identity.audit.models import AuditEvent
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.mail.models import OutgoingEmail
from identity.mfa.service import SecondFactor
from identity.runtime import Runtime
from tests.integration.account_helpers import problem_fields, staff_headers
from tests.integration.oauth_helpers import make_user
from tests.integration.page_helpers import mail_to
from tests.integration.recovery_helpers import new_user


async def _enrolled_user(runtime: Runtime) -> User:
    user = await make_user(runtime, email="lost-phone@example.com")
    second_factor = SecondFactor.from_runtime(runtime)
    async with runtime.db.transaction() as session:
        enrolment = await second_factor.begin_enrolment(session, user, utcnow())
    async with runtime.db.transaction() as session:
        code = pyotp.TOTP(enrolment.secret).now()
        await second_factor.confirm_enrolment(session, Actor(user.id), user.id, code, utcnow())
    return user


async def test_staff_reset_of_a_second_factor_is_audited_with_its_reason(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await _enrolled_user(runtime)
    response = await client.post(
        f"/api/v1/users/{user.id}/second-factor/reset",
        json={"reason": "Identity checked by phone, ticket 4411"},
        headers=await staff_headers(runtime),
    )
    assert response.status_code == 204, response.text
    async with runtime.db.transaction() as session:
        assert not await SecondFactor.from_runtime(runtime).is_enrolled(session, user.id)
        event = await session.scalar(
            select(AuditEvent).where(AuditEvent.action == "user.second_factor_reset")
        )
    assert event is not None
    assert event.target_id == str(user.id)
    assert event.details["reason"] == "Identity checked by phone, ticket 4411"


async def test_a_reset_without_a_reason_is_refused_naming_the_field(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await _enrolled_user(runtime)
    response = await client.post(
        f"/api/v1/users/{user.id}/second-factor/reset",
        json={},
        headers=await staff_headers(runtime),
    )
    assert response.status_code == 400
    assert "reason" in problem_fields(response.json())


async def test_assisted_email_change_moves_the_sign_in_and_tells_both_addresses(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await new_user(runtime, "old-mailbox@example.com")
    response = await client.post(
        f"/api/v1/users/{user.id}/email",
        json={"email": "New-Mailbox@Example.com", "reason": "Lost access to old mailbox"},
        headers=await staff_headers(runtime),
    )
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "new-mailbox@example.com"
    async with runtime.db.transaction() as session:
        recipients = set((await session.scalars(select(OutgoingEmail.to_address))).all())
        event = await session.scalar(
            select(AuditEvent).where(AuditEvent.action == "user.email_changed_by_staff")
        )
    assert {"old-mailbox@example.com", "new-mailbox@example.com"} <= recipients
    assert event is not None and event.details["reason"] == "Lost access to old mailbox"
    # As after a change the user confirmed: the holder of the old address, if not the
    # customer, learns where the account went and can tell support.
    [notice] = await mail_to(runtime, "old-mailbox@example.com")
    assert "new-mailbox@example.com" in notice.text_body


async def test_a_user_with_no_password_yet_is_moved_without_a_word_to_the_old_address(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Staff fixing a typo in the address of a user who never chose a password: the old
    # address, often a stranger's, never had a way in, and a notice would hand it the
    # customer's real address. Keycloak and Ory mail nobody on an administrator's change.
    typo, fixed = "ana@exmaple.com", "ana@example.com"
    user = await make_user(runtime, email=typo)
    moved = await client.post(
        f"/api/v1/users/{user.id}/email",
        json={"email": fixed, "reason": "Typo in the address"},
        headers=await staff_headers(runtime),
    )
    assert moved.status_code == 200, moved.text
    assert await mail_to(runtime, typo) == []
    assert sorted(m.subject for m in await mail_to(runtime, fixed)) == [
        "The sign-in email of your Identity account was changed",
        "Your Identity account is ready: choose your password",
    ]


async def test_a_move_to_a_taken_or_the_same_address_is_refused_naming_the_field(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # A staff console shows the refusal beside the field, as for creating a user.
    await make_user(runtime, email="josé@example.com")
    user = await make_user(runtime, email="moving@example.com")
    headers = await staff_headers(runtime)
    url = f"/api/v1/users/{user.id}/email"
    for email, status in (
        ("JOSÉ@Example.com", 409),
        ("jose\u0301@example.com", 409),  # the same address, decomposed (NFD)
        ("Moving@example.com", 422),
    ):
        response = await client.post(url, json={"email": email, "reason": "lost"}, headers=headers)
        assert response.status_code == status, response.text
        assert problem_fields(response.json()) == {"email"}, response.text
    assert (await client.get(f"/api/v1/users/{user.id}", headers=headers)).json()["email"] == (
        "moving@example.com"
    )


@pytest.mark.parametrize("has_password", [True, False], ids=["password", "no-password"])
async def test_a_disabled_user_moved_to_a_new_address_gets_no_link_there(
    client: httpx.AsyncClient, runtime: Runtime, has_password: bool
) -> None:
    # A disabled user can neither sign in nor reset: a link would tell the new address about
    # an account it cannot use, and would work once staff enabled the user again.
    old, new = "switched-off@example.com", "moved@example.com"
    user = await (new_user(runtime, old) if has_password else make_user(runtime, email=old))
    headers = await staff_headers(runtime)
    disabled = await client.post(
        f"/api/v1/users/{user.id}/disable", json={"reason": "Left the company"}, headers=headers
    )
    assert disabled.status_code == 200, disabled.text
    moved = await client.post(
        f"/api/v1/users/{user.id}/email",
        json={"email": new, "reason": "Ticket 5120: old mailbox closed"},
        headers=headers,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["email"] == new and moved.json()["disabled"] is True
    assert [m.subject for m in await mail_to(runtime, new)] == [
        "The sign-in email of your Identity account was changed"
    ]
    async with runtime.db.transaction() as session:
        links = await session.scalars(
            select(PasswordResetToken).where(PasswordResetToken.user_id == user.id)
        )
        assert links.all() == []
        event = await session.scalar(
            select(AuditEvent).where(AuditEvent.action == "user.email_changed_by_staff")
        )
    assert event is not None and event.details["new"] == new
