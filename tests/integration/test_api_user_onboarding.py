"""Staff onboard a customer through the API: POST /api/v1/users makes a user with no password,
who chooses one with the emailed link (the reset page), then signs in."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from identity.accounts import repository as accounts_repository
from identity.accounts.models import PasswordCredential, PasswordResetToken, User
from identity.accounts.service import authenticate
from identity.audit.models import AuditEvent
from identity.clock import utcnow
from identity.mail.models import OutgoingEmail
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    problem_fields,
    staff_headers,
    user_headers,
)
from tests.integration.oauth_helpers import make_user
from tests.integration.page_helpers import (
    alert,
    link_in,
    mail_to,
    notice,
    post_form,
    sign_in_to_security_page,
    token_of,
)
from tests.integration.recovery_helpers import (
    NEW_PASSWORD,
    PASSWORD,
    forgot,
    new_user,
    reset,
    until_waiting_or_done,
)

ANA = "ana@example.com"
RESET = "/reset-password"
SPENT = "has expired, has already been used"


async def _create(
    client: httpx.AsyncClient, runtime: Runtime, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    return await client.post(
        "/api/v1/users",
        json={"email": ANA} | body,
        headers=headers if headers is not None else await staff_headers(runtime),
    )


async def _welcome(runtime: Runtime, address: str = ANA) -> tuple[OutgoingEmail, str]:
    """The email a created user gets, and the reset page link in it."""
    (message,) = await mail_to(runtime, address)
    return message, link_in(message, RESET)


async def _welcome_expiry(runtime: Runtime) -> str:
    """The end of the newest link, a week after it was made, as its welcome email says it:
    from the link itself, not from the test's clock, which may have passed midnight since."""
    async with runtime.db.transaction() as session:
        newest = select(PasswordResetToken).order_by(PasswordResetToken.created_at.desc())
        token = (await session.scalars(newest.limit(1))).one()
    assert token.expires_at - token.created_at == timedelta(days=7)
    return f"The link works once, until {token.expires_at:%Y-%m-%d %H:%M} UTC."


async def _choose_password(client: httpx.AsyncClient, link: str) -> httpx.Response:
    form = await client.get(link)
    return await post_form(
        client, form, RESET, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
    )


