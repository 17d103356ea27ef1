"""The Users page offers "Resend" only on invitations the viewer could resend: not one whose
sender can no longer send it, nor one giving more than the viewer may grant. The server
still refuses those (tests/integration/test_pages_users.py); the page no longer offers a
button that can only fail."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from identity.audit.service import Actor
from identity.clock import utcnow
from identity.permissions import account_roles, invitations, members
from identity.permissions.grants import Grant, RoleGrant
from identity.permissions.invitations import InvitationRequest
from identity.runtime import Runtime
from tests.integration.account_helpers import SYSTEM
from tests.integration.db_helpers import counting_statements
from tests.integration.test_pages_users import Team, sign_in_at, team, users_path

__all__ = ["team"]  # the fixture, shared with the page's other tests


async def _invite(
    runtime: Runtime, team: Team, sender: uuid.UUID | None, email: str, **request: Any
) -> uuid.UUID:
    actor = Actor(user_id=sender) if sender else SYSTEM
    async with runtime.db.transaction() as session:
        sent = await invitations.invite(
            session,
            actor,
            team.account.id,
            InvitationRequest(email=email, **request),
            catalogue=runtime.catalogue,
            limiter=runtime.limiter,
            settings=runtime.settings,
            now=utcnow(),
        )
    return sent.id


def _offered(page: httpx.Response, invitation_id: uuid.UUID) -> set[str]:
    """The buttons the page shows for an invitation: "resend", "cancel"."""
    return set(re.findall(rf"/invitations/{invitation_id}/(resend|cancel)\b", page.text))


async def test_an_invitation_whose_sender_is_gone_offers_cancel_only(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    sent = await _invite(
        runtime, team, team.manager.id, "by.manager@example.com", permissions=[Grant("tickets")]
    )
    async with runtime.db.transaction() as session:
        await members.remove_member(session, SYSTEM, team.account.id, team.manager.id, utcnow())
    await sign_in_at(client, users_path(team.account), "owner@example.com")

    page = await client.get(users_path(team.account))

    assert _offered(page, sent) == {"cancel"}
    assert _offered(page, team.invitation_id) == {"resend", "cancel"}


async def test_a_manager_is_not_offered_to_resend_what_they_could_not_send(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    owners = await _invite(runtime, team, team.owner.id, "deputy@example.com", all_permissions=True)
    beyond = await _invite(
        runtime, team, team.owner.id, "billing@example.com", permissions=[Grant("invoices")]
    )
    await sign_in_at(client, users_path(team.account), "manager@example.com")

    page = await client.get(users_path(team.account))

    assert _offered(page, owners) == {"cancel"}
    assert _offered(page, beyond) == {"cancel"}
    # "tickets", which the manager holds.
    assert _offered(page, team.invitation_id) == {"resend", "cancel"}


async def _desk_role(runtime: Runtime, team: Team) -> uuid.UUID:
    """A role giving "domains", which the manager holds too."""
    async with runtime.db.transaction() as session:
        role = await account_roles.create_role(
            session,
            SYSTEM,
            team.account.id,
            name="Domain desk",
            permissions=["domains"],
            catalogue=runtime.catalogue,
            now=utcnow(),
        )
    return role.role.id


async def test_deciding_what_to_offer_costs_no_statements_per_invitation(
    client: httpx.AsyncClient, runtime: Runtime, team: Team
) -> None:
    role = await _desk_role(runtime, team)
    senders = (team.owner.id, team.manager.id)
    guests = iter(range(100))

    async def invite_more(count: int) -> None:
        for _ in range(count):
            n = next(guests)
            roles = [RoleGrant(role)] if n % 3 else []
            email = f"guest{n}@example.com"
            await _invite(runtime, team, senders[n % 2], email, roles=roles)

    await invite_more(3)  # from each sender, with a role and without
    await sign_in_at(client, users_path(team.account), "manager@example.com")
    with counting_statements(runtime) as few:
        assert (await client.get(users_path(team.account))).status_code == 200
    await invite_more(8)
    with counting_statements(runtime) as many:
        page = await client.get(users_path(team.account))
    assert page.text.count("/resend") == 12  # the team's invitation and these eleven
    assert len(many) == len(few)
