"""Invitations: the email and its single-use link, accepting as a new or an existing user,
and the clear refusals (already a member, unknown permission, rate limit, wrong person)."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from identity.accounts.models import User
from identity.accounts.service import MAX_NAME
from identity.audit.models import AuditEvent
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.errors import Conflict, Forbidden, NotFound, PolicyViolation
from identity.mail.models import MAX_SUBJECT, OutgoingEmail
from identity.mail.transport import build_message
from identity.oauth.scopes import SCOPE_ACCOUNTS, SCOPE_ADMIN
from identity.permissions import invitations, repository
from identity.permissions.customer_accounts import MAX_ACCOUNT_NAME
from identity.permissions.models import Account, Invitation, Membership
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    add_member,
    bearer,
    effective,
    make_account,
    make_user,
    mint,
    staff_headers,
    user_headers,
)

LINK = re.compile(r"https?://\S+/invitations/accept\?token=\S+")


async def _invite(
    client: httpx.AsyncClient, runtime: Runtime, account: Account, owner: User, **body: Any
) -> httpx.Response:
    return await client.post(
        f"/api/v1/accounts/{account.id}/invitations",
        json={"email": "new.hire@example.com"} | body,
        headers=await user_headers(runtime, owner),
    )


async def _emails(runtime: Runtime, to: str) -> list[OutgoingEmail]:
    async with runtime.db.transaction() as session:
        result = await session.scalars(
            select(OutgoingEmail)
            .where(OutgoingEmail.to_address == to)
            .order_by(OutgoingEmail.created_at)
        )
        return list(result.all())


def _token(email: OutgoingEmail) -> str:
    match = LINK.search(email.text_body)
    assert match, email.text_body
    return parse_qs(urlsplit(match.group(0)).query)["token"][0]


async def _memberships(runtime: Runtime, account: Account) -> list[Membership]:
    async with runtime.db.transaction() as session:
        result = await session.scalars(
            select(Membership).where(Membership.account_id == account.id)
        )
        return list(result.all())


async def _arrange(runtime: Runtime) -> tuple[User, Account]:
    owner = await make_user(runtime, name="Olga Owner")
    return owner, await make_account(runtime, owner, "Acme Hosting")


async def test_an_invitation_emails_a_single_use_link_in_the_chosen_language(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, account = await _arrange(runtime)
    response = await _invite(
        client, runtime, account, owner, permissions=[{"name": "invoices"}], locale="es"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == "new.hire@example.com"
    assert body["grants"]["permissions"] == [{"name": "invoices", "expires_at": None}]
    (email,) = await _emails(runtime, "new.hire@example.com")
    assert email.subject == "Olga Owner te invita a Acme Hosting"
    token = _token(email)
    assert len(token) >= 43  # 256 bits, URL-safe base64
    async with runtime.db.transaction() as session:
        stored = await session.scalar(select(Invitation.token_hash))
    assert token not in (stored or "")


async def test_the_invitation_expires_after_seven_days_by_default(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, account = await _arrange(runtime)
    body = (await _invite(client, runtime, account, owner)).json()
    lifetime = datetime.fromisoformat(body["expires_at"]) - datetime.fromisoformat(
        body["created_at"]
    )
    assert lifetime == timedelta(days=7)


async def test_an_existing_user_accepts_and_gets_the_invited_permissions(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, account = await _arrange(runtime)
    invitee = await make_user(runtime, email="new.hire@example.com")
    await _invite(client, runtime, account, owner, permissions=[{"name": "tickets"}])
    token = _token((await _emails(runtime, invitee.email))[0])
    async with runtime.db.transaction() as session:
        await invitations.accept_invitation_as_existing_user(session, token, invitee)
    assert await effective(runtime, invitee, account) == {"tickets"}
    listed = await client.get(
        f"/api/v1/accounts/{account.id}/invitations", headers=await user_headers(runtime, owner)
    )
    assert listed.json() == []


async def test_accepting_while_signed_in_as_someone_else_is_refused_with_a_reason(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, account = await _arrange(runtime)
    other = await make_user(runtime, email="someone.else@example.com")
    await _invite(client, runtime, account, owner)
    token = _token((await _emails(runtime, "new.hire@example.com"))[0])
    async with runtime.db.transaction() as session:
        with pytest.raises(Forbidden) as refused:
            await invitations.accept_invitation_as_existing_user(session, token, other)
    assert "new.hire@example.com" in refused.value.detail
    assert "someone.else@example.com" in refused.value.detail
    assert len(await _memberships(runtime, account)) == 1


async def test_a_new_person_accepts_with_a_name_and_a_password(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, account = await _arrange(runtime)
    await _invite(client, runtime, account, owner, all_permissions=True)
    token = _token((await _emails(runtime, "new.hire@example.com"))[0])
    sign_up = await invitations.prepare_sign_up(
        runtime.db,
        runtime.passwords,
        token,
        name="Nina New",
        password=runtime.passwords.generate(20),
    )
    async with runtime.db.transaction() as session:
        user, membership = await invitations.accept_invitation_as_new_user(session, sign_up)
    assert (user.email, user.name, membership.all_permissions) == (
        "new.hire@example.com",
        "Nina New",
        True,
    )
    assert "users" in await effective(runtime, user, account)


async def test_a_weak_password_leaves_the_invitation_usable(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, account = await _arrange(runtime)
    await _invite(client, runtime, account, owner)
    token = _token((await _emails(runtime, "new.hire@example.com"))[0])
    with pytest.raises(PolicyViolation):
        await invitations.prepare_sign_up(
            runtime.db, runtime.passwords, token, name="Nina", password="password"
        )
    async with runtime.db.transaction() as session:
        pending = await invitations.invitation_for_token(session, token)
    assert pending.account.name == "Acme Hosting"


async def test_a_link_works_once(client: httpx.AsyncClient, runtime: Runtime) -> None:
    owner, account = await _arrange(runtime)
    invitee = await make_user(runtime, email="new.hire@example.com")
    await _invite(client, runtime, account, owner)
    token = _token((await _emails(runtime, invitee.email))[0])
    async with runtime.db.transaction() as session:
        await invitations.accept_invitation_as_existing_user(session, token, invitee)
    async with runtime.db.transaction() as session:
        with pytest.raises(Conflict, match="accepted already"):
            await invitations.accept_invitation_as_existing_user(session, token, invitee)


async def test_an_expired_link_is_refused(client: httpx.AsyncClient, runtime: Runtime) -> None:
    owner, account = await _arrange(runtime)
    invitee = await make_user(runtime, email="new.hire@example.com")
    await _invite(client, runtime, account, owner)
    token = _token((await _emails(runtime, invitee.email))[0])
    async with runtime.db.transaction() as session:
        with pytest.raises(Conflict, match="expired"):
            await invitations.accept_invitation_as_existing_user(
                session, token, invitee, now=utcnow() + timedelta(days=8)
            )


async def test_an_unknown_link_is_not_found(runtime: Runtime) -> None:
    invitee = await make_user(runtime)
    async with runtime.db.transaction() as session:
        with pytest.raises(NotFound):
            await invitations.accept_invitation_as_existing_user(session, "forged", invitee)


async def test_resending_replaces_the_link_and_cancelling_ends_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, account = await _arrange(runtime)
    invitee = await make_user(runtime, email="new.hire@example.com")
    invitation = (await _invite(client, runtime, account, owner)).json()
    headers = await user_headers(runtime, owner)
    url = f"/api/v1/accounts/{account.id}/invitations/{invitation['id']}"
    resent = await client.post(f"{url}/resend", headers=headers)
    assert resent.status_code == 200, resent.text
    first, second = await _emails(runtime, invitee.email)
    async with runtime.db.transaction() as session:
        with pytest.raises(NotFound):
            await invitations.accept_invitation_as_existing_user(session, _token(first), invitee)
    cancelled = await client.delete(url, headers=headers)
    assert cancelled.status_code == 204
    async with runtime.db.transaction() as session:
        with pytest.raises(Conflict, match="cancelled"):
            await invitations.accept_invitation_as_existing_user(session, _token(second), invitee)


async def _cancellations(runtime: Runtime) -> list[str | None]:
    async with runtime.db.transaction() as session:
        result = await session.scalars(
            select(AuditEvent.target_id).where(AuditEvent.action == "invitation.cancelled")
        )
        return list(result.all())


@pytest.mark.parametrize("ended", ["expired", "accepted", "cancelled"])
async def test_cancelling_an_invitation_no_longer_pending_is_not_found_as_reading_it(
    client: httpx.AsyncClient, runtime: Runtime, ended: str
) -> None:
    # An expired one answered 204, was marked cancelled and recorded as cancelled, while
    # reading it answered 404 and resending it 409.
    owner, account = await _arrange(runtime)
    invitee = await make_user(runtime, email="new.hire@example.com")
    sent = (await _invite(client, runtime, account, owner)).json()
    headers = await user_headers(runtime, owner)
    url = f"/api/v1/accounts/{account.id}/invitations/{sent['id']}"
    if ended == "expired":
        async with runtime.db.transaction() as session:
            await session.execute(
                update(Invitation).values(expires_at=utcnow() - timedelta(minutes=1))
            )
    elif ended == "accepted":
        token = _token((await _emails(runtime, invitee.email))[0])
        async with runtime.db.transaction() as session:
            await invitations.accept_invitation_as_existing_user(session, token, invitee)
    else:
        assert (await client.delete(url, headers=headers)).status_code == 204
    async with runtime.db.transaction() as session:
        before = await session.get(Invitation, uuid.UUID(sent["id"]))
        assert before is not None
        cancelled_at = before.cancelled_at
    recorded = await _cancellations(runtime)

    cancelled = await client.delete(url, headers=headers)
    read = await client.get(url, headers=headers)

    assert (cancelled.status_code, read.status_code) == (404, 404), cancelled.text
    assert cancelled.headers["content-type"] == "application/problem+json"
    assert cancelled.json()["detail"] == read.json()["detail"]
    async with runtime.db.transaction() as session:
        after = await session.get(Invitation, uuid.UUID(sent["id"]))
        assert after is not None and after.cancelled_at == cancelled_at
    assert await _cancellations(runtime) == recorded


async def test_an_expired_invitation_is_not_revived_by_a_resend(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Once expired it is no longer pending: the address may be invited afresh, and a resend
    # of the old one would make two live invitations for one address (also bringing back
    # the grants of a sender who chose them a week or more ago).
    owner, account = await _arrange(runtime)
    old = (await _invite(client, runtime, account, owner)).json()
    async with runtime.db.transaction() as session:
        await session.execute(
            update(Invitation)
            .where(Invitation.account_id == account.id)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    again = await _invite(client, runtime, account, owner)
    assert again.status_code == 201, again.text
    headers = await user_headers(runtime, owner)
    url = f"/api/v1/accounts/{account.id}/invitations/{old['id']}/resend"

    resent = await client.post(url, headers=headers)

    assert resent.status_code == 409, resent.text
    assert resent.headers["content-type"] == "application/problem+json"
    assert "expired" in resent.json()["detail"]
    listed = await client.get(f"/api/v1/accounts/{account.id}/invitations", headers=headers)
    assert [i["id"] for i in listed.json()] == [again.json()["id"]]
    assert len(await _emails(runtime, "new.hire@example.com")) == 2


async def test_inviting_a_member_is_refused_naming_the_email(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, account = await _arrange(runtime)
    member = await make_user(runtime, email="already@example.com")
    await add_member(runtime, account, member)
    response = await _invite(client, runtime, account, owner, email="Already@Example.com")
    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "email"
    assert "already a member" in response.json()["detail"]


async def test_a_user_whose_address_predates_the_rules_for_new_ones_can_be_invited(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # "ſam@" (long s) is refused as a new address, but one stored before that rule still
    # signs in: its user was refused every invitation (422).
    owner, account = await _arrange(runtime)
    legacy = await make_user(runtime, email="\u017fam@example.com")

    response = await _invite(client, runtime, account, owner, email="\u017fAM@Example.com")

    assert response.status_code == 201, response.text
    assert response.json()["email"] == legacy.email
    (email,) = await _emails(runtime, legacy.email)
    async with runtime.db.transaction() as session:
        await invitations.accept_invitation_as_existing_user(session, _token(email), legacy)
    assert [m.user_id for m in await _memberships(runtime, account)] == [owner.id, legacy.id]


async def test_an_address_no_user_has_is_still_held_to_the_rules_for_new_ones(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, account = await _arrange(runtime)
    await make_user(runtime, email="sam@example.com")

    response = await _invite(client, runtime, account, owner, email="\u017fam@example.com")

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "email"
    assert "plain form" in response.json()["detail"]
    assert await _emails(runtime, "\u017fam@example.com") == []


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("a" * 64 + "@" + ".".join(["b" * 63, "c" * 63, "d" * 58, "com"]), "too long"),
        ("=?utf-8?q?olga=40example=2ecom?=@example.com", "encoded word"),
    ],
    ids=["255-bytes", "encoded-word"],
)
async def test_a_user_whose_stored_address_mail_cannot_reach_is_not_invited(
    client: httpx.AsyncClient, runtime: Runtime, address: str, why: str
) -> None:
    # Their invitation's email could never be sent (refused by a mail server, or given up as
    # reading as another address), and the link is nowhere else: refused, saying why, as a
    # new address would be (a customer must not learn from the answer that it has a user).
    owner, account = await _arrange(runtime)
    await make_user(runtime, email=address)

    response = await _invite(client, runtime, account, owner, email=address)

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "email"
    assert why in response.json()["detail"]
    async with runtime.db.transaction() as session:
        assert await session.scalar(select(Invitation.id)) is None


async def test_staff_inviting_a_disabled_user_are_told_to_enable_them_first(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Its link could not be used (a disabled user cannot sign in to accept it): staff, who
    can see who is disabled anyway, are told so rather than sending it."""
    _, account = await _arrange(runtime)
    await make_user(runtime, email="gone@example.com", disabled=True)
    response = await client.post(
        f"/api/v1/accounts/{account.id}/invitations",
        json={"email": "Gone@Example.com"},
        headers=await staff_headers(runtime),
    )
    assert response.status_code == 409, response.text
    assert response.json()["errors"][0]["field"] == "email"
    assert "disabled" in response.json()["detail"]
    assert await _emails(runtime, "gone@example.com") == []