async def test_a_created_user_chooses_a_password_by_the_emailed_link_then_signs_in(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    created = await _create(client, runtime, email="Ana@Example.com", name=" Ana Pérez ")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["email"] == ANA and body["name"] == "Ana Pérez"
    assert body["email_verified"] is True
    assert (body["is_admin"], body["disabled"]) == (False, False)
    async with runtime.db.transaction() as session:
        assert await session.get(PasswordCredential, uuid.UUID(body["id"])) is None

    message, link = await _welcome(runtime)
    assert message.subject == "Your Identity account is ready: choose your password"
    assert "An account was created for you at Identity" in message.text_body
    assert await _welcome_expiry(runtime) in message.text_body
    assert f"{link}&ui_locales=en" in message.text_body

    chosen = await _choose_password(client, link)
    assert chosen.status_code == 200, chosen.text
    assert "Password changed" in chosen.text
    page = await sign_in_to_security_page(client, ANA, NEW_PASSWORD)
    assert ANA in page.text


async def test_choosing_the_first_password_sends_no_password_changed_notice(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Nothing was changed: the welcome email is the only one, where a notice saying the
    password was changed would alarm a new customer. A later reset still sends it."""
    assert (await _create(client, runtime)).status_code == 201
    welcome, link = await _welcome(runtime)
    assert (await _choose_password(client, link)).status_code == 200
    assert [m.id for m in await mail_to(runtime, ANA)] == [welcome.id]

    assert (await forgot(client, ANA)).status_code == 202
    *_, forgot_message = await mail_to(runtime, ANA)
    assert (
        await reset(client, token_of(link_in(forgot_message, RESET)), PASSWORD)
    ).status_code == 204
    subjects = [m.subject for m in await mail_to(runtime, ANA)]
    assert subjects[-1] == "Your Identity password was changed", subjects


async def test_before_choosing_a_password_signing_in_fails_as_a_wrong_password_does(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    assert (await _create(client, runtime)).status_code == 201
    assert await authenticate(runtime.db, runtime.passwords, ANA, "") is None
    assert await authenticate(runtime.db, runtime.passwords, ANA, PASSWORD) is None
    await new_user(runtime, "bob@example.com")

    async def attempt(email: str) -> httpx.Response:
        login = await client.get((await client.get("/account/security")).headers["location"])
        return await post_form(client, login, "/login", email=email, password=PASSWORD + "x")

    passwordless, wrong = await attempt(ANA), await attempt("bob@example.com")
    assert passwordless.status_code == wrong.status_code
    assert alert(passwordless) == alert(wrong)


async def test_creation_is_audited_with_the_staff_member_as_actor(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    admin = await make_user(runtime, is_admin=True)
    headers = await user_headers(runtime, admin, "identity:admin")
    created = await _create(client, runtime, headers, name="Ana", is_admin=True, locale="es")
    assert created.status_code == 201, created.text
    async with runtime.db.transaction() as session:
        event = await session.scalar(select(AuditEvent).where(AuditEvent.action == "user.created"))
        user = await session.get(User, uuid.UUID(created.json()["id"]))
    assert event is not None and user is not None
    assert event.actor_user_id == admin.id
    assert (event.target_type, event.target_id) == ("user", str(user.id))
    assert event.details["new"] == {"email": ANA, "name": "Ana", "is_admin": True}
    assert "command_line" not in event.details
    assert user.is_admin and user.locale == "es"


async def test_an_email_taken_in_any_case_is_a_conflict_naming_the_field(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    taken = await _create(client, runtime, email="ANA@example.COM")
    assert taken.status_code == 409, taken.text
    assert taken.headers["content-type"].startswith("application/problem+json")
    assert "email" in problem_fields(taken.json())
    async with runtime.db.transaction() as session:
        assert await session.scalar(select(AuditEvent.id)) is None
        assert await session.scalar(select(OutgoingEmail.id)) is None


async def test_an_invalid_email_or_name_is_refused_naming_the_field(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await staff_headers(runtime)
    for body, field in (
        ({"email": "not an address"}, "email"),
        ({"email": "ana@localhost"}, "email"),
        ({"name": "Ana\nAdmin"}, "name"),
        ({"name": "\u202eAna"}, "name"),
    ):
        refused = await _create(client, runtime, headers, **body)
        assert refused.status_code == 422, (body, refused.text)
        assert field in problem_fields(refused.json()), refused.text
    unknown_field = await _create(client, runtime, headers, password=PASSWORD)
    assert unknown_field.status_code == 400
    async with runtime.db.transaction() as session:
        assert await session.scalar(select(User.id).where(User.email.like("ana%"))) is None


async def test_only_staff_create_users(client: httpx.AsyncClient, runtime: Runtime) -> None:
    someone = await make_user(runtime)
    assert (await _create(client, runtime, {})).status_code == 401
    assert (await _create(client, runtime, await user_headers(runtime, someone))).status_code == 403
    assert await mail_to(runtime, ANA) == []


async def test_a_spanish_user_gets_the_email_in_spanish(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    assert (await _create(client, runtime, locale="es")).status_code == 201
    message, link = await _welcome(runtime)
    assert message.subject == "Tu cuenta de Identity está lista: elige tu contraseña"
    assert "Se ha creado una cuenta para ti en Identity" in message.text_body
    assert message.html_body and "Elegir tu contraseña" in message.html_body
    assert f"{link}&ui_locales=es" in message.text_body
    page = await client.get(f"{link}&ui_locales=es")
    assert page.status_code == 200 and 'lang="es"' in page.text


async def test_the_link_works_once(client: httpx.AsyncClient, runtime: Runtime) -> None:
    assert (await _create(client, runtime)).status_code == 201
    _, link = await _welcome(runtime)
    assert (await _choose_password(client, link)).status_code == 200
    again = await client.get(link)
    assert again.status_code == 400 and SPENT in notice(again)


async def test_the_link_stops_working_when_the_user_is_disabled(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await staff_headers(runtime)
    created = await _create(client, runtime, headers)
    _, link = await _welcome(runtime)
    disabled = await client.post(
        f"/api/v1/users/{created.json()['id']}/disable",
        json={"reason": "Wrong customer"},
        headers=headers,
    )
    assert disabled.status_code == 200
    refused = await _choose_password(client, link)
    assert refused.status_code == 400 and SPENT in notice(refused)
    assert await authenticate(runtime.db, runtime.passwords, ANA, NEW_PASSWORD) is None


async def test_the_link_stops_working_once_a_password_is_set_another_way(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    assert (await _create(client, runtime)).status_code == 201
    _, link = await _welcome(runtime)
    assert (await forgot(client, ANA)).status_code == 202
    *_, forgot_message = await mail_to(runtime, ANA)
    forgot_token = re.search(r"token=([A-Za-z0-9_-]+)", forgot_message.text_body)
    assert forgot_token
    assert (await reset(client, forgot_token.group(1), PASSWORD)).status_code == 204
    refused = await _choose_password(client, link)
    assert refused.status_code == 400 and SPENT in notice(refused)
    assert await authenticate(runtime.db, runtime.passwords, ANA, PASSWORD) is not None


async def test_the_link_stops_working_once_a_password_is_set_on_a_clock_behind(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link was sent for a user with no password: a first one stamped by a server whose
    clock is behind the one that sent the link seems older than the link, and still ends it."""
    assert (await _create(client, runtime)).status_code == 201
    _, link = await _welcome(runtime)
    async with runtime.db.transaction() as session:
        welcome = (await session.scalars(select(PasswordResetToken))).one()
    assert (await forgot(client, ANA)).status_code == 202
    *_, forgot_message = await mail_to(runtime, ANA)
    forgot_token = re.search(r"token=([A-Za-z0-9_-]+)", forgot_message.text_body)
    assert forgot_token
    with monkeypatch.context() as clock:
        clock.setattr(
            accounts_repository, "utcnow", lambda: welcome.created_at - timedelta(minutes=1)
        )
        assert (await reset(client, forgot_token.group(1), PASSWORD)).status_code == 204
    refused = await _choose_password(client, link)
    assert refused.status_code == 400 and SPENT in notice(refused)
    assert await authenticate(runtime.db, runtime.passwords, ANA, PASSWORD) is not None


async def test_the_link_stops_working_when_the_email_changes(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await staff_headers(runtime)
    created = await _create(client, runtime, headers)
    _, link = await _welcome(runtime)
    moved = await client.post(
        f"/api/v1/users/{created.json()['id']}/email",
        json={"email": "ana@example.org", "reason": "Typo in the address"},
        headers=headers,
    )
    assert moved.status_code == 200, moved.text
    refused = await _choose_password(client, link)
    assert refused.status_code == 400 and SPENT in notice(refused)


async def test_a_user_moved_before_choosing_a_password_gets_a_new_welcome_link(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Staff fixing a typo in the address of a customer they just created: the new address got
    # a password reset email ("Someone asked to change the password", 30 minutes) for an
    # account its reader had never heard of and that has no password to change.
    headers = await staff_headers(runtime)
    created = await _create(client, runtime, headers, email="ana@exmaple.com")
    moved = await client.post(
        f"/api/v1/users/{created.json()['id']}/email",
        json={"email": ANA, "reason": "Typo in the address"},
        headers=headers,
    )
    assert moved.status_code == 200, moved.text
    changed, welcome = sorted(await mail_to(runtime, ANA), key=lambda m: "ready" in m.subject)
    assert changed.subject == "The sign-in email of your Identity account was changed"
    assert welcome.subject == "Your Identity account is ready: choose your password"
    assert await _welcome_expiry(runtime) in welcome.text_body
    chosen = await _choose_password(client, link_in(welcome, RESET))
    assert chosen.status_code == 200 and "Password changed" in chosen.text


async def test_a_first_password_stored_meanwhile_refuses_the_link_without_an_error(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The link is used while another first password (a forgot-password link's) is being
    stored: on PostgreSQL both found no password and both inserted one, and the second insert
    broke the primary key, a 500. The link must be refused as spent, as once the password
    has changed."""
    created = await _create(client, runtime)
    user_id = uuid.UUID(created.json()["id"])
    _, link = await _welcome(runtime)
    other_hash = await runtime.passwords.hash(PASSWORD)
    async with runtime.db.transaction() as session:
        session.add(PasswordCredential(user_id=user_id, hash=other_hash, changed_at=utcnow()))
        await session.flush()
        using = asyncio.create_task(reset(client, token_of(link)))
        await until_waiting_or_done(runtime, using, "password_credentials")
    answer = await using
    assert answer.status_code == 400, answer.text
    assert answer.json()["type"].endswith("invalid-reset-token")
    assert await authenticate(runtime.db, runtime.passwords, ANA, PASSWORD) is not None
