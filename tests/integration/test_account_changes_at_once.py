"""Two requests about one account at once: an invitation accepted while it is cancelled or its
sender removed or disabled, owners leaving and removing each other, a member's grants changed
while they leave or staff disable them or delete the role given. Each pair leaves what one of
them coming first would leave, records only what happened, and answers neither with a 5xx
(a deadlock on PostgreSQL is answered 503)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User
from identity.accounts.service import disable_user
from identity.audit.models import AuditEvent
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.errors import Conflict
from identity.permissions import invitations, members, repository
from identity.permissions.grants import Grant
from identity.permissions.invitations import InvitationRequest
from identity.permissions.models import Account
from identity.runtime import Runtime
from tests.browser import add_user, form_fields
from tests.integration.account_helpers import (
    SYSTEM,
    add_member,
    effective,
    give_refresh_token,
    make_account,
    refresh_token_revoked,
    staff_headers,
)
from tests.integration.page_helpers import link_in, mail_to, token_of
from tests.integration.recovery_helpers import until_waiting_or_done
from tests.integration.test_pages_users import sign_in_at, users_path

INVITEE = "invitee@example.com"


@dataclass(frozen=True, slots=True)
class Shop:
    """An account with two owners, a manager (``users``, ``tickets``, ``invoices``), a plain
    member (``tickets``, ``invoices``) and a user invited by the manager with ``tickets``."""

    account: Account
    owner: User
    co_owner: User
    manager: User
    member: User
    invitee: User


@pytest.fixture
async def shop(runtime: Runtime) -> Shop:
    owner = await add_user(runtime, "owner@example.com")
    co_owner = await add_user(runtime, "co-owner@example.com")
    manager = await add_user(runtime, "manager@example.com")
    member = await add_user(runtime, "member@example.com")
    invitee = await add_user(runtime, INVITEE)
    account = await make_account(runtime, owner, "Acme")
    await add_member(runtime, account, co_owner, owner=True)
    await add_member(runtime, account, manager, ["users", "tickets", "invoices"])
    await add_member(runtime, account, member, ["tickets", "invoices"])
    async with runtime.db.transaction() as session:
        await invitations.invite(
            session,
            Actor(manager.id),
            account.id,
            InvitationRequest(email=INVITEE, permissions=[Grant("tickets")]),
            catalogue=runtime.catalogue,
            limiter=runtime.limiter,
            settings=runtime.settings,
            now=utcnow(),
        )
    return Shop(account, owner, co_owner, manager, member, invitee)


async def _link(runtime: Runtime) -> str:
    (message,) = await mail_to(runtime, INVITEE)
    return token_of(link_in(message, invitations.ACCEPT_PATH))


async def _invitation_id(runtime: Runtime, shop: Shop) -> uuid.UUID:
    async with runtime.db.transaction() as session:
        (pending,) = await invitations.pending(session, shop.account.id, utcnow())
    return pending.id


async def _accept(runtime: Runtime, token: str, user: User) -> None:
    async with runtime.db.transaction() as session:
        await invitations.accept_invitation_as_existing_user(session, token, user)


async def _refused_meanwhile(
    runtime: Runtime,
    token: str,
    user: User,
    change: Callable[[AsyncSession], Awaitable[object]],
    table: str = "accounts",
) -> Conflict:
    """``user`` accepts the invitation of ``token`` while ``change`` is made and not yet
    committed, so that the acceptance waits for its lock on a row of ``table``: the
    acceptance's refusal once the change has committed."""
    async with runtime.db.transaction() as session:
        await change(session)
        accepting = asyncio.create_task(_accept(runtime, token, user))
        await until_waiting_or_done(runtime, accepting, table)
    with pytest.raises(Conflict) as refused:
        await accepting
    return refused.value


async def _is_member(runtime: Runtime, shop: Shop, user: User) -> bool:
    async with runtime.db.transaction() as session:
        return await repository.get_membership(session, shop.account.id, user.id) is not None


