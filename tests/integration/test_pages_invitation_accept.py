"""The page an invitation's link opens: accepting as a new person or as the invited user,
the refusal for anyone else, and clear pages for links that no longer work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from identity.accounts.models import User
from identity.audit.models import AuditEvent
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.oauth.tokens import user_claims
from identity.permissions.models import Account, Invitation, Membership
from identity.recovery.email_change import confirm_email_change
from identity.recovery.service import assisted_email_change
from identity.runtime import Runtime
from tests.browser import PASSWORD, add_user, form_fields
from tests.integration.account_helpers import (
    add_member,
    effective,
    invite_and_read_link,
    make_account,
)
from tests.integration.page_helpers import (
    ask_email_change,
    invalid_fields,
    link_in,
    mail_to,
    token_of,
)

INVITED = "new.hire@example.com"
STRONG = PASSWORD  # passes the policy (tests/browser.py)
ACCEPT = "/invitations/accept"


async def arrange(runtime: Runtime, **options: object) -> tuple[Account, str]:
    owner = await add_user(runtime, "owner@example.com")
    account = await make_account(runtime, owner, "Acme Hosting")
    token = await invite_and_read_link(
        runtime,
        account,
        INVITED,
        options.pop("permissions", ["invoices", "tickets"]),  # type: ignore[arg-type]
    )
    return account, token


async def memberships(runtime: Runtime, account: Account) -> list[Membership]:
    async with runtime.db.transaction() as session:
        found = await session.scalars(select(Membership).where(Membership.account_id == account.id))
        return list(found.all())


async def user_named(runtime: Runtime, email: str) -> User | None:
    async with runtime.db.transaction() as session:
        return await session.scalar(select(User).where(User.email == email))


async def sign_up(
    http: httpx.AsyncClient, token: str, *, name: str = "Nina Newhire", **fields: str
) -> httpx.Response:
    page = await http.get(ACCEPT, params={"token": token})
    assert page.status_code == 200, page.text
    data = form_fields(page.text) | {
        "name": name,
        "password": STRONG,
        "password_confirm": STRONG,
    }
    return await http.post(ACCEPT, data=data | fields)


# --- a new person ----------------------------------------------------------------------------


async def test_a_new_person_sets_name_and_password_and_is_signed_in(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    account, token = await arrange(runtime)
    page = await client.get(ACCEPT, params={"token": token})
    assert "Acme Hosting" in page.text and INVITED in page.text
    assert 'name="password_confirm"' in page.text

    accepted = await sign_up(client, token)

    assert accepted.status_code == 200, accepted.text
    assert "You are now a member of “Acme Hosting”" in accepted.text
    assert "identity_session" in accepted.headers["set-cookie"]
    user = await user_named(runtime, INVITED)
    assert user is not None and user.name == "Nina Newhire"
    assert await effective(runtime, user, account) == {"invoices", "tickets"}
    # Signed in: a page that needs a session now answers for Nina (a plain member: 403).
    users_page = await client.get(f"/accounts/{account.id}/users")
    assert users_page.status_code == 403


async def test_an_international_address_is_shown_as_people_write_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Stored as mail servers name it (xn--), shown as the security page shows it."""
    owner = await add_user(runtime, "owner@example.com")
    account = await make_account(runtime, owner, "Acme Hosting")
    token = await invite_and_read_link(runtime, account, "nina@xn--bcher-kva.de", ["invoices"])
    page = await client.get(ACCEPT, params={"token": token})
    assert "Choose your name and a password for nina@bücher.de." in page.text
    accepted = await sign_up(client, token)
    assert "You are now a member of “Acme Hosting” as nina@bücher.de." in accepted.text


