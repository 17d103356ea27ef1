"""An invitation is only as good as its sender: it can be accepted while the person who sent it
could still send it. Otherwise a manager about to be removed could invite a second address of
their own with their rights (everything but "all permissions") and come back after removal."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from identity.accounts.models import User
from identity.accounts.service import disable_user
from identity.audit.models import AuditEvent
from identity.clients.models import OAuthClient
from identity.clock import utcnow
from identity.errors import Conflict
from identity.permissions import invitations, members
from identity.permissions.access import Relation
from identity.permissions.grants import Grant
from identity.permissions.models import Account, Invitation, Membership
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    SYSTEM,
    account_with_member,
    add_member,
    bearer,
    grant,
    make_account,
    make_user,
    mint,
    user_headers,
)
from tests.integration.page_helpers import mail_to
from tests.integration.recovery_helpers import until_waiting_or_done

INVITEE = "second.address@example.com"
LINK = re.compile(r"/invitations/accept\?token=[A-Za-z0-9_%-]+")


async def _link_token(runtime: Runtime) -> str:
    (message,) = await mail_to(runtime, INVITEE)
    match = LINK.search(message.text_body)
    assert match, message.text_body
    return parse_qs(urlsplit(match.group(0)).query)["token"][0]


async def _invite(
    client: httpx.AsyncClient, runtime: Runtime, account: Account, sender: User, **body: Any
) -> str:
    """``sender`` invites INVITEE through the API; the token of the emailed link."""
    response = await client.post(
        f"/api/v1/accounts/{account.id}/invitations",
        json={"email": INVITEE, "permissions": [{"name": "users"}, {"name": "invoices"}]} | body,
        headers=await user_headers(runtime, sender),
    )
    assert response.status_code == 201, response.text
    return await _link_token(runtime)


async def _arrange(runtime: Runtime) -> tuple[User, User, Account]:
    # A manager invites with no more than they hold (grants.Delegation).
    return await account_with_member(runtime, ["users", "invoices"])


async def _is_member(runtime: Runtime, account: Account, email: str) -> bool:
    async with runtime.db.transaction() as session:
        found = await session.scalar(
            select(Membership.id)
            .join(User, User.id == Membership.user_id)
            .where(Membership.account_id == account.id, User.email == email)
        )
    return found is not None


async def _refused_as_cancelled(
    runtime: Runtime, token: str, invitee: User, account: Account
) -> None:
    """Accepting the invitation is refused as cancelled, and makes the invitee no member."""
    with pytest.raises(Conflict) as refused:
        await _accept_as_existing(runtime, token, invitee)
    assert refused.value.extra["reason"] == "cancelled"
    assert not await _is_member(runtime, account, INVITEE)


async def _accept_as_existing(runtime: Runtime, token: str, invitee: User) -> None:
    async with runtime.db.transaction() as session:
        await invitations.accept_invitation_as_existing_user(session, token, invitee)


async def test_a_removed_managers_invitation_cannot_be_accepted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, manager, account = await _arrange(runtime)
    invitee = await make_user(runtime, email=INVITEE)
    token = await _invite(client, runtime, account, manager)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account.id, manager.id, utcnow())

    await _refused_as_cancelled(runtime, token, invitee, account)


async def test_nor_by_a_new_person_once_the_manager_lost_the_users_permission(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, manager, account = await _arrange(runtime)
    token = await _invite(client, runtime, account, manager)
    async with runtime.db.transaction() as session:
        await members.revoke_one(session, SYSTEM, account.id, manager.id, "users", utcnow())

    with pytest.raises(Conflict):
        await invitations.prepare_sign_up(
            runtime.db, runtime.passwords, token, name="Nina", password="unused"
        )
    with pytest.raises(Conflict):
        async with runtime.db.transaction() as session:
            await invitations.invitation_for_token(session, token)
    assert not await _is_member(runtime, account, INVITEE)


async def test_nor_once_the_manager_no_longer_holds_what_they_invited_with(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, manager, account = await _arrange(runtime)
    invitee = await make_user(runtime, email=INVITEE)
    token = await _invite(client, runtime, account, manager)
    async with runtime.db.transaction() as session:
        await members.revoke_one(session, SYSTEM, account.id, manager.id, "invoices", utcnow())

    with pytest.raises(Conflict):
        await _accept_as_existing(runtime, token, invitee)
    assert not await _is_member(runtime, account, INVITEE)


async def test_a_disabled_senders_invitation_cannot_be_accepted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, _, account = await _arrange(runtime)
    invitee = await make_user(runtime, email=INVITEE)
    token = await _invite(client, runtime, account, owner)
    async with runtime.db.transaction() as session:
        await disable_user(session, SYSTEM, owner.id, "account takeover", utcnow())

    with pytest.raises(Conflict):
        await _accept_as_existing(runtime, token, invitee)


async def test_all_permissions_need_the_sender_to_be_an_owner_still(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, _, account = await _arrange(runtime)
    invitee = await make_user(runtime, email=INVITEE)
    second = await make_user(runtime)
    await add_member(runtime, account, second, owner=True)
    token = await _invite(client, runtime, account, second, permissions=[], all_permissions=True)
    # Demoted to a manager: they could no longer invite with "all permissions".
    async with runtime.db.transaction() as session:
        await members.set_owner(session, SYSTEM, account.id, second.id, False, utcnow())
        await members.grant_one(
            session,
            SYSTEM,
            account.id,
            second.id,
            Grant("users"),
            catalogue=runtime.catalogue,
            now=utcnow(),
        )

    with pytest.raises(Conflict):
        await _accept_as_existing(runtime, token, invitee)


async def test_a_sender_who_keeps_the_right_is_honoured(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # The manager's other grants changed, but they still manage users.
    _, manager, account = await _arrange(runtime)
    invitee = await make_user(runtime, email=INVITEE)
    token = await _invite(client, runtime, account, manager)
    await grant(runtime, account.id, manager.id, "tickets")

    await _accept_as_existing(runtime, token, invitee)

    assert await _is_member(runtime, account, INVITEE)


async def test_staff_who_are_not_members_may_invite(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    admin = await make_user(runtime, is_admin=True)
    invitee = await make_user(runtime, email=INVITEE)
    response = await client.post(
        f"/api/v1/accounts/{account.id}/invitations",
        json={"email": INVITEE, "all_permissions": True},
        headers=await user_headers(runtime, admin, "identity:admin identity:accounts"),
    )
    assert response.status_code == 201, response.text

    await _accept_as_existing(runtime, await _link_token(runtime), invitee)

    assert await _is_member(runtime, account, INVITEE)


async def test_the_accept_page_says_the_link_no_longer_works(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, manager, account = await _arrange(runtime)
    token = await _invite(client, runtime, account, manager)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account.id, manager.id, utcnow())

    page = await client.get(invitations.ACCEPT_PATH, params={"token": token})

    assert page.status_code == 410


async def test_resending_an_invitation_its_sender_could_no_longer_send_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The resend answered 200 and emailed a new link, which said "cancelled" when opened:
    the invitee got a dead link and the owner was told it had gone out."""
    owner, manager, account = await _arrange(runtime)
    await _invite(client, runtime, account, manager)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account.id, manager.id, utcnow())
    headers = await user_headers(runtime, owner)
    base = f"/api/v1/accounts/{account.id}/invitations"
    (pending,) = (await client.get(base, headers=headers)).json()

    resent = await client.post(f"{base}/{pending['id']}/resend", headers=headers)

    assert resent.status_code == 409, resent.text
    assert resent.headers["content-type"] == "application/problem+json"
    assert len(await mail_to(runtime, INVITEE)) == 1  # the first invitation's email only