async def _recorded(runtime: Runtime, shop: Shop) -> list[str]:
    """The account's audit actions since the shop was arranged, in order (the arranging
    adds members and sends the invitation, and nothing else)."""
    async with runtime.db.transaction() as session:
        actions = await session.scalars(
            select(AuditEvent.action)
            .where(
                AuditEvent.account_id == shop.account.id,
                AuditEvent.action.not_in(["account.created", "member.added", "invitation.created"]),
            )
            .order_by(AuditEvent.id)
        )
        return list(actions)


async def _confirmation(
    http: httpx.AsyncClient, shop: Shop, csrf: dict[str, str], user: User
) -> tuple[str, dict[str, str]]:
    """The Users page's "Remove" (or "Leave") pressed: where its confirmation posts, and what."""
    path = f"{users_path(shop.account)}/{user.id}/remove"
    asked = await http.post(path, data=csrf)
    assert asked.status_code == 200, asked.text
    return path, form_fields(asked.text)


def _no_5xx(*answers: httpx.Response) -> None:
    assert all(a.status_code < 500 for a in answers), [(a.status_code, a.text) for a in answers]


# --- an invitation accepted meanwhile ------------------------------------------------------


async def test_an_invitation_cancelled_while_it_is_being_accepted_is_not_accepted(
    client: httpx.AsyncClient, runtime: Runtime, shop: Shop
) -> None:
    token = await _link(runtime)
    invitation_id = await _invitation_id(runtime, shop)

    def cancel(session: AsyncSession) -> Awaitable[object]:
        return invitations.cancel(
            session, Actor(shop.owner.id), shop.account.id, invitation_id, utcnow()
        )

    refused = await _refused_meanwhile(runtime, token, shop.invitee, cancel)
    assert refused.extra["reason"] == "cancelled"
    assert not await _is_member(runtime, shop, shop.invitee)
    assert await _recorded(runtime, shop) == ["invitation.cancelled"]


async def test_a_cancel_pressed_while_the_invitation_is_being_accepted_cancels_nothing(
    client: httpx.AsyncClient, runtime: Runtime, shop: Shop
) -> None:
    token = await _link(runtime)
    invitation_id = await _invitation_id(runtime, shop)
    csrf = await sign_in_at(client, users_path(shop.account), "owner@example.com")
    async with runtime.db.transaction() as session:
        await invitations.accept_invitation_as_existing_user(session, token, shop.invitee)
        cancelling = asyncio.create_task(
            client.post(f"{users_path(shop.account)}/invitations/{invitation_id}/cancel", data=csrf)
        )
        await until_waiting_or_done(runtime, cancelling, "accounts")
    answer = await cancelling

    # Not found, as the API answers: accepted, it is no longer pending.
    assert answer.status_code == 404, answer.text
    assert await _is_member(runtime, shop, shop.invitee)
    assert await _recorded(runtime, shop) == ["invitation.accepted"]


async def test_an_invitation_accepted_while_staff_add_the_invitee_says_they_are_a_member(
    runtime: Runtime, shop: Shop
) -> None:
    """Sent by a client, an invitation has no sender whose rights its acceptance holds, so
    it takes no lock of the account: the invitee added by staff meanwhile made the membership
    fail deep inside, a refusal the accept page could not tell from no answer."""
    joiner = await add_user(runtime, "joiner@example.com")
    async with runtime.db.transaction() as session:
        await invitations.invite(
            session,
            SYSTEM,
            shop.account.id,
            InvitationRequest(email=joiner.email, permissions=[Grant("tickets")]),
            catalogue=runtime.catalogue,
            limiter=runtime.limiter,
            settings=runtime.settings,
            now=utcnow(),
        )
    (message,) = await mail_to(runtime, joiner.email)
    token = token_of(link_in(message, invitations.ACCEPT_PATH))
    async with runtime.db.transaction() as session:
        await members.add_member(
            session,
            SYSTEM,
            shop.account.id,
            joiner.id,
            permissions=[Grant("invoices")],
            catalogue=runtime.catalogue,
            now=utcnow(),
        )
        accepting = asyncio.create_task(_accept(runtime, token, joiner))
        # It waits for the new membership (PostgreSQL) or the write lock (SQLite).
        await asyncio.wait({accepting}, timeout=0.5)

    with pytest.raises(Conflict) as refused:
        await accepting
    assert refused.value.extra.get("reason") == "member"
    assert await _recorded(runtime, shop) == []