async def test_the_page_speaks_spanish(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, token = await arrange(runtime)
    spanish = {"Accept-Language": "es"}

    page = await client.get(ACCEPT, params={"token": token}, headers=spanish)

    assert '<html lang="es">' in page.text
    assert "Te han invitado a unirte a la cuenta «Acme Hosting»" in page.text
    assert "Aceptar invitación" in page.text


async def test_the_language_of_the_link_is_kept_through_every_post(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A link that asks for Spanish gets Spanish pages, whatever the browser prefers."""
    _, token = await arrange(runtime)
    client.headers["Accept-Language"] = "en"
    page = await client.get(ACCEPT, params={"token": token, "ui_locales": "es"})
    assert '<html lang="es">' in page.text
    fields = form_fields(page.text) | {"name": "Nina", "password": STRONG}

    mismatch = await client.post(ACCEPT, data=fields | {"password_confirm": "other"})
    weak = await client.post(ACCEPT, data=fields | {"password": "abc", "password_confirm": "abc"})
    accepted = await client.post(ACCEPT, data=fields | {"password_confirm": STRONG})
    spent = await client.post(ACCEPT, data=fields | {"password_confirm": STRONG})

    assert "Las dos contraseñas no coinciden." in mismatch.text
    assert "Usa al menos" in weak.text
    assert "Ya eres miembro de «Acme Hosting»" in accepted.text
    assert "Esta invitación ya se aceptó." in spent.text
    for answer in (mismatch, weak, accepted, spent):
        assert '<html lang="es">' in answer.text
    # The language signed up in is the user's: their ID tokens and later emails use it.
    user = await user_named(runtime, INVITED)
    assert user is not None and user.locale == "es"
    assert user_claims(user, ["openid", "profile"])["locale"] == "es"


NAME_RULE = "Use a name of at most 200 characters, without line breaks or text direction controls."


@pytest.mark.parametrize(
    ("fields", "status", "message", "at_fault"),
    [
        (
            {"password": "abc", "password_confirm": "abc"},
            422,
            "Choose another password",
            {"password": "password-reasons password-rules"},
        ),
        (
            {"password_confirm": "something else"},
            400,
            "The two passwords are not the same.",
            {"password_confirm": "message"},
        ),
        ({"name": ""}, 400, "Enter your name.", {"name": "message"}),
        ({"name": "x" * 300}, 422, NAME_RULE, {"name": "message"}),
        ({"name": "Ana\u202eecnarusni"}, 422, NAME_RULE, {"name": "message"}),
    ],
)
async def test_bad_input_is_explained_at_its_field_and_the_link_still_works(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fields: dict[str, str],
    status: int,
    message: str,
    at_fault: dict[str, str],
) -> None:
    account, token = await arrange(runtime)

    refused = await sign_up(client, token, **fields)

    assert refused.status_code == status
    assert message in refused.text
    assert invalid_fields(refused) == at_fault
    assert len(await memberships(runtime, account)) == 1
    assert (await sign_up(client, token)).status_code == 200


async def test_a_weak_password_lists_the_policy_reasons_in_spanish(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, token = await arrange(runtime)
    client.headers["Accept-Language"] = "es"

    refused = await sign_up(client, token, password="abc", password_confirm="abc")

    assert refused.status_code == 422
    assert "Elige otra contraseña" in refused.text
    assert "Usa al menos" in refused.text


async def test_generate_without_javascript_fills_a_password_and_accepts_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    account, token = await arrange(runtime)

    suggested = await sign_up(client, token, suggest="1")

    assert suggested.status_code == 200
    fields = form_fields(suggested.text)
    assert fields["password"] and fields["password"] == fields["password_confirm"]
    assert fields["name"] == "Nina Newhire"
    assert len(await memberships(runtime, account)) == 1


async def test_a_post_without_the_csrf_token_changes_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    account, token = await arrange(runtime)
    page = await client.get(ACCEPT, params={"token": token})
    data = form_fields(page.text) | {
        "name": "N",
        "password": STRONG,
        "password_confirm": STRONG,
        "csrf_token": "forged",
    }

    refused = await client.post(ACCEPT, data=data)

    assert refused.status_code == 400
    assert "This form has expired" in refused.text
    assert form_fields(refused.text)["name"] == "N"  # not typed again to post it afresh
    assert await user_named(runtime, INVITED) is None
    assert len(await memberships(runtime, account)) == 1


async def test_concurrent_accepts_create_one_user_and_one_membership(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    account, token = await arrange(runtime)
    page = await client.get(ACCEPT, params={"token": token})
    data = form_fields(page.text) | {
        "name": "Nina",
        "password": STRONG,
        "password_confirm": STRONG,
    }

    answers = await asyncio.gather(*(client.post(ACCEPT, data=data) for _ in range(4)))

    assert sorted(a.status_code for a in answers) == [200, 410, 410, 410]
    assert len(await memberships(runtime, account)) == 2
    for refused in (a for a in answers if a.status_code == 410):
        assert "accepted already" in refused.text


# --- someone who has a user already -----------------------------------------------------------


async def test_an_existing_user_signs_in_then_accepts(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    invitee = await add_user(runtime, INVITED)
    account, token = await arrange(runtime)

    sent = await client.get(ACCEPT, params={"token": token})
    assert sent.status_code == 303 and sent.headers["location"].startswith("/login?flow=")
    login = await client.get(sent.headers["location"])
    assert f'value="{INVITED}"' in login.text  # the invited address, filled in
    back = await client.post(
        "/login", data=form_fields(login.text) | {"email": INVITED, "password": PASSWORD}
    )
    assert back.headers["location"] == f"{ACCEPT}?token={token}&ui_locales=en"
    confirm = await client.get(back.headers["location"])
    assert confirm.status_code == 200
    assert f"You are signed in as {INVITED}" in confirm.text
    assert 'name="password"' not in confirm.text
    accepted = await client.post(ACCEPT, data=form_fields(confirm.text))

    assert accepted.status_code == 200
    assert "You are now a member" in accepted.text
    assert await effective(runtime, invitee, account) == {"invoices", "tickets"}


async def test_an_existing_user_signs_in_and_accepts_in_the_language_of_the_link(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_user(runtime, INVITED)
    _, token = await arrange(runtime)
    client.headers["Accept-Language"] = "en"

    sent = await client.get(ACCEPT, params={"token": token, "ui_locales": "es"})
    login = await client.get(sent.headers["location"])
    back = await client.post(
        "/login", data=form_fields(login.text) | {"email": INVITED, "password": PASSWORD}
    )
    confirm = await client.get(back.headers["location"])
    accepted = await client.post(ACCEPT, data=form_fields(confirm.text))

    assert "Iniciar sesión" in login.text
    assert f"Has iniciado sesión como {INVITED}" in confirm.text
    assert "Ya eres miembro" in accepted.text


async def test_a_member_already_is_told_so_rather_than_asked_to_accept_again(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    invitee = await add_user(runtime, INVITED)
    account, token = await arrange(runtime)
    await add_member(runtime, account, invitee, ["profile"])  # by staff, after the invitation
    sent = await client.get(ACCEPT, params={"token": token})
    login = await client.get(sent.headers["location"])
    back = await client.post(
        "/login", data=form_fields(login.text) | {"email": INVITED, "password": PASSWORD}
    )
    confirm = await client.get(back.headers["location"])

    accepted = await client.post(ACCEPT, data=form_fields(confirm.text))

    assert accepted.status_code == 410
    assert "You are a member of this account already" in accepted.text
    assert 'name="token"' not in accepted.text  # not the same form again
    assert await effective(runtime, invitee, account) == {"profile"}


async def test_signed_in_as_someone_else_is_refused_with_an_explanation(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await add_user(runtime, "someone@example.com")
    account, token = await arrange(runtime)
    # Sign in as someone else through the accept page of another invitation to them.
    other = await invite_and_read_link(runtime, account, "someone@example.com")
    sent = await client.get(ACCEPT, params={"token": other})
    login = await client.get(sent.headers["location"])
    await client.post(
        "/login",
        data=form_fields(login.text) | {"email": "someone@example.com", "password": PASSWORD},
    )

    page = await client.get(ACCEPT, params={"token": token})
    forced = await client.post(ACCEPT, data={"token": token} | csrf_of(login.text))

    for refused in (page, forced):
        assert refused.status_code == 403
        assert f"This invitation was sent to {INVITED}" in refused.text
        assert "signed in as someone@example.com" in refused.text
    assert len(await memberships(runtime, account)) == 1
    assert await user_named(runtime, INVITED) is None


def csrf_of(html: str) -> dict[str, str]:
    return {"csrf_token": form_fields(html)["csrf_token"]}


# --- links that no longer work -----------------------------------------------------------------


async def _end(runtime: Runtime, how: str) -> None:
    now = utcnow()
    values = {
        "accepted": {"accepted_at": now},
        "cancelled": {"cancelled_at": now},
        "expired": {"expires_at": now - timedelta(minutes=1)},
    }[how]
    async with runtime.db.transaction() as session:
        await session.execute(update(Invitation).values(**values))


@pytest.mark.parametrize(
    ("how", "status", "english", "spanish"),
    [
        ("accepted", 410, "has been accepted already", "ya se aceptó"),
        ("cancelled", 410, "was cancelled", "se canceló"),
        ("expired", 410, "has expired", "ha caducado"),
        ("unknown", 404, "is not valid", "no es válido"),
    ],
)
@pytest.mark.parametrize("language", ["en", "es"])
async def test_a_link_that_no_longer_works_gets_a_clear_page(
    client: httpx.AsyncClient,
    runtime: Runtime,
    how: str,
    status: int,
    english: str,
    spanish: str,
    language: str,
) -> None:
    _, token = await arrange(runtime)
    if how == "unknown":
        token = ("y" if token[0] == "x" else "x") + token[1:]
    else:
        await _end(runtime, how)
    headers = {"Accept-Language": language}

    page = await client.get(ACCEPT, params={"token": token}, headers=headers)

    assert page.status_code == status
    assert (english if language == "en" else spanish) in page.text
    assert 'name="password"' not in page.text


# --- the invited address left by its user ----------------------------------------------------


async def _move_by_link(runtime: Runtime, user: User, new_email: str) -> None:
    await ask_email_change(runtime, user, new_email)
    (message,) = await mail_to(runtime, new_email)
    async with runtime.db.transaction() as session:
        await confirm_email_change(
            session,
            runtime.store,
            runtime.settings,
            Actor(),
            token_of(link_in(message, "/confirm-email")),
            "en",
            utcnow(),
        )


async def _move_by_staff(runtime: Runtime, user: User, new_email: str) -> None:
    async with runtime.db.transaction() as session:
        await assisted_email_change(
            session,
            runtime.settings,
            Actor(client_id="support"),
            user.id,
            new_email,
            "Lost her mailbox; identity checked by phone.",
            utcnow(),
        )


@pytest.mark.parametrize("move", [_move_by_link, _move_by_staff])
async def test_an_invitation_to_an_address_its_user_left_no_longer_works(
    client: httpx.AsyncClient,
    runtime: Runtime,
    move: Callable[[Runtime, User, str], Awaitable[None]],
) -> None:
    """Sent to a user's address, the link asked whoever opened it to sign in as that user.
    Once the user moves to another address (perhaps because someone else reads the old
    mailbox), whoever reads the old mailbox must not join the account as a new person
    with the link, as they must not take the user's account with a reset link sent there."""
    invitee = await add_user(runtime, INVITED)
    account, token = await arrange(runtime)
    await move(runtime, invitee, "nina@example.org")

    page = await client.get(ACCEPT, params={"token": token})

    assert page.status_code == 410
    assert 'name="password"' not in page.text
    attempt = await client.post(
        ACCEPT,
        data=form_fields((await client.get("/password/forgot")).text)
        | {"token": token, "name": "Mallory", "password": STRONG, "password_confirm": STRONG},
    )
    assert attempt.status_code == 410
    assert await user_named(runtime, INVITED) is None
    assert [m.user_id for m in await memberships(runtime, account)] == [
        (await user_named(runtime, "owner@example.com")).id  # type: ignore[union-attr]
    ]
    async with runtime.db.transaction() as session:
        cancelled = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "invitation.cancelled",
                    AuditEvent.account_id == account.id,
                )
            )
        ).all()
    assert len(cancelled) == 1