async def _owner_invites(
    client: httpx.AsyncClient, runtime: Runtime, account: Account, owner: User, **body: Any
) -> str:
    """The id of the invitation ``owner`` sends INVITEE."""
    response = await client.post(
        f"/api/v1/accounts/{account.id}/invitations",
        json={"email": INVITEE} | body,
        headers=await user_headers(runtime, owner),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize(
    "gives",
    [{"all_permissions": True}, {"permissions": [{"name": "tickets"}]}],
    ids=["all-permissions", "a-permission-the-manager-lacks"],
)
async def test_a_manager_cannot_resend_an_invitation_they_could_not_send(
    client: httpx.AsyncClient, runtime: Runtime, gives: dict[str, Any]
) -> None:
    """A resend renews the link for another week: a manager could keep an owner's invitation
    alive (and its "all permissions" with it) long after the owner meant it to lapse."""
    owner, manager, account = await _arrange(runtime)
    invitation_id = await _owner_invites(client, runtime, account, owner, **gives)
    base = f"/api/v1/accounts/{account.id}/invitations"
    (before,) = (await client.get(base, headers=await user_headers(runtime, owner))).json()

    resent = await client.post(
        f"{base}/{invitation_id}/resend", headers=await user_headers(runtime, manager)
    )

    assert resent.status_code == 403, resent.text
    assert resent.headers["content-type"] == "application/problem+json"
    assert "could send yourself" in resent.json()["detail"]
    (after,) = (await client.get(base, headers=await user_headers(runtime, owner))).json()
    assert after["expires_at"] == before["expires_at"]
    assert len(await mail_to(runtime, INVITEE)) == 1  # the first invitation's email only


async def test_a_manager_may_resend_an_owners_invitation_within_their_rights(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, manager, account = await _arrange(runtime)
    invitation_id = await _owner_invites(
        client, runtime, account, owner, permissions=[{"name": "invoices"}]
    )

    resent = await client.post(
        f"/api/v1/accounts/{account.id}/invitations/{invitation_id}/resend",
        headers=await user_headers(runtime, manager),
    )

    assert resent.status_code == 200, resent.text
    assert len(await mail_to(runtime, INVITEE)) == 2


async def test_a_new_invitation_replaces_one_whose_sender_could_no_longer_send_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The dead invitation was still "pending", so inviting the address again was refused
    (resend it instead) while resending it was refused too (its sender is gone)."""
    owner, manager, account = await _arrange(runtime)
    dead = await _invite(client, runtime, account, manager)
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, account.id, manager.id, utcnow())
        (old,) = await invitations.pending(session, account.id, utcnow())

    await _owner_invites(client, runtime, account, owner, permissions=[{"name": "invoices"}])

    async with runtime.db.transaction() as session:
        (live,) = await invitations.pending(session, account.id, utcnow())
        cancelled = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "invitation.cancelled", AuditEvent.target_id == str(old.id)
            )
        )
    assert live.id != old.id
    assert cancelled is not None and cancelled.actor_user_id == owner.id
    with pytest.raises(Conflict):
        async with runtime.db.transaction() as session:
            await invitations.invitation_for_token(session, dead)


async def test_a_permission_taken_out_of_the_catalogue_is_not_held_against_the_sender(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Nobody holds a permission the catalogue no longer has, so its sender seemed gone.
    _, manager, account = await _arrange(runtime)
    invitee = await make_user(runtime, email=INVITEE)
    token = await _invite(client, runtime, account, manager)
    async with runtime.db.transaction() as session:
        (sent,) = await invitations.pending(session, account.id, utcnow())
        dropped = {"name": "fax", "expires_at": None}
        grants = sent.grants | {"permissions": [*sent.grants["permissions"], dropped]}
        await session.execute(
            update(Invitation).where(Invitation.id == sent.id).values(grants=grants)
        )

    await _accept_as_existing(runtime, token, invitee)

    assert await _is_member(runtime, account, INVITEE)


CONSOLE = "staff-console"


async def _console_invites(client: httpx.AsyncClient, runtime: Runtime, account: Account) -> str:
    """A client acting for itself as staff (its own identity:admin token) invites INVITEE with
    all permissions; the token of the emailed link."""
    own_token = await mint(runtime, sub=CONSOLE, client_id=CONSOLE, scope="identity:admin")
    response = await client.post(
        f"/api/v1/accounts/{account.id}/invitations",
        json={"email": INVITEE, "all_permissions": True},
        headers=bearer(own_token),
    )
    assert response.status_code == 201, response.text
    return await _link_token(runtime)


async def _change_console(runtime: Runtime, **registration: Any) -> None:
    async with runtime.db.transaction() as session:
        await session.execute(
            update(OAuthClient).where(OAuthClient.client_id == CONSOLE).values(**registration)
        )
    runtime.clients.forget(CONSOLE)


async def _resend_offered(runtime: Runtime, account: Account, owner: User) -> set[Any]:
    """The pending invitations the Users page offers ``owner`` to resend."""
    async with runtime.db.transaction() as session:
        sent = await invitations.pending(session, account.id, utcnow())
        return await invitations.resendable(
            session, Relation.OWNER, owner.id, account.id, sent, utcnow()
        )


@pytest.mark.parametrize(
    "registration",
    [
        {"disabled": True},
        # Its own tokens are no longer staff's: /api/v1 reads the scope from the registration.
        {"scope": "identity:authz"},
        # It may no longer act for itself at all.
        {"grant_types": ["authorization_code"]},
    ],
    ids=["disabled", "identity:admin taken", "client_credentials taken"],
)
async def test_a_clients_invitation_lasts_only_while_the_client_may_act_as_staff(
    client: httpx.AsyncClient, runtime: Runtime, registration: dict[str, Any]
) -> None:
    """A console found compromised is disabled or loses identity:admin: what it sent as staff
    must stop there too, or its "all permissions" links let whoever holds them in for a week."""
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    invitee = await make_user(runtime, email=INVITEE)
    token = await _console_invites(client, runtime, account)
    await _change_console(runtime, **registration)

    assert await _resend_offered(runtime, account, owner) == set()
    await _refused_as_cancelled(runtime, token, invitee, account)


async def test_a_client_that_may_still_act_as_staff_is_honoured(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    invitee = await make_user(runtime, email=INVITEE)
    token = await _console_invites(client, runtime, account)
    # Changes that leave it staff: another scope added.
    await _change_console(runtime, scope="identity:admin identity:authz")

    assert len(await _resend_offered(runtime, account, owner)) == 1
    await _accept_as_existing(runtime, token, invitee)

    assert await _is_member(runtime, account, INVITEE)


async def _take_users(runtime: Runtime, account: Account, manager: User) -> None:
    async with runtime.db.transaction() as session:
        await members.revoke_one(session, SYSTEM, account.id, manager.id, "users", utcnow())


async def test_an_acceptance_meeting_a_revoke_of_the_senders_users_in_progress_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, manager, account = await _arrange(runtime)
    invitee = await make_user(runtime, email=INVITEE)
    token = await _invite(client, runtime, account, manager)
    async with runtime.db.transaction() as session:
        await members.revoke_one(session, SYSTEM, account.id, manager.id, "users", utcnow())
        accepting = asyncio.create_task(_accept_as_existing(runtime, token, invitee))
        await until_waiting_or_done(runtime, accepting, "memberships")

    with pytest.raises(Conflict) as refused:
        await accepting
    assert refused.value.extra["reason"] == "cancelled"
    assert not await _is_member(runtime, account, INVITEE)


async def test_a_revoke_of_the_senders_users_waits_for_an_acceptance_in_progress(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The acceptance has found the sender still able to send it: taking `users` from them
    must not commit before the membership does, or it would be made on rights gone."""
    _, manager, account = await _arrange(runtime)
    invitee = await make_user(runtime, email=INVITEE)
    token = await _invite(client, runtime, account, manager)
    real_add = invitations.add_member
    revoking: list[asyncio.Task[None]] = []
    committed_in_between: list[bool] = []

    async def enrol_while_users_is_taken(*args: Any, **kwargs: Any) -> Any:
        revoking.append(asyncio.create_task(_take_users(runtime, account, manager)))
        await until_waiting_or_done(runtime, revoking[0], "memberships")
        committed_in_between.append(revoking[0].done())
        return await real_add(*args, **kwargs)

    monkeypatch.setattr(invitations, "add_member", enrol_while_users_is_taken)
    await _accept_as_existing(runtime, token, invitee)

    assert committed_in_between == [False]
    await revoking[0]
    assert await _is_member(runtime, account, INVITEE)