async def test_an_invitation_whose_sender_is_being_removed_is_not_accepted(
    client: httpx.AsyncClient, runtime: Runtime, shop: Shop
) -> None:
    token = await _link(runtime)

    def remove(session: AsyncSession) -> Awaitable[object]:
        return members.remove_member(
            session, Actor(shop.owner.id), shop.account.id, shop.manager.id, utcnow()
        )

    refused = await _refused_meanwhile(runtime, token, shop.invitee, remove)
    assert refused.extra["reason"] == "cancelled"
    assert not await _is_member(runtime, shop, shop.invitee)
    assert await _recorded(runtime, shop) == ["member.removed"]


async def test_removing_the_sender_waits_for_their_invitation_being_accepted(
    client: httpx.AsyncClient, runtime: Runtime, shop: Shop
) -> None:
    token = await _link(runtime)
    csrf = await sign_in_at(client, users_path(shop.account), "owner@example.com")
    path = f"{users_path(shop.account)}/{shop.manager.id}/remove"
    asked = await client.post(path, data=csrf)
    async with runtime.db.transaction() as session:
        await invitations.accept_invitation_as_existing_user(session, token, shop.invitee)
        removing = asyncio.create_task(client.post(path, data=form_fields(asked.text)))
        await until_waiting_or_done(runtime, removing, "accounts")
    answer = await removing

    assert answer.status_code == 303, answer.text
    assert await _is_member(runtime, shop, shop.invitee)
    assert not await _is_member(runtime, shop, shop.manager)
    assert await _recorded(runtime, shop) == ["invitation.accepted", "member.removed"]


async def test_an_invitation_whose_sender_is_being_disabled_is_not_accepted(
    client: httpx.AsyncClient, runtime: Runtime, shop: Shop
) -> None:
    token = await _link(runtime)

    def disable(session: AsyncSession) -> Awaitable[object]:
        return disable_user(session, SYSTEM, shop.manager.id, "left the company", utcnow())

    refused = await _refused_meanwhile(runtime, token, shop.invitee, disable, "users")
    assert refused.extra["reason"] == "cancelled"
    assert not await _is_member(runtime, shop, shop.invitee)


# --- owners leaving and removed ------------------------------------------------------------


async def test_an_owner_leaving_while_the_other_owner_removes_them_goes_once(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, runtime: Runtime, shop: Shop
) -> None:
    leaving_csrf = await sign_in_at(client, users_path(shop.account), "co-owner@example.com")
    removing_csrf = await sign_in_at(other_browser, users_path(shop.account), "owner@example.com")

    leave = await _confirmation(client, shop, leaving_csrf, shop.co_owner)
    remove = await _confirmation(other_browser, shop, removing_csrf, shop.co_owner)

    left, removed = await asyncio.gather(
        client.post(leave[0], data=leave[1]), other_browser.post(remove[0], data=remove[1])
    )

    _no_5xx(left, removed)
    assert not await _is_member(runtime, shop, shop.co_owner)
    assert await _is_member(runtime, shop, shop.owner)
    assert await _recorded(runtime, shop) == ["member.removed"]


async def test_two_owners_removing_each_other_on_the_page_leave_one(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, runtime: Runtime, shop: Shop
) -> None:
    first = await sign_in_at(client, users_path(shop.account), "owner@example.com")
    second = await sign_in_at(other_browser, users_path(shop.account), "co-owner@example.com")

    one = await _confirmation(client, shop, first, shop.co_owner)
    other = await _confirmation(other_browser, shop, second, shop.owner)

    answers = await asyncio.gather(
        client.post(one[0], data=one[1]), other_browser.post(other[0], data=other[1])
    )

    _no_5xx(*answers)
    assert sorted(a.status_code for a in answers) == [303, 404]  # the loser is no member any more
    owners = [await _is_member(runtime, shop, u) for u in (shop.owner, shop.co_owner)]
    assert owners in ([True, False], [False, True])
    assert await _recorded(runtime, shop) == ["member.removed"]