async def test_staff_resending_to_a_user_disabled_since_are_told_so_too(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, account = await _arrange(runtime)
    invitee = await make_user(runtime, email="new.hire@example.com")
    invitation = (await _invite(client, runtime, account, owner)).json()
    async with runtime.db.transaction() as session:
        await session.execute(update(User).where(User.id == invitee.id).values(disabled=True))
    url = f"/api/v1/accounts/{account.id}/invitations/{invitation['id']}/resend"

    resent = await client.post(url, headers=await staff_headers(runtime))

    assert resent.status_code == 409, resent.text
    assert "disabled" in resent.json()["detail"]
    assert len(await _emails(runtime, "new.hire@example.com")) == 1
    # The owner is not told, as for a new invitation.
    by_owner = await client.post(url, headers=await user_headers(runtime, owner))
    assert by_owner.status_code == 200, by_owner.text


async def test_an_owner_inviting_a_disabled_user_learns_nothing_of_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Sign-in tells no one that a user is disabled, so neither does an invitation to a
    customer's owner: it goes out as to anyone, and works once staff enable the user."""
    owner, account = await _arrange(runtime)
    gone = await make_user(runtime, email="gone@example.com", disabled=True)
    response = await _invite(client, runtime, account, owner, email="gone@example.com")
    assert response.status_code == 201, response.text
    (email,) = await _emails(runtime, "gone@example.com")
    async with runtime.db.transaction() as session:
        await session.execute(update(User).where(User.id == gone.id).values(disabled=False))
        found = await session.get(User, gone.id)
        assert found is not None
        await invitations.accept_invitation_as_existing_user(session, _token(email), found)
    assert {m.user_id for m in await _memberships(runtime, account)} == {owner.id, gone.id}


async def test_inviting_with_an_unknown_permission_names_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, account = await _arrange(runtime)
    response = await _invite(client, runtime, account, owner, permissions=[{"name": "launch"}])
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "permissions"
    assert "launch" in response.json()["detail"]
    assert await _emails(runtime, "new.hire@example.com") == []


async def test_too_many_invitations_are_refused_with_retry_after(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, account = await _arrange(runtime)
    statuses = []
    # The README's number: more than 50 invitations per account per hour are refused.
    for number in range(50 + 1):
        response = await _invite(client, runtime, account, owner, email=f"p{number}@example.com")
        statuses.append(response.status_code)
    assert statuses[:-1] == [201] * 50
    assert statuses[-1] == 429
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["type"].endswith("rate-limited")


async def test_one_account_using_up_an_address_leaves_it_to_the_others(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """An account that sent an address its five invitations of the day is refused more, but
    another customer can still invite that person; only many accounts together reach the
    address's own cap, which bounds the mail one address gets."""
    owner, account = await _arrange(runtime)
    sent = await _invite(client, runtime, account, owner)
    assert sent.status_code == 201, sent.text
    resend = f"/api/v1/accounts/{account.id}/invitations/{sent.json()['id']}/resend"
    headers = await user_headers(runtime, owner)
    # The README's numbers: 5 a day from one account, 10 a day from all accounts together.
    per_account, per_address = 5, 10
    resent = [(await client.post(resend, headers=headers)).status_code for _ in range(per_account)]
    assert resent == [200] * (per_account - 1) + [429]

    others = per_address - per_account
    assert others > 0
    for number in range(others):
        other_owner = await make_user(runtime, email=f"owner{number}@example.com")
        other = await make_account(runtime, other_owner, f"Other {number}")
        assert (await _invite(client, runtime, other, other_owner)).status_code == 201
    last_owner = await make_user(runtime, email="owner-last@example.com")
    last = await make_account(runtime, last_owner, "Last")
    capped = await _invite(client, runtime, last, last_owner)
    assert capped.status_code == 429
    assert capped.json()["type"].endswith("rate-limited")
    assert len(await _emails(runtime, "new.hire@example.com")) == per_address


async def test_concurrent_accepts_create_exactly_one_membership(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, account = await _arrange(runtime)
    invitee = await make_user(runtime, email="new.hire@example.com")
    await _invite(client, runtime, account, owner, permissions=[{"name": "tickets"}])
    token = _token((await _emails(runtime, invitee.email))[0])

    async def accept() -> Membership:
        async with runtime.db.transaction() as session:
            return await invitations.accept_invitation_as_existing_user(session, token, invitee)

    results = await asyncio.gather(*(accept() for _ in range(5)), return_exceptions=True)
    assert sum(isinstance(r, Membership) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, Membership))
    assert len(await _memberships(runtime, account)) == 2  # the owner and the invitee


async def test_concurrent_sign_ups_from_one_link_create_one_user(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, account = await _arrange(runtime)
    await _invite(client, runtime, account, owner)
    token = _token((await _emails(runtime, "new.hire@example.com"))[0])
    password = runtime.passwords.generate(20, email="new.hire@example.com", name="Nina")

    async def sign_up() -> object:
        prepared = await invitations.prepare_sign_up(
            runtime.db, runtime.passwords, token, name="Nina", password=password
        )
        async with runtime.db.transaction() as session:
            return await invitations.accept_invitation_as_new_user(session, prepared)

    results = await asyncio.gather(*(sign_up() for _ in range(3)), return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert len(await _memberships(runtime, account)) == 2


async def test_one_address_invited_many_times_at_once_gets_one_invitation(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    headers = await staff_headers(runtime)
    url = f"/api/v1/accounts/{account.id}/invitations"
    # Open the pool's connections and load the catalogue first, or waiting for them would
    # space the requests out.
    await asyncio.gather(*(client.get(url, headers=headers) for _ in range(10)))
    first = await client.post(url, json={"email": "first@example.com"}, headers=headers)
    assert first.status_code == 201, first.text

    responses = await asyncio.gather(
        *(client.post(url, json={"email": "twice@example.com"}, headers=headers) for _ in range(10))
    )

    assert sorted(r.status_code for r in responses) == [201] + [409] * 9
    pending = await client.get(url, headers=headers)
    assert [i["email"] for i in pending.json()].count("twice@example.com") == 1


@pytest.mark.parametrize(
    ("locale", "subject", "intro"),
    [
        (
            "en",
            "You are invited to Acme",
            "You are invited to join the account “Acme” on Identity.",
        ),
        (
            "es",
            "Te han invitado a Acme",
            "Te han invitado a unirte a la cuenta «Acme» en Identity.",
        ),
    ],
)
async def test_an_invitation_a_client_sends_names_no_inviter(
    client: httpx.AsyncClient, runtime: Runtime, locale: str, subject: str, intro: str
) -> None:
    """A staff console's own token has no person behind it: the email must not put the
    account's name where a person's would be ("Acme invites you to Acme")."""
    owner = await make_user(runtime, name="Olga Owner")
    account = await make_account(runtime, owner, "Acme")
    console = bearer(
        await mint(
            runtime, sub="console", client_id="console", scope=f"{SCOPE_ADMIN} {SCOPE_ACCOUNTS}"
        )
    )
    response = await client.post(
        f"/api/v1/accounts/{account.id}/invitations",
        json={"email": "new.hire@example.com", "locale": locale},
        headers=console,
    )
    assert response.status_code == 201, response.text
    (email,) = await _emails(runtime, "new.hire@example.com")
    assert email.subject == subject
    assert intro in email.text_body
    assert email.html_body is not None and intro in email.html_body


async def test_names_with_line_breaks_make_a_one_line_subject_that_can_be_sent(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Names are refused with line breaks now; these were stored by an earlier release.
    owner = await make_user(runtime, name="Olga")
    account = await make_account(runtime, owner, "Acme")
    async with runtime.db.transaction() as session:
        await session.execute(
            update(User).where(User.id == owner.id).values(name="Olga\r\nBcc: everyone@example.com")
        )
        await session.execute(
            update(Account).where(Account.id == account.id).values(name="Acme\nHosting")
        )
    assert (await _invite(client, runtime, account, owner)).status_code == 201
    (email,) = await _emails(runtime, "new.hire@example.com")
    assert email.subject == "Olga Bcc: everyone@example.com invites you to Acme Hosting"
    built = build_message(email, runtime.settings.mail_from)
    assert built["Bcc"] is None
    assert built["Subject"] == email.subject


async def test_long_names_make_a_subject_cut_to_fit(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime, name="O" * MAX_NAME)
    account = await make_account(runtime, owner, "A" * MAX_ACCOUNT_NAME)
    response = await _invite(client, runtime, account, owner)
    assert response.status_code == 201, response.text
    (email,) = await _emails(runtime, "new.hire@example.com")
    assert email.subject.startswith("O" * MAX_NAME + " invites you to AAA")
    assert email.subject.endswith("…")
    assert len(email.subject) == MAX_SUBJECT


@pytest.mark.parametrize(
    ("locale", "product_line"),
    [("en", "The Identity team"), ("es", "El equipo de Identity")],
)
async def test_the_invitation_email_has_a_text_and_an_html_part_naming_the_product(
    client: httpx.AsyncClient, runtime: Runtime, locale: str, product_line: str
) -> None:
    owner = await make_user(runtime, name="Olga <b>Owner</b>")
    account = await make_account(runtime, owner, "Acme & Co")
    assert (await _invite(client, runtime, account, owner, locale=locale)).status_code == 201
    (email,) = await _emails(runtime, "new.hire@example.com")
    link = LINK.search(email.text_body)
    assert link and product_line in email.text_body
    assert "Olga <b>Owner</b>" in email.text_body and "Acme & Co" in email.text_body
    assert email.html_body is not None and f'<html lang="{locale}">' in email.html_body
    assert f'href="{link.group(0).replace("&", "&amp;")}"' in email.html_body
    assert product_line in email.html_body
    assert "Olga &lt;b&gt;Owner&lt;/b&gt;" in email.html_body and "Acme &amp; Co" in email.html_body


async def test_a_link_replaced_while_it_is_being_accepted_does_not_work(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resend that commits after an accept read the invitation by its old link, and before
    the accept claimed it, ends that link: the accept must not then go through with it."""
    owner, account = await _arrange(runtime)
    invitee = await make_user(runtime, email="new.hire@example.com")
    invitation = (await _invite(client, runtime, account, owner)).json()
    old_link = _token((await _emails(runtime, invitee.email))[0])
    real_read = repository.invitation_by_token
    headers = await user_headers(runtime, owner)

    async def read_before_a_resend(*args: Any, **kwargs: Any) -> Invitation | None:
        found = await real_read(*args, **kwargs)
        monkeypatch.setattr(repository, "invitation_by_token", real_read)
        resent = await client.post(
            f"/api/v1/accounts/{account.id}/invitations/{invitation['id']}/resend",
            headers=headers,
        )
        assert resent.status_code == 200, resent.text
        return found

    # The accept then waits for no lock the resend holds: its own come after the read.
    monkeypatch.setattr(repository, "invitation_by_token", read_before_a_resend)
    async with runtime.db.transaction() as session:
        with pytest.raises(NotFound):
            await invitations.accept_invitation_as_existing_user(session, old_link, invitee)

    monkeypatch.undo()
    assert len(await _memberships(runtime, account)) == 1  # the owner alone
    new_link = _token((await _emails(runtime, invitee.email))[-1])
    async with runtime.db.transaction() as session:
        await invitations.accept_invitation_as_existing_user(session, new_link, invitee)
    assert len(await _memberships(runtime, account)) == 2


async def test_a_permission_taken_out_of_the_catalogue_since_the_invitation_is_left_out(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """As a role deleted meanwhile is: the invitee joins with the rest. The grant of the
    vanished name was refused deep inside, so the link could never be used, and the accept
    page blamed the name the invitee typed."""
    owner, account = await _arrange(runtime)
    invitee = await make_user(runtime, email="new.hire@example.com")
    sent = await _invite(client, runtime, account, owner, permissions=[{"name": "invoices"}])
    assert sent.status_code == 201, sent.text
    async with runtime.db.transaction() as session:
        # What policies/permissions.toml held when it was sent, and an upgrade dropped.
        grants = {
            "permissions": [
                {"name": "invoices", "expires_at": None},
                {"name": "fax", "expires_at": None},
            ],
            "roles": [],
        }
        await session.execute(
            update(Invitation).where(Invitation.account_id == account.id).values(grants=grants)
        )
    (email,) = await _emails(runtime, "new.hire@example.com")

    async with runtime.db.transaction() as session:
        await invitations.accept_invitation_as_existing_user(session, _token(email), invitee)

    assert await effective(runtime, invitee, account) == {"invoices"}


async def test_two_transactions_inviting_one_address_at_once_make_one_invitation(
    runtime: Runtime,
) -> None:
    """The second invitation is looked for while the first is written but not committed:
    it must wait for the first and be refused as "already invited", not see none pending."""
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    first_written = asyncio.Event()

    async def invite(*, hold: bool) -> None:
        async with runtime.db.transaction() as session:
            await invitations.invite(
                session,
                Actor(user_id=owner.id),
                account.id,
                invitations.InvitationRequest(email="twice@example.com"),
                catalogue=runtime.catalogue,
                limiter=runtime.limiter,
                settings=runtime.settings,
                now=utcnow(),
            )
            if hold:
                first_written.set()
                await asyncio.sleep(0.5)  # the second one starts meanwhile

    async def second() -> None:
        await first_written.wait()
        await invite(hold=False)

    first, late = await asyncio.gather(invite(hold=True), second(), return_exceptions=True)

    assert first is None
    assert isinstance(late, Conflict), late
    assert "pending invitation already" in late.detail
    async with runtime.db.transaction() as session:
        pending = await invitations.pending(session, account.id, utcnow())
    assert [i.email for i in pending] == ["twice@example.com"]