async def test_the_last_owner_leaving_from_two_browsers_at_once_stays(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, runtime: Runtime, shop: Shop
) -> None:
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, shop.account.id, shop.co_owner.id, utcnow())
    csrfs = [
        await sign_in_at(http, users_path(shop.account), "owner@example.com")
        for http in (client, other_browser)
    ]

    browsers = (client, other_browser)
    asked = [
        await _confirmation(http, shop, csrf, shop.owner)
        for http, csrf in zip(browsers, csrfs, strict=True)
    ]

    answers = await asyncio.gather(
        *(
            http.post(path, data=fields)
            for http, (path, fields) in zip(browsers, asked, strict=True)
        )
    )

    assert [a.status_code for a in answers] == [409, 409], [a.text for a in answers]
    assert await _is_member(runtime, shop, shop.owner)
    assert await _recorded(runtime, shop) == ["member.removed"]  # the co-owner's, above


# --- a member's grants changed meanwhile ---------------------------------------------------


async def test_a_manager_leaving_while_the_owner_changes_their_grants_leaves(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, runtime: Runtime, shop: Shop
) -> None:
    owner_csrf = await sign_in_at(client, users_path(shop.account), "owner@example.com")
    manager_csrf = await sign_in_at(other_browser, users_path(shop.account), "manager@example.com")

    path, leave = await _confirmation(other_browser, shop, manager_csrf, shop.manager)

    edited, left = await asyncio.gather(
        client.post(
            f"{users_path(shop.account)}/{shop.manager.id}/grants",
            data=owner_csrf | {"permission": ["users", "domains"]},
        ),
        other_browser.post(path, data=leave),
    )

    _no_5xx(edited, left)
    assert left.status_code == 200, left.text
    assert edited.status_code in (303, 404), edited.text
    assert not await _is_member(runtime, shop, shop.manager)
    changed = ["member.grants_changed"] if edited.status_code == 303 else []
    assert await _recorded(runtime, shop) == [*changed, "member.removed"]


async def test_a_member_disabled_while_the_page_narrows_their_grants_keeps_no_token(
    client: httpx.AsyncClient, runtime: Runtime, shop: Shop
) -> None:
    token = await give_refresh_token(runtime, shop.member, shop.account)
    csrf = await sign_in_at(client, users_path(shop.account), "owner@example.com")

    edited, disabled = await asyncio.gather(
        client.post(
            f"{users_path(shop.account)}/{shop.member.id}/grants",
            data=csrf | {"permission": ["tickets"]},
        ),
        client.post(
            f"/api/v1/users/{shop.member.id}/disable",
            json={"reason": "left the company"},
            headers=await staff_headers(runtime),
        ),
    )

    _no_5xx(edited, disabled)
    assert edited.status_code == 303, edited.text
    assert disabled.status_code == 200, disabled.text
    assert await refresh_token_revoked(runtime, token)
    assert await _recorded(runtime, shop) == ["member.grants_changed"]


async def test_a_role_deleted_by_staff_while_the_page_gives_it_is_not_held(
    client: httpx.AsyncClient, runtime: Runtime, shop: Shop
) -> None:
    headers = await staff_headers(runtime)
    base = f"/api/v1/accounts/{shop.account.id}"
    created = await client.post(
        f"{base}/roles", json={"name": "Helpdesk", "permissions": ["domains"]}, headers=headers
    )
    assert created.status_code == 201, created.text
    role_id = created.json()["id"]
    csrf = await sign_in_at(client, users_path(shop.account), "owner@example.com")

    edited, deleted = await asyncio.gather(
        client.post(
            f"{users_path(shop.account)}/{shop.member.id}/grants",
            data=csrf | {"permission": ["tickets", "invoices"], "role": role_id},
        ),
        client.delete(f"{base}/roles/{role_id}", headers=headers),
    )

    _no_5xx(edited, deleted)
    assert deleted.status_code == 204, deleted.text
    assert edited.status_code in (303, 422), edited.text
    assert await effective(runtime, shop.member, shop.account) == {"tickets", "invoices"}
